//! Stereo call recordings: the caller on the left channel, the bot on the right, both placed
//! by wall-clock sample position so the two sides stay time-aligned.
//!
//! A `Recorder` is pure (no actix, no files): the call feeds it audio as it passes and asks it
//! whether a stop condition was met; `encode` turns it into a WAV file.

use std::time::Instant;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::media::pcm::rms;

pub use crate::actions::{RecordingOptions, MAX_RECORDING_SECONDS};

/// Caller audio quieter than this (RMS) counts as silence for `end_of_silence`.
pub const SILENCE_RMS: f64 = 200.0;

/// Why a recording stopped by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoStop {
    Duration,
    Silence,
    Key,
}

/// A recording in progress.
#[derive(Debug)]
pub struct Recorder {
    pub id: Uuid,
    pub rate: u32,
    pub options: RecordingOptions,
    pub started_at: DateTime<Utc>,
    started: Instant,
    left: Vec<i16>,
    right: Vec<i16>,
    max_samples: usize,
    silent_samples: usize,
}

/// Places `samples` at `pos` (or right after what is there, if later), padding with silence.
fn place(channel: &mut Vec<i16>, pos: usize, samples: &[i16], max: usize) {
    let start = pos.max(channel.len()).min(max);
    channel.resize(start, 0);
    let room = max - start;
    channel.extend_from_slice(&samples[..samples.len().min(room)]);
}

impl Recorder {
    /// Starts recording at `rate` now.
    pub fn new(id: Uuid, rate: u32, options: RecordingOptions) -> Recorder {
        let seconds = match options.duration {
            0 => MAX_RECORDING_SECONDS,
            d => d.min(MAX_RECORDING_SECONDS),
        };
        Recorder {
            id,
            rate,
            options,
            started_at: Utc::now(),
            started: Instant::now(),
            left: Vec::new(),
            right: Vec::new(),
            max_samples: (seconds * rate as u64) as usize,
            silent_samples: 0,
        }
    }

    /// The wall-clock position now, in samples since the start.
    fn now_pos(&self) -> usize {
        (self.started.elapsed().as_micros() * self.rate as u128 / 1_000_000) as usize
    }

    fn full(&self) -> Option<AutoStop> {
        (self.now_pos() >= self.max_samples).then_some(AutoStop::Duration)
    }

    /// Caller audio that just arrived (it ended now).
    pub fn caller(&mut self, samples: &[i16]) -> Option<AutoStop> {
        let pos = self.now_pos().saturating_sub(samples.len());
        place(&mut self.left, pos, samples, self.max_samples);
        if self.options.end_of_silence > 0 {
            if rms(samples) < SILENCE_RMS {
                self.silent_samples += samples.len();
            } else {
                self.silent_samples = 0;
            }
            if self.silent_samples as u64 >= self.options.end_of_silence * self.rate as u64 {
                return Some(AutoStop::Silence);
            }
        }
        self.full()
    }

    /// Bot audio sent toward the caller now (it starts playing now).
    pub fn bot(&mut self, samples: &[i16]) -> Option<AutoStop> {
        let pos = self.now_pos();
        place(&mut self.right, pos, samples, self.max_samples);
        self.full()
    }

    /// Bot audio queued in the recording beyond now was not played (cut off or replaced).
    pub fn cut_bot(&mut self) {
        let now = self.now_pos();
        self.right.truncate(now);
    }

    /// A key the caller pressed.
    pub fn key(&self, key: char) -> Option<AutoStop> {
        self.options
            .end_of_key
            .contains(key)
            .then_some(AutoStop::Key)
    }

    /// Interleaved stereo samples (left = caller, right = bot), as long as the longer side.
    pub fn interleaved(&self) -> Vec<i16> {
        let n = self.left.len().max(self.right.len());
        let mut out = Vec::with_capacity(n * 2);
        for i in 0..n {
            out.push(self.left.get(i).copied().unwrap_or(0));
            out.push(self.right.get(i).copied().unwrap_or(0));
        }
        out
    }

    /// Length so far in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        let n = self.left.len().max(self.right.len()) as u64;
        n * 1000 / self.rate.max(1) as u64
    }

    /// The stereo WAV file.
    pub fn encode(&self) -> Vec<u8> {
        crate::media::wav::encode(&self.interleaved(), self.rate, 2)
    }
}

/// Writes a finished recording as `file_name` under `dir` and journals its row: `done` with
/// its path, or `failed` when the file could not be written. `row` carries the rest (id,
/// owner, format, rate, start, duration). `encode` makes the file's bytes; both run on tokio's
/// blocking pool when there is a runtime, never on the caller's actor thread.
pub fn write_finished(
    dir: std::path::PathBuf,
    file_name: String,
    journal: crate::store::Journal,
    mut row: crate::store::RecordingRow,
    encode: impl FnOnce() -> Vec<u8> + Send + 'static,
) {
    let write = move || {
        let path = dir.join(file_name);
        let written = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, encode()));
        row.status = match &written {
            Ok(()) => "done".into(),
            Err(e) => {
                tracing::error!(owner = %row.call_id, recording = %row.id, path = %path.display(), error = %e, "recording not written");
                "failed".into()
            }
        };
        row.path = path.display().to_string();
        row.ended = Some(Utc::now());
        journal.recording(row);
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        drop(tokio::task::spawn_blocking(write));
    } else {
        write();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_land_on_their_channels_and_pad_with_silence() {
        let mut r = Recorder::new(Uuid::new_v4(), 8000, RecordingOptions::default());
        place(&mut r.left, 100, &[1, 1], r.max_samples);
        place(&mut r.right, 0, &[2], r.max_samples);
        let s = r.interleaved();
        assert_eq!(s.len(), 2 * 102);
        assert_eq!((s[0], s[1]), (0, 2));
        assert_eq!((s[200], s[201]), (1, 0));
        // Audio arriving late lands after what is already there.
        place(&mut r.left, 0, &[3], r.max_samples);
        assert_eq!(r.left.len(), 103);
    }

    #[test]
    fn options_are_checked() {
        let ok = RecordingOptions {
            format: "wav".into(),
            ..Default::default()
        };
        assert!(ok.validate().is_ok());
        let mp3 = RecordingOptions {
            format: "mp3".into(),
            ..Default::default()
        };
        assert!(mp3.validate().unwrap_err().contains("mp3"));
        let key = RecordingOptions {
            format: "wav".into(),
            end_of_key: "x".into(),
            ..Default::default()
        };
        assert!(key.validate().unwrap_err().contains("end_of_key"));
    }

    #[test]
    fn stops_on_key_and_silence() {
        let mut r = Recorder::new(
            Uuid::new_v4(),
            8000,
            RecordingOptions {
                format: "wav".into(),
                end_of_silence: 1,
                end_of_key: "#".into(),
                ..Default::default()
            },
        );
        assert_eq!(r.key('#'), Some(AutoStop::Key));
        assert_eq!(r.key('1'), None);
        assert_eq!(r.caller(&[0; 4000]), None);
        assert_eq!(r.caller(&[0; 4000]), Some(AutoStop::Silence));
    }
}
