//! What the caller hears, as pure state: bot audio toward one leg, paced at real time or sent
//! as whole utterances.
//!
//! No actix here: every method takes the current instant and returns what the call must do
//! (frames to send, prompts done after a wait, when to pump again, whether to arm the
//! utterance-gap timer). The call actor keeps the timers and sends the audio (`sending.rs`).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::messages::{Delivery, LegFormat};
use super::playout::Playout;
use crate::media::resample::ResampleError;
use crate::media::{duration_ms, RateConverter};

/// How far ahead of real time paced audio may run toward the caller (its jitter buffer).
const PACED_LEAD: Duration = Duration::from_millis(60);

/// Streamed bot audio quieter than this (RMS of s16 samples, about -50 dBFS) counts as a gap
/// between utterances toward whole-utterance callers.
const SILENCE_RMS: f64 = 100.0;

/// Marks (`BotCommand::Mark`) waiting for their audio to play; past this a new mark is
/// reported at once.
const MAX_PENDING_MARKS: usize = 256;

/// The prompt id audio without a prompt (hold music) is queued under toward paced callers;
/// never reported to the bot.
pub(super) const HOLD_PROMPT: u64 = u64::MAX;

/// Bot audio toward one caller leg.
pub(super) struct Outbound {
    out_rate: u32,
    playout: Playout,
    /// Streamed bot audio to the leg's output rate, when it comes at another rate.
    from_bot: Option<RateConverter>,
    /// The bot's silence that closes a gathered utterance.
    gap: Duration,
    mode: Mode,
}

enum Mode {
    /// The caller's side plays audio as it arrives: frames leave at real time.
    Paced {
        /// When the paced audio sent so far will have played at the caller.
        until: Instant,
    },
    /// The caller's side plays whole utterances.
    Whole(Whole),
}

struct Whole {
    /// When the utterance last sent will have finished playing.
    until: Option<Instant>,
    /// The prompt playing now.
    prompt: Option<u64>,
    /// Whether streamed audio is being gathered into an utterance (the gap timer is armed).
    gathering: bool,
    /// When streamed bot audio last arrived (the utterance gap counts from here).
    last_audio: Instant,
    /// Marks behind the utterance being gathered; they wait for it to be sent (a mark never
    /// closes an utterance early).
    marks: Vec<u64>,
}

/// What `pump` hands out.
#[derive(Default)]
pub(super) struct Pumped {
    /// Frames to send now, in order.
    pub frames: Vec<Arc<[i16]>>,
    /// Prompts that will have played after these waits.
    pub played: Vec<(u64, Duration)>,
    /// When to pump again, if audio is left.
    pub again: Option<Duration>,
}

/// What `play` did with a prompt.
pub(super) enum Played {
    /// Queued for pacing: pump.
    Queued,
    /// To send now as one utterance, replacing the prompt playing (`replaced`, if any); it
    /// plays for `lasts`.
    Whole {
        replaced: Option<u64>,
        lasts: Duration,
    },
}

/// What `stream` did with streamed audio.
pub(super) enum Streamed {
    /// Queued for pacing: pump.
    Queued,
    /// Gathered, or dropped as silence; `arm_gap` when an utterance has just begun.
    Gathered { arm_gap: Option<Duration> },
}

impl Outbound {
    /// Audio toward a leg of `format`, holding at most `max_buffered_ms` and closing gathered
    /// utterances after `gap` of bot silence.
    pub fn new(format: &LegFormat, max_buffered_ms: u32, gap: Duration, now: Instant) -> Self {
        let mode = match format.delivery {
            Delivery::Paced => Mode::Paced { until: now },
            Delivery::Whole => Mode::Whole(Whole {
                until: None,
                prompt: None,
                gathering: false,
                last_audio: now,
                marks: Vec::new(),
            }),
        };
        Outbound {
            out_rate: format.out_rate,
            playout: Playout::new(format.out_rate, max_buffered_ms),
            from_bot: None,
            gap,
            mode,
        }
    }

    /// Bot audio dropped because the caller fell too far behind.
    pub fn dropped_samples(&self) -> u64 {
        self.playout.dropped_samples
    }

