//! The call actor: one per call, owning the VoIPBIN record and everything the caller hears.
//!
//! A call has one caller leg (a protocol session, attached after creation) and one bot. It
//! never sees a wire format: legs and bots speak the typed messages of `messages`. Status
//! rules live in `state`, audio queueing in `playout`; this module only routes messages to
//! them and runs the timers.

pub mod messages;
pub mod playout;
mod recorder;
mod room_link;
pub mod state;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;

use crate::bots::{self, BotHandle};
use crate::media::vad::{Vad, ECHO_GUARD_MS};
use crate::media::{duration_ms, hold, resample_all, StreamResampler, FRAME_MS};
use crate::registry::{CallChanged, CallEnded, HangupCall, Registry};
use crate::services::Services;
use messages::*;
use playout::Playout;
use state::{CallRecord, EndCause, HangupReason};

/// A call whose caller leg has not attached by then fails: the protocol session died early.
const LEG_ATTACH_TIMEOUT: Duration = Duration::from_secs(10);

/// How far ahead of real time paced audio may run toward the caller (its jitter buffer).
const PACED_LEAD_MS: u64 = 60;

/// How often the call checks for a silent caller leg or one that accepts nothing, at most.
const MEDIA_CHECK_MAX: Duration = Duration::from_secs(1);
/// How often the call checks, at least (for very short configured timeouts).
const MEDIA_CHECK_MIN: Duration = Duration::from_millis(20);

/// The prompt id hold music is queued under toward paced callers; never reported to the bot.
const HOLD_PROMPT: u64 = u64::MAX;

/// Streamed bot audio quieter than this (RMS of s16 samples, about -50 dBFS) counts as a gap
/// between utterances toward whole-utterance callers.
const SILENCE_RMS: f64 = 100.0;

/// Marks (`BotCommand::Mark`) waiting for their audio to play; past this a new mark is
/// reported at once.
const MAX_PENDING_MARKS: usize = 256;

/// Room in the call's mailbox: media senders use `try_send` and drop audio beyond this.
pub const MAILBOX_CAPACITY: usize = 256;

struct Leg {
    recipient: Recipient<LegCommand>,
    format: LegFormat,
}

/// The prompt a whole-utterance caller is playing now.
struct WholePrompt {
    prompt: u64,
    timer: SpawnHandle,
}

/// A prompt that caller speech or a key may stop.
struct BargeIn {
    prompt: u64,
    /// When the prompt started playing; `None` until its `Say` arrives.
    started: Option<Instant>,
    vad: Vad,
}

/// How the call will end once its leg is gone.
struct PendingEnd {
    cause: EndCause,
    reason: Option<HangupReason>,
    detail: String,
}

/// One call.
pub struct CallActor {
    record: CallRecord,
    registry: Addr<Registry>,
    services: Arc<Services>,
    bot: Option<BotHandle>,
    leg: Option<Leg>,
    /// Caller audio from the leg's rate to the bot's input rate.
    to_bot: Option<StreamResampler>,
    /// Streamed bot audio to the leg's output rate.
    from_bot: Option<StreamResampler>,
    playout: Option<Playout>,
    pacer: Option<SpawnHandle>,
    /// When the paced audio sent so far will have played at the caller.
    paced_until: Instant,
    whole_prompt: Option<WholePrompt>,
    gap_timer: Option<SpawnHandle>,
    /// When streamed bot audio last arrived (the utterance gap counts from here).
    last_bot_audio: Instant,
    pending_end: Option<PendingEnd>,
    /// When the whole utterance last sent to the caller will have finished playing.
    whole_until: Option<Instant>,
    /// A bot hangup waiting for queued audio to play out.
    deferred_hangup: Option<HangupReason>,
    /// Caller frames dropped because the bot's mailbox was full.
    dropped_caller_frames: u64,
    /// The prompt barge-in is armed for.
    barge_in: Option<BargeIn>,
    /// Bot marks waiting for the audio before them to play, with their timers.
    marks: Vec<(u64, SpawnHandle)>,
    /// Bot marks behind the utterance being gathered for a whole-utterance caller; they wait
    /// for it to be sent (a mark never closes an utterance early).
    gathering_marks: Vec<u64>,
    /// When the caller leg last sent audio (or attached).
    last_media: Instant,
    /// Since when the caller leg's mailbox has refused audio, if it does now.
    leg_stalled_since: Option<Instant>,
    /// Audio commands the leg's full mailbox refused.
    dropped_leg_commands: u64,
    /// The timer repeating hold music while the caller is on hold.
    hold: Option<SpawnHandle>,
    /// The recording in progress (`recorder.rs`).
    recorder: Option<crate::recording::Recorder>,
    /// Bot audio from the leg's output rate to the recording's rate (one streaming resampler
    /// per recording, not one per frame).
    recorder_bot_rate: Option<crate::media::RateAdapter>,
    /// The conference room the caller is in (`room_link.rs`); its mix replaces the bot's audio.
    room: Option<room_link::RoomLink>,
}

