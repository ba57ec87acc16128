//! How a call starts and ends: its deadlines at start (and a bot that could not start), the
//! media watchdogs, the switch's own hangups (`terminating`, then `hangup` once the leg has
//! closed) and the last words to the bot, the registry and chained calls.

use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;

use super::messages::{BotEvent, CallEnded, HangupCall, LegCommand};
use super::state::{self, EndCause, HangupReason};
use super::CallActor;
use crate::media::FRAME_MS;

/// A call whose caller leg has not attached by then fails: the protocol session died early.
const LEG_ATTACH_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the call checks for a silent caller leg or one that accepts nothing, at most.
const MEDIA_CHECK_MAX: Duration = Duration::from_secs(1);
/// How often the call checks, at least (for very short configured timeouts).
const MEDIA_CHECK_MIN: Duration = Duration::from_millis(20);

/// How the call will end once its leg is gone.
pub(super) struct PendingEnd {
    pub cause: EndCause,
    pub reason: Option<HangupReason>,
    pub detail: String,
}

impl CallActor {
    /// The switch ends the call for `cause` (the hangup reason follows from it).
    pub(super) fn end_with(&mut self, cause: EndCause, detail: String, ctx: &mut Context<Self>) {
        self.end_call(
            PendingEnd {
                cause,
                reason: None,
                detail,
            },
            ctx,
        );
    }

    /// The switch ends the call: `terminating` now, `hangup` once the leg has closed.
    pub(super) fn end_call(&mut self, end: PendingEnd, ctx: &mut Context<Self>) {
        if self.record.status == state::Status::Hangup {
            return;
        }
        if let Some(event) = self.record.start_local_hangup(Utc::now()) {
            self.publish(event);
        }
        if self.pending_end.is_some() {
            return;
        }
        let reason = end.reason.unwrap_or_else(|| {
            state::hangup_reason(self.record.direction, self.record.status, end.cause)
        });
        let detail = end.detail.clone();
        self.pending_end = Some(end);
        self.cancel_hold(ctx);
        self.stop_audio(false, ctx);
        match &self.leg {
            Some(leg) => {
                leg.recipient.do_send(LegCommand::End { reason, detail });
                let grace = Duration::from_millis(self.services.config.media.leg_close_grace_ms);
                ctx.run_later(grace, |act, ctx| {
                    act.finish(EndCause::Normal, String::new(), ctx)
                });
            }
            None => {
                if let Some(dialer) = self.dialer.take() {
                    dialer.do_send(LegCommand::End { reason, detail });
                }
                self.finish(EndCause::Normal, String::new(), ctx)
            }
        }
    }

    /// The call is gone: `hangup`, tell the bot and chained calls, stop the actor.
    pub(super) fn finish(&mut self, cause: EndCause, detail: String, ctx: &mut Context<Self>) {
        let (cause, reason, detail) = match self.pending_end.take() {
            Some(p) => (p.cause, p.reason, p.detail),
            None => (cause, None, detail),
        };
        let Some(event) = self.record.finish(cause, Utc::now()) else {
            return;
        };
        if let Some(reason) = reason {
            self.record.hangup_reason = Some(reason);
        }
        self.record.hangup_detail = detail;
        if let Some(bot) = &self.bot {
            bot.events.do_send(BotEvent::Ended);
        }
        self.leave_room_on_hangup();
        for child in &self.record.chained_call_ids {
            self.registry.hangup.do_send(HangupCall {
                id: *child,
                cause: EndCause::Normal,
                detail: format!("master call {} hung up", self.record.id),
            });
        }
        let dropped_samples = self.outbound.as_ref().map_or(0, |o| o.dropped_samples());
        if dropped_samples > 0 {
            tracing::info!(call = %self.record.id, dropped = dropped_samples, "bot audio dropped for a slow caller");
        }
        if self.dropped_caller_frames > 0 {
            tracing::info!(call = %self.record.id, dropped = self.dropped_caller_frames, "caller frames dropped for a slow bot");
        }
        if self.dropped_leg_commands > 0 {
            tracing::info!(call = %self.record.id, dropped = self.dropped_leg_commands, "audio commands refused by a full leg mailbox");
        }
        tracing::info!(
            call = %self.record.id,
            reference = %self.record.reference,
            reason = ?self.record.hangup_reason,
            by = ?self.record.hangup_by,
            detail = %self.record.hangup_detail,
            "call hung up"
        );
        self.stop_recording(false);
        self.publish(event);
        ctx.stop();
    }

