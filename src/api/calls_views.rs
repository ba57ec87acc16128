//! View types of the Calls API (`/api/v1/calls`), in the shapes of its data models.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::views::CallView;
use crate::call::state::{CallRecord, Status};
use crate::store::{RecordingRow, TranscriptRow};

pub(super) fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A participant of a call: the caller and the bot.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParticipantView {
    pub user_id: String,
    pub role: &'static str,
    pub audio: bool,
    pub video: bool,
    pub joined_at: Option<String>,
}

/// A call: `{call_id, type, status, participants, started_at, duration_seconds, recording,
/// transcription}`, plus the full VoIPBIN record under `call`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallsCallView {
    pub call_id: Uuid,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `dialing`, `ringing`, `active`, `ending` or `ended`.
    pub status: &'static str,
    pub participants: Vec<ParticipantView>,
    pub started_at: String,
    pub duration_seconds: i64,
    pub recording: bool,
    pub transcription: bool,
    pub call: CallView,
}

/// The Calls API's status word for a VoIPBIN status.
pub fn status_word(status: Status) -> &'static str {
    match status {
        Status::Dialing => "dialing",
        Status::Ringing => "ringing",
        Status::Progressing => "active",
        Status::Terminating | Status::Canceling => "ending",
        Status::Hangup => "ended",
    }
}

impl From<&CallRecord> for CallsCallView {
    fn from(r: &CallRecord) -> Self {
        let end = r.tm_hangup.unwrap_or_else(Utc::now);
        let duration_seconds = r
            .tm_progressing
            .map(|p| (end - p).num_seconds().max(0))
            .unwrap_or(0);
        let caller = if r.source.target.is_empty() {
            r.reference.clone()
        } else {
            r.source.target.clone()
        };
        CallsCallView {
            call_id: r.id,
            kind: if r.room_id.is_some() {
                "conference"
            } else {
                "voice"
            },
            status: status_word(r.status),
            participants: vec![
                ParticipantView {
                    user_id: caller,
                    role: "caller",
                    audio: true,
                    video: false,
                    joined_at: Some(rfc3339(&r.tm_create)),
                },
                ParticipantView {
                    user_id: r.bot.clone(),
                    role: "bot",
                    audio: true,
                    video: false,
                    joined_at: r.tm_progressing.as_ref().map(rfc3339),
                },
            ],
            started_at: rfc3339(&r.tm_create),
            duration_seconds,
            recording: r.recording_id.is_some(),
            transcription: true,
            call: CallView::from(r),
        }
    }
}

/// A page of calls.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallsPageView {
    pub next_page_token: String,
    pub result: Vec<CallsCallView>,
}

/// A recording and where to download it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordingView {
    pub recording_id: Uuid,
    pub call_id: Uuid,
    pub format: String,
    /// `recording`, `done` or `failed`.
    pub status: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub duration_ms: i64,
    /// Where the file is served once `status` is `done`.
    pub download_url: String,
}

impl From<&RecordingRow> for RecordingView {
    fn from(r: &RecordingRow) -> Self {
        RecordingView {
            recording_id: r.id,
            call_id: r.call_id,
            format: r.format.clone(),
            status: r.status.clone(),
            started_at: rfc3339(&r.started),
            ended_at: r.ended.as_ref().map(rfc3339),
            duration_ms: r.duration_ms,
            download_url: format!("/api/v1/calls/{}/recordings/{}", r.call_id, r.id),
        }
    }
}

/// A call's recordings.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordingsView {
    pub call_id: Uuid,
    pub recordings: Vec<RecordingView>,
}

/// One transcript line.
#[derive(Debug, Serialize, ToSchema)]
pub struct TranscriptEntryView {
    /// `text_bot` or `text_asr`.
    #[serde(rename = "type")]
    pub kind: String,
    pub text: String,
    pub at: String,
}

impl From<&TranscriptRow> for TranscriptEntryView {
    fn from(t: &TranscriptRow) -> Self {
        TranscriptEntryView {
            kind: t.kind.clone(),
            text: t.text.clone(),
            at: rfc3339(&t.at),
        }
    }
}

/// A call's transcript.
#[derive(Debug, Serialize, ToSchema)]
pub struct TranscriptView {
    pub call_id: Uuid,
    pub transcription: bool,
    pub entries: Vec<TranscriptEntryView>,
}
