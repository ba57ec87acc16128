//! Where rooms are found: the registry keeps the open rooms beside the live calls (by id, and
//! by name within a workspace for the flow's `conference_join`). These are the registry's room
//! handlers.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use tokio::sync::broadcast::{self, error::RecvError};
use uuid::Uuid;

use super::{
    CloseRoom, Join, JoinBot, JoinDial, Room, RoomError, RoomKind, RoomRecord, RoomSettings,
    RoomStatus,
};
use crate::call::messages::BridgeTarget;
use crate::call::state::{Address, EndCause, Status};
use crate::call::CallActor;
use crate::registry::{Dialing, GetCall, HangupCall, Registry};
use crate::store::journal::CallEvent;

/// The open rooms.
#[derive(Default)]
pub struct RoomBook {
    live: HashMap<Uuid, Addr<Room>>,
    by_name: HashMap<(String, String), Uuid>,
    /// What places the calls rooms dial in, once SIP has started (`SetDialer`).
    dialer: Option<Arc<dyn Dialing>>,
}

/// What a new room is asked to be.
#[derive(Debug, Clone)]
pub struct RoomSpec {
    pub workspace: String,
    pub name: String,
    pub kind: RoomKind,
    /// 0 takes `[rooms] max_participants`.
    pub max_participants: u32,
    pub settings: RoomSettings,
    /// The room's password (`settings.require_password`); the caller has checked its shape.
    pub password: Option<String>,
}

/// Open a new room.
#[derive(Message)]
#[rtype(result = "Result<RoomRecord, RoomError>")]
pub struct CreateRoom {
    pub spec: RoomSpec,
}

/// The open room with this id.
#[derive(Message)]
#[rtype(result = "Option<Addr<Room>>")]
pub struct FindRoom {
    pub id: Uuid,
}

/// Open again a room the store knows but no actor holds (a persistent room after a restart).
#[derive(Message)]
#[rtype(result = "Result<Addr<Room>, RoomError>")]
pub struct ReopenRoom {
    pub record: RoomRecord,
}

/// Put a live call in a room named by id or by name in its workspace (created, temporary, on
/// first use): the flow's `conference_join`. Answers once the call is in, or why not
/// (`RoomError::Password` when the room wants a password the call did not give right).
#[derive(Message)]
#[rtype(result = "Result<(), RoomError>")]
pub struct RoomForCall {
    pub room: String,
    pub workspace: String,
    pub call: Uuid,
    pub addr: Addr<CallActor>,
    pub user: String,
    pub password: Option<String>,
}

/// Bridge a live call to the first of `targets` to answer: one chained call per target (a
/// bot started for it, or a destination dialled), each in a two-party room of its own, rung
/// at once (at most `MAX_RING_DESTINATIONS`). The first to answer gets the caller in its
/// room; the others are hung up before answering, so their records end `canceling` →
/// `hangup` with `hangup_reason: cancel`. Answers once the caller is in, or why not (then no
/// chained call is left).
#[derive(Message)]
#[rtype(result = "Result<(), RoomError>")]
pub struct OpenBridge {
    pub master: Uuid,
    pub addr: Addr<CallActor>,
    pub workspace: String,
    pub user: String,
    /// The master's caller: the caller id dialled calls show.
    pub source: Address,
    pub targets: Vec<BridgeTarget>,
}

/// Give rooms what places the calls they dial in (SIP's dialer), once it has started.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetDialer(pub Arc<dyn Dialing>);

/// Destinations one `connect` may ring at once: each is a call and a room of its own.
pub const MAX_RING_DESTINATIONS: usize = 8;

/// How long a `connect` rings before it gives up on every bot (like a phone left ringing).
pub const RING_TIMEOUT: Duration = Duration::from_secs(60);

/// A room closed (sent by the room as it stops).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RoomClosed {
    pub id: Uuid,
    pub workspace: String,
    pub name: String,
}

impl Registry {
    fn open_room(
        &mut self,
        spec: RoomSpec,
        ctx: &Context<Self>,
    ) -> Result<(RoomRecord, Addr<Room>), RoomError> {
        let rooms = &self.services.config.rooms;
        if self.rooms.live.len() >= rooms.max_rooms {
            return Err(RoomError::TooMany(rooms.max_rooms));
        }
        let max = match spec.max_participants {
            0 => rooms.max_participants,
            n => n,
        };
        if max > rooms.max_participants {
            return Err(RoomError::Refused(format!(
                "max_participants {max} is over this switch's limit of {}",
                rooms.max_participants
            )));
        }
        let now = Utc::now();
        let record = RoomRecord {
            id: Uuid::new_v4(),
            workspace: spec.workspace,
            name: spec.name,
            kind: spec.kind,
            max_participants: max,
            settings: spec.settings,
            password: spec.password,
            status: RoomStatus::Active,
            participants: Vec::new(),
            recording_id: None,
            recording_ids: Vec::new(),
            tracks: Vec::new(),
            transcribed: Vec::new(),
            tm_create: now,
            tm_update: now,
            tm_close: None,
        };
        self.services.journal.room_changed(&record, "room_created");
        let addr = self.start_room(record.clone(), ctx.address());
        tracing::info!(room = %record.id, name = %record.name, workspace = %record.workspace, "room created");
        Ok((record, addr))
    }

