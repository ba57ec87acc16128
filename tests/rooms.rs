//! Conference rooms against the real switch: live-call WebSocket callers and a Ringover stream
//! in one room hear each other (each a tone of its own, told apart by frequency) and never
//! themselves; mute, the participant limit, leave and hang-up, bots in rooms, the flow's
//! `conference_join`, workspace isolation and rooms kept across a restart; passwords (API and
//! keyed by a caller), the waiting room, and recordings with a track per participant; the
//! flow's `connect` to bots: ringback, parallel ringing and the bridge.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::*;
use tokio_tungstenite::tungstenite::Message;

const CONFIG: &str = r#"
[auth]
live_call_tokens = ["t"]

[bots.lobby]
kind = "flow"
actions = [
  { type = "answer" },
  { type = "sleep", duration = 600000 },
]

[bots.confer]
kind = "flow"
actions = [
  { type = "conference_join", conference_id = "standup" },
  { type = "talk", text = "You left the room." },
  { type = "sleep", duration = 600000 },
]

[bots.beeper]
kind = "flow"
actions = [
  { type = "play", stream_urls = ["tone:1300:60000"] },
]

[[routes]]
bot = "confer"
match = { hotline = "confer" }
[[routes]]
bot = "lobby"
"#;

/// What a caller in a room collected.
struct Heard {
    samples: Vec<i16>,
    rate: u32,
}

/// 20 ms of a `freq` tone at `rate`, frame `i` of a continuous tone.
fn tone_frame_at(freq: f64, rate: u32, i: usize) -> Vec<i16> {
    let n = (rate / 50) as usize;
    (0..n)
        .map(|k| {
            let t = (i * n + k) as f64 / rate as f64;
            (6000.0 * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16
        })
        .collect()
}

/// Whether the caller heard every tone of `others` and not its own `own`.
fn hears_others_not_self(heard: &Heard, own: f64, others: &[f64]) -> Result<(), String> {
    let own_power = tone_power(&heard.samples, heard.rate, own);
    for &f in others {
        let p = tone_power(&heard.samples, heard.rate, f);
        if p < 1.0e5 || p < 10.0 * own_power {
            return Err(format!(
                "tone {f} Hz: power {p:.0} (own {own} Hz: {own_power:.0}) in {} samples",
                heard.samples.len()
            ));
        }
    }
    Ok(())
}

/// The first room event on an SSE stream: its name and room id.
async fn first_room_event(mut r: reqwest::Response) -> (String, String) {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let chunk = tokio::time::timeout_at(deadline, r.chunk())
            .await
            .expect("a room event in time")
            .expect("stream readable")
            .expect("stream open");
        text.push_str(&String::from_utf8_lossy(&chunk));
        let mut event = None;
        for line in text.lines() {
            if let Some(name) = line.strip_prefix("event: ") {
                event = Some(name.to_owned());
            } else if let Some(data) = line.strip_prefix("data: ") {
                if let Some(name) = event.take().filter(|n| n.starts_with("room_")) {
                    let v: Value = serde_json::from_str(data).expect("JSON data");
                    return (name, v["room_id"].as_str().expect("room id").to_owned());
                }
            }
        }
    }
}

async fn create_room(app: &TestApp, body: Value) -> String {
    let (status, room) = app.post_body("/api/v1/calls/rooms", &body).await;
    assert_eq!(status, 201, "{room}");
    room["room_id"].as_str().expect("room id").to_owned()
}

async fn join(app: &TestApp, room: &str, body: Value) -> (u16, Value) {
    app.post_body(&format!("/api/v1/calls/rooms/{room}/join"), &body)
        .await
}

/// Sends `frame(i)` every 20 ms and collects the audio `heard` finds in each text frame, until
/// `stop` says so (or the socket ends).
async fn talk_and_listen(
    mut ws: WsStream,
    frame: impl Fn(usize) -> Message,
    heard: impl Fn(&Value) -> Option<Vec<i16>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> (WsStream, Vec<i16>) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut audio = Vec::new();
    let mut i = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                ws.send(frame(i)).await.expect("send");
                i += 1;
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).expect("JSON");
                    audio.extend(heard(&v).unwrap_or_default());
                }
                Some(Ok(_)) => {}
                _ => break,
            },
            _ = stop.changed() => break,
        }
    }
    (ws, audio)
}

/// A WebSocket caller that sends its tone in real time (16 kHz `play_audio`) and collects what
/// it hears (8 kHz), until `stop` says so.
async fn ws_talker(
    c: WsCaller,
    freq: f64,
    stop: tokio::sync::watch::Receiver<bool>,
) -> (WsCaller, Vec<i16>) {
    let frame = move |i| Message::Text(play_audio(&tone_frame_at(freq, 16000, i), 16000));
    let (ws, audio) = talk_and_listen(c.ws, frame, audio_output, stop).await;
    (WsCaller { ws }, audio)
}

/// A Ringover media server sending its 8 kHz tone and collecting `streamAudio` utterances.
async fn ringover_talker(
    c: RingoverClient,
    freq: f64,
    stop: tokio::sync::watch::Receiver<bool>,
) -> (RingoverClient, Vec<i16>) {
    let frame = move |i| {
        Message::Binary(switchboard::media::pcm::encode_s16le(&tone_frame_at(
            freq, 8000, i,
        )))
    };
    let heard = |v: &Value| (v["type"] == "streamAudio").then(|| stream_audio_samples(v));
    let (ws, audio) = talk_and_listen(c.ws, frame, heard, stop).await;
    (RingoverClient { ws }, audio)
}

