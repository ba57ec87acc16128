//! Web and mobile callers over the live-call WebSocket, against the real switch.

mod support;

use base64::Engine;
use serde_json::json;
use support::*;

const CONFIG: &str = r#"
[auth]
live_call_tokens = ["t0ken", "other"]

[bots.transfer]
kind = "flow"
actions = [
  { type = "talk", text = "Hello." },
  { type = "connect", destinations = [{ type = "tel", target = "+15550100", target_name = "Agent Smith" }] },
]

[bots.bye]
kind = "flow"
actions = [
  { type = "talk", text = "Goodbye." },
  { type = "hangup" },
]

[bots.wait]
kind = "flow"
actions = [
  { type = "talk", text = "Hello." },
  { type = "sleep", duration = 600000 },
]

[bots.unreachable]
kind = "live_call"
url = "http://127.0.0.1:1"

[[routes]]
bot = "transfer"
match = { hotline = "transfer" }
[[routes]]
bot = "bye"
match = { hotline = "bye" }
[[routes]]
bot = "unreachable"
match = { hotline = "broken-bot" }
[[routes]]
bot = "wait"
"#;

fn b64(samples: &[i16]) -> String {
    base64::engine::general_purpose::STANDARD.encode(switchboard::media::pcm::encode_s16le(samples))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_hears_the_greeting_and_is_transferred() {
    let app = spawn_app(CONFIG);
    let mut c = WsCaller::connect(
        &app,
        "/live-call/websocket/ws-call-1/+84900000001?token=t0ken",
    )
    .await
    .expect("upgrade");
    c.send_json(initial_info("ws-call-1", "transfer")).await;
    let mut audio = Vec::new();
    let event = c.next_non_audio(&mut audio).await;
    // At least 300 ms of audible speech at 8 kHz before the transfer.
    assert!(audio.len() > 2400, "{} samples", audio.len());
    assert!(switchboard::media::pcm::rms(&audio) > 300.0);
    let WsEvent::Json(v) = event else {
        panic!("expected a signal, got {event:?}")
    };
    let t = &v["signal"]["transfer_call"];
    assert_eq!(t["call_id"], "ws-call-1");
    assert_eq!(t["customer_phone_number"], "+84900000001");
    assert_eq!(
        t["target_staff"],
        json!([{ "name": "Agent Smith", "phone_number": "+15550100" }])
    );

    let call = app.call_by_reference("ws-call-1").await;
    assert_eq!(call["ingress"], "live_call_ws");
    assert_eq!(call["workspace"], "ws-1");
    assert_eq!(call["hotline"], "transfer");
    assert_eq!(call["bot"], "transfer");
    assert_eq!(call["source"]["target"], "+84900000001");

    c.send_json(json!({ "disconnect": {} })).await;
    let call = app.wait_hangup("ws-call-1").await;
    assert_eq!(call["hangup_by"], "remote");
    assert_eq!(call["hangup_reason"], "normal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_frames_are_paced_20_ms_at_8_khz() {
    let app = spawn_app(CONFIG);
    let mut c = WsCaller::connect(
        &app,
        "/live-call/websocket/ws-frames/+84900000001?token=other",
    )
    .await
    .expect("upgrade");
    c.send_json(initial_info("ws-frames", "bye")).await;
    let mut sizes = Vec::new();
    loop {
        match c.next().await {
            WsEvent::Json(v) if v.get("audio_output").is_some() => {
                let b = v["audio_output"]["audio_content"].as_str().unwrap();
                sizes.push(
                    base64::engine::general_purpose::STANDARD
                        .decode(b)
                        .unwrap()
                        .len(),
                );
            }
            WsEvent::Json(v) => {
                assert_eq!(v["signal"]["end_call"]["call_id"], "ws-frames", "{v}");
                break;
            }
            WsEvent::Close(code) => panic!("closed early {code:?}"),
        }
    }
    assert!(sizes.len() > 10);
    // Every frame but the last is exactly 20 ms of 8 kHz s16le.
    assert!(
        sizes[..sizes.len() - 1].iter().all(|&n| n == 320),
        "{sizes:?}"
    );
    match c.next().await {
        WsEvent::Close(code) => assert_eq!(code, Some(1000)),
        other => panic!("expected close 1000, got {other:?}"),
    }
    let call = app.wait_hangup("ws-frames").await;
    assert_eq!(call["hangup_by"], "local");
    assert_eq!(call["hangup_reason"], "normal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_get_401_and_unknown_paths_404() {
    let app = spawn_app(CONFIG);
    assert_eq!(
        WsCaller::connect(&app, "/live-call/websocket/a/b")
            .await
            .err(),
        Some(401)
    );
    assert_eq!(
        WsCaller::connect(&app, "/live-call/websocket/a/b?token=wrong")
            .await
            .err(),
        Some(401)
    );
    assert_eq!(
        WsCaller::connect(&app, "/live-call/websocket/a?token=t0ken")
            .await
            .err(),
        Some(404)
    );
    assert_eq!(
        WsCaller::connect(&app, "/somewhere?token=t0ken")
            .await
            .err(),
        Some(404)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_get_400_errors_and_the_session_goes_on() {
    let app = spawn_app(CONFIG);
    let mut c = WsCaller::connect(&app, "/live-call/websocket/ws-bad/+84900000001?token=t0ken")
        .await
        .expect("upgrade");
    c.send_json(initial_info("ws-bad", "wait")).await;
    app.wait_for_call("ws-bad", |c| c["status"] == "progressing")
        .await;

    let chunk = |rate: u32, content: String| json!({ "play_audio": { "sample_rate": rate, "sample_width": 16, "num_channels": 1, "duration": 0.02, "audio_content": content } });
    let cases: Vec<(String, &str)> = vec![
        ("{not json".into(), "not valid JSON"),
        (
            json!({ "dance": {} }).to_string(),
            "unknown message `dance`",
        ),
        (chunk(16000, "***".into()).to_string(), "not valid base64"),
        (
            chunk(
                16000,
                base64::engine::general_purpose::STANDARD.encode([1u8, 2, 3]),
            )
            .to_string(),
            "odd number of bytes",
        ),
        (chunk(11025, b64(&[0; 10])).to_string(), "sample_rate 11025"),
        (
            json!({ "play_audio": { "sample_rate": "fast" } }).to_string(),
            "play_audio is malformed",
        ),
    ];
    let mut ignored = Vec::new();
    for (frame, needle) in cases {
        c.send_text(frame).await;
        let WsEvent::Json(v) = c.next_non_audio(&mut ignored).await else {
            panic!("closed")
        };
        assert_eq!(v["error"]["error_code"], 400, "{v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{message} should name {needle}");
    }
    c.send_binary(vec![0; 320]).await;
    let WsEvent::Json(v) = c.next_non_audio(&mut ignored).await else {
        panic!("closed")
    };
    assert!(v["error"]["message"].as_str().unwrap().contains("binary"));

    // The session goes on: good audio is accepted and the call is still up.
    for rate in [8000, 16000, 24000, 48000] {
        c.send_json(chunk(rate, b64(&tone(440.0, rate, 20, 3000.0))))
            .await;
    }
    let call = app.call_by_reference("ws-bad").await;
    assert_eq!(call["status"], "progressing");
    c.send_json(json!({ "disconnect": {} })).await;
    let call = app.wait_hangup("ws-bad").await;
    assert_eq!(call["hangup_by"], "remote");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_bot_gives_500_and_close_1011() {
    let app = spawn_app(CONFIG);
    let started = std::time::Instant::now();
    let mut c = WsCaller::connect(
        &app,
        "/live-call/websocket/ws-broken/+84900000001?token=t0ken",
    )
    .await
    .expect("upgrade");
    c.send_json(initial_info("ws-broken", "broken-bot")).await;
    let mut audio = Vec::new();
    let WsEvent::Json(v) = c.next_non_audio(&mut audio).await else {
        panic!("expected an error frame")
    };
    assert_eq!(v["error"]["error_code"], 500, "{v}");
    match c.next().await {
        WsEvent::Close(code) => assert_eq!(code, Some(1011)),
        other => panic!("expected close 1011, got {other:?}"),
    }
    let call = app.wait_hangup("ws-broken").await;
    assert_eq!(call["hangup_reason"], "failed");
    assert!(
        call["hangup_detail"].as_str().unwrap().contains("bot"),
        "{call}"
    );
    // Generous for a busy machine; the bound the switch keeps is two seconds.
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_of_a_websocket_call_carries_the_bot_at_the_caller_rate() {
    // The leg takes 16 kHz and plays 8 kHz: the bot's paced frames are brought to the
    // recording's 16 kHz by one streaming resampler for the whole recording.
    let app = spawn_app(
        r#"
[auth]
live_call_tokens = ["t"]
[bots.rec]
kind = "flow"
actions = [
  { type = "recording_start", format = "wav" },
  { type = "talk", text = "Hello there." },
  { type = "recording_stop" },
  { type = "hangup" },
]
[[routes]]
bot = "rec"
"#,
    );
    let mut c = WsCaller::connect(&app, "/live-call/websocket/ws-rec/+84900000001?token=t")
        .await
        .expect("upgrade");
    c.send_json(initial_info("ws-rec", "1900")).await;
    let mut heard = Vec::new();
    let WsEvent::Json(v) = c.next_non_audio(&mut heard).await else {
        panic!("expected end_call")
    };
    assert!(v["signal"]["end_call"].is_object(), "{v}");
    let call = app.wait_hangup("ws-rec").await;
    let id = call["id"].as_str().unwrap().to_owned();
    let list = recordings_when_done(&app, &id).await;
    let url = list["recordings"][0]["download_url"].as_str().unwrap();
    let bytes = app
        .http
        .get(app.url(url))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let (rate, channels, samples) = wav_samples(&bytes);
    assert_eq!((rate, channels), (16000, 2));
    let right: Vec<i16> = samples.chunks_exact(2).map(|f| f[1]).collect();
    // The whole prompt the caller heard is on the right, at twice the samples.
    let loud = right.iter().filter(|s| s.abs() > 1000).count();
    assert!(loud > 1000, "bot audio on the right: {loud} loud samples");
    assert!(
        right.len() >= heard.len() * 2 - 1600,
        "{} samples recorded for {} heard at 8 kHz",
        right.len(),
        heard.len()
    );
    assert!(switchboard::media::pcm::rms(&right) > 300.0);
}
