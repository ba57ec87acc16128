//! API keys: `[auth] api_keys`. When any key is configured, every REST and Calls API request
//! needs `Authorization: Bearer KEY`; a key limited to a workspace sees only that workspace's
//! calls. Keys are compared in constant time.

use std::future::{ready, Ready};

use actix_web::{web, FromRequest, HttpRequest};

use super::{ApiError, ApiState};
use crate::call::state::CallRecord;
use crate::config::ApiKey;

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

/// The key among `keys` that `presented` matches. Every key is compared, in constant time, so
/// the time taken does not tell which key came close.
pub fn check_key<'k>(keys: &'k [ApiKey], presented: &str) -> Option<&'k ApiKey> {
    let mut found = None;
    for key in keys {
        if crate::protocols::upgrade::secret_eq(&key.key, presented) {
            found = Some(key);
        }
    }
    found
}

fn authenticate(req: &HttpRequest) -> Result<Caller, ApiError> {
    let Some(state) = req.app_data::<web::Data<ApiState>>() else {
        return Err(ApiError::Unavailable);
    };
    let keys = &state.config.auth.api_keys;
    if keys.is_empty() {
        return Ok(Caller::default());
    }
    let presented = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(ApiError::Unauthorized)?;
    let key = check_key(keys, presented).ok_or(ApiError::Unauthorized)?;
    Ok(Caller {
        workspace: key.workspace.clone(),
    })
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Caller, ApiError>>;

    fn from_request(req: &HttpRequest, _payload: &mut actix_web::dev::Payload) -> Self::Future {
        ready(authenticate(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_keys_match() {
        let keys = vec![
            ApiKey {
                key: "alpha-key".into(),
                workspace: None,
            },
            ApiKey {
                key: "beta-key".into(),
                workspace: Some("beta".into()),
            },
        ];
        assert!(check_key(&keys, "alpha-key").is_some_and(|k| k.workspace.is_none()));
        assert_eq!(
            check_key(&keys, "beta-key").and_then(|k| k.workspace.as_deref()),
            Some("beta")
        );
        for wrong in ["", "alpha", "alpha-key ", "beta-keyx", "ALPHA-KEY"] {
            assert!(check_key(&keys, wrong).is_none(), "{wrong}");
        }
    }
}
