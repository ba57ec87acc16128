//! The `fetch` action's webhook call: the call's JSON out, the next actions back.
//!
//! The request body is the call as the REST API shows it, plus `variables` (the flow's
//! variables such as `digits`). The webhook answers `{"actions": [...]}` with flow actions,
//! which are validated like a configured flow before they replace the rest of the flow.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use super::actions::{self, Action};
use crate::call::state::CallRecord;
use crate::call::view::CallView;
use crate::http_body::{self as body, BodyError};

/// Largest webhook answer read, in bytes; a longer answer is dropped as soon as it passes
/// this (or refused at once when its Content-Length says so).
pub const MAX_REPLY_BYTES: usize = 1024 * 1024;

/// One webhook request.
#[derive(Debug, Clone)]
pub struct Request {
    pub url: String,
    /// `POST`, `PUT` (with the call's JSON) or `GET` (without a body).
    pub method: String,
    pub timeout: Duration,
}

/// Why a webhook gave no usable actions.
#[derive(Debug, Error)]
pub enum FetchError {
    #[error("webhook unreachable: {0}")]
    Http(#[from] reqwest::Error),
    #[error("webhook answered HTTP {0}")]
    Status(u16),
    #[error("webhook answer refused: {0}")]
    Body(BodyError),
    #[error("webhook answer is not {{\"actions\": [...]}}: {0}")]
    BadReply(String),
    #[error("webhook actions are invalid: {0}")]
    Invalid(String),
}

#[derive(Deserialize)]
struct Reply {
    actions: Vec<Action>,
}

/// Asks the webhook and returns its validated actions.
pub async fn run(
    http: &reqwest::Client,
    request: &Request,
    record: Option<&CallRecord>,
    variables: &HashMap<String, String>,
) -> Result<Vec<Action>, FetchError> {
    let mut body = record
        .and_then(|r| serde_json::to_value(CallView::from(r)).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    if let Some(o) = body.as_object_mut() {
        o.insert("variables".into(), serde_json::json!(variables));
    }
    let builder = match request.method.as_str() {
        "GET" => http.get(&request.url),
        "PUT" => http.put(&request.url).json(&body),
        _ => http.post(&request.url).json(&body),
    };
    let response = builder.timeout(request.timeout).send().await?;
    if !response.status().is_success() {
        return Err(FetchError::Status(response.status().as_u16()));
    }
    let bytes = body::read_limited(response, MAX_REPLY_BYTES)
        .await
        .map_err(|e| match e {
            BodyError::Http(e) => FetchError::Http(e),
            other => FetchError::Body(other),
        })?;
    let reply: Reply =
        serde_json::from_slice(&bytes).map_err(|e| FetchError::BadReply(e.to_string()))?;
    actions::validate(&reply.actions).map_err(FetchError::Invalid)?;
    Ok(reply.actions)
}
