//! Live call events as Server-Sent Events: `GET /events` (every call the caller may see) and
//! `GET /calls/{id}/events` (one call, closed after its `call_hangup`). Event names are
//! VoIPBIN's (`call_created`, `call_ringing`, …, `call_updated`, `call_hangup`); the data is
//! the call in the REST shape. `/events` also carries room events (`room_created`,
//! `room_participant_joined`, `room_participant_left`, `room_updated`, `room_closed`) with the
//! room in the Calls API shape. Both carry `event: transcript` lines as they are said
//! (`{"call_id", "type": "text_bot"|"text_asr", "text", "at"}`).

use std::time::Duration;

use actix_web::{web, HttpResponse};
use bytes::Bytes;
use tokio::sync::broadcast::{error::RecvError, Receiver};
use uuid::Uuid;

use super::auth::Caller;
use super::calls_views::rfc3339;
use super::rooms_api::RoomView;
use super::views::CallView;
use super::{find_record, parse_id, ApiError, ApiState};
use crate::call::state::{CallRecord, Status};
use crate::room::RoomRecord;
use crate::store::journal::{RoomEvent, TranscriptEvent};
use crate::store::CallEvent;

/// A comment line is sent after this much quiet so proxies keep the stream open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One SSE frame.
fn frame(event: &str, record: &CallRecord) -> Bytes {
    let data = serde_json::to_string(&CallView::from(record)).unwrap_or_else(|_| "{}".into());
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

/// One room SSE frame: the room as `GET /api/v1/calls/rooms/{id}` shows it.
fn room_frame(event: &str, record: &RoomRecord) -> Bytes {
    let data = serde_json::to_string(&RoomView::from(record)).unwrap_or_else(|_| "{}".into());
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

/// One transcript SSE frame.
fn transcript_frame(ev: &TranscriptEvent) -> Bytes {
    let data = serde_json::json!({
        "call_id": ev.call_id,
        "type": ev.kind,
        "text": ev.text,
        "at": rfc3339(&ev.at),
    });
    Bytes::from(format!("event: transcript\ndata: {data}\n\n"))
}

/// What one subscriber is following.
struct Feed {
    rx: Receiver<CallEvent>,
    transcripts: Receiver<TranscriptEvent>,
    /// Room events too (`/events` only).
    rooms: Option<Receiver<RoomEvent>>,
    caller: Caller,
    call: Option<Uuid>,
    first: Option<Bytes>,
    done: bool,
}

/// What woke a feed.
enum Next {
    Call(Result<CallEvent, RecvError>),
    Room(Result<RoomEvent, RecvError>),
    Transcript(Result<TranscriptEvent, RecvError>),
    Quiet,
}

/// The next room event, or never when the feed follows no rooms.
async fn next_room(rooms: &mut Option<Receiver<RoomEvent>>) -> Result<RoomEvent, RecvError> {
    match rooms {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn skipped(missed: u64) -> Bytes {
    Bytes::from(format!(
        ": {missed} events skipped (subscriber too slow)\n\n"
    ))
}

impl Feed {
    async fn next(mut self) -> Option<(Result<Bytes, actix_web::Error>, Feed)> {
        if let Some(first) = self.first.take() {
            return Some((Ok(first), self));
        }
        if self.done {
            return None;
        }
        loop {
            // Both receivers are cancel-safe: an event not taken now is taken next time.
            let next = tokio::select! {
                call = self.rx.recv() => Next::Call(call),
                room = next_room(&mut self.rooms) => Next::Room(room),
                line = self.transcripts.recv() => Next::Transcript(line),
                _ = tokio::time::sleep(KEEP_ALIVE) => Next::Quiet,
            };
            match next {
                Next::Quiet => return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), self)),
                Next::Call(Err(RecvError::Closed)) => return None,
                Next::Call(Err(RecvError::Lagged(missed)))
                | Next::Room(Err(RecvError::Lagged(missed)))
                | Next::Transcript(Err(RecvError::Lagged(missed))) => {
                    return Some((Ok(skipped(missed)), self))
                }
                Next::Room(Err(RecvError::Closed)) => self.rooms = None,
                Next::Transcript(Err(RecvError::Closed)) => return None,
                Next::Transcript(Ok(ev)) => {
                    let visible = self
                        .caller
                        .workspace
                        .as_deref()
                        .is_none_or(|w| w == ev.workspace)
                        && self.call.is_none_or(|c| c == ev.call_id);
                    if visible {
                        return Some((Ok(transcript_frame(&ev)), self));
                    }
                }
                Next::Room(Ok(ev)) => {
                    let visible = self
                        .caller
                        .workspace
                        .as_deref()
                        .is_none_or(|w| w == ev.record.workspace);
                    if visible {
                        return Some((Ok(room_frame(ev.event, &ev.record)), self));
                    }
                }
                Next::Call(Ok(ev)) => {
                    if !self.caller.sees(&ev.record) || self.call.is_some_and(|c| c != ev.record.id)
                    {
                        continue;
                    }
                    if self.call.is_some() && ev.record.status == Status::Hangup {
                        self.done = true;
                    }
                    return Some((Ok(frame(ev.event, &ev.record)), self));
                }
            }
        }
    }
}

fn sse(feed: Feed) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .streaming(futures_util::stream::unfold(feed, Feed::next))
}

