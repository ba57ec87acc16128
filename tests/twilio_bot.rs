//! `kind = "twilio_stream"` bots: the switch plays Twilio Media Streams toward a WebSocket bot.
//! A bot written here (a real tokio-tungstenite server) sees exactly what the switch sends and
//! sends what real bots send, including what they should not.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::*;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// What the bot read from the switch.
#[derive(Debug)]
enum Seen {
    Json(Value),
    Closed,
}

/// One connection from the switch, as the bot sees it.
struct BotConn {
    seen: mpsc::UnboundedReceiver<Seen>,
    send: mpsc::UnboundedSender<Message>,
}

impl BotConn {
    async fn next(&mut self) -> Seen {
        tokio::time::timeout(PATIENCE, self.seen.recv())
            .await
            .expect("the switch sent the bot something in time")
            .unwrap_or(Seen::Closed)
    }

    /// The next message that is not `media`.
    async fn next_control(&mut self) -> Seen {
        loop {
            match self.next().await {
                Seen::Json(v) if v["event"] == "media" => continue,
                other => return other,
            }
        }
    }

    fn send_json(&self, v: Value) {
        let _ = self.send.send(Message::Text(v.to_string()));
    }

    fn send_raw(&self, m: Message) {
        let _ = self.send.send(m);
    }

    /// Sends `samples` as one `media` message.
    fn send_audio(&self, samples: &[i16]) {
        let mut bytes = Vec::new();
        switchboard::media::pcm::encode_ulaw_into(samples, &mut bytes);
        self.send_json(json!({"event": "media", "streamSid": "MZ1",
            "media": {"payload": base64::engine::general_purpose::STANDARD.encode(bytes)}}));
    }

    /// Closes the socket from the bot's side.
    fn close(&self) {
        let _ = self.send.send(Message::Close(None));
    }
}

/// A Twilio Media Streams bot server; each connection from the switch arrives as a `BotConn`.
struct TestBot {
    addr: SocketAddr,
    conns: mpsc::UnboundedReceiver<BotConn>,
}

impl TestBot {
    async fn start() -> TestBot {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (conn_tx, conns) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let conn_tx = conn_tx.clone();
                tokio::spawn(async move {
                    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
                        max_message_size: Some(64 << 20),
                        max_frame_size: Some(64 << 20),
                        ..Default::default()
                    };
                    let Ok(ws) =
                        tokio_tungstenite::accept_async_with_config(socket, Some(config)).await
                    else {
                        return;
                    };
                    let (mut sink, mut stream) = ws.split();
                    let (seen_tx, seen) = mpsc::unbounded_channel();
                    let (send, mut outgoing) = mpsc::unbounded_channel::<Message>();
                    let _ = conn_tx.send(BotConn { seen, send });
                    tokio::spawn(async move {
                        while let Some(m) = outgoing.recv().await {
                            let close = matches!(m, Message::Close(_));
                            if sink.send(m).await.is_err() || close {
                                break;
                            }
                        }
                    });
                    while let Some(Ok(m)) = stream.next().await {
                        match m {
                            Message::Text(t) => {
                                let v = serde_json::from_str(&t).expect("the switch sends JSON");
                                let _ = seen_tx.send(Seen::Json(v));
                            }
                            Message::Close(_) => break,
                            _ => {}
                        }
                    }
                    let _ = seen_tx.send(Seen::Closed);
                });
            }
        });
        TestBot { addr, conns }
    }

    async fn accept(&mut self) -> BotConn {
        tokio::time::timeout(PATIENCE, self.conns.recv())
            .await
            .expect("the switch connected to the bot")
            .expect("bot server running")
    }
}

fn app_with(bot: SocketAddr, extra_bot_keys: &str) -> TestApp {
    spawn_app(&format!(
        "[auth]\nlive_call_tokens = [\"t\"]\n[bots.tw]\nkind = \"twilio_stream\"\nurl = \"ws://{bot}/stream\"\n{extra_bot_keys}\n[[routes]]\nbot = \"tw\"\n"
    ))
}

