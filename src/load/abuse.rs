//! `switchboard load --abuse`: hostile peers, one flood at a time, each from one client, and
//! what each costs the switch: its resident memory before, at the peak and after settling, the
//! latency of a REST request repeated on its own connection during the flood (and while the
//! switch settles after it), and whether the switch still serves afterwards. Loopback only,
//! like the rest of the load tool.
//!
//! Every flood client drops what it reads and holds at most a few frames of its own, so the
//! tool does not grow with the flood; at the end of a phase its connections are closed (a
//! close frame when the peer takes it within a second, then the socket is dropped).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout_at;
use tokio_stream::wrappers::ReceiverStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tonic::transport::Endpoint;

use super::{proc_stats, LoadError};
use crate::media::{pcm, samples_for_ms};
use crate::pb::smartivr::smart_ivr_phonegateway_client::SmartIvrPhonegatewayClient;
use crate::pb::smartivr::{Config, SmartIvrRequest};

/// Frames queued before each flush: a flood writes in batches, as a fast peer does.
const BATCH: usize = 64;
/// RSS is sampled this often during a flood.
const RSS_EVERY: Duration = Duration::from_millis(100);
/// The REST probe asks this often.
const PROBE_EVERY: Duration = Duration::from_millis(50);
/// A REST request slower than this counts as failed (and as this slow).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a flood client may take to close once its phase is over.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// How long the flood's tasks may take to finish before they are aborted.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// The slow-body clients send one byte this often.
const TRICKLE_EVERY: Duration = Duration::from_secs(2);
/// Payload of each flooded Ping: the largest a control frame may carry.
const PING_PAYLOAD: usize = 125;

/// One hostile peer's flood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Flood {
    /// Live-call WebSocket: `play_audio` frames with empty audio as fast as possible, while a
    /// reader drains what comes back.
    WsText,
    /// Ringover stream: metadata, then `{"dtmf":"5"}` text frames as fast as possible, never
    /// reading.
    RingoverDtmf,
    /// Ringover stream: metadata, then Ping frames as fast as possible, never reading the
    /// Pongs.
    RingoverPing,
    /// SmartIVR `CallToBot`: config, then messages whose `key_press` holds a very long string
    /// of keys, as fast as the stream takes them.
    SmartivrKeys,
    /// HTTP: many connections, each a POST announcing a large body and sending one byte of it
    /// every two seconds.
    SlowBody,
    /// Live-call WebSocket: 20 ms audio frames as fast as possible, never reading the echo.
    WsUnread,
}

impl Flood {
    /// Every flood, in the order a run plays them.
    pub const ALL: [Flood; 6] = [
        Flood::WsText,
        Flood::RingoverDtmf,
        Flood::RingoverPing,
        Flood::SmartivrKeys,
        Flood::SlowBody,
        Flood::WsUnread,
    ];

    /// The name the command line and the report use.
    pub fn name(self) -> &'static str {
        match self {
            Flood::WsText => "ws-text",
            Flood::RingoverDtmf => "ringover-dtmf",
            Flood::RingoverPing => "ringover-ping",
            Flood::SmartivrKeys => "smartivr-keys",
            Flood::SlowBody => "slow-body",
            Flood::WsUnread => "ws-unread",
        }
    }

    /// What the flood counts as one unit sent.
    fn unit(self) -> &'static str {
        match self {
            Flood::WsText | Flood::RingoverDtmf | Flood::RingoverPing | Flood::WsUnread => "frames",
            Flood::SmartivrKeys => "messages",
            Flood::SlowBody => "connections",
        }
    }
}

