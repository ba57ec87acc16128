//! Conference rooms: one actor per room owns its participants and mixes their audio on a
//! 20 ms clock (`mixer`).
//!
//! Every participant is a call. A caller's call joins by swapping its bot for the room
//! (`EnterRoom`: its caller's audio comes here, the room's mix goes back as `RoomAudio`), so
//! every caller protocol can sit in a room and hears the mix through its own playout. A bot
//! joins as a call of its own (ingress `room`) whose caller leg is a `RoomLeg`: the bot's
//! paced audio comes here like a caller's, and the mix reaches the bot as caller audio. The
//! room mixes at one rate (`[rooms] sample_rate`); calls resample at their edge only when
//! their leg's rate differs.

pub mod directory;
mod leg;
pub mod mixer;
pub mod recording;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use crate::call::messages::{
    AttachLeg, CallerEvent, Delivery, EnterRoom, Hangup, LeftRoom, LegFormat, RoomAudio, RoomInput,
    Transcribe,
};
use crate::call::state::{Address, Direction, EndCause};
use crate::call::CallActor;
use crate::media::{samples_for_ms, FRAME_MS};
use crate::registry::{CallHandle, CreateCall, Dialing, NewCall, Registry, RoomClosed};
use crate::services::Services;
use crate::store::journal::CallEvent;
use mixer::Mixer;
use tokio::sync::broadcast;

/// Room in a room's mailbox: participants' audio beyond it is dropped (`try_send`).
const ROOM_MAILBOX: usize = 1024;

/// `persistent` rooms stay open when empty; `temporary` ones close after `empty_timeout_ms`;
/// a `bridge` (a flow's `connect` to a bot) closes as soon as one of its two sides leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoomKind {
    Persistent,
    Temporary,
    Bridge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoomStatus {
    Active,
    Closed,
}

/// The Calls API's room settings, all enforced. `allow_recording` defaults to true.
///
/// `auto_transcribe`: every caller in the room is transcribed by its call (speech
/// recognition, `Transcribe`) while it is there, and the room keeps whose lines between which
/// times are its transcript (`RoomRecord::transcribed`); bots' lines are their prompts' text.
///
/// `waiting_room`: every call that joins (`Join`) waits, neither hearing the mix nor heard in
/// it, until the API admits it (`Admit`); there is no automatic admission. Bots added to the
/// room (`JoinBot`) never wait: the API or a bridge put them there on purpose.
///
/// `require_password`: a call joins only with the room's `password` (a string of digits,
/// given when the room is created and never shown back). Bots are not asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RoomSettings {
    pub allow_recording: bool,
    pub auto_transcribe: bool,
    pub waiting_room: bool,
    pub require_password: bool,
}

impl Default for RoomSettings {
    fn default() -> Self {
        RoomSettings {
            allow_recording: true,
            auto_transcribe: false,
            waiting_room: false,
            require_password: false,
        }
    }
}

/// What a participant is in the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The first caller in the room.
    Host,
    Participant,
    /// A bot added with `{"bot": NAME}`.
    Bot,
}

/// One participant: a call in the room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Participant {
    pub call_id: Uuid,
    /// Who it is: the caller's number or name, or the bot's name.
    pub user_id: String,
    pub role: Role,
    pub muted: bool,
    /// In the waiting room (`settings.waiting_room`): not in the mix until admitted.
    #[serde(default)]
    pub waiting: bool,
    pub joined_at: DateTime<Utc>,
}

/// One participant's stay in an `auto_transcribe` room: its call's transcript lines between
/// `from` and `to` are the room's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transcribed {
    pub call_id: Uuid,
    pub user_id: String,
    pub from: DateTime<Utc>,
    pub to: Option<DateTime<Utc>>,
}

/// Stays kept on a room's record for its transcript.
pub const MAX_TRANSCRIBED: usize = 1000;

