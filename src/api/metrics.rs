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

async fn metrics(_caller: Caller, state: web::Data<ApiState>) -> HttpResponse {
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