impl fmt::Display for Flood {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Options of an abuse run.
#[derive(Debug, Clone)]
pub struct AbuseOptions {
    /// The switch's HTTP listener (REST and WebSockets).
    pub http: SocketAddr,
    /// The switch's gRPC listener (SmartIVR).
    pub grpc: SocketAddr,
    /// The live-call WebSocket token.
    pub token: String,
    /// `?token=` for `/ringover/stream`, when the switch asks for one.
    pub ringover_token: Option<String>,
    /// Sent as `Authorization: Bearer KEY` on REST requests, when the switch asks for one.
    pub api_key: Option<String>,
    /// The switch's process id, for memory figures.
    pub pid: Option<u32>,
    /// The floods to play, in this order.
    pub floods: Vec<Flood>,
    /// How long each flood lasts.
    pub phase: Duration,
    /// After a flood, the longest wait for the switch to settle (no live call, RSS steady).
    pub settle: Duration,
    /// Connections of the slow-body flood.
    pub slow_connections: usize,
    /// The body length each slow-body request announces.
    pub slow_content_length: u64,
    /// Keys in each `key_press` of the SmartIVR flood.
    pub keys_per_message: usize,
    /// The SmartIVR flood stops after this many keys in all (or at the end of its phase).
    pub keys_total: u64,
    /// Print each flood's row to stderr as it finishes.
    pub verbose: bool,
}

impl AbuseOptions {
    /// Every flood for 6 s each, with the default sizes: 200 slow-body connections announcing
    /// 1 MB each, SmartIVR key strings of 1,000,000 keys up to 60,000,000 keys in all.
    pub fn new(http: SocketAddr, grpc: SocketAddr, token: impl Into<String>) -> Self {
        AbuseOptions {
            http,
            grpc,
            token: token.into(),
            ringover_token: None,
            api_key: None,
            pid: None,
            floods: Flood::ALL.to_vec(),
            phase: Duration::from_secs(6),
            settle: Duration::from_secs(10),
            slow_connections: 200,
            slow_content_length: 1_000_000,
            keys_per_message: 1_000_000,
            keys_total: 60_000_000,
            verbose: false,
        }
    }
}

/// What one flood cost.
#[derive(Debug, Clone)]
pub struct AbuseRow {
    pub flood: Flood,
    /// Frames, messages or connections sent (see the flood).
    pub sent: u64,
    /// Bytes sent, framing included for WebSocket frames and HTTP requests.
    pub bytes_sent: u64,
    /// Bytes read back (floods that read).
    pub bytes_received: u64,
    pub rss_before_mb: Option<f64>,
    pub rss_peak_mb: Option<f64>,
    /// Once the flood's connections were closed and the switch settled.
    pub rss_after_mb: Option<f64>,
    /// REST requests made during the flood and the settling after it, and how many failed or
    /// timed out.
    pub rest_count: usize,
    pub rest_failed: usize,
    pub rest_p99_ms: f64,
    pub rest_worst_ms: f64,
    /// What the flood's client saw go wrong (close codes, gRPC status, errors), with counts.
    pub client_saw: Vec<(String, u64)>,
    /// Live calls the switch reported when settling ended (the flood's call still alive?).
    pub live_after: Option<u64>,
    /// `/health` and `GET /calls` answered once the flood was over.
    pub serving_after: bool,
}

impl AbuseRow {
    /// Peak minus before, in MB.
    pub fn rss_growth_mb(&self) -> Option<f64> {
        Some(self.rss_peak_mb? - self.rss_before_mb?)
    }

