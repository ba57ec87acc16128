//! The call actor: one per call, owning the VoIPBIN record and everything the caller hears.
//!
//! A call has one caller leg (a protocol session, attached after creation) and one bot. It
//! never sees a wire format: legs and bots speak the typed messages of `messages`. This module
//! routes messages; the work is done elsewhere:
//! - `state`: status rules; `lifecycle`: start, the media watchdogs and hangups;
//! - `outbound`: what the caller hears, as pure state (paced or whole delivery over the
//!   `playout` queue); `sending`: its timers and the audio sent to the leg;
//! - `barge_in`, `hold`, `recorder` (recordings and transcripts), `room_link` (rooms).

mod barge_in;
mod hold;
mod lifecycle;
pub mod messages;
mod outbound;
pub mod playout;
mod recorder;
mod room_link;
mod sending;
pub mod state;
mod transcriber;
mod transfer;
pub mod view;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;

use crate::media::RateConverter;
use crate::room::directory::{OpenBridge, RoomForCall};
use crate::services::Services;
use barge_in::BargeIn;
use lifecycle::PendingEnd;
use messages::*;
use outbound::{Outbound, HOLD_PROMPT};
use state::{CallRecord, EndCause, HangupReason};

/// Room in the call's mailbox: media senders use `try_send` and drop audio beyond this.
pub const MAILBOX_CAPACITY: usize = 256;

/// What a call sends the registry, as recipients: the call never names the registry's type.
pub struct RegistryLink {
    pub changed: Recipient<CallChanged>,
    pub ended: Recipient<CallEnded>,
    pub hangup: Recipient<HangupCall>,
    pub rooms: Recipient<RoomForCall>,
    pub bridges: Recipient<OpenBridge>,
}

impl RegistryLink {
    /// The recipients of `registry`.
    pub fn of<R>(registry: &Addr<R>) -> Self
    where
        R: Actor<Context = Context<R>>
            + Handler<CallChanged>
            + Handler<CallEnded>
            + Handler<HangupCall>
            + Handler<RoomForCall>
            + Handler<OpenBridge>,
    {
        RegistryLink {
            changed: registry.clone().recipient(),
            ended: registry.clone().recipient(),
            hangup: registry.clone().recipient(),
            rooms: registry.clone().recipient(),
            bridges: registry.clone().recipient(),
        }
    }
}

struct Leg {
    recipient: Recipient<LegCommand>,
    format: LegFormat,
}

/// One call.
pub struct CallActor {
    record: CallRecord,
    registry: RegistryLink,
    services: Arc<Services>,
    bot: Option<BotHandle>,
    /// Why the bot could not be started, until the call starts and ends on it.
    bot_failed: Option<String>,
    leg: Option<Leg>,
    /// Caller audio from the leg's rate to the bot's input rate, when they differ.
    to_bot: Option<RateConverter>,
    /// Bot audio toward the leg (`outbound.rs`); set when the leg attaches.
    outbound: Option<Outbound>,
    /// The timer that sends the next paced frames.
    pacer: Option<SpawnHandle>,
    /// The timer that reports the whole prompt playing now as played.
    whole_timer: Option<SpawnHandle>,
    /// The timer that closes the utterance being gathered.
    gap_timer: Option<SpawnHandle>,
    pending_end: Option<PendingEnd>,
    /// A bot hangup waiting for queued audio to play out.
    deferred_hangup: Option<HangupReason>,
    /// Caller frames dropped because the bot's mailbox was full.
    dropped_caller_frames: u64,
    /// The prompt barge-in is armed for (`barge_in.rs`).
    barge_in: Option<BargeIn>,
    /// Bot marks waiting for the audio before them to play, with their timers.
    marks: Vec<(u64, SpawnHandle)>,
    /// When the call actor started (`max_call_duration`, the leg's attach deadline).
    started_at: Instant,
    /// When the caller leg last sent audio (or attached).
    last_media: Instant,
    /// Since when the caller leg's mailbox has refused audio, if it does now.
    leg_stalled_since: Option<Instant>,
    /// Audio commands the leg's full mailbox refused.
    dropped_leg_commands: u64,
    /// The dialer placing this outgoing call, until it attaches as the leg.
    dialer: Option<Recipient<LegCommand>>,
    /// The timer repeating hold music while the caller is on hold (`hold.rs`).
    hold: Option<SpawnHandle>,
    /// The recording in progress (`recorder.rs`).
    recorder: Option<crate::recording::Recorder>,
    /// Bot audio from the leg's output rate to the recording's rate (one streaming resampler
    /// per recording, not one per frame).
    recorder_bot_rate: Option<crate::media::RateAdapter>,
    /// Caller audio to the recording's rate, once the leg's rate moved during a recording.
    recorder_caller_rate: Option<crate::media::RateAdapter>,
    /// The conference room the caller is in (`room_link.rs`); its mix replaces the bot's audio.
    room: Option<room_link::RoomLink>,
    /// Continuous transcription of the caller, while on (`transcriber.rs`).
    transcriber: Option<transcriber::Transcriber>,
    /// The caller is bridged (or being bridged) in place of a transfer its side refused
    /// (`transfer.rs`): the call ends when that bridge does.
    transfer_bridge: bool,
}