/// Every call and room event the caller may see, as Server-Sent Events (`event: call_created`,
/// …, `data:` the call as `GET /calls/{id}` shows it; `event: room_participant_joined`, …,
/// `data:` the room as `GET /api/v1/calls/rooms/{id}` shows it).
#[utoipa::path(
    get,
    path = "/events",
    tag = "events",
    responses(
        (status = 200, description = "An endless event stream", content_type = "text/event-stream", body = String),
        (status = 401, description = "Missing or wrong API key", body = super::views::ErrorView),
        (status = 403, description = "Address not allowed", body = super::views::ErrorView)
    ),
    security(("api_key" = []))
)]
async fn all_events(state: web::Data<ApiState>, caller: Caller) -> HttpResponse {
    sse(Feed {
        rx: state.store.journal.subscribe(),
        transcripts: state.store.journal.subscribe_transcripts(),
        rooms: Some(state.store.journal.subscribe_rooms()),
        caller,
        call: None,
        first: Some(Bytes::from_static(b": subscribed\n\n")),
        done: false,
    })
}

/// One call's events; the stream closes after its `call_hangup` (at once for a call that has
/// ended).
#[utoipa::path(
    get,
    path = "/calls/{id}/events",
    tag = "events",
    params(("id" = String, Path, description = "The call id (a UUID)")),
    responses(
        (status = 200, description = "The call's event stream", content_type = "text/event-stream", body = String),
        (status = 400, description = "Not a call id", body = super::views::ErrorView),
        (status = 401, description = "Missing or wrong API key", body = super::views::ErrorView),
        (status = 404, description = "Unknown call", body = super::views::ErrorView)
    ),
    security(("api_key" = []))
)]
async fn call_events(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    // Subscribe before looking, so no change between the two is missed.
    let rx = state.store.journal.subscribe();
    let transcripts = state.store.journal.subscribe_transcripts();
    let record = find_record(&state, &caller, id).await?;
    let ended = record.status == Status::Hangup;
    Ok(sse(Feed {
        rx,
        transcripts,
        rooms: None,
        caller,
        call: Some(id),
        // A call that has ended gets its final record and the stream closes.
        first: Some(if ended {
            frame("call_hangup", &record)
        } else {
            Bytes::from_static(b": subscribed\n\n")
        }),
        done: ended,
    }))
}

/// Registers the event streams.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/events").route(web::get().to(all_events)))
        .service(web::resource("/calls/{id}/events").route(web::get().to(call_events)));
}
