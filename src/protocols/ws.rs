//! The WebSocket transport every WebSocket caller protocol uses, so that no peer can make the
//! switch read or queue without bound.
//!
//! - **Reading** (`Frames`): one frame at a time. Bytes are taken from the socket only when
//!   the frames already read are handled and the next one is incomplete, so at most one frame
//!   (`max_frame` bytes) plus one read chunk waits in memory; a peer that sends faster than its
//!   session handles frames is held back by TCP. Fragmented messages are assembled up to
//!   `max_frame` bytes in all (past it: close 1009). Reading also pauses while more than
//!   `pause_reading_at` bytes wait unsent toward the peer: a peer that does not read what it
//!   is sent is not read either, so its pings, keys and frames cannot pile up replies.
//! - **Writing** (`Outbound`): actix-web-actors encodes frames only while something polls its
//!   output, and the HTTP server stops polling a body whose peer stopped reading. A pump task
//!   drains the session's output into a queue that the response body reads, counting the bytes
//!   between the two, so the session keeps running, can see a slow peer (`unsent`), drop
//!   audio or control replies for it, and hang it up when nothing moves (`WriteWatch`).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_http::ws::{Codec, Item};
use actix_web::error::PayloadError;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws::{self, Message, ProtocolError, WebsocketContext};
use bytes::{Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use futures_util::{Stream, StreamExt};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::codec::Decoder;

/// How often a session checks that its peer takes what it is sent: a quarter of the write
/// timeout, within these bounds (a timer per socket at 10 Hz was a measurable share of the
/// CPU at 2,000 calls).
const WRITE_CHECK_MIN: Duration = Duration::from_millis(20);
const WRITE_CHECK_MAX: Duration = Duration::from_secs(1);

/// The hard bound on bytes queued toward one peer, as a multiple of `pause_reading_at`.
const HARD_CAP_FACTOR: usize = 16;

/// The longest reason a close frame carries (125 bytes of payload less the 2-byte code).
const MAX_CLOSE_REASON: usize = 123;

/// Bytes between a session's encoder and the HTTP response body, and the reader it holds back.
#[derive(Debug)]
pub struct Outbound {
    /// Encoded, not yet taken by the HTTP server.
    unsent: AtomicUsize,
    /// Taken by the HTTP server so far.
    written: AtomicU64,
    /// Reading stops while more than this waits unsent.
    pause_reading_at: usize,
    /// The paused reader, woken when the peer takes enough.
    reader: AtomicWaker,
    /// The bytes unsent when the pump dropped the peer for falling too far behind (0: never).
    cut_off: AtomicUsize,
}

impl Outbound {
    fn new(pause_reading_at: usize) -> Self {
        Outbound {
            unsent: AtomicUsize::new(0),
            written: AtomicU64::new(0),
            pause_reading_at,
            reader: AtomicWaker::new(),
            cut_off: AtomicUsize::new(0),
        }
    }

    /// The bytes that waited unsent when the peer was dropped for falling too far behind.
    pub fn cut_off(&self) -> Option<usize> {
        Some(self.cut_off.load(Ordering::Relaxed)).filter(|&n| n > 0)
    }

    /// Bytes encoded and not yet taken by the peer's connection.
    pub fn unsent(&self) -> usize {
        self.unsent.load(Ordering::Relaxed)
    }

    /// Bytes taken by the peer's connection so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Whether the peer is behind: control replies (pongs, error messages) are skipped then.
    pub fn backed_up(&self) -> bool {
        self.unsent() > self.pause_reading_at
    }

    fn queued(&self, n: usize) {
        self.unsent.fetch_add(n, Ordering::Relaxed);
    }

    fn taken(&self, n: usize) {
        let before = self.unsent.fetch_sub(n, Ordering::Relaxed);
        self.written.fetch_add(n as u64, Ordering::Relaxed);
        if before > self.pause_reading_at && before - n <= self.pause_reading_at {
            self.reader.wake();
        }
    }
}

/// Limits of one WebSocket.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest frame, and the largest message assembled from fragments, in bytes.
    pub max_frame: usize,
    /// Reading pauses while more than this many bytes wait unsent toward the peer.
    pub pause_reading_at: usize,
}

/// The peer's frames, read one at a time with back-pressure (see the module doc).
pub struct Frames {
    payload: web::Payload,
    codec: Codec,
    buf: BytesMut,
    outbound: Arc<Outbound>,
    max_frame: usize,
    /// A fragmented message being assembled: whether it is text, and its bytes so far.
    partial: Option<(bool, BytesMut)>,
    eof: bool,
    failed: bool,
}

impl Frames {
    fn new(payload: web::Payload, limits: Limits, outbound: Arc<Outbound>) -> Self {
        Frames {
            payload,
            codec: Codec::new().max_size(limits.max_frame),
            buf: BytesMut::new(),
            outbound,
            max_frame: limits.max_frame,
            partial: None,
            eof: false,
            failed: false,
        }
    }

