//! The call's side of recordings and transcripts: feeds the `Recorder` the audio passing
//! through the call, writes the WAV file when a recording stops, and journals transcript lines.

use actix::prelude::*;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::messages::{Record, RecordError};
use super::CallActor;
use crate::media::RateAdapter;
use crate::recording::{AutoStop, Recorder, RecordingOptions};
use crate::store::RecordingRow;

impl CallActor {
    /// Starts a recording at the leg's caller rate; answers its id.
    pub(super) fn start_recording(
        &mut self,
        options: RecordingOptions,
    ) -> Result<Uuid, RecordError> {
        let id = self.record.id;
        if self.record.status.is_ending() {
            return Err(RecordError::Ending(id));
        }
        if self.recorder.is_some() {
            return Err(RecordError::AlreadyRecording(id));
        }
        options.validate().map_err(RecordError::BadOptions)?;
        let Some(leg) = &self.leg else {
            return Err(RecordError::NoAudio(id));
        };
        let recorder = Recorder::new(Uuid::new_v4(), leg.format.in_rate, options);
        self.recorder_bot_rate = Some(RateAdapter::new(recorder.rate));
        let rec_id = recorder.id;
        self.services.journal.recording(RecordingRow {
            id: rec_id,
            call_id: id,
            format: recorder.options.format.clone(),
            path: String::new(),
            status: "recording".into(),
            rate: recorder.rate as i64,
            started: recorder.started_at,
            ended: None,
            duration_ms: 0,
        });
        self.recorder = Some(recorder);
        self.record.recording_id = Some(rec_id);
        self.record.recording_ids.push(rec_id);
        self.record.tm_update = Utc::now();
        self.publish("call_updated");
        tracing::info!(call = %id, recording = %rec_id, "recording started");
        Ok(rec_id)
    }

    /// Stops the recording, if any, and writes its file off the call's thread. `publish`
    /// says whether to publish the changed record now (not when the caller publishes next).
    pub(super) fn stop_recording(&mut self, publish: bool) -> Option<Uuid> {
        let recorder = self.recorder.take()?;
        self.recorder_bot_rate = None;
        self.recorder_caller_rate = None;
        self.record.recording_id = None;
        if publish {
            self.record.tm_update = Utc::now();
            self.publish("call_updated");
        }
        let id = recorder.id;
        let call_id = self.record.id;
        let row = RecordingRow {
            id,
            call_id,
            format: recorder.options.format.clone(),
            path: String::new(),
            status: String::new(),
            rate: recorder.rate as i64,
            started: recorder.started_at,
            ended: None,
            duration_ms: recorder.duration_ms() as i64,
        };
        crate::recording::write_finished(
            std::path::PathBuf::from(&self.services.config.recordings.dir),
            format!("{call_id}_{id}.wav"),
            self.services.journal.clone(),
            row,
            move || recorder.encode(),
        );
        tracing::info!(call = %call_id, recording = %id, "recording stopped");
        Some(id)
    }

    fn auto_stop(&mut self, stop: Option<AutoStop>) {
        if let Some(why) = stop {
            tracing::debug!(call = %self.record.id, ?why, "recording stopped by its options");
            self.stop_recording(true);
        }
    }

    /// Caller audio at the leg's `in_rate` (converted to the recording's rate when the leg's
    /// rate moved after the recording started).
    pub(super) fn record_caller(&mut self, samples: &[i16]) {
        let (Some(recorder), Some(leg)) = (self.recorder.as_mut(), self.leg.as_ref()) else {
            return;
        };
        let stop = if leg.format.in_rate == recorder.rate {
            recorder.caller(samples)
        } else {
            let mut converted = Vec::with_capacity(samples.len() * 3);
            self.recorder_caller_rate
                .get_or_insert_with(|| RateAdapter::new(recorder.rate))
                .convert_into(leg.format.in_rate, samples, &mut converted);
            recorder.caller(&converted)
        };
        self.auto_stop(stop);
    }

    /// Bot audio sent to the leg, at the leg's `out_rate`.
    pub(super) fn record_bot(&mut self, samples: &[i16]) {
        let (Some(recorder), Some(leg)) = (self.recorder.as_mut(), self.leg.as_ref()) else {
            return;
        };
        let stop = if leg.format.out_rate == recorder.rate {
            recorder.bot(samples)
        } else {
            let mut converted = Vec::with_capacity(samples.len() * 3);
            if let Some(adapter) = self.recorder_bot_rate.as_mut() {
                adapter.convert_into(leg.format.out_rate, samples, &mut converted);
            }
            recorder.bot(&converted)
        };
        self.auto_stop(stop);
    }

    /// Bot audio was cut off: what the recording has of it beyond now was never heard.
    pub(super) fn record_bot_cut(&mut self) {
        if let Some(r) = self.recorder.as_mut() {
            r.cut_bot();
        }
    }

    /// A key the caller pressed.
    pub(super) fn record_key(&mut self, key: char) {
        let stop = self.recorder.as_ref().and_then(|r| r.key(key));
        self.auto_stop(stop);
    }

    /// A transcript line: `text_bot` (spoken by the bot) or `text_asr` (said by the caller).
    pub(super) fn transcribe(&self, kind: &'static str, text: &str) {
        self.transcribe_at(kind, text, Utc::now());
    }

    /// A transcript line said at `at`; it goes to the store and to live event subscribers.
    pub(super) fn transcribe_at(&self, kind: &'static str, text: &str, at: DateTime<Utc>) {
        if !text.trim().is_empty() {
            self.services.journal.transcript(
                self.record.id,
                &self.record.workspace,
                kind,
                text.to_owned(),
                at,
            );
        }
    }
}

impl Handler<Record> for CallActor {
    type Result = Result<Uuid, RecordError>;

    fn handle(&mut self, msg: Record, _ctx: &mut Context<Self>) -> Self::Result {
        match msg.start {
            Some(options) => self.start_recording(options),
            None => self
                .stop_recording(true)
                .ok_or(RecordError::NotRecording(self.record.id)),
        }
    }
}
