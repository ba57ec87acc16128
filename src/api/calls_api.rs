//! The Calls API under `/api/v1/calls`: initiate, get, end, history, recordings and
//! transcripts. Records come from the registry (live calls) and the store (everything else).

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::auth::Caller;
use super::calls_views::{
    CallsCallView, CallsPageView, RecordingView, RecordingsView, TranscriptEntryView,
    TranscriptView,
};
use super::views::ErrorBody;
use super::{
    find_record, hangup_visible, parse_id, parse_page_token, ApiError, ApiState, READ_SYNC_TIMEOUT,
};
use crate::call::messages::{Record, RecordError, Transcribe};
use crate::call::state::{Address, CallRecord, Direction, EndCause, Status};
use crate::limits::{
    self, LimitError, MAX_ADDRESS_BYTES, MAX_ID_BYTES, MAX_NAME_BYTES, MAX_WORD_BYTES,
    MAX_WORKSPACE_BYTES,
};
use crate::recording::RecordingOptions;
use crate::registry::{AdmitError, CreateCall, FindCall, GetCall, HangupCall, NewCall};
use crate::store::CallFilter;

/// Largest page `GET /history` returns.
const MAX_PAGE_SIZE: usize = 100;
/// Page size when none is asked for.
const DEFAULT_PAGE_SIZE: usize = 20;
/// How long `POST /initiate` waits for the failed dial-out to be recorded.
const INITIATE_SETTLE: Duration = Duration::from_secs(5);
/// How often `POST /initiate` looks at the new call while it settles.
const INITIATE_POLL: Duration = Duration::from_millis(10);
/// Address types a destination may have.
const ADDRESS_TYPES: &[&str] = &["tel", "sip", "agent", "endpoint"];
/// Why an outgoing call cannot be placed today.
pub const NO_DIALOUT: &str = "no gateway of this switch can place outgoing calls";

/// `POST /initiate` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InitiateBody {
    /// Who to call.
    #[schema(value_type = super::openapi::AddressSchema)]
    destination: Address,
    /// Who the call is from.
    #[serde(default)]
    #[schema(value_type = Option<super::openapi::AddressSchema>)]
    source: Option<Address>,
    /// The gateway route to dial through.
    #[serde(default)]
    gateway: Option<String>,
    /// The caller's own id for the call.
    #[serde(default)]
    reference: Option<String>,
    #[serde(default)]
    workspace: Option<String>,
    /// The configured bot (or flow) the answered call runs; absent, the route for ingress
    /// `api` picks it.
    #[serde(default)]
    bot: Option<String>,
}

impl InitiateBody {
    /// Checks every field against its limit; the error names the field and the limit.
    pub fn check_limits(&self) -> Result<(), LimitError> {
        check_address("destination", &self.destination)?;
        if let Some(source) = &self.source {
            check_address("source", source)?;
        }
        let optional = [
            ("gateway", &self.gateway, MAX_ADDRESS_BYTES),
            ("reference", &self.reference, MAX_ID_BYTES),
            ("workspace", &self.workspace, MAX_WORKSPACE_BYTES),
            ("bot", &self.bot, MAX_ID_BYTES),
        ];
        for (field, value, limit) in optional {
            if let Some(value) = value {
                limits::check_len(field, value, limit)?;
            }
        }
        Ok(())
    }
}

/// Checks an address's fields against their limits.
pub(super) fn check_address(prefix: &str, a: &Address) -> Result<(), LimitError> {
    let fields = [
        ("type", &a.kind, MAX_WORD_BYTES),
        ("target", &a.target, MAX_ADDRESS_BYTES),
        ("target_name", &a.target_name, MAX_NAME_BYTES),
        ("name", &a.name, MAX_NAME_BYTES),
        ("detail", &a.detail, MAX_NAME_BYTES),
    ];
    for (field, value, limit) in fields {
        limits::check_len(&format!("{prefix}.{field}"), value, limit)?;
    }
    Ok(())
}

