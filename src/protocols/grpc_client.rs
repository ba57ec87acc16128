//! The gRPC connections to network bots, shared by the SmartIVR and live_call clients.
//!
//! Calls to one bot share HTTP/2 connections, as gRPC clients do: each call is one stream,
//! and a connection carries up to `streams_per_connection` of them before another is opened;
//! it closes with its last call.
//! The HTTP/2 connection writes the frames of every stream that is ready in one system call
//! and reads them the same way, so a hundred calls to one bot cost far fewer socket
//! operations than a hundred connections (BENCHMARKS.md). Connections belong to the arbiter
//! (thread) that opened them, so a call's media never crosses threads. `streams_per_connection
//! = 1` gives every call its own connection, for bots behind a load balancer that spreads
//! connections rather than streams.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// How the switch reaches one network bot over gRPC.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BotLink {
    /// `http://host:port` of the bot.
    pub url: String,
    /// HTTP/2 pings go every third of it; a bot that leaves them unanswered this long breaks
    /// the connection, which fails its calls.
    pub bot_timeout: Duration,
    /// A bot that cannot be connected within this time fails the call.
    pub connect_timeout: Duration,
    /// Calls (streams) one connection carries before another is opened; at least 1.
    pub streams_per_connection: usize,
}

/// One HTTP/2 connection of the pool: connected once, shared by its streams.
struct Pooled {
    channel: tokio::sync::OnceCell<Result<Channel, String>>,
    streams: Cell<usize>,
    /// A connection that failed (to connect, or under a stream) takes no new call. Every
    /// connection leaves the pool with its last stream.
    broken: Cell<bool>,
}

thread_local! {
    /// This arbiter's connections, by bot.
    static POOL: RefCell<HashMap<BotLink, Vec<Rc<Pooled>>>> = RefCell::new(HashMap::new());
}

/// A call's place on a pooled connection, held while its stream lives.
pub(crate) struct Lease {
    link: BotLink,
    conn: Rc<Pooled>,
}

impl Lease {
    /// A place on a connection to `link` with room for one more stream, or on a new one.
    fn take(link: &BotLink) -> Lease {
        POOL.with(|pool| {
            let mut pool = pool.borrow_mut();
            let conns = pool.entry(link.clone()).or_default();
            let cap = link.streams_per_connection.max(1);
            let conn = match conns
                .iter()
                .find(|c| !c.broken.get() && c.streams.get() < cap)
            {
                Some(c) => c.clone(),
                None => {
                    let c = Rc::new(Pooled {
                        channel: tokio::sync::OnceCell::new(),
                        streams: Cell::new(0),
                        broken: Cell::new(false),
                    });
                    conns.push(c.clone());
                    c
                }
            };
            conn.streams.set(conn.streams.get() + 1);
            Lease {
                link: link.clone(),
                conn,
            }
        })
    }

    /// The connection, connecting it first if this is its first call (a call arriving while
    /// it connects waits for the same connection).
    async fn channel(&self, kind: &'static str) -> Result<Channel, String> {
        let link = &self.link;
        let connected = self
            .conn
            .channel
            .get_or_init(|| connect(kind, link))
            .await
            .clone();
        if connected.is_err() {
            self.conn.broken.set(true);
        }
        connected
    }

    /// Takes the connection out of service after `status`, when it says the connection
    /// itself failed rather than the call.
    fn failed(&self, status: &Status) {
        if matches!(
            status.code(),
            Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled
        ) {
            self.conn.broken.set(true);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let left = self.conn.streams.get().saturating_sub(1);
        self.conn.streams.set(left);
        // A connection lives while it carries calls: an idle one is closed rather than kept,
        // so that a call never finds a connection to a bot that died while nobody used it.
        if left == 0 {
            // `try_with`: a lease dropped while the thread exits finds no pool, and needs none.
            let _ = POOL.try_with(|pool| {
                let mut pool = pool.borrow_mut();
                if let Some(conns) = pool.get_mut(&self.link) {
                    conns.retain(|c| !Rc::ptr_eq(c, &self.conn));
                    if conns.is_empty() {
                        pool.remove(&self.link);
                    }
                }
            });
        }
    }
}

/// How many connections this arbiter holds to `link`, and how many streams they carry.
#[cfg(test)]
fn pooled(link: &BotLink) -> (usize, usize) {
    POOL.with(|pool| {
        pool.borrow().get(link).map_or((0, 0), |conns| {
            (
                conns.len(),
                conns.iter().map(|c| c.streams.get()).sum::<usize>(),
            )
        })
    })
}

/// A call's response stream, holding its place on the connection; a transport failure under
/// it takes the connection out of service for later calls.
pub(crate) struct Leased<S> {
    inner: tonic::Streaming<S>,
    lease: Lease,
}

impl<S> Stream for Leased<S> {
    type Item = Result<S, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let item = Pin::new(&mut this.inner).poll_next(cx);
        if let Poll::Ready(Some(Err(status))) = &item {
            this.lease.failed(status);
        }
        item
    }
}