impl CallActor {
    /// A new call for `record`; its bot (named in `record.bot`) starts with the actor.
    pub fn new(record: CallRecord, registry: Addr<Registry>, services: Arc<Services>) -> Self {
        CallActor {
            record,
            registry,
            services,
            bot: None,
            leg: None,
            to_bot: None,
            from_bot: None,
            playout: None,
            pacer: None,
            paced_until: Instant::now(),
            whole_prompt: None,
            gap_timer: None,
            last_bot_audio: Instant::now(),
            pending_end: None,
            whole_until: None,
            deferred_hangup: None,
            dropped_caller_frames: 0,
            barge_in: None,
            marks: Vec::new(),
            gathering_marks: Vec::new(),
            last_media: Instant::now(),
            leg_stalled_since: None,
            dropped_leg_commands: 0,
            hold: None,
            recorder: None,
            recorder_bot_rate: None,
            room: None,
        }
    }

    fn publish(&self, event: &'static str) {
        self.registry.do_send(CallChanged {
            record: Box::new(self.record.clone()),
            event,
        });
    }

    fn is_over(&self) -> bool {
        self.record.status.is_ending()
    }

    /// The switch ends the call: `terminating` now, `hangup` once the leg has closed.
    fn end_call(&mut self, end: PendingEnd, ctx: &mut Context<Self>) {
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
        if let Some(h) = self.hold.take() {
            ctx.cancel_future(h);
        }
        self.stop_audio(false, ctx);
        match &self.leg {
            Some(leg) => {
                leg.recipient.do_send(LegCommand::End { reason, detail });
                let grace = Duration::from_millis(self.services.config.media.leg_close_grace_ms);
                ctx.run_later(grace, |act, ctx| {
                    act.finish(EndCause::Normal, String::new(), ctx)
                });
            }
            None => self.finish(EndCause::Normal, String::new(), ctx),
        }
    }

