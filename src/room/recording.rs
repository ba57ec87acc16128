//! Recording a room: one mono WAV of the whole mix (everyone who spoke, as a listener who is
//! not in the room would hear it), at the room's rate, and on request (`tracks`) one mono WAV
//! per participant of what that participant said, aligned to the mix (silence where it said
//! nothing; a participant who never spoke has no track). The files are written off the
//! room's thread when the recording stops (by the API, its `duration`, or the room closing)
//! and their rows are journaled under the room's id, like a call's recordings; the room's
//! record keeps which rows are tracks of which recording (`TrackRef`).
//!
//! Memory: every track is as long as the mix (at most `duration`, itself at most
//! `MAX_RECORDING_SECONDS`), so a recording with tracks holds up to `MAX_TRACKS` mixes
//! besides its own.

use actix::prelude::*;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Room, RoomError};
use crate::recording::{RecordingOptions, MAX_RECORDING_SECONDS};
use crate::store::RecordingRow;

/// Tracks one recording keeps at most (participants come and go while it runs); whoever
/// first speaks after that is only in the mix.
pub const MAX_TRACKS: usize = 64;

/// One participant's track of a room recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackRef {
    /// The track's own recording id (its row and file).
    pub track_id: Uuid,
    /// The recording (of the mix) it belongs to.
    pub recording_id: Uuid,
    /// The participant's call, and who it was.
    pub call_id: Uuid,
    pub user_id: String,
}

/// What one participant said during a recording.
struct Track {
    id: Uuid,
    call: Uuid,
    user: String,
    samples: Vec<i16>,
}

/// A recording in progress.
pub(super) struct RoomRecording {
    id: Uuid,
    started: DateTime<Utc>,
    samples: Vec<i16>,
    /// Samples at which it stops by itself (its `duration`).
    max: usize,
    /// One per participant who spoke, when recording `tracks`; `None` otherwise.
    tracks: Option<Vec<Track>>,
}

/// Start (`start: Some`) or stop (`None`) recording the room; answers the recording's id.
/// `tracks` (with `start`) also records each participant on its own.
#[derive(Message)]
#[rtype(result = "Result<Uuid, RoomError>")]
pub struct RecordRoom {
    pub start: Option<RecordingOptions>,
    pub tracks: bool,
}

impl Room {
    fn start_recording(
        &mut self,
        options: RecordingOptions,
        tracks: bool,
    ) -> Result<Uuid, RoomError> {
        let room = self.record.id;
        if !self.record.settings.allow_recording {
            return Err(RoomError::Refused(format!(
                "room {room} does not allow recording (settings.allow_recording)"
            )));
        }
        if self.recording.is_some() {
            return Err(RoomError::Refused(format!(
                "room {room} is already recording"
            )));
        }
        options.validate().map_err(RoomError::BadOptions)?;
        if !options.end_of_key.is_empty() || options.end_of_silence > 0 {
            return Err(RoomError::BadOptions(
                "a room recording stops by `duration` or the API only (no end_of_key or end_of_silence)"
                    .into(),
            ));
        }
        let seconds = match options.duration {
            0 => MAX_RECORDING_SECONDS,
            d => d.min(MAX_RECORDING_SECONDS),
        };
        let recording = RoomRecording {
            id: Uuid::new_v4(),
            started: Utc::now(),
            samples: Vec::new(),
            max: seconds as usize * self.rate as usize,
            tracks: tracks.then(Vec::new),
        };
        let id = recording.id;
        self.services.journal.recording(RecordingRow {
            id,
            call_id: room,
            format: "wav".into(),
            path: String::new(),
            status: "recording".into(),
            rate: self.rate as i64,
            started: recording.started,
            ended: None,
            duration_ms: 0,
        });
        self.recording = Some(recording);
        self.mixer.keep_voices(tracks);
        self.record.recording_id = Some(id);
        self.record.recording_ids.push(id);
        self.publish("room_updated");
        tracing::info!(room = %room, recording = %id, tracks, "room recording started");
        Ok(id)
    }

    /// Stops the recording, if any, and writes its files on a blocking thread.
    pub(super) fn stop_recording(&mut self) -> Option<Uuid> {
        let recording = self.recording.take()?;
        self.mixer.keep_voices(false);
        self.record.recording_id = None;
        let (id, room, rate) = (recording.id, self.record.id, self.rate);
        let row = |id: Uuid, samples: usize| RecordingRow {
            id,
            call_id: room,
            format: "wav".into(),
            path: String::new(),
            status: String::new(),
            rate: rate as i64,
            started: recording.started,
            ended: None,
            duration_ms: crate::media::duration_ms(samples, rate) as i64,
        };
        let dir = std::path::PathBuf::from(&self.services.config.recordings.dir);
        for track in recording.tracks.into_iter().flatten() {
            self.record.tracks.push(TrackRef {
                track_id: track.id,
                recording_id: id,
                call_id: track.call,
                user_id: track.user,
            });
            crate::recording::write_finished(
                dir.clone(),
                format!("room_{room}_{id}_{}.wav", track.call),
                self.services.journal.clone(),
                row(track.id, track.samples.len()),
                move || crate::media::wav::encode(&track.samples, rate, 1),
            );
        }
        if self.record.status != super::RoomStatus::Closed {
            self.publish("room_updated");
        }
        let mix = recording.samples;
        crate::recording::write_finished(
            dir,
            format!("room_{room}_{id}.wav"),
            self.services.journal.clone(),
            row(id, mix.len()),
            move || crate::media::wav::encode(&mix, rate, 1),
        );
        tracing::info!(room = %room, recording = %id, "room recording stopped");
        Some(id)
    }

    /// One tick's full mix, and what each speaker said, for the recording.
    pub(super) fn record_mix(&mut self, mix: &[i16], voices: &[(Uuid, Vec<i16>)]) {
        let Some(recording) = self.recording.as_mut() else {
            return;
        };
        let before = recording.samples.len();
        let room = recording.max.saturating_sub(before);
        recording
            .samples
            .extend_from_slice(&mix[..mix.len().min(room)]);
        let now = recording.samples.len();
        if let Some(tracks) = recording.tracks.as_mut() {
            for (call, voice) in voices {
                let at = match tracks.iter().position(|t| t.call == *call) {
                    Some(at) => at,
                    None if tracks.len() >= MAX_TRACKS => continue,
                    None => {
                        let user = self
                            .record
                            .participants
                            .iter()
                            .find(|p| p.call_id == *call)
                            .map(|p| p.user_id.clone())
                            .unwrap_or_default();
                        tracks.push(Track {
                            id: Uuid::new_v4(),
                            call: *call,
                            user,
                            samples: Vec::new(),
                        });
                        tracks.len() - 1
                    }
                };
                let track = &mut tracks[at];
                track.samples.resize(before, 0);
                track
                    .samples
                    .extend_from_slice(&voice[..voice.len().min(now - before)]);
            }
            // Everyone else said nothing this tick.
            for track in tracks.iter_mut() {
                track.samples.resize(now, 0);
            }
        }
        if now >= recording.max {
            self.stop_recording();
        }
    }
}

impl Handler<RecordRoom> for Room {
    type Result = Result<Uuid, RoomError>;

    fn handle(&mut self, msg: RecordRoom, _ctx: &mut Context<Self>) -> Self::Result {
        match msg.start {
            Some(options) => self.start_recording(options, msg.tracks),
            None => self.stop_recording().ok_or_else(|| {
                RoomError::Refused(format!("room {} is not recording", self.record.id))
            }),
        }
    }
}
