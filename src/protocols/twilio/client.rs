//! A network bot speaking Twilio Media Streams over a WebSocket: the switch plays Twilio. It
//! sends `connected` and `start` (exactly these two first), then the caller's audio as 20 ms
//! `media` messages and the caller's keys as `dtmf`, and on hangup `stop` before closing the
//! socket. From the bot it takes `media` (any size, played at real time), `mark` (echoed once
//! the audio before it has played to the caller) and `clear` (barge-in).
//!
//! Bot audio waits in this actor and is handed to the call at most `lead` ahead of real time,
//! so a bot that sends seconds of audio at once is heard whole (the call's own queue holds
//! only `[media] max_buffered_ms`); what waits here is bounded too (`MAX_BACKLOG_MS`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::call::messages::{BotCommand, BotEvent};
use crate::call::state::{CallRecord, HangupReason};
use crate::media::{duration_ms, samples_for_ms, FRAME_MS};
use crate::protocols::twilio::convert::{self, Inbound, Start, Writer, SAMPLE_RATE};

/// The largest message a bot may send: a few minutes of base64 mu-law at once.
pub const MAX_BOT_MESSAGE: usize = 4 * 1024 * 1024;
/// Messages queued toward the bot: about 1.3 s of 20 ms audio. Audio past it is dropped.
const OUTBOUND_QUEUE: usize = 64;
/// Bot audio waiting here for its turn, at most; more is dropped (and counted).
const MAX_BACKLOG_MS: u32 = 120_000;
/// Bot audio is handed to the call in pieces of at most this long.
const FEED_CHUNK_MS: u32 = 200;
/// Marks waiting for their audio, at most; past it a mark is echoed at once.
const MAX_MARKS: usize = 1024;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How to reach the bot.
#[derive(Debug, Clone)]
pub struct TwilioStreamTarget {
    pub url: String,
    pub custom_parameters: BTreeMap<String, String>,
    pub headers: BTreeMap<String, String>,
    pub bot_timeout: Duration,
    pub connect_timeout: Duration,
    /// How far ahead of real time bot audio is handed to the call.
    pub lead: Duration,
}

/// Something the bot sent that waits for its turn.
enum Pending {
    Audio(Vec<i16>),
    Mark(String),
}

/// The bot actor for one call.
pub struct TwilioStreamBot {
    target: TwilioStreamTarget,
    call: Recipient<BotCommand>,
    tx: Option<mpsc::Sender<Message>>,
    writer: Writer,
    start: Start,
    /// Caller audio not yet a whole 20 ms frame.
    partial: Vec<i16>,
    frame_len: usize,
    backlog: VecDeque<Pending>,
    backlog_samples: usize,
    /// When the bot audio handed to the call so far has played.
    fed_until: Instant,
    feeder: Option<SpawnHandle>,
    marks: HashMap<u64, String>,
    next_mark: u64,
    last_heard: Instant,
    started: bool,
    /// The bot closed its socket: the call ends once its audio has been handed over.
    closing: bool,
    done: bool,
    dropped_to_bot: u64,
    dropped_from_bot: u64,
    skipped: u64,
    call_label: String,
}

impl TwilioStreamBot {
    pub fn new(target: TwilioStreamTarget, call: Recipient<BotCommand>) -> Self {
        TwilioStreamBot {
            target,
            call,
            tx: None,
            writer: Writer::new(""),
            start: Start::default(),
            partial: Vec::with_capacity(320),
            frame_len: samples_for_ms(SAMPLE_RATE, FRAME_MS),
            backlog: VecDeque::new(),
            backlog_samples: 0,
            fed_until: Instant::now(),
            feeder: None,
            marks: HashMap::new(),
            next_mark: 0,
            last_heard: Instant::now(),
            started: false,
            closing: false,
            done: false,
            dropped_to_bot: 0,
            dropped_from_bot: 0,
            skipped: 0,
            call_label: String::new(),
        }
    }

    fn fail(&mut self, detail: String, ctx: &mut Context<Self>) {
        let (call, label) = (&self.call, &self.call_label);
        if crate::protocols::fail_call_once(&mut self.done, call, "twilio_stream", label, detail) {
            self.tx = None;
            ctx.stop();
        }
    }

    /// Queues a message toward the bot; `false` when the queue is full.
    fn send(&mut self, message: String) -> bool {
        match &self.tx {
            Some(tx) => tx.try_send(Message::Text(message)).is_ok(),
            None => false,
        }
    }

