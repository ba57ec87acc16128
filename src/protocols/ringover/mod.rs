//! The Ringover streamer protocol: a WebSocket at `/ringover/stream` on the HTTP listener,
//! where Ringover's media server connects for each call (the switch is the server).
//!
//! The handler checks the access rule (`[ringover] tokens` or `allow_from`), upgrades, and starts a `RingoverSession` for the socket.
//! The call is created from the first frame (a JSON metadata frame, or the first audio).
//!
//! Reading and writing go through the WebSocket transport (`protocols::ws`): frames are read
//! one at a time with back-pressure, and writes are counted so the session drops audio while
//! more than `[media] max_buffered_ms` worth of bytes wait unsent, and hangs up a peer that
//! took nothing for `[media] write_timeout_ms`.

pub mod convert;
mod session;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::config::Config;
use crate::http_error::{ErrorBody, ErrorView};
use crate::media::samples_for_ms;
use crate::protocols::access::AccessRule;
use crate::protocols::upgrade::{access, admission, refusal_response};
use crate::protocols::ws;
use crate::registry::Registry;
use session::RingoverSession;

/// The ingress name of this protocol, for routes and records.
pub const INGRESS: &str = "ringover";

/// The path Ringover's media server connects to.
pub const PATH: &str = "/ringover/stream";

/// The largest frame (or message assembled from fragments) a media server may send: far
/// more than a metadata frame or a packet of audio needs. Larger frames close the socket
/// with 1009.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// Reading a peer pauses while at least this much (or four times the audio allowance)
/// waits unsent toward it.
const PAUSE_READING_MIN: usize = 256 * 1024;

/// Bytes a base64 JSON `streamAudio` frame takes per byte of PCM, rounded up (4/3 plus
/// framing).
const BASE64_BYTES_PER_PCM_BYTE: usize = 2;

/// What every Ringover session needs: the registry and its settings.
#[derive(Clone)]
pub struct RingoverState {
    pub registry: Addr<Registry>,
    pub settings: Arc<Settings>,
}

/// Ringover settings resolved from the configuration.
#[derive(Debug)]
pub struct Settings {
    /// Who may connect (`[ringover] tokens`, `allow_from`).
    pub access: AccessRule,
    pub in_rate: u32,
    pub rtp: bool,
    pub out_rate: u32,
    /// Encoded bytes allowed to wait unsent before audio is dropped.
    pub max_unsent_bytes: usize,
    pub write_timeout: Duration,
}

impl RingoverState {
    /// The state for `config`, admitting connections by `access`.
    pub fn new(registry: Addr<Registry>, config: &Config, access: AccessRule) -> Self {
        let r = &config.ringover;
        let out_rate = r.out_sample_rate;
        let pcm_bytes = samples_for_ms(out_rate, config.media.max_buffered_ms) * 2;
        RingoverState {
            registry,
            settings: Arc::new(Settings {
                access,
                // RTP carries G.711, which is 8 kHz.
                in_rate: if r.rtp {
                    crate::media::TELEPHONE_RATE
                } else {
                    r.sample_rate
                },
                rtp: r.rtp,
                out_rate,
                max_unsent_bytes: pcm_bytes * BASE64_BYTES_PER_PCM_BYTE,
                write_timeout: Duration::from_millis(config.media.write_timeout_ms),
            }),
        }
    }
}

fn json_error(code: u16, message: String) -> ErrorView {
    ErrorView {
        error: ErrorBody { code, message },
    }
}

/// `GET /ringover/stream[?token=…]`: upgrades to the streamer WebSocket.
#[utoipa::path(
    get,
    path = "/ringover/stream",
    tag = "websocket",
    params(("token" = Option<String>, Query, description = "One of `[ringover] tokens`")),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol (a metadata text frame, then binary L16 audio)"),
        (status = 401, description = "Missing or wrong token"),
        (status = 403, description = "Address not allowed"),
        (status = 503, description = "Full or draining")
    ),
    security((), ("ringover_token" = []))
)]
pub async fn stream(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<RingoverState>,
) -> HttpResponse {
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    if let Err(refused) = access(
        &state.settings.access,
        &req,
        query.get("token").map(String::as_str),
    ) {
        return refusal_response(&refused);
    }
    if let Err(refused) = admission(&state.registry, "ringover").await {
        return refused;
    }
    let registry = state.registry.clone();
    let settings = state.settings.clone();
    let limits = ws::Limits {
        max_frame: MAX_FRAME_BYTES,
        pause_reading_at: (settings.max_unsent_bytes * 4).max(PAUSE_READING_MIN),
    };
    match ws::start(&req, payload, limits, move |outbound| {
        RingoverSession::new(registry, settings, outbound)
    }) {
        Ok(response) => response,
        Err(e) => HttpResponse::BadRequest()
            .json(json_error(400, format!("not a WebSocket upgrade: {e}"))),
    }
}

/// Adds the Ringover route to an actix-web app.
pub fn configure(state: RingoverState) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(state))
            .route(PATH, web::get().to(stream));
    }
}