    fn start_room(&mut self, record: RoomRecord, registry: Addr<Registry>) -> Addr<Room> {
        let arbiter = self.next_arbiter();
        let services = self.services.clone();
        let id = record.id;
        let key = (record.workspace.clone(), record.name.clone());
        let dialer = self.rooms.dialer.clone();
        let addr = Room::start_in_arbiter(&arbiter, move |_| {
            Room::new(record, services, registry, dialer)
        });
        self.rooms.live.insert(id, addr.clone());
        if !key.1.is_empty() {
            self.rooms.by_name.insert(key, id);
        }
        addr
    }
}

impl Handler<SetDialer> for Registry {
    type Result = ();

    fn handle(&mut self, msg: SetDialer, _ctx: &mut Context<Self>) {
        self.rooms.dialer = Some(msg.0);
    }
}

impl Handler<CreateRoom> for Registry {
    type Result = Result<RoomRecord, RoomError>;

    fn handle(&mut self, msg: CreateRoom, ctx: &mut Context<Self>) -> Self::Result {
        self.open_room(msg.spec, ctx).map(|(record, _)| record)
    }
}

impl Handler<FindRoom> for Registry {
    type Result = Option<Addr<Room>>;

    fn handle(&mut self, msg: FindRoom, _ctx: &mut Context<Self>) -> Self::Result {
        self.rooms.live.get(&msg.id).cloned()
    }
}

impl Handler<ReopenRoom> for Registry {
    type Result = Result<Addr<Room>, RoomError>;

    fn handle(&mut self, msg: ReopenRoom, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(addr) = self.rooms.live.get(&msg.record.id) {
            return Ok(addr.clone());
        }
        let mut record = msg.record;
        if record.status == RoomStatus::Closed {
            return Err(RoomError::Closed(record.id));
        }
        let max = self.services.config.rooms.max_rooms;
        if self.rooms.live.len() >= max {
            return Err(RoomError::TooMany(max));
        }
        // Nobody is in a room the switch has just reopened: its calls ended with the process.
        record.participants.clear();
        Ok(self.start_room(record, ctx.address()))
    }
}

impl Handler<RoomForCall> for Registry {
    type Result = ResponseFuture<Result<(), RoomError>>;

    fn handle(&mut self, msg: RoomForCall, ctx: &mut Context<Self>) -> Self::Result {
        let found = match Uuid::parse_str(&msg.room) {
            Ok(id) => self.rooms.live.get(&id).cloned().ok_or_else(|| {
                // An id names an existing room only; it is never created.
                RoomError::Refused(format!("room {id} is not open"))
            }),
            Err(_) => {
                let key = (msg.workspace.clone(), msg.room.clone());
                match self
                    .rooms
                    .by_name
                    .get(&key)
                    .and_then(|id| self.rooms.live.get(id))
                {
                    Some(addr) => Ok(addr.clone()),
                    None => self
                        .open_room(
                            RoomSpec {
                                workspace: msg.workspace.clone(),
                                name: msg.room.clone(),
                                kind: RoomKind::Temporary,
                                max_participants: 0,
                                settings: RoomSettings::default(),
                                password: None,
                            },
                            ctx,
                        )
                        .map(|(_, addr)| addr),
                }
            }
        };
        Box::pin(async move {
            let room = found?;
            let joined = room
                .send(Join {
                    call: msg.call,
                    addr: msg.addr,
                    user: msg.user,
                    workspace: msg.workspace,
                    password: msg.password,
                })
                .await;
            flatten(joined).map(|_| ())
        })
    }
}

impl Handler<OpenBridge> for Registry {
    type Result = ResponseFuture<Result<(), RoomError>>;

