//! The messages a call actor exchanges with its caller leg and its bot, grouped by receiver.
//!
//! Audio inside these messages is mono s16 samples at a rate both sides agreed on when the
//! leg attached (`LegFormat`) or that travels with the audio. No wire format appears here.

use std::sync::Arc;

use actix::prelude::*;
use uuid::Uuid;

use super::state::{Address, CallRecord, EndCause, HangupReason};
use crate::recording::RecordingOptions;

/// How a caller's side plays bot audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The caller's side plays whole utterances it receives at once (SmartIVR, Ringover).
    Whole,
    /// The caller's side plays audio as it arrives, so the switch paces it at real time in
    /// 20 ms frames (live-call WebSocket and gRPC).
    Paced,
}

/// What a caller leg takes and gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegFormat {
    /// Rate of the caller's audio the leg sends to the call.
    pub in_rate: u32,
    /// Rate of the audio the leg wants from the call.
    pub out_rate: u32,
    pub delivery: Delivery,
    /// Whether the caller's side can fetch and play an http(s) URL itself.
    pub plays_urls: bool,
    /// Whether the caller's side plays its own hold music on `LegCommand::Hold` (SmartIVR
    /// CALL_WAIT); otherwise the call plays hold music to it as audio.
    pub plays_hold_music: bool,
}

// ---------------------------------------------------------------------------------------------
// Received by the call actor.

/// A protocol session attaches itself as the call's caller leg. Until a leg is attached the
/// bot is not started.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachLeg {
    pub leg: Recipient<LegCommand>,
    pub format: LegFormat,
}

/// An outgoing call's dialer (a SIP client leg placing it): until it attaches as the leg (on
/// answer) the call does not start its bot, waits for it instead of the leg-attach timeout, and
/// tells it `LegCommand::End` if the call ends first (the dialer then cancels the INVITE).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachDialer {
    pub dialer: Recipient<LegCommand>,
}

/// Something the caller's side did.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub enum CallerEvent {
    /// Caller audio at the leg's `in_rate`.
    Audio(Vec<i16>),
    /// One DTMF key (0-9, *, #, A-D).
    Dtmf(char),
    /// The caller's audio comes at this rate from now on: the leg's `in_rate` changes
    /// (live-call clients declare a rate with each chunk; sent when it differs).
    Rate(u32),
    /// The far end of an outgoing call is ringing (SIP 180 or 183): `dialing` → `ringing`.
    Ringing,
    /// The far end of an outgoing call answered (SIP 200): the call is `progressing`.
    Answered,
    /// The caller's side is gone. `local` is true when the switch itself ended it (a protocol
    /// error, a write timeout), false when the peer hung up or went away.
    Gone {
        cause: EndCause,
        local: bool,
        detail: String,
    },
    /// The caller's side could not transfer the call to `destination` (a SIP peer that does
    /// not take REFER, refuses it, or reports the new call failed); the call is still up.
    TransferRefused {
        destination: Address,
        detail: String,
    },
}

