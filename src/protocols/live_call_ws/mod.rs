//! The live-call WebSocket protocol (KnM voicebot gateway protocol; the switch is the server).
//!
//! `GET /live-call/websocket/{call_id}/{customer_phone_number}?token=…` upgrades after the
//! access rule is checked (`[auth] live_call_tokens` or `live_call_allow_from`; 401 or 403
//! before the upgrade otherwise). The call is created when `initial_info` arrives, so routes
//! can match on its workspace and hotline; a token bound to a workspace creates calls only in
//! it. Bot audio goes out
//! paced at real time as 20 ms `audio_output` frames of 8 kHz s16le.

pub mod convert;
mod session;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::http_error::error_json;

use crate::protocols::access::AccessRule;
use crate::protocols::upgrade::{access, admission, refusal_response};
use crate::protocols::ws;
use crate::registry::Registry;
use session::LiveCallWsSession;

/// The ingress name of this protocol, for routes and records.
pub const INGRESS: &str = "live_call_ws";

/// Largest WebSocket frame accepted, in bytes (about 10 s of 48 kHz audio in base64).
pub const MAX_FRAME_BYTES: usize = 1 << 20;

/// What the upgrade handler needs.
#[derive(Clone)]
pub struct LiveCallWsState {
    pub registry: Addr<Registry>,
    /// Who may connect (`[auth] live_call_tokens`, `live_call_allow_from`).
    pub access: Arc<AccessRule>,
    pub settings: Settings,
}

/// Limits of each socket, from `[media]`.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Encoded audio allowed to wait unsent before bot audio is dropped.
    pub max_unsent_audio: usize,
    /// A client that takes nothing this long while frames wait is hung up.
    pub write_timeout: Duration,
}

impl Settings {
    /// From `[media] max_buffered_ms` and `write_timeout_ms`.
    pub fn new(media: &crate::config::MediaConfig) -> Self {
        // An `audio_output` frame of 20 ms at 8 kHz is 320 bytes of PCM in about 520 bytes of
        // JSON: 1.7 bytes a PCM byte.
        let pcm =
            crate::media::samples_for_ms(crate::media::TELEPHONE_RATE, media.max_buffered_ms) * 2;
        Settings {
            max_unsent_audio: pcm * 17 / 10,
            write_timeout: Duration::from_millis(media.write_timeout_ms),
        }
    }

    fn limits(&self) -> ws::Limits {
        ws::Limits {
            max_frame: MAX_FRAME_BYTES,
            pause_reading_at: (self.max_unsent_audio * 4).max(PAUSE_READING_MIN),
        }
    }
}

/// Reading a client pauses while at least this much (or four times the audio allowance)
/// waits unsent toward it.
const PAUSE_READING_MIN: usize = 256 * 1024;

/// Upgrades to the live-call WebSocket (JSON text frames: `initial_info`, `play_audio`,
/// `disconnect`; the switch sends `audio_output`, `signal` and `error`).
#[utoipa::path(
    get,
    path = "/live-call/websocket/{call_id}/{customer_phone_number}",
    tag = "websocket",
    params(
        ("call_id" = String, Path, description = "The client's id for the call (the record's `reference`)"),
        ("customer_phone_number" = String, Path, description = "The caller's number"),
        ("token" = Option<String>, Query, description = "One of `[auth] live_call_tokens`")
    ),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 401, description = "Missing or wrong token"),
        (status = 403, description = "Address not allowed"),
        (status = 503, description = "Full or draining")
    ),
    security((), ("live_call_token" = []))
)]
async fn upgrade(
    req: HttpRequest,
    stream: web::Payload,
    path: web::Path<(String, String)>,
    query: web::Query<HashMap<String, String>>,
    state: web::Data<LiveCallWsState>,
) -> Result<HttpResponse, actix_web::Error> {
    let grant = match access(&state.access, &req, query.get("token").map(String::as_str)) {
        Ok(grant) => grant,
        Err(refusal) => return Ok(refusal_response(&refusal)),
    };
    if let Err(refused) = admission(&state.registry, "live_call_ws").await {
        return Ok(refused);
    }
    let (call_id, customer_phone_number) = path.into_inner();
    if let Err(e) = convert::check_url(&call_id, &customer_phone_number) {
        return Ok(error_json(StatusCode::BAD_REQUEST, e.to_string()));
    }
    let registry = state.registry.clone();
    let settings = state.settings;
    let workspace = grant.workspace;
    ws::start(&req, stream, settings.limits(), move |outbound| {
        LiveCallWsSession::new(
            registry,
            call_id,
            customer_phone_number,
            workspace,
            outbound,
            settings,
        )
    })
    .map_err(actix_web::Error::from)
}

/// Registers the WebSocket route.
pub fn configure(cfg: &mut web::ServiceConfig, state: LiveCallWsState) {
    cfg.app_data(web::Data::new(state)).route(
        "/live-call/websocket/{call_id}/{customer_phone_number}",
        web::get().to(upgrade),
    );
}
