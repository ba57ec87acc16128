//! API keys: `[auth] api_keys` and `api_allow_from`. When either is configured, every REST and
//! Calls API request needs `Authorization: Bearer KEY` or must come from an allowed network; a
//! key limited to a workspace sees only that workspace's calls. Keys are compared in constant
//! time (`protocols::access`).

use std::future::{ready, Ready};

use actix_web::{web, FromRequest, HttpRequest};

use super::{ApiError, ApiState};
use crate::call::state::CallRecord;
use crate::protocols::access::{bearer, Refusal};

/// Who is asking, once their key was checked.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The only workspace this caller may see; `None` sees every call.
    pub workspace: Option<String>,
}

impl Caller {
    /// Whether this caller may see `record`.
    pub fn sees(&self, record: &CallRecord) -> bool {
        self.workspace
            .as_deref()
            .is_none_or(|w| w == record.workspace)
    }
}

fn authenticate(req: &HttpRequest) -> Result<Caller, ApiError> {
    let Some(state) = req.app_data::<web::Data<ApiState>>() else {
        return Err(ApiError::Unavailable);
    };
    // A malformed `Authorization` value counts as a wrong key, never as none.
    let presented = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .map(|v| v.to_str().ok().and_then(bearer).unwrap_or(""));
    // A request another switch of the cluster forwarded is checked as from its client.
    let peer =
        crate::cluster::forward::forwarded_peer(req).or_else(|| req.peer_addr().map(|a| a.ip()));
    match state.access.check(peer, presented) {
        Ok(grant) => Ok(Caller {
            workspace: grant.workspace,
        }),
        Err(refusal @ Refusal::AddressNotAllowed(_)) => Err(ApiError::Forbidden(format!(
            "{refusal}: send `Authorization: Bearer KEY` or connect from an allowed network"
        ))),
        Err(_) => Err(ApiError::Unauthorized),
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Caller, ApiError>>;

    fn from_request(req: &HttpRequest, _payload: &mut actix_web::dev::Payload) -> Self::Future {
        ready(authenticate(req))
    }
}
