//! The registry actor: creates calls, finds them by id, and learns when they end.
//!
//! It admits or refuses new calls (`max_calls`, draining), picks the bot by the configured
//! routes, places each call on the next call arbiter so calls spread over every core, and keeps
//! the latest record of every call (live ones and the most recent ended ones) for the REST API.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use actix::prelude::*;
use chrono::Utc;
use thiserror::Error;
use uuid::Uuid;

pub use crate::call::messages::{CallChanged, CallEnded, HangupCall, HangupError};
use crate::call::messages::{Chain, ChainError, Hangup};
use crate::call::state::{Address, CallRecord, Direction, EndCause, Status};
use crate::call::{CallActor, RegistryLink};
use crate::room::directory::RoomBook;
pub use crate::room::directory::RoomClosed;
use crate::services::Services;
use crate::telemetry;

/// What a protocol knows about a call it is about to create.
#[derive(Debug, Clone)]
pub struct NewCall {
    pub direction: Direction,
    /// The protocol the call arrives on (`smartivr`, `live_call_ws`, …).
    pub ingress: &'static str,
    /// The id the caller's side gave the call.
    pub reference: String,
    pub source: Address,
    pub destination: Address,
    pub workspace: String,
    pub hotline: String,
    /// Chain the new call onto this master call.
    pub master_call_id: Option<Uuid>,
    /// Run the call on this arbiter instead of the next one in turn: a protocol session that
    /// lives on an arbiter of its own (a WebSocket on its HTTP worker) keeps its call beside it,
    /// so the call's media never crosses threads.
    pub arbiter: Option<ArbiterHandle>,
    /// What the caller's side said about the call when it connected, kept whole.
    pub metadata: Option<serde_json::Value>,
    /// Run this configured bot instead of the one the routes pick (a bot joining a room).
    pub bot: Option<String>,
    /// The conference room the call is created in (a bot joining a room).
    pub room_id: Option<Uuid>,
    /// The call has no bot: a leg the switch dials into a room or a bridge (`Dialing`), whose
    /// audio only the room hears; the room hangs it up when it leaves.
    pub botless: bool,
}

impl NewCall {
    /// An incoming call on `ingress` with the caller's reference.
    pub fn incoming(ingress: &'static str, reference: impl Into<String>) -> Self {
        NewCall {
            direction: Direction::Incoming,
            ingress,
            reference: reference.into(),
            source: Address::default(),
            destination: Address::default(),
            workspace: String::new(),
            hotline: String::new(),
            master_call_id: None,
            arbiter: None,
            metadata: None,
            bot: None,
            room_id: None,
            botless: false,
        }
    }
}

/// A call that was admitted.
#[derive(Clone)]
pub struct CallHandle {
    pub id: Uuid,
    pub addr: Addr<CallActor>,
    /// The arbiter the call runs on; its protocol session should run there too.
    pub arbiter: ArbiterHandle,
}

/// Places outgoing calls where the switch can (SIP trunks, `sip:` URIs): what rooms and
/// bridged `connect`s use to dial a participant in. Set once SIP has started (`SetDialer`).
pub trait Dialing: Send + Sync {
    /// Dials `destination` for the new outgoing call `call`, with `source` as its caller id.
    /// An error (a destination this switch cannot dial, no free RTP port) leaves the call to
    /// its creator to end.
    fn place(
        &self,
        destination: &Address,
        call: &CallHandle,
        source: &Address,
    ) -> Result<(), String>;
}

