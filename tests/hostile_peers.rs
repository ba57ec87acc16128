//! Hostile and careless peers against the real binary: floods stay bounded in the switch's own
//! memory (read from /proc), a peer that stops reading is hung up with a reason, goodbyes in any
//! order are recorded as the caller hanging up, and oversized messages get a clear error.
//!
//! Flood clients speak raw WebSocket over TCP, as a hostile peer would: frames are written as
//! fast as the socket takes them, pre-encoded, and (where said) nothing is ever read.

#[path = "support/binary.rs"]
mod binary;
mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use binary::Switch;
use serde_json::{json, Value};
use support::*;
use switchboard::pb::smartivr::{SmartIvrRequest, SmartIvrResponseType as T};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bytes each flood sends at most.
const FLOOD_BYTES: usize = 64 << 20;
/// The most a flood may add to the switch's resident memory (the unbounded paths added
/// hundreds of MB to GB).
const MAX_GROWTH_KIB: u64 = 48 << 10;
/// A write that does not complete in this long means the switch stopped reading: a flood
/// against a peer-paced reader ends there.
const STALL: Duration = Duration::from_secs(3);

const CONFIG: &str = r#"
[auth]
live_call_tokens = ["t"]
[media]
write_timeout_ms = 2000
[bots.echo]
kind = "flow"
actions = [{ type = "answer" }, { type = "echo", duration = 600000 }]
[[routes]]
bot = "echo"
"#;

fn start_switch() -> Switch {
    let dir = temp_data_dir();
    let store = store_toml(&dir, &sqlite_url(&dir));
    Switch::start(
        &dir,
        &format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[grpc]\nlisten = \"127.0.0.1:0\"\n{store}{CONFIG}"
        ),
    )
}

/// One client frame: FIN set, masked with a zero key (legal, and the payload stays as is).
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame_with(true, opcode, payload)
}