impl CallActor {
    /// A new call for `record`, answered by `bot` (started beside it by the registry, or why
    /// it could not be; `None` for a botless leg dialled into a room).
    pub fn new(
        record: CallRecord,
        registry: RegistryLink,
        services: Arc<Services>,
        bot: Result<Option<BotHandle>, String>,
    ) -> Self {
        let (bot, bot_failed) = match bot {
            Ok(bot) => (bot, None),
            Err(why) => (None, Some(why)),
        };
        CallActor {
            record,
            registry,
            services,
            bot,
            bot_failed,
            leg: None,
            to_bot: None,
            outbound: None,
            pacer: None,
            whole_timer: None,
            gap_timer: None,
            pending_end: None,
            deferred_hangup: None,
            dropped_caller_frames: 0,
            barge_in: None,
            marks: Vec::new(),
            started_at: Instant::now(),
            last_media: Instant::now(),
            leg_stalled_since: None,
            dropped_leg_commands: 0,
            dialer: None,
            hold: None,
            recorder: None,
            recorder_bot_rate: None,
            recorder_caller_rate: None,
            room: None,
            transcriber: None,
            transfer_bridge: false,
        }
    }

    fn publish(&self, event: &'static str) {
        self.registry.changed.do_send(CallChanged {
            record: Box::new(self.record.clone()),
            event,
        });
    }

    fn is_over(&self) -> bool {
        self.record.status.is_ending()
    }

    fn answer(&mut self) {
        if matches!(
            self.record.status,
            state::Status::Dialing | state::Status::Ringing
        ) {
            if let Some(event) = self.record.answer(Utc::now()) {
                self.publish(event);
                if let Some(leg) = &self.leg {
                    leg.recipient.do_send(LegCommand::Answered);
                }
            }
        }
    }

    fn prompt_done(&mut self, prompt: u64, interrupted: bool) {
        if prompt == HOLD_PROMPT {
            return;
        }
        self.barge_in_prompt_done(prompt);
        if let Some(bot) = &self.bot {
            bot.events.do_send(BotEvent::PromptDone {
                prompt,
                interrupted,
            });
        }
    }
}

/// The converter between `from` and `to` Hz on `side` of the call, counted; none when the
/// rates are equal (or cannot be converted: the audio then passes as it is).
pub(crate) fn boundary(from: u32, to: u32, side: &'static str) -> Option<RateConverter> {
    let converter = RateConverter::between(from, to).ok().flatten()?;
    Some(converter.counted(crate::telemetry::resampler_made(side)))
}

