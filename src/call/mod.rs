//! The call actor: one per call, owning the VoIPBIN record and everything the caller hears.
//!
//! A call has one caller leg (a protocol session, attached after creation) and one bot. It
//! never sees a wire format: legs and bots speak the typed messages of `messages`. Status
//! rules live in `state`, audio queueing in `playout`; this module only routes messages to
//! them and runs the timers.

pub mod messages;
pub mod playout;
mod recorder;
pub mod state;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;

use crate::bots::{self, BotHandle};
use crate::media::{duration_ms, resample_all, StreamResampler, FRAME_MS};
use crate::registry::{CallChanged, CallEnded, HangupCall, Registry};
use crate::services::Services;
use messages::*;
use playout::Playout;
use state::{CallRecord, EndCause, HangupReason};

/// A call whose caller leg has not attached by then fails: the protocol session died early.
const LEG_ATTACH_TIMEOUT: Duration = Duration::from_secs(10);

/// Streamed bot audio queued toward a paced caller beyond this is dropped, oldest first.
const MAX_BUFFERED_MS: u32 = 2000;

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
    whole_prompt: Option<WholePrompt>,
    gap_timer: Option<SpawnHandle>,
    pending_end: Option<PendingEnd>,
    caller_playing: bool,
    /// Caller frames dropped because the bot's mailbox was full.
    dropped_caller_frames: u64,
    /// The recording in progress (`recorder.rs`).
    recorder: Option<crate::recording::Recorder>,
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
            whole_prompt: None,
            gap_timer: None,
            pending_end: None,
            caller_playing: false,
            dropped_caller_frames: 0,
            recorder: None,
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

    fn prompt_done(&self, prompt: u64, interrupted: bool) {
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
        if let Some(r) = self.from_bot.as_mut() {
            r.reset();
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
        let Some(leg) = &self.leg else { return };
        if let Some(w) = self.whole_prompt.take() {
            // The caller's side replaces what it plays with the new utterance.
            ctx.cancel_future(w.timer);
            self.prompt_done(w.prompt, true);
        }
        let ms = duration_ms(audio.len(), leg.format.out_rate);
        leg.recipient.do_send(LegCommand::Play { text, audio });
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

    /// Starts the 20 ms pacer if paced audio is waiting.
    fn ensure_pacer(&mut self, ctx: &mut Context<Self>) {
        if self.pacer.is_some() {
            return;
        }
        let handle = ctx.run_interval(Duration::from_millis(FRAME_MS as u64), |act, ctx| {
            let (Some(playout), Some(leg)) = (act.playout.as_mut(), act.leg.as_ref()) else {
                return;
            };
            match playout.next_frame() {
                Some(frame) => {
                    leg.recipient
                        .do_send(LegCommand::Audio(frame.samples.clone()));
                    act.record_bot(&frame.samples);
                    for prompt in frame.finished {
                        act.prompt_done(prompt, false);
                    }
                }
                None => {
                    if let Some(h) = act.pacer.take() {
                        ctx.cancel_future(h);
                    }
                }
            }
        });
        self.pacer = Some(handle);
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
        let mut out =
            Vec::with_capacity(samples.len() * format.out_rate as usize / rate as usize + 16);
        if let Some(r) = self.from_bot.as_mut() {
            r.process(&samples, &mut out);
        }
        let Some(playout) = self.playout.as_mut() else {
            return;
        };
        match format.delivery {
            Delivery::Paced => {
                playout.push_stream(out);
                self.ensure_pacer(ctx);
            }
            Delivery::Whole => {
                playout.gather(&out);
                if let Some(h) = self.gap_timer.take() {
                    ctx.cancel_future(h);
                }
                let gap = Duration::from_millis(self.services.config.media.utterance_gap_ms);
                self.gap_timer = Some(ctx.run_later(gap, |act, ctx| {
                    act.gap_timer = None;
                    act.flush_gathered(ctx);
                }));
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

    fn handle(&mut self, msg: AttachLeg, _ctx: &mut Context<Self>) {
        if self.is_over() {
            msg.leg.do_send(LegCommand::End {
                reason: HangupReason::Failed,
                detail: "call ended before its leg attached".into(),
            });
            return;
        }
        let format = msg.format;
        self.playout = Some(Playout::new(format.out_rate, MAX_BUFFERED_MS));
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
                self.record_caller(&samples);
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
                self.record_key(digit);
                if let Some(bot) = &self.bot {
                    bot.events.do_send(BotEvent::Dtmf(digit));
                }
            }
            CallerEvent::Playing(playing) => self.caller_playing = playing,
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
            if let BotCommand::Say { prompt, .. } = msg {
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
                        self.ensure_pacer(ctx);
                    }
                }
            }
            BotCommand::Stream { samples, rate } => {
                self.answer();
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
                    self.ensure_pacer(ctx);
                }
            }
            BotCommand::StopAudio => self.stop_audio(true, ctx),
            BotCommand::Hold => {
                if let Some(leg) = &self.leg {
                    leg.recipient.do_send(LegCommand::Hold);
                }
            }
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
            BotCommand::Hangup { reason } => self.end_call(
                PendingEnd {
                    cause: EndCause::Normal,
                    reason: Some(reason),
                    detail: String::new(),
                },
                ctx,
            ),
            BotCommand::RecordingStart { options } => {
                if let Err(e) = self.start_recording(options) {
                    tracing::warn!(call = %self.record.id, error = %e, "recording_start refused");
                }
            }
            BotCommand::RecordingStop => {
                self.stop_recording(true);
            }
            BotCommand::CallerText { text } => self.transcribe("text_asr", &text),
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
