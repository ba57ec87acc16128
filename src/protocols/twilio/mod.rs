//! Twilio Media Streams as a caller protocol: a WebSocket at `/twilio/stream` on the HTTP
//! listener, where Twilio (a `<Connect><Stream url="wss://…/twilio/stream"/>` TwiML verb) or
//! anything streaming the same way connects for each call. The switch stands where a bot would.
//!
//! The handler checks the access rule (`[twilio] tokens` or `allow_from`; a token may also come
//! later, in the `start` message's `customParameters.token`) and, when `[twilio] auth_token` is
//! set, the request's `X-Twilio-Signature`; then it upgrades and starts a `TwilioSession`. The
//! call is created from the `start` message. Reading and writing go through the WebSocket
//! transport (`protocols::ws`), bounded like every other WebSocket.

pub mod client;
pub mod convert;
mod session;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::config::Config;
use crate::http_error::error_json;
use crate::media::samples_for_ms;
use crate::protocols::access::{AccessRule, Grant, Refusal};
use crate::protocols::upgrade::{admission, refusal_response, secret_eq};
use crate::protocols::ws;
use crate::registry::Registry;
use session::TwilioSession;

/// The ingress name of this protocol, for routes and records.
pub const INGRESS: &str = "twilio";

/// The path Twilio connects to.
pub const PATH: &str = "/twilio/stream";

/// The largest message a caller's side may send: Twilio sends 20 ms of audio (about 300
/// bytes) per message; a `start` with many custom parameters stays far below. Larger frames
/// close the socket with 1009.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// Reading a peer pauses while at least this much (or four times the audio allowance) waits
/// unsent toward it.
const PAUSE_READING_MIN: usize = 256 * 1024;

/// Bytes a `media` message takes per sample of mu-law audio, rounded up (4/3 for base64 plus
/// the JSON around it).
const BYTES_PER_SAMPLE: usize = 2;

/// What every Twilio session needs: the registry and its settings.
#[derive(Clone)]
pub struct TwilioState {
    pub registry: Addr<Registry>,
    pub settings: Arc<Settings>,
}

/// Twilio settings resolved from the configuration.
#[derive(Debug)]
pub struct Settings {
    /// Who may connect (`[twilio] tokens`, `allow_from`).
    pub access: AccessRule,
    /// `[twilio] auth_token`: when set, upgrades must carry a valid `X-Twilio-Signature`.
    pub auth_token: Option<String>,
    /// Encoded bytes allowed to wait unsent before audio is dropped.
    pub max_unsent_bytes: usize,
    pub write_timeout: Duration,
}

impl TwilioState {
    /// The state for `config`, admitting connections by `access`.
    pub fn new(registry: Addr<Registry>, config: &Config, access: AccessRule) -> Self {
        let samples = samples_for_ms(convert::SAMPLE_RATE, config.media.max_buffered_ms);
        TwilioState {
            registry,
            settings: Arc::new(Settings {
                access,
                auth_token: config.twilio.auth_token.clone().filter(|t| !t.is_empty()),
                max_unsent_bytes: samples * BYTES_PER_SAMPLE,
                write_timeout: Duration::from_millis(config.media.write_timeout_ms),
            }),
        }
    }
}

/// Whether `given` is the signature Twilio computes for this request: HMAC-SHA1 of the URL
/// it was told to open, keyed with the auth token. The URL is rebuilt from the request's host,
/// path and query; behind a proxy the scheme may differ, so each of `wss`, `ws`, `https` and
/// `http` is tried (every one still needs the auth token).
fn signature_ok(auth_token: &str, req: &HttpRequest, given: &str) -> bool {
    let info = req.connection_info();
    let host = info.host();
    let uri = req.uri();
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    ["wss", "ws", "https", "http"]
        .iter()
        .fold(false, |ok, scheme| {
            let url = format!("{scheme}://{host}{path}");
            ok | secret_eq(&convert::signature(auth_token, &url), given)
        })
}

/// `GET /twilio/stream[?token=…]`: upgrades to the Media Streams WebSocket.
#[utoipa::path(
    get,
    path = "/twilio/stream",
    tag = "websocket",
    params(
        ("token" = Option<String>, Query, description = "One of `[twilio] tokens` (or send it as the `token` custom parameter of `start`)"),
        ("X-Twilio-Signature" = Option<String>, Header, description = "Required when `[twilio] auth_token` is set")
    ),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol (Twilio Media Streams JSON messages)"),
        (status = 401, description = "Wrong token"),
        (status = 403, description = "Address not allowed, or a missing or wrong X-Twilio-Signature"),
        (status = 503, description = "Full or draining")
    ),
    security((), ("twilio_token" = []))
)]
pub async fn stream(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<TwilioState>,
) -> HttpResponse {
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    let settings = state.settings.clone();
    if let Some(auth_token) = &settings.auth_token {
        let given = req
            .headers()
            .get("x-twilio-signature")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if given.is_empty() || !signature_ok(auth_token, &req, given) {
            tracing::info!(peer = ?req.peer_addr(), "Twilio upgrade refused: missing or wrong X-Twilio-Signature");
            return error_json(
                StatusCode::FORBIDDEN,
                "missing or wrong X-Twilio-Signature".into(),
            );
        }
    }
    // Without a token in the URL, the token may come in `start`: the session checks it then.
    let peer = req.peer_addr().map(|a| a.ip());
    let grant = match settings
        .access
        .check(peer, query.get("token").map(String::as_str))
    {
        Ok(grant) => Some(grant),
        Err(Refusal::MissingToken) => None,
        Err(refused) => {
            tracing::info!(?peer, path = req.path(), %refused, "WebSocket upgrade refused");
            return refusal_response(&refused);
        }
    };
    if let Err(refused) = admission(&state.registry, INGRESS).await {
        return refused;
    }
    let registry = state.registry.clone();
    let limits = ws::Limits {
        max_frame: MAX_FRAME_BYTES,
        pause_reading_at: (settings.max_unsent_bytes * 4).max(PAUSE_READING_MIN),
    };
    match ws::start(&req, payload, limits, move |outbound| {
        TwilioSession::new(registry, settings, outbound, grant, peer)
    }) {
        Ok(response) => response,
        Err(e) => error_json(
            StatusCode::BAD_REQUEST,
            format!("not a WebSocket upgrade: {e}"),
        ),
    }
}

/// The grant for a token sent in `start` (`None`: no token there).
pub(crate) fn late_grant(
    settings: &Settings,
    peer: Option<std::net::IpAddr>,
    token: Option<&str>,
) -> Result<Grant, Refusal> {
    settings.access.check(peer, token)
}

/// Adds the Twilio route to an actix-web app.
pub fn configure(state: TwilioState) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(state))
            .route(PATH, web::get().to(stream));
    }
}
