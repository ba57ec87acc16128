//! Who may use an ingress: tokens (each optionally bound to one workspace) and source networks
//! (CIDR lists), the decision every ingress makes before it admits a peer, and that decision
//! as a tonic interceptor for the gRPC listener.
//!
//! A rule admits a peer that presents one of its tokens, or that connects from one of its
//! networks. A token, once sent, must be right: a wrong token is refused even from an allowed
//! network. A rule with neither tokens nor networks admits everyone; the configuration only
//! allows that on a loopback listener or when the ingress is marked open on purpose.

use std::net::IpAddr;
use std::sync::Arc;

use thiserror::Error;
use tonic::{Request, Status};

use super::upgrade::secret_eq;
use crate::config::{Cidr, Token};

/// One ingress's access rule.
#[derive(Debug, Clone, Default)]
pub struct AccessRule {
    tokens: Vec<Token>,
    networks: Vec<Cidr>,
}

/// What an admitted peer may do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    /// The only workspace this peer may create calls in (its token's); `None` for any.
    pub workspace: Option<String>,
}

/// Why a peer was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum Refusal {
    /// A token was sent and is not one of the rule's.
    #[error("wrong token")]
    WrongToken,
    /// No token was sent, and the peer's address is not in an allowed network.
    #[error("a token is required")]
    MissingToken,
    /// The rule has networks only, and the peer is in none of them.
    #[error("connections from {} are not allowed", .0.map_or("an unknown address".to_string(), |ip| ip.to_string()))]
    AddressNotAllowed(Option<IpAddr>),
}

impl AccessRule {
    /// A rule admitting a peer with one of `tokens` or from one of `networks`; with neither it
    /// admits everyone.
    pub fn new(tokens: Vec<Token>, networks: Vec<Cidr>) -> AccessRule {
        AccessRule { tokens, networks }
    }

    /// Whether the rule admits everyone.
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty() && self.networks.is_empty()
    }

    /// Whether the rule takes tokens.
    pub fn takes_tokens(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Decides on a peer at `peer` that sent `token` (`None`: sent none). A token is ignored
    /// by a rule that takes none.
    pub fn check(&self, peer: Option<IpAddr>, token: Option<&str>) -> Result<Grant, Refusal> {
        if self.is_open() {
            return Ok(Grant::default());
        }
        if let (Some(given), true) = (token, self.takes_tokens()) {
            return self.token_grant(given).ok_or(Refusal::WrongToken);
        }
        if peer.is_some_and(|ip| self.networks.iter().any(|n| n.contains(ip))) {
            return Ok(Grant::default());
        }
        if self.takes_tokens() {
            Err(Refusal::MissingToken)
        } else {
            Err(Refusal::AddressNotAllowed(peer))
        }
    }

    /// The grant of the token `given` matches. Every token is compared, in constant time, so
    /// the time taken does not tell which token came close.
    fn token_grant(&self, given: &str) -> Option<Grant> {
        let mut found = None;
        for t in &self.tokens {
            if secret_eq(&t.token, given) {
                found = Some(Grant {
                    workspace: t.workspace.clone(),
                });
            }
        }
        found
    }
}

/// A call asked for in a workspace its token may not create calls in.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("this token may only create calls in workspace `{allowed}`, not `{asked}`")]
pub struct WorkspaceRefused {
    pub allowed: String,
    pub asked: String,
}

/// The workspace a new call goes to when its peer asks for `asked` (empty: none) and its token
/// is bound to `bound`: the one asked for when the token is not bound; the token's when none
/// is asked for; a refusal when another is asked for.
pub fn call_workspace(bound: Option<&str>, asked: &str) -> Result<String, WorkspaceRefused> {
    match bound {
        None => Ok(asked.to_owned()),
        Some(allowed) if asked.is_empty() || asked == allowed => Ok(allowed.to_owned()),
        Some(allowed) => Err(WorkspaceRefused {
            allowed: allowed.to_owned(),
            asked: asked.to_owned(),
        }),
    }
}

/// The token of an `Authorization` value `Bearer TOKEN` (the scheme in any case).
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The gRPC listener's rule as a tonic interceptor. A refused request ends with
/// `UNAUTHENTICATED` (missing or wrong token) or `PERMISSION_DENIED` (address not allowed); an
/// admitted one carries its `Grant` in its extensions for the service.
#[derive(Debug, Clone)]
pub struct GrpcAccess {
    rule: Arc<AccessRule>,
}

