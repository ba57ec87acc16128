//! A call in a conference room: its caller's audio goes to the room, the room's mix is what
//! the caller hears, and its bot waits until the caller leaves.
//!
//! The room sees the call at the room's rate: caller audio is resampled here, once, only when
//! the leg's rate differs, and the mix is played through the call's usual `Outbound` (paced
//! toward streaming callers, gathered into utterances toward whole-utterance callers, as
//! streamed bot audio is).

use actix::prelude::*;
use chrono::Utc;
use uuid::Uuid;

use super::messages::Delivery;
use super::messages::{
    BotCommand, BotEvent, BridgeTarget, EnterRoom, LeftRoom, RoomAudio, RoomInput,
};
use super::CallActor;
use crate::media::{samples_for_ms, RateConverter};

/// Caller audio quieter than this (RMS of s16 samples, about -60 dBFS) is not sent to the room.
const SILENT_INPUT_RMS: f64 = 30.0;

/// The longest utterance of room audio sent to a whole-utterance caller (SmartIVR,
/// Ringover's `streamAudio`): what such a caller hears of a room lags by up to this much.
const ROOM_UTTERANCE_MS: u32 = 1000;
use crate::room::directory::{OpenBridge, RoomForCall};
use crate::room::RoomError;

/// The room a call is in.
pub(super) struct RoomLink {
    pub room: Uuid,
    input: Recipient<RoomInput>,
    rate: u32,
    /// Caller audio from the leg's rate to the room's, when they differ.
    to_room: Option<RateConverter>,
    /// Caller frames the room's full mailbox refused.
    dropped: u64,
}

/// Bot commands that wait while the caller is in a room: the bot's audio is not played over
/// the room's.
pub(super) fn held_in_room(cmd: &BotCommand) -> bool {
    matches!(
        cmd,
        BotCommand::Say { .. }
            | BotCommand::Stream { .. }
            | BotCommand::StreamEnd
            | BotCommand::Mark { .. }
            | BotCommand::PlayUrl { .. }
            | BotCommand::Hold
            | BotCommand::BargeIn { .. }
    )
}

impl CallActor {
    /// Sends caller audio (at the leg's rate) to the room.
    pub(super) fn audio_to_room(&mut self, samples: Vec<i16>) {
        let id = self.record.id;
        let Some(link) = self.room.as_mut() else {
            return;
        };
        let samples = match link.to_room.as_mut() {
            Some(c) => c.converted(&samples),
            None => samples,
        };
        // Silence is not sent: the mixer hears a participant that sends nothing as silent
        // (its jitter buffer fills again when it speaks), so a quiet caller costs no messages.
        if samples.is_empty() || crate::media::pcm::rms(&samples) < SILENT_INPUT_RMS {
            return;
        }
        if link
            .input
            .try_send(RoomInput::Audio { call: id, samples })
            .is_err()
        {
            link.dropped += 1;
        }
    }

    /// The leg's caller audio moved to `in_rate`: it reaches the room through a new converter.
    pub(super) fn room_follows_caller_rate(&mut self, in_rate: u32) {
        if let Some(link) = self.room.as_mut() {
            link.to_room = super::boundary(in_rate, link.rate, "to_room");
        }
    }

    /// The flow asked to put the caller in a room: find or create it, then join.
    pub(super) fn join_room(
        &mut self,
        room: String,
        password: Option<String>,
        ctx: &mut Context<Self>,
    ) {
        let ask = RoomForCall {
            room,
            workspace: self.record.workspace.clone(),
            call: self.record.id,
            addr: ctx.address(),
            user: self.record.source.target.clone(),
            password,
        };
        self.ask_for_room(self.registry.rooms.clone(), ask, ctx);
    }

    /// The flow `connect`s the caller to the first of `targets` to answer: chained calls, the
    /// winner's in a two-party room.
    pub(super) fn bridge(&mut self, targets: Vec<BridgeTarget>, ctx: &mut Context<Self>) {
        let ask = OpenBridge {
            master: self.record.id,
            addr: ctx.address(),
            workspace: self.record.workspace.clone(),
            user: self.record.source.target.clone(),
            source: self.record.source.clone(),
            targets,
        };
        self.ask_for_room(self.registry.bridges.clone(), ask, ctx);
    }