impl CallActor {
    /// The leg's caller audio comes at `rate` from now on: the boundary toward the bot (and
    /// the room) is made again, and a bot that takes the leg's rate follows it.
    fn caller_rate(&mut self, rate: u32) {
        let Some(leg) = self.leg.as_mut() else { return };
        if leg.format.in_rate == rate
            || !(crate::media::MIN_RATE..=crate::media::MAX_RATE).contains(&rate)
        {
            return;
        }
        leg.format.in_rate = rate;
        if let Some(bot) = &self.bot {
            let bot_in = match bot.in_rate {
                Some(bot_in) => bot_in,
                None => {
                    bot.events.do_send(BotEvent::Rate(rate));
                    rate
                }
            };
            self.to_bot = boundary(rate, bot_in, "to_bot");
        }
        self.room_follows_caller_rate(rate);
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
        self.dialer = None;
        let format = msg.format;
        let media = &self.services.config.media;
        let gap = Duration::from_millis(media.utterance_gap_ms);
        self.outbound = Some(Outbound::new(
            &format,
            media.max_buffered_ms,
            gap,
            Instant::now(),
        ));
        self.watch_media();
        if let Some(bot) = &self.bot {
            let bot_in = bot.in_rate.unwrap_or(format.in_rate);
            self.to_bot = boundary(format.in_rate, bot_in, "to_bot");
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

impl Handler<AttachDialer> for CallActor {
    type Result = ();

    fn handle(&mut self, msg: AttachDialer, _: &mut Context<Self>) {
        if self.is_over() {
            msg.dialer.do_send(LegCommand::End {
                reason: HangupReason::Cancel,
                detail: "call ended before it was dialled".into(),
            });
            return;
        }
        self.dialer = Some(msg.dialer);
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
                self.transcribe_caller(&samples, ctx);
                if self.room.is_some() {
                    return self.audio_to_room(samples);
                }
                let Some(bot) = &self.bot else { return };
                let samples = match self.to_bot.as_mut() {
                    Some(c) => c.converted(&samples),
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
            CallerEvent::Rate(rate) => self.caller_rate(rate),
            CallerEvent::Ringing => {
                if self.record.status == state::Status::Dialing {
                    if let Ok(event) = self.record.move_to(state::Status::Ringing, Utc::now()) {
                        self.publish(event);
                    }
                }
            }
            CallerEvent::Answered => self.answer(),
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
            CallerEvent::TransferRefused {
                destination,
                detail,
            } => self.transfer_refused(destination, detail, ctx),
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
                self.barge_in_prompt_started(prompt);
                if let Some(text) = &text {
                    self.transcribe("text_bot", text);
                }
                self.say(prompt, text, audio, rate, ctx);
            }
            BotCommand::Stream { samples, rate } => {
                self.answer();
                self.end_hold(ctx);
                self.on_bot_stream(samples, rate, ctx);
            }
            BotCommand::StreamEnd => self.end_stream(ctx),
            BotCommand::Mark { id } => self.mark(id, ctx),
            BotCommand::StopAudio => {
                self.cancel_hold(ctx);
                self.stop_audio(true, ctx)
            }
            BotCommand::BargeIn { prompt } => self.arm_barge_in(prompt),
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
            BotCommand::Heard { text, partial } => {
                if !partial {
                    self.transcribe("text_asr", &text);
                }
                if let Some(leg) = &self.leg {
                    leg.recipient.do_send(LegCommand::Heard { text, partial });
                }
            }
            BotCommand::Transcribe { language } => {
                if let Err(e) = self.set_transcription(language) {
                    tracing::warn!(call = %self.record.id, error = %e, "transcribe refused");
                }
            }
            BotCommand::JoinRoom { room, password } => self.join_room(room, password, ctx),
            BotCommand::Bridge { targets, ring } => {
                self.answer();
                if self.room.is_none() {
                    self.start_ringback(ring, ctx);
                }
                self.bridge(targets, ctx)
            }
            BotCommand::Failed { detail } => {
                tracing::warn!(call = %self.record.id, %detail, "bot failed");
                self.end_with(EndCause::Failed, detail, ctx)
            }
        }
    }
}

impl Handler<Hangup> for CallActor {
    type Result = ();

    fn handle(&mut self, msg: Hangup, ctx: &mut Context<Self>) {
        self.end_with(msg.cause, msg.detail, ctx);
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

impl Handler<Transcribe> for CallActor {
    type Result = Result<(), String>;

    fn handle(&mut self, msg: Transcribe, _ctx: &mut Context<Self>) -> Self::Result {
        self.set_transcription(msg.language)
    }
}

impl Handler<GetRecord> for CallActor {
    type Result = MessageResult<GetRecord>;

    fn handle(&mut self, _msg: GetRecord, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.record.clone())
    }
}