/// Checks `POST /initiate` bodies as the handler does: parses `body` as JSON and checks its
/// limits. The error is the message the API answers with 400.
pub fn check_initiate_body(body: &[u8]) -> Result<(), String> {
    let body: InitiateBody =
        serde_json::from_slice(body).map_err(|e| format!("bad JSON body: {e}"))?;
    body.check_limits().map_err(|e| e.to_string())
}

/// Checks `record/start` options' free-text fields against their limits.
pub fn check_recording_limits(options: &RecordingOptions) -> Result<(), LimitError> {
    limits::check_len("format", &options.format, MAX_WORD_BYTES)?;
    limits::check_keys("end_of_key", &options.end_of_key)
}

/// Places an outgoing call. With `[sip]` on, a `tel` destination goes through a SIP trunk (the
/// one `gateway` names, else the first) and a `sip:` URI is dialled directly: the answer is
/// 200 with the call, `dialing`, which then rings, answers or hangs up. Otherwise nothing can
/// place it: the call is recorded as a failed dial-out and the answer is 502.
#[utoipa::path(
    post,
    path = "/api/v1/calls/initiate",
    tag = "calls",
    request_body(content = InitiateBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The call is being placed (SIP)", body = CallsCallView),
        (status = 502, description = "The call was not placed; the recorded call", body = super::openapi::InitiateFailure),
        (status = 400, description = "Bad input", body = super::views::ErrorView),
        (status = 401, description = "Missing or wrong API key", body = super::views::ErrorView),
        (status = 403, description = "Address not allowed", body = super::views::ErrorView),
        (status = 404, description = "Unknown call, or another workspace's", body = super::views::ErrorView),
        (status = 409, description = "Wrong state for this", body = super::views::ErrorView),
        (status = 422, description = "No route for the call", body = super::views::ErrorView),
        (status = 503, description = "Draining, full or store unavailable", body = super::views::ErrorView)
    ),
    security(("api_key" = []))
)]
async fn initiate(
    state: web::Data<ApiState>,
    caller: Caller,
    body: web::Json<InitiateBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    body.check_limits()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if !ADDRESS_TYPES.contains(&body.destination.kind.as_str()) {
        return Err(ApiError::BadRequest(format!(
            "destination.type `{}` is not one of {ADDRESS_TYPES:?}",
            body.destination.kind
        )));
    }
    if body.destination.target.trim().is_empty() {
        return Err(ApiError::BadRequest("destination.target is empty".into()));
    }
    let workspace = match (&caller.workspace, body.workspace) {
        (Some(mine), Some(asked)) if *mine != asked => {
            return Err(ApiError::NotFound(format!("workspace `{asked}` not found")))
        }
        (Some(mine), _) => mine.clone(),
        (None, asked) => asked.unwrap_or_default(),
    };
    // A SIP trunk (or a `sip:` destination) can place the call.
    let sip_target = state.sip.as_ref().and_then(|d| {
        d.target(&body.destination, body.gateway.as_deref())
            .map(|t| (d.clone(), t))
    });
    if let Some(bot) = &body.bot {
        if !state.config.bots.contains_key(bot) {
            return Err(ApiError::Unprocessable(format!(
                "bot `{bot}` is not configured"
            )));
        }
    }
    let mut call = NewCall::incoming("api", body.reference.unwrap_or_default());
    call.direction = Direction::Outgoing;
    call.bot = body.bot.clone();
    call.destination = body.destination;
    call.source = body.source.unwrap_or_default();
    call.workspace = workspace;
    call.hotline = body.gateway.unwrap_or_default();
    let handle = state
        .registry
        .send(CreateCall { call })
        .await
        .map_err(|_| ApiError::Unavailable)?
        .map_err(|e| match e {
            AdmitError::Full(_) | AdmitError::Draining => ApiError::Unavailable,
            AdmitError::NoRoute { .. } => ApiError::Unprocessable(e.to_string()),
            AdmitError::Chain(_) => ApiError::Conflict(e.to_string()),
        })?;
    if let Some((dialer, target)) = sip_target {
        let source = call_source(&state, handle.id).await?;
        match dialer.dial(target, &handle, &source) {
            Ok(()) => {
                let record = call_record(&state, handle.id).await?;
                return Ok(HttpResponse::Ok().json(CallsCallView::from(&record)));
            }
            Err(detail) => {
                let _ = state
                    .registry
                    .send(HangupCall {
                        id: handle.id,
                        cause: EndCause::Dialout,
                        detail: detail.clone(),
                    })
                    .await;
                let record = settle(&state, handle.id).await?;
                let message = format!("call {} was not placed: {detail}", handle.id);
                return Ok(HttpResponse::build(StatusCode::SERVICE_UNAVAILABLE).json(
                    serde_json::json!({
                        "error": ErrorBody { code: 503, message },
                        "call": CallsCallView::from(&record),
                    }),
                ));
            }
        }
    }
    // Nothing can dial out: the call ends at once as a failed dial-out, and says so.
    let _ = state
        .registry
        .send(HangupCall {
            id: handle.id,
            cause: EndCause::Dialout,
            detail: NO_DIALOUT.into(),
        })
        .await;
    let record = settle(&state, handle.id).await?;
    let message = format!("call {} was not placed: {NO_DIALOUT}", handle.id);
    Ok(
        HttpResponse::build(StatusCode::BAD_GATEWAY).json(serde_json::json!({
            "error": ErrorBody { code: 502, message },
            "call": CallsCallView::from(&record),
        })),
    )
}