/// A room as the API shows it and the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomRecord {
    pub id: Uuid,
    pub workspace: String,
    pub name: String,
    pub kind: RoomKind,
    pub max_participants: u32,
    pub settings: RoomSettings,
    /// The digits a call must give to join when `settings.require_password` is set. Kept
    /// with the record (so a persistent room keeps it across restarts) but never in a view.
    #[serde(default)]
    pub password: Option<String>,
    pub status: RoomStatus,
    /// The participants in the room now.
    pub participants: Vec<Participant>,
    /// The recording in progress, and every recording of the room.
    #[serde(default)]
    pub recording_id: Option<Uuid>,
    #[serde(default)]
    pub recording_ids: Vec<Uuid>,
    /// The per-participant tracks of the room's recordings (`record/start` with `tracks`).
    #[serde(default)]
    pub tracks: Vec<recording::TrackRef>,
    /// With `settings.auto_transcribe`: whose lines are the room's transcript, and when each
    /// was in the room (at most `MAX_TRANSCRIBED`, the oldest dropped first).
    #[serde(default)]
    pub transcribed: Vec<Transcribed>,
    pub tm_create: DateTime<Utc>,
    pub tm_update: DateTime<Utc>,
    pub tm_close: Option<DateTime<Utc>>,
}

/// Why a room refused a request.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum RoomError {
    #[error("room {0} not found")]
    NotFound(Uuid),
    #[error("room {0} is full ({1} participants)")]
    Full(Uuid, u32),
    #[error("room {0} is closed")]
    Closed(Uuid),
    #[error("call {call} is not in room {room}")]
    NotIn { room: Uuid, call: Uuid },
    #[error("{0}")]
    Refused(String),
    #[error("the switch has {0} rooms open, its limit")]
    TooMany(usize),
    #[error("{0}")]
    BadOptions(String),
    /// `settings.require_password`: no password was given (`given` false) or a wrong one.
    #[error("{}", password_refusal(*.room, *.given))]
    Password { room: Uuid, given: bool },
    /// A participant could not be dialled in (no way to place calls, no free RTP port).
    #[error("{0}")]
    CannotDial(String),
}

/// Compares two secrets in a time that does not tell how much of them matched.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

fn password_refusal(room: Uuid, given: bool) -> String {
    if given {
        format!("wrong password for room {room}")
    } else {
        format!("room {room} needs a password (settings.require_password)")
    }
}

