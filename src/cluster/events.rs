//! Call, room and transcript events between the nodes of a cluster.
//!
//! Each node publishes its own events (never the ones it relays) on
//! `switchboard.<cluster>.events.<workspace>`, and subscribes once to every workspace's
//! events: its live subscribers (SSE) then filter by their API key's workspace as they do for
//! local calls, so a stream sees every call of its workspace on every node, and only those.
//! The same task keeps the room bucket: a room this node opens is put there, and removed when
//! it closes.

use std::sync::Arc;

use async_nats::jetstream::kv;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use uuid::Uuid;

use super::Subjects;
use crate::call::state::CallRecord;
use crate::room::RoomRecord;
use crate::store::journal::{CallEvent, RoomEvent, TranscriptEvent};
use crate::store::Journal;

/// Call event names, so a relayed event keeps a `&'static str` as local ones do.
const CALL_EVENTS: &[&str] = &[
    "call_created",
    "call_dialing",
    "call_ringing",
    "call_progressing",
    "call_updated",
    "call_terminating",
    "call_canceling",
    "call_busy",
    "call_hangup",
];
const ROOM_EVENTS: &[&str] = &[
    "room_created",
    "room_participant_joined",
    "room_participant_left",
    "room_updated",
    "room_closed",
];
const TRANSCRIPT_KINDS: &[&str] = &["text_bot", "text_asr"];

fn known(names: &[&'static str], name: &str) -> Option<&'static str> {
    names.iter().copied().find(|n| *n == name)
}

/// One event on the wire.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Wire {
    Call {
        node: String,
        event: String,
        record: Box<CallRecord>,
    },
    Room {
        node: String,
        event: String,
        record: Box<RoomRecord>,
    },
    Transcript {
        node: String,
        call_id: Uuid,
        workspace: String,
        #[serde(rename = "type")]
        kind: String,
        text: String,
        at: DateTime<Utc>,
    },
}

/// Publishes this node's events and relays the others'.
#[derive(Clone)]
pub struct Relay {
    pub(super) client: async_nats::Client,
    pub(super) subjects: Subjects,
    pub(super) node_id: String,
    pub(super) journal: Journal,
    pub(super) rooms: kv::Store,
}

impl Relay {
    async fn send(&self, workspace: &str, wire: &Wire) {
        let Ok(payload) = serde_json::to_vec(wire) else {
            return;
        };
        if let Err(e) = self
            .client
            .publish(self.subjects.events(workspace), payload.into())
            .await
        {
            tracing::debug!(error = %e, "cluster: event not published");
        }
    }

    /// Publishes every local event until stopped.
    pub(super) async fn publish(self, mut stop: watch::Receiver<bool>) {
        let mut calls = self.journal.subscribe();
        let mut rooms = self.journal.subscribe_rooms();
        let mut lines = self.journal.subscribe_transcripts();
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                ev = calls.recv() => match ev {
                    Ok(CallEvent { relayed: false, event, record }) => {
                        let workspace = record.workspace.clone();
                        self.send(&workspace, &Wire::Call {
                            node: self.node_id.clone(),
                            event: event.to_owned(),
                            record: Box::new((*record).clone()),
                        }).await;
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(n)) => tracing::warn!(missed = n, "cluster: call events not published (relay too slow)"),
                    Err(RecvError::Closed) => return,
                },
                ev = rooms.recv() => match ev {
                    Ok(RoomEvent { relayed: false, event, record }) => {
                        self.place_room(event, &record).await;
                        let workspace = record.workspace.clone();
                        self.send(&workspace, &Wire::Room {
                            node: self.node_id.clone(),
                            event: event.to_owned(),
                            record: Box::new((*record).clone()),
                        }).await;
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(n)) => tracing::warn!(missed = n, "cluster: room events not published (relay too slow)"),
                    Err(RecvError::Closed) => return,
                },
                ev = lines.recv() => match ev {
                    Ok(line) if !line.relayed => {
                        self.send(&line.workspace, &Wire::Transcript {
                            node: self.node_id.clone(),
                            call_id: line.call_id,
                            workspace: line.workspace.clone(),
                            kind: line.kind.to_owned(),
                            text: line.text.clone(),
                            at: line.at,
                        }).await;
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(n)) => tracing::warn!(missed = n, "cluster: transcript lines not published (relay too slow)"),
                    Err(RecvError::Closed) => return,
                },
            }
        }
    }

    /// Keeps the room bucket: open rooms of this node are there, closed ones are not.
    async fn place_room(&self, event: &str, record: &RoomRecord) {
        let key = record.id.simple().to_string();
        let done = match event {
            "room_created" => self
                .rooms
                .put(key, self.node_id.clone().into_bytes().into())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            "room_closed" => self.rooms.delete(key).await.map_err(|e| e.to_string()),
            _ => Ok(()),
        };
        if let Err(e) = done {
            tracing::warn!(room = %record.id, error = %e, "cluster: room placement not written");
        }
    }

    /// Shows other nodes' events to this node's live subscribers until stopped.
    pub(super) async fn receive(
        self,
        mut events: async_nats::Subscriber,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let msg = tokio::select! {
                _ = stop.changed() => return,
                msg = events.next() => match msg {
                    Some(msg) => msg,
                    None => return,
                },
            };
            let wire: Wire = match serde_json::from_slice(&msg.payload) {
                Ok(w) => w,
                Err(e) => {
                    tracing::debug!(error = %e, "cluster: malformed event ignored");
                    continue;
                }
            };
            match wire {
                Wire::Call {
                    node,
                    event,
                    record,
                } if node != self.node_id => {
                    if let Some(event) = known(CALL_EVENTS, &event) {
                        self.journal.relay_call(CallEvent {
                            event,
                            record: Arc::new(*record),
                            relayed: true,
                        });
                    }
                }
                Wire::Room {
                    node,
                    event,
                    record,
                } if node != self.node_id => {
                    if let Some(event) = known(ROOM_EVENTS, &event) {
                        self.journal.relay_room(RoomEvent {
                            event,
                            record: Arc::new(*record),
                            relayed: true,
                        });
                    }
                }
                Wire::Transcript {
                    node,
                    call_id,
                    workspace,
                    kind,
                    text,
                    at,
                } if node != self.node_id => {
                    if let Some(kind) = known(TRANSCRIPT_KINDS, &kind) {
                        self.journal.relay_transcript(TranscriptEvent {
                            call_id,
                            workspace,
                            kind,
                            text,
                            at,
                            relayed: true,
                        });
                    }
                }
                _ => {}
            }
        }
    }

    /// A call of a lost node was closed here: every node's live subscribers see its hangup.
    pub(super) async fn announce_closed(&self, record: CallRecord) {
        let workspace = record.workspace.clone();
        self.journal.relay_call(CallEvent {
            event: "call_hangup",
            record: Arc::new(record.clone()),
            relayed: true,
        });
        self.send(
            &workspace,
            &Wire::Call {
                node: self.node_id.clone(),
                event: "call_hangup".into(),
                record: Box::new(record),
            },
        )
        .await;
    }

    /// Removes the room placements of a lost node.
    pub(super) async fn forget_rooms_of(&self, node: &str) {
        let Ok(keys) = self.rooms.keys().await else {
            return;
        };
        let keys: Vec<String> = keys.filter_map(|k| async move { k.ok() }).collect().await;
        for key in keys {
            if let Ok(Some(value)) = self.rooms.get(key.as_str()).await {
                if value.as_ref() == node.as_bytes() {
                    let _ = self.rooms.delete(key.as_str()).await;
                }
            }
        }
    }
}
