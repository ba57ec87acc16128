//! Conference rooms in the Calls API: `/api/v1/calls/rooms` (create), `/{room_id}` (get),
//! `/join`, `/leave`, `/participants`, `/participants/{call_id}/mute|unmute|admit`, and the
//! room's recordings.
//! Rooms of another workspace than the API key's are not found, as calls are not.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::Caller;
use super::calls_api::NO_DIALOUT;
use super::calls_views::{rfc3339, RecordingView};
use super::{find_record, parse_id, ApiError, ApiState};
use crate::limits::{self, MAX_NAME_BYTES, MAX_WORKSPACE_BYTES};
use crate::recording::RecordingOptions;
use crate::room::directory::{CreateRoom, FindRoom, ReopenRoom, RoomSpec};
use crate::room::recording::RecordRoom;
use crate::room::{
    Admit, GetRoom, Join, JoinBot, JoinDial, Leave, Mute, Participant, Room, RoomError, RoomKind,
    RoomRecord, RoomSettings, RoomStatus,
};

/// `POST /rooms` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoomBody {
    name: String,
    /// `persistent` (stays open when empty) or `temporary` (the default).
    #[serde(default, rename = "type")]
    #[schema(value_type = Option<String>)]
    kind: Option<RoomKind>,
    /// At most `[rooms] max_participants` (its value when absent).
    #[serde(default)]
    max_participants: Option<u32>,
    #[serde(default)]
    settings: RoomSettings,
    /// The digits a call must give to join (1 to `MAX_PASSWORD_DIGITS` of 0-9): required
    /// with `settings.require_password`, refused without it, never shown back.
    #[serde(default)]
    password: Option<String>,
    /// The room's workspace (an API key bound to a workspace always uses its own).
    #[serde(default)]
    workspace: Option<String>,
}

/// `POST /join` body: exactly one of the three.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinBody {
    /// Move this live call into the room.
    #[serde(default)]
    call_id: Option<String>,
    /// Add this configured bot to the room, as a call of its own.
    #[serde(default)]
    bot: Option<String>,
    /// Dial a new leg into the room: `{"type": "tel", "target": "+1555…"}` through a SIP
    /// trunk, or `{"type": "sip", "target": "sip:alice@pbx.example"}`. It joins once answered.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    destination: Option<crate::call::state::Address>,
    /// The room's password, with `call_id`, for a room with `settings.require_password`
    /// (403 when missing or wrong). Bots are not asked for it.
    #[serde(default)]
    password: Option<String>,
}

/// The longest room password, in digits.
pub const MAX_PASSWORD_DIGITS: usize = 16;

/// Checks a room's password is a short string of digits (what a caller can key).
fn check_password(password: &str) -> Result<(), ApiError> {
    let digits = password.len();
    if digits == 0 || digits > MAX_PASSWORD_DIGITS || !password.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(ApiError::BadRequest(format!(
            "password must be 1 to {MAX_PASSWORD_DIGITS} digits (0-9)"
        )));
    }
    Ok(())
}

/// `POST /leave` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaveBody {
    call_id: String,
}

/// A participant as the Calls API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoomParticipantView {
    pub user_id: String,
    pub call_id: Uuid,
    /// `host`, `participant` or `bot`.
    pub role: &'static str,
    /// `waiting` (in the waiting room: neither hears nor is heard until admitted) or `joined`.
    pub status: &'static str,
    pub audio: bool,
    pub video: bool,
    pub muted: bool,
    pub joined_at: String,
}

impl From<&Participant> for RoomParticipantView {
    fn from(p: &Participant) -> Self {
        RoomParticipantView {
            user_id: p.user_id.clone(),
            call_id: p.call_id,
            role: match p.role {
                crate::room::Role::Host => "host",
                crate::room::Role::Participant => "participant",
                crate::room::Role::Bot => "bot",
            },
            status: if p.waiting { "waiting" } else { "joined" },
            audio: !p.muted,
            video: false,
            muted: p.muted,
            joined_at: super::views::time(&p.joined_at),
        }
    }
}