    /// Samples gathered into the utterance not yet sent.
    pub fn gathered_len(&self) -> usize {
        self.playout.gathered_len()
    }

    /// Whether an utterance is being gathered (its gap timer is armed).
    pub fn is_gathering(&self) -> bool {
        matches!(&self.mode, Mode::Whole(w) if w.gathering)
    }

    /// A whole prompt at the leg's rate (`None`: hold music or a gathered utterance, never
    /// reported): queued toward paced callers, sent at once toward whole-utterance callers.
    pub fn play(&mut self, prompt: Option<u64>, audio: &Arc<[i16]>, now: Instant) -> Played {
        match &mut self.mode {
            Mode::Paced { .. } => {
                self.playout
                    .push_prompt(prompt.unwrap_or(HOLD_PROMPT), audio.clone());
                Played::Queued
            }
            Mode::Whole(w) => {
                // The caller's side replaces what it plays with the new utterance.
                let replaced = std::mem::replace(&mut w.prompt, prompt);
                let lasts = Duration::from_millis(duration_ms(audio.len(), self.out_rate));
                w.until = Some(now + lasts);
                Played::Whole { replaced, lasts }
            }
        }
    }

    /// The whole prompt's time to play has passed: whether it is still the one playing (then
    /// it is done now).
    pub fn whole_played(&mut self, prompt: u64) -> bool {
        match &mut self.mode {
            Mode::Whole(w) if w.prompt == Some(prompt) => {
                w.prompt = None;
                true
            }
            _ => false,
        }
    }

    /// Paced audio due now: frames go out as long as the caller's side is less than
    /// `PACED_LEAD` ahead of real time, so audio that arrives at real time (an echo, a
    /// streaming bot) leaves at once, and a whole prompt leaves one 20 ms frame at a time. A
    /// prompt is played when its last frame has had time to play. Nothing toward
    /// whole-utterance callers.
    pub fn pump(&mut self, now: Instant) -> Pumped {
        let Mode::Paced { until } = &mut self.mode else {
            return Pumped::default();
        };
        if *until < now {
            *until = now;
        }
        let mut out = Pumped::default();
        while *until < now + PACED_LEAD {
            let Some(frame) = self.playout.next_frame() else {
                break;
            };
            *until += Duration::from_millis(duration_ms(frame.samples.len(), self.out_rate));
            let wait = until.saturating_duration_since(now);
            out.played
                .extend(frame.finished.into_iter().map(|p| (p, wait)));
            out.frames.push(frame.samples);
        }
        if !self.playout.is_empty() {
            out.again = Some((*until - PACED_LEAD).saturating_duration_since(now));
        }
        out
    }