    /// A bot's hangup: whatever the bot already said is heard first, so a hangup right after
    /// speech never cuts it off.
    pub(super) fn hangup_after_audio(&mut self, reason: HangupReason, ctx: &mut Context<Self>) {
        if self.outbound.as_ref().is_some_and(|o| o.is_gathering()) {
            self.end_stream(ctx);
        }
        let left = self.audio_left();
        let end = |act: &mut Self, ctx: &mut Context<Self>, reason| {
            act.end_call(
                PendingEnd {
                    cause: EndCause::Normal,
                    reason: Some(reason),
                    detail: String::new(),
                },
                ctx,
            )
        };
        if left.is_zero() {
            return end(self, ctx, reason);
        }
        self.deferred_hangup = Some(reason);
        ctx.run_later(
            left + Duration::from_millis(FRAME_MS as u64),
            move |act, ctx| {
                if let Some(reason) = act.deferred_hangup.take() {
                    end(act, ctx, reason);
                }
            },
        );
    }

    /// Watches the caller leg that has just attached (see `check_media`).
    pub(super) fn watch_media(&mut self) {
        self.last_media = Instant::now();
    }

    /// Starts the call's one clock (`check_media`), every quarter of the shorter of
    /// `media_timeout_ms` and `write_timeout_ms`, 20 ms..1 s. One clock for every deadline:
    /// actix polls every timer of an actor each time it wakes, twice per audio frame.
    fn start_clock(&mut self, ctx: &mut Context<Self>) {
        let media = &self.services.config.media;
        let shortest = match media.media_timeout_ms {
            0 => media.write_timeout_ms,
            m => m.min(media.write_timeout_ms),
        };
        let check = Duration::from_millis(shortest / 4).clamp(MEDIA_CHECK_MIN, MEDIA_CHECK_MAX);
        ctx.run_interval(check, |act, ctx| act.check_media(ctx));
    }

    /// The call's clock: past `max_call_duration` ends the call with `timeout`; no caller leg
    /// `LEG_ATTACH_TIMEOUT` after the start (and no dialer placing the call, which has its own
    /// ring timeout) fails it; a leg silent for `media_timeout_ms` ends it with `timeout`, one
    /// refusing audio for `write_timeout_ms` as failed.
    fn check_media(&mut self, ctx: &mut Context<Self>) {
        if self.is_over() {
            return;
        }
        let media = &self.services.config.media;
        let age = self.started_at.elapsed();
        let max_secs = media.max_call_duration;
        if max_secs > 0 && age >= Duration::from_secs(max_secs) {
            let detail = format!("the call reached its maximum duration of {max_secs} s");
            return self.end_with(EndCause::Timeout, detail, ctx);
        }
        if self.leg.is_none() {
            // `outbound` is set when a leg attaches: a call whose leg has gone is ending.
            if self.outbound.is_none() && self.dialer.is_none() && age >= LEG_ATTACH_TIMEOUT {
                self.end_with(EndCause::Failed, "no caller leg attached".into(), ctx);
            }
            return;
        }
        let silent = self.last_media.elapsed();
        if media.media_timeout_ms > 0 && silent >= Duration::from_millis(media.media_timeout_ms) {
            let detail = format!("no media from the caller for {} ms", silent.as_millis());
            return self.end_with(EndCause::Timeout, detail, ctx);
        }
        if let Some(since) = self.leg_stalled_since {
            let stalled = since.elapsed();
            if stalled >= Duration::from_millis(media.write_timeout_ms) {
                let detail = format!(
                    "the caller's side accepted no audio for {} ms ({} dropped)",
                    stalled.as_millis(),
                    self.dropped_leg_commands
                );
                self.end_with(EndCause::Failed, detail, ctx);
            }
        }
    }
}

impl Actor for CallActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(super::MAILBOX_CAPACITY);
        if let Some(why) = self.bot_failed.take() {
            return self.end_with(EndCause::Failed, why, ctx);
        }
        self.start_clock(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        if self.record.status != state::Status::Hangup {
            // Stopped without an orderly hangup (its arbiter stopped): record it as failed.
            if let Some(event) = self.record.finish(EndCause::Failed, Utc::now()) {
                self.stop_recording(false);
                self.record.hangup_detail = "call stopped unexpectedly".into();
                self.publish(event);
            }
            if let Some(bot) = &self.bot {
                bot.events.do_send(BotEvent::Ended);
            }
        }
        self.registry
            .ended
            .do_send(CallEnded { id: self.record.id });
    }
}