/// The record of a live call.
pub(super) async fn call_record(state: &ApiState, id: Uuid) -> Result<CallRecord, ApiError> {
    state
        .registry
        .send(GetCall { id })
        .await
        .map_err(|_| ApiError::Unavailable)?
        .ok_or_else(|| ApiError::NotFound(format!("call {id} not found")))
}

/// Who a new call is from, as recorded.
async fn call_source(state: &ApiState, id: Uuid) -> Result<Address, ApiError> {
    Ok(call_record(state, id).await?.source)
}

/// Waits (briefly) until the call has hung up, and answers its record.
async fn settle(state: &ApiState, id: Uuid) -> Result<CallRecord, ApiError> {
    let deadline = tokio::time::Instant::now() + INITIATE_SETTLE;
    loop {
        let record = state
            .registry
            .send(GetCall { id })
            .await
            .map_err(|_| ApiError::Unavailable)?
            .ok_or_else(|| ApiError::NotFound(format!("call {id} not found")))?;
        if record.status == Status::Hangup || tokio::time::Instant::now() >= deadline {
            return Ok(record);
        }
        tokio::time::sleep(INITIATE_POLL).await;
    }
}

/// A call in the Calls API shape.
#[utoipa::path(
    get,
    path = "/api/v1/calls/{call_id}",
    tag = "calls",
    params(("call_id" = String, Path, description = "The call id (a UUID)")),
    responses(
        (status = 200, description = "The call", body = CallsCallView),
        (status = 400, description = "Bad input", body = super::views::ErrorView),
        (status = 401, description = "Missing or wrong API key", body = super::views::ErrorView),
        (status = 403, description = "Address not allowed", body = super::views::ErrorView),
        (status = 404, description = "Unknown call, or another workspace's", body = super::views::ErrorView)
    ),
    security(("api_key" = []))
)]
async fn get_call(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let record = find_record(&state, &caller, id).await?;
    Ok(HttpResponse::Ok().json(CallsCallView::from(&record)))
}

