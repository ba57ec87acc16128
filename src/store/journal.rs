//! The journal: where calls and the registry hand their changes to the store and to live
//! event subscribers, without ever waiting on the database.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, mpsc, oneshot};
use uuid::Uuid;

use super::queries::{RecordingRow, TranscriptRow};
use super::writer::{Health, Write};
use crate::call::state::CallRecord;
use crate::room::RoomRecord;

/// Live events kept for slow subscribers; a subscriber further behind skips ahead.
const EVENT_BACKLOG: usize = 1024;

/// One change of one call, as live subscribers (Server-Sent Events) see it.
#[derive(Debug, Clone)]
pub struct CallEvent {
    /// The VoIPBIN event name: `call_created`, `call_ringing`, …, `call_hangup`.
    pub event: &'static str,
    pub record: Arc<CallRecord>,
    /// Relayed from another switch of the cluster (`cluster`): shown to live subscribers
    /// here, never sent on again.
    pub relayed: bool,
}

/// One change of one room, as live subscribers see it.
#[derive(Debug, Clone)]
pub struct RoomEvent {
    /// `room_created`, `room_participant_joined`, `room_participant_left`, `room_updated`,
    /// `room_closed`.
    pub event: &'static str,
    pub record: Arc<RoomRecord>,
    /// Relayed from another switch of the cluster.
    pub relayed: bool,
}

/// One transcript line of one call, as live subscribers see it (`event: transcript`).
#[derive(Debug, Clone)]
pub struct TranscriptEvent {
    pub call_id: Uuid,
    pub workspace: String,
    /// `text_bot` or `text_asr`.
    pub kind: &'static str,
    pub text: String,
    pub at: DateTime<Utc>,
    /// Relayed from another switch of the cluster.
    pub relayed: bool,
}

/// A cheap handle to the store's writer and the live event feed.
#[derive(Clone)]
pub struct Journal {
    writes: Option<mpsc::Sender<Write>>,
    events: broadcast::Sender<CallEvent>,
    rooms: broadcast::Sender<RoomEvent>,
    transcripts: broadcast::Sender<TranscriptEvent>,
    seq: Arc<AtomicU64>,
    pub health: Arc<Health>,
}

impl Journal {
    /// A journal feeding `writes`.
    pub(super) fn new(writes: mpsc::Sender<Write>, health: Arc<Health>) -> Journal {
        Journal {
            writes: Some(writes),
            events: broadcast::channel(EVENT_BACKLOG).0,
            rooms: broadcast::channel(EVENT_BACKLOG).0,
            transcripts: broadcast::channel(EVENT_BACKLOG).0,
            seq: Arc::new(AtomicU64::new(0)),
            health,
        }
    }

    /// A journal that writes nothing (no store configured, unit tests).
    pub fn disabled() -> Journal {
        Journal {
            writes: None,
            events: broadcast::channel(EVENT_BACKLOG).0,
            rooms: broadcast::channel(EVENT_BACKLOG).0,
            transcripts: broadcast::channel(EVENT_BACKLOG).0,
            seq: Arc::new(AtomicU64::new(0)),
            health: Arc::new(Health::default()),
        }
    }

    fn queue(&self, write: Write) {
        let Some(writes) = &self.writes else { return };
        if let Err(e) = writes.try_send(write) {
            let dropped = self.health.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            crate::telemetry::store_dropped();
            tracing::error!(dropped, error = %e, "store write dropped: the writer's queue is full");
        }
    }

    /// A call changed: write its row and an event row, and tell live subscribers.
    pub fn call_changed(&self, record: &CallRecord, event: &'static str) {
        let record = Arc::new(record.clone());
        let _ = self.events.send(CallEvent {
            event,
            record: record.clone(),
            relayed: false,
        });
        self.queue(Write::Call {
            record,
            event,
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            at: Utc::now(),
        });
    }

    /// A room changed: write its row and tell live subscribers.
    pub fn room_changed(&self, record: &RoomRecord, event: &'static str) {
        let record = Arc::new(record.clone());
        let _ = self.rooms.send(RoomEvent {
            event,
            record: record.clone(),
            relayed: false,
        });
        self.queue(Write::Room(record));
    }

    /// Live transcript lines from now on.
    pub fn subscribe_transcripts(&self) -> broadcast::Receiver<TranscriptEvent> {
        self.transcripts.subscribe()
    }

    /// Live room events from now on.
    pub fn subscribe_rooms(&self) -> broadcast::Receiver<RoomEvent> {
        self.rooms.subscribe()
    }

    /// A line of a call's transcript (`text_bot` or `text_asr`) in `workspace`.
    pub fn transcript(
        &self,
        call_id: Uuid,
        workspace: &str,
        kind: &'static str,
        text: String,
        at: DateTime<Utc>,
    ) {
        let _ = self.transcripts.send(TranscriptEvent {
            call_id,
            workspace: workspace.to_owned(),
            kind,
            text: text.clone(),
            at,
            relayed: false,
        });
        self.queue(Write::Transcript(TranscriptRow {
            call_id,
            seq: self.seq.fetch_add(1, Ordering::Relaxed) as i64,
            kind: kind.to_owned(),
            text,
            at,
        }));
    }

    /// A recording started, or finished with its file written.
    pub fn recording(&self, row: RecordingRow) {
        self.queue(Write::Recording(row));
    }

    /// Shows live subscribers an event of another switch of the cluster (already stored by
    /// that switch): it is not written again, nor sent on.
    pub fn relay_call(&self, mut event: CallEvent) {
        event.relayed = true;
        let _ = self.events.send(event);
    }

    /// Shows live subscribers a room event of another switch of the cluster.
    pub fn relay_room(&self, mut event: RoomEvent) {
        event.relayed = true;
        let _ = self.rooms.send(event);
    }

    /// Shows live subscribers a transcript line of another switch of the cluster.
    pub fn relay_transcript(&self, mut event: TranscriptEvent) {
        event.relayed = true;
        let _ = self.transcripts.send(event);
    }

    /// Live call events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<CallEvent> {
        self.events.subscribe()
    }

    /// Waits until every write queued before now is in the database, at most `timeout`.
    pub async fn sync(&self, timeout: Duration) -> bool {
        let Some(writes) = &self.writes else {
            return true;
        };
        let (tx, rx) = oneshot::channel();
        if writes.send(Write::Sync(tx)).await.is_err() {
            return false;
        }
        matches!(tokio::time::timeout(timeout, rx).await, Ok(Ok(())))
    }
}