/// A room as the Calls API shows it (seed data model, plus status and workspace).
#[derive(Debug, Serialize, ToSchema)]
pub struct RoomView {
    pub room_id: Uuid,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub max_participants: u32,
    pub settings: RoomSettings,
    pub current_participants: usize,
    /// `active` or `closed`.
    pub status: &'static str,
    pub workspace: String,
    /// Whether the room is being recorded now, and every recording of it.
    pub recording: bool,
    pub recording_ids: Vec<Uuid>,
    pub created_at: String,
    pub closed_at: Option<String>,
}

impl From<&RoomRecord> for RoomView {
    fn from(r: &RoomRecord) -> Self {
        RoomView {
            room_id: r.id,
            name: r.name.clone(),
            kind: match r.kind {
                RoomKind::Persistent => "persistent",
                RoomKind::Temporary => "temporary",
                RoomKind::Bridge => "bridge",
            },
            max_participants: r.max_participants,
            settings: r.settings.clone(),
            current_participants: r.participants.len(),
            status: match r.status {
                RoomStatus::Active => "active",
                RoomStatus::Closed => "closed",
            },
            workspace: r.workspace.clone(),
            recording: r.recording_id.is_some(),
            recording_ids: r.recording_ids.clone(),
            created_at: super::views::time(&r.tm_create),
            closed_at: r.tm_close.as_ref().map(super::views::time),
        }
    }
}

/// A room recording started or stopped.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoomRecordingControl {
    pub room_id: Uuid,
    pub recording_id: Uuid,
    /// `recording` or `stopped`.
    pub status: &'static str,
}

/// A room's recordings (each one's `call_id` is the room's id): the mixes in `recordings`,
/// the per-participant tracks of those recorded with `tracks` in `tracks`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoomRecordingsView {
    pub room_id: Uuid,
    pub recordings: Vec<RecordingView>,
    pub tracks: Vec<RoomTrackView>,
}

/// One participant's track of a room recording: what that participant said.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoomTrackView {
    /// The recording (of the mix) this track belongs to.
    pub of_recording_id: Uuid,
    /// The participant's call, and who it was.
    pub participant_call_id: Uuid,
    pub user_id: String,
    /// The track itself, downloaded like any room recording.
    pub recording: RecordingView,
}

/// The room's participants.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParticipantsView {
    pub room_id: Uuid,
    pub participants: Vec<RoomParticipantView>,
}

impl From<RoomError> for ApiError {
    fn from(e: RoomError) -> Self {
        match e {
            RoomError::NotFound(_) | RoomError::NotIn { .. } => ApiError::NotFound(e.to_string()),
            RoomError::Full(..) | RoomError::Closed(_) | RoomError::Refused(_) => {
                ApiError::Conflict(e.to_string())
            }
            RoomError::TooMany(_) => ApiError::Unavailable,
            RoomError::Password { .. } => ApiError::Forbidden(e.to_string()),
            RoomError::BadOptions(m) => ApiError::BadRequest(m),
            RoomError::CannotDial(m) => ApiError::BadGateway(m),
        }
    }
}

fn parse_room_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw)
        .map_err(|_| ApiError::BadRequest(format!("`{raw}` is not a room id (a UUID)")))
}

/// The live room `caller` may see, or its stored record.
enum Found {
    Live(actix::Addr<Room>, RoomRecord),
    Stored(RoomRecord),
}

impl Found {
    /// The room's record, live or stored.
    fn record(self) -> RoomRecord {
        match self {
            Found::Live(_, record) | Found::Stored(record) => record,
        }
    }

    /// The open room's address, or `closed()` for a room only the store knows.
    fn live(self, closed: impl FnOnce() -> ApiError) -> Result<actix::Addr<Room>, ApiError> {
        match self {
            Found::Live(addr, _) => Ok(addr),
            Found::Stored(_) => Err(closed()),
        }
    }
}

