//! The REST API: VoIPBIN-shaped call resources under `/calls`, and health.
//!
//! Call records are read from the store (so calls from before a restart, or from another
//! switch on the same database, are found); a live call's latest record comes from the
//! registry. The Calls API (`calls_api`) and live events (`events`) are registered here too.

pub mod auth;
pub mod body;
pub mod calls_api;
pub mod calls_views;
pub mod events;
pub mod metrics;
pub mod openapi;
pub mod phone;
pub mod rooms_api;
pub mod views;

pub use crate::http_error::error_json;

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use serde::Deserialize;
use thiserror::Error;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::call::state::{CallRecord, EndCause};
use crate::config::Config;
use crate::protocols::access::AccessRule;
use crate::registry::{GetCall, GetStats, HangupCall, HangupError, Registry};
use crate::store::{CallFilter, PageToken, Store};
use auth::Caller;
use views::{CallView, ErrorView, PageView};

/// How long a list waits for queued writes to reach the store, so it shows what just
/// happened; past this it answers from what the store has.
pub const READ_SYNC_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest page `GET /calls` returns.
const MAX_PAGE_SIZE: usize = 100;
/// Page size when none is asked for.
const DEFAULT_PAGE_SIZE: usize = 10;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub registry: Addr<Registry>,
    pub store: Store,
    pub config: Arc<Config>,
    /// Who may use the REST and Calls APIs (`[auth] api_keys`, `api_allow_from`).
    pub access: Arc<AccessRule>,
    /// Speech recognition, for `transcribe`.
    pub asr: crate::speech::asr::Asr,
    /// Places outgoing calls over SIP, when `[sip]` is on.
    pub sip: Option<crate::protocols::sip::Dialer>,
}

/// Errors of the REST API, each with its HTTP status.
#[derive(Debug, Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the switch is shutting down")]
    Unavailable,
    #[error("a valid `Authorization: Bearer KEY` header is required")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("the call store failed: {0}")]
    Store(String),
    /// A service the request needs is not there (speech recognition not installed).
    #[error("{0}")]
    NotInstalled(String),
    /// The switch cannot reach what the request asks for (a destination it cannot dial).
    #[error("{0}")]
    BadGateway(String),
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::Store(e.to_string())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Store(_) | ApiError::NotInstalled(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = error_json(self.status_code(), self.to_string());
        if matches!(self, ApiError::Unauthorized) {
            response.headers_mut().insert(
                actix_web::http::header::WWW_AUTHENTICATE,
                actix_web::http::header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// Parses a call id from a path.
pub fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw)
        .map_err(|_| ApiError::BadRequest(format!("`{raw}` is not a call id (a UUID)")))
}

/// The latest record of a call `caller` may see: the registry's for calls it knows, else the
/// store's. Calls of other workspaces are not found.
pub async fn find_record(
    state: &ApiState,
    caller: &Caller,
    id: Uuid,
) -> Result<CallRecord, ApiError> {
    let live = state
        .registry
        .send(GetCall { id })
        .await
        .map_err(|_| ApiError::Unavailable)?;
    let record = match live {
        Some(r) => Some(r),
        None => state.store.get_call(id).await?,
    };
    record
        .filter(|r| caller.sees(r))
        .ok_or_else(|| ApiError::NotFound(format!("call {id} not found")))
}

/// Hangs up a live call `caller` may see; 404 unknown, 409 already ended.
pub async fn hangup_visible(
    state: &ApiState,
    caller: &Caller,
    id: Uuid,
) -> Result<CallRecord, ApiError> {
    let before = find_record(state, caller, id).await?;
    state
        .registry
        .send(HangupCall {
            id,
            cause: EndCause::Normal,
            detail: "hung up through the API".into(),
        })
        .await
        .map_err(|_| ApiError::Unavailable)?
        .map_err(|e| match e {
            HangupError::NotFound(_) | HangupError::Ended(_) => {
                ApiError::Conflict(format!("call {id} has already ended"))
            }
        })?;
    Ok(state
        .registry
        .send(GetCall { id })
        .await
        .map_err(|_| ApiError::Unavailable)?
        .unwrap_or(before))
}

/// A call in VoIPBIN's shape.
#[utoipa::path(
    get,
    path = "/calls/{id}",
    tag = "rest",
    params(("id" = String, Path, description = "The call id (a UUID)")),
    responses(
        (status = 200, description = "The call", body = CallView),
        (status = 400, description = "Not a call id", body = ErrorView), (status = 401, description = "Missing or wrong API key", body = ErrorView), (status = 403, description = "Address not allowed", body = ErrorView), (status = 404, description = "Unknown call, or another workspace's", body = ErrorView)
    ),
    security(("api_key" = []))
)]
async fn get_call(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let record = find_record(&state, &caller, id).await?;
    Ok(HttpResponse::Ok().json(CallView::from(&record)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Calls per page: 1 to 100, 10 when not given.
    page_size: Option<usize>,
    /// `next_page_token` of the previous page.
    page_token: Option<String>,
    /// Only the call with this reference (the id the caller's side gave it).
    reference: Option<String>,
}

/// Calls, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/calls",
    tag = "rest",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of calls", body = PageView),
        (status = 400, description = "Bad query", body = ErrorView), (status = 401, description = "Missing or wrong API key", body = ErrorView), (status = 403, description = "Address not allowed", body = ErrorView), (status = 503, description = "Store unavailable", body = ErrorView)
    ),
    security(("api_key" = []))
)]
async fn list_calls(
    state: web::Data<ApiState>,
    caller: Caller,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    if let Some(reference) = &query.reference {
        crate::limits::check_len("reference", reference, crate::limits::MAX_ID_BYTES)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    }
    let page_size = query.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
    if page_size == 0 || page_size > MAX_PAGE_SIZE {
        return Err(ApiError::BadRequest(format!(
            "page_size must be between 1 and {MAX_PAGE_SIZE}"
        )));
    }
    let page_token = match query.page_token.as_deref() {
        None | Some("") => None,
        Some(t) => Some(parse_page_token(t)?),
    };
    let filter = CallFilter {
        reference: query.reference,
        workspace: caller.workspace.clone(),
        ..Default::default()
    };
    state.store.sync(READ_SYNC_TIMEOUT).await;
    let (records, next) = state
        .store
        .list_calls(filter, page_size, page_token)
        .await?;
    Ok(HttpResponse::Ok().json(PageView {
        next_page_token: next.map(|t| t.to_string()).unwrap_or_default(),
        result: records.iter().map(CallView::from).collect(),
    }))
}