impl RoomRecord {
    /// Whether `given` lets a call in: always when the room needs no password.
    pub fn password_allows(&self, given: Option<&str>) -> Result<(), RoomError> {
        if !self.settings.require_password {
            return Ok(());
        }
        match (self.password.as_deref(), given) {
            (Some(want), Some(got)) if same_secret(want, got) => Ok(()),
            (_, given) => Err(RoomError::Password {
                room: self.id,
                given: given.is_some(),
            }),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Messages received by a room.

/// Put a live call in the room.
#[derive(Message)]
#[rtype(result = "Result<Participant, RoomError>")]
pub struct Join {
    pub call: Uuid,
    pub addr: Addr<CallActor>,
    pub user: String,
    /// The call's workspace: a room of a workspace takes only calls of that workspace (for
    /// others it is not found); a room of no workspace takes any call.
    pub workspace: String,
    /// The room's password, for a room with `settings.require_password`.
    pub password: Option<String>,
}

/// Add bot `bot` to the room, as a call of its own (chained to `master` when given).
#[derive(Message)]
#[rtype(result = "Result<Participant, RoomError>")]
pub struct JoinBot {
    pub bot: String,
    pub master: Option<Uuid>,
}

/// Dial `destination` into the room (a phone number through a SIP trunk, or a SIP URI): a
/// botless outgoing call, chained to `master` when given, showing `source` as its caller id.
/// It joins once answered and is hung up when it leaves. Answers the new call's id as soon
/// as it is dialling; its record tells how the dialling goes.
#[derive(Message)]
#[rtype(result = "Result<Uuid, RoomError>")]
pub struct JoinDial {
    pub destination: Address,
    pub source: Address,
    pub master: Option<Uuid>,
}

/// Why a room cannot dial a participant in when the switch has no way to place calls.
pub const NO_DIALER: &str =
    "this switch cannot place calls: configure [sip] with a trunk (or dial a sip: URI)";

/// Take a participant out (a caller goes back to its bot; a bot's or dialled call hangs up).
#[derive(Message)]
#[rtype(result = "Result<Participant, RoomError>")]
pub struct Leave {
    pub call: Uuid,
}

/// Mute or unmute a participant.
#[derive(Message)]
#[rtype(result = "Result<Participant, RoomError>")]
pub struct Mute {
    pub call: Uuid,
    pub muted: bool,
}

/// Let a participant out of the waiting room into the mix (`settings.waiting_room`). A
/// participant already in the mix is answered as it is.
#[derive(Message)]
#[rtype(result = "Result<Participant, RoomError>")]
pub struct Admit {
    pub call: Uuid,
}

/// The room's current record.
#[derive(Message)]
#[rtype(result = "RoomRecord")]
pub struct GetRoom;

/// Close the room now: every participant leaves.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseRoom;

// ---------------------------------------------------------------------------------------------

struct Member {
    addr: Addr<CallActor>,
    bot: bool,
    /// A call the room dialled in (`JoinDial`): a person like a caller, but hung up when it
    /// leaves, like a bot's call.
    dialed: bool,
}

/// One room.
pub struct Room {
    record: RoomRecord,
    services: Arc<Services>,
    registry: Addr<Registry>,
    /// What places calls dialled into the room (`JoinDial`), when the switch can.
    dialer: Option<Arc<dyn Dialing>>,
    rate: u32,
    mixer: Mixer,
    members: HashMap<Uuid, Member>,
    /// Joins under way (counted against `max_participants`).
    joining: usize,
    clock: Option<SpawnHandle>,
    empty_timer: Option<SpawnHandle>,
    /// Mix frames a participant's full mailbox refused.
    dropped_frames: u64,
    /// The recording in progress (`recording.rs`).
    recording: Option<recording::RoomRecording>,
}

impl Room {
    pub fn new(
        record: RoomRecord,
        services: Arc<Services>,
        registry: Addr<Registry>,
        dialer: Option<Arc<dyn Dialing>>,
    ) -> Self {
        let rate = services.config.rooms.sample_rate;
        Room {
            dialer,
            mixer: Mixer::new(samples_for_ms(rate, FRAME_MS)),
            rate,
            record,
            services,
            registry,
            members: HashMap::new(),
            joining: 0,
            clock: None,
            empty_timer: None,
            dropped_frames: 0,
            recording: None,
        }
    }

    fn publish(&mut self, event: &'static str) {
        self.record.tm_update = Utc::now();
        self.services.journal.room_changed(&self.record, event);
    }

    /// Checks the room can take one more participant.
    fn admit(&self) -> Result<(), RoomError> {
        if self.record.status == RoomStatus::Closed {
            return Err(RoomError::Closed(self.record.id));
        }
        let max = self.record.max_participants;
        if self.members.len() + self.joining >= max as usize {
            return Err(RoomError::Full(self.record.id, max));
        }
        Ok(())
    }

    fn add(
        &mut self,
        call: Uuid,
        member: Member,
        user: String,
        ctx: &mut Context<Self>,
    ) -> Participant {
        let role = if member.bot {
            Role::Bot
        } else if self
            .record
            .participants
            .iter()
            .any(|p| p.role == Role::Host)
        {
            Role::Participant
        } else {
            Role::Host
        };
        // Bots and dialled calls never wait: the API or a bridge put them in on purpose.
        let waiting = self.record.settings.waiting_room && !member.bot && !member.dialed;
        let participant = Participant {
            call_id: call,
            user_id: user,
            role,
            muted: false,
            waiting,
            joined_at: Utc::now(),
        };
        if !waiting {
            self.mixer.add(call);
        }
        if self.record.settings.auto_transcribe {
            // A caller is transcribed by its call while it is here; a bot's lines are its
            // prompts' text, which its call keeps anyway.
            if !member.bot {
                member.addr.do_send(Transcribe {
                    language: Some(self.services.asr.config().language.clone()),
                });
            }
            if self.record.transcribed.len() >= MAX_TRANSCRIBED {
                self.record.transcribed.remove(0);
            }
            self.record.transcribed.push(Transcribed {
                call_id: call,
                user_id: participant.user_id.clone(),
                from: participant.joined_at,
                to: None,
            });
        }
        self.members.insert(call, member);
        self.record.participants.push(participant.clone());
        if let Some(t) = self.empty_timer.take() {
            ctx.cancel_future(t);
        }
        if self.clock.is_none() {
            let period = Duration::from_millis(FRAME_MS as u64);
            self.clock = Some(ctx.run_interval(period, |act, _| act.tick()));
        }
        tracing::info!(room = %self.record.id, call = %call, participants = self.members.len(), waiting, "participant joined");
        self.publish("room_participant_joined");
        participant
    }

    /// Removes a participant; `tell` says whether its call must be told (it did not leave
    /// on its own).
    fn remove(&mut self, call: Uuid, tell: bool, ctx: &mut Context<Self>) -> Option<Participant> {
        let member = self.members.remove(&call)?;
        self.mixer.remove(call);
        let at = self
            .record
            .participants
            .iter()
            .position(|p| p.call_id == call)?;
        let participant = self.record.participants.remove(at);
        if self.record.settings.auto_transcribe {
            if !member.bot {
                member.addr.do_send(Transcribe { language: None });
            }
            let now = Utc::now();
            for stay in self.record.transcribed.iter_mut().rev() {
                if stay.call_id == call && stay.to.is_none() {
                    stay.to = Some(now);
                }
            }
        }
        if tell {
            if member.bot || member.dialed {
                member.addr.do_send(Hangup {
                    cause: EndCause::Normal,
                    detail: format!("removed from room {}", self.record.id),
                });
            } else {
                member.addr.do_send(LeftRoom {
                    room: self.record.id,
                });
            }
        }
        tracing::info!(room = %self.record.id, call = %call, participants = self.members.len(), "participant left");
        self.publish("room_participant_left");
        if self.record.kind == RoomKind::Bridge {
            // One side gone ends the bridge: the other goes back to its bot.
            self.close(ctx);
        } else if self.members.is_empty() {
            if let Some(c) = self.clock.take() {
                ctx.cancel_future(c);
            }
            self.arm_empty_timer(ctx);
        }
        Some(participant)
    }

    /// A call dialled into the room (`JoinDial`) joins once it is answered; if it ends
    /// first, or does not answer within `RING_TIMEOUT`, it is not waited for any more (and
    /// hung up, if it still rings).
    fn enter_when_answered(
        &mut self,
        call: CallHandle,
        events: broadcast::Receiver<CallEvent>,
        user: String,
        ctx: &mut Context<Self>,
    ) {
        let registry = self.registry.clone();
        let enter = EnterRoom {
            room: self.record.id,
            input: ctx.address().recipient(),
            rate: self.rate,
        };
        let addr = call.addr.clone();
        let id = call.id;
        let entered = async move {
            if directory::first_answer(events, &registry, &[id])
                .await
                .is_none()
            {
                return Err("not answered".to_owned());
            }
            match addr.send(enter).await {
                Ok(r) => r,
                Err(_) => Err(format!("call {id} has ended")),
            }
        };
        ctx.spawn(entered.into_actor(self).map(move |entered, act, ctx| {
            act.joining -= 1;
            let hang_up = |detail: String| {
                call.addr.do_send(Hangup {
                    cause: EndCause::Normal,
                    detail,
                });
            };
            match entered {
                Ok(_) if act.record.status == RoomStatus::Closed => {
                    call.addr.do_send(LeftRoom {
                        room: act.record.id,
                    });
                    hang_up(format!("room {} closed", act.record.id));
                }
                Ok(_) => {
                    let member = Member {
                        addr: call.addr.clone(),
                        bot: false,
                        dialed: true,
                    };
                    act.add(call.id, member, user, ctx);
                }
                Err(why) => {
                    tracing::info!(room = %act.record.id, call = %call.id, %why, "dialled participant did not join");
                    hang_up(format!("did not join room {}: {why}", act.record.id));
                    if act.members.is_empty() && act.joining == 0 {
                        if act.record.kind == RoomKind::Bridge {
                            act.close(ctx);
                        } else {
                            act.arm_empty_timer(ctx);
                        }
                    }
                }
            }
        }));
    }

    fn arm_empty_timer(&mut self, ctx: &mut Context<Self>) {
        if self.record.kind != RoomKind::Temporary || self.record.status == RoomStatus::Closed {
            return;
        }
        let wait = Duration::from_millis(self.services.config.rooms.empty_timeout_ms);
        self.empty_timer = Some(ctx.run_later(wait, |act, ctx| {
            act.empty_timer = None;
            if act.members.is_empty() && act.joining == 0 {
                act.close(ctx);
            }
        }));
    }

    fn close(&mut self, ctx: &mut Context<Self>) {
        if self.record.status == RoomStatus::Closed {
            return;
        }
        // Closed before anyone leaves, so that a bridge's `remove` does not close it again.
        self.record.status = RoomStatus::Closed;
        self.stop_recording();
        let calls: Vec<Uuid> = self.members.keys().copied().collect();
        for call in calls {
            self.remove(call, true, ctx);
        }
        self.record.tm_close = Some(Utc::now());
        tracing::info!(room = %self.record.id, "room closed");
        self.publish("room_closed");
        self.registry.do_send(RoomClosed {
            id: self.record.id,
            workspace: self.record.workspace.clone(),
            name: self.record.name.clone(),
        });
        ctx.stop();
    }

    /// One 20 ms tick: mix, and send each participant its frame.
    fn tick(&mut self) {
        let tick = self.mixer.tick();
        if self.recording.is_some() {
            self.record_mix(&tick.shared, &tick.voices);
        }
        let room = self.record.id;
        for (call, frame) in tick.frames {
            let Some(member) = self.members.get(&call) else {
                continue;
            };
            // Silence is not sent to callers (their side plays nothing meanwhile): a quiet room
            // costs no messages. Bots get every frame: their call watches for caller audio.
            if !member.bot && self.mixer.is_silence(&frame) {
                continue;
            }
            let sent = if member.bot {
                member
                    .addr
                    .try_send(CallerEvent::Audio(frame.to_vec()))
                    .is_ok()
            } else {
                member
                    .addr
                    .try_send(RoomAudio {
                        room,
                        samples: frame,
                        rate: self.rate,
                    })
                    .is_ok()
            };
            if !sent {
                self.dropped_frames += 1;
            }
        }
    }

    fn participant(&self, call: Uuid) -> Result<&Participant, RoomError> {
        self.record
            .participants
            .iter()
            .find(|p| p.call_id == call)
            .ok_or(RoomError::NotIn {
                room: self.record.id,
                call,
            })
    }
}

impl Actor for Room {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(ROOM_MAILBOX);
        self.arm_empty_timer(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        if self.dropped_frames > 0 {
            tracing::info!(room = %self.record.id, dropped = self.dropped_frames, "mix frames participants could not take");
        }
    }
}

impl Handler<Join> for Room {
    type Result = ResponseActFuture<Self, Result<Participant, RoomError>>;

    fn handle(&mut self, msg: Join, ctx: &mut Context<Self>) -> Self::Result {
        let room_ws = &self.record.workspace;
        if !room_ws.is_empty() && msg.workspace != *room_ws {
            return Box::pin(fut::ready(Err(RoomError::NotFound(self.record.id))));
        }
        if let Ok(p) = self.participant(msg.call) {
            return Box::pin(fut::ready(Ok(p.clone())));
        }
        if let Err(e) = self.record.password_allows(msg.password.as_deref()) {
            tracing::info!(room = %self.record.id, call = %msg.call, error = %e, "join refused");
            return Box::pin(fut::ready(Err(e)));
        }
        if let Err(e) = self.admit() {
            return Box::pin(fut::ready(Err(e)));
        }
        self.joining += 1;
        let enter = msg.addr.send(EnterRoom {
            room: self.record.id,
            input: ctx.address().recipient(),
            rate: self.rate,
        });
        Box::pin(enter.into_actor(self).map(move |reply, act, ctx| {
            act.joining -= 1;
            let record = match reply {
                Ok(Ok(record)) => record,
                Ok(Err(e)) => return Err(RoomError::Refused(e)),
                Err(_) => return Err(RoomError::Refused(format!("call {} has ended", msg.call))),
            };
            if act.record.status == RoomStatus::Closed {
                msg.addr.do_send(LeftRoom {
                    room: act.record.id,
                });
                return Err(RoomError::Closed(act.record.id));
            }
            let user = if msg.user.is_empty() {
                record.source.target.clone()
            } else {
                msg.user
            };
            let member = Member {
                addr: msg.addr,
                bot: false,
                dialed: false,
            };
            Ok(act.add(msg.call, member, user, ctx))
        }))
    }
}

impl Handler<JoinBot> for Room {
    type Result = ResponseActFuture<Self, Result<Participant, RoomError>>;

    fn handle(&mut self, msg: JoinBot, ctx: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.admit() {
            return Box::pin(fut::ready(Err(e)));
        }
        if !self.services.config.bots.contains_key(&msg.bot) {
            return Box::pin(fut::ready(Err(RoomError::Refused(format!(
                "bot `{}` is not configured",
                msg.bot
            )))));
        }
        self.joining += 1;
        let mut call = NewCall::incoming("room", format!("room-{}", self.record.id));
        call.direction = Direction::Outgoing;
        call.bot = Some(msg.bot.clone());
        call.room_id = Some(self.record.id);
        call.master_call_id = msg.master;
        call.workspace = self.record.workspace.clone();
        call.source = Address {
            kind: "conference".into(),
            target: self.record.id.to_string(),
            target_name: self.record.name.clone(),
            ..Address::default()
        };
        call.destination = Address {
            kind: "agent".into(),
            target: msg.bot.clone(),
            ..Address::default()
        };
        let create = self.registry.send(CreateCall { call });
        let input: Recipient<RoomInput> = ctx.address().recipient();
        Box::pin(create.into_actor(self).map(move |reply, act, ctx| {
            act.joining -= 1;
            let handle = match reply {
                Ok(Ok(handle)) => handle,
                Ok(Err(e)) => return Err(RoomError::Refused(e.to_string())),
                Err(_) => return Err(RoomError::Refused("the switch is shutting down".into())),
            };
            let call_events = handle.addr.clone().recipient();
            let id = handle.id;
            let leg = leg::RoomLeg::start_in_arbiter(&handle.arbiter, move |_| {
                leg::RoomLeg::new(input, id, call_events)
            });
            handle.addr.do_send(AttachLeg {
                leg: leg.recipient(),
                format: LegFormat {
                    in_rate: act.rate,
                    out_rate: act.rate,
                    delivery: Delivery::Paced,
                    plays_urls: false,
                    plays_hold_music: false,
                },
            });
            let member = Member {
                addr: handle.addr,
                bot: true,
                dialed: false,
            };
            Ok(act.add(id, member, msg.bot, ctx))
        }))
    }
}

impl Handler<JoinDial> for Room {
    type Result = ResponseActFuture<Self, Result<Uuid, RoomError>>;

    fn handle(&mut self, msg: JoinDial, _ctx: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.admit() {
            return Box::pin(fut::ready(Err(e)));
        }
        let Some(dialer) = self.dialer.clone() else {
            return Box::pin(fut::ready(Err(RoomError::CannotDial(NO_DIALER.into()))));
        };
        self.joining += 1;
        let mut call = NewCall::incoming("room", format!("room-{}", self.record.id));
        call.direction = Direction::Outgoing;
        call.botless = true;
        call.room_id = Some(self.record.id);
        call.master_call_id = msg.master;
        call.workspace = self.record.workspace.clone();
        call.source = msg.source.clone();
        call.destination = msg.destination.clone();
        // Subscribed before the call exists, so that its answer cannot go unseen.
        let events = self.services.journal.subscribe();
        let create = self.registry.send(CreateCall { call });
        Box::pin(create.into_actor(self).map(move |reply, act, ctx| {
            let handle = match reply {
                Ok(Ok(handle)) => handle,
                Ok(Err(e)) => {
                    act.joining -= 1;
                    return Err(RoomError::Refused(e.to_string()));
                }
                Err(_) => {
                    act.joining -= 1;
                    return Err(RoomError::Refused("the switch is shutting down".into()));
                }
            };
            let target = msg.destination.target.clone();
            if let Err(detail) = dialer.place(&msg.destination, &handle, &msg.source) {
                act.joining -= 1;
                handle.addr.do_send(Hangup {
                    cause: EndCause::Dialout,
                    detail: detail.clone(),
                });
                return Err(RoomError::CannotDial(format!("cannot dial {target}: {detail}")));
            }
            let id = handle.id;
            tracing::info!(room = %act.record.id, call = %id, destination = %target, "dialling a participant in");
            act.enter_when_answered(handle, events, target, ctx);
            Ok(id)
        }))
    }
}

impl Handler<Leave> for Room {
    type Result = Result<Participant, RoomError>;

    fn handle(&mut self, msg: Leave, ctx: &mut Context<Self>) -> Self::Result {
        self.participant(msg.call)?;
        self.remove(msg.call, true, ctx).ok_or(RoomError::NotIn {
            room: self.record.id,
            call: msg.call,
        })
    }
}

impl Handler<Mute> for Room {
    type Result = Result<Participant, RoomError>;

    fn handle(&mut self, msg: Mute, _ctx: &mut Context<Self>) -> Self::Result {
        self.participant(msg.call)?;
        self.mixer.set_muted(msg.call, msg.muted);
        let participant = self
            .record
            .participants
            .iter_mut()
            .find(|p| p.call_id == msg.call)
            .map(|p| {
                p.muted = msg.muted;
                p.clone()
            })
            .ok_or(RoomError::NotIn {
                room: self.record.id,
                call: msg.call,
            })?;
        self.publish("room_updated");
        Ok(participant)
    }
}

impl Handler<Admit> for Room {
    type Result = Result<Participant, RoomError>;

    fn handle(&mut self, msg: Admit, _ctx: &mut Context<Self>) -> Self::Result {
        let room = self.record.id;
        let participant = self
            .record
            .participants
            .iter_mut()
            .find(|p| p.call_id == msg.call)
            .ok_or(RoomError::NotIn {
                room,
                call: msg.call,
            })?;
        if !participant.waiting {
            return Ok(participant.clone());
        }
        participant.waiting = false;
        let admitted = participant.clone();
        self.mixer.add(msg.call);
        self.mixer.set_muted(msg.call, admitted.muted);
        tracing::info!(room = %room, call = %msg.call, "participant admitted");
        self.publish("room_updated");
        Ok(admitted)
    }
}

impl Handler<GetRoom> for Room {
    type Result = MessageResult<GetRoom>;

    fn handle(&mut self, _msg: GetRoom, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.record.clone())
    }
}

impl Handler<CloseRoom> for Room {
    type Result = ();

    fn handle(&mut self, _msg: CloseRoom, ctx: &mut Context<Self>) {
        self.close(ctx);
    }
}

impl Handler<RoomInput> for Room {
    type Result = ();

    fn handle(&mut self, msg: RoomInput, ctx: &mut Context<Self>) {
        match msg {
            RoomInput::Audio { call, samples } => self.mixer.push(call, &samples),
            RoomInput::Gone { call } => {
                self.remove(call, false, ctx);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(require: bool, password: Option<&str>) -> RoomRecord {
        let now = Utc::now();
        RoomRecord {
            id: Uuid::new_v4(),
            workspace: String::new(),
            name: "r".into(),
            kind: RoomKind::Temporary,
            max_participants: 4,
            settings: RoomSettings {
                require_password: require,
                ..RoomSettings::default()
            },
            password: password.map(str::to_owned),
            status: RoomStatus::Active,
            participants: Vec::new(),
            recording_id: None,
            recording_ids: Vec::new(),
            tracks: Vec::new(),
            transcribed: Vec::new(),
            tm_create: now,
            tm_update: now,
            tm_close: None,
        }
    }

    #[test]
    fn a_password_is_asked_only_when_required() {
        let open = record(false, None);
        assert_eq!(open.password_allows(None), Ok(()));
        assert_eq!(open.password_allows(Some("1")), Ok(()));
        let locked = record(true, Some("2468"));
        assert_eq!(locked.password_allows(Some("2468")), Ok(()));
        for (given, was_given) in [(None, false), (Some("246"), true), (Some("2469"), true)] {
            assert_eq!(
                locked.password_allows(given),
                Err(RoomError::Password {
                    room: locked.id,
                    given: was_given
                })
            );
        }
    }

    #[test]
    fn a_stored_room_without_the_new_fields_still_reads() {
        let mut v = serde_json::to_value(record(false, None)).expect("json");
        let fields = v.as_object_mut().expect("object");
        fields.remove("password");
        fields.remove("tracks");
        let back: RoomRecord = serde_json::from_value(v).expect("reads");
        assert_eq!(back.password, None);
        assert!(back.tracks.is_empty());
    }
}