/// Hangs a live call up.
#[utoipa::path(
    post,
    path = "/api/v1/calls/{call_id}/end",
    tag = "calls",
    params(("call_id" = String, Path, description = "The call id (a UUID)")),
    responses(
        (status = 200, description = "The call after the hang-up", body = CallsCallView),
        (status = 400, description = "Bad input", body = super::views::ErrorView),
        (status = 401, description = "Missing or wrong API key", body = super::views::ErrorView),
        (status = 403, description = "Address not allowed", body = super::views::ErrorView),
        (status = 404, description = "Unknown call, or another workspace's", body = super::views::ErrorView),
        (status = 409, description = "Wrong state for this", body = super::views::ErrorView)
    ),
    security(("api_key" = []))
)]
async fn end_call(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let record = hangup_visible(&state, &caller, id).await?;
    Ok(HttpResponse::Ok().json(CallsCallView::from(&record)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    /// Created at or after (RFC 3339).
    from: Option<String>,
    /// Created before (RFC 3339).
    to: Option<String>,
    /// A status word: `dialing`, `ringing`, `progressing`, `terminating`, `canceling`, `hangup`.
    status: Option<String>,
    /// `incoming` or `outgoing`.
    direction: Option<String>,
    /// Only the call with this reference.
    reference: Option<String>,
    /// Calls per page: 1 to 100, 20 when not given.
    page_size: Option<usize>,
    /// `next_page_token` of the previous page.
    page_token: Option<String>,
}

fn parse_time(field: &str, raw: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| ApiError::BadRequest(format!("{field} `{raw}` is not an RFC 3339 time")))
}

/// Calls, newest first, filtered, a page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/calls/history",
    tag = "calls",
    params(HistoryQuery),
    responses(
        (status = 200, description = "A page of calls", body = CallsPageView),
        (status = 400, description = "Bad input", body = super::views::ErrorView),
        (status = 401, description = "Missing or wrong API key", body = super::views::ErrorView),
        (status = 403, description = "Address not allowed", body = super::views::ErrorView),
        (status = 503, description = "Draining, full or store unavailable", body = super::views::ErrorView)
    ),
    security(("api_key" = []))
)]
async fn history(
    state: web::Data<ApiState>,
    caller: Caller,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    if let Some(reference) = &q.reference {
        limits::check_len("reference", reference, MAX_ID_BYTES)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    }
    let page_size = q.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
    if page_size == 0 || page_size > MAX_PAGE_SIZE {
        return Err(ApiError::BadRequest(format!(
            "page_size must be between 1 and {MAX_PAGE_SIZE}"
        )));
    }
    let status = q
        .status
        .as_deref()
        .map(|s| {
            Status::parse(s)
                .ok_or_else(|| ApiError::BadRequest(format!("status `{s}` is not a call status")))
        })
        .transpose()?;
    let direction = match q.direction.as_deref() {
        None => None,
        Some("incoming") => Some(Direction::Incoming),
        Some("outgoing") => Some(Direction::Outgoing),
        Some(d) => {
            return Err(ApiError::BadRequest(format!(
                "direction `{d}` is not incoming or outgoing"
            )))
        }
    };
    let from = q
        .from
        .as_deref()
        .map(|t| parse_time("from", t))
        .transpose()?;
    let to = q.to.as_deref().map(|t| parse_time("to", t)).transpose()?;
    if let (Some(f), Some(t)) = (from, to) {
        if f >= t {
            return Err(ApiError::BadRequest("from must be before to".into()));
        }
    }
    let token = match q.page_token.as_deref() {
        None | Some("") => None,
        Some(t) => Some(parse_page_token(t)?),
    };
    let filter = CallFilter {
        reference: q.reference,
        workspace: caller.workspace.clone(),
        status,
        direction,
        from,
        to,
    };
    state.store.sync(READ_SYNC_TIMEOUT).await;
    let (records, next) = state.store.list_calls(filter, page_size, token).await?;
    Ok(HttpResponse::Ok().json(CallsPageView {
        next_page_token: next.map(|t| t.to_string()).unwrap_or_default(),
        result: records.iter().map(CallsCallView::from).collect(),
    }))
}