/// Why a new call was refused.
#[derive(Debug, Error)]
pub enum AdmitError {
    #[error("the switch is at its limit of {0} calls")]
    Full(usize),
    #[error("the switch is draining and accepts no new calls")]
    Draining,
    #[error("no route matches a call on {ingress} (hotline `{hotline}`, workspace `{workspace}`)")]
    NoRoute {
        ingress: &'static str,
        hotline: String,
        workspace: String,
    },
    #[error(transparent)]
    Chain(#[from] ChainError),
}

// ------------------------------------------------------------------------------------------
// Messages received by the registry.
// (`CallChanged`, `CallEnded` and `HangupCall`, which calls send, are defined with the call's
// messages, so the call never names the registry.)

/// Create and start a call (refused when full, draining or unroutable).
#[derive(Message)]
#[rtype(result = "Result<CallHandle, AdmitError>")]
pub struct CreateCall {
    pub call: NewCall,
}

/// Whether a new call would be admitted now (not full, not draining), asked before a WebSocket
/// upgrade so that a refusal is an HTTP 503 rather than an opened socket.
#[derive(Message)]
#[rtype(result = "Result<(), AdmitError>")]
pub struct CanAdmit;

/// The latest record of a call, live or ended.
#[derive(Message)]
#[rtype(result = "Option<CallRecord>")]
pub struct GetCall {
    pub id: Uuid,
}

/// The address of a live call.
#[derive(Message)]
#[rtype(result = "Option<Addr<CallActor>>")]
pub struct FindCall {
    pub id: Uuid,
}

/// Counts for health and load reports.
#[derive(Message)]
#[rtype(result = "Stats")]
pub struct GetStats;

/// What `GetStats` answers.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Stats {
    pub live_calls: usize,
    pub known_calls: usize,
    pub draining: bool,
}

/// Stop admitting calls; answer how many are still live.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Drain;

/// Hang up every live call with this detail (the end of a drain).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct HangupAll {
    pub detail: String,
}

// ------------------------------------------------------------------------------------------

/// The registry actor.
pub struct Registry {
    pub(crate) services: Arc<Services>,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: usize,
    live: HashMap<Uuid, Addr<CallActor>>,
    known: HashMap<Uuid, CallRecord>,
    /// Ended calls, oldest first, to forget beyond `keep_ended_calls`.
    ended: VecDeque<Uuid>,
    draining: bool,
    /// The open conference rooms (`room::directory`).
    pub(crate) rooms: RoomBook,
}

impl AdmitError {
    /// The `reason` label of `switchboard_calls_refused_total`.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            AdmitError::Full(_) => "full",
            AdmitError::Draining => "draining",
            AdmitError::NoRoute { .. } => "no_route",
            AdmitError::Chain(_) => "no_master",
        }
    }
}

impl Registry {
    /// A registry placing calls on `arbiters` (at least one).
    pub fn new(services: Arc<Services>, arbiters: Vec<ArbiterHandle>) -> Self {
        Registry {
            services,
            arbiters,
            next_arbiter: 0,
            live: HashMap::new(),
            known: HashMap::new(),
            ended: VecDeque::new(),
            draining: false,
            rooms: RoomBook::default(),
        }
    }

    fn check_capacity(&self) -> Result<(), AdmitError> {
        if self.draining {
            return Err(AdmitError::Draining);
        }
        let max = self.services.config.server.max_calls;
        if self.live.len() >= max {
            return Err(AdmitError::Full(max));
        }
        Ok(())
    }

    /// The next call arbiter in turn.
    pub(crate) fn next_arbiter(&mut self) -> ArbiterHandle {
        self.next_arbiter = self.next_arbiter.wrapping_add(1);
        self.arbiters[self.next_arbiter % self.arbiters.len()].clone()
    }

    fn admit(&self, call: &NewCall) -> Result<String, AdmitError> {
        self.check_capacity()?;
        if call.botless {
            return Ok(String::new());
        }
        if let Some(bot) = &call.bot {
            return Ok(bot.clone());
        }
        // A SIP caller's From host (`user@host` sources) can pick its route too.
        let from_host = match call.source.kind.as_str() {
            "sip" => call.source.target.rsplit('@').next().unwrap_or(""),
            _ => "",
        };
        self.services
            .config
            .route_from(call.ingress, &call.hotline, &call.workspace, from_host)
            .map(str::to_owned)
            .ok_or_else(|| AdmitError::NoRoute {
                ingress: call.ingress,
                hotline: call.hotline.clone(),
                workspace: call.workspace.clone(),
            })
    }

