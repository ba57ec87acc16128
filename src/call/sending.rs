//! The call's side of `Outbound`: hands what it gives out to the leg, records it, and runs its
//! timers (the pacer, whole prompts, the utterance gap, marks).

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::messages::LegCommand;
use super::outbound::{Played, Streamed};
use super::CallActor;
use crate::media::resample_all;

impl CallActor {
    /// A bot's `Say`: the prompt at `rate` is resampled to the leg's rate and played.
    pub(super) fn say(
        &mut self,
        prompt: u64,
        text: Option<String>,
        audio: Arc<[i16]>,
        rate: u32,
        ctx: &mut Context<Self>,
    ) {
        let Some(out_rate) = self.leg.as_ref().map(|l| l.format.out_rate) else {
            self.prompt_done(prompt, true);
            return;
        };
        let audio = if rate == out_rate {
            audio
        } else {
            match resample_all(&audio, rate, out_rate) {
                Ok(a) => a.into(),
                Err(e) => {
                    tracing::warn!(call = %self.record.id, error = %e, "prompt dropped");
                    self.prompt_done(prompt, true);
                    return;
                }
            }
        };
        self.play(Some(prompt), text, audio, ctx);
    }

    /// Plays a whole prompt at the leg's rate (`None`: hold music or a gathered utterance,
    /// never reported): paced, or sent as one utterance whose prompt is reported done after it
    /// has had time to play.
    pub(super) fn play(
        &mut self,
        prompt: Option<u64>,
        text: Option<String>,
        audio: Arc<[i16]>,
        ctx: &mut Context<Self>,
    ) {
        let Some(out) = self.outbound.as_mut() else {
            return;
        };
        let (replaced, lasts) = match out.play(prompt, &audio, Instant::now()) {
            Played::Queued => return self.pump(ctx),
            Played::Whole { replaced, lasts } => (replaced, lasts),
        };
        if replaced.is_some() {
            self.record_bot_cut();
        }
        self.record_bot(&audio);
        if let Some(replaced) = replaced {
            if let Some(h) = self.whole_timer.take() {
                ctx.cancel_future(h);
            }
            self.prompt_done(replaced, true);
        }
        self.send_media(LegCommand::Play { text, audio });
        if let Some(prompt) = prompt {
            self.whole_timer = Some(ctx.run_later(lasts, move |act, _| {
                if act
                    .outbound
                    .as_mut()
                    .is_some_and(|o| o.whole_played(prompt))
                {
                    act.whole_timer = None;
                    act.prompt_done(prompt, false);
                }
            }));
        }
    }

    /// Sends the paced audio due now and sets the pacer for the rest. This is the only place
    /// audio is paced.
    pub(super) fn pump(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.pacer.take() {
            ctx.cancel_future(h);
        }
        if self.leg.is_none() {
            return;
        }
        let Some(out) = self.outbound.as_mut() else {
            return;
        };
        let pumped = out.pump(Instant::now());
        for frame in pumped.frames {
            self.record_bot(&frame);
            self.send_media(LegCommand::Audio(frame));
        }
        for (prompt, wait) in pumped.played {
            ctx.run_later(wait, move |act, _| act.prompt_done(prompt, false));
        }
        if let Some(wait) = pumped.again {
            self.pacer = Some(ctx.run_later(wait, |act, ctx| {
                act.pacer = None;
                act.pump(ctx);
            }));
        }
    }