async fn ws_caller(app: &TestApp, reference: &str, hotline: &str) -> (WsCaller, String) {
    let mut c = WsCaller::connect(
        app,
        &format!("/live-call/websocket/{reference}/+8490000{reference}?token=t"),
    )
    .await
    .expect("upgrade");
    c.send_json(initial_info(reference, hotline)).await;
    let call = app
        .wait_for_call(reference, |c| c["status"] == "progressing")
        .await;
    (c, call["id"].as_str().expect("id").to_owned())
}

/// Waits until `check` holds for the room's participants.
async fn wait_participants(
    app: &TestApp,
    room: &str,
    check: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, v) = app
            .get_json(&format!("/api/v1/calls/rooms/{room}/participants"))
            .await;
        assert_eq!(status, 200, "{v}");
        let list = v["participants"].as_array().cloned().unwrap_or_default();
        if check(&list) {
            return list;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "participants never matched: {v}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_web_callers_and_a_ringover_stream_hear_each_other_but_not_themselves() {
    let app = spawn_app(&format!("{CONFIG}\n[media]\nutterance_gap_ms = 100\n"));
    let room = create_room(&app, json!({ "name": "standup", "max_participants": 4 })).await;
    let freqs = [500.0, 700.0, 900.0, 1100.0];
    let mut ws = Vec::new();
    for (i, reference) in ["ra", "rb", "rc"].iter().enumerate() {
        let (c, id) = ws_caller(&app, reference, "lobby").await;
        let (status, p) = join(&app, &room, json!({ "call_id": id })).await;
        assert_eq!(status, 200, "{p}");
        assert_eq!(p["role"], if i == 0 { "host" } else { "participant" });
        ws.push(c);
    }
    let ro = RingoverClient::dial(&app, json!({ "call_id": "rro" })).await;
    let ro_call = app
        .wait_for_call("rro", |c| c["status"] == "progressing")
        .await;
    let (status, p) = join(&app, &room, json!({ "call_id": ro_call["id"] })).await;
    assert_eq!(status, 200, "{p}");

    // A fifth is refused: the room is full.
    let (_extra, extra_id) = ws_caller(&app, "rx", "lobby").await;
    let (status, body) = join(&app, &room, json!({ "call_id": extra_id })).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("full"),
        "{body}"
    );

    let call = app.call_by_reference("ra").await;
    assert_eq!(call["type"], "conference");
    assert_eq!(call["room_id"], room.as_str());

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for (c, f) in ws.into_iter().zip(freqs) {
        tasks.push(tokio::spawn(ws_talker(c, f, stop_rx.clone())));
    }
    let ro_task = tokio::spawn(ringover_talker(ro, freqs[3], stop_rx.clone()));
    // Three seconds of talking (real-time audio cannot be hurried).
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop_tx.send(true).expect("stop");
    for (i, task) in tasks.into_iter().enumerate() {
        let (_c, heard) = task.await.expect("talker");
        // Skip the first half second (jitter buffers filling).
        let heard = Heard {
            samples: heard.get(4000..).unwrap_or_default().to_vec(),
            rate: 8000,
        };
        let others: Vec<f64> = freqs.iter().copied().filter(|f| *f != freqs[i]).collect();
        hears_others_not_self(&heard, freqs[i], &others)
            .unwrap_or_else(|e| panic!("web caller {i}: {e}"));
    }
    let (_ro, heard) = ro_task.await.expect("ringover talker");
    let heard = Heard {
        samples: heard,
        rate: 8000,
    };
    hears_others_not_self(&heard, freqs[3], &freqs[..3])
        .unwrap_or_else(|e| panic!("ringover: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mute_silences_one_and_leave_and_hangup_remove_at_once() {
    let app = spawn_app(CONFIG);
    let room = create_room(&app, json!({ "name": "mute-test" })).await;
    let (a, a_id) = ws_caller(&app, "ma", "lobby").await;
    let (b, b_id) = ws_caller(&app, "mb", "lobby").await;
    let (c, c_id) = ws_caller(&app, "mc", "lobby").await;
    for id in [&a_id, &b_id, &c_id] {
        let (status, p) = join(&app, &room, json!({ "call_id": id })).await;
        assert_eq!(status, 200, "{p}");
    }
    let (status, p) = app
        .post_json(&format!(
            "/api/v1/calls/rooms/{room}/participants/{b_id}/mute"
        ))
        .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["muted"], true);
    assert_eq!(p["audio"], false);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ta = tokio::spawn(ws_talker(a, 600.0, stop_rx.clone()));
    let tb = tokio::spawn(ws_talker(b, 1000.0, stop_rx.clone()));
    let tc = tokio::spawn(ws_talker(c, 1400.0, stop_rx.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_tx.send(true).expect("stop");
    let (a, heard_a) = ta.await.expect("a");
    let (_b, _) = tb.await.expect("b");
    let (c, _) = tc.await.expect("c");
    let heard_a = &heard_a[heard_a.len().min(4000)..];
    // A hears C but not muted B.
    assert!(tone_power(heard_a, 8000, 1400.0) > 1.0e5);
    assert!(
        tone_power(heard_a, 8000, 1000.0) < tone_power(heard_a, 8000, 1400.0) / 100.0,
        "muted B is still heard"
    );

    // Leave: C is out at once and back with its bot.
    let (status, p) = app
        .post_body(
            &format!("/api/v1/calls/rooms/{room}/leave"),
            &json!({ "call_id": c_id }),
        )
        .await;
    assert_eq!(status, 200, "{p}");
    let list = wait_participants(&app, &room, |l| l.len() == 2).await;
    assert!(list.iter().all(|p| p["call_id"] != c_id.as_str()));
    let call = app.call_by_reference("mc").await;
    assert_eq!(call["type"], "flow");
    assert_eq!(call["status"], "progressing");
    drop(c);

    // Hang-up: A's call ends and it is gone from the room.
    let mut a = a;
    a.send_json(json!({ "disconnect": {} })).await;
    app.wait_hangup("ma").await;
    let list = wait_participants(&app, &room, |l| l.len() == 1).await;
    assert_eq!(list[0]["call_id"], b_id.as_str());

    // Leaving a room one is not in is a 404.
    let (status, body) = app
        .post_body(
            &format!("/api/v1/calls/rooms/{room}/leave"),
            &json!({ "call_id": a_id }),
        )
        .await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_in_the_room_is_heard_and_its_call_is_recorded() {
    let dir = temp_data_dir();
    let tone = dir.join("tone.wav");
    let samples: Vec<i16> = (0..16000 * 20)
        .map(|i| (6000.0 * (2.0 * std::f64::consts::PI * 1300.0 * i as f64 / 16000.0).sin()) as i16)
        .collect();
    std::fs::write(&tone, switchboard::media::wav::encode(&samples, 16000, 1)).expect("wav");
    let config = CONFIG.replace("tone:1300:60000", &tone.display().to_string());
    let app = spawn_app(&config);
    let room = create_room(&app, json!({ "name": "with-bot" })).await;
    let (a, a_id) = ws_caller(&app, "ba", "lobby").await;
    let (status, _) = join(&app, &room, json!({ "call_id": a_id })).await;
    assert_eq!(status, 200);
    let (status, bot) = join(&app, &room, json!({ "bot": "beeper" })).await;
    assert_eq!(status, 200, "{bot}");
    assert_eq!(bot["role"], "bot");
    assert_eq!(bot["user_id"], "beeper");
    let bot_call = bot["call_id"].as_str().expect("bot call id").to_owned();

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ta = tokio::spawn(ws_talker(a, 600.0, stop_rx));
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_tx.send(true).expect("stop");
    let (_a, heard) = ta.await.expect("a");
    let heard = &heard[heard.len().min(4000)..];
    assert!(
        has_tone(heard, 8000, 1300.0, &[600.0]),
        "the bot's tone is not heard ({} samples)",
        heard.len()
    );

    let (status, record) = app.get_json(&format!("/api/v1/calls/{bot_call}")).await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["call"]["ingress"], "room");
    assert_eq!(record["call"]["bot"], "beeper");
    assert_eq!(record["type"], "conference");

    // Removing the bot hangs its call up.
    let (status, _) = app
        .post_body(
            &format!("/api/v1/calls/rooms/{room}/leave"),
            &json!({ "call_id": bot_call }),
        )
        .await;
    assert_eq!(status, 200);
    app.wait_hangup_by_id(&bot_call).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conference_join_puts_the_caller_in_a_named_room_and_the_flow_goes_on_when_it_leaves() {
    let app = spawn_app(CONFIG);
    let (mut c, id) = {
        let mut c = WsCaller::connect(&app, "/live-call/websocket/cj/+84900000009?token=t")
            .await
            .expect("upgrade");
        c.send_json(initial_info("cj", "confer")).await;
        let call = app
            .wait_for_call("cj", |c| c["room_id"] != Uuid::nil().to_string())
            .await;
        (c, call["id"].as_str().expect("id").to_owned())
    };
    let call = app.call_by_reference("cj").await;
    assert_eq!(call["type"], "conference");
    let room = call["room_id"].as_str().expect("room").to_owned();
    let (status, v) = app.get_json(&format!("/api/v1/calls/rooms/{room}")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["name"], "standup");
    assert_eq!(v["type"], "temporary");
    assert_eq!(v["current_participants"], 1);
    assert_eq!(v["workspace"], "ws-1");

    let (status, _) = app
        .post_body(
            &format!("/api/v1/calls/rooms/{room}/leave"),
            &json!({ "call_id": id }),
        )
        .await;
    assert_eq!(status, 200);
    // The flow goes on: "You left the room." is spoken to the caller.
    listen_until(&mut c, |a| {
        switchboard::media::pcm::rms(a) >= 300.0 && a.len() >= 4000
    })
    .await;
    let call = app.call_by_reference("cj").await;
    assert_eq!(call["type"], "flow");
    let action = &call["action"];
    assert_eq!(action["type"], "talk", "{call}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_are_isolated_by_workspace_and_bad_requests_are_clear() {
    let config = CONFIG.replace(
        "live_call_tokens = [\"t\"]",
        "live_call_tokens = [\"t\"]\napi_keys = [{ key = \"k0\" }, { key = \"k1\", workspace = \"ws-1\" }, { key = \"k2\", workspace = \"ws-2\" }]",
    );
    let mut app1 = spawn_app(&config);
    let events = |key: &'static str| app1.http.get(app1.url("/events")).bearer_auth(key).send();
    let events1 = events("k1").await.expect("events");
    let events2 = events("k2").await.expect("events");
    app1.key = Some("k1".into());
    let room = create_room(&app1, json!({ "name": "private", "type": "persistent" })).await;
    app1.key = Some("k2".into());
    let other = create_room(&app1, json!({ "name": "theirs" })).await;
    // Each key's event stream shows its own workspace's room first.
    assert_eq!(
        first_room_event(events1).await,
        ("room_created".to_owned(), room.clone())
    );
    assert_eq!(
        first_room_event(events2).await,
        ("room_created".to_owned(), other)
    );
    app1.key = Some("k1".into());
    let (status, v) = app1.get_json(&format!("/api/v1/calls/rooms/{room}")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["workspace"], "ws-1");
    assert_eq!(v["type"], "persistent");

    app1.key = Some("k2".into());
    let (status, v) = app1.get_json(&format!("/api/v1/calls/rooms/{room}")).await;
    assert_eq!(status, 404, "{v}");
    let (status, v) = join(&app1, &room, json!({ "bot": "beeper" })).await;
    assert_eq!(status, 404, "{v}");

    app1.key = Some("k1".into());
    let (status, v) = join(&app1, &room, json!({})).await;
    assert_eq!(status, 400, "{v}");
    let (status, v) = join(&app1, &room, json!({ "call_id": "nope" })).await;
    assert_eq!(status, 400, "{v}");
    let (status, v) = join(
        &app1,
        &room,
        json!({ "destination": { "type": "tel", "target": "+15550100" } }),
    )
    .await;
    assert_eq!(status, 502, "{v}");
    let (status, v) = join(&app1, &room, json!({ "bot": "no-such-bot" })).await;
    assert_eq!(status, 409, "{v}");
    let (status, v) = app1.get_json("/api/v1/calls/rooms/not-a-uuid").await;
    assert_eq!(status, 400, "{v}");
    let (status, v) = app1
        .post_body(
            "/api/v1/calls/rooms",
            &json!({ "name": "x", "max_participants": 100000 }),
        )
        .await;
    assert_eq!(status, 409, "{v}");

    // A key that sees every workspace still cannot put a call in another workspace's room.
    app1.key = Some("k0".into());
    let (_caller, call_id) = ws_caller(&app1, "iso-1", "lobby").await;
    let elsewhere = create_room(&app1, json!({ "name": "b-room", "workspace": "ws-2" })).await;
    let (status, v) = join(&app1, &elsewhere, json!({ "call_id": call_id })).await;
    assert_eq!(status, 409, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("workspace"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_room_survives_a_restart_in_the_store() {
    let dir = temp_data_dir();
    let store = store_toml(&dir, &sqlite_url(&dir));
    let config = format!("{store}{CONFIG}");
    let room = {
        let app = spawn_app(&config);
        let room = create_room(&app, json!({ "name": "weekly", "type": "persistent" })).await;
        assert!(app.handle.store.sync(PATIENCE).await);
        drop(app);
        room
    };
    let app = spawn_app(&config);
    let (status, v) = app.get_json(&format!("/api/v1/calls/rooms/{room}")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["name"], "weekly");
    assert_eq!(v["current_participants"], 0);
    // Joining reopens it.
    let (_c, id) = ws_caller(&app, "pr", "lobby").await;
    let (status, p) = join(&app, &room, json!({ "call_id": id })).await;
    assert_eq!(status, 200, "{p}");
    let (_, v) = app.get_json(&format!("/api/v1/calls/rooms/{room}")).await;
    assert_eq!(v["current_participants"], 1);
}

use uuid::Uuid;

const BRIDGE_CONFIG: &str = r#"
[auth]
live_call_tokens = ["t"]

[bots.front]
kind = "flow"
actions = [
  { type = "connect", destinations = [{ type = "agent", target = "beeper" }] },
  { type = "talk", text = "Welcome back." },
  { type = "sleep", duration = 600000 },
]

[bots.beeper]
kind = "flow"
actions = [
  { type = "play", stream_urls = ["TONE"] },
  { type = "hangup" },
]

[[routes]]
bot = "front"
"#;

/// A WAV of `seconds` of a 1300 Hz tone at 16 kHz under `dir`.
fn tone_file(dir: &std::path::Path, seconds: usize) -> String {
    let path = dir.join(format!("tone-{seconds}.wav"));
    let samples: Vec<i16> = (0..16000 * seconds)
        .map(|i| (6000.0 * (2.0 * std::f64::consts::PI * 1300.0 * i as f64 / 16000.0).sin()) as i16)
        .collect();
    std::fs::write(&path, switchboard::media::wav::encode(&samples, 16000, 1)).expect("wav");
    path.display().to_string()
}

/// Collects a WebSocket caller's audio until `enough` says so.
async fn listen_until(c: &mut WsCaller, enough: impl Fn(&[i16]) -> bool) -> Vec<i16> {
    let mut audio = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !enough(&audio) {
        assert!(tokio::time::Instant::now() < deadline, "never heard enough");
        match c.next().await {
            WsEvent::Json(v) => audio.extend(audio_output(&v).unwrap_or_default()),
            WsEvent::Close(code) => panic!("closed {code:?}"),
        }
    }
    audio
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_a_bot_bridges_a_chained_call_and_the_flow_goes_on_when_it_ends() {
    let dir = temp_data_dir();
    let app = spawn_app(&BRIDGE_CONFIG.replace("TONE", &tone_file(&dir, 1)));
    let mut c = WsCaller::connect(&app, "/live-call/websocket/br1/+84900000011?token=t")
        .await
        .expect("upgrade");
    c.send_json(initial_info("br1", "front")).await;
    // The bot's tone comes through the bridge (after a moment of ringback)…
    let heard = listen_until(&mut c, |a| {
        a.len() >= 1600 && tone_power(&a[a.len() - 1600..], 8000, 1300.0) > 2.0e6
    })
    .await;
    let heard = &heard[heard.len() - 1600..];
    assert!(has_tone(heard, 8000, 1300.0, &[600.0]));
    let master = app.call_by_reference("br1").await;
    let chained = master["chained_call_ids"]
        .as_array()
        .expect("chained ids")
        .clone();
    assert_eq!(chained.len(), 1, "{master}");
    let child_id = chained[0].as_str().unwrap().to_owned();
    let (_, child) = app.get_json(&format!("/calls/{child_id}")).await;
    assert_eq!(child["master_call_id"], master["id"]);
    assert_eq!(child["bot"], "beeper");
    assert_eq!(child["direction"], "outgoing");
    // …and when the bot hangs up, the caller's flow goes on ("Welcome back.").
    app.wait_hangup_by_id(&child_id).await;
    app.wait_for_call("br1", |c| {
        c["action"]["type"] == "talk" && c["type"] == "flow"
    })
    .await;
    // What was on its way before the bridge closed may still come first: wait for speech.
    let tone = tone_power(heard, 8000, 1300.0);
    listen_until(&mut c, |a| {
        let last = &a[a.len().saturating_sub(4000)..];
        last.len() == 4000
            && switchboard::media::pcm::rms(last) > 300.0
            && tone_power(last, 8000, 1300.0) < tone / 10.0
    })
    .await;
    c.send_json(json!({ "disconnect": {} })).await;
    app.wait_hangup("br1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_up_the_master_hangs_up_the_bridged_bot_call() {
    let dir = temp_data_dir();
    let app = spawn_app(&BRIDGE_CONFIG.replace("TONE", &tone_file(&dir, 30)));
    let mut c = WsCaller::connect(&app, "/live-call/websocket/br2/+84900000012?token=t")
        .await
        .expect("upgrade");
    c.send_json(initial_info("br2", "front")).await;
    listen_until(&mut c, |a| {
        tone_power(a, 8000, 1300.0) > 1.0e5 && a.len() > 4000
    })
    .await;
    let master = app.call_by_reference("br2").await;
    let child_id = master["chained_call_ids"][0]
        .as_str()
        .expect("a chained call")
        .to_owned();
    c.send_json(json!({ "disconnect": {} })).await;
    let master = app.wait_hangup("br2").await;
    assert_eq!(master["hangup_by"], "remote");
    let child = app.wait_hangup_by_id(&child_id).await;
    assert_eq!(child["hangup_reason"], "normal", "{child}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smartivr_caller_in_a_room_hears_the_mix_as_result_tts_utterances() {
    use switchboard::pb::smartivr::SmartIvrResponseType as T;
    let app = spawn_app(CONFIG);
    let room = create_room(&app, json!({ "name": "ivr-room" })).await;
    let mut gw = Gateway::dial(&app, "ivr-in-room").await;
    let call = app
        .wait_for_call("ivr-in-room", |c| c["status"] == "progressing")
        .await;
    let (status, p) = join(&app, &room, json!({ "call_id": call["id"] })).await;
    assert_eq!(status, 200, "{p}");
    let (web, web_id) = ws_caller(&app, "ivr-peer", "lobby").await;
    let (status, p) = join(&app, &room, json!({ "call_id": web_id })).await;
    assert_eq!(status, 200, "{p}");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let talker = tokio::spawn(ws_talker(web, 700.0, stop_rx));
    // The web caller's tone reaches the gateway as whole utterances (RESULT_TTS WAVs).
    let mut heard = Vec::new();
    let mut utterances = 0;
    while heard.len() < 16000 {
        let r = gw.next().await.expect("stream open").expect("a response");
        if r.r#type == T::ResultTts as i32 {
            let wav = switchboard::media::wav::parse(&r.audio_content).expect("a WAV");
            assert_eq!(wav.rate, 8000);
            utterances += 1;
            heard.extend(wav.samples);
        }
    }
    stop_tx.send(true).expect("stop");
    talker.await.expect("talker");
    assert!(
        utterances >= 2,
        "the mix comes as utterances of at most a second"
    );
    assert!(
        has_tone(&heard, 8000, 700.0, &[1300.0]),
        "the web caller is heard"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_is_recorded_as_one_wav_of_its_mix() {
    let app = spawn_app(CONFIG);
    let room = create_room(&app, json!({ "name": "recorded" })).await;
    let (a, a_id) = ws_caller(&app, "rec-a", "lobby").await;
    let (b, b_id) = ws_caller(&app, "rec-b", "lobby").await;
    for id in [&a_id, &b_id] {
        let (status, p) = join(&app, &room, json!({ "call_id": id })).await;
        assert_eq!(status, 200, "{p}");
    }
    let (status, started) = app
        .post_json(&format!("/api/v1/calls/rooms/{room}/record/start"))
        .await;
    assert_eq!(status, 201, "{started}");
    let recording = started["recording_id"].as_str().expect("id").to_owned();
    let (_, v) = app.get_json(&format!("/api/v1/calls/rooms/{room}")).await;
    assert_eq!(v["recording"], true, "{v}");
    let (status, again) = app
        .post_json(&format!("/api/v1/calls/rooms/{room}/record/start"))
        .await;
    assert_eq!(status, 409, "{again}");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ta = tokio::spawn(ws_talker(a, 500.0, stop_rx.clone()));
    let tb = tokio::spawn(ws_talker(b, 900.0, stop_rx));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, stopped) = app
        .post_json(&format!("/api/v1/calls/rooms/{room}/record/stop"))
        .await;
    assert_eq!(status, 200, "{stopped}");
    assert_eq!(stopped["recording_id"], recording.as_str());
    stop_tx.send(true).expect("stop");
    ta.await.expect("a");
    tb.await.expect("b");

    let path = format!("/api/v1/calls/rooms/{room}/recordings/{recording}");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let wav = loop {
        let r = app.http.get(app.url(&path)).send().await.expect("GET");
        if r.status() == 200 {
            break r.bytes().await.expect("body");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "recording never ready: {}",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (rate, channels, samples) = wav_samples(&wav);
    assert_eq!((rate, channels), (16000, 1));
    assert!(samples.len() > 8000, "{} samples", samples.len());
    let both = tone_power(&samples, 16000, 500.0).min(tone_power(&samples, 16000, 900.0));
    assert!(both > 1.0e5, "both callers are in the recording");
    let (status, list) = app
        .get_json(&format!("/api/v1/calls/rooms/{room}/recordings"))
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        list["recordings"][0]["recording_id"],
        recording.as_str(),
        "{list}"
    );
    assert_eq!(
        list["recordings"][0]["download_url"],
        path.as_str(),
        "{list}"
    );

    // A room that does not allow recording says so.
    let closed = create_room(
        &app,
        json!({ "name": "private", "settings": { "allow_recording": false } }),
    )
    .await;
    let (status, v) = app
        .post_json(&format!("/api/v1/calls/rooms/{closed}/record/start"))
        .await;
    assert_eq!(status, 409, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("allow_recording"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_with_a_password_lets_in_only_calls_that_give_it() {
    let app = spawn_app(CONFIG);
    // The password's shape is checked, and it goes with `require_password` only.
    for (body, why) in [
        (
            json!({ "name": "v", "settings": { "require_password": true } }),
            "no password",
        ),
        (
            json!({ "name": "v", "settings": { "require_password": true }, "password": "12ab" }),
            "not digits",
        ),
        (
            json!({ "name": "v", "settings": { "require_password": true }, "password": "" }),
            "empty",
        ),
        (json!({ "name": "v", "password": "1234" }), "not required"),
    ] {
        let (status, v) = app.post_body("/api/v1/calls/rooms", &body).await;
        assert_eq!(status, 400, "{why}: {v}");
        assert!(v["error"]["message"].is_string(), "{v}");
    }
    let body =
        json!({ "name": "vault", "settings": { "require_password": true }, "password": "2468" });
    let (status, created) = app.post_body("/api/v1/calls/rooms", &body).await;
    assert_eq!(status, 201, "{created}");
    assert!(!created.to_string().contains("2468"), "{created}");
    assert_eq!(created["settings"]["require_password"], true);
    let room = created["room_id"].as_str().expect("room id").to_owned();
    let (_, v) = app.get_json(&format!("/api/v1/calls/rooms/{room}")).await;
    assert!(!v.to_string().contains("2468"), "{v}");

    let (_c, id) = ws_caller(&app, "pw-1", "lobby").await;
    let (status, v) = join(&app, &room, json!({ "call_id": id })).await;
    assert_eq!(status, 403, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("needs a password"),
        "{v}"
    );
    let (status, v) = join(&app, &room, json!({ "call_id": id, "password": "1111" })).await;
    assert_eq!(status, 403, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("wrong password"),
        "{v}"
    );
    let (status, v) = join(&app, &room, json!({ "bot": "beeper", "password": "2468" })).await;
    assert_eq!(status, 400, "{v}");
    let (status, p) = join(&app, &room, json!({ "call_id": id, "password": "2468" })).await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["status"], "joined");
    // Bots are not asked for it.
    let (status, p) = join(&app, &room, json!({ "bot": "beeper" })).await;
    assert_eq!(status, 200, "{p}");
}

const PASSWORD_CONFIG: &str = r#"
[bots.vault]
kind = "flow"
actions = [
  { type = "conference_join", conference_id = "vault" },
  { type = "talk", text = "The room is not for you." },
  { type = "sleep", duration = 600000 },
]

[[routes]]
bot = "vault"
"#;

/// Waits for the flow's password prompt (a `streamAudio` utterance), then keys `keys`.
async fn key_after_prompt(c: &mut RingoverClient, keys: &str) {
    loop {
        let v = c.next().await.json();
        if v["type"] == "streamAudio" && stream_audio_samples(&v).len() > 4000 {
            break;
        }
    }
    for key in keys.chars() {
        c.send_text(&json!({ "event": "dtmf", "digit": key.to_string() }).to_string())
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conference_join_asks_for_the_password_by_keys_and_gives_up_after_three_tries() {
    let app = spawn_app(PASSWORD_CONFIG);
    let body =
        json!({ "name": "vault", "settings": { "require_password": true }, "password": "4321" });
    let room = create_room(&app, body).await;

    // A wrong password, then the right one: the caller is in.
    let mut a = RingoverClient::dial(&app, json!({ "call_id": "pw-a" })).await;
    key_after_prompt(&mut a, "99#").await;
    key_after_prompt(&mut a, "4321#").await;
    let call = app
        .wait_for_call("pw-a", |c| c["room_id"] == room.as_str())
        .await;
    assert_eq!(call["type"], "conference", "{call}");
    let list = wait_participants(&app, &room, |l| l.len() == 1).await;
    assert_eq!(list[0]["call_id"], call["id"]);

    // Three wrong passwords: the flow goes on without the room.
    let mut b = RingoverClient::dial(&app, json!({ "call_id": "pw-b" })).await;
    for _ in 0..3 {
        key_after_prompt(&mut b, "1#").await;
    }
    let call = app
        .wait_for_call("pw-b", |c| c["action"]["type"] == "talk")
        .await;
    assert_eq!(call["type"], "flow", "{call}");
    assert_eq!(call["room_id"], Uuid::nil().to_string(), "{call}");
    let list = wait_participants(&app, &room, |l| l.len() == 1).await;
    assert_ne!(list[0]["call_id"], call["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_room_keeps_callers_out_of_the_mix_until_admitted() {
    let app = spawn_app(CONFIG);
    let room = create_room(
        &app,
        json!({ "name": "lobby-room", "settings": { "waiting_room": true } }),
    )
    .await;
    let (a, a_id) = ws_caller(&app, "wr-a", "lobby").await;
    let (b, b_id) = ws_caller(&app, "wr-b", "lobby").await;
    for id in [&a_id, &b_id] {
        let (status, p) = join(&app, &room, json!({ "call_id": id })).await;
        assert_eq!(status, 200, "{p}");
        assert_eq!(p["status"], "waiting", "{p}");
    }
    let list = wait_participants(&app, &room, |l| l.len() == 2).await;
    assert!(list.iter().all(|p| p["status"] == "waiting"), "{list:?}");

    // Waiting, they neither hear nor are heard.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ta = tokio::spawn(ws_talker(a, 600.0, stop_rx.clone()));
    let tb = tokio::spawn(ws_talker(b, 1000.0, stop_rx));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop_tx.send(true).expect("stop");
    let (a, heard_a) = ta.await.expect("a");
    let (b, heard_b) = tb.await.expect("b");
    assert!(tone_power(&heard_a, 8000, 1000.0) < 1.0e4, "A hears B");
    assert!(tone_power(&heard_b, 8000, 600.0) < 1.0e4, "B hears A");

    // Admitted, they hear each other.
    for id in [&a_id, &b_id] {
        let (status, p) = app
            .post_json(&format!(
                "/api/v1/calls/rooms/{room}/participants/{id}/admit"
            ))
            .await;
        assert_eq!(status, 200, "{p}");
        assert_eq!(p["status"], "joined", "{p}");
    }
    let (status, v) = app
        .post_json(&format!(
            "/api/v1/calls/rooms/{room}/participants/{}/admit",
            Uuid::new_v4()
        ))
        .await;
    assert_eq!(status, 404, "{v}");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ta = tokio::spawn(ws_talker(a, 600.0, stop_rx.clone()));
    let tb = tokio::spawn(ws_talker(b, 1000.0, stop_rx));
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_tx.send(true).expect("stop");
    let (_a, heard_a) = ta.await.expect("a");
    let (_b, heard_b) = tb.await.expect("b");
    // Skip the first half second (jitter buffers filling).
    let heard = |h: &[i16]| Heard {
        samples: h.get(4000..).unwrap_or_default().to_vec(),
        rate: 8000,
    };
    hears_others_not_self(&heard(&heard_a), 600.0, &[1000.0]).unwrap_or_else(|e| panic!("A: {e}"));
    hears_others_not_self(&heard(&heard_b), 1000.0, &[600.0]).unwrap_or_else(|e| panic!("B: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_recorded_with_tracks_keeps_what_each_participant_said() {
    let app = spawn_app(CONFIG);
    let room = create_room(&app, json!({ "name": "tracked" })).await;
    let (a, a_id) = ws_caller(&app, "tr-a", "lobby").await;
    let (b, b_id) = ws_caller(&app, "tr-b", "lobby").await;
    for id in [&a_id, &b_id] {
        let (status, p) = join(&app, &room, json!({ "call_id": id })).await;
        assert_eq!(status, 200, "{p}");
    }
    let start = format!("/api/v1/calls/rooms/{room}/record/start");
    let (status, v) = app.post_body(&start, &json!({ "tracks": "yes" })).await;
    assert_eq!(status, 400, "{v}");
    let (status, started) = app.post_body(&start, &json!({ "tracks": true })).await;
    assert_eq!(status, 201, "{started}");
    let recording = started["recording_id"].as_str().expect("id").to_owned();

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ta = tokio::spawn(ws_talker(a, 500.0, stop_rx.clone()));
    let tb = tokio::spawn(ws_talker(b, 900.0, stop_rx));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, stopped) = app
        .post_json(&format!("/api/v1/calls/rooms/{room}/record/stop"))
        .await;
    assert_eq!(status, 200, "{stopped}");
    stop_tx.send(true).expect("stop");
    ta.await.expect("a");
    tb.await.expect("b");

    let list_path = format!("/api/v1/calls/rooms/{room}/recordings");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let list = loop {
        let (status, v) = app.get_json(&list_path).await;
        assert_eq!(status, 200, "{v}");
        let mix_done = v["recordings"]
            .as_array()
            .is_some_and(|r| r.len() == 1 && r[0]["status"] == "done");
        let tracks_done = v["tracks"]
            .as_array()
            .is_some_and(|t| t.len() == 2 && t.iter().all(|t| t["recording"]["status"] == "done"));
        if mix_done && tracks_done {
            break v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the mix and both tracks never written: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(list["recordings"][0]["recording_id"], recording.as_str());
    let (mix_rate, _, mix) = {
        let url = list["recordings"][0]["download_url"].as_str().unwrap();
        let r = app.http.get(app.url(url)).send().await.expect("GET");
        assert_eq!(r.status(), 200);
        wav_samples(&r.bytes().await.expect("body"))
    };
    for (id, own, other) in [(&a_id, 500.0, 900.0), (&b_id, 900.0, 500.0)] {
        let track = list["tracks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["participant_call_id"] == id.as_str())
            .unwrap_or_else(|| panic!("no track of {id}: {list}"));
        assert_eq!(track["of_recording_id"], recording.as_str());
        let url = track["recording"]["download_url"].as_str().unwrap();
        let r = app.http.get(app.url(url)).send().await.expect("GET");
        assert_eq!(r.status(), 200);
        let (rate, channels, samples) = wav_samples(&r.bytes().await.expect("body"));
        assert_eq!((rate, channels), (mix_rate, 1));
        assert_eq!(samples.len(), mix.len(), "tracks line up with the mix");
        assert!(
            tone_power(&samples, rate, own) > 1.0e5,
            "{id} is in its track"
        );
        assert!(
            tone_power(&samples, rate, other) < tone_power(&samples, rate, own) / 100.0,
            "{id}'s track has only its own voice"
        );
    }
}

const RINGING_CONFIG: &str = r#"
[auth]
live_call_tokens = ["t"]

[bots.front]
kind = "flow"
actions = [
  { type = "connect", destinations = [{ type = "agent", target = "late" }] },
  { type = "sleep", duration = 600000 },
]

[bots.front2]
kind = "flow"
actions = [
  { type = "connect", ring_media = "RING", destinations = [
    { type = "agent", target = "slow" },
    { type = "agent", target = "late" },
  ] },
  { type = "sleep", duration = 600000 },
]

[bots.late]
kind = "flow"
actions = [
  { type = "sleep", duration = 1000 },
  { type = "answer" },
  { type = "play", stream_urls = ["TONE"] },
]

[bots.slow]
kind = "flow"
actions = [
  { type = "sleep", duration = 20000 },
  { type = "answer" },
  { type = "play", stream_urls = ["TONE"] },
]

[bots.front3]
kind = "flow"
actions = [
  { type = "connect", destinations = [{ type = "agent", target = "slow" }] },
  { type = "sleep", duration = 600000 },
]

[[routes]]
bot = "front2"
match = { hotline = "front2" }
[[routes]]
bot = "front3"
match = { hotline = "front3" }
[[routes]]
bot = "front"
"#;

/// The audio a caller hears up to the bot's 1300 Hz tone (the ring), then a second of the
/// bridge.
async fn ring_then_bridge(c: &mut WsCaller) -> (Vec<i16>, Vec<i16>) {
    let heard = listen_until(c, |a| {
        a.len() >= 1600 && tone_power(&a[a.len() - 1600..], 8000, 1300.0) > 1.0e5
    })
    .await;
    let ring = heard[..heard.len() - 1600].to_vec();
    let bridge = listen_until(c, |a| a.len() >= 8000).await;
    (ring, bridge)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_plays_ringback_until_the_bot_answers() {
    let dir = temp_data_dir();
    let app = spawn_app(&RINGING_CONFIG.replace("TONE", &tone_file(&dir, 30)));
    let mut c = WsCaller::connect(&app, "/live-call/websocket/rb1/+84900000021?token=t")
        .await
        .expect("upgrade");
    c.send_json(initial_info("rb1", "front")).await;
    let (ring, bridge) = ring_then_bridge(&mut c).await;
    // The standard ring (440 + 480 Hz) while the bot's call rings…
    assert!(ring.len() >= 4000, "{} samples of ring", ring.len());
    for f in [440.0, 480.0] {
        assert!(has_tone(&ring, 8000, f, &[1300.0, 700.0]), "{f} Hz rings");
    }
    // …and none once the bridge is up.
    assert!(
        has_tone(&bridge, 8000, 1300.0, &[440.0, 480.0]),
        "the ring stops"
    );
    let master = app.call_by_reference("rb1").await;
    assert_eq!(master["type"], "conference", "{master}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_rings_every_bot_and_cancels_those_that_lose() {
    let dir = temp_data_dir();
    let ring_path = dir.join("ring-700.wav");
    let ring: Vec<i16> = (0..8000 * 3)
        .map(|i| (6000.0 * (2.0 * std::f64::consts::PI * 700.0 * i as f64 / 8000.0).sin()) as i16)
        .collect();
    std::fs::write(&ring_path, switchboard::media::wav::encode(&ring, 8000, 1)).expect("wav");
    let config = RINGING_CONFIG
        .replace("TONE", &tone_file(&dir, 30))
        .replace("RING", &ring_path.display().to_string());
    let app = spawn_app(&config);
    let mut c = WsCaller::connect(&app, "/live-call/websocket/rb2/+84900000022?token=t")
        .await
        .expect("upgrade");
    c.send_json(initial_info("rb2", "front2")).await;
    let (ring, bridge) = ring_then_bridge(&mut c).await;
    // The action's ring_media rang instead of the standard tone.
    assert!(
        has_tone(&ring, 8000, 700.0, &[440.0, 1300.0]),
        "ring_media is heard"
    );
    assert!(has_tone(&bridge, 8000, 1300.0, &[700.0]), "the ring stops");

    // Both bots were rung as chained calls; `late` answered first and is bridged, `slow` was
    // canceled.
    let master = app.call_by_reference("rb2").await;
    let chained = master["chained_call_ids"].as_array().expect("ids").clone();
    assert_eq!(chained.len(), 2, "{master}");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let (winner, loser) = loop {
        let mut records = Vec::new();
        for id in &chained {
            let (status, v) = app
                .get_json(&format!("/calls/{}", id.as_str().unwrap()))
                .await;
            assert_eq!(status, 200, "{v}");
            records.push(v);
        }
        let winner = records.iter().find(|r| r["bot"] == "late").cloned();
        let loser = records.iter().find(|r| r["bot"] == "slow").cloned();
        if let (Some(w), Some(l)) = (winner, loser) {
            if l["status"] == "hangup" {
                break (w, l);
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the losing bot's call never ended: {records:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(loser["hangup_reason"], "cancel", "{loser}");
    assert_eq!(loser["master_call_id"], master["id"]);
    assert_eq!(winner["status"], "progressing", "{winner}");
    assert_eq!(winner["master_call_id"], master["id"]);
    assert_eq!(master["room_id"], winner["room_id"], "{master} {winner}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_who_hangs_up_while_ringing_cancels_the_bot_call() {
    let dir = temp_data_dir();
    let app = spawn_app(&RINGING_CONFIG.replace("TONE", &tone_file(&dir, 30)));
    let mut c = WsCaller::connect(&app, "/live-call/websocket/rb3/+84900000023?token=t")
        .await
        .expect("upgrade");
    c.send_json(initial_info("rb3", "front3")).await;
    // Ringing: the ring is heard and the bot's call is chained, not answered.
    let ring = listen_until(&mut c, |a| a.len() >= 4000).await;
    assert!(has_tone(&ring, 8000, 440.0, &[1300.0]), "the ring is heard");
    let master = app
        .wait_for_call("rb3", |c| c["chained_call_ids"][0].is_string())
        .await;
    let child = master["chained_call_ids"][0]
        .as_str()
        .expect("id")
        .to_owned();
    c.send_json(json!({ "disconnect": {} })).await;
    app.wait_hangup("rb3").await;
    let v = app.wait_hangup_by_id(&child).await;
    assert_eq!(v["hangup_reason"], "cancel", "{v}");
}