    /// What the client saw, as one cell.
    pub fn client_saw_text(&self) -> String {
        if self.client_saw.is_empty() {
            return "nothing".into();
        }
        self.client_saw
            .iter()
            .map(|(what, n)| {
                if *n == 1 {
                    what.clone()
                } else {
                    format!("{what} ×{n}")
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// What an abuse run measured: one row per flood.
#[derive(Debug, Clone, Default)]
pub struct AbuseReport {
    pub phase_seconds: f64,
    pub rows: Vec<AbuseRow>,
    /// The load tool's own peak RSS over the run (VmHWM), in MB: it must stay small.
    pub tool_peak_mb: Option<f64>,
}

/// This process's peak resident memory (VmHWM) in bytes.
fn own_peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mb(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.1}"))
}

impl fmt::Display for AbuseReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "hostile peers, {:.1} s each; RSS in MB (VmRSS every 100 ms), REST = GET /calls every 50 ms on its own connection; peak and REST cover the flood and the settling after it",
            self.phase_seconds
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "| flood | sent | RSS before | peak | growth | after | REST p99 ms | REST worst ms | REST failed | client saw | live calls after | serving after |"
        )?;
        writeln!(f, "|---|---|---|---|---|---|---|---|---|---|---|---|")?;
        for r in &self.rows {
            let received = if r.bytes_received > 0 {
                format!(", {:.1} MB back", r.bytes_received as f64 / 1e6)
            } else {
                String::new()
            };
            writeln!(
                f,
                "| {} | {} {}, {:.1} MB{} | {} | {} | {} | {} | {:.1} | {:.1} | {}/{} | {} | {} | {} |",
                r.flood,
                grouped(r.sent),
                r.flood.unit(),
                r.bytes_sent as f64 / 1e6,
                received,
                mb(r.rss_before_mb),
                mb(r.rss_peak_mb),
                r.rss_growth_mb()
                    .map_or_else(|| "n/a".into(), |g| format!("{g:+.1}")),
                mb(r.rss_after_mb),
                r.rest_p99_ms,
                r.rest_worst_ms,
                r.rest_failed,
                r.rest_count,
                r.client_saw_text(),
                r.live_after.map_or_else(|| "n/a".into(), |n| n.to_string()),
                if r.serving_after { "yes" } else { "NO" },
            )?;
        }
        if let Some(tool) = self.tool_peak_mb {
            writeln!(f)?;
            writeln!(f, "load tool peak RSS {tool:.1} MB")?;
        }
        Ok(())
    }
}

/// What a flood's clients count, shared by their tasks.
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    saw: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    fn sent(&self, units: u64, bytes: u64) {
        self.sent.fetch_add(units, Ordering::Relaxed);
        self.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
    }

    fn received(&self, bytes: u64) {
        self.bytes_received.fetch_add(bytes, Ordering::Relaxed);
    }

    fn saw(&self, what: impl Into<String>) {
        if let Ok(mut m) = self.saw.lock() {
            *m.entry(what.into()).or_default() += 1;
        }
    }
}

/// Size of a WebSocket frame a client sends: header, mask key and payload.
fn ws_frame_len(payload: usize) -> u64 {
    let header = match payload {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    };
    (header + 4 + payload) as u64
}

fn ws_error(e: &tungstenite::Error) -> String {
    match e {
        tungstenite::Error::Http(r) => format!("HTTP {}", r.status().as_u16()),
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => "closed".into(),
        tungstenite::Error::Io(io) => format!("{:?}", io.kind()),
        tungstenite::Error::Protocol(p) => format!("protocol: {p}"),
        other => other.to_string(),
    }
}

async fn ws_connect(
    url: String,
    tally: &Tally,
) -> Option<tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>> {
    match tokio_tungstenite::connect_async(url).await {
        Ok((ws, _)) => Some(ws),
        Err(e) => {
            tally.saw(format!("connect: {}", ws_error(&e)));
            None
        }
    }
}

/// Drains a WebSocket's incoming side, counting bytes and noting how it ended (unless the
/// client itself was `closing`).
fn ws_drain<S>(mut stream: S, tally: Arc<Tally>, closing: Arc<AtomicBool>) -> JoinHandle<()>
where
    S: futures_util::Stream<Item = Result<Message, tungstenite::Error>> + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        while let Some(msg) = stream.next().await {
            if closing.load(Ordering::Relaxed) {
                continue;
            }
            match msg {
                Ok(Message::Close(frame)) => {
                    tally.saw(match frame {
                        Some(f) => format!("close {}", u16::from(f.code)),
                        None => "close".into(),
                    });
                    break;
                }
                Ok(m) => tally.received(m.len() as u64),
                Err(e) => {
                    tally.saw(format!("read: {}", ws_error(&e)));
                    break;
                }
            }
        }
    })
}

