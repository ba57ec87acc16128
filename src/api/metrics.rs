//! `GET /metrics`: the switch's metrics in Prometheus text format, under the REST API's access
//! rule (`[auth] api_keys`, `api_allow_from`).

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};

use super::auth::Caller;
use super::{error_json, ApiState};
use crate::telemetry;

/// Registers `GET /metrics`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(metrics));
}

/// Prometheus metrics in the text exposition format (see the README's table).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "rest",
    responses(
        (status = 200, description = "Metrics in the Prometheus text format", content_type = "text/plain", body = String),
        (status = 401, description = "Missing or wrong API key", body = super::views::ErrorView),
        (status = 403, description = "Address not allowed", body = super::views::ErrorView)
    ),
    security(("api_key" = []))
)]
pub(crate) async fn metrics(_caller: Caller, state: web::Data<ApiState>) -> HttpResponse {
    // The queue length is read when scraped: it is this switch's, not a running sum.
    telemetry::store_queued(state.store.journal.health.view().queued);
    match telemetry::render() {
        Some(text) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(text),
        None => error_json(
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics are off: another metrics recorder was installed first".into(),
        ),
    }
}