/// Connects to a network bot within `connect_timeout`: the HTTP/2 connection only.
/// The call's stream is opened on it afterwards without waiting for the bot's response
/// headers, which many servers (grpcio's, for one) send only with their first message: the
/// switch writes the call's audio as soon as the request stream is open, as gateways do.
/// A failure is counted by `kind` (`live_call`, `smartivr`; `twilio_stream` counts its own) in
/// `switchboard_bot_connect_failures_total`.
async fn connect(kind: &'static str, link: &BotLink) -> Result<Channel, String> {
    let connected = connect_endpoint(&link.url, link.bot_timeout, link.connect_timeout).await;
    if connected.is_err() {
        crate::telemetry::bot_connect_failed(kind);
    }
    connected
}

async fn connect_endpoint(
    url: &str,
    bot_timeout: Duration,
    connect_timeout: Duration,
) -> Result<tonic::transport::Channel, String> {
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|e| format!("bad bot url {url}: {e}"))?
        .connect_timeout(connect_timeout)
        .http2_keep_alive_interval(bot_timeout / 3)
        .keep_alive_timeout(bot_timeout)
        .keep_alive_while_idle(true);
    tokio::time::timeout(connect_timeout, endpoint.connect())
        .await
        .map_err(|_| format!("bot at {url} did not answer within {connect_timeout:?}"))?
        .map_err(|e| format!("cannot reach bot at {url}: {e}"))
}

/// Why a bot's stream could not be opened, for the call's `hangup_detail`.
pub(crate) fn refused(status: &tonic::Status) -> String {
    format!(
        "bot refused the call: {} ({:?})",
        status.message(),
        status.code()
    )
}

/// A gRPC bot client actor, as `connect_and_open` reaches it.
pub(crate) trait GrpcBot: actix::Actor<Context = actix::Context<Self>> {
    /// Fails the call with `detail` (once) and stops.
    fn fail(&mut self, detail: String, ctx: &mut actix::Context<Self>);
    /// The connection to the bot is up: the call is answered.
    fn answered(&mut self);
}

/// Takes a place on a connection to the bot (see the module), connecting it if it is new;
/// once it is up the call is answered and `open` opens the call's stream on it, whose
/// responses become the actor's stream. Audio queued meanwhile is written as soon as the
/// request goes out. Any failure fails the call. Nothing else reaches the actor until the
/// connection is up or has failed.
pub(crate) fn connect_and_open<A, S, F, Fut>(
    kind: &'static str,
    link: &BotLink,
    open: F,
    ctx: &mut actix::Context<A>,
) where
    A: GrpcBot + actix::StreamHandler<Result<S, tonic::Status>>,
    S: 'static,
    F: FnOnce(Channel) -> Fut + 'static,
    Fut: std::future::Future<Output = Result<tonic::Response<tonic::Streaming<S>>, tonic::Status>>
        + 'static,
{
    use actix::prelude::*;
    let lease = Lease::take(link);
    let connecting = async move {
        let channel = lease.channel(kind).await;
        (lease, channel)
    };
    ctx.wait(
        actix::fut::wrap_future::<_, A>(connecting).map(|(lease, result), act, ctx| match result {
            Ok(channel) => {
                act.answered();
                ctx.spawn(actix::fut::wrap_future::<_, A>(open(channel)).map(
                    move |opened, act, ctx| match opened {
                        Ok(response) => {
                            ctx.add_stream(Leased {
                                inner: response.into_inner(),
                                lease,
                            });
                        }
                        Err(status) => {
                            lease.failed(&status);
                            act.fail(refused(&status), ctx)
                        }
                    },
                ));
            }
            Err(detail) => act.fail(detail, ctx),
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(cap: usize) -> BotLink {
        BotLink {
            url: format!("http://127.0.0.1:9/{cap}"),
            bot_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(1),
            streams_per_connection: cap,
        }
    }

    #[test]
    fn calls_share_a_connection_up_to_its_stream_limit() {
        let l = link(2);
        let a = Lease::take(&l);
        let b = Lease::take(&l);
        assert!(Rc::ptr_eq(&a.conn, &b.conn));
        let c = Lease::take(&l);
        assert!(!Rc::ptr_eq(&a.conn, &c.conn));
        assert_eq!(pooled(&l), (2, 3));
        drop(b);
        // The freed place is taken again before a third connection is opened.
        let d = Lease::take(&l);
        assert!(Rc::ptr_eq(&a.conn, &d.conn));
        drop(c);
        // A connection closes with its last call.
        assert_eq!(pooled(&l), (1, 2));
        drop((a, d));
        assert_eq!(pooled(&l), (0, 0));
    }

    #[test]
    fn a_failed_connection_takes_no_new_call_and_leaves_with_its_last() {
        let l = link(10);
        let a = Lease::take(&l);
        let b = Lease::take(&l);
        // A call's own refusal leaves the connection in service...
        a.failed(&Status::permission_denied("no"));
        assert!(Rc::ptr_eq(&Lease::take(&l).conn, &a.conn));
        // ...a transport failure does not.
        a.failed(&Status::unavailable("connection reset"));
        let c = Lease::take(&l);
        assert!(!Rc::ptr_eq(&c.conn, &a.conn));
        assert_eq!(pooled(&l), (2, 3));
        drop(a);
        assert_eq!(pooled(&l), (2, 2));
        drop(b);
        assert_eq!(pooled(&l), (1, 1));
        drop(c);
    }

    #[test]
    fn one_stream_per_connection_gives_each_call_its_own() {
        let l = link(1);
        let a = Lease::take(&l);
        let b = Lease::take(&l);
        assert!(!Rc::ptr_eq(&a.conn, &b.conn));
    }
}