/// Sends `frame` (a text or Ping frame) in batches until `deadline` or an error.
async fn ws_flood<S>(sink: &mut S, frame: Message, deadline: Instant, tally: &Tally)
where
    S: futures_util::Sink<Message, Error = tungstenite::Error> + Unpin,
{
    let size = ws_frame_len(frame.len());
    let sent: Result<Result<(), tungstenite::Error>, _> = timeout_at(deadline.into(), async {
        loop {
            for _ in 0..BATCH {
                sink.feed(frame.clone()).await?;
                tally.sent(1, size);
            }
            sink.flush().await?;
        }
    })
    .await;
    if let Ok(Err(e)) = sent {
        tally.saw(format!("send: {}", ws_error(&e)));
    }
}

/// Sends a close frame if the peer takes it within a second.
async fn ws_close<S>(sink: &mut S)
where
    S: futures_util::Sink<Message, Error = tungstenite::Error> + Unpin,
{
    let _ = tokio::time::timeout(CLOSE_GRACE, sink.close()).await;
}

fn initial_info(call_id: &str) -> Message {
    Message::Text(
        serde_json::json!({ "initial_info": {
            "workspace_id": "abuse", "call_id": call_id, "customer_phone_number": "+15550000001",
            "type_call": "inbound", "hotline": "abuse" } })
        .to_string(),
    )
}

fn live_call_url(o: &AbuseOptions, call_id: &str) -> String {
    format!(
        "ws://{}/live-call/websocket/{call_id}/+15550000001?token={}",
        o.http, o.token
    )
}

fn ringover_url(o: &AbuseOptions) -> String {
    match &o.ringover_token {
        Some(t) => format!("ws://{}/ringover/stream?token={t}", o.http),
        None => format!("ws://{}/ringover/stream", o.http),
    }
}

/// Flood 1: empty `play_audio` frames as fast as possible; what comes back is read.
async fn ws_text(o: AbuseOptions, tally: Arc<Tally>, deadline: Instant) {
    let call_id = format!("abuse-text-{}", uuid::Uuid::new_v4());
    let Some(ws) = ws_connect(live_call_url(&o, &call_id), &tally).await else {
        return;
    };
    let (mut sink, stream) = ws.split();
    let closing = Arc::new(AtomicBool::new(false));
    let reader = ws_drain(stream, tally.clone(), closing.clone());
    if let Err(e) = sink.send(initial_info(&call_id)).await {
        tally.saw(format!("send: {}", ws_error(&e)));
    }
    let frame = Message::Text(r#"{"play_audio":{"sample_rate":16000,"audio_content":""}}"#.into());
    ws_flood(&mut sink, frame, deadline, &tally).await;
    closing.store(true, Ordering::Relaxed);
    ws_close(&mut sink).await;
    let mut reader = reader;
    if tokio::time::timeout(CLOSE_GRACE, &mut reader)
        .await
        .is_err()
    {
        tally.saw("no close from the switch");
        reader.abort();
    }
}

/// Flood 6: 20 ms audio frames (16 kHz tone) as fast as possible; nothing is ever read.
async fn ws_unread(o: AbuseOptions, tally: Arc<Tally>, deadline: Instant) {
    let call_id = format!("abuse-unread-{}", uuid::Uuid::new_v4());
    let Some(ws) = ws_connect(live_call_url(&o, &call_id), &tally).await else {
        return;
    };
    // The read half is held, never polled.
    let (mut sink, _unread) = ws.split();
    if let Err(e) = sink.send(initial_info(&call_id)).await {
        tally.saw(format!("send: {}", ws_error(&e)));
    }
    let samples: Vec<i16> = (0..samples_for_ms(16000, 20))
        .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 16000.0).sin()) as i16)
        .collect();
    let frame = serde_json::json!({ "play_audio": {
        "sample_rate": 16000, "sample_width": 16, "num_channels": 1, "duration": 0.02,
        "audio_content": base64::engine::general_purpose::STANDARD.encode(pcm::encode_s16le(&samples)),
    } })
    .to_string();
    ws_flood(&mut sink, Message::Text(frame), deadline, &tally).await;
    ws_close(&mut sink).await;
}

