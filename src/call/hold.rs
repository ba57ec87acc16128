//! Hold (`BotCommand::Hold`): the caller's side plays its own hold music, or the call plays
//! the configured music to it as audio, repeated until bot audio or a hangup ends it. Ringback
//! while a `connect` rings (`BotCommand::Bridge`) is repeated the same way.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::messages::LegCommand;
use super::CallActor;
use crate::media::{duration_ms, hold, ringback};

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
        self.repeat(audio, out_rate, ctx);
    }

    /// Plays ringback while a `connect` rings its bots: `ring` (at the leg's `out_rate`) or the
    /// standard tone, repeated. It shares hold music's place: the bridge coming up
    /// (`EnterRoom`) or failing stops it.
    pub(super) fn start_ringback(&mut self, ring: Option<Arc<[i16]>>, ctx: &mut Context<Self>) {
        let Some(leg) = &self.leg else { return };
        let out_rate = leg.format.out_rate;
        self.cancel_hold(ctx);
        let audio = ring.unwrap_or_else(|| ringback::period(out_rate).into());
        self.repeat(audio, out_rate, ctx);
    }

    /// Plays `audio` now and again every time it ends, until `cancel_hold`.
    fn repeat(&mut self, audio: Arc<[i16]>, rate: u32, ctx: &mut Context<Self>) {
        let period = Duration::from_millis(duration_ms(audio.len(), rate).max(1));
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