async fn ws_caller(app: &TestApp, id: &str) -> WsCaller {
    let mut c = WsCaller::connect(
        app,
        &format!("/live-call/websocket/{id}/+84900000001?token=t"),
    )
    .await
    .expect("upgrade");
    c.send_json(initial_info(id, "1900")).await;
    c
}

/// Bot audio a live-call caller hears until `done` says stop, with when it arrived.
async fn heard_until(
    c: &mut WsCaller,
    mut done: impl FnMut(&[i16], &Value) -> bool,
) -> (Vec<i16>, Vec<Instant>) {
    let mut audio = Vec::new();
    let mut times = Vec::new();
    loop {
        match c.next().await {
            WsEvent::Json(v) => {
                if let Some(b64) = v["audio_output"]["audio_content"].as_str() {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .unwrap();
                    audio.extend(switchboard::media::pcm::decode_s16le(&bytes).unwrap());
                    times.push(Instant::now());
                }
                if done(&audio, &v) {
                    return (audio, times);
                }
            }
            WsEvent::Close(code) => panic!("caller closed ({code:?}) before it was done"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_gets_connected_and_start_first_then_audio_and_on_hangup_stop_and_close() {
    let mut bot = TestBot::start().await;
    let app = app_with(bot.addr, "custom_parameters = { tenant = \"acme\" }");
    let mut caller = ws_caller(&app, "tw-order").await;
    let mut conn = bot.accept().await;
    let Seen::Json(connected) = conn.next().await else {
        panic!("closed")
    };
    assert_eq!(connected["event"], "connected", "{connected}");
    assert_eq!(connected["protocol"], "Call");
    assert_eq!(connected["version"], "1.0.0");
    let Seen::Json(start) = conn.next().await else {
        panic!("closed")
    };
    assert_eq!(start["event"], "start", "{start}");
    let s = &start["start"];
    let call = app.call_by_reference("tw-order").await;
    assert_eq!(s["callSid"], call["id"], "callSid is the call id");
    assert!(s["streamSid"].as_str().unwrap().starts_with("MZ"));
    assert_eq!(start["streamSid"], s["streamSid"]);
    assert!(s["accountSid"].as_str().unwrap().starts_with("AC"));
    assert_eq!(s["tracks"], json!(["inbound"]));
    assert_eq!(
        s["mediaFormat"],
        json!({"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1})
    );
    let p = &s["customParameters"];
    assert_eq!(p["tenant"], "acme");
    assert_eq!(p["hotline"], "1900");
    assert_eq!(p["workspace"], "ws-1");
    assert_eq!(p["ingress"], "live_call_ws");
    assert_eq!(p["from"], "+84900000001");

    // A second of 440 Hz at 16 kHz from the caller reaches the bot as 20 ms mu-law at 8 kHz.
    for frame in tone(440.0, 16000, 1000, 8000.0).chunks(320) {
        let b64 = base64::engine::general_purpose::STANDARD
            .encode(switchboard::media::pcm::encode_s16le(frame));
        caller
            .send_json(
                json!({"play_audio": {"sample_rate": 16000, "sample_width": 16,
                "num_channels": 1, "duration": 0.02, "audio_content": b64}}),
            )
            .await;
    }
    let mut heard = Vec::new();
    let mut last_seq = 0u64;
    let mut last_chunk = 0u64;
    while heard.len() < 6000 {
        let Seen::Json(m) = conn.next().await else {
            panic!("closed")
        };
        assert_eq!(m["event"], "media", "{m}");
        assert_eq!(m["media"]["track"], "inbound");
        let seq: u64 = m["sequenceNumber"].as_str().unwrap().parse().unwrap();
        let chunk: u64 = m["media"]["chunk"].as_str().unwrap().parse().unwrap();
        assert!(seq > last_seq && chunk == last_chunk + 1, "{m}");
        let ts: u64 = m["media"]["timestamp"].as_str().unwrap().parse().unwrap();
        assert_eq!(ts, (chunk - 1) * 20, "timestamps count 20 ms per chunk");
        (last_seq, last_chunk) = (seq, chunk);
        let samples = twilio_media_samples(&m);
        assert_eq!(samples.len(), 160, "20 ms at 8 kHz");
        heard.extend(samples);
    }
    assert!(
        has_tone(&heard[1000..], 8000, 440.0, &[300.0, 600.0, 1000.0]),
        "the bot hears the caller's 440 Hz"
    );

    // The caller hangs up: the bot gets `stop`, then the close.
    caller.send_json(json!({"disconnect": {}})).await;
    match conn.next_control().await {
        Seen::Json(m) => {
            assert_eq!(m["event"], "stop", "{m}");
            assert_eq!(m["stop"]["callSid"], call["id"]);
        }
        Seen::Closed => panic!("closed without stop"),
    }
    assert!(matches!(conn.next_control().await, Seen::Closed));
    let call = app.wait_hangup("tw-order").await;
    assert_eq!(call["hangup_reason"], "normal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_reach_the_bot_as_dtmf() {
    let mut bot = TestBot::start().await;
    let app = app_with(bot.addr, "");
    let gw = Gateway::dial(&app, "tw-keys").await;
    let mut conn = bot.accept().await;
    gw.press("5").await;
    gw.press("#").await;
    let mut keys = Vec::new();
    while keys.len() < 2 {
        match conn.next_control().await {
            Seen::Json(m) if m["event"] == "dtmf" => {
                keys.push(m["dtmf"]["digit"].as_str().unwrap().to_owned())
            }
            Seen::Json(_) => {}
            Seen::Closed => panic!("closed"),
        }
    }
    assert_eq!(keys, ["5", "#"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seconds_of_bot_audio_at_once_play_at_real_time_and_the_mark_comes_back_after_them() {
    let mut bot = TestBot::start().await;
    let app = app_with(bot.addr, "");
    let mut caller = ws_caller(&app, "tw-mark").await;
    let mut conn = bot.accept().await;
    // Three seconds of 600 Hz in one message (more than `max_buffered_ms`), then a mark.
    let sent = Instant::now();
    conn.send_audio(&tone(600.0, 8000, 3000, 8000.0));
    conn.send_json(json!({"event": "mark", "streamSid": "MZ1", "mark": {"name": "said-it"}}));
    let mark = tokio::spawn(async move {
        loop {
            match conn.next_control().await {
                Seen::Json(m) if m["event"] == "mark" => return (m, sent.elapsed(), conn),
                Seen::Json(_) => {}
                Seen::Closed => panic!("closed before the mark came back"),
            }
        }
    });
    let (audio, times) = heard_until(&mut caller, |a, _| a.len() >= 8000 * 29 / 10).await;
    let spread = *times.last().unwrap() - times[0];
    assert!(
        spread >= Duration::from_millis(2500),
        "3 s of audio arrived over {spread:?}: paced, not at once"
    );
    assert!(has_tone(&audio, 8000, 600.0, &[440.0, 1000.0]));
    let (m, after, _conn) = mark.await.unwrap();
    assert_eq!(m["mark"]["name"], "said-it");
    assert!(
        after >= Duration::from_millis(2800),
        "the mark came back {after:?} after 3 s of audio was sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_stops_the_callers_queued_audio_and_returns_waiting_marks() {
    let mut bot = TestBot::start().await;
    let app = app_with(bot.addr, "");
    let mut caller = ws_caller(&app, "tw-clear").await;
    let mut conn = bot.accept().await;
    conn.send_audio(&tone(700.0, 8000, 6000, 8000.0));
    conn.send_json(json!({"event": "mark", "streamSid": "MZ1", "mark": {"name": "long"}}));
    // Half a second in, the bot barges in.
    heard_until(&mut caller, |a, _| a.len() >= 4000).await;
    let cleared = Instant::now();
    conn.send_json(json!({"event": "clear", "streamSid": "MZ1"}));
    heard_until(&mut caller, |_, v| v["signal"].get("kill_audio").is_some()).await;
    // What still arrives afterwards is at most what was in flight: well under the 5.5 s left.
    let mut after = 0usize;
    loop {
        match tokio::time::timeout(Duration::from_millis(500), caller.next()).await {
            Ok(WsEvent::Json(v)) if v.get("audio_output").is_some() => after += 160,
            Ok(WsEvent::Json(_)) => {}
            Ok(WsEvent::Close(c)) => panic!("closed {c:?}"),
            Err(_) => break,
        }
    }
    assert!(after < 8000, "{after} samples played after clear");
    loop {
        match conn.next_control().await {
            Seen::Json(m) if m["event"] == "mark" => {
                assert_eq!(m["mark"]["name"], "long");
                break;
            }
            Seen::Json(_) => {}
            Seen::Closed => panic!("closed"),
        }
    }
    assert!(cleared.elapsed() < Duration::from_secs(4));
    let call = app.call_by_reference("tw-clear").await;
    assert_eq!(call["status"], "progressing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_closing_its_socket_ends_the_call() {
    let mut bot = TestBot::start().await;
    let app = app_with(bot.addr, "");
    let mut caller = ws_caller(&app, "tw-close").await;
    let conn = bot.accept().await;
    conn.send_audio(&tone(600.0, 8000, 400, 8000.0));
    conn.close();
    // The caller hears the audio the bot sent before it left, then the end.
    let (audio, _) = heard_until(&mut caller, |_, v| v["signal"].get("end_call").is_some()).await;
    assert!(audio.len() >= 3000, "{} samples heard", audio.len());
    let call = app.wait_hangup("tw-close").await;
    assert_eq!(call["hangup_reason"], "normal", "{call}");
}

/// The bot sends `bad`; the call must fail with a detail containing `why`.
async fn bad_bot_message_fails_the_call(reference: &str, bad: Message, why: &str) {
    let mut bot = TestBot::start().await;
    let app = app_with(bot.addr, "");
    let mut gw = Gateway::dial(&app, reference).await;
    let conn = bot.accept().await;
    conn.send_raw(bad);
    let call = app.wait_hangup(reference).await;
    assert_eq!(call["hangup_reason"], "failed", "{call}");
    let detail = call["hangup_detail"].as_str().unwrap();
    assert!(detail.contains(why), "{detail}");
    // The caller is told on its own protocol.
    loop {
        match gw.next().await {
            Ok(Some(r))
                if r.r#type == switchboard::pb::smartivr::SmartIvrResponseType::CallEnd as i32 =>
            {
                break
            }
            Ok(Some(_)) => continue,
            other => panic!("expected CALL_END, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bot_messages_fail_the_call_with_why() {
    bad_bot_message_fails_the_call("tw-json", Message::Text("{not json".into()), "not JSON").await;
    bad_bot_message_fails_the_call(
        "tw-b64",
        Message::Text(r#"{"event":"media","media":{"payload":"@@@"}}"#.into()),
        "not base64",
    )
    .await;
    bad_bot_message_fails_the_call("tw-noevent", Message::Text("{}".into()), "no `event`").await;
    bad_bot_message_fails_the_call("tw-bin", Message::Binary(vec![1, 2, 3]), "binary").await;
    let huge = format!(
        r#"{{"event":"media","media":{{"payload":"{}"}}}}"#,
        "A".repeat(5 << 20)
    );
    bad_bot_message_fails_the_call("tw-huge", Message::Text(huge), "too large").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_bot_events_are_skipped() {
    let mut bot = TestBot::start().await;
    let app = app_with(bot.addr, "");
    let mut caller = ws_caller(&app, "tw-unknown").await;
    let conn = bot.accept().await;
    conn.send_json(json!({"event": "something-new", "streamSid": "MZ1"}));
    conn.send_audio(&tone(600.0, 8000, 300, 8000.0));
    let (audio, _) = heard_until(&mut caller, |a, _| a.len() >= 2000).await;
    assert!(has_tone(&audio, 8000, 600.0, &[440.0]));
    let call = app.call_by_reference("tw-unknown").await;
    assert_eq!(call["status"], "progressing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_bot_fails_the_call() {
    // A port nobody listens on.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let app = app_with(addr, "");
    let _gw = Gateway::dial(&app, "tw-down").await;
    let call = app.wait_hangup("tw-down").await;
    assert_eq!(call["hangup_reason"], "failed");
    assert!(
        call["hangup_detail"]
            .as_str()
            .unwrap()
            .contains("cannot reach bot"),
        "{call}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_that_goes_silent_fails_the_call() {
    // Accepts the upgrade, then neither reads nor writes (no pongs).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            if let Ok(ws) = tokio_tungstenite::accept_async(socket).await {
                held.push(ws);
            }
        }
    });
    let app = app_with(addr, "bot_timeout_ms = 1000");
    let _gw = Gateway::dial(&app, "tw-silent").await;
    let started = Instant::now();
    let call = app.wait_hangup("tw-silent").await;
    assert_eq!(call["hangup_reason"], "failed");
    assert!(
        call["hangup_detail"]
            .as_str()
            .unwrap()
            .contains("sent nothing"),
        "{call}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_switch_echo_bot_answers_a_call() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(switchboard::bots::twilio_echo::serve(
        listener,
        std::future::pending(),
    ));
    let app = app_with(addr, "");
    let mut caller = ws_caller(&app, "tw-echo").await;
    let spoken = tone(500.0, 16000, 1000, 8000.0);
    for frame in spoken.chunks(320) {
        let b64 = base64::engine::general_purpose::STANDARD
            .encode(switchboard::media::pcm::encode_s16le(frame));
        caller
            .send_json(
                json!({"play_audio": {"sample_rate": 16000, "sample_width": 16,
                "num_channels": 1, "duration": 0.02, "audio_content": b64}}),
            )
            .await;
    }
    let (audio, _) = heard_until(&mut caller, |a, _| a.len() >= 6000).await;
    assert!(
        has_tone(&audio[1000..], 8000, 500.0, &[300.0, 800.0]),
        "the caller hears its own 500 Hz back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toward_a_whole_utterance_caller_marks_wait_for_the_gathered_utterance() {
    let mut bot = TestBot::start().await;
    let app = app_with(bot.addr, "");
    let mut gw = Gateway::dial(&app, "tw-ivr-mark").await;
    let mut conn = bot.accept().await;
    // 400 ms of tone in 20 ms messages with a mark after each, as some bots send them.
    let sent = Instant::now();
    for (i, chunk) in tone(600.0, 8000, 400, 8000.0).chunks(160).enumerate() {
        conn.send_audio(chunk);
        conn.send_json(
            json!({"event": "mark", "streamSid": "MZ1", "mark": {"name": format!("m{i}")}}),
        );
    }
    // One utterance, not twenty.
    let r = gw
        .expect(switchboard::pb::smartivr::SmartIvrResponseType::ResultTts)
        .await;
    let heard = switchboard::media::wav::parse(&r.audio_content)
        .expect("WAV")
        .samples;
    assert!(
        heard.len() >= 3000,
        "{} samples in the utterance",
        heard.len()
    );
    assert!(has_tone(&heard, 8000, 600.0, &[440.0, 1000.0]));
    let mut names = Vec::new();
    while names.len() < 20 {
        match conn.next_control().await {
            Seen::Json(m) if m["event"] == "mark" => {
                names.push(m["mark"]["name"].as_str().unwrap().to_owned())
            }
            Seen::Json(_) => {}
            Seen::Closed => panic!("closed"),
        }
    }
    names.sort_by_key(|n| n[1..].parse::<u32>().unwrap());
    let expected: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    assert_eq!(names, expected, "every mark came back once");
    assert!(
        sent.elapsed() >= Duration::from_millis(380),
        "marks came back {:?} after 400 ms of audio was sent",
        sent.elapsed()
    );
}