/// Floods 2 and 3: a Ringover stream that sends metadata, then `frame` as fast as possible,
/// never reading.
async fn ringover_unread(o: AbuseOptions, tally: Arc<Tally>, deadline: Instant, frame: Message) {
    let Some(ws) = ws_connect(ringover_url(&o), &tally).await else {
        return;
    };
    let (mut sink, _unread) = ws.split();
    let metadata = serde_json::json!({
        "call_id": format!("abuse-{}", uuid::Uuid::new_v4()),
        "from": "+15550000002",
        "to": "+15550000000",
    });
    if let Err(e) = sink.send(Message::Text(metadata.to_string())).await {
        tally.saw(format!("send: {}", ws_error(&e)));
    }
    ws_flood(&mut sink, frame, deadline, &tally).await;
    ws_close(&mut sink).await;
}

/// Flood 4: SmartIVR messages each holding `keys_per_message` keys, as fast as the stream
/// takes them, up to `keys_total` keys.
async fn smartivr_keys(o: AbuseOptions, tally: Arc<Tally>, deadline: Instant) {
    let channel = match Endpoint::from_shared(format!("http://{}", o.grpc)) {
        Ok(e) => match e.connect().await {
            Ok(c) => c,
            Err(e) => return tally.saw(format!("connect: {e}")),
        },
        Err(e) => return tally.saw(format!("connect: {e}")),
    };
    let config = Some(Config {
        conversation_id: format!("abuse-keys-{}", uuid::Uuid::new_v4()),
    });
    // Two messages queued at most: the tool holds a few MB whatever the switch does.
    let (tx, rx) = mpsc::channel(2);
    let _ = tx.try_send(SmartIvrRequest {
        config: config.clone(),
        ..Default::default()
    });
    let mut responses = match SmartIvrPhonegatewayClient::new(channel)
        .call_to_bot(ReceiverStream::new(rx))
        .await
    {
        Ok(r) => r.into_inner(),
        Err(s) => return tally.saw(format!("gRPC {:?}", s.code())),
    };
    let reader_tally = tally.clone();
    let reader = tokio::spawn(async move {
        loop {
            match responses.message().await {
                Ok(Some(r)) => reader_tally.received(prost::Message::encoded_len(&r) as u64),
                Ok(None) => {
                    reader_tally.saw("stream ended");
                    break;
                }
                Err(s) => {
                    reader_tally.saw(format!("gRPC {:?}", s.code()));
                    break;
                }
            }
        }
    });
    let keys = "5".repeat(o.keys_per_message);
    let mut total: u64 = 0;
    let _ = timeout_at(deadline.into(), async {
        while total < o.keys_total {
            let msg = SmartIvrRequest {
                config: config.clone(),
                key_press: keys.clone(),
                ..Default::default()
            };
            let size = prost::Message::encoded_len(&msg) as u64;
            if tx.send(msg).await.is_err() {
                tally.saw("request stream closed");
                break;
            }
            total += keys.len() as u64;
            tally.sent(1, size);
        }
    })
    .await;
    // Ending the request stream hangs up; the switch then ends the response stream.
    drop(tx);
    let mut reader = reader;
    if tokio::time::timeout(CLOSE_GRACE, &mut reader)
        .await
        .is_err()
    {
        tally.saw("no end from the switch");
        reader.abort();
    }
}