/// Something the bot wants done.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub enum BotCommand {
    /// The bot answers: the call becomes `progressing`.
    Answer,
    /// The bot's current action, VoIPBIN action JSON, shown on the call record.
    Action(serde_json::Value),
    /// One whole prompt. The call answers `BotEvent::PromptDone` when the caller has heard it
    /// (or it was cut off).
    Say {
        prompt: u64,
        text: Option<String>,
        audio: Arc<[i16]>,
        rate: u32,
    },
    /// A chunk of streamed bot audio (no completion is reported per chunk).
    Stream { samples: Vec<i16>, rate: u32 },
    /// The bot finished an utterance of streamed audio.
    StreamEnd,
    /// A point in the bot's audio: the call answers `BotEvent::PromptDone { prompt: id }` once
    /// the audio sent before it has played to the caller (`interrupted` when that audio was
    /// dropped first, by barge-in or `StopAudio`).
    Mark { id: u64 },
    /// Drop all queued bot audio now and tell the caller's side to stop playing.
    StopAudio,
    /// Caller speech or a key stops prompt `prompt` (sent before its `Say`): queued audio is
    /// dropped, the caller's side told to stop, and the prompt reported done, interrupted.
    BargeIn { prompt: u64 },
    /// Let the caller's side fetch and play an http(s) URL itself (legs with `plays_urls`).
    PlayUrl { url: String },
    /// Put the caller on hold until the next audio.
    Hold,
    /// Transfer the caller to `destination`.
    Transfer { destination: Address },
    /// Send DTMF keys toward the caller's side.
    SendDigits { digits: String },
    /// Hang up with this reason (the call goes `terminating`, then `hangup`).
    Hangup { reason: HangupReason },
    /// The bot failed; the call ends with `hangup_reason: failed` and this detail.
    Failed { detail: String },
    /// Start recording the call (caller left, bot right).
    RecordingStart { options: RecordingOptions },
    /// Stop the recording in progress.
    RecordingStop,
    /// What the caller said, as the bot's recogniser heard it: a `partial` hypothesis, or the
    /// final text (which goes in the transcript as `text_asr`). Passed on to the caller's
    /// side (`LegCommand::Heard`).
    Heard { text: String, partial: bool },
    /// Transcribe the caller's side continuously in `language` (`None`: stop).
    Transcribe { language: Option<String> },
    /// Put the caller in the conference room `room` (a room id, or a name in the call's
    /// workspace, created on first use). The bot hears `BotEvent::RoomLeft` when the caller
    /// leaves it, or at once when it cannot join (`error`). `password` is for a room with
    /// `settings.require_password`.
    JoinRoom {
        room: String,
        password: Option<String>,
    },
    /// Connect the caller to the first of `targets` to answer: one chained call per target
    /// (this call their master), rung at once; the first to answer is bridged through a
    /// two-party room and the others are canceled. Until then the caller hears `ring` (at the
    /// leg's `out_rate`) or the standard ringback, repeated. The bot hears `BotEvent::RoomLeft`
    /// when the bridge ends (either side leaves or hangs up), or at once when it cannot be made
    /// (`error`).
    Bridge {
        targets: Vec<BridgeTarget>,
        ring: Option<Arc<[i16]>>,
    },
}

/// One destination a bridged `connect` rings, on a chained call of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BridgeTarget {
    /// A configured bot, started for the chained call.
    Bot(String),
    /// A phone number (`tel`, through a SIP trunk) or a SIP URI (`sip`) the switch dials.
    Dial(Address),
}

/// Hang the call up from outside (REST, a master call, shutdown).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Hangup {
    pub cause: EndCause,
    pub detail: String,
}

/// Chain another call onto this one, which becomes its master. Refused while this call is
/// terminating, canceling or hung up.
#[derive(Message, Debug)]
#[rtype(result = "Result<(), ChainError>")]
pub struct Chain {
    pub child: Uuid,
}

/// Why a call could not be chained.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ChainError {
    #[error("master call {0} is ending and takes no chained calls")]
    MasterEnding(Uuid),
    #[error("master call {0} does not exist or has ended")]
    NoMaster(Uuid),
}

/// Start (`start: Some`) or stop (`None`) a recording from outside (the Calls API); answers
/// the recording's id.
#[derive(Message, Debug)]
#[rtype(result = "Result<Uuid, RecordError>")]
pub struct Record {
    pub start: Option<RecordingOptions>,
}

/// Why a recording could not start or stop.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("call {0} is already recording")]
    AlreadyRecording(Uuid),
    #[error("call {0} is not recording")]
    NotRecording(Uuid),
    #[error("call {0} has no audio yet (no caller leg attached)")]
    NoAudio(Uuid),
    #[error("call {0} is ending")]
    Ending(Uuid),
    #[error("{0}")]
    BadOptions(String),
}

/// Start (`language: Some`) or stop continuous transcription of the caller's side from
/// outside (the Calls API).
#[derive(Message, Debug)]
#[rtype(result = "Result<(), String>")]
pub struct Transcribe {
    pub language: Option<String>,
}

/// Ask a live call for its current record.
#[derive(Message, Debug)]
#[rtype(result = "CallRecord")]
pub struct GetRecord;

// ---------------------------------------------------------------------------------------------
// Received by caller legs (protocol sessions).