    /// The call is gone: `hangup`, tell the bot and chained calls, stop the actor.
    fn finish(&mut self, cause: EndCause, detail: String, ctx: &mut Context<Self>) {
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
            self.registry.do_send(HangupCall {
                id: *child,
                cause: EndCause::Normal,
                detail: format!("master call {} hung up", self.record.id),
            });
        }
        if let Some(p) = &self.playout {
            if p.dropped_samples > 0 {
                tracing::info!(call = %self.record.id, dropped = p.dropped_samples, "bot audio dropped for a slow caller");
            }
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

    fn answer(&mut self) {
        if matches!(
            self.record.status,
            state::Status::Dialing | state::Status::Ringing
        ) {
            if let Some(event) = self.record.answer(Utc::now()) {
                self.publish(event);
            }
        }
    }

    fn prompt_done(&mut self, prompt: u64, interrupted: bool) {
        if prompt == HOLD_PROMPT {
            return;
        }
        if self.barge_in.as_ref().is_some_and(|b| b.prompt == prompt) {
            self.barge_in = None;
        }
        if let Some(bot) = &self.bot {
            bot.events.do_send(BotEvent::PromptDone {
                prompt,
                interrupted,
            });
        }
    }

    /// Drops queued bot audio and resampler state; tells the caller's side when asked.
    fn stop_audio(&mut self, tell_leg: bool, ctx: &mut Context<Self>) {
        let mut cut = Vec::new();
        if let Some(p) = self.playout.as_mut() {
            cut = p.clear();
        }
        if let Some(w) = self.whole_prompt.take() {
            ctx.cancel_future(w.timer);
            cut.push(w.prompt);
        }
        if let Some(h) = self.gap_timer.take() {
            ctx.cancel_future(h);
        }
        for (id, timer) in self.marks.drain(..) {
            ctx.cancel_future(timer);
            cut.push(id);
        }
        cut.append(&mut self.gathering_marks);
        if let Some(r) = self.from_bot.as_mut() {
            r.reset();
        }
        if let Some(b) = self.barge_in.as_mut() {
            b.vad.reset();
        }
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

    /// Plays a whole utterance toward a whole-utterance caller; reports `prompt` done after
    /// the audio has had time to play.
    fn play_whole(
        &mut self,
        prompt: Option<u64>,
        text: Option<String>,
        audio: Arc<[i16]>,
        ctx: &mut Context<Self>,
    ) {
        if self.whole_prompt.is_some() {
            self.record_bot_cut();
        }
        self.record_bot(&audio);
        let Some(out_rate) = self.leg.as_ref().map(|l| l.format.out_rate) else {
            return;
        };
        if let Some(w) = self.whole_prompt.take() {
            // The caller's side replaces what it plays with the new utterance.
            ctx.cancel_future(w.timer);
            self.prompt_done(w.prompt, true);
        }
        let ms = duration_ms(audio.len(), out_rate);
        self.send_media(LegCommand::Play { text, audio });
        self.whole_until = Some(Instant::now() + Duration::from_millis(ms));
        if let Some(prompt) = prompt {
            let timer = ctx.run_later(Duration::from_millis(ms), move |act, _| {
                if act
                    .whole_prompt
                    .as_ref()
                    .is_some_and(|w| w.prompt == prompt)
                {
                    act.whole_prompt = None;
                    act.prompt_done(prompt, false);
                }
            });
            self.whole_prompt = Some(WholePrompt { prompt, timer });
        }
    }

    /// Sends paced audio: frames go out as long as the caller's side is less than
    /// `PACED_LEAD_MS` ahead of real time, so audio that arrives at real time (an echo, a
    /// streaming bot) leaves at once, and a whole prompt leaves one 20 ms frame at a time. This
    /// is the only place audio is paced. A prompt is marked played when its last frame has had
    /// time to play.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.pacer.take() {
            ctx.cancel_future(h);
        }
        let Some(out_rate) = self.leg.as_ref().map(|l| l.format.out_rate) else {
            return;
        };
        let now = Instant::now();
        let lead = Duration::from_millis(PACED_LEAD_MS);
        if self.paced_until < now {
            self.paced_until = now;
        }
        let mut played = Vec::new();
        while self.paced_until < now + lead {
            let Some(frame) = self.playout.as_mut().and_then(|p| p.next_frame()) else {
                break;
            };
            self.paced_until += Duration::from_millis(duration_ms(frame.samples.len(), out_rate));
            self.record_bot(&frame.samples);
            self.send_media(LegCommand::Audio(frame.samples));
            played.extend(frame.finished.into_iter().map(|p| (p, self.paced_until)));
        }
        let backlog = self.playout.as_ref().is_some_and(|p| !p.is_empty());
        for (prompt, at) in played {
            let wait = at.saturating_duration_since(now);
            ctx.run_later(wait, move |act, _| act.prompt_done(prompt, false));
        }
        if backlog {
            let wait = (self.paced_until - lead).saturating_duration_since(now);
            self.pacer = Some(ctx.run_later(wait, |act, ctx| {
                act.pacer = None;
                act.pump(ctx);
            }));
        }
    }