/// Parses a page token this API gave.
pub fn parse_page_token(t: &str) -> Result<PageToken, ApiError> {
    t.parse::<PageToken>()
        .map_err(|_| ApiError::BadRequest(format!("page_token `{t}` is not a token this API gave")))
}

/// Hangs a live call up.
#[utoipa::path(
    post,
    path = "/calls/{id}/hangup",
    tag = "rest",
    params(("id" = String, Path, description = "The call id (a UUID)")),
    responses(
        (status = 200, description = "The call after the hang-up", body = CallView),
        (status = 400, description = "Not a call id", body = ErrorView), (status = 401, description = "Missing or wrong API key", body = ErrorView), (status = 403, description = "Address not allowed", body = ErrorView), (status = 404, description = "Unknown call", body = ErrorView), (status = 409, description = "The call has already ended", body = ErrorView)
    ),
    security(("api_key" = []))
)]
async fn hangup_call(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let record = hangup_visible(&state, &caller, id).await?;
    Ok(HttpResponse::Ok().json(CallView::from(&record)))
}

/// Whether the switch is up, its call counts and its store writer. Open to everyone.
#[utoipa::path(
    get,
    path = "/health",
    tag = "rest",
    responses((status = 200, description = "Status, call counts, store writer", body = openapi::HealthView))
)]
async fn health(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let stats = state
        .registry
        .send(GetStats)
        .await
        .map_err(|_| ApiError::Unavailable)?;
    let store = state.store.journal.health.view();
    let status = if stats.draining {
        "draining"
    } else if store.status != "ok" {
        "degraded"
    } else {
        "ok"
    };
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "status": status,
        // Whether a load balancer should send this switch new calls.
        "ready": !stats.draining,
        "calls": stats,
        "store": store,
    })))
}

async fn not_found() -> HttpResponse {
    error_json(StatusCode::NOT_FOUND, "no such resource".into())
}

/// The 415 message: what the request said its body was, and the header to send instead
/// (curl's `-d` sends `application/x-www-form-urlencoded` unless told otherwise).
fn content_type_hint(req: &actix_web::HttpRequest) -> String {
    let sent = match req.headers().get(actix_web::http::header::CONTENT_TYPE) {
        None => "no Content-Type".to_owned(),
        Some(value) => match value.to_str() {
            // Echoed back, so only its first characters.
            Ok(text) => format!(
                "Content-Type: {}",
                text.chars().take(64).collect::<String>()
            ),
            Err(_) => "a Content-Type that is not text".to_owned(),
        },
    };
    format!(
        "the request body must be JSON: send the header `Content-Type: application/json` \
         (curl: -H 'Content-Type: application/json'); this request had {sent}"
    )
}

/// Registers the REST routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::QueryConfig::default().error_handler(|err, _req| {
        let message = format!("bad query: {err}");
        actix_web::error::InternalError::from_response(
            err,
            error_json(StatusCode::BAD_REQUEST, message),
        )
        .into()
    }))
    .app_data(
        web::JsonConfig::default()
            .limit(body::MAX_BODY_BYTES)
            .error_handler(|err, req| {
                use actix_web::error::{JsonPayloadError, PayloadError};
                let (status, message) = match &err {
                    JsonPayloadError::OverflowKnownLength { .. }
                    | JsonPayloadError::Overflow { .. }
                    | JsonPayloadError::Payload(PayloadError::Overflow) => (
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!(
                            "the request body is larger than the limit of {} bytes",
                            body::MAX_BODY_BYTES
                        ),
                    ),
                    JsonPayloadError::ContentType => {
                        (StatusCode::UNSUPPORTED_MEDIA_TYPE, content_type_hint(req))
                    }
                    _ => (StatusCode::BAD_REQUEST, format!("bad JSON body: {err}")),
                };
                actix_web::error::InternalError::from_response(err, error_json(status, message))
                    .into()
            }),
    )
    .app_data(web::PayloadConfig::new(body::MAX_BODY_BYTES))
    .app_data(web::PathConfig::default().error_handler(|err, _req| {
        let message = format!("bad path: {err}");
        actix_web::error::InternalError::from_response(
            err,
            error_json(StatusCode::BAD_REQUEST, message),
        )
        .into()
    }))
    .configure(rooms_api::configure)
    .configure(calls_api::configure)
    .configure(events::configure)
    .configure(openapi::configure)
    .configure(phone::configure)
    // Resources, not `route(path, …)`: a resource answers its other methods 405 (as JSON,
    // through `body::BodyGuard`), where a route's method guard falls through to the 404.
    .service(web::resource("/health").route(web::get().to(health)))
    .service(web::resource("/calls").route(web::get().to(list_calls)))
    .service(web::resource("/calls/{id}").route(web::get().to(get_call)))
    .service(web::resource("/calls/{id}/hangup").route(web::post().to(hangup_call)));
}

/// The JSON 404 for paths no route serves.
pub fn default_service() -> actix_web::Route {
    web::to(not_found)
}
