//! The REST API: VoIPBIN-shaped call resources under `/calls`, and health.

pub mod views;

use actix::Addr;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use serde::Deserialize;
use thiserror::Error;
use uuid::Uuid;

use crate::call::state::EndCause;
use crate::registry::{GetCall, GetStats, HangupCall, HangupError, ListCalls, Registry};
use views::{CallView, ErrorBody, ErrorView, PageView};

/// Largest page `GET /calls` returns.
const MAX_PAGE_SIZE: usize = 100;
/// Page size when none is asked for.
const DEFAULT_PAGE_SIZE: usize = 10;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub registry: Addr<Registry>,
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
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        error_json(self.status_code(), self.to_string())
    }
}

/// A JSON error response.
pub fn error_json(status: StatusCode, message: String) -> HttpResponse {
    HttpResponse::build(status).json(ErrorView {
        error: ErrorBody {
            code: status.as_u16(),
            message,
        },
    })
}

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw)
        .map_err(|_| ApiError::BadRequest(format!("`{raw}` is not a call id (a UUID)")))
}

async fn get_call(
    state: web::Data<ApiState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let record = state
        .registry
        .send(GetCall { id })
        .await
        .map_err(|_| ApiError::Unavailable)?
        .ok_or_else(|| ApiError::NotFound(format!("call {id} not found")))?;
    Ok(HttpResponse::Ok().json(CallView::from(&record)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    page_size: Option<usize>,
    page_token: Option<String>,
    reference: Option<String>,
}

async fn list_calls(
    state: web::Data<ApiState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let page_size = query.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
    if page_size == 0 || page_size > MAX_PAGE_SIZE {
        return Err(ApiError::BadRequest(format!(
            "page_size must be between 1 and {MAX_PAGE_SIZE}"
        )));
    }
    let page_token = match query.page_token.as_deref() {
        None | Some("") => None,
        Some(t) => Some(t.parse::<u64>().map_err(|_| {
            ApiError::BadRequest(format!("page_token `{t}` is not a token this API gave"))
        })?),
    };
    let page = state
        .registry
        .send(ListCalls {
            page_size,
            page_token,
            reference: query.reference,
        })
        .await
        .map_err(|_| ApiError::Unavailable)?;
    Ok(HttpResponse::Ok().json(PageView {
        next_page_token: page
            .next_page_token
            .map(|t| t.to_string())
            .unwrap_or_default(),
        result: page.result.iter().map(CallView::from).collect(),
    }))
}

async fn hangup_call(
    state: web::Data<ApiState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
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
            HangupError::NotFound(_) => ApiError::NotFound(e.to_string()),
            HangupError::Ended(_) => ApiError::Conflict(e.to_string()),
        })?;
    let record = state
        .registry
        .send(GetCall { id })
        .await
        .map_err(|_| ApiError::Unavailable)?
        .ok_or_else(|| ApiError::NotFound(format!("call {id} not found")))?;
    Ok(HttpResponse::Ok().json(CallView::from(&record)))
}

async fn health(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let stats = state
        .registry
        .send(GetStats)
        .await
        .map_err(|_| ApiError::Unavailable)?;
    let status = if stats.draining { "draining" } else { "ok" };
    Ok(HttpResponse::Ok().json(serde_json::json!({ "status": status, "calls": stats })))
}

async fn not_found() -> HttpResponse {
    error_json(StatusCode::NOT_FOUND, "no such resource".into())
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
    .route("/health", web::get().to(health))
    .route("/calls", web::get().to(list_calls))
    .route("/calls/{id}", web::get().to(get_call))
    .route("/calls/{id}/hangup", web::post().to(hangup_call));
}

/// The JSON 404 for paths no route serves.
pub fn default_service() -> actix_web::Route {
    web::to(not_found)
}