    /// Hands audio to the caller leg without ever queueing past its mailbox: a leg that is
    /// behind loses the audio (counted), and one that stays full for `write_timeout_ms` is
    /// hung up by the media check.
    fn send_media(&mut self, cmd: LegCommand) {
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

    /// Checks the caller leg: silent for `media_timeout_ms` ends the call with `timeout`;
    /// refusing audio for `write_timeout_ms` ends it as failed.
    fn check_media(&mut self, ctx: &mut Context<Self>) {
        if self.is_over() || self.leg.is_none() {
            return;
        }
        let media = &self.services.config.media;
        let silent = self.last_media.elapsed();
        if media.media_timeout_ms > 0 && silent >= Duration::from_millis(media.media_timeout_ms) {
            self.end_call(
                PendingEnd {
                    cause: EndCause::Timeout,
                    reason: None,
                    detail: format!("no media from the caller for {} ms", silent.as_millis()),
                },
                ctx,
            );
            return;
        }
        if let Some(since) = self.leg_stalled_since {
            let stalled = since.elapsed();
            if stalled >= Duration::from_millis(media.write_timeout_ms) {
                self.end_call(
                    PendingEnd {
                        cause: EndCause::Failed,
                        reason: None,
                        detail: format!(
                            "the caller's side accepted no audio for {} ms ({} dropped)",
                            stalled.as_millis(),
                            self.dropped_leg_commands
                        ),
                    },
                    ctx,
                );
            }
        }
    }

    /// Caller speech or a key stops an armed prompt that is playing.
    fn barge(&mut self, why: &'static str, ctx: &mut Context<Self>) {
        if self.barge_in.as_ref().is_none_or(|b| b.started.is_none()) {
            return;
        }
        if let Some(b) = self.barge_in.take() {
            tracing::debug!(call = %self.record.id, prompt = b.prompt, why, "barge-in");
        }
        self.stop_audio(true, ctx);
    }

    /// Feeds caller audio to the barge-in detector of a playing prompt.
    fn listen_for_barge_in(&mut self, samples: &[i16], ctx: &mut Context<Self>) {
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

    /// Puts the caller on hold: its own hold music, or ours played as audio and repeated.
    fn start_hold(&mut self, ctx: &mut Context<Self>) {
        let Some(leg) = &self.leg else { return };
        if leg.format.plays_hold_music {
            leg.recipient.do_send(LegCommand::Hold);
            return;
        }
        if self.hold.is_some() {
            return;
        }
        let format = leg.format;
        let audio = match hold::cached(&self.services.config.media.hold_music, format.out_rate) {
            Ok(a) if !a.is_empty() => a,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(call = %self.record.id, error = %e, "no hold music");
                return;
            }
        };
        let period = Duration::from_millis(duration_ms(audio.len(), format.out_rate).max(1));
        self.play_hold(audio.clone(), format.delivery, ctx);
        self.hold = Some(ctx.run_interval(period, move |act, ctx| {
            act.play_hold(audio.clone(), format.delivery, ctx)
        }));
    }

    fn play_hold(&mut self, audio: Arc<[i16]>, delivery: Delivery, ctx: &mut Context<Self>) {
        match delivery {
            Delivery::Whole => self.play_whole(None, None, audio, ctx),
            Delivery::Paced => {
                if let Some(p) = self.playout.as_mut() {
                    p.push_prompt(HOLD_PROMPT, audio);
                }
                self.pump(ctx);
            }
        }
    }

    /// Ends hold music (if any) before new bot audio.
    fn end_hold(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.hold.take() {
            ctx.cancel_future(h);
            self.stop_audio(true, ctx);
        }
    }

    /// The gap timer fired: close the utterance if the bot has been quiet long enough, else
    /// wait for the rest of the gap. One timer per utterance, not one per chunk.
    fn gap_elapsed(&mut self, ctx: &mut Context<Self>) {
        self.gap_timer = None;
        let gap = Duration::from_millis(self.services.config.media.utterance_gap_ms);
        let quiet = self.last_bot_audio.elapsed();
        if quiet >= gap {
            self.flush_gathered(ctx);
        } else {
            self.gap_timer = Some(ctx.run_later(gap - quiet, |act, ctx| act.gap_elapsed(ctx)));
        }
    }

    /// Sends the utterance gathered for a whole-utterance caller.
    fn flush_gathered(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.gap_timer.take() {
            ctx.cancel_future(h);
        }
        let mut tail = Vec::new();
        if let Some(r) = self.from_bot.as_mut() {
            r.flush(&mut tail);
        }
        let Some(playout) = self.playout.as_mut() else {
            return;
        };
        playout.gather(&tail);
        if let Some(utterance) = playout.take_gathered() {
            self.play_whole(None, None, utterance.into(), ctx);
        }
        for id in std::mem::take(&mut self.gathering_marks) {
            self.mark(id, ctx);
        }
    }

    /// How long the audio already sent or queued toward the caller still plays.
    fn audio_left(&self) -> Duration {
        let Some(leg) = &self.leg else {
            return Duration::ZERO;
        };
        match leg.format.delivery {
            Delivery::Whole => self
                .whole_until
                .map(|t| t.saturating_duration_since(Instant::now()))
                .unwrap_or_default(),
            Delivery::Paced => {
                let queued = self.playout.as_ref().map_or(0, |p| p.queued_samples());
                Duration::from_millis(duration_ms(queued, leg.format.out_rate))
                    + self.paced_until.saturating_duration_since(Instant::now())
            }
        }
    }

    /// A bot's mark: reported done once the audio sent or queued before it has played. Behind
    /// an utterance still being gathered it waits for that utterance to be sent first.
    fn mark(&mut self, id: u64, ctx: &mut Context<Self>) {
        let pending = self.marks.len() + self.gathering_marks.len();
        if self.gap_timer.is_some() && pending < MAX_PENDING_MARKS {
            self.gathering_marks.push(id);
            return;
        }
        let wait = self.audio_left();
        if wait.is_zero() || pending >= MAX_PENDING_MARKS {
            return self.prompt_done(id, false);
        }
        let timer = ctx.run_later(wait, move |act, _| {
            act.marks.retain(|(m, _)| *m != id);
            act.prompt_done(id, false);
        });
        self.marks.push((id, timer));
    }

    /// A bot's hangup: whatever the bot already said is heard first, so a hangup right after
    /// speech never cuts it off.
    fn hangup_after_audio(&mut self, reason: HangupReason, ctx: &mut Context<Self>) {
        if self.gap_timer.is_some() {
            self.flush_gathered(ctx);
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

    fn on_bot_stream(&mut self, samples: Vec<i16>, rate: u32, ctx: &mut Context<Self>) {
        let Some(leg) = &self.leg else { return };
        let format = leg.format;
        if self.from_bot.as_ref().is_none_or(|r| r.from_rate() != rate) {
            match StreamResampler::new(rate, format.out_rate) {
                Ok(r) => self.from_bot = Some(r),
                Err(e) => {
                    tracing::warn!(call = %self.record.id, error = %e, "bot audio dropped");
                    return;
                }
            }
        }
        let out = if rate == format.out_rate {
            samples
        } else {
            let mut out =
                Vec::with_capacity(samples.len() * format.out_rate as usize / rate as usize + 16);
            if let Some(r) = self.from_bot.as_mut() {
                r.process(&samples, &mut out);
            }
            out
        };
        let Some(playout) = self.playout.as_mut() else {
            return;
        };
        match format.delivery {
            Delivery::Paced => {
                playout.push_stream(out);
                self.pump(ctx);
            }
            Delivery::Whole => {
                // Silence from the bot is a gap, not part of an utterance: an echo of a quiet
                // caller must not hold an utterance open for ever.
                if crate::media::pcm::rms(&out) < SILENCE_RMS {
                    return;
                }
                playout.gather(&out);
                self.last_bot_audio = Instant::now();
                if self.gap_timer.is_none() {
                    let gap = Duration::from_millis(self.services.config.media.utterance_gap_ms);
                    self.gap_timer = Some(ctx.run_later(gap, |act, ctx| act.gap_elapsed(ctx)));
                }
            }
        }
    }
}

impl Actor for CallActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        match bots::start(&self.record.bot, &self.services, ctx.address()) {
            Ok(bot) => self.bot = Some(bot),
            Err(e) => {
                self.end_call(
                    PendingEnd {
                        cause: EndCause::Failed,
                        reason: None,
                        detail: e.to_string(),
                    },
                    ctx,
                );
                return;
            }
        }
        let max_secs = self.services.config.media.max_call_duration;
        if max_secs > 0 {
            ctx.run_later(Duration::from_secs(max_secs), move |act, ctx| {
                act.end_call(
                    PendingEnd {
                        cause: EndCause::Timeout,
                        reason: None,
                        detail: format!("the call reached its maximum duration of {max_secs} s"),
                    },
                    ctx,
                )
            });
        }
        ctx.run_later(LEG_ATTACH_TIMEOUT, |act, ctx| {
            if act.leg.is_none() {
                act.end_call(
                    PendingEnd {
                        cause: EndCause::Failed,
                        reason: None,
                        detail: "no caller leg attached".into(),
                    },
                    ctx,
                );
            }
        });
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
        self.registry.do_send(CallEnded { id: self.record.id });
    }
}

impl Handler<AttachLeg> for CallActor {
    type Result = ();