    fn start_message(&self, record: &CallRecord) -> Start {
        let mut custom = Map::new();
        for (k, v) in &self.target.custom_parameters {
            custom.insert(k.clone(), Value::String(v.clone()));
        }
        let call = [
            ("from", record.source.target.as_str()),
            ("to", record.destination.target.as_str()),
            ("workspace", record.workspace.as_str()),
            ("hotline", record.hotline.as_str()),
            ("ingress", record.ingress.as_str()),
        ];
        for (k, v) in call {
            custom.insert(k.into(), Value::String(v.to_owned()));
        }
        Start {
            stream_sid: format!("MZ{}", uuid::Uuid::new_v4().simple()),
            call_sid: record.id.to_string(),
            account_sid: format!("AC{}", uuid::Uuid::nil().simple()),
            custom,
        }
    }

    fn connect(&mut self, record: &CallRecord, ctx: &mut Context<Self>) {
        self.start = self.start_message(record);
        self.writer = Writer::new(&self.start.stream_sid);
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        self.tx = Some(tx);
        // Bots read exactly these two before anything else.
        let connected = self.writer.connected();
        let start = self.writer.start(&self.start);
        self.send(connected);
        self.send(start);
        let target = self.target.clone();
        ctx.wait(async move { open(&target).await }.into_actor(self).map(
            move |result, act, ctx| match result {
                Ok(socket) => {
                    act.last_heard = Instant::now();
                    act.call.do_send(BotCommand::Answer);
                    let (sink, stream) = socket.split();
                    ctx.add_stream(stream);
                    // The writer outlives the actor, so `stop` and the close still go out
                    // after the call has ended; a write failure comes back here.
                    let (failed_tx, failed_rx) = oneshot::channel();
                    let timeout = act.target.bot_timeout;
                    actix::spawn(async move {
                        if let Err(detail) = write_all(sink, rx, timeout).await {
                            let _ = failed_tx.send(detail);
                        }
                    });
                    ctx.spawn(failed_rx.into_actor(act).map(|failed, act, ctx| {
                        if let Ok(detail) = failed {
                            act.fail(detail, ctx);
                        }
                    }));
                    let period = (act.target.bot_timeout / 3).max(Duration::from_millis(20));
                    ctx.run_interval(period, |act, ctx| act.check_alive(ctx));
                }
                Err(detail) => {
                    crate::telemetry::bot_connect_failed("twilio_stream");
                    act.fail(detail, ctx)
                }
            },
        ));
    }