    fn text(bytes: Bytes) -> Result<Message, ProtocolError> {
        bytestring::ByteString::try_from(bytes)
            .map(Message::Text)
            .map_err(|e| {
                ProtocolError::Io(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("text frame is not UTF-8: {e}"),
                ))
            })
    }

    fn protocol(message: &str) -> ProtocolError {
        ProtocolError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            message.to_owned(),
        ))
    }

    /// Adds a fragment to the message being assembled; the whole message once it is complete.
    fn fragment(&mut self, item: Item) -> Option<Result<Message, ProtocolError>> {
        let (start, last, bytes) = match item {
            Item::FirstText(b) => (Some(true), false, b),
            Item::FirstBinary(b) => (Some(false), false, b),
            Item::Continue(b) => (None, false, b),
            Item::Last(b) => (None, true, b),
        };
        match (start, &mut self.partial) {
            (Some(_), Some(_)) => {
                return Some(Err(Self::protocol(
                    "a new fragmented message began before the last one ended",
                )))
            }
            (None, None) => {
                return Some(Err(Self::protocol(
                    "a continuation frame came with no message to continue",
                )))
            }
            (Some(is_text), None) => self.partial = Some((is_text, BytesMut::new())),
            (None, Some(_)) => {}
        }
        let (is_text, assembled) = self.partial.as_mut()?;
        if assembled.len() + bytes.len() > self.max_frame {
            return Some(Err(ProtocolError::Overflow));
        }
        assembled.extend_from_slice(&bytes);
        if !last {
            return None;
        }
        let is_text = *is_text;
        let whole = std::mem::take(assembled).freeze();
        self.partial = None;
        Some(if is_text {
            Self::text(whole)
        } else {
            Ok(Message::Binary(whole))
        })
    }

    /// The next message in the buffer, if a whole one is there.
    fn decode(&mut self) -> Option<Result<Message, ProtocolError>> {
        loop {
            let frame = match self.codec.decode(&mut self.buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            };
            let message = match frame {
                ws::Frame::Text(b) if self.partial.is_none() => Self::text(b),
                ws::Frame::Binary(b) if self.partial.is_none() => Ok(Message::Binary(b)),
                ws::Frame::Text(_) | ws::Frame::Binary(_) => Err(Self::protocol(
                    "a new message began inside a fragmented one",
                )),
                ws::Frame::Continuation(item) => match self.fragment(item) {
                    Some(m) => m,
                    None => continue,
                },
                ws::Frame::Ping(b) => Ok(Message::Ping(b)),
                ws::Frame::Pong(b) => Ok(Message::Pong(b)),
                ws::Frame::Close(reason) => Ok(Message::Close(reason)),
            };
            return Some(message);
        }
    }
}