async fn find_room(state: &ApiState, caller: &Caller, id: Uuid) -> Result<Found, ApiError> {
    let not_found = || ApiError::NotFound(format!("room {id} not found"));
    let visible = |r: &RoomRecord| caller.workspace.as_deref().is_none_or(|w| w == r.workspace);
    let live = state
        .registry
        .send(FindRoom { id })
        .await
        .map_err(|_| ApiError::Unavailable)?;
    if let Some(addr) = live {
        let record = addr.send(GetRoom).await.map_err(|_| not_found())?;
        return if visible(&record) {
            Ok(Found::Live(addr, record))
        } else {
            Err(not_found())
        };
    }
    match state.store.get_room(id).await? {
        Some(record) if visible(&record) => Ok(Found::Stored(record)),
        _ => Err(not_found()),
    }
}

/// The live room, reopening a stored persistent room (after a restart) when needed.
async fn live_room(
    state: &ApiState,
    caller: &Caller,
    id: Uuid,
) -> Result<actix::Addr<Room>, ApiError> {
    match find_room(state, caller, id).await? {
        Found::Live(addr, _) => Ok(addr),
        Found::Stored(record) if record.kind == RoomKind::Persistent => Ok(state
            .registry
            .send(ReopenRoom { record })
            .await
            .map_err(|_| ApiError::Unavailable)??),
        Found::Stored(_) => Err(RoomError::Closed(id).into()),
    }
}

/// Opens a conference room.
#[utoipa::path(
    post,
    path = "/api/v1/calls/rooms",
    tag = "rooms",
    request_body(content = CreateRoomBody, content_type = "application/json"),
    responses(
        (status = 201, description = "The new room", body = RoomView),
        (status = 400, description = "Bad input", body = super::views::ErrorView),
        (status = 401, description = "Missing or wrong API key", body = super::views::ErrorView),
        (status = 409, description = "max_participants over the limit", body = super::views::ErrorView),
        (status = 503, description = "Too many rooms open", body = super::views::ErrorView)
    ),
    security(("api_key" = []))
)]
async fn create_room(
    state: web::Data<ApiState>,
    caller: Caller,
    body: web::Json<CreateRoomBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    limits::check_len("name", &body.name, MAX_NAME_BYTES)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if body.name.trim().is_empty() {
        return Err(ApiError::BadRequest("name must not be empty".into()));
    }
    if body.kind == Some(RoomKind::Bridge) {
        return Err(ApiError::BadRequest(
            "type must be `persistent` or `temporary` (bridges are made by `connect`)".into(),
        ));
    }
    match (&body.password, body.settings.require_password) {
        (Some(password), true) => check_password(password)?,
        (None, true) => {
            return Err(ApiError::BadRequest(
                "settings.require_password needs a `password`".into(),
            ))
        }
        (Some(_), false) => {
            return Err(ApiError::BadRequest(
                "a `password` needs settings.require_password".into(),
            ))
        }
        (None, false) => {}
    }
    if body.max_participants == Some(0) {
        return Err(ApiError::BadRequest(
            "max_participants must be at least 1".into(),
        ));
    }
    let workspace = match (&caller.workspace, body.workspace) {
        (Some(own), _) => own.clone(),
        (None, Some(w)) => {
            limits::check_len("workspace", &w, MAX_WORKSPACE_BYTES)
                .map_err(|e| ApiError::BadRequest(e.to_string()))?;
            w
        }
        (None, None) => String::new(),
    };
    let spec = RoomSpec {
        workspace,
        name: body.name,
        kind: body.kind.unwrap_or(RoomKind::Temporary),
        max_participants: body.max_participants.unwrap_or(0),
        settings: body.settings,
        password: body.password,
    };
    let record = state
        .registry
        .send(CreateRoom { spec })
        .await
        .map_err(|_| ApiError::Unavailable)??;
    Ok(HttpResponse::Created().json(RoomView::from(&record)))
}

