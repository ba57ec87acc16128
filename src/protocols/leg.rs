//! What every caller-protocol session shares: asking for its call (`admit`), its hold on the
//! call (`CallLink`), the answer to a refused admission (`Refused`), the fields of the call it
//! asks for (`Caller`), and, for the gRPC sessions, responses sent in order within the write
//! timeout (`Responses`).

use std::future::Future;
use std::time::Duration;

use actix::prelude::*;
use actix_web::http::StatusCode;
use actix_web_actors::ws::CloseCode;
use tokio::sync::{mpsc, oneshot};
use tonic::{Code, Status};
use uuid::Uuid;

use crate::call::messages::{AttachLeg, CallerEvent, LegCommand, LegFormat};
use crate::call::state::{Address, Direction, EndCause};
use crate::call::CallActor;
use crate::protocols::ws::Outbound;
use crate::registry::{AdmitError, CallHandle, CreateCall, NewCall, Registry};

/// The registry's answer to `CreateCall`.
pub type Admission = Result<Result<CallHandle, AdmitError>, MailboxError>;

/// Why a call ends whose caller went away while it was being admitted.
const LEFT_BEFORE_ADMITTED: &str = "the caller went away before the call was admitted";

/// Asks the registry to admit `call`. The answer is awaited beside the asker, so a caller
/// that goes away meanwhile (a WebSocket closed, a gRPC request cancelled: the returned future
/// is dropped) does not leave the call waiting for a leg that will never attach: the call is
/// told at once that its caller went away before answer.
pub fn admit(registry: &Addr<Registry>, call: NewCall) -> impl Future<Output = Admission> {
    claimed(registry.send(CreateCall { call }))
}

/// What an admitted call does when its session is gone before taking it.
trait Abandon {
    fn abandon(self);
}

impl Abandon for CallHandle {
    fn abandon(self) {
        self.addr.do_send(CallerEvent::Gone {
            cause: EndCause::Canceled,
            local: false,
            detail: LEFT_BEFORE_ADMITTED.into(),
        });
    }
}

/// The answer of `reply`, awaited on a task of its own; an admitted call nobody takes is
/// dropped unclaimed, which abandons it.
fn claimed<T, F>(reply: F) -> impl Future<Output = Result<Result<T, AdmitError>, MailboxError>>
where
    T: Abandon + Send + 'static,
    F: Future<Output = Result<Result<T, AdmitError>, MailboxError>> + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        // Refused by a receiver that is gone: the answer, and its `Unclaimed`, drop here.
        let _ = tx.send(reply.await.map(|r| r.map(Unclaimed::new)));
    });
    async move {
        match rx.await {
            Ok(Ok(Ok(call))) => call.claim().map(Ok).ok_or(MailboxError::Closed),
            Ok(Ok(Err(e))) => Ok(Err(e)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(MailboxError::Closed),
        }
    }
}

/// An admitted call on its way to its session; dropped before the session takes it, it is
/// abandoned (the call is told its caller went away).
struct Unclaimed<T: Abandon>(Option<T>);

impl<T: Abandon> Unclaimed<T> {
    fn new(call: T) -> Self {
        Unclaimed(Some(call))
    }

    fn claim(mut self) -> Option<T> {
        self.0.take()
    }
}

impl<T: Abandon> Drop for Unclaimed<T> {
    fn drop(&mut self) {
        if let Some(call) = self.0.take() {
            call.abandon();
        }
    }
}

/// A session's hold on its call: the call's address and id, and whether the call has been
/// told the leg is gone (it is told once, however the session ends: a session dropped without
/// saying why tells it from `Drop`).
#[derive(Debug)]
pub struct CallLink {
    call: Addr<CallActor>,
    id: Uuid,
    gone: bool,
}

impl CallLink {
    pub fn new(call: Addr<CallActor>, id: Uuid) -> Self {
        CallLink {
            call,
            id,
            gone: false,
        }
    }

    pub fn call(&self) -> &Addr<CallActor> {
        &self.call
    }

    /// The switch's id of the call.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// Makes `leg` the call's caller leg, exchanging audio in `format`.
    pub fn attach(&self, leg: Recipient<LegCommand>, format: LegFormat) {
        self.call.do_send(AttachLeg { leg, format });
    }

    /// Tells the call the leg is gone, the first time only.
    pub fn gone(&mut self, cause: EndCause, local: bool, detail: String) {
        if !self.gone {
            self.gone = true;
            self.call.do_send(CallerEvent::Gone {
                cause,
                local,
                detail,
            });
        }
    }

