//! Recording a room: one mono WAV of the whole mix (everyone who spoke, as a listener who is
//! not in the room would hear it), at the room's rate. The file is written off the room's
//! thread when the recording stops (by the API, its `duration`, or the room closing) and its
//! row is journaled under the room's id, like a call's recordings.

use actix::prelude::*;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Room, RoomError};
use crate::recording::{RecordingOptions, MAX_RECORDING_SECONDS};
use crate::store::RecordingRow;

/// A recording in progress.
pub(super) struct RoomRecording {
    id: Uuid,
    started: DateTime<Utc>,
    samples: Vec<i16>,
    /// Samples at which it stops by itself (its `duration`).
    max: usize,
}

/// Start (`start: Some`) or stop (`None`) recording the room; answers the recording's id.
#[derive(Message)]
#[rtype(result = "Result<Uuid, RoomError>")]
pub struct RecordRoom {
    pub start: Option<RecordingOptions>,
}

impl Room {
    fn start_recording(&mut self, options: RecordingOptions) -> Result<Uuid, RoomError> {
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
        self.record.recording_id = Some(id);
        self.record.recording_ids.push(id);
        self.publish("room_updated");
        tracing::info!(room = %room, recording = %id, "room recording started");
        Ok(id)
    }

    /// Stops the recording, if any, and writes its file on a blocking thread.
    pub(super) fn stop_recording(&mut self) -> Option<Uuid> {
        let recording = self.recording.take()?;
        self.record.recording_id = None;
        if self.record.status != super::RoomStatus::Closed {
            self.publish("room_updated");
        }
        let (id, room, rate) = (recording.id, self.record.id, self.rate);
        let row = RecordingRow {
            id,
            call_id: room,
            format: "wav".into(),
            path: String::new(),
            status: String::new(),
            rate: rate as i64,
            started: recording.started,
            ended: None,
            duration_ms: crate::media::duration_ms(recording.samples.len(), rate) as i64,
        };
        crate::recording::write_finished(
            std::path::PathBuf::from(&self.services.config.recordings.dir),
            format!("room_{room}_{id}.wav"),
            self.services.journal.clone(),
            row,
            move || crate::media::wav::encode(&recording.samples, rate, 1),
        );
        tracing::info!(room = %room, recording = %id, "room recording stopped");
        Some(id)
    }

    /// One tick's full mix, for the recording.
    pub(super) fn record_mix(&mut self, mix: &[i16]) {
        let Some(recording) = self.recording.as_mut() else {
            return;
        };
        let room = recording.max.saturating_sub(recording.samples.len());
        recording
            .samples
            .extend_from_slice(&mix[..mix.len().min(room)]);
        if recording.samples.len() >= recording.max {
            self.stop_recording();
        }
    }
}

impl Handler<RecordRoom> for Room {
    type Result = Result<Uuid, RoomError>;

    fn handle(&mut self, msg: RecordRoom, _ctx: &mut Context<Self>) -> Self::Result {
        match msg.start {
            Some(options) => self.start_recording(options),
            None => self.stop_recording().ok_or_else(|| {
                RoomError::Refused(format!("room {} is not recording", self.record.id))
            }),
        }
    }
}