/// Sends `Record` to a live call `caller` may see.
/// The actor of a call the caller may see and that is not ending (409 otherwise).
async fn live_call(
    state: &ApiState,
    caller: &Caller,
    id: Uuid,
) -> Result<actix::Addr<crate::call::CallActor>, ApiError> {
    let record = find_record(state, caller, id).await?;
    state
        .registry
        .send(FindCall { id })
        .await
        .map_err(|_| ApiError::Unavailable)?
        .filter(|_| !record.status.is_ending())
        .ok_or_else(|| ApiError::Conflict(format!("call {id} has ended")))
}

async fn record_control(
    state: &ApiState,
    caller: &Caller,
    id: Uuid,
    start: Option<RecordingOptions>,
) -> Result<Uuid, ApiError> {
    let call = live_call(state, caller, id).await?;
    call.send(Record { start })
        .await
        .map_err(|_| ApiError::Conflict(format!("call {id} has ended")))?
        .map_err(|e| match e {
            RecordError::BadOptions(m) => ApiError::BadRequest(m),
            other => ApiError::Conflict(other.to_string()),
        })
}

/// The options of a `record/start` body (empty: the defaults), checked against their limits.
pub(super) fn recording_options(body: &[u8]) -> Result<RecordingOptions, ApiError> {
    let options = if body.iter().all(u8::is_ascii_whitespace) {
        RecordingOptions {
            format: "wav".into(),
            ..Default::default()
        }
    } else {
        serde_json::from_slice::<RecordingOptions>(body)
            .map_err(|e| ApiError::BadRequest(format!("bad JSON body: {e}")))?
    };
    check_recording_limits(&options).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok(options)
}

/// Starts recording a live call; the body is optional.
#[utoipa::path(
    post,
    path = "/api/v1/calls/{call_id}/record/start",
    tag = "calls",
    params(("call_id" = String, Path, description = "The call id (a UUID)")),
    request_body(content = Option<super::openapi::RecordingOptionsSchema>, content_type = "application/json"),
    responses(
        (status = 201, description = "Recording", body = super::openapi::RecordingControl),
        (status = 400, description = "Bad input", body = super::views::ErrorView),
        (status = 401, description = "Missing or wrong API key", body = super::views::ErrorView),
        (status = 403, description = "Address not allowed", body = super::views::ErrorView),
        (status = 404, description = "Unknown call, or another workspace's", body = super::views::ErrorView),
        (status = 409, description = "Wrong state for this", body = super::views::ErrorView)
    ),
    security(("api_key" = []))
)]
async fn record_start(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let options = recording_options(&body)?;
    let recording_id = record_control(&state, &caller, id, Some(options)).await?;
    Ok(HttpResponse::Created().json(serde_json::json!({
        "call_id": id,
        "recording_id": recording_id,
        "status": "recording",
    })))
}

/// Stops the call's recording.
#[utoipa::path(
    post,
    path = "/api/v1/calls/{call_id}/record/stop",
    tag = "calls",
    params(("call_id" = String, Path, description = "The call id (a UUID)")),
    responses(
        (status = 200, description = "Stopped", body = super::openapi::RecordingControl),
        (status = 400, description = "Bad input", body = super::views::ErrorView),
        (status = 401, description = "Missing or wrong API key", body = super::views::ErrorView),
        (status = 403, description = "Address not allowed", body = super::views::ErrorView),
        (status = 404, description = "Unknown call, or another workspace's", body = super::views::ErrorView),
        (status = 409, description = "Wrong state for this", body = super::views::ErrorView)
    ),
    security(("api_key" = []))
)]
async fn record_stop(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let recording_id = record_control(&state, &caller, id, None).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "call_id": id,
        "recording_id": recording_id,
        "status": "stopped",
    })))
}