/// A room: live, or as the store last saw it.
#[utoipa::path(
    get,
    path = "/api/v1/calls/rooms/{room_id}",
    tag = "rooms",
    params(("room_id" = String, Path, description = "The room id (a UUID)")),
    responses(
        (status = 200, description = "The room", body = RoomView),
        (status = 400, description = "Bad input", body = super::views::ErrorView),
        (status = 404, description = "Unknown room, or another workspace's", body = super::views::ErrorView)
    ),
    security(("api_key" = []))
)]
async fn get_room(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_room_id(&path)?;
    let record = match find_room(&state, &caller, id).await? {
        Found::Live(_, record) => record,
        Found::Stored(mut record) => {
            // Nobody is in a room no actor holds.
            record.participants.clear();
            record
        }
    };
    Ok(HttpResponse::Ok().json(RoomView::from(&record)))
}

/// The answer to joining a call this switch does not hold: 409 when it has ended; in a
/// cluster, when another switch holds it, 409 naming that switch (`node`): a room mixes only
/// calls of its own switch, there is no media path between switches.
async fn elsewhere(
    state: &ApiState,
    call: Uuid,
    room: Uuid,
    record: &crate::call::state::CallRecord,
) -> Result<HttpResponse, ApiError> {
    if record.status != crate::call::state::Status::Hangup {
        if let Ok(Some(owner)) = state.store.owner_of(call).await {
            if owner != state.store.owner {
                return Ok(HttpResponse::Conflict().json(serde_json::json!({
                    "error": {
                        "code": 409,
                        "message": format!(
                            "call {call} is held by switch `{owner}` and room {room} by switch `{}`: \
                             a room takes calls of its own switch only",
                            state.store.owner
                        ),
                        "node": owner,
                    }
                })));
            }
        }
    }
    Err(ApiError::Conflict(format!("call {call} has ended")))
}

/// Puts a live call (`call_id`) or a bot (`bot`) in the room.
#[utoipa::path(
    post,
    path = "/api/v1/calls/rooms/{room_id}/join",
    tag = "rooms",
    params(("room_id" = String, Path, description = "The room id (a UUID)")),
    request_body(content = JoinBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The new participant", body = RoomParticipantView),
        (status = 202, description = "With `destination`: the call dialling it (`room_id`, `call`); it joins once answered"),
        (status = 400, description = "Bad input", body = super::views::ErrorView),
        (status = 403, description = "The room's password is missing or wrong", body = super::views::ErrorView),
        (status = 404, description = "Unknown room or call", body = super::views::ErrorView),
        (status = 409, description = "Room full or closed, or the call cannot join", body = super::views::ErrorView),
        (status = 502, description = "A destination this switch cannot dial", body = super::views::ErrorView)
    ),
    security(("api_key" = []))
)]
async fn join_room(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<JoinBody>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_room_id(&path)?;
    let body = body.into_inner();
    let given = [
        body.call_id.is_some(),
        body.bot.is_some(),
        body.destination.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(ApiError::BadRequest(
            "give exactly one of `call_id`, `bot` or `destination`".into(),
        ));
    }
    if body.password.is_some() && body.call_id.is_none() {
        return Err(ApiError::BadRequest(
            "`password` goes with `call_id` only".into(),
        ));
    }
    if let Some(destination) = body.destination {
        return dial_in(&state, &caller, id, destination).await;
    }
    let room = live_room(&state, &caller, id).await?;
    let joined = if let Some(bot) = body.bot {
        limits::check_len("bot", &bot, MAX_NAME_BYTES)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        room.send(JoinBot { bot, master: None }).await
    } else {
        let raw = body.call_id.unwrap_or_default();
        let call = parse_id(&raw)?;
        let record = find_record(&state, &caller, call).await?;
        let Some(addr) = state
            .registry
            .send(crate::registry::FindCall { id: call })
            .await
            .map_err(|_| ApiError::Unavailable)?
        else {
            return elsewhere(&state, call, id, &record).await;
        };
        let joined = room
            .send(Join {
                call,
                addr,
                user: record.source.target.clone(),
                workspace: record.workspace.clone(),
                password: body.password,
            })
            .await;
        // Both are visible to this key, so say why rather than "not found".
        if let Ok(Err(RoomError::NotFound(_))) = joined {
            return Err(ApiError::Conflict(format!(
                "call {call} is in workspace `{}`, not the room's",
                record.workspace
            )));
        }
        joined
    };
    let participant = joined.map_err(|_| RoomError::Closed(id))??;
    Ok(HttpResponse::Ok().json(RoomParticipantView::from(&participant)))
}