/// What the call asks of the caller's side.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub enum LegCommand {
    /// Play one whole utterance at the leg's `out_rate` (Whole delivery). It replaces
    /// whatever the caller's side is playing.
    Play {
        text: Option<String>,
        audio: Arc<[i16]>,
    },
    /// One paced frame of audio at the leg's `out_rate` (Paced delivery).
    Audio(Arc<[i16]>),
    /// Let the caller's side fetch and play this URL itself.
    PlayUrl { url: String },
    /// Stop playing now (barge-in, or queued audio dropped).
    StopAudio,
    /// Hold the caller (hold music) until the next audio.
    Hold,
    /// Transfer the caller.
    Transfer { destination: Address },
    /// Send DTMF toward the caller's side.
    SendDigits { digits: String },
    /// What the caller said, as recognised: a `partial` hypothesis while the recogniser works,
    /// then the final text (SmartIVR RECOGNIZE and RESULT_ASR; other protocols have no
    /// message for it).
    Heard { text: String, partial: bool },
    /// The bot answered: the call is `progressing` (a SIP leg sends its 200 OK now; legs whose
    /// protocol has no answer ignore it).
    Answered,
    /// The call is over: say so on the protocol and close.
    End {
        reason: HangupReason,
        detail: String,
    },
}

// ---------------------------------------------------------------------------------------------
// Received by bots.

/// A started bot, as its call sees it (`bots::start` makes it, beside the call).
pub struct BotHandle {
    pub events: Recipient<BotEvent>,
    /// The rate the bot wants caller audio at; `None` takes the leg's rate unchanged.
    pub in_rate: Option<u32>,
}

/// What happened on the call, for its bot.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub enum BotEvent {
    /// The caller's leg is attached: the bot may start. `leg` tells the rates in use.
    Start {
        call: Box<CallRecord>,
        leg: LegFormat,
    },
    /// Caller audio at the bot's input rate.
    Audio(Vec<i16>),
    /// The caller's audio comes at this rate from now on (only to bots that take the leg's
    /// rate, `BotHandle::in_rate` `None`).
    Rate(u32),
    /// A DTMF key from the caller.
    Dtmf(char),
    /// A prompt from `BotCommand::Say` (or a `BotCommand::Mark`) finished playing, or was cut
    /// off.
    PromptDone { prompt: u64, interrupted: bool },
    /// The caller left the conference room the bot put it in (`BotCommand::JoinRoom`), or
    /// could not join it (`error`). `wants_password` says the room refused for a missing or
    /// wrong password (`settings.require_password`): the bot may ask the caller and send
    /// `JoinRoom` again with one.
    RoomLeft {
        error: Option<String>,
        wants_password: bool,
    },
    /// The call has ended; the bot should stop.
    Ended,
}

// ---------------------------------------------------------------------------------------------
// Between a call and the conference room it is in (`crate::room`).

/// Put the call in a room: from now on its caller's audio goes to `input` (at `rate`) instead
/// of to its bot, and what the caller hears is the room's mix (`RoomAudio`). The call's bot
/// waits (its audio is not played) until the call leaves the room. Refused when the call is
/// ending or already in another room.
#[derive(Message)]
#[rtype(result = "Result<CallRecord, String>")]
pub struct EnterRoom {
    pub room: Uuid,
    pub input: Recipient<RoomInput>,
    pub rate: u32,
}

/// One 20 ms frame of a room's mix for this call (everyone but itself), at the room's rate.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RoomAudio {
    pub room: Uuid,
    pub samples: Arc<[i16]>,
    pub rate: u32,
}

/// The call is out of its room (the API removed it, or the room closed). Its bot hears
/// `BotEvent::RoomLeft` and goes on.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LeftRoom {
    pub room: Uuid,
}

/// What a participant sends its room. The participant is named by its call id.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub enum RoomInput {
    /// The participant's audio at the room's rate.
    Audio { call: Uuid, samples: Vec<i16> },
    /// The participant's call is over (or left on its own): remove it at once.
    Gone { call: Uuid },
}

// ---------------------------------------------------------------------------------------------
// Received by the registry (`crate::registry`), from calls and the APIs.

/// A call's record changed (sent by the call on every status change).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CallChanged {
    pub record: Box<CallRecord>,
    /// The VoIPBIN event name: `call_ringing`, `call_updated`, `call_hangup`, …
    pub event: &'static str,
}

/// A call actor has stopped (sent from its `stopped()`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CallEnded {
    pub id: Uuid,
}

/// Hang up a live call by id.
#[derive(Message)]
#[rtype(result = "Result<(), HangupError>")]
pub struct HangupCall {
    pub id: Uuid,
    pub cause: EndCause,
    pub detail: String,
}

/// Why a hangup request was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HangupError {
    #[error("call {0} not found")]
    NotFound(Uuid),
    #[error("call {0} has already ended")]
    Ended(Uuid),
}