    fn spawn_call(
        &mut self,
        id: Uuid,
        call: NewCall,
        bot: String,
        ctx: &mut Context<Self>,
    ) -> CallHandle {
        let status = match call.direction {
            Direction::Incoming => Status::Ringing,
            Direction::Outgoing => Status::Dialing,
        };
        let mut record = CallRecord::new(id, call.direction, status, Utc::now());
        record.reference = call.reference;
        record.ingress = call.ingress.to_owned();
        record.bot = bot;
        record.source = call.source;
        record.destination = call.destination;
        record.workspace = call.workspace;
        record.hotline = call.hotline;
        record.master_call_id = call.master_call_id;
        record.metadata = call.metadata;
        record.room_id = call.room_id;

        let arbiter = match call.arbiter {
            Some(arbiter) => arbiter,
            None => self.next_arbiter(),
        };
        let registry = ctx.address();
        let services = self.services.clone();
        let initial = record.clone();
        let botless = call.botless;
        // The bot starts beside its call, on the call's arbiter, talking to it by messages.
        let addr = CallActor::start_in_arbiter(&arbiter, move |ctx| {
            let bot = if botless {
                Ok(None)
            } else {
                crate::bots::start(&initial.bot, &services, ctx.address())
                    .map(Some)
                    .map_err(|e| e.to_string())
            };
            CallActor::new(initial, RegistryLink::of(&registry), services, bot)
        });
        self.live.insert(id, addr.clone());
        telemetry::call_admitted(&record.ingress);
        self.services.journal.call_changed(&record, "call_created");
        self.remember(record.clone());
        tracing::info!(call = %id, reference = %record.reference, ingress = record.ingress, bot = %record.bot, "call created");
        CallHandle { id, addr, arbiter }
    }

    fn remember(&mut self, record: CallRecord) {
        self.known.insert(record.id, record);
    }

    /// A live call is over: it moves to the ended calls (once).
    fn end_live(&mut self, id: Uuid) {
        if self.live.remove(&id).is_some() {
            telemetry::call_gone();
            self.ended.push_back(id);
            self.forget_old_ended();
        }
    }

    fn forget_old_ended(&mut self) {
        let keep = self.services.config.server.keep_ended_calls;
        while self.ended.len() > keep {
            if let Some(id) = self.ended.pop_front() {
                self.known.remove(&id);
            }
        }
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
    }
}

impl Handler<CreateCall> for Registry {
    type Result = ResponseActFuture<Self, Result<CallHandle, AdmitError>>;

    fn handle(&mut self, msg: CreateCall, ctx: &mut Context<Self>) -> Self::Result {
        let ingress = msg.call.ingress;
        let bot = match self.admit(&msg.call) {
            Ok(bot) => bot,
            Err(e) => {
                telemetry::call_refused(ingress, e.metric_reason());
                return Box::pin(fut::ready(Err(e)));
            }
        };
        let id = Uuid::new_v4();
        let Some(master_id) = msg.call.master_call_id else {
            let handle = self.spawn_call(id, msg.call, bot, ctx);
            return Box::pin(fut::ready(Ok(handle)));
        };
        // A chained call exists only if its master takes it.
        let Some(master) = self.live.get(&master_id).cloned() else {
            telemetry::call_refused(ingress, "no_master");
            return Box::pin(fut::ready(Err(ChainError::NoMaster(master_id).into())));
        };
        Box::pin(
            master
                .send(Chain { child: id })
                .into_actor(self)
                .map(move |reply, act, ctx| {
                    let admitted: Result<CallHandle, AdmitError> = match reply {
                        Ok(Ok(())) => Ok(act.spawn_call(id, msg.call, bot, ctx)),
                        Ok(Err(e)) => Err(e.into()),
                        Err(_) => Err(ChainError::NoMaster(master_id).into()),
                    };
                    if let Err(e) = &admitted {
                        telemetry::call_refused(ingress, e.metric_reason());
                    }
                    admitted
                }),
        )
    }
}

