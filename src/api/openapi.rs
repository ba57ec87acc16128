//! The OpenAPI 3 document of every HTTP route the switch serves, at `GET /openapi.json`, and
//! its Swagger UI at `/docs`.
//!
//! The document is open to everyone, like `/health`: it holds no call data and no secrets,
//! only the shapes of the API. The operations it describes still follow their access rule
//! (the `api_key` scheme: `Authorization: Bearer KEY`; the WebSocket upgrades: `?token=`).
//! `tests/openapi.rs` reads every `.route(` the code registers and fails when one is missing
//! here.

use std::sync::OnceLock;

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_swagger_ui::{Config, SwaggerUi};
use uuid::Uuid;

use super::calls_views::{
    CallsCallView, CallsPageView, ParticipantView, RecordingView, RecordingsView,
    TranscriptEntryView, TranscriptView,
};
use super::views::{CallView, ErrorBody, ErrorView, PageView};

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/openapi.json";

/// The security scheme of the REST and Calls APIs: `[auth] api_keys`.
pub const API_KEY: &str = "api_key";
/// The live-call WebSocket's token (`?token=`, `[auth] live_call_tokens`).
pub const LIVE_CALL_TOKEN: &str = "live_call_token";
/// The Ringover WebSocket's token (`?token=`, `[ringover] tokens`).
pub const RINGOVER_TOKEN: &str = "ringover_token";
/// The Twilio WebSocket's token (`?token=`, `[twilio] tokens`).
pub const TWILIO_TOKEN: &str = "twilio_token";

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchboard",
        description = "A telephony switch that connects phone calls to voicebots: the REST API, \
                       the Calls API, live call events, the WebSocket ingresses and the pages the \
                       switch serves."
    ),
    paths(
        super::health,
        super::metrics::metrics,
        super::list_calls,
        super::get_call,
        super::hangup_call,
        super::events::all_events,
        super::events::call_events,
        super::calls_api::initiate,
        super::calls_api::history,
        super::calls_api::get_call,
        super::calls_api::end_call,
        super::calls_api::record_start,
        super::calls_api::record_stop,
        super::calls_api::recordings,
        super::calls_api::download,
        super::calls_api::transcribe,
        super::calls_api::transcript,
        super::rooms_api::create_room,
        super::rooms_api::get_room,
        super::rooms_api::join_room,
        super::rooms_api::leave_room,
        super::rooms_api::participants,
        super::rooms_api::mute,
        super::rooms_api::unmute,
        super::rooms_api::admit,
        super::rooms_api::record_start,
        super::rooms_api::record_stop,
        super::rooms_api::recordings,
        super::rooms_api::transcript,
        super::rooms_api::download,
        openapi_json,
        docs_redirect,
        super::phone::page,
        super::phone::asset,
        crate::protocols::live_call_ws::upgrade,
        crate::protocols::ringover::stream,
        crate::protocols::twilio::stream,
    ),
    components(schemas(
        CallView,
        PageView,
        ErrorView,
        ErrorBody,
        CallsCallView,
        CallsPageView,
        ParticipantView,
        RecordingView,
        RecordingsView,
        TranscriptEntryView,
        TranscriptView,
        AddressSchema,
        RecordingOptionsSchema,
        RoomRecordingOptionsSchema,
        InitiateFailure,
        RecordingControl,
        TranscribeAnswer,
        super::calls_api::TranscribeBody,
        HealthView,
        super::rooms_api::RoomView,
        super::rooms_api::RoomParticipantView,
        super::rooms_api::ParticipantsView,
        super::rooms_api::CreateRoomBody,
        super::rooms_api::JoinBody,
        super::rooms_api::LeaveBody,
        super::rooms_api::RoomRecordingControl,
        super::rooms_api::RoomRecordingsView,
        super::rooms_api::RoomTranscriptView,
        super::rooms_api::RoomTranscriptEntryView,
        super::rooms_api::RoomTrackView,
        crate::room::RoomSettings,
    )),
    modifiers(&SecuritySchemes),
    tags(
        (name = "rest", description = "VoIPBIN-shaped call resources and health"),
        (name = "calls", description = "The Calls API under /api/v1/calls"),
        (name = "rooms", description = "Conference rooms under /api/v1/calls/rooms"),
        (name = "events", description = "Live call events (Server-Sent Events)"),
        (name = "websocket", description = "Caller ingresses that upgrade to a WebSocket"),
        (name = "pages", description = "This document, its Swagger UI and the softphone page"),
    )
)]
pub struct ApiDoc;