    /// Tells the call the leg is gone (once) and stops the session.
    pub fn leave(
        &mut self,
        cause: EndCause,
        local: bool,
        detail: String,
        ctx: &mut impl ActorContext,
    ) {
        self.gone(cause, local, detail);
        ctx.stop();
    }

    /// A WebSocket session stopped without saying why: the caller hung up, unless the transport
    /// dropped the peer for falling too far behind (a failure of the switch's side).
    pub fn stopped(&mut self, outbound: &Outbound) {
        match outbound.cut_off() {
            Some(unsent) => self.gone(
                EndCause::Failed,
                true,
                format!("the peer fell too far behind ({unsent} bytes unsent)"),
            ),
            None => self.gone(EndCause::Normal, false, String::new()),
        }
    }
}

impl Drop for CallLink {
    /// A session that ends without having told its call (a gRPC session stopped or dropped
    /// other than by its peer's goodbye or its own hangup) fails its call at once, rather than
    /// leaving it to the media timeout.
    fn drop(&mut self) {
        self.gone(
            EndCause::Failed,
            true,
            "the caller's session ended without a hangup".into(),
        );
    }
}

/// Where a WebSocket session, which creates its call from the peer's first message, is with
/// that call.
#[derive(Debug)]
pub enum Phase {
    /// Before the first message.
    Waiting,
    /// The registry is creating the call.
    Creating,
    /// The call exists and this session is its leg.
    Attached(CallLink),
    /// The call is over or was refused.
    Closed,
}

impl Phase {
    /// The call, once attached.
    pub fn call(&self) -> Option<&Addr<CallActor>> {
        match self {
            Phase::Attached(link) => Some(link.call()),
            _ => None,
        }
    }

    /// Tells the call, if attached, that the leg is gone (once).
    pub fn gone(&mut self, cause: EndCause, local: bool, detail: String) {
        if let Phase::Attached(link) = self {
            link.gone(cause, local, detail);
        }
    }

    /// From the session's `stopped()`: see `CallLink::stopped`.
    pub fn stopped(&mut self, outbound: &Outbound) {
        if let Phase::Attached(link) = self {
            link.stopped(outbound);
        }
    }
}

/// How each protocol answers a refused admission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub grpc: Code,
    pub close: CloseCode,
    pub http: StatusCode,
    pub message: String,
}