impl Handler<CanAdmit> for Registry {
    type Result = Result<(), AdmitError>;

    fn handle(&mut self, _msg: CanAdmit, _ctx: &mut Context<Self>) -> Self::Result {
        self.check_capacity()
    }
}

impl Handler<CallChanged> for Registry {
    type Result = ();

    fn handle(&mut self, msg: CallChanged, _ctx: &mut Context<Self>) {
        tracing::debug!(call = %msg.record.id, event = msg.event, status = msg.record.status.as_str(), "call event");
        self.services.journal.call_changed(&msg.record, msg.event);
        observe_change(&msg.record, msg.event);
        let hung_up = msg.record.status == Status::Hangup;
        let id = msg.record.id;
        self.remember(*msg.record);
        if hung_up {
            self.end_live(id);
        }
    }
}

impl Handler<CallEnded> for Registry {
    type Result = ();

    fn handle(&mut self, msg: CallEnded, _ctx: &mut Context<Self>) {
        self.end_live(msg.id);
    }
}

/// Counts what a status change means for the metrics: set-up time when a call is answered,
/// its end with ingress, bot and reason when it hangs up.
fn observe_change(record: &CallRecord, event: &str) {
    match event {
        "call_progressing" => {
            if let Some(answered) = record.tm_progressing {
                let setup = (answered - record.tm_create).to_std().unwrap_or_default();
                telemetry::call_set_up(&record.ingress, setup);
            }
        }
        "call_hangup" => {
            let reason = record.hangup_reason.map_or("other", |r| r.as_str());
            telemetry::call_ended(&record.ingress, &record.bot, reason);
        }
        _ => {}
    }
}

impl Handler<GetCall> for Registry {
    type Result = Option<CallRecord>;

    fn handle(&mut self, msg: GetCall, _ctx: &mut Context<Self>) -> Self::Result {
        self.known.get(&msg.id).cloned()
    }
}

impl Handler<FindCall> for Registry {
    type Result = Option<Addr<CallActor>>;

    fn handle(&mut self, msg: FindCall, _ctx: &mut Context<Self>) -> Self::Result {
        self.live.get(&msg.id).cloned()
    }
}

impl Handler<HangupCall> for Registry {
    type Result = Result<(), HangupError>;

    fn handle(&mut self, msg: HangupCall, _ctx: &mut Context<Self>) -> Self::Result {
        match self.live.get(&msg.id) {
            Some(addr) => {
                addr.do_send(Hangup {
                    cause: msg.cause,
                    detail: msg.detail,
                });
                Ok(())
            }
            None if self.known.contains_key(&msg.id) => Err(HangupError::Ended(msg.id)),
            None => Err(HangupError::NotFound(msg.id)),
        }
    }
}

impl Handler<GetStats> for Registry {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _msg: GetStats, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(Stats {
            live_calls: self.live.len(),
            known_calls: self.known.len(),
            draining: self.draining,
        })
    }
}

impl Handler<Drain> for Registry {
    type Result = usize;

    fn handle(&mut self, _msg: Drain, _ctx: &mut Context<Self>) -> usize {
        self.draining = true;
        self.live.len()
    }
}

impl Handler<HangupAll> for Registry {
    type Result = usize;

    fn handle(&mut self, msg: HangupAll, _ctx: &mut Context<Self>) -> usize {
        for addr in self.live.values() {
            addr.do_send(Hangup {
                cause: EndCause::Normal,
                detail: msg.detail.clone(),
            });
        }
        self.live.len()
    }
}