/// The call's recordings and where to download them.
#[utoipa::path(
    get,
    path = "/api/v1/calls/{call_id}/recordings",
    tag = "calls",
    params(("call_id" = String, Path, description = "The call id (a UUID)")),
    responses(
        (status = 200, description = "The recordings", body = RecordingsView),
        (status = 400, description = "Bad input", body = super::views::ErrorView),
        (status = 401, description = "Missing or wrong API key", body = super::views::ErrorView),
        (status = 403, description = "Address not allowed", body = super::views::ErrorView),
        (status = 404, description = "Unknown call, or another workspace's", body = super::views::ErrorView),
        (status = 503, description = "Draining, full or store unavailable", body = super::views::ErrorView)
    ),
    security(("api_key" = []))
)]
async fn recordings(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    find_record(&state, &caller, id).await?;
    state.store.sync(READ_SYNC_TIMEOUT).await;
    let rows = state.store.recordings_of(id).await?;
    Ok(HttpResponse::Ok().json(RecordingsView {
        call_id: id,
        recordings: rows.iter().map(RecordingView::from).collect(),
    }))
}

/// A finished recording as a WAV file.
#[utoipa::path(
    get,
    path = "/api/v1/calls/{call_id}/recordings/{recording_id}",
    tag = "calls",
    params(("call_id" = String, Path, description = "The call id (a UUID)"),
        ("recording_id" = String, Path, description = "The recording id (a UUID)")),
    responses(
        (status = 200, description = "The WAV file", content_type = "audio/wav", body = Vec<u8>),
        (status = 400, description = "Bad input", body = super::views::ErrorView),
        (status = 401, description = "Missing or wrong API key", body = super::views::ErrorView),
        (status = 403, description = "Address not allowed", body = super::views::ErrorView),
        (status = 404, description = "Unknown call, or another workspace's", body = super::views::ErrorView),
        (status = 409, description = "Wrong state for this", body = super::views::ErrorView)
    ),
    security(("api_key" = []))
)]
async fn download(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (call, recording) = path.into_inner();
    let id = parse_id(&call)?;
    let rec_id = parse_recording_id(&recording)?;
    find_record(&state, &caller, id).await?;
    recording_file(&state, id, rec_id).await
}

/// Parses a recording id from a path.
pub(super) fn parse_recording_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw)
        .map_err(|_| ApiError::BadRequest(format!("`{raw}` is not a recording id (a UUID)")))
}

/// The WAV file of recording `rec_id` of `owner` (a call or a room the caller may see).
pub(super) async fn recording_file(
    state: &ApiState,
    owner: Uuid,
    rec_id: Uuid,
) -> Result<HttpResponse, ApiError> {
    state.store.sync(READ_SYNC_TIMEOUT).await;
    let row = state
        .store
        .recordings_of(owner)
        .await?
        .into_iter()
        .find(|r| r.id == rec_id)
        .ok_or_else(|| ApiError::NotFound(format!("recording {rec_id} not found")))?;
    if row.status != "done" {
        return Err(ApiError::Conflict(format!(
            "recording {rec_id} is {}, not ready to download",
            row.status
        )));
    }
    let bytes = tokio::fs::read(&row.path).await.map_err(|e| {
        ApiError::NotFound(format!("recording {rec_id} file is not available: {e}"))
    })?;
    Ok(HttpResponse::Ok()
        .content_type("audio/wav")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"{rec_id}.wav\""),
        ))
        .body(bytes))
}

/// The body of `transcribe`: `{"action": "start"|"stop", "language": "en-US"}`; an empty
/// body starts.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TranscribeBody {
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub language: Option<String>,
}