    /// Pings the bot; one that has sent nothing (not even a pong) for `bot_timeout` failed.
    fn check_alive(&mut self, ctx: &mut Context<Self>) {
        let silent = self.last_heard.elapsed();
        if silent >= self.target.bot_timeout {
            return self.fail(
                format!(
                    "bot sent nothing, not even a pong, for {} ms",
                    silent.as_millis()
                ),
                ctx,
            );
        }
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(Message::Ping(Vec::new()));
        }
    }

    fn on_text(&mut self, text: &str, ctx: &mut Context<Self>) {
        let message = match convert::parse(text, MAX_BOT_MESSAGE) {
            Ok(m) => m,
            Err(e) => return self.fail(format!("malformed message from the bot: {e}"), ctx),
        };
        match message {
            Inbound::Media(bytes) => {
                if bytes.is_empty() {
                    return;
                }
                if self.backlog_samples + bytes.len() > samples_for_ms(SAMPLE_RATE, MAX_BACKLOG_MS)
                {
                    self.dropped_from_bot += 1;
                    if self.dropped_from_bot % 100 == 1 {
                        tracing::warn!(call = %self.call_label, dropped = self.dropped_from_bot, "bot audio dropped: the bot is over {MAX_BACKLOG_MS} ms ahead");
                    }
                    return;
                }
                let chunk = samples_for_ms(SAMPLE_RATE, FEED_CHUNK_MS);
                for piece in bytes.chunks(chunk) {
                    let mut samples = Vec::with_capacity(piece.len());
                    convert::decode(piece, &mut samples);
                    self.backlog_samples += samples.len();
                    self.backlog.push_back(Pending::Audio(samples));
                }
                self.feed(ctx);
            }
            Inbound::Mark(name) => {
                self.backlog.push_back(Pending::Mark(name));
                self.feed(ctx);
            }
            Inbound::Clear => {
                // Barge-in: what waits here and at the caller is dropped; marks still waiting
                // are echoed, as Twilio does.
                self.backlog_samples = 0;
                let waiting: Vec<String> = self
                    .backlog
                    .drain(..)
                    .filter_map(|p| match p {
                        Pending::Mark(name) => Some(name),
                        Pending::Audio(_) => None,
                    })
                    .collect();
                self.fed_until = Instant::now();
                self.call.do_send(BotCommand::StopAudio);
                for name in waiting {
                    let mark = self.writer.mark(&name);
                    self.send(mark);
                }
            }
            // What the switch sends, not what a bot does: skipped.
            Inbound::Connected | Inbound::Start(_) | Inbound::Dtmf(_) | Inbound::Stop => {
                self.skip("a caller's message")
            }
            Inbound::Unknown(event) => self.skip(&event),
        }
    }

    fn skip(&mut self, what: &str) {
        self.skipped += 1;
        if self.skipped <= 5 {
            tracing::warn!(call = %self.call_label, event = %what, "bot message skipped");
        }
    }

    /// Hands waiting bot audio (and marks, in order) to the call while it is less than `lead`
    /// ahead of real time; a timer comes back for the rest.
    fn feed(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.feeder.take() {
            ctx.cancel_future(h);
        }
        let now = Instant::now();
        if self.fed_until < now {
            self.fed_until = now;
        }
        let lead = self.target.lead;
        while let Some(front) = self.backlog.front() {
            match front {
                Pending::Mark(_) => {
                    let Some(Pending::Mark(name)) = self.backlog.pop_front() else {
                        break;
                    };
                    self.mark(name);
                }
                Pending::Audio(_) => {
                    if self.fed_until >= now + lead {
                        break;
                    }
                    let Some(Pending::Audio(samples)) = self.backlog.pop_front() else {
                        break;
                    };
                    self.backlog_samples -= samples.len();
                    self.fed_until +=
                        Duration::from_millis(duration_ms(samples.len(), SAMPLE_RATE));
                    if self
                        .call
                        .try_send(BotCommand::Stream {
                            samples,
                            rate: SAMPLE_RATE,
                        })
                        .is_err()
                    {
                        self.dropped_from_bot += 1;
                    }
                }
            }
        }
        if !self.backlog.is_empty() {
            let wait = self
                .fed_until
                .checked_sub(lead)
                .map_or(Duration::ZERO, |t| t.saturating_duration_since(now));
            self.feeder = Some(ctx.run_later(wait, |act, ctx| {
                act.feeder = None;
                act.feed(ctx);
            }));
        } else if self.closing {
            self.finish_closing(ctx);
        }
    }

    /// A mark from the bot: the call reports it once the audio before it has played.
    fn mark(&mut self, name: String) {
        if self.marks.len() >= MAX_MARKS {
            let mark = self.writer.mark(&name);
            self.send(mark);
            return;
        }
        self.next_mark += 1;
        self.marks.insert(self.next_mark, name);
        self.call.do_send(BotCommand::Mark { id: self.next_mark });
    }

    /// The bot closed its socket and all its audio is with the call: the call ends.
    fn finish_closing(&mut self, ctx: &mut Context<Self>) {
        if self.done {
            return;
        }
        self.done = true;
        self.call.do_send(BotCommand::StreamEnd);
        self.call.do_send(BotCommand::Hangup {
            reason: HangupReason::Normal,
        });
        self.tx = None;
        ctx.stop();
    }

    fn caller_audio(&mut self, samples: &[i16]) {
        self.partial.extend_from_slice(samples);
        let mut sent = 0;
        while self.partial.len() - sent >= self.frame_len {
            let media = self
                .writer
                .inbound_media(&self.partial[sent..sent + self.frame_len]);
            sent += self.frame_len;
            if !self.send(media) {
                self.dropped_to_bot += 1;
                if self.dropped_to_bot % 500 == 1 {
                    tracing::warn!(call = %self.call_label, dropped = self.dropped_to_bot, "caller audio dropped: the bot reads too slowly");
                }
            }
        }
        self.partial.drain(..sent);
    }
}

/// Connects to the bot within `connect_timeout`, with the configured headers.
async fn open(target: &TwilioStreamTarget) -> Result<Socket, String> {
    let url = &target.url;
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("bad bot url {url}: {e}"))?;
    for (name, value) in &target.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| format!("bad header {name}: {e}"))?;
        let value = HeaderValue::from_str(value).map_err(|e| format!("bad header value: {e}"))?;
        request.headers_mut().insert(name, value);
    }
    let config = WebSocketConfig {
        max_message_size: Some(MAX_BOT_MESSAGE),
        max_frame_size: Some(MAX_BOT_MESSAGE),
        ..WebSocketConfig::default()
    };
    let connector = url
        .starts_with("wss://")
        .then(|| tokio_tungstenite::Connector::Rustls(tls_config()));
    let connecting =
        tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, connector);
    match tokio::time::timeout(target.connect_timeout, connecting).await {
        Err(_) => Err(format!(
            "bot at {url} did not answer within {:?}",
            target.connect_timeout
        )),
        Ok(Err(tungstenite::Error::Http(response))) => Err(format!(
            "bot refused the call: HTTP {} from {url}",
            response.status()
        )),
        Ok(Err(e)) => Err(format!("cannot reach bot at {url}: {e}")),
        Ok(Ok((socket, _))) => Ok(socket),
    }
}