    fn handle(&mut self, msg: AttachLeg, ctx: &mut Context<Self>) {
        if self.is_over() {
            msg.leg.do_send(LegCommand::End {
                reason: HangupReason::Failed,
                detail: "call ended before its leg attached".into(),
            });
            return;
        }
        let format = msg.format;
        let media = &self.services.config.media;
        self.playout = Some(Playout::new(format.out_rate, media.max_buffered_ms));
        self.last_media = Instant::now();
        let shortest = match media.media_timeout_ms {
            0 => media.write_timeout_ms,
            m => m.min(media.write_timeout_ms),
        };
        let check = Duration::from_millis(shortest / 4).clamp(MEDIA_CHECK_MIN, MEDIA_CHECK_MAX);
        ctx.run_interval(check, |act, ctx| act.check_media(ctx));
        if let Some(bot) = &self.bot {
            let bot_in = bot.in_rate.unwrap_or(format.in_rate);
            if bot_in != format.in_rate {
                self.to_bot = StreamResampler::new(format.in_rate, bot_in).ok();
            }
            bot.events.do_send(BotEvent::Start {
                call: Box::new(self.record.clone()),
                leg: format,
            });
        }
        self.leg = Some(Leg {
            recipient: msg.leg,
            format,
        });
    }
}

impl Handler<CallerEvent> for CallActor {
    type Result = ();