    fn handle(&mut self, msg: OpenBridge, ctx: &mut Context<Self>) -> Self::Result {
        if msg.targets.is_empty() || msg.targets.len() > MAX_RING_DESTINATIONS {
            let n = msg.targets.len();
            return Box::pin(std::future::ready(Err(RoomError::BadOptions(format!(
                "a connect rings 1 to {MAX_RING_DESTINATIONS} destinations, not {n}"
            )))));
        }
        let mut rooms = Vec::with_capacity(msg.targets.len());
        for _ in &msg.targets {
            let spec = RoomSpec {
                workspace: msg.workspace.clone(),
                name: String::new(),
                kind: RoomKind::Bridge,
                max_participants: 2,
                settings: RoomSettings::default(),
                password: None,
            };
            match self.open_room(spec, ctx) {
                Ok((_, room)) => rooms.push(room),
                Err(e) => {
                    rooms.iter().for_each(|r| r.do_send(CloseRoom));
                    return Box::pin(std::future::ready(Err(e)));
                }
            }
        }
        // Subscribed before any bot's call starts, so that no answer goes unseen.
        let events = self.services.journal.subscribe();
        let registry = ctx.address();
        Box::pin(async move {
            // The chained calls first: if none can start, the caller was never moved.
            let mut ringing = Vec::with_capacity(rooms.len());
            let mut refused = None;
            for (room, target) in rooms.into_iter().zip(msg.targets) {
                let started = match target {
                    BridgeTarget::Bot(bot) => flatten(
                        room.send(JoinBot {
                            bot,
                            master: Some(msg.master),
                        })
                        .await,
                    )
                    .map(|p| p.call_id),
                    BridgeTarget::Dial(destination) => flatten(
                        room.send(JoinDial {
                            destination,
                            source: msg.source.clone(),
                            master: Some(msg.master),
                        })
                        .await,
                    ),
                };
                match started {
                    Ok(call) => ringing.push((call, room)),
                    Err(e) => {
                        room.do_send(CloseRoom);
                        refused = Some(e);
                    }
                }
            }
            if ringing.is_empty() {
                return Err(
                    refused.unwrap_or_else(|| RoomError::Refused("no destination to ring".into()))
                );
            }
            let calls: Vec<Uuid> = ringing.iter().map(|(c, _)| *c).collect();
            let winner = first_answer(events, &registry, &calls).await;
            let mut bridge = None;
            for (call, room) in ringing {
                if Some(call) == winner {
                    bridge = Some(room);
                } else {
                    // Not answered yet: hanging up cancels it (its room closes as it goes).
                    registry.do_send(HangupCall {
                        id: call,
                        cause: EndCause::Normal,
                        detail: "another destination answered, or none did in time".into(),
                    });
                }
            }
            let Some(room) = bridge else {
                return Err(RoomError::Refused(format!(
                    "no destination answered (each ended first, or rang past {} s)",
                    RING_TIMEOUT.as_secs()
                )));
            };
            let joined = room
                .send(Join {
                    call: msg.master,
                    addr: msg.addr,
                    user: msg.user,
                    workspace: msg.workspace,
                    password: None,
                })
                .await;
            if let Err(e) = flatten(joined) {
                // Closing hangs the bot's call up.
                room.do_send(CloseRoom);
                return Err(e);
            }
            Ok(())
        })
    }
}

/// The first of `calls` to answer (become `progressing`), from the live call events; `None`
/// when all of them end first or `RING_TIMEOUT` passes.
pub(crate) async fn first_answer(
    mut events: broadcast::Receiver<CallEvent>,
    registry: &Addr<Registry>,
    calls: &[Uuid],
) -> Option<Uuid> {
    let deadline = tokio::time::Instant::now() + RING_TIMEOUT;
    let mut ended = HashSet::new();
    loop {
        let record = match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) | Ok(Err(RecvError::Closed)) => return None,
            Ok(Ok(event)) => event.record,
            Ok(Err(RecvError::Lagged(_))) => {
                // Events were skipped: ask the calls themselves.
                for &id in calls {
                    match registry.send(GetCall { id }).await {
                        Ok(Some(r)) if r.status == Status::Progressing => return Some(id),
                        Ok(Some(r)) if !r.status.is_ending() => {}
                        _ => {
                            ended.insert(id);
                        }
                    }
                }
                if ended.len() == calls.len() {
                    return None;
                }
                continue;
            }
        };
        if !calls.contains(&record.id) {
            continue;
        }
        if record.status == Status::Progressing {
            return Some(record.id);
        }
        if record.status.is_ending() {
            ended.insert(record.id);
            if ended.len() == calls.len() {
                return None;
            }
        }
    }
}

pub(crate) fn flatten<T>(r: Result<Result<T, RoomError>, MailboxError>) -> Result<T, RoomError> {
    r.unwrap_or_else(|_| Err(RoomError::Refused("the room closed".into())))
}

impl Handler<RoomClosed> for Registry {
    type Result = ();

    fn handle(&mut self, msg: RoomClosed, _ctx: &mut Context<Self>) {
        self.rooms.live.remove(&msg.id);
        let key = (msg.workspace, msg.name);
        if self.rooms.by_name.get(&key) == Some(&msg.id) {
            self.rooms.by_name.remove(&key);
        }
    }
}