/// Adds the security schemes the operations name.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            API_KEY,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "One of `[auth] api_keys`, as `Authorization: Bearer KEY`. Not needed \
                         from `[auth] api_allow_from` networks or on an open loopback listener.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            LIVE_CALL_TOKEN,
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "token",
                "One of `[auth] live_call_tokens`.",
            ))),
        );
        components.add_security_scheme(
            RINGOVER_TOKEN,
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "token",
                "One of `[ringover] tokens`.",
            ))),
        );
        components.add_security_scheme(
            TWILIO_TOKEN,
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "token",
                "One of `[twilio] tokens` (or the `token` custom parameter of `start`).",
            ))),
        );
    }
}

/// The document, built once.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(ApiDoc::openapi)
}

pub use crate::call::view::AddressSchema;

/// How a recording runs; every field may be left out.
#[derive(Serialize, ToSchema)]
#[schema(as = RecordingOptions)]
pub struct RecordingOptionsSchema {
    /// Only `wav`.
    #[schema(default = "wav")]
    pub format: String,
    /// Longest recording in seconds; 0 means the switch's limit.
    #[schema(default = 0)]
    pub duration: u64,
    /// Stop after this many seconds of caller silence; 0 means never.
    #[schema(default = 0)]
    pub end_of_silence: u64,
    /// Stop when the caller presses one of these keys; empty means never.
    #[schema(default = "")]
    pub end_of_key: String,
}

/// Optional body of a room's `record/start`: a room recording stops by `duration` or the API
/// only.
#[derive(Serialize, ToSchema)]
#[schema(as = RoomRecordingOptions)]
pub struct RoomRecordingOptionsSchema {
    /// Only `wav`.
    #[schema(default = "wav")]
    pub format: String,
    /// Longest recording in seconds; 0 means the switch's limit.
    #[schema(default = 0)]
    pub duration: u64,
    /// Also record one WAV per participant of what that participant said.
    #[schema(default = false)]
    pub tracks: bool,
}

/// `POST /api/v1/calls/initiate` when the call could not be placed: the error and the
/// recorded call.
#[derive(Serialize, ToSchema)]
pub struct InitiateFailure {
    pub error: ErrorBody,
    pub call: CallsCallView,
}

/// A recording started or stopped.
#[derive(Serialize, ToSchema)]
pub struct RecordingControl {
    pub call_id: Uuid,
    pub recording_id: Uuid,
    /// `recording` or `stopped`.
    pub status: String,
}

/// Transcription of a live call's caller started (`transcription: true`) or stopped.
#[derive(Serialize, ToSchema)]
pub struct TranscribeAnswer {
    pub call_id: Uuid,
    pub transcription: bool,
}

/// `GET /health`.
#[derive(Serialize, ToSchema)]
pub struct HealthView {
    /// `ok`, `degraded` (the store is failing) or `draining` (shutting down).
    pub status: String,
    /// Call counts.
    #[schema(value_type = Object)]
    pub calls: serde_json::Value,
    /// The store writer: `status`, `queued`, `written`, `dropped`, `last_error`.
    #[schema(value_type = Object)]
    pub store: serde_json::Value,
}

/// The OpenAPI document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "pages",
    responses((status = 200, description = "This OpenAPI document", content_type = "application/json"))
)]
async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(document())
}

/// Swagger UI for this document (redirects to `/docs/`).
#[utoipa::path(
    get,
    path = "/docs",
    tag = "pages",
    responses((status = 308, description = "Swagger UI lives at `/docs/`"))
)]
async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((actix_web::http::header::LOCATION, "/docs/"))
        .finish()
}

/// Registers `/openapi.json` and the Swagger UI under `/docs/`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(OPENAPI_PATH, web::get().to(openapi_json))
        .route("/docs", web::get().to(docs_redirect))
        .service(SwaggerUi::new("/docs/{_:.*}").config(Config::new([OPENAPI_PATH])));
}