    /// Streamed bot audio at `rate`: resampled to the leg's rate, then queued (paced) or
    /// gathered into the current utterance (whole). Silence is a gap, not part of an
    /// utterance: an echo of a quiet caller must not hold an utterance open for ever.
    pub fn stream<'a>(
        &mut self,
        samples: impl Into<Cow<'a, [i16]>>,
        rate: u32,
        now: Instant,
    ) -> Result<Streamed, ResampleError> {
        let samples = samples.into();
        // Owned audio at the leg's rate is queued as it is; borrowed audio (a room's shared
        // frame) is copied only when it is not resampled anyway.
        let out = if rate == self.out_rate {
            self.from_bot = None;
            samples.into_owned()
        } else {
            if self.from_bot.as_ref().is_none_or(|c| c.from_rate() != rate) {
                self.from_bot = RateConverter::between(rate, self.out_rate)?
                    .map(|c| c.counted(crate::telemetry::resampler_made("to_caller")));
            }
            match self.from_bot.as_mut() {
                Some(c) => c.converted(&samples),
                None => samples.into_owned(),
            }
        };
        match &mut self.mode {
            Mode::Paced { .. } => {
                self.playout.push_stream(out);
                Ok(Streamed::Queued)
            }
            Mode::Whole(w) => {
                if crate::media::pcm::rms(&out) < SILENCE_RMS {
                    return Ok(Streamed::Gathered { arm_gap: None });
                }
                self.playout.gather(&out);
                w.last_audio = now;
                let begun = !std::mem::replace(&mut w.gathering, true);
                Ok(Streamed::Gathered {
                    arm_gap: begun.then_some(self.gap),
                })
            }
        }
    }

    /// The gap timer fired: how much longer the bot must stay quiet before the utterance
    /// closes (zero: close it now).
    pub fn gap_left(&self, now: Instant) -> Duration {
        match &self.mode {
            Mode::Whole(w) => self
                .gap
                .saturating_sub(now.saturating_duration_since(w.last_audio)),
            Mode::Paced { .. } => Duration::ZERO,
        }
    }

    /// The bot's stream ended or paused: what the resampler still holds is queued (paced; pump
    /// next) or closes the gathered utterance, returned to be played whole.
    pub fn end_stream(&mut self) -> Option<Vec<i16>> {
        let mut tail = Vec::new();
        if let Some(r) = self.from_bot.as_mut() {
            r.flush(&mut tail);
        }
        match &mut self.mode {
            Mode::Paced { .. } => {
                self.playout.push_stream(tail);
                None
            }
            Mode::Whole(w) => {
                w.gathering = false;
                self.playout.gather(&tail);
                self.playout.take_gathered()
            }
        }
    }

    /// Takes the marks that waited for the gathered utterance.
    pub fn take_waiting_marks(&mut self) -> Vec<u64> {
        match &mut self.mode {
            Mode::Whole(w) => std::mem::take(&mut w.marks),
            Mode::Paced { .. } => Vec::new(),
        }
    }

    /// How long the audio already sent or queued toward the caller still plays.
    pub fn audio_left(&self, now: Instant) -> Duration {
        match &self.mode {
            Mode::Whole(w) => w
                .until
                .map(|t| t.saturating_duration_since(now))
                .unwrap_or_default(),
            Mode::Paced { until } => {
                Duration::from_millis(duration_ms(self.playout.queued_samples(), self.out_rate))
                    + until.saturating_duration_since(now)
            }
        }
    }

    /// A bot's mark, with `timed` marks already waiting on timers: `None` when it waits
    /// behind the utterance being gathered, else how long until it is done (zero: now, also
    /// when too many marks wait).
    pub fn mark(&mut self, id: u64, timed: usize, now: Instant) -> Option<Duration> {
        let waiting = match &self.mode {
            Mode::Whole(w) => w.marks.len(),
            Mode::Paced { .. } => 0,
        };
        let pending = timed + waiting;
        if let Mode::Whole(w) = &mut self.mode {
            if w.gathering && pending < MAX_PENDING_MARKS {
                w.marks.push(id);
                return None;
            }
        }
        if pending >= MAX_PENDING_MARKS {
            return Some(Duration::ZERO);
        }
        Some(self.audio_left(now))
    }

    /// Drops queued and gathered audio and resampler state; returns the prompts cut off (the
    /// whole prompt playing last). Waiting marks stay for `take_waiting_marks`.
    pub fn cut(&mut self) -> Vec<u64> {
        let mut cut = self.playout.clear();
        if let Mode::Whole(w) = &mut self.mode {
            cut.extend(w.prompt.take());
            w.gathering = false;
        }
        if let Some(r) = self.from_bot.as_mut() {
            r.reset();
        }
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leg(delivery: Delivery) -> LegFormat {
        LegFormat {
            in_rate: 8000,
            out_rate: 8000,
            delivery,
            plays_urls: false,
            plays_hold_music: false,
        }
    }

    const GAP: Duration = Duration::from_millis(300);

    fn loud(n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| if i % 2 == 0 { 4000 } else { -4000 })
            .collect()
    }

    #[test]
    fn paced_prompt_leaves_up_to_the_lead_then_waits() {
        let t0 = Instant::now();
        let mut out = Outbound::new(&leg(Delivery::Paced), 2000, GAP, t0);
        // 200 ms at 8 kHz: ten 20 ms frames.
        let audio: Arc<[i16]> = vec![1i16; 1600].into();
        assert!(matches!(out.play(Some(5), &audio, t0), Played::Queued));
        let p = out.pump(t0);
        assert_eq!(p.frames.len(), 3); // 60 ms ahead of real time
        assert!(p.played.is_empty());
        assert_eq!(p.again, Some(Duration::ZERO));
        assert_eq!(out.audio_left(t0), Duration::from_millis(200));

        let t1 = t0 + Duration::from_millis(20);
        let p = out.pump(t1);
        assert_eq!(p.frames.len(), 1);
        assert_eq!(p.again, Some(Duration::ZERO));

        // 20 ms later again: the lead is topped up.
        let t2 = t0 + Duration::from_millis(80);
        let p = out.pump(t2);
        assert_eq!(p.frames.len(), 3);
        assert!(p.played.is_empty());

        let t3 = t0 + Duration::from_millis(140);
        let p = out.pump(t3);
        assert_eq!(p.frames.len(), 3);
        // Its last frame plays until 200 ms.
        assert_eq!(p.played, vec![(5, Duration::from_millis(60))]);
        assert_eq!(p.again, None);
        assert_eq!(out.audio_left(t3), Duration::from_millis(60));
    }

    #[test]
    fn hold_music_is_queued_unreported() {
        let t0 = Instant::now();
        let mut out = Outbound::new(&leg(Delivery::Paced), 2000, GAP, t0);
        out.play(None, &vec![1i16; 160].into(), t0);
        assert_eq!(
            out.pump(t0).played,
            vec![(HOLD_PROMPT, Duration::from_millis(20))]
        );
    }

    #[test]
    fn whole_prompt_replaces_the_one_playing() {
        let t0 = Instant::now();
        let mut out = Outbound::new(&leg(Delivery::Whole), 2000, GAP, t0);
        let audio: Arc<[i16]> = vec![1i16; 8000].into();
        let Played::Whole { replaced, lasts } = out.play(Some(1), &audio, t0) else {
            panic!("queued toward a whole-utterance caller");
        };
        assert_eq!((replaced, lasts), (None, Duration::from_secs(1)));
        let Played::Whole { replaced, .. } = out.play(Some(2), &audio, t0) else {
            panic!("queued toward a whole-utterance caller");
        };
        assert_eq!(replaced, Some(1));
        assert!(!out.whole_played(1));
        assert_eq!(
            out.audio_left(t0 + Duration::from_millis(400)),
            Duration::from_millis(600)
        );
        assert_eq!(out.cut(), vec![2]);
        assert!(!out.whole_played(2));
    }

    #[test]
    fn whole_utterance_is_gathered_until_the_gap() {
        let t0 = Instant::now();
        let mut out = Outbound::new(&leg(Delivery::Whole), 2000, GAP, t0);
        let Ok(Streamed::Gathered { arm_gap }) = out.stream(loud(160), 8000, t0) else {
            panic!("not gathered");
        };
        assert_eq!(arm_gap, Some(GAP));
        // Silence neither joins the utterance nor restarts the gap.
        let t1 = t0 + Duration::from_millis(100);
        assert!(matches!(
            out.stream(vec![0; 160], 8000, t1),
            Ok(Streamed::Gathered { arm_gap: None })
        ));
        assert!(matches!(
            out.stream(loud(160), 8000, t1),
            Ok(Streamed::Gathered { arm_gap: None })
        ));
        assert_eq!(out.gathered_len(), 320);
        // A mark waits for the utterance; it was not sent yet.
        assert_eq!(out.mark(9, 0, t1), None);
        assert_eq!(out.gap_left(t0 + GAP), Duration::from_millis(100));
        assert_eq!(out.gap_left(t1 + GAP), Duration::ZERO);
        assert!(out.is_gathering());
        assert_eq!(out.end_stream().map(|u| u.len()), Some(320));
        assert!(!out.is_gathering());
        assert_eq!(out.take_waiting_marks(), vec![9]);
        assert_eq!(out.mark(10, 0, t1), Some(Duration::ZERO));
    }

    #[test]
    fn cut_drops_gathered_audio_and_keeps_waiting_marks() {
        let t0 = Instant::now();
        let mut out = Outbound::new(&leg(Delivery::Whole), 2000, GAP, t0);
        assert!(out.stream(loud(160), 8000, t0).is_ok());
        assert_eq!(out.mark(4, 0, t0), None);
        assert!(out.cut().is_empty());
        assert!(!out.is_gathering());
        assert_eq!(out.gathered_len(), 0);
        assert_eq!(out.take_waiting_marks(), vec![4]);
    }
}
