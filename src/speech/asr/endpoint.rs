//! End-of-speech detection: cuts one utterance out of a caller's audio stream.
//!
//! The detector listens in 10 ms windows with the barge-in detector's level and onset
//! (`media::vad`): speech starts after `ONSET_WINDOWS` loud windows in a row. From then on
//! every window is kept until `end_silence_ms` of quiet windows in a row close the utterance,
//! or it reaches `max_utterance_ms`. The audio just before the onset (`PRE_ROLL_MS`) is kept
//! too, so the first, softer consonant of a word reaches the recogniser; of the closing
//! silence only `TAIL_MS` is kept.

use std::collections::VecDeque;

use crate::media::pcm::rms;
use crate::media::samples_for_ms;
use crate::media::vad::{ONSET_WINDOWS, SPEECH_RMS, WINDOW_MS};

/// Audio kept from before the onset.
pub const PRE_ROLL_MS: u32 = 300;

/// Quiet kept after the speech: the closing silence beyond it is cut before recognition
/// (it costs decoding time and says nothing).
pub const TAIL_MS: u32 = 200;

/// What one push of audio led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Nothing new.
    Listening,
    /// Speech has just started.
    Started,
    /// Half the closing quiet has passed: the utterance as it will be if the caller says no
    /// more. Recognising it now saves the rest of the wait; `Resumed` withdraws it.
    Tentative(Vec<i16>),
    /// The caller spoke again after a `Tentative`.
    Resumed,
    /// The utterance is complete: its audio (pre-roll included), at the detector's rate.
    Ended(Vec<i16>),
}

/// An end-of-speech detector for one stream at one rate.
#[derive(Debug, Clone)]
pub struct Endpointer {
    rate: u32,
    window: usize,
    pending: Vec<i16>,
    /// Recent audio before speech started (at most `PRE_ROLL_MS`).
    pre_roll: VecDeque<i16>,
    pre_roll_cap: usize,
    loud_run: u32,
    quiet_run: u32,
    end_windows: u32,
    tentative_windows: u32,
    tentative_sent: bool,
    max_samples: usize,
    /// The utterance so far, once speech started.
    speech: Option<Vec<i16>>,
}

impl Endpointer {
    /// A detector for audio at `rate` that ends an utterance after `end_silence_ms` of quiet
    /// or at `max_utterance_ms`.
    pub fn new(rate: u32, end_silence_ms: u32, max_utterance_ms: u32) -> Self {
        let window = samples_for_ms(rate, WINDOW_MS).max(1);
        let pre_roll_cap = samples_for_ms(rate, PRE_ROLL_MS);
        Endpointer {
            rate,
            window,
            pending: Vec::with_capacity(window),
            pre_roll: VecDeque::with_capacity(pre_roll_cap + window),
            pre_roll_cap,
            loud_run: 0,
            quiet_run: 0,
            end_windows: (end_silence_ms / WINDOW_MS).max(1),
            // Half the closing quiet, and always more than the kept tail.
            tentative_windows: (end_silence_ms / WINDOW_MS / 2).max(TAIL_MS / WINDOW_MS + 1),
            tentative_sent: false,
            max_samples: samples_for_ms(rate, max_utterance_ms.max(WINDOW_MS)),
            speech: None,
        }
    }

    /// The rate this detector listens at.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Whether speech has started and the utterance is not over yet.
    pub fn in_speech(&self) -> bool {
        self.speech.is_some()
    }

    /// Forgets everything heard so far.
    pub fn reset(&mut self) {
        self.pending.clear();
        self.pre_roll.clear();
        self.loud_run = 0;
        self.quiet_run = 0;
        self.speech = None;
        self.tentative_sent = false;
    }

    /// Feeds audio; what happened, in order. Nothing follows an `Ended`: the rest of
    /// `samples` after it is dropped (one utterance per detector run).
    pub fn push(&mut self, samples: &[i16]) -> Vec<Endpoint> {
        let mut events = Vec::new();
        let mut rest = samples;
        while !rest.is_empty() {
            let n = (self.window - self.pending.len()).min(rest.len());
            self.pending.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if self.pending.len() < self.window {
                break;
            }
            match self.window_done() {
                Endpoint::Listening => {}
                ended @ Endpoint::Ended(_) => {
                    events.push(ended);
                    break;
                }
                other => events.push(other),
            }
        }
        events
    }

    /// The utterance so far without the closing quiet beyond `TAIL_MS`.
    fn trimmed(&self, speech: &[i16]) -> Vec<i16> {
        let tail_windows = (TAIL_MS / WINDOW_MS) as usize;
        let cut = (self.quiet_run as usize).saturating_sub(tail_windows) * self.window;
        speech[..speech.len().saturating_sub(cut)].to_vec()
    }