/// `join` with a `destination`: dials it into the room (202 with the new call, `dialing`; it
/// joins once answered), or says why this switch cannot (502).
async fn dial_in(
    state: &ApiState,
    caller: &Caller,
    id: Uuid,
    destination: crate::call::state::Address,
) -> Result<HttpResponse, ApiError> {
    super::calls_api::check_address("destination", &destination)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if destination.target.trim().is_empty() {
        return Err(ApiError::BadRequest("destination.target is empty".into()));
    }
    if !state.config.sip.can_dial(&destination.kind) {
        let why = match destination.kind.as_str() {
            "tel" | "sip" => format!(
                "{NO_DIALOUT} to a `{}` destination ([sip] with a trunk dials phone numbers, [sip] alone sip: URIs)",
                destination.kind
            ),
            other => format!("a `{other}` destination cannot be dialled (use `tel` or `sip`)"),
        };
        return Err(ApiError::BadGateway(format!(
            "cannot dial a destination into room {id}: {why}"
        )));
    }
    let room = live_room(state, caller, id).await?;
    let source = crate::call::state::Address {
        kind: "conference".into(),
        target: id.to_string(),
        ..Default::default()
    };
    let call = room
        .send(JoinDial {
            destination,
            source,
            master: None,
        })
        .await
        .map_err(|_| RoomError::Closed(id))??;
    let record = super::calls_api::call_record(state, call).await?;
    Ok(HttpResponse::Accepted().json(serde_json::json!({
        "room_id": id,
        "call": super::calls_views::CallsCallView::from(&record),
    })))
}

/// Takes a call out of the room: a caller goes back to its bot, a bot's call hangs up.
#[utoipa::path(
    post,
    path = "/api/v1/calls/rooms/{room_id}/leave",
    tag = "rooms",
    params(("room_id" = String, Path, description = "The room id (a UUID)")),
    request_body(content = LeaveBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The participant that left", body = RoomParticipantView),
        (status = 400, description = "Bad input", body = super::views::ErrorView),
        (status = 404, description = "Unknown room, or the call is not in it", body = super::views::ErrorView)
    ),
    security(("api_key" = []))
)]
async fn leave_room(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<LeaveBody>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_room_id(&path)?;
    let call = parse_id(&body.call_id)?;
    let room = find_room(&state, &caller, id)
        .await?
        .live(|| RoomError::NotIn { room: id, call }.into())?;
    let left = room
        .send(Leave { call })
        .await
        .map_err(|_| RoomError::Closed(id))??;
    Ok(HttpResponse::Ok().json(RoomParticipantView::from(&left)))
}

/// Who is in the room now.
#[utoipa::path(
    get,
    path = "/api/v1/calls/rooms/{room_id}/participants",
    tag = "rooms",
    params(("room_id" = String, Path, description = "The room id (a UUID)")),
    responses(
        (status = 200, description = "The participants", body = ParticipantsView),
        (status = 404, description = "Unknown room, or another workspace's", body = super::views::ErrorView)
    ),
    security(("api_key" = []))
)]
async fn participants(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_room_id(&path)?;
    let list = match find_room(&state, &caller, id).await? {
        Found::Live(_, record) => record
            .participants
            .iter()
            .map(RoomParticipantView::from)
            .collect(),
        Found::Stored(_) => Vec::new(),
    };
    Ok(HttpResponse::Ok().json(ParticipantsView {
        room_id: id,
        participants: list,
    }))
}

