//! The JSON error every HTTP answer carries: the REST API's and the WebSocket ingresses'
//! refused upgrades.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde::Serialize;
use utoipa::ToSchema;

/// A JSON error response.
pub fn error_json(status: StatusCode, message: String) -> HttpResponse {
    HttpResponse::build(status).json(ErrorView {
        error: ErrorBody {
            code: status.as_u16(),
            message,
        },
    })
}

/// A JSON error body: `{"error": {"code": 404, "message": "…"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorView {
    pub error: ErrorBody,
}

/// The error: its HTTP status and what went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub code: u16,
    pub message: String,
}