/// Flood 5: `n` connections, each a POST announcing a large body and sending one byte of it
/// every two seconds; responses are read (and dropped) only to learn whether the switch
/// answered or closed.
async fn slow_body(o: AbuseOptions, tally: Arc<Tally>, deadline: Instant) {
    let mut conns = Vec::with_capacity(o.slow_connections);
    for _ in 0..o.slow_connections {
        let (o, tally) = (o.clone(), tally.clone());
        conns.push(tokio::spawn(async move {
            slow_body_connection(&o, &tally, deadline).await
        }));
    }
    let mut held = 0;
    for c in conns {
        if let Ok(true) = c.await {
            held += 1;
        }
    }
    for _ in 0..held {
        tally.saw("held to the end");
    }
}

/// One slow-body connection; true if the switch neither answered nor closed it.
async fn slow_body_connection(o: &AbuseOptions, tally: &Arc<Tally>, deadline: Instant) -> bool {
    let stream = match TcpStream::connect(o.http).await {
        Ok(s) => s,
        Err(e) => {
            tally.saw(format!("connect: {:?}", e.kind()));
            return false;
        }
    };
    let (mut read, mut write) = stream.into_split();
    let auth = o
        .api_key
        .as_ref()
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST /api/v1/calls/initiate HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{auth}\r\n",
        o.http, o.slow_content_length
    );
    if let Err(e) = write.write_all(head.as_bytes()).await {
        tally.saw(format!("write: {:?}", e.kind()));
        return false;
    }
    tally.sent(1, head.len() as u64);
    let reader_tally = tally.clone();
    let mut reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        let mut first = true;
        loop {
            match read.read(&mut buf).await {
                Ok(0) => {
                    reader_tally.saw("closed by the switch");
                    return;
                }
                Ok(n) => {
                    reader_tally.received(n as u64);
                    if first {
                        first = false;
                        let status = String::from_utf8_lossy(&buf[..n.min(12)])
                            .split_whitespace()
                            .nth(1)
                            .unwrap_or("?")
                            .to_string();
                        reader_tally.saw(format!("answered {status}"));
                    }
                }
                Err(e) => {
                    reader_tally.saw(format!("read: {:?}", e.kind()));
                    return;
                }
            }
        }
    });
    let trickle = timeout_at(deadline.into(), async {
        let mut tick = tokio::time::interval(TRICKLE_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = &mut reader => return false,
            }
            if let Err(e) = write.write_all(b" ").await {
                tally.saw(format!("write: {:?}", e.kind()));
                return false;
            }
            tally.sent(0, 1);
        }
    })
    .await;
    let held = trickle.is_err() && !reader.is_finished();
    reader.abort();
    let _ = write.shutdown().await;
    held
}

/// Starts one flood's client; it returns once its connections are closed.
fn start_flood(
    flood: Flood,
    o: &AbuseOptions,
    tally: Arc<Tally>,
    deadline: Instant,
) -> JoinHandle<()> {
    let o = o.clone();
    match flood {
        Flood::WsText => tokio::spawn(ws_text(o, tally, deadline)),
        Flood::RingoverDtmf => tokio::spawn(ringover_unread(
            o,
            tally,
            deadline,
            Message::Text(r#"{"dtmf":"5"}"#.into()),
        )),
        Flood::RingoverPing => tokio::spawn(ringover_unread(
            o,
            tally,
            deadline,
            Message::Ping(vec![b'p'; PING_PAYLOAD]),
        )),
        Flood::SmartivrKeys => tokio::spawn(smartivr_keys(o, tally, deadline)),
        Flood::SlowBody => tokio::spawn(slow_body(o, tally, deadline)),
        Flood::WsUnread => tokio::spawn(ws_unread(o, tally, deadline)),
    }
}

fn rest_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(PROBE_TIMEOUT)
        .build()
        .unwrap_or_default()
}