async fn set_muted(
    state: &ApiState,
    caller: &Caller,
    path: &(String, String),
    muted: bool,
) -> Result<HttpResponse, ApiError> {
    let id = parse_room_id(&path.0)?;
    let call = parse_id(&path.1)?;
    let room = find_room(state, caller, id)
        .await?
        .live(|| RoomError::NotIn { room: id, call }.into())?;
    let p = room
        .send(Mute { call, muted })
        .await
        .map_err(|_| RoomError::Closed(id))??;
    Ok(HttpResponse::Ok().json(RoomParticipantView::from(&p)))
}

/// Mutes a participant: the others stop hearing it.
#[utoipa::path(
    post,
    path = "/api/v1/calls/rooms/{room_id}/participants/{call_id}/mute",
    tag = "rooms",
    params(
        ("room_id" = String, Path, description = "The room id (a UUID)"),
        ("call_id" = String, Path, description = "The participant's call id")
    ),
    responses(
        (status = 200, description = "The participant", body = RoomParticipantView),
        (status = 404, description = "Unknown room, or the call is not in it", body = super::views::ErrorView)
    ),
    security(("api_key" = []))
)]
async fn mute(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    set_muted(&state, &caller, &path, true).await
}

/// Unmutes a participant.
#[utoipa::path(
    post,
    path = "/api/v1/calls/rooms/{room_id}/participants/{call_id}/unmute",
    tag = "rooms",
    params(
        ("room_id" = String, Path, description = "The room id (a UUID)"),
        ("call_id" = String, Path, description = "The participant's call id")
    ),
    responses(
        (status = 200, description = "The participant", body = RoomParticipantView),
        (status = 404, description = "Unknown room, or the call is not in it", body = super::views::ErrorView)
    ),
    security(("api_key" = []))
)]
async fn unmute(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    set_muted(&state, &caller, &path, false).await
}

/// Lets a participant out of the waiting room: from now on it hears the room and is heard.
#[utoipa::path(
    post,
    path = "/api/v1/calls/rooms/{room_id}/participants/{call_id}/admit",
    tag = "rooms",
    params(
        ("room_id" = String, Path, description = "The room id (a UUID)"),
        ("call_id" = String, Path, description = "The participant's call id")
    ),
    responses(
        (status = 200, description = "The participant, joined", body = RoomParticipantView),
        (status = 400, description = "Bad input", body = super::views::ErrorView),
        (status = 404, description = "Unknown room, or the call is not in it", body = super::views::ErrorView)
    ),
    security(("api_key" = []))
)]
async fn admit(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_room_id(&path.0)?;
    let call = parse_id(&path.1)?;
    let room = find_room(&state, &caller, id)
        .await?
        .live(|| RoomError::NotIn { room: id, call }.into())?;
    let p = room
        .send(Admit { call })
        .await
        .map_err(|_| RoomError::Closed(id))??;
    Ok(HttpResponse::Ok().json(RoomParticipantView::from(&p)))
}

/// The live room for a recording request (recordings need its mix).
async fn open_room(
    state: &ApiState,
    caller: &Caller,
    id: Uuid,
) -> Result<actix::Addr<Room>, ApiError> {
    find_room(state, caller, id)
        .await?
        .live(|| ApiError::Conflict(format!("room {id} is not open")))
}

/// Splits a `record/start` body into the recording options and `tracks` (a bool, default
/// false), which is a room's own option.
fn room_recording_body(body: &[u8]) -> Result<(RecordingOptions, bool), ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok((super::calls_api::recording_options(body)?, false));
    }
    let mut value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("bad JSON body: {e}")))?;
    let fields = value
        .as_object_mut()
        .ok_or_else(|| ApiError::BadRequest("the body must be a JSON object".into()))?;
    let tracks = match fields.remove("tracks") {
        None => false,
        Some(serde_json::Value::Bool(b)) => b,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "`tracks` must be true or false, not {other}"
            )))
        }
    };
    let rest = serde_json::to_vec(&value).unwrap_or_default();
    Ok((super::calls_api::recording_options(&rest)?, tracks))
}