impl GrpcAccess {
    pub fn new(rule: AccessRule) -> Self {
        GrpcAccess {
            rule: Arc::new(rule),
        }
    }
}

impl tonic::service::Interceptor for GrpcAccess {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let peer = request.remote_addr().map(|a| a.ip());
        // A malformed `authorization` value counts as a wrong token, never as none.
        let token = request
            .metadata()
            .get("authorization")
            .map(|v| v.to_str().ok().and_then(bearer).unwrap_or("").to_owned());
        match self.rule.check(peer, token.as_deref()) {
            Ok(grant) => {
                request.extensions_mut().insert(grant);
                Ok(request)
            }
            Err(refusal) => {
                tracing::info!(?peer, %refusal, "gRPC request refused");
                Err(grpc_status(&refusal, &self.rule))
            }
        }
    }
}

fn grpc_status(refusal: &Refusal, rule: &AccessRule) -> Status {
    match refusal {
        Refusal::WrongToken => {
            Status::unauthenticated("wrong token in `authorization: Bearer TOKEN` metadata")
        }
        Refusal::MissingToken if rule.networks.is_empty() => {
            Status::unauthenticated("send `authorization: Bearer TOKEN` metadata")
        }
        Refusal::MissingToken => Status::unauthenticated(
            "send `authorization: Bearer TOKEN` metadata, or connect from an allowed network",
        ),
        Refusal::AddressNotAllowed(_) => {
            Status::permission_denied(format!("{refusal} on this listener"))
        }
    }
}

/// The grant the gRPC interceptor attached to `request` (everything when there is none, as
/// on a listener without the interceptor).
pub fn grant_of<T>(request: &Request<T>) -> Grant {
    request
        .extensions()
        .get::<Grant>()
        .cloned()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn token(t: &str, workspace: Option<&str>) -> Token {
        Token {
            token: t.into(),
            workspace: workspace.map(str::to_owned),
        }
    }

    #[test]
    fn a_rule_admits_by_token_or_by_network() {
        let local = Some(ip("127.0.0.1"));
        let remote = Some(ip("203.0.113.9"));
        let open = AccessRule::default();
        assert_eq!(open.check(remote, None), Ok(Grant::default()));
        assert_eq!(open.check(remote, Some("anything")), Ok(Grant::default()));

        let tokens = AccessRule::new(vec![token("t", None), token("ta", Some("a"))], vec![]);
        assert_eq!(tokens.check(remote, Some("t")), Ok(Grant::default()));
        assert_eq!(
            tokens.check(remote, Some("ta")),
            Ok(Grant {
                workspace: Some("a".into())
            })
        );
        assert_eq!(tokens.check(local, None), Err(Refusal::MissingToken));
        assert_eq!(tokens.check(local, Some("")), Err(Refusal::WrongToken));
        assert_eq!(tokens.check(local, Some("T")), Err(Refusal::WrongToken));

        let nets = AccessRule::new(vec![], vec![cidr("127.0.0.0/8")]);
        assert_eq!(nets.check(local, None), Ok(Grant::default()));
        assert_eq!(nets.check(local, Some("ignored")), Ok(Grant::default()));
        assert_eq!(
            nets.check(remote, None),
            Err(Refusal::AddressNotAllowed(remote))
        );
        assert_eq!(
            nets.check(None, None),
            Err(Refusal::AddressNotAllowed(None))
        );

        let both = AccessRule::new(vec![token("t", None)], vec![cidr("127.0.0.0/8")]);
        assert_eq!(both.check(local, None), Ok(Grant::default()));
        assert_eq!(both.check(remote, Some("t")), Ok(Grant::default()));
        assert_eq!(both.check(remote, None), Err(Refusal::MissingToken));
        // A token sent must be right, even from an allowed network.
        assert_eq!(both.check(local, Some("x")), Err(Refusal::WrongToken));
    }

    #[test]
    fn bound_tokens_keep_calls_in_their_workspace() {
        assert_eq!(call_workspace(None, "b"), Ok("b".into()));
        assert_eq!(call_workspace(None, ""), Ok("".into()));
        assert_eq!(call_workspace(Some("a"), ""), Ok("a".into()));
        assert_eq!(call_workspace(Some("a"), "a"), Ok("a".into()));
        let err = call_workspace(Some("a"), "b").unwrap_err();
        assert!(err.to_string().contains("`a`") && err.to_string().contains("`b`"));
    }

    #[test]
    fn bearer_values() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("abc"), None);
    }
}
