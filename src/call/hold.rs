//! Hold (`BotCommand::Hold`): the caller's side plays its own hold music, or the call plays
//! the configured music to it as audio, repeated until bot audio or a hangup ends it.

use std::time::Duration;

use actix::prelude::*;

use super::messages::LegCommand;
use super::CallActor;
use crate::media::{duration_ms, hold};

impl CallActor {
    /// Puts the caller on hold: its own hold music, or ours played as audio and repeated.
    pub(super) fn start_hold(&mut self, ctx: &mut Context<Self>) {
        let Some(leg) = &self.leg else { return };
        if leg.format.plays_hold_music {
            leg.recipient.do_send(LegCommand::Hold);
            return;
        }
        if self.hold.is_some() {
            return;
        }
        let out_rate = leg.format.out_rate;
        let audio = match hold::cached(&self.services.config.media.hold_music, out_rate) {
            Ok(a) if !a.is_empty() => a,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(call = %self.record.id, error = %e, "no hold music");
                return;
            }
        };
        let period = Duration::from_millis(duration_ms(audio.len(), out_rate).max(1));
        self.play(None, None, audio.clone(), ctx);
        self.hold = Some(ctx.run_interval(period, move |act, ctx| {
            act.play(None, None, audio.clone(), ctx)
        }));
    }

    /// Stops repeating hold music; whether it was repeating.
    pub(super) fn cancel_hold(&mut self, ctx: &mut Context<Self>) -> bool {
        let Some(h) = self.hold.take() else {
            return false;
        };
        ctx.cancel_future(h);
        true
    }

    /// Ends hold music (if any) before new bot audio.
    pub(super) fn end_hold(&mut self, ctx: &mut Context<Self>) {
        if self.cancel_hold(ctx) {
            self.stop_audio(true, ctx);
        }
    }
}