/// Starts recording the room's mix (one mono WAV); the body is optional (`duration`;
/// `"tracks": true` also records one WAV per participant of what it said).
#[utoipa::path(
    post,
    path = "/api/v1/calls/rooms/{room_id}/record/start",
    tag = "rooms",
    params(("room_id" = String, Path, description = "The room id (a UUID)")),
    request_body(content = Option<super::openapi::RoomRecordingOptionsSchema>, content_type = "application/json"),
    responses(
        (status = 201, description = "Recording", body = RoomRecordingControl),
        (status = 400, description = "Bad input", body = super::views::ErrorView),
        (status = 404, description = "Unknown room, or another workspace's", body = super::views::ErrorView),
        (status = 409, description = "Not open, already recording, or recording not allowed", body = super::views::ErrorView)
    ),
    security(("api_key" = []))
)]
async fn record_start(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = parse_room_id(&path)?;
    let (options, tracks) = room_recording_body(&body)?;
    let room = open_room(&state, &caller, id).await?;
    let recording_id = room
        .send(RecordRoom {
            start: Some(options),
            tracks,
        })
        .await
        .map_err(|_| RoomError::Closed(id))??;
    Ok(HttpResponse::Created().json(RoomRecordingControl {
        room_id: id,
        recording_id,
        status: "recording",
    }))
}

/// Stops recording the room.
#[utoipa::path(
    post,
    path = "/api/v1/calls/rooms/{room_id}/record/stop",
    tag = "rooms",
    params(("room_id" = String, Path, description = "The room id (a UUID)")),
    responses(
        (status = 200, description = "Stopped", body = RoomRecordingControl),
        (status = 404, description = "Unknown room, or another workspace's", body = super::views::ErrorView),
        (status = 409, description = "Not open or not recording", body = super::views::ErrorView)
    ),
    security(("api_key" = []))
)]
async fn record_stop(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_room_id(&path)?;
    let room = open_room(&state, &caller, id).await?;
    let recording_id = room
        .send(RecordRoom {
            start: None,
            tracks: false,
        })
        .await
        .map_err(|_| RoomError::Closed(id))??;
    Ok(HttpResponse::Ok().json(RoomRecordingControl {
        room_id: id,
        recording_id,
        status: "stopped",
    }))
}

/// The room's recordings.
#[utoipa::path(
    get,
    path = "/api/v1/calls/rooms/{room_id}/recordings",
    tag = "rooms",
    params(("room_id" = String, Path, description = "The room id (a UUID)")),
    responses(
        (status = 200, description = "The recordings", body = RoomRecordingsView),
        (status = 404, description = "Unknown room, or another workspace's", body = super::views::ErrorView)
    ),
    security(("api_key" = []))
)]
async fn recordings(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_room_id(&path)?;
    let record = find_room(&state, &caller, id).await?.record();
    state.store.sync(super::READ_SYNC_TIMEOUT).await;
    let rows = state.store.recordings_of(id).await?;
    let view = |row: &crate::store::RecordingRow| RecordingView {
        // Served under the room, not under a call.
        download_url: format!("/api/v1/calls/rooms/{id}/recordings/{}", row.id),
        ..RecordingView::from(row)
    };
    let mut recordings = Vec::new();
    let mut tracks = Vec::new();
    for row in &rows {
        match record.tracks.iter().find(|t| t.track_id == row.id) {
            Some(t) => tracks.push(RoomTrackView {
                of_recording_id: t.recording_id,
                participant_call_id: t.call_id,
                user_id: t.user_id.clone(),
                recording: view(row),
            }),
            None => recordings.push(view(row)),
        }
    }
    Ok(HttpResponse::Ok().json(RoomRecordingsView {
        room_id: id,
        recordings,
        tracks,
    }))
}

/// One line of a room's transcript.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoomTranscriptEntryView {
    pub call_id: Uuid,
    pub user_id: String,
    /// `text_asr` (a caller said it) or `text_bot` (a bot spoke it).
    #[serde(rename = "type")]
    pub kind: String,
    pub text: String,
    pub at: String,
}