impl Stream for Frames {
    type Item = Result<Message, ProtocolError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        loop {
            // A peer that does not take what it is sent is not read either.
            if this.outbound.backed_up() {
                this.outbound.reader.register(cx.waker());
                if this.outbound.backed_up() {
                    return Poll::Pending;
                }
            }
            if let Some(item) = this.decode() {
                // After a broken frame nothing more is read: the session closes the socket.
                this.failed = item.is_err();
                return Poll::Ready(Some(item));
            }
            if this.eof {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.payload).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => this.buf.extend_from_slice(&chunk),
                Poll::Ready(Some(Err(e))) => {
                    this.failed = true;
                    return Poll::Ready(Some(Err(ProtocolError::Io(std::io::Error::other(
                        e.to_string(),
                    )))));
                }
                Poll::Ready(None) => this.eof = true,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Upgrades `req` to a WebSocket run by `actor`, reading and writing through this module.
/// `make` receives the socket's `Outbound` and builds the session.
pub fn start<A, F>(
    req: &HttpRequest,
    payload: web::Payload,
    limits: Limits,
    make: F,
) -> Result<HttpResponse, ws::HandshakeError>
where
    A: Actor<Context = WebsocketContext<A>> + StreamHandler<Result<Message, ProtocolError>>,
    F: FnOnce(Arc<Outbound>) -> A + 'static,
{
    let mut response = ws::handshake(req)?;
    let outbound = Arc::new(Outbound::new(limits.pause_reading_at));
    let frames = Frames::new(payload, limits, outbound.clone());
    let for_session = outbound.clone();
    // The context's own reader gets nothing: frames come from `Frames`.
    let mut encoded = Box::pin(WebsocketContext::with_factory(
        futures_util::stream::pending::<Result<Bytes, PayloadError>>(),
        move |ctx: &mut WebsocketContext<A>| {
            ctx.add_stream(frames);
            make(for_session)
        },
    ));
    // Unbounded as a channel, bounded in bytes: see `hard_cap` below.
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let counted = outbound.clone();
    // The pump keeps the session running whatever the peer reads. The queue is bounded by the
    // session, which looks at `unsent` before it writes audio or replies, and by `Frames`,
    // which stops reading while the peer is behind.
    let hard_cap = limits.pause_reading_at.saturating_mul(HARD_CAP_FACTOR);
    actix_web::rt::spawn(async move {
        while let Some(item) = encoded.next().await {
            if let Ok(bytes) = &item {
                counted.queued(bytes.len());
            }
            // The session's own checks keep the queue near `pause_reading_at`; past this hard
            // bound the peer is dropped rather than queued for (the session then stops, and
            // its call learns the leg failed by `cut_off`).
            let unsent = counted.unsent();
            if unsent > hard_cap {
                tracing::warn!(unsent, "WebSocket peer dropped: too much unsent");
                counted.cut_off.store(unsent, Ordering::Relaxed);
                break;
            }
            if tx.send(item).is_err() {
                break;
            }
        }
    });
    let body = UnboundedReceiverStream::new(rx).inspect(move |item| {
        if let Ok(bytes) = item {
            outbound.taken(bytes.len());
        }
    });
    Ok(response.streaming(body))
}

/// Sees a peer that takes nothing for a while although bytes wait for it.
#[derive(Debug)]
pub struct WriteWatch {
    timeout: Duration,
    last_written: u64,
    last_progress: Instant,
}

impl WriteWatch {
    pub fn new(timeout: Duration) -> Self {
        WriteWatch {
            timeout,
            last_written: 0,
            last_progress: Instant::now(),
        }
    }

    /// How often to call `stalled`.
    pub fn period(&self) -> Duration {
        (self.timeout / 4).clamp(WRITE_CHECK_MIN, WRITE_CHECK_MAX)
    }

    /// How long the peer has taken nothing while bytes waited, once that reaches the timeout.
    pub fn stalled(&mut self, outbound: &Outbound) -> Option<Duration> {
        let written = outbound.written();
        if outbound.unsent() == 0 || written != self.last_written {
            self.last_written = written;
            self.last_progress = Instant::now();
            return None;
        }
        let stalled = self.last_progress.elapsed();
        (stalled >= self.timeout).then_some(stalled)
    }
}

/// A close frame with `code` and `reason`, cut to what a close frame carries.
pub fn close_reason(code: ws::CloseCode, reason: &str) -> ws::CloseReason {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    ws::CloseReason {
        code,
        description: (end > 0).then(|| reason[..end].to_owned()),
    }
}

/// The close code for a broken frame: 1009 for one too big, 1007 for bad text, else 1002.
pub fn error_close_code(e: &ProtocolError) -> ws::CloseCode {
    match e {
        ProtocolError::Overflow => ws::CloseCode::Size,
        ProtocolError::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
            if io.to_string().contains("UTF-8") {
                ws::CloseCode::Invalid
            } else {
                ws::CloseCode::Protocol
            }
        }
        _ => ws::CloseCode::Protocol,
    }
}

/// Whether the error means the connection itself broke (not a bad frame): the peer is gone.
pub fn connection_lost(e: &ProtocolError) -> bool {
    matches!(e, ProtocolError::Io(io) if io.kind() != std::io::ErrorKind::InvalidData)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_fit_a_close_frame() {
        let long = "é".repeat(100);
        let r = close_reason(ws::CloseCode::Policy, &long);
        let d = r.description.unwrap();
        assert!(d.len() <= MAX_CLOSE_REASON && long.starts_with(&d));
        assert!(close_reason(ws::CloseCode::Normal, "")
            .description
            .is_none());
    }

    /// Counts its wakes.
    struct Wakes(AtomicUsize);

    impl std::task::Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn outbound_wakes_the_reader_when_the_peer_catches_up() {
        let o = Outbound::new(100);
        let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
        let waker = std::task::Waker::from(wakes.clone());
        let woken = || wakes.0.load(Ordering::Relaxed);
        o.queued(150);
        assert!(o.backed_up());
        o.reader.register(&waker);
        // Still behind: the reader sleeps on.
        o.taken(30);
        assert!(o.backed_up());
        assert_eq!(woken(), 0);
        // Back within the bound: the reader is woken.
        o.taken(30);
        assert!(!o.backed_up());
        assert_eq!(woken(), 1);
        assert_eq!(o.written(), 60);
        assert_eq!(o.unsent(), 90);
        // Behind again, then caught up in one take: woken again.
        o.queued(200);
        o.reader.register(&waker);
        o.taken(290);
        assert_eq!(woken(), 2);
        assert_eq!(o.unsent(), 0);
    }
}
