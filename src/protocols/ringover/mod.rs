//! The Ringover streamer protocol: a WebSocket at `/ringover/stream` on the HTTP listener,
//! where Ringover's media server connects for each call (the switch is the server).
//!
//! The handler checks the access rule (`[ringover] tokens` or `allow_from`), upgrades, and starts a `RingoverSession` for the socket.
//! The call is created from the first frame (a JSON metadata frame, or the first audio).
//!
//! Outbound writes are bounded. actix-web-actors encodes frames only while something polls
//! its output stream, and the HTTP server stops polling a response body whose peer stopped
//! reading. So a pump task drains the session's output stream into a queue that the response
//! body reads, counting the bytes between the two (`Outbound`): the session keeps running,
//! drops audio while more than `[media] max_buffered_ms` worth of bytes wait unsent, and hangs
//! up a peer that took nothing for `[media] write_timeout_ms`.

pub mod convert;
mod session;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use futures_util::StreamExt;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::api::views::{ErrorBody, ErrorView};
use crate::config::Config;
use crate::media::samples_for_ms;
use crate::protocols::access::AccessRule;
use crate::protocols::upgrade::{access, admission, refusal_response};
use crate::registry::Registry;
use session::RingoverSession;

/// The ingress name of this protocol, for routes and records.
pub const INGRESS: &str = "ringover";

/// The path Ringover's media server connects to.
pub const PATH: &str = "/ringover/stream";

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

/// Bytes between the session's encoder and the HTTP response body.
#[derive(Debug, Default)]
pub(crate) struct Outbound {
    /// Encoded, not yet taken by the HTTP server.
    pub unsent: AtomicUsize,
    /// Taken by the HTTP server so far.
    pub written: AtomicU64,
}

fn json_error(code: u16, message: String) -> ErrorView {
    ErrorView {
        error: ErrorBody { code, message },
    }
}

/// `GET /ringover/stream[?token=…]`: upgrades to the streamer WebSocket.
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
    if let Err(refused) = admission(&state.registry).await {
        return refused;
    }
    let mut response = match ws::handshake(&req) {
        Ok(r) => r,
        Err(e) => {
            return HttpResponse::BadRequest()
                .json(json_error(400, format!("not a WebSocket upgrade: {e}")))
        }
    };
    let outbound = Arc::new(Outbound::default());
    let session = RingoverSession::new(
        state.registry.clone(),
        state.settings.clone(),
        outbound.clone(),
    );
    let mut frames = Box::pin(ws::WebsocketContext::create(session, payload));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let counted = outbound.clone();
    // The pump: keeps the session running whatever the peer reads. The queue is bounded by
    // the session, which checks `unsent` before it writes audio.
    actix_web::rt::spawn(async move {
        while let Some(item) = frames.next().await {
            if let Ok(bytes) = &item {
                counted.unsent.fetch_add(bytes.len(), Ordering::Relaxed);
            }
            if tx.send(item).is_err() {
                break;
            }
        }
    });
    let body = UnboundedReceiverStream::new(rx).inspect(move |item| {
        if let Ok(bytes) = item {
            outbound.unsent.fetch_sub(bytes.len(), Ordering::Relaxed);
            outbound
                .written
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
    });
    response.streaming(body)
}

/// Adds the Ringover route to an actix-web app.
pub fn configure(state: RingoverState) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(state))
            .route(PATH, web::get().to(stream));
    }
}