fn frame_with(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(if fin { 0x80 } else { 0 } | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(payload);
    out
}

const TEXT: u8 = 1;
const CONTINUATION: u8 = 0;
const CLOSE: u8 = 8;
const PING: u8 = 9;

/// Opens a WebSocket on `path` over raw TCP and returns the stream after the 101 answer. The
/// socket's receive buffer is small, so a client that does not read holds back the switch's
/// writes at once instead of after megabytes of kernel buffers.
async fn raw_ws(http: &str, path: &str) -> TcpStream {
    let addr = http.trim_start_matches("http://");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut s = socket
        .connect(addr.parse().expect("address"))
        .await
        .expect("connect");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(request.as_bytes())
        .await
        .expect("upgrade request");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(PATIENCE, s.read(&mut byte))
            .await
            .expect("upgrade answer in time")
            .expect("read");
        assert!(n == 1, "connection closed during the upgrade");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s
}

/// Writes `chunk` again and again until `FLOOD_BYTES` are sent or the socket takes nothing for
/// `STALL` (the switch stopped reading). Returns the bytes sent, whether it stalled, and the
/// rest of the chunk a stall cut short: a client that writes on must send that first, or its
/// next frame lands inside the cut one. (`write` is cancel-safe; `write_all` is not.)
async fn flood<W: AsyncWriteExt + Unpin>(w: &mut W, chunk: &[u8]) -> (usize, bool, Vec<u8>) {
    let mut sent = 0;
    while sent < FLOOD_BYTES {
        let mut off = 0;
        while off < chunk.len() {
            match tokio::time::timeout(STALL, w.write(&chunk[off..])).await {
                Ok(Ok(n)) if n > 0 => off += n,
                Ok(_) => return (sent + off, false, Vec::new()),
                Err(_) => return (sent + off, true, chunk[off..].to_vec()),
            }
        }
        sent += chunk.len();
    }
    (sent, false, Vec::new())
}

/// Samples the switch's RSS every 20 ms until stopped; the peak in KiB.
struct RssPeak {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssPeak {
    fn start(switch: &Switch) -> RssPeak {
        let pid = switch.pid();
        let peak = Arc::new(AtomicU64::new(switch.rss_kib()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(kib) = rss_of(pid) {
                    p.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        RssPeak {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Warms the switch up with one short call so its steady memory is reached before measuring.
async fn baseline(switch: &Switch) -> u64 {
    let page = switch.get("/calls").await;
    assert!(page["result"].is_array(), "{page}");
    switch.rss_kib()
}

async fn calls(switch: &Switch) -> Vec<Value> {
    switch.get("/calls?page_size=100").await["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn wait_for_call(switch: &Switch, reference: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(c) = calls(switch)
            .await
            .into_iter()
            .find(|c| c["reference"] == reference)
        {
            if done(&c) {
                return c;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "call {reference} never got there"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_bounded(what: &str, before: u64, peak: u64, sent: usize) {
    let growth = peak.saturating_sub(before);
    eprintln!(
        "{what}: sent {} MiB, RSS {} -> peak {} MiB (+{} MiB)",
        sent >> 20,
        before >> 10,
        peak >> 10,
        growth >> 10
    );
    assert!(
        growth < MAX_GROWTH_KIB,
        "{what}: RSS grew by {} MiB (from {} to {} MiB) for {} MiB sent",
        growth >> 10,
        before >> 10,
        peak >> 10,
        sent >> 20
    );
}

/// 100 ms of 16 kHz audio as a `play_audio` frame.
fn play_audio_frame() -> Vec<u8> {
    use base64::Engine;
    let pcm = switchboard::media::pcm::encode_s16le(&tone(300.0, 16000, 100, 1000.0));
    let b64 = base64::engine::general_purpose::STANDARD.encode(pcm);
    let text = json!({"play_audio": {"sample_rate": 16000, "audio_content": b64}}).to_string();
    frame(TEXT, text.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_flood_while_reading_stays_bounded_and_rest_still_answers() {
    let switch = start_switch();
    let before = baseline(&switch).await;
    let s = raw_ws(&switch.http, "/live-call/websocket/flood-1/+1?token=t").await;
    let (mut r, mut w) = s.into_split();
    // The client reads (and drops) everything it is sent.
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        while matches!(r.read(&mut buf).await, Ok(n) if n > 0) {}
    });
    let info = initial_info("flood-1", "1900").to_string();
    w.write_all(&frame(TEXT, info.as_bytes()))
        .await
        .expect("initial_info");
    let chunk = play_audio_frame().repeat(16);
    let peak = RssPeak::start(&switch);
    let (sent, _, rest) = flood(&mut w, &chunk).await;
    // The REST API answers while the socket is still full of frames.
    let page = switch.get("/calls").await;
    assert!(page["result"].is_array());
    assert_bounded(
        "live-call WebSocket audio flood",
        before,
        peak.finish(),
        sent,
    );
    // A stall may have cut a frame short: its rest goes first, or the close would land in it.
    w.write_all(&rest).await.expect("the rest of the cut frame");
    w.write_all(&frame(CLOSE, &1000u16.to_be_bytes()))
        .await
        .expect("close");
    let call = wait_for_call(&switch, "flood-1", |c| c["status"] == "hangup").await;
    assert_eq!(call["hangup_reason"], "normal", "{call}");
    assert_eq!(call["hangup_by"], "remote", "{call}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ringover_key_flood_that_never_reads_stays_bounded() {
    let switch = start_switch();
    let before = baseline(&switch).await;
    let mut s = raw_ws(&switch.http, "/ringover/stream").await;
    let metadata = json!({"call_id": "ro-keys"}).to_string();
    s.write_all(&frame(TEXT, metadata.as_bytes()))
        .await
        .expect("metadata");
    // Keys with 4 KB of other fields: JSON a media server may send, fast, never reading.
    let key = json!({"dtmf": "5", "note": "x".repeat(4096)}).to_string();
    let chunk = frame(TEXT, key.as_bytes()).repeat(16);
    let peak = RssPeak::start(&switch);
    let (sent, _, _) = flood(&mut s, &chunk).await;
    let page = switch.get("/calls").await;
    assert!(page["result"].is_array());
    assert_bounded("Ringover key flood", before, peak.finish(), sent);
    let call = wait_for_call(&switch, "ro-keys", |_| true).await;
    assert_eq!(call["status"], "progressing", "the call goes on: {call}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ringover_ping_flood_that_never_reads_is_held_back_then_hung_up() {
    let switch = start_switch();
    let before = baseline(&switch).await;
    let mut s = raw_ws(&switch.http, "/ringover/stream").await;
    let metadata = json!({"call_id": "ro-pings"}).to_string();
    s.write_all(&frame(TEXT, metadata.as_bytes()))
        .await
        .expect("metadata");
    let chunk = frame(PING, &[7u8; 125]).repeat(64);
    let peak = RssPeak::start(&switch);
    let (sent, stalled, _) = flood(&mut s, &chunk).await;
    assert_bounded("Ringover ping flood", before, peak.finish(), sent);
    assert!(
        stalled || sent >= FLOOD_BYTES,
        "the flood ended early: {sent} bytes"
    );
    // Nothing was read: the switch hangs the peer up once its writes stall.
    let call = wait_for_call(&switch, "ro-pings", |c| c["status"] == "hangup").await;
    assert_eq!(call["hangup_reason"], "failed", "{call}");
    assert_eq!(call["hangup_by"], "local", "{call}");
    let detail = call["hangup_detail"].as_str().unwrap_or("");
    assert!(detail.contains("read nothing"), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_caller_that_never_reads_is_hung_up_with_why() {
    let switch = start_switch();
    let s = raw_ws(&switch.http, "/live-call/websocket/deaf-1/+1?token=t").await;
    let (_r, mut w) = s.into_split();
    let info = initial_info("deaf-1", "1900").to_string();
    w.write_all(&frame(TEXT, info.as_bytes()))
        .await
        .expect("initial_info");
    // Audio the echo bot sends back, and frames with bad base64 that each get an error reply;
    // the client reads none of it.
    let bad = frame(
        TEXT,
        br#"{"play_audio":{"sample_rate":16000,"audio_content":"!!"}}"#,
    );
    let chunk = [play_audio_frame(), bad.repeat(64)].concat();
    let (sent, stalled, _) = flood(&mut w, &chunk).await;
    assert!(
        stalled,
        "the switch stopped reading a client that reads nothing ({sent} bytes sent)"
    );
    let call = wait_for_call(&switch, "deaf-1", |c| c["status"] == "hangup").await;
    assert_eq!(call["hangup_reason"], "failed", "{call}");
    assert_eq!(call["hangup_by"], "local", "{call}");
    let detail = call["hangup_detail"].as_str().unwrap_or("");
    assert!(
        detail.contains("read nothing") && detail.contains("stopped reading"),
        "{detail}"
    );
}

/// A clean goodbye in every order: `disconnect`, the close frame and the FIN in one write, or
/// any of them alone, is the caller hanging up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goodbyes_in_any_order_are_the_caller_hanging_up() {
    let app = spawn_app(CONFIG);
    let http = format!("http://{}", app.handle.http_addr);
    let disconnect = frame(TEXT, br#"{"disconnect":{}}"#);
    let close = frame(CLOSE, &1000u16.to_be_bytes());
    let cases: [(&str, Vec<u8>); 4] = [
        ("bye-all", [disconnect.clone(), close.clone()].concat()),
        ("bye-disconnect-fin", disconnect.clone()),
        ("bye-close-fin", close.clone()),
        ("bye-fin", Vec::new()),
    ];
    for (reference, goodbye) in cases {
        let mut s = raw_ws(
            &http,
            &format!("/live-call/websocket/{reference}/+1?token=t"),
        )
        .await;
        let info = initial_info(reference, "1900").to_string();
        s.write_all(&frame(TEXT, info.as_bytes()))
            .await
            .expect("initial_info");
        app.wait_for_call(reference, |c| c["status"] == "progressing")
            .await;
        // Everything at once, then the FIN.
        s.write_all(&goodbye).await.expect("goodbye");
        s.shutdown().await.expect("FIN");
        let call = app.wait_hangup(reference).await;
        assert_eq!(call["hangup_reason"], "normal", "{reference}: {call}");
        assert_eq!(call["hangup_by"], "remote", "{reference}: {call}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_messages_are_assembled_and_oversized_ones_closed_with_1009() {
    let app = spawn_app(CONFIG);
    let http = format!("http://{}", app.handle.http_addr);
    // initial_info in three fragments creates the call.
    let mut s = raw_ws(&http, "/live-call/websocket/frag-1/+1?token=t").await;
    let info = initial_info("frag-1", "1900").to_string();
    let (a, rest) = info.as_bytes().split_at(10);
    let (b, c) = rest.split_at(10);
    let fragments = [
        frame_with(false, TEXT, a),
        frame_with(false, CONTINUATION, b),
        frame_with(true, CONTINUATION, c),
    ]
    .concat();
    s.write_all(&fragments).await.expect("fragments");
    app.wait_for_call("frag-1", |c| c["status"] == "progressing")
        .await;
    drop(s);
    // A Ringover message of fragments past 64 KiB in all is closed with 1009.
    let mut s = raw_ws(&http, "/ringover/stream").await;
    let big = vec![b' '; 40 * 1024];
    let fragments = [
        frame_with(false, TEXT, &big),
        frame_with(true, CONTINUATION, &big),
    ]
    .concat();
    s.write_all(&fragments).await.expect("fragments");
    assert_eq!(close_code(&mut s).await, Some(1009));
    // So is one frame past it.
    let mut s = raw_ws(&http, "/ringover/stream").await;
    s.write_all(&frame(TEXT, &vec![b' '; 100 * 1024]))
        .await
        .expect("frame");
    assert_eq!(close_code(&mut s).await, Some(1009));
}

/// Reads server frames until a close frame; its code.
async fn close_code(s: &mut TcpStream) -> Option<u16> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // Server frames are unmasked: opcode, length, payload.
        while buf.len() >= 2 {
            let (len, head) = match buf[1] & 0x7f {
                126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                127 if buf.len() >= 10 => {
                    let mut n = [0u8; 8];
                    n.copy_from_slice(&buf[2..10]);
                    (u64::from_be_bytes(n) as usize, 10)
                }
                126 | 127 => break,
                n => (n as usize, 2),
            };
            if buf.len() < head + len {
                break;
            }
            if buf[0] & 0x0f == CLOSE {
                return (len >= 2).then(|| u16::from_be_bytes([buf[head], buf[head + 1]]));
            }
            buf.drain(..head + len);
        }
        let n = tokio::time::timeout(PATIENCE, s.read(&mut chunk))
            .await
            .expect("the switch answered in time")
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_message_over_the_limit_fails_the_call_with_resource_exhausted() {
    let app = spawn_app(CONFIG);
    let mut gw = Gateway::dial(&app, "too-big-1").await;
    app.wait_for_call("too-big-1", |c| c["status"] == "progressing")
        .await;
    gw.send(SmartIvrRequest {
        audio_content: vec![0u8; 5 << 20],
        ..Default::default()
    })
    .await;
    let mut saw_end = false;
    let status = loop {
        match gw.next().await {
            Ok(Some(r)) if r.r#type == T::CallEnd as i32 => {
                assert_eq!(r.status.as_ref().map(|s| s.code), Some(-1), "{r:?}");
                saw_end = true;
            }
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert!(saw_end, "CALL_END with status -1 came first");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    let call = app.wait_hangup("too-big-1").await;
    assert_eq!(call["hangup_reason"], "failed", "{call}");
    let detail = call["hangup_detail"].as_str().unwrap_or("");
    assert!(detail.contains("too large"), "{detail}");
}