    /// Streamed bot audio (or a room's mix) at `rate`: paced, or gathered into an utterance
    /// sent once the bot has been quiet for `utterance_gap_ms`.
    pub(super) fn on_bot_stream<'a>(
        &mut self,
        samples: impl Into<std::borrow::Cow<'a, [i16]>>,
        rate: u32,
        ctx: &mut Context<Self>,
    ) {
        if self.leg.is_none() {
            return;
        }
        let Some(out) = self.outbound.as_mut() else {
            return;
        };
        match out.stream(samples, rate, Instant::now()) {
            Ok(Streamed::Queued) => self.pump(ctx),
            Ok(Streamed::Gathered { arm_gap: Some(gap) }) => {
                self.gap_timer = Some(ctx.run_later(gap, |act, ctx| act.gap_elapsed(ctx)));
            }
            Ok(Streamed::Gathered { arm_gap: None }) => {}
            Err(e) => tracing::warn!(call = %self.record.id, error = %e, "bot audio dropped"),
        }
    }

    /// The gap timer fired: close the utterance if the bot has been quiet long enough, else
    /// wait for the rest of the gap. One timer per utterance, not one per chunk.
    fn gap_elapsed(&mut self, ctx: &mut Context<Self>) {
        self.gap_timer = None;
        let left = self
            .outbound
            .as_ref()
            .map_or(Duration::ZERO, |o| o.gap_left(Instant::now()));
        if left.is_zero() {
            self.end_stream(ctx);
        } else {
            self.gap_timer = Some(ctx.run_later(left, |act, ctx| act.gap_elapsed(ctx)));
        }
    }

    /// The bot's stream ended (or its utterance gap passed): the rest of it is paced, or the
    /// gathered utterance is sent, then the marks that waited for it.
    pub(super) fn end_stream(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.gap_timer.take() {
            ctx.cancel_future(h);
        }
        let Some(out) = self.outbound.as_mut() else {
            return;
        };
        let utterance = out.end_stream();
        let marks = out.take_waiting_marks();
        match utterance {
            Some(utterance) => self.play(None, None, utterance.into(), ctx),
            None => self.pump(ctx),
        }
        for id in marks {
            self.mark(id, ctx);
        }
    }

    /// How long the audio already sent or queued toward the caller still plays.
    pub(super) fn audio_left(&self) -> Duration {
        match (&self.leg, &self.outbound) {
            (Some(_), Some(out)) => out.audio_left(Instant::now()),
            _ => Duration::ZERO,
        }
    }

    /// A bot's mark: reported done once the audio sent or queued before it has played. Behind
    /// an utterance still being gathered it waits for that utterance to be sent first.
    pub(super) fn mark(&mut self, id: u64, ctx: &mut Context<Self>) {
        let wait = match (&self.leg, self.outbound.as_mut()) {
            (Some(_), Some(out)) => out.mark(id, self.marks.len(), Instant::now()),
            _ => Some(Duration::ZERO),
        };
        let Some(wait) = wait else { return };
        if wait.is_zero() {
            return self.prompt_done(id, false);
        }
        let timer = ctx.run_later(wait, move |act, _| {
            act.marks.retain(|(m, _)| *m != id);
            act.prompt_done(id, false);
        });
        self.marks.push((id, timer));
    }

    /// Drops queued bot audio and resampler state; tells the caller's side when asked.
    pub(super) fn stop_audio(&mut self, tell_leg: bool, ctx: &mut Context<Self>) {
        let mut cut = self.outbound.as_mut().map(|o| o.cut()).unwrap_or_default();
        for h in [self.whole_timer.take(), self.gap_timer.take()]
            .into_iter()
            .flatten()
        {
            ctx.cancel_future(h);
        }
        for (id, timer) in self.marks.drain(..) {
            ctx.cancel_future(timer);
            cut.push(id);
        }
        if let Some(out) = self.outbound.as_mut() {
            cut.append(&mut out.take_waiting_marks());
        }
        self.barge_in_reset();
        if !cut.is_empty() {
            self.record_bot_cut();
        }
        for prompt in cut {
            self.prompt_done(prompt, true);
        }
        if tell_leg {
            if let Some(leg) = &self.leg {
                leg.recipient.do_send(LegCommand::StopAudio);
            }
        }
    }

    /// Hands audio to the caller leg without ever queueing past its mailbox: a leg that is
    /// behind loses the audio (counted), and one that stays full for `write_timeout_ms` is
    /// hung up by the media check.
    pub(super) fn send_media(&mut self, cmd: LegCommand) {
        let Some(leg) = &self.leg else { return };
        match leg.recipient.try_send(cmd) {
            Ok(()) => self.leg_stalled_since = None,
            Err(SendError::Full(_)) => {
                self.dropped_leg_commands += 1;
                self.leg_stalled_since.get_or_insert_with(Instant::now);
            }
            Err(SendError::Closed(_)) => {}
        }
    }
}