/// The TLS client settings for `wss://` bots: the web's root certificates.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| b.with_root_certificates(roots).with_no_client_auth())
                .unwrap_or_else(|_| {
                    rustls::ClientConfig::builder()
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth()
                });
            Arc::new(config)
        })
        .clone()
}

/// Writes queued messages to the bot, each within `timeout`, flushing when the queue is empty;
/// closes the socket once the queue is dropped.
async fn write_all(
    mut sink: SplitSink<Socket, Message>,
    mut rx: mpsc::Receiver<Message>,
    timeout: Duration,
) -> Result<(), String> {
    let stalled = || {
        format!(
            "bot read nothing for {} ms, so the switch stopped writing to it",
            timeout.as_millis()
        )
    };
    while let Some(message) = rx.recv().await {
        let mut next = Some(message);
        while let Some(message) = next.take() {
            tokio::time::timeout(timeout, sink.feed(message))
                .await
                .map_err(|_| stalled())?
                .map_err(|e| format!("bot socket failed: {e}"))?;
            next = rx.try_recv().ok();
        }
        tokio::time::timeout(timeout, sink.flush())
            .await
            .map_err(|_| stalled())?
            .map_err(|e| format!("bot socket failed: {e}"))?;
    }
    let _ = tokio::time::timeout(timeout, sink.close()).await;
    Ok(())
}

impl Actor for TwilioStreamBot {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(crate::call::MAILBOX_CAPACITY);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        if self.dropped_to_bot > 0 || self.dropped_from_bot > 0 {
            tracing::info!(call = %self.call_label, to_bot = self.dropped_to_bot, from_bot = self.dropped_from_bot, "twilio_stream audio dropped");
        }
    }
}

impl StreamHandler<Result<Message, tungstenite::Error>> for TwilioStreamBot {
    fn handle(&mut self, item: Result<Message, tungstenite::Error>, ctx: &mut Context<Self>) {
        self.last_heard = Instant::now();
        match item {
            Ok(Message::Text(text)) => self.on_text(&text, ctx),
            Ok(Message::Binary(_)) => self.fail(
                "bot sent a binary frame; Twilio messages are JSON text".into(),
                ctx,
            ),
            Ok(Message::Ping(_)) | Ok(Message::Pong(_)) | Ok(Message::Frame(_)) => {}
            Ok(Message::Close(_)) => self.finished(ctx),
            Err(tungstenite::Error::Capacity(e)) => {
                self.fail(format!("bot message too large: {e}"), ctx)
            }
            Err(tungstenite::Error::ConnectionClosed) => self.finished(ctx),
            Err(e) => self.fail(format!("bot socket failed: {e}"), ctx),
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        if self.done || self.closing {
            return;
        }
        // The bot is done with the caller: the call ends once its audio has played.
        tracing::debug!(call = %self.call_label, "twilio_stream bot closed its socket");
        self.closing = true;
        self.feed(ctx);
    }
}

impl Handler<BotEvent> for TwilioStreamBot {
    type Result = ();

    fn handle(&mut self, msg: BotEvent, ctx: &mut Context<Self>) {
        match msg {
            BotEvent::Start { call, .. } => {
                if !self.started {
                    self.started = true;
                    self.call_label = call.id.to_string();
                    self.connect(&call, ctx);
                }
            }
            BotEvent::Audio(samples) => self.caller_audio(&samples),
            BotEvent::Dtmf(key) => {
                if matches!(key, '0'..='9' | '*' | '#') {
                    let dtmf = self.writer.dtmf(key);
                    self.send(dtmf);
                }
            }
            BotEvent::PromptDone { prompt, .. } => {
                if let Some(name) = self.marks.remove(&prompt) {
                    let mark = self.writer.mark(&name);
                    self.send(mark);
                }
            }
            // Network bots never put their caller in a room; caller audio comes at their own
            // rate (`Rate` goes to other bots).
            BotEvent::RoomLeft { .. } | BotEvent::Rate(_) => {}
            BotEvent::Ended => {
                let stop = self
                    .writer
                    .stop(&self.start.account_sid, &self.start.call_sid);
                self.send(stop);
                // Dropping the queue lets the writer close the socket after `stop`.
                self.tx = None;
                self.done = true;
                ctx.stop();
            }
        }
    }
}
