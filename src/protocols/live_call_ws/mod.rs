//! The live-call WebSocket protocol (KnM voicebot gateway protocol; the switch is the server).
//!
//! `GET /live-call/websocket/{call_id}/{customer_phone_number}?token=…` upgrades after the
//! token is checked (401 before the upgrade otherwise). The call is created when
//! `initial_info` arrives, so routes can match on its workspace and hotline. Bot audio goes out
//! paced at real time as 20 ms `audio_output` frames of 8 kHz s16le.

pub mod convert;
mod session;

use std::collections::HashMap;

use actix::Addr;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::api::error_json;
use crate::protocols::upgrade::{admission, token_ok};
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
    pub tokens: Vec<String>,
}

async fn upgrade(
    req: HttpRequest,
    stream: web::Payload,
    path: web::Path<(String, String)>,
    query: web::Query<HashMap<String, String>>,
    state: web::Data<LiveCallWsState>,
) -> Result<HttpResponse, actix_web::Error> {
    let token = query.get("token").map(String::as_str).unwrap_or("");
    if token.is_empty() || !token_ok(&state.tokens, token) {
        return Ok(error_json(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token".into(),
        ));
    }
    if let Err(refused) = admission(&state.registry).await {
        return Ok(refused);
    }
    let (call_id, customer_phone_number) = path.into_inner();
    if let Err(e) = convert::check_url(&call_id, &customer_phone_number) {
        return Ok(error_json(StatusCode::BAD_REQUEST, e.to_string()));
    }
    let session = LiveCallWsSession::new(state.registry.clone(), call_id, customer_phone_number);
    actix_web_actors::ws::WsResponseBuilder::new(session, &req, stream)
        .frame_size(MAX_FRAME_BYTES)
        .start()
}

/// Registers the WebSocket route.
pub fn configure(cfg: &mut web::ServiceConfig, state: LiveCallWsState) {
    cfg.app_data(web::Data::new(state)).route(
        "/live-call/websocket/{call_id}/{customer_phone_number}",
        web::get().to(upgrade),
    );
}