/// One `GET /calls`; true if it answered 2xx.
async fn rest_ok(client: &reqwest::Client, o: &AbuseOptions) -> bool {
    let mut req = client.get(format!("http://{}/calls?page_size=10", o.http));
    if let Some(key) = &o.api_key {
        req = req.bearer_auth(key);
    }
    match req.send().await {
        Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
        _ => false,
    }
}

/// `GET /calls` every 50 ms on one connection of its own until `stop`; (latencies, failed).
async fn probe(o: AbuseOptions, stop: Arc<AtomicBool>) -> (Vec<Duration>, usize) {
    let client = rest_client();
    let mut latencies = Vec::new();
    let mut failed = 0;
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let started = Instant::now();
        if !rest_ok(&client, &o).await {
            failed += 1;
        }
        latencies.push(started.elapsed());
    }
    (latencies, failed)
}

/// The highest RSS seen every 100 ms until `stop`, in bytes.
async fn peak_rss(pid: u32, stop: Arc<AtomicBool>) -> Option<u64> {
    let mut peak = None;
    let mut tick = tokio::time::interval(RSS_EVERY);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        if let Some(rss) = proc_stats::rss_bytes(pid) {
            peak = Some(peak.map_or(rss, |p: u64| p.max(rss)));
        }
    }
    peak
}

/// Waits until the switch has no live call and its RSS has stopped falling (or `settle`
/// passed); returns its RSS and live calls then.
async fn settle(o: &AbuseOptions) -> (Option<u64>, Option<u64>) {
    let started = Instant::now();
    let mut last = o.pid.and_then(proc_stats::rss_bytes);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = o.pid.and_then(proc_stats::rss_bytes);
        let live = super::live_calls(o.http).await;
        // Steady: less than 1 % (or 256 KB) lower than half a second ago.
        let steady = match (last, now) {
            (Some(a), Some(b)) => b + (a / 100).max(256 * 1024) >= a,
            _ => true,
        };
        if (live == Some(0) && steady && started.elapsed() >= Duration::from_secs(1))
            || started.elapsed() >= o.settle
        {
            return (now, live);
        }
        last = now;
    }
}

fn p99_and_worst(latencies: &mut [Duration]) -> (f64, f64) {
    if latencies.is_empty() {
        return (0.0, 0.0);
    }
    latencies.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let i = ((latencies.len() - 1) as f64 * 0.99).round() as usize;
    (ms(latencies[i]), ms(latencies[latencies.len() - 1]))
}

/// Plays one flood and measures it.
async fn play(flood: Flood, o: &AbuseOptions) -> AbuseRow {
    let to_mb = |b: Option<u64>| b.map(|b| b as f64 / 1e6);
    let before = o.pid.and_then(proc_stats::rss_bytes);
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = o.pid.map(|pid| tokio::spawn(peak_rss(pid, stop.clone())));
    let prober = tokio::spawn(probe(o.clone(), stop.clone()));
    let deadline = Instant::now() + o.phase;
    let mut client = start_flood(flood, o, tally.clone(), deadline);
    tokio::time::sleep_until(deadline.into()).await;
    if tokio::time::timeout(STOP_GRACE, &mut client).await.is_err() {
        tally.saw("client aborted");
        client.abort();
    }
    // What the switch does with a flood once its client is gone (a backlog to work through)
    // is part of its cost: memory and REST are measured until it has settled.
    let (after, live_after) = settle(o).await;
    stop.store(true, Ordering::Relaxed);
    let peak = match sampler {
        Some(s) => s.await.ok().flatten(),
        None => None,
    };
    let (mut latencies, rest_failed) = prober.await.unwrap_or_default();
    let client = rest_client();
    let serving = super::live_calls(o.http).await.is_some() && rest_ok(&client, o).await;
    let (rest_p99_ms, rest_worst_ms) = p99_and_worst(&mut latencies);
    let client_saw = tally
        .saw
        .lock()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
        .unwrap_or_default();
    AbuseRow {
        flood,
        sent: tally.sent.load(Ordering::Relaxed),
        bytes_sent: tally.bytes_sent.load(Ordering::Relaxed),
        bytes_received: tally.bytes_received.load(Ordering::Relaxed),
        rss_before_mb: to_mb(before),
        rss_peak_mb: to_mb(peak.map(|p| p.max(before.unwrap_or(0)).max(after.unwrap_or(0)))),
        rss_after_mb: to_mb(after),
        rest_count: latencies.len(),
        rest_failed,
        rest_p99_ms,
        rest_worst_ms,
        client_saw,
        live_after,
        serving_after: serving,
    }
}