/// Starts or stops transcribing the caller's side of a live call: each utterance becomes a
/// `text_asr` line of the transcript and an `event: transcript` on the event streams.
#[utoipa::path(
    post,
    path = "/api/v1/calls/{call_id}/transcribe",
    tag = "calls",
    params(("call_id" = String, Path, description = "The call id (a UUID)")),
    request_body(content = Option<TranscribeBody>, content_type = "application/json"),
    responses(
        (status = 200, description = "Started or stopped", body = super::openapi::TranscribeAnswer),
        (status = 400, description = "Bad input", body = super::views::ErrorView),
        (status = 401, description = "Missing or wrong API key", body = super::views::ErrorView),
        (status = 403, description = "Address not allowed", body = super::views::ErrorView),
        (status = 404, description = "Unknown call, or another workspace's", body = super::views::ErrorView),
        (status = 409, description = "Wrong state for this", body = super::views::ErrorView),
        (status = 503, description = "Speech recognition is off or not installed", body = super::views::ErrorView)
    ),
    security(("api_key" = []))
)]
async fn transcribe(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let body: TranscribeBody = if body.iter().all(u8::is_ascii_whitespace) {
        TranscribeBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("bad JSON body: {e}")))?
    };
    let start = match body.action.as_deref().unwrap_or("start") {
        "start" => true,
        "stop" => false,
        other => {
            return Err(ApiError::BadRequest(format!(
                "action `{other}` is not `start` or `stop`"
            )))
        }
    };
    let language = match body.language {
        Some(l)
            if l.is_empty()
                || l.len() > 16
                || !l
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
        {
            return Err(ApiError::BadRequest(format!(
                "language `{l}` is not a language tag"
            )))
        }
        Some(l) => l,
        None => state.asr.config().language.clone(),
    };
    let call = live_call(&state, &caller, id).await?;
    if start {
        state
            .asr
            .ready()
            .await
            .map_err(|e| ApiError::NotInstalled(e.to_string()))?;
    }
    call.send(Transcribe {
        language: start.then_some(language),
    })
    .await
    .map_err(|_| ApiError::Conflict(format!("call {id} has ended")))?
    .map_err(ApiError::Conflict)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "call_id": id, "transcription": start })))
}

/// The call's transcript: what the bot said and what was heard.
#[utoipa::path(
    get,
    path = "/api/v1/calls/{call_id}/transcript",
    tag = "calls",
    params(("call_id" = String, Path, description = "The call id (a UUID)")),
    responses(
        (status = 200, description = "The transcript", body = TranscriptView),
        (status = 400, description = "Bad input", body = super::views::ErrorView),
        (status = 401, description = "Missing or wrong API key", body = super::views::ErrorView),
        (status = 403, description = "Address not allowed", body = super::views::ErrorView),
        (status = 404, description = "Unknown call, or another workspace's", body = super::views::ErrorView),
        (status = 503, description = "Draining, full or store unavailable", body = super::views::ErrorView)
    ),
    security(("api_key" = []))
)]
async fn transcript(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    find_record(&state, &caller, id).await?;
    state.store.sync(READ_SYNC_TIMEOUT).await;
    let rows = state.store.transcript_of(id).await?;
    Ok(HttpResponse::Ok().json(TranscriptView {
        call_id: id,
        transcription: true,
        entries: rows.iter().map(TranscriptEntryView::from).collect(),
    }))
}

/// Registers the Calls API routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1/calls")
            .service(web::resource("/initiate").route(web::post().to(initiate)))
            .service(web::resource("/history").route(web::get().to(history)))
            .service(web::resource("/{call_id}").route(web::get().to(get_call)))
            .service(web::resource("/{call_id}/end").route(web::post().to(end_call)))
            .service(web::resource("/{call_id}/record/start").route(web::post().to(record_start)))
            .service(web::resource("/{call_id}/record/stop").route(web::post().to(record_stop)))
            .service(web::resource("/{call_id}/recordings").route(web::get().to(recordings)))
            .service(
                web::resource("/{call_id}/recordings/{recording_id}")
                    .route(web::get().to(download)),
            )
            .service(web::resource("/{call_id}/transcribe").route(web::post().to(transcribe)))
            .service(web::resource("/{call_id}/transcript").route(web::get().to(transcript))),
    );
}