impl Refused {
    pub fn of(e: &AdmitError) -> Self {
        let (grpc, close, http) = match e {
            AdmitError::Full(_) => (
                Code::ResourceExhausted,
                CloseCode::Again,
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            AdmitError::Draining => (
                Code::Unavailable,
                CloseCode::Again,
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            AdmitError::NoRoute { .. } => {
                (Code::NotFound, CloseCode::Policy, StatusCode::NOT_FOUND)
            }
            AdmitError::Chain(_) => (
                Code::FailedPrecondition,
                CloseCode::Policy,
                StatusCode::NOT_FOUND,
            ),
        };
        Refused {
            grpc,
            close,
            http,
            message: e.to_string(),
        }
    }

    pub fn status(&self) -> Status {
        Status::new(self.grpc, self.message.clone())
    }
}

/// What a protocol's first message says about its call; `None` numbers leave the address
/// unknown.
#[derive(Debug, Default)]
pub struct Caller {
    pub from: Option<String>,
    pub to: Option<String>,
    pub outgoing: bool,
    pub workspace: String,
    pub hotline: String,
    pub metadata: Option<serde_json::Value>,
}

impl Caller {
    /// The call to create on `ingress` under the caller's `reference`.
    pub fn call(self, ingress: &'static str, reference: String) -> NewCall {
        let mut call = NewCall::incoming(ingress, reference);
        if self.outgoing {
            call.direction = Direction::Outgoing;
        }
        call.source = self.from.map(Address::tel).unwrap_or_default();
        call.destination = self.to.map(Address::tel).unwrap_or_default();
        call.workspace = self.workspace;
        call.hotline = self.hotline;
        call.metadata = self.metadata;
        call
    }

    /// The same call, run beside this session (a WebSocket's HTTP worker), so its media never
    /// crosses threads.
    pub fn call_here(self, ingress: &'static str, reference: String) -> NewCall {
        let mut call = self.call(ingress, reference);
        call.arbiter = Arbiter::try_current();
        call
    }
}

/// A gRPC session: the kit ends its leg when the response stream fails.
pub trait GrpcLeg: Actor<Context = Context<Self>> {
    fn link(&mut self) -> &mut CallLink;
}

/// Responses toward a gRPC peer, queued in order, each within the write timeout. Dropping the
/// sender ends the response stream.
pub struct Responses<T> {
    tx: Option<mpsc::Sender<Result<T, Status>>>,
    write_timeout: Duration,
    /// Why the call failed when the peer takes no response in time.
    stalled: &'static str,
}

impl<T: 'static> Responses<T> {
    pub fn new(
        tx: mpsc::Sender<Result<T, Status>>,
        write_timeout: Duration,
        stalled: &'static str,
    ) -> Self {
        Responses {
            tx: Some(tx),
            write_timeout,
            stalled,
        }
    }

    /// The sender, while the stream is open.
    pub fn open(&self) -> Option<&mpsc::Sender<Result<T, Status>>> {
        self.tx.as_ref()
    }

    /// Ends the response stream.
    pub fn end(&mut self) {
        self.tx = None;
    }

    /// Ends the stream with `last` and then `status`, from a task detached from the session
    /// (which stops now); the task ends when both are queued or the write timeout passes.
    pub fn refuse(&mut self, last: T, status: Status) {
        let Some(tx) = self.tx.take() else { return };
        let write_timeout = self.write_timeout;
        actix::spawn(async move {
            let _ = tokio::time::timeout(write_timeout, async {
                let _ = tx.send(Ok(last)).await;
                let _ = tx.send(Err(status)).await;
            })
            .await;
        });
    }

    /// Queues `response`; with `close`, the stream ends after it and the leg leaves. The session
    /// handles nothing else until the response is queued (one `wait` each keeps them in order);
    /// a peer gone is the caller hanging up, one that takes nothing in time fails the call.
    pub fn send<A: GrpcLeg>(&mut self, response: T, close: bool, ctx: &mut Context<A>) {
        let Some(tx) = self.tx.clone() else { return };
        if close {
            self.tx = None;
        }
        let write_timeout = self.write_timeout;
        let stalled = self.stalled;
        let queued =
            async move { tokio::time::timeout(write_timeout, tx.send(Ok(response))).await };
        ctx.wait(
            actix::fut::wrap_future::<_, A>(queued).map(move |result, act, ctx| {
                let link = act.link();
                match result {
                    Ok(Ok(())) if close => link.leave(EndCause::Normal, true, String::new(), ctx),
                    Ok(Ok(())) => {}
                    // The response stream is gone: the peer has left.
                    Ok(Err(_)) => link.leave(EndCause::Normal, false, String::new(), ctx),
                    Err(_) => link.leave(EndCause::Failed, true, stalled.into(), ctx),
                }
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// An admitted call that records being abandoned.
    struct Flag(Arc<AtomicBool>);

    impl Abandon for Flag {
        fn abandon(self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_call_admitted_after_its_session_went_away_is_abandoned() {
        let abandoned = Arc::new(AtomicBool::new(false));
        let (answer, answered) = oneshot::channel::<()>();
        let call = Flag(abandoned.clone());
        let admission = claimed(async move {
            let _ = answered.await;
            Ok(Ok(call))
        });
        // The session goes away while the registry is still admitting its call.
        drop(admission);
        answer.send(()).expect("the admission is waiting");
        for _ in 0..200 {
            if abandoned.load(Ordering::SeqCst) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the unclaimed call was not abandoned");
    }

    #[tokio::test]
    async fn a_call_its_session_takes_is_not_abandoned() {
        let abandoned = Arc::new(AtomicBool::new(false));
        let call = Flag(abandoned.clone());
        let taken = claimed(async move { Ok(Ok(call)) }).await;
        assert!(matches!(taken, Ok(Ok(Flag(_)))));
        drop(taken);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!abandoned.load(Ordering::SeqCst));
    }

    #[test]
    fn refusals_map_to_each_protocol() {
        let full = Refused::of(&AdmitError::Full(3));
        assert_eq!(full.grpc, Code::ResourceExhausted);
        assert_eq!(full.close, CloseCode::Again);
        assert_eq!(full.http, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            full.status().message(),
            "the switch is at its limit of 3 calls"
        );
        let no_route = Refused::of(&AdmitError::NoRoute {
            ingress: "twilio",
            hotline: String::new(),
            workspace: String::new(),
        });
        assert_eq!(no_route.grpc, Code::NotFound);
        assert_eq!(no_route.close, CloseCode::Policy);
        assert_eq!(no_route.http, StatusCode::NOT_FOUND);
    }

    #[test]
    fn callers_fill_the_new_call() {
        let call = Caller {
            from: Some("+331".into()),
            outgoing: true,
            hotline: "h".into(),
            ..Default::default()
        }
        .call("live_call_grpc", "ref".into());
        assert_eq!(call.direction, Direction::Outgoing);
        assert_eq!(call.source, Address::tel("+331"));
        assert_eq!(call.destination, Address::default());
        assert_eq!(call.hotline, "h");
        assert!(call.arbiter.is_none());
    }
}