/// Plays each flood in turn against the switch, letting it settle in between.
pub async fn run(opts: &AbuseOptions) -> Result<AbuseReport, LoadError> {
    for addr in [opts.http, opts.grpc] {
        if !addr.ip().is_loopback() {
            return Err(LoadError::NotLoopback(addr));
        }
    }
    if super::live_calls(opts.http).await.is_none() {
        return Err(LoadError::Setup(format!(
            "the switch does not answer /health on {}",
            opts.http
        )));
    }
    let mut report = AbuseReport {
        phase_seconds: opts.phase.as_secs_f64(),
        rows: Vec::new(),
        tool_peak_mb: None,
    };
    for &flood in &opts.floods {
        if opts.verbose {
            eprintln!("{flood}: {:.1} s", opts.phase.as_secs_f64());
        }
        let row = play(flood, opts).await;
        if opts.verbose {
            eprintln!(
                "{flood}: sent {} {}, RSS peak {} MB, REST worst {:.1} ms, client saw {}",
                row.sent,
                flood.unit(),
                mb(row.rss_peak_mb),
                row.rest_worst_ms,
                row.client_saw_text()
            );
        }
        report.rows.push(row);
    }
    report.tool_peak_mb = own_peak_rss().map(|b| b as f64 / 1e6);
    Ok(report)
}

/// Plays each flood against a switch process of its own (`exe serve` with an echo flow bot on
/// free loopback ports, as `load --spawn` starts), so that no flood starts from what the one
/// before left behind. `opts`' addresses, token and pid are replaced by each switch's.
pub async fn run_fresh(
    exe: &std::path::Path,
    max_calls: usize,
    opts: &AbuseOptions,
) -> Result<AbuseReport, LoadError> {
    let mut report = AbuseReport {
        phase_seconds: opts.phase.as_secs_f64(),
        rows: Vec::new(),
        tool_peak_mb: None,
    };
    for &flood in &opts.floods {
        let switch = super::SpawnedSwitch::start_with(exe, max_calls, super::SpawnBot::Echo)
            .await
            .map_err(LoadError::Setup)?;
        let mut o = opts.clone();
        o.http = switch.http;
        o.grpc = switch.grpc;
        o.token = switch.token.clone();
        o.pid = Some(switch.pid());
        o.floods = vec![flood];
        let played = run(&o).await;
        // Stopping the switch waits for it (blocking): off the runtime's threads.
        let _ = tokio::task::spawn_blocking(move || drop(switch)).await;
        report.rows.extend(played?.rows);
    }
    report.tool_peak_mb = own_peak_rss().map(|b| b as f64 / 1e6);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(60_000_000), "60,000,000");
    }

    #[test]
    fn client_frames_are_sized_with_their_header() {
        assert_eq!(ws_frame_len(12), 18);
        assert_eq!(ws_frame_len(200), 208);
        assert_eq!(ws_frame_len(70_000), 70_014);
    }

    #[test]
    fn p99_of_a_hundred() {
        let mut v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let (p99, worst) = p99_and_worst(&mut v);
        assert_eq!((p99.round(), worst.round()), (99.0, 100.0));
    }
}