    /// Asks the registry to put the caller in a room; a refusal goes to the bot as
    /// `RoomLeft { error }` (success is the room's `EnterRoom`).
    fn ask_for_room<M>(&mut self, to: Recipient<M>, ask: M, ctx: &mut Context<Self>)
    where
        M: Message<Result = Result<(), RoomError>> + Send + 'static,
    {
        if self.room.is_some() {
            return self.room_left(
                Some(RoomError::Refused("the caller is already in a room".into())),
                ctx,
            );
        }
        ctx.spawn(to.send(ask).into_actor(self).map(|reply, act, ctx| {
            let error = match reply {
                Ok(Ok(())) => return,
                Ok(Err(e)) => e,
                Err(_) => RoomError::Refused("the switch is shutting down".to_owned()),
            };
            // Ringback, if a `connect` was ringing, stops with the refusal.
            act.end_hold(ctx);
            act.room_left(Some(error), ctx);
        }));
    }

    fn room_left(&mut self, error: Option<RoomError>, ctx: &mut Context<Self>) {
        if self.transfer_bridge {
            return self.transfer_bridge_ended(error, ctx);
        }
        if let Some(bot) = &self.bot {
            let wants_password = matches!(error, Some(RoomError::Password { .. }));
            bot.events.do_send(BotEvent::RoomLeft {
                error: error.map(|e| e.to_string()),
                wants_password,
            });
        }
    }

    /// The call is hanging up: the room drops it at once.
    pub(super) fn leave_room_on_hangup(&mut self) {
        if let Some(link) = self.room.take() {
            link.input.do_send(RoomInput::Gone {
                call: self.record.id,
            });
            if link.dropped > 0 {
                tracing::info!(call = %self.record.id, room = %link.room, dropped = link.dropped, "caller frames the room could not take");
            }
        }
    }
}

impl Handler<EnterRoom> for CallActor {
    type Result = Result<super::state::CallRecord, String>;

    fn handle(&mut self, msg: EnterRoom, ctx: &mut Context<Self>) -> Self::Result {
        if self.is_over() {
            return Err(format!("call {} is ending", self.record.id));
        }
        if let Some(link) = &self.room {
            if link.room != msg.room {
                return Err(format!(
                    "call {} is already in room {}",
                    self.record.id, link.room
                ));
            }
            return Ok(self.record.clone());
        }
        let Some(in_rate) = self.leg.as_ref().map(|l| l.format.in_rate) else {
            return Err(format!(
                "call {} has no caller leg attached yet",
                self.record.id
            ));
        };
        let to_room = RateConverter::between(in_rate, msg.rate)
            .map_err(|e| e.to_string())?
            .map(|c| c.counted(crate::telemetry::resampler_made("to_room")));
        self.answer();
        self.cancel_hold(ctx);
        // Whatever the bot had queued stops: the caller now hears the room.
        let playing = !self.audio_left().is_zero();
        self.stop_audio(playing, ctx);
        self.room = Some(RoomLink {
            room: msg.room,
            input: msg.input,
            rate: msg.rate,
            to_room,
            dropped: 0,
        });
        self.record.room_id = Some(msg.room);
        self.record.tm_update = Utc::now();
        self.publish("call_updated");
        Ok(self.record.clone())
    }
}

impl Handler<RoomAudio> for CallActor {
    type Result = ();

    fn handle(&mut self, msg: RoomAudio, ctx: &mut Context<Self>) {
        if self.is_over() || self.room.as_ref().is_none_or(|l| l.room != msg.room) {
            return;
        }
        let rate = self.room.as_ref().map_or(msg.rate, |l| l.rate);
        self.on_bot_stream(&msg.samples[..], rate, ctx);
        // A room may never fall silent: toward whole-utterance callers its mix is cut into
        // utterances of at most `ROOM_UTTERANCE_MS` (their latency in a room).
        let Some(format) = self.leg.as_ref().map(|l| l.format) else {
            return;
        };
        let cap = samples_for_ms(format.out_rate, ROOM_UTTERANCE_MS);
        if format.delivery == Delivery::Whole
            && self
                .outbound
                .as_ref()
                .is_some_and(|o| o.gathered_len() >= cap)
        {
            self.end_stream(ctx);
        }
    }
}

impl Handler<LeftRoom> for CallActor {
    type Result = ();

    fn handle(&mut self, msg: LeftRoom, ctx: &mut Context<Self>) {
        if self.room.as_ref().is_none_or(|l| l.room != msg.room) {
            return;
        }
        self.room = None;
        self.stop_audio(true, ctx);
        self.record.room_id = None;
        self.record.tm_update = Utc::now();
        if !self.is_over() {
            self.publish("call_updated");
        }
        self.room_left(None, ctx);
    }
}
