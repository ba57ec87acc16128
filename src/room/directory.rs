//! Where rooms are found: the registry keeps the open rooms beside the live calls (by id, and
//! by name within a workspace for the flow's `conference_join`). These are the registry's room
//! handlers.

use std::collections::HashMap;

use actix::prelude::*;
use chrono::Utc;
use uuid::Uuid;

use super::{
    CloseRoom, Join, JoinBot, Room, RoomError, RoomKind, RoomRecord, RoomSettings, RoomStatus,
};
use crate::call::CallActor;
use crate::registry::Registry;

/// The open rooms.
#[derive(Default)]
pub struct RoomBook {
    live: HashMap<Uuid, Addr<Room>>,
    by_name: HashMap<(String, String), Uuid>,
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

/// Bridge a live call to a bot: a two-party room holding the call and the bot's new call,
/// chained to it. Answers once both are in, or why not (then neither is).
#[derive(Message)]
#[rtype(result = "Result<(), RoomError>")]
pub struct OpenBridge {
    pub master: Uuid,
    pub addr: Addr<CallActor>,
    pub workspace: String,
    pub user: String,
    pub bot: String,
}

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
        let addr = Room::start_in_arbiter(&arbiter, move |_| Room::new(record, services, registry));
        self.rooms.live.insert(id, addr.clone());
        if !key.1.is_empty() {
            self.rooms.by_name.insert(key, id);
        }
        addr
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
        let opened = self.open_room(
            RoomSpec {
                workspace: msg.workspace.clone(),
                name: String::new(),
                kind: RoomKind::Bridge,
                max_participants: 2,
                settings: RoomSettings::default(),
                password: None,
            },
            ctx,
        );
        Box::pin(async move {
            let (_, room) = opened?;
            // The bot's call first: if it cannot start, the caller was never moved.
            let bot = room
                .send(JoinBot {
                    bot: msg.bot,
                    master: Some(msg.master),
                })
                .await;
            if let Err(e) = flatten(bot) {
                room.do_send(CloseRoom);
                return Err(e);
            }
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

fn flatten<T>(r: Result<Result<T, RoomError>, MailboxError>) -> Result<T, RoomError> {
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