    /// One full window in `pending`: classify it and move it where it belongs.
    fn window_done(&mut self) -> Endpoint {
        let loud = rms(&self.pending) > SPEECH_RMS;
        if loud {
            self.loud_run += 1;
            self.quiet_run = 0;
        } else {
            self.loud_run = 0;
            self.quiet_run += 1;
        }
        if let Some(mut speech) = self.speech.take() {
            speech.extend_from_slice(&self.pending);
            self.pending.clear();
            let ended_by_quiet = self.quiet_run >= self.end_windows;
            if ended_by_quiet || speech.len() >= self.max_samples {
                let utterance = if ended_by_quiet {
                    self.trimmed(&speech)
                } else {
                    speech
                };
                self.reset();
                return Endpoint::Ended(utterance);
            }
            let event = if loud && self.tentative_sent {
                self.tentative_sent = false;
                Endpoint::Resumed
            } else if self.quiet_run == self.tentative_windows {
                self.tentative_sent = true;
                Endpoint::Tentative(self.trimmed(&speech))
            } else {
                Endpoint::Listening
            };
            self.speech = Some(speech);
            return event;
        }
        self.pre_roll.extend(self.pending.drain(..));
        if self.loud_run >= ONSET_WINDOWS {
            self.speech = Some(self.pre_roll.drain(..).collect());
            return Endpoint::Started;
        }
        // Keep the pre-roll plus the loud windows that may become the onset.
        let keep = self.pre_roll_cap + self.window * ONSET_WINDOWS as usize;
        if self.pre_roll.len() > keep {
            let excess = self.pre_roll.len() - keep;
            self.pre_roll.drain(..excess);
        }
        Endpoint::Listening
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, ms: u32) -> Vec<i16> {
        (0..samples_for_ms(rate, ms))
            .map(|i| {
                let t = i as f64 / rate as f64;
                (8000.0 * (2.0 * std::f64::consts::PI * 300.0 * t).sin()) as i16
            })
            .collect()
    }

    /// What the detector said, tentative utterances left out.
    fn feed(e: &mut Endpointer, audio: &[i16], chunk: usize) -> Vec<Endpoint> {
        audio
            .chunks(chunk)
            .flat_map(|c| e.push(c))
            .filter(|o| !matches!(o, Endpoint::Tentative(_) | Endpoint::Resumed))
            .collect()
    }

    #[test]
    fn a_tentative_end_is_the_final_utterance_unless_speech_resumes() {
        let rate = 8000;
        let mut e = Endpointer::new(rate, 600, 10_000);
        let mut audio = tone(rate, 500);
        audio.extend(vec![0i16; samples_for_ms(rate, 400)]);
        audio.extend(tone(rate, 300));
        audio.extend(vec![0i16; samples_for_ms(rate, 700)]);
        let events: Vec<Endpoint> = audio.chunks(160).flat_map(|c| e.push(c)).collect();
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| match e {
                Endpoint::Listening => "listening",
                Endpoint::Started => "started",
                Endpoint::Tentative(_) => "tentative",
                Endpoint::Resumed => "resumed",
                Endpoint::Ended(_) => "ended",
            })
            .collect();
        assert_eq!(
            kinds,
            ["started", "tentative", "resumed", "tentative", "ended"]
        );
        let (Endpoint::Tentative(last), Endpoint::Ended(end)) = (&events[3], &events[4]) else {
            panic!("{kinds:?}")
        };
        assert_eq!(last, end, "the tentative utterance is what ends");
    }

    #[test]
    fn silence_is_never_an_utterance() {
        let mut e = Endpointer::new(8000, 600, 10_000);
        assert!(feed(&mut e, &vec![0; 8000 * 5], 160).is_empty());
        assert!(!e.in_speech());
    }

    #[test]
    fn speech_then_silence_is_one_utterance_with_its_pre_roll() {
        let rate = 16_000;
        let mut e = Endpointer::new(rate, 600, 10_000);
        let mut audio = vec![0i16; samples_for_ms(rate, 1000)];
        audio.extend(tone(rate, 800));
        audio.extend(vec![0i16; samples_for_ms(rate, 1000)]);
        let events = feed(&mut e, &audio, 320);
        assert_eq!(events.len(), 2, "{:?}", events.len());
        assert_eq!(events[0], Endpoint::Started);
        let Endpoint::Ended(utterance) = &events[1] else {
            panic!("no end")
        };
        // Pre-roll + 800 ms of speech + the kept tail of the closing silence.
        let ms = utterance.len() as u32 * 1000 / rate;
        assert!((1200..=1350).contains(&ms), "{ms} ms");
        assert!(!e.in_speech());
    }

    #[test]
    fn a_pause_shorter_than_the_end_silence_does_not_cut() {
        let rate = 8000;
        let mut e = Endpointer::new(rate, 600, 10_000);
        let mut audio = tone(rate, 300);
        audio.extend(vec![0i16; samples_for_ms(rate, 300)]);
        audio.extend(tone(rate, 300));
        audio.extend(vec![0i16; samples_for_ms(rate, 700)]);
        let events = feed(&mut e, &audio, 160);
        assert_eq!(events.len(), 2);
        assert!(matches!(&events[1], Endpoint::Ended(u) if u.len() >= samples_for_ms(rate, 900)));
    }

    #[test]
    fn endless_speech_is_cut_at_the_maximum() {
        let rate = 8000;
        let mut e = Endpointer::new(rate, 600, 2000);
        let events = feed(&mut e, &tone(rate, 5000), 800);
        assert_eq!(events[0], Endpoint::Started);
        let Endpoint::Ended(u) = &events[1] else {
            panic!("not cut")
        };
        assert!(u.len() <= samples_for_ms(rate, 2400), "{}", u.len());
    }
}
