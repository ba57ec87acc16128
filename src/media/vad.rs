//! Voice activity: an energy detector that says when a caller starts speaking (barge-in).
//!
//! Audio is cut into 10 ms windows; a window whose RMS level is above `SPEECH_RMS` counts as
//! loud. `ONSET_WINDOWS` loud windows in a row are speech. Quiet windows reset the count, so
//! clicks and short noise bursts do not count. The caller's side often echoes the start of the
//! bot's own prompt back; the call ignores caller audio for `ECHO_GUARD_MS` after a prompt
//! starts before it feeds the detector.

use super::samples_for_ms;

/// RMS level (of full scale 32767) above which a window is loud: about −30 dBFS, well above
/// line noise and comfort noise, below ordinary speech.
pub const SPEECH_RMS: f64 = 1000.0;

/// The length of one analysis window.
pub const WINDOW_MS: u32 = 10;

/// Loud windows in a row that make speech (60 ms): long enough to skip clicks, short enough
/// that a barge-in feels immediate.
pub const ONSET_WINDOWS: u32 = 6;

/// Caller audio ignored after a prompt starts: the echo of the prompt's first frames.
pub const ECHO_GUARD_MS: u64 = 100;

/// An energy-based speech detector for one stream at one rate.
#[derive(Debug, Clone)]
pub struct Vad {
    window: usize,
    pending: Vec<i16>,
    loud_run: u32,
}

impl Vad {
    /// A detector for audio at `rate`.
    pub fn new(rate: u32) -> Self {
        let window = samples_for_ms(rate, WINDOW_MS).max(1);
        Vad {
            window,
            pending: Vec::with_capacity(window),
            loud_run: 0,
        }
    }

    /// Forgets everything heard so far.
    pub fn reset(&mut self) {
        self.pending.clear();
        self.loud_run = 0;
    }

    /// Feeds audio; true once speech has started (and on every later window while it lasts).
    pub fn push(&mut self, samples: &[i16]) -> bool {
        let mut speech = false;
        let mut rest = samples;
        while !rest.is_empty() {
            let want = self.window - self.pending.len();
            let n = want.min(rest.len());
            self.pending.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if self.pending.len() == self.window {
                if super::pcm::rms(&self.pending) > SPEECH_RMS {
                    self.loud_run += 1;
                } else {
                    self.loud_run = 0;
                }
                self.pending.clear();
                if self.loud_run >= ONSET_WINDOWS {
                    speech = true;
                }
            }
        }
        speech
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, ms: u32, amplitude: f64) -> Vec<i16> {
        (0..samples_for_ms(rate, ms))
            .map(|i| {
                let t = i as f64 / rate as f64;
                (amplitude * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn silence_and_quiet_noise_are_not_speech() {
        let mut v = Vad::new(8000);
        assert!(!v.push(&vec![0; 8000]));
        assert!(!v.push(&tone(8000, 1000, 500.0)));
    }

    #[test]
    fn loud_tone_is_speech_after_the_onset() {
        let mut v = Vad::new(8000);
        // 50 ms is one window short of the onset.
        assert!(!v.push(&tone(8000, 50, 10_000.0)));
        assert!(v.push(&tone(8000, 20, 10_000.0)));
    }

    #[test]
    fn a_click_does_not_count() {
        let mut v = Vad::new(16000);
        assert!(!v.push(&tone(16000, 20, 20_000.0)));
        assert!(!v.push(&vec![0; 320]));
        assert!(!v.push(&tone(16000, 40, 20_000.0)));
    }
}
