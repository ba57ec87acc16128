//! Checks every WebSocket caller protocol makes before it upgrades: the access rule (token or
//! source network), and whether the switch admits another call (so a full or draining switch
//! answers HTTP 503, not a socket).

use actix::Addr;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use subtle::ConstantTimeEq;

use super::access::{AccessRule, Grant, Refusal};
use super::leg::Refused;
use crate::http_error::error_json;
use crate::registry::{CanAdmit, Registry};

/// Whether `given` equals `secret`, in time that does not depend on where they differ.
pub fn secret_eq(secret: &str, given: &str) -> bool {
    bool::from(secret.as_bytes().ct_eq(given.as_bytes()))
}

/// Whether `given` matches one of `tokens`, comparing against every one in constant time.
pub fn token_ok(tokens: &[String], given: &str) -> bool {
    tokens.iter().fold(false, |ok, t| ok | secret_eq(t, given))
}

/// What `rule` grants the peer of `req` that sent `token` (`None`: no `?token=`); a refusal
/// is logged.
pub fn access(rule: &AccessRule, req: &HttpRequest, token: Option<&str>) -> Result<Grant, Refusal> {
    let peer = req.peer_addr().map(|a| a.ip());
    rule.check(peer, token).inspect_err(|refusal| {
        tracing::info!(?peer, path = req.path(), %refusal, "WebSocket upgrade refused");
    })
}

/// The JSON answer to a refused upgrade: 401 for a missing or wrong token, 403 for an address
/// not allowed.
pub fn refusal_response(refusal: &Refusal) -> HttpResponse {
    match refusal {
        Refusal::WrongToken | Refusal::MissingToken => {
            error_json(StatusCode::UNAUTHORIZED, "missing or wrong token".into())
        }
        Refusal::AddressNotAllowed(_) => error_json(StatusCode::FORBIDDEN, refusal.to_string()),
    }
}

/// `Err(503 JSON)` when the switch is full or draining; the refusal is counted for `ingress`.
pub async fn admission(
    registry: &Addr<Registry>,
    ingress: &'static str,
) -> Result<(), HttpResponse> {
    match registry.send(CanAdmit).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            crate::telemetry::call_refused(ingress, e.metric_reason());
            let refused = Refused::of(&e);
            Err(error_json(refused.http, refused.message))
        }
        Err(_) => Err(error_json(
            StatusCode::SERVICE_UNAVAILABLE,
            "the switch is shutting down".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare() {
        let tokens = vec!["abc".to_string(), "secret".to_string()];
        assert!(token_ok(&tokens, "secret"));
        assert!(!token_ok(&tokens, "secre"));
        assert!(!token_ok(&tokens, ""));
        assert!(!token_ok(&[], "abc"));
    }
}