/// A room's transcript (`settings.auto_transcribe`).
#[derive(Debug, Serialize, ToSchema)]
pub struct RoomTranscriptView {
    pub room_id: Uuid,
    pub transcription: bool,
    pub entries: Vec<RoomTranscriptEntryView>,
}

/// What was said in the room while it transcribed (`settings.auto_transcribe`): each
/// participant's lines from the time it was in the room, oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/calls/rooms/{room_id}/transcript",
    tag = "rooms",
    params(("room_id" = String, Path, description = "The room id (a UUID)")),
    responses(
        (status = 200, description = "The transcript", body = RoomTranscriptView),
        (status = 404, description = "Unknown room, or another workspace's", body = super::views::ErrorView)
    ),
    security(("api_key" = []))
)]
async fn transcript(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_room_id(&path)?;
    let record = find_room(&state, &caller, id).await?.record();
    state.store.sync(super::READ_SYNC_TIMEOUT).await;
    let mut entries = Vec::new();
    for stay in &record.transcribed {
        for row in state.store.transcript_of(stay.call_id).await? {
            if row.at >= stay.from && stay.to.is_none_or(|to| row.at <= to) {
                entries.push((
                    row.at,
                    RoomTranscriptEntryView {
                        call_id: stay.call_id,
                        user_id: stay.user_id.clone(),
                        kind: row.kind.clone(),
                        text: row.text.clone(),
                        at: rfc3339(&row.at),
                    },
                ));
            }
        }
    }
    entries.sort_by_key(|(at, _)| *at);
    Ok(HttpResponse::Ok().json(RoomTranscriptView {
        room_id: id,
        transcription: record.settings.auto_transcribe,
        entries: entries.into_iter().map(|(_, e)| e).collect(),
    }))
}

/// A finished room recording as a WAV file.
#[utoipa::path(
    get,
    path = "/api/v1/calls/rooms/{room_id}/recordings/{recording_id}",
    tag = "rooms",
    params(("room_id" = String, Path, description = "The room id (a UUID)"),
        ("recording_id" = String, Path, description = "The recording id (a UUID)")),
    responses(
        (status = 200, description = "The WAV file", content_type = "audio/wav", body = Vec<u8>),
        (status = 404, description = "Unknown room or recording", body = super::views::ErrorView),
        (status = 409, description = "Still recording", body = super::views::ErrorView)
    ),
    security(("api_key" = []))
)]
async fn download(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (room, recording) = path.into_inner();
    let id = parse_room_id(&room)?;
    let rec_id = super::calls_api::parse_recording_id(&recording)?;
    find_room(&state, &caller, id).await?;
    super::calls_api::recording_file(&state, id, rec_id).await
}

/// Registers the room routes. Registered before the Calls API's own scope, whose
/// `/{call_id}` would otherwise take `/rooms`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1/calls/rooms")
            .service(web::resource("").route(web::post().to(create_room)))
            .service(web::resource("/{room_id}").route(web::get().to(get_room)))
            .service(web::resource("/{room_id}/join").route(web::post().to(join_room)))
            .service(web::resource("/{room_id}/leave").route(web::post().to(leave_room)))
            .service(web::resource("/{room_id}/participants").route(web::get().to(participants)))
            .service(
                web::resource("/{room_id}/participants/{call_id}/mute").route(web::post().to(mute)),
            )
            .service(
                web::resource("/{room_id}/participants/{call_id}/unmute")
                    .route(web::post().to(unmute)),
            )
            .service(
                web::resource("/{room_id}/participants/{call_id}/admit")
                    .route(web::post().to(admit)),
            )
            .service(web::resource("/{room_id}/record/start").route(web::post().to(record_start)))
            .service(web::resource("/{room_id}/record/stop").route(web::post().to(record_stop)))
            .service(web::resource("/{room_id}/recordings").route(web::get().to(recordings)))
            .service(web::resource("/{room_id}/transcript").route(web::get().to(transcript)))
            .service(
                web::resource("/{room_id}/recordings/{recording_id}")
                    .route(web::get().to(download)),
            ),
    );
}