    fn handle(&mut self, msg: CallerEvent, ctx: &mut Context<Self>) {
        match msg {
            CallerEvent::Audio(samples) => {
                if self.is_over() {
                    return;
                }
                self.last_media = Instant::now();
                self.listen_for_barge_in(&samples, ctx);
                self.record_caller(&samples);
                if self.room.is_some() {
                    return self.audio_to_room(samples);
                }
                let Some(bot) = &self.bot else { return };
                let samples = match self.to_bot.as_mut() {
                    Some(r) => {
                        let mut out = Vec::with_capacity(samples.len() * 2);
                        r.process(&samples, &mut out);
                        out
                    }
                    None => samples,
                };
                if !samples.is_empty() && bot.events.try_send(BotEvent::Audio(samples)).is_err() {
                    self.dropped_caller_frames += 1;
                }
            }
            CallerEvent::Dtmf(digit) => {
                self.barge("key", ctx);
                self.record_key(digit);
                if self.room.is_some() {
                    // Keys in a room are recorded but reach no bot: the bot waits for the
                    // caller to leave the room.
                    return;
                }
                if let Some(bot) = &self.bot {
                    bot.events.do_send(BotEvent::Dtmf(digit));
                }
            }
            CallerEvent::Gone {
                cause,
                local,
                detail,
            } => {
                self.leg = None;
                if local && self.pending_end.is_none() {
                    // The switch ended it (a protocol error, a peer that stopped reading):
                    // `terminating` first, so the record says `hangup_by: local`.
                    if let Some(event) = self.record.start_local_hangup(Utc::now()) {
                        self.publish(event);
                    }
                    self.pending_end = Some(PendingEnd {
                        cause,
                        reason: None,
                        detail: detail.clone(),
                    });
                }
                self.finish(cause, detail, ctx);
            }
        }
    }
}

impl Handler<BotCommand> for CallActor {
    type Result = ();

