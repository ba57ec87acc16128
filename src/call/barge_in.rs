//! Barge-in: caller speech or a key stops a prompt the bot armed (`BotCommand::BargeIn`) while
//! it plays.

use std::time::{Duration, Instant};

use actix::prelude::*;

use super::CallActor;
use crate::media::vad::{Vad, ECHO_GUARD_MS};

/// A prompt that caller speech or a key may stop.
pub(super) struct BargeIn {
    prompt: u64,
    /// When the prompt started playing; `None` until its `Say` arrives.
    started: Option<Instant>,
    vad: Vad,
}

impl CallActor {
    /// Arms barge-in for `prompt`, replacing any armed before.
    pub(super) fn arm_barge_in(&mut self, prompt: u64) {
        let rate = self
            .leg
            .as_ref()
            .map_or(crate::media::TELEPHONE_RATE, |l| l.format.in_rate);
        self.barge_in = Some(BargeIn {
            prompt,
            started: None,
            vad: Vad::new(rate),
        });
    }

    /// `prompt` starts playing: if armed, caller speech may stop it from now on.
    pub(super) fn barge_in_prompt_started(&mut self, prompt: u64) {
        if let Some(b) = self.barge_in.as_mut().filter(|b| b.prompt == prompt) {
            b.started = Some(Instant::now());
            b.vad.reset();
        }
    }

    /// `prompt` is done: nothing is left to stop if it was armed.
    pub(super) fn barge_in_prompt_done(&mut self, prompt: u64) {
        if self.barge_in.as_ref().is_some_and(|b| b.prompt == prompt) {
            self.barge_in = None;
        }
    }

    /// Bot audio was cut off: speech heard so far belongs to no prompt.
    pub(super) fn barge_in_reset(&mut self) {
        if let Some(b) = self.barge_in.as_mut() {
            b.vad.reset();
        }
    }

    /// Caller speech or a key stops an armed prompt that is playing.
    pub(super) fn barge(&mut self, why: &'static str, ctx: &mut Context<Self>) {
        if self.barge_in.as_ref().is_none_or(|b| b.started.is_none()) {
            return;
        }
        if let Some(b) = self.barge_in.take() {
            tracing::debug!(call = %self.record.id, prompt = b.prompt, why, "barge-in");
        }
        self.stop_audio(true, ctx);
    }

    /// Feeds caller audio to the barge-in detector of a playing prompt.
    pub(super) fn listen_for_barge_in(&mut self, samples: &[i16], ctx: &mut Context<Self>) {
        let Some(b) = self.barge_in.as_mut() else {
            return;
        };
        let Some(started) = b.started else { return };
        // The first frames after a prompt starts may carry its own echo.
        if started.elapsed() < Duration::from_millis(ECHO_GUARD_MS) {
            return;
        }
        if b.vad.push(samples) {
            self.barge("speech", ctx);
        }
    }
}