    fn handle(&mut self, msg: BotCommand, ctx: &mut Context<Self>) {
        if self.is_over() {
            if let BotCommand::Say { prompt, .. } | BotCommand::Mark { id: prompt } = msg {
                self.prompt_done(prompt, true);
            }
            return;
        }
        if self.room.is_some() && room_link::held_in_room(&msg) {
            // The bot waits while its caller is in a room: its audio is not played.
            if let BotCommand::Say { prompt, .. } | BotCommand::Mark { id: prompt } = msg {
                self.prompt_done(prompt, true);
            }
            return;
        }
        match msg {
            BotCommand::Answer => self.answer(),
            BotCommand::Action(action) => {
                self.record.action = Some(action);
                self.record.tm_update = Utc::now();
                self.publish("call_updated");
            }
            BotCommand::Say {
                prompt,
                text,
                audio,
                rate,
            } => {
                self.answer();
                self.end_hold(ctx);
                if let Some(b) = self.barge_in.as_mut().filter(|b| b.prompt == prompt) {
                    b.started = Some(Instant::now());
                    b.vad.reset();
                }
                if let Some(text) = &text {
                    self.transcribe("text_bot", text);
                }
                let Some(format) = self.leg.as_ref().map(|l| l.format) else {
                    self.prompt_done(prompt, true);
                    return;
                };
                let audio = if rate == format.out_rate {
                    audio
                } else {
                    match resample_all(&audio, rate, format.out_rate) {
                        Ok(a) => a.into(),
                        Err(e) => {
                            tracing::warn!(call = %self.record.id, error = %e, "prompt dropped");
                            self.prompt_done(prompt, true);
                            return;
                        }
                    }
                };
                match format.delivery {
                    Delivery::Whole => self.play_whole(Some(prompt), text, audio, ctx),
                    Delivery::Paced => {
                        if let Some(p) = self.playout.as_mut() {
                            p.push_prompt(prompt, audio);
                        }
                        self.pump(ctx);
                    }
                }
            }
            BotCommand::Stream { samples, rate } => {
                self.answer();
                self.end_hold(ctx);
                self.on_bot_stream(samples, rate, ctx);
            }
            BotCommand::StreamEnd => {
                let whole = self
                    .leg
                    .as_ref()
                    .is_some_and(|l| l.format.delivery == Delivery::Whole);
                if whole {
                    self.flush_gathered(ctx);
                } else {
                    let mut tail = Vec::new();
                    if let Some(r) = self.from_bot.as_mut() {
                        r.flush(&mut tail);
                    }
                    if let Some(p) = self.playout.as_mut() {
                        p.push_stream(tail);
                    }
                    self.pump(ctx);
                }
            }
            BotCommand::Mark { id } => self.mark(id, ctx),
            BotCommand::StopAudio => {
                if let Some(h) = self.hold.take() {
                    ctx.cancel_future(h);
                }
                self.stop_audio(true, ctx)
            }
            BotCommand::BargeIn { prompt } => {
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
            BotCommand::PlayUrl { url } => {
                self.answer();
                self.end_hold(ctx);
                if self.leg.as_ref().is_some_and(|l| l.format.plays_urls) {
                    self.send_media(LegCommand::PlayUrl { url });
                } else {
                    tracing::warn!(call = %self.record.id, %url, "the caller's side cannot play URLs; ignored");
                }
            }
            BotCommand::Hold => self.start_hold(ctx),
            BotCommand::Transfer { destination } => {
                self.answer();
                if let Some(leg) = &self.leg {
                    leg.recipient.do_send(LegCommand::Transfer { destination });
                }
            }
            BotCommand::SendDigits { digits } => {
                if let Some(leg) = &self.leg {
                    leg.recipient.do_send(LegCommand::SendDigits { digits });
                }
            }
            BotCommand::Hangup { reason } => self.hangup_after_audio(reason, ctx),
            BotCommand::RecordingStart { options } => {
                if let Err(e) = self.start_recording(options) {
                    tracing::warn!(call = %self.record.id, error = %e, "recording_start refused");
                }
            }
            BotCommand::RecordingStop => {
                self.stop_recording(true);
            }
            BotCommand::JoinRoom { room } => self.join_room(room, ctx),
            BotCommand::Bridge { bot } => {
                self.answer();
                self.bridge(bot, ctx)
            }
            BotCommand::Failed { detail } => {
                tracing::warn!(call = %self.record.id, %detail, "bot failed");
                self.end_call(
                    PendingEnd {
                        cause: EndCause::Failed,
                        reason: None,
                        detail,
                    },
                    ctx,
                )
            }
        }
    }
}

impl Handler<Hangup> for CallActor {
    type Result = ();

    fn handle(&mut self, msg: Hangup, ctx: &mut Context<Self>) {
        self.end_call(
            PendingEnd {
                cause: msg.cause,
                reason: None,
                detail: msg.detail,
            },
            ctx,
        );
    }
}

impl Handler<Chain> for CallActor {
    type Result = Result<(), ChainError>;

    fn handle(&mut self, msg: Chain, _ctx: &mut Context<Self>) -> Self::Result {
        if self.record.status.is_ending() {
            return Err(ChainError::MasterEnding(self.record.id));
        }
        self.record.chained_call_ids.push(msg.child);
        self.record.tm_update = Utc::now();
        self.publish("call_updated");
        Ok(())
    }
}

impl Handler<GetRecord> for CallActor {
    type Result = MessageResult<GetRecord>;

    fn handle(&mut self, _msg: GetRecord, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.record.clone())
    }
}
