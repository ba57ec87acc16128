//! The Ringover streamer WebSocket, end to end: a real WebSocket client against the real switch.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use support::*;
use tokio_tungstenite::tungstenite::Message;

fn app_with(flow: &str, extra: &str) -> TestApp {
    spawn_app(&format!(
        "{extra}\n[bots.ro]\nkind = \"flow\"\nactions = {flow}\n[[routes]]\nbot = \"ro\"\n"
    ))
}

/// Sends 20 ms frames at real time until stopped: silence, or a loud tone while `loud` is set.
fn spawn_media<S>(mut write: S, loud: Arc<AtomicBool>, stop: Arc<AtomicBool>, rate: u32)
where
    S: futures_util::Sink<Message> + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let amplitude = if loud.load(Ordering::Relaxed) {
                12_000.0
            } else {
                0.0
            };
            if write
                .send(Message::Binary(tone_frame(rate, amplitude, i)))
                .await
                .is_err()
            {
                break;
            }
            i += 1;
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greeting_is_stream_audio_at_the_configured_rate_then_digits_and_transfer() {
    let app = app_with(
        r#"[
          { type = "answer" },
          { type = "talk", text = "Hello there." },
          { type = "digits_send", digits = "123" },
          { type = "connect", destinations = [{ type = "tel", target = "33100000000" }] },
        ]"#,
        "[ringover]\nout_sample_rate = 16000\n",
    );
    let client = RingoverClient::dial(
        &app,
        json!({"callId": "ro-greet", "from": "+33100", "to": "+33200", "vendor": {"x": 1}}),
    )
    .await;
    let (write, mut read) = client.ws.split();
    let stop = Arc::new(AtomicBool::new(false));
    spawn_media(write, Arc::new(AtomicBool::new(false)), stop.clone(), 8000);

    let audio = next_event(&mut read).await.json();
    let got_audio = Instant::now();
    assert_eq!(audio["type"], "streamAudio", "{audio}");
    assert_eq!(audio["data"]["audioDataType"], "raw");
    assert_eq!(audio["data"]["sampleRate"], 16000);
    let samples = stream_audio_samples(&audio);
    let played = Duration::from_millis(samples.len() as u64 * 1000 / 16000);
    assert!(played > Duration::from_millis(300), "{played:?} of audio");
    assert!(
        switchboard::media::pcm::rms(&samples) > 300.0,
        "speech is audible"
    );

    // The flow moves on only once the prompt has had time to play.
    let digits = next_event(&mut read).await.json();
    assert_eq!(digits, json!({"event": "digits", "data": 123}));
    let waited = got_audio.elapsed();
    assert!(
        waited + Duration::from_millis(100) >= played,
        "digits after {waited:?}, prompt lasts {played:?}"
    );
    let transfer = next_event(&mut read).await.json();
    assert_eq!(
        transfer,
        json!({"event": "transfer", "data": 33100000000u64})
    );

    let call = app.call_by_reference("ro-greet").await;
    assert_eq!(call["ingress"], "ringover");
    assert_eq!(call["status"], "progressing");
    assert_eq!(call["source"]["target"], "+33100");
    assert_eq!(call["destination"]["target"], "+33200");
    assert_eq!(call["metadata"]["vendor"]["x"], 1, "metadata kept whole");

    // Closing the socket is the caller hanging up.
    stop.store(true, Ordering::Relaxed);
    drop(read);
    let call = app.wait_hangup("ro-greet").await;
    assert_eq!(call["hangup_by"], "remote", "{call}");
    assert_eq!(call["hangup_reason"], "normal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_play_is_handed_over_and_hangup_closes_with_1000() {
    let app = app_with(
        r#"[
          { type = "answer" },
          { type = "play", stream_urls = ["https://media.example/hello.mp3"] },
          { type = "digits_send", digits = "0*1#" },
          { type = "hangup" },
        ]"#,
        "",
    );
    let mut client = RingoverClient::dial(&app, json!({"call_id": "ro-play"})).await;
    assert_eq!(
        client.next().await.json(),
        json!({"event": "play", "file": "https://media.example/hello.mp3"})
    );
    assert_eq!(
        client.next().await.json(),
        json!({"event": "digits", "data": "0*1#"})
    );
    match client.next().await {
        RoEvent::Closed(code) => assert_eq!(code, Some(1000)),
        other => panic!("expected the socket to close, got {other:?}"),
    }
    let call = app.wait_hangup("ro-play").await;
    assert_eq!(call["hangup_by"], "local");
    assert_eq!(call["hangup_reason"], "normal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_over_a_barge_in_prompt_sends_break_quickly() {
    let app = app_with(
        r#"[
          { type = "answer" },
          { type = "talk", text = "This is a long prompt that the caller is going to interrupt before it ends.", barge_in = true },
          { type = "sleep", id = "after", duration = 60000 },
        ]"#,
        "",
    );
    let client = RingoverClient::dial(&app, json!({"call_id": "ro-barge"})).await;
    let (write, mut read) = client.ws.split();
    let loud = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    spawn_media(write, loud.clone(), stop.clone(), 8000);

    let audio = next_event(&mut read).await.json();
    assert_eq!(audio["type"], "streamAudio");
    let prompt = Duration::from_millis(stream_audio_samples(&audio).len() as u64 / 8);
    assert!(prompt > Duration::from_secs(2), "prompt lasts {prompt:?}");
    // The caller starts speaking.
    loud.store(true, Ordering::Relaxed);
    let onset = Instant::now();
    let stop_event = next_event(&mut read).await.json();
    let latency = onset.elapsed();
    assert_eq!(stop_event, json!({"event": "break"}));
    assert!(
        latency <= Duration::from_millis(300),
        "break {latency:?} after speech onset"
    );
    // The flow moved on to the next action.
    app.wait_for_call("ro-barge", |c| c["action"]["id"] == "after")
        .await;
    // Nothing more of that prompt: hang up and check everything up to the close.
    let call = app.call_by_reference("ro-barge").await;
    let id = call["id"].as_str().expect("id").to_owned();
    let (status, body) = app.post_json(&format!("/calls/{id}/hangup")).await;
    assert_eq!(status, 200, "{body}");
    loop {
        match next_event(&mut read).await {
            RoEvent::Json(v) => assert_ne!(v["type"], "streamAudio", "audio after break: {v}"),
            RoEvent::Closed(code) => {
                assert_eq!(code, Some(1000));
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_also_barges_in_and_odd_or_garbage_frames_do_not_kill_the_call() {
    let app = app_with(
        r#"[
          { type = "answer" },
          { type = "talk", text = "Press a key whenever you like, this prompt is long enough.", barge_in = true },
          { type = "digits_receive", duration = 20000, length = 1 },
          { type = "branch", default_target_id = "bad", target_ids = { "5" = "good" } },
          { type = "digits_send", id = "good", digits = "42" },
          { type = "hangup" },
          { type = "hangup", id = "bad", reason = "failed" },
        ]"#,
        "",
    );
    let mut client = RingoverClient::dial(&app, json!({"uuid": "ro-keys"})).await;
    client.send_text("this is not JSON").await;
    client.send_text("[1, 2, 3]").await;
    client
        .send_text(r#"{"event": "mark", "whatever": true}"#)
        .await;
    client.send_binary(vec![1, 0, 2]).await;
    client.send_binary(vec![0]).await;
    let audio = client.next().await.json();
    assert_eq!(audio["type"], "streamAudio");
    client.send_text(r#"{"event": "dtmf", "digit": "5"}"#).await;
    assert_eq!(client.next().await.json(), json!({"event": "break"}));
    assert_eq!(
        client.next().await.json(),
        json!({"event": "digits", "data": 42})
    );
    match client.next().await {
        RoEvent::Closed(code) => assert_eq!(code, Some(1000)),
        other => panic!("expected close, got {other:?}"),
    }
    let call = app.wait_hangup("ro-keys").await;
    assert_eq!(call["hangup_reason"], "normal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_stream_is_hung_up_with_timeout() {
    let app = app_with(
        r#"[{ type = "answer" }, { type = "sleep", duration = 60000 }]"#,
        "[media]\nmedia_timeout_ms = 500\n",
    );
    let mut client = RingoverClient::dial(&app, json!({"call_id": "ro-silent"})).await;
    match client.next().await {
        RoEvent::Closed(code) => assert_eq!(code, Some(1000)),
        other => panic!("expected close, got {other:?}"),
    }
    let call = app.wait_hangup("ro-silent").await;
    assert_eq!(call["hangup_reason"], "timeout");
    assert_eq!(call["hangup_by"], "local");
    assert!(
        call["hangup_detail"]
            .as_str()
            .is_some_and(|d| d.contains("no media")),
        "{call}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_is_hung_up_with_a_reason() {
    // Five seconds of 24 kHz audio per prompt, replayed as fast as keys barge in.
    let path = std::env::temp_dir().join(format!("switchboard-flood-{}.wav", std::process::id()));
    let samples: Vec<i16> = (0..24_000 * 5)
        .map(|i| ((i % 48) as i16 - 24) * 500)
        .collect();
    std::fs::write(&path, switchboard::media::wav::encode(&samples, 24_000, 1)).expect("write WAV");
    let app = app_with(
        &format!(
            r#"[
              {{ type = "answer" }},
              {{ type = "play", id = "loop", stream_urls = ["{}"], barge_in = true }},
              {{ type = "goto", target_id = "loop", loop_count = 100000 }},
            ]"#,
            path.display()
        ),
        "[ringover]\nout_sample_rate = 24000\n[media]\nwrite_timeout_ms = 1000\nmax_buffered_ms = 500\n",
    );
    let client = RingoverClient::dial(&app, json!({"call_id": "ro-stalled"})).await;
    // Keep talking (audio and keys) but never read.
    let (mut write, read) = client.ws.split();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_writer = stop.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut i = 0usize;
        while !stop_writer.load(Ordering::Relaxed) {
            tick.tick().await;
            let frame = if i.is_multiple_of(5) {
                Message::Text(r#"{"event":"dtmf","digit":"1"}"#.into())
            } else {
                Message::Binary(tone_frame(8000, 0.0, i))
            };
            // The switch may stop reading too; never block the test on it.
            match tokio::time::timeout(Duration::from_secs(1), write.send(frame)).await {
                Ok(Ok(())) => {}
                _ => break,
            }
            i += 1;
        }
    });
    let call = app.wait_hangup("ro-stalled").await;
    stop.store(true, Ordering::Relaxed);
    drop(read);
    let _ = std::fs::remove_file(&path);
    assert_eq!(call["hangup_by"], "local", "{call}");
    let detail = call["hangup_detail"].as_str().unwrap_or("");
    assert_eq!(call["hangup_reason"], "failed", "{call}");
    assert!(detail.contains("read nothing"), "{detail}");
    assert!(detail.contains("dropped"), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_gets_401_and_the_right_one_connects() {
    let app = spawn_app(&format!(
        "[ringover]\ntokens = [\"s3cret\", \"other\"]\n{MENU_FLOW}\n[[routes]]\nbot = \"menu\"\n"
    ));
    for token in [None, Some("wrong")] {
        match RingoverClient::connect(&app, token).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), 401);
                let body: serde_json::Value =
                    serde_json::from_slice(response.body().as_deref().unwrap_or(b"{}"))
                        .expect("JSON error body");
                assert_eq!(body["error"]["code"], 401);
            }
            Err(e) => panic!("expected HTTP 401, got {e}"),
            Ok(_) => panic!("token {token:?} must be refused"),
        }
    }
    let mut client = RingoverClient::connect(&app, Some("s3cret"))
        .await
        .expect("right token connects");
    client.send_text(r#"{"call_id": "ro-token"}"#).await;
    assert_eq!(client.next().await.json()["type"], "streamAudio");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtp_mode_takes_pcmu_packets() {
    let app = app_with(
        r#"[{ type = "answer" }, { type = "echo", duration = 60000 }]"#,
        "[ringover]\nrtp = true\n[media]\nutterance_gap_ms = 100\n",
    );
    let mut client = RingoverClient::dial(&app, json!({"call_id": "ro-rtp"})).await;
    // 0x00 in mu-law is a loud negative sample: the echo must come back audible.
    for seq in 0..10u16 {
        let mut packet = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        packet[2..4].copy_from_slice(&seq.to_be_bytes());
        packet.extend([0x00u8; 160]);
        client.send_binary(packet).await;
    }
    let echo = client.next().await.json();
    assert_eq!(echo["type"], "streamAudio");
    let samples = stream_audio_samples(&echo);
    assert!(samples.len() >= 800, "{} samples", samples.len());
    assert!(switchboard::media::pcm::rms(&samples) > 1000.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_streams_at_once_while_one_misbehaves() {
    let app = app_with(
        r#"[{ type = "talk", text = "Hi." }, { type = "hangup" }]"#,
        "",
    );
    // A peer that sends garbage and never metadata keeps its socket to itself.
    let mut rude = RingoverClient::connect(&app, None).await.expect("upgrade");
    rude.send_text("garbage").await;
    rude.send_text("[]").await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let mut client =
            RingoverClient::dial(&app, json!({"call_id": format!("many-ro-{i}")})).await;
        tasks.push(tokio::spawn(async move {
            assert_eq!(client.next().await.json()["type"], "streamAudio");
            match client.next().await {
                RoEvent::Closed(code) => assert_eq!(code, Some(1000)),
                other => panic!("expected close, got {other:?}"),
            }
        }));
    }
    for t in tasks {
        t.await.expect("stream completed");
    }
    for i in 0..20 {
        let call = app.wait_hangup(&format!("many-ro-{i}")).await;
        assert_eq!(call["hangup_reason"], "normal");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_closed_while_its_call_is_admitted_ends_the_call_at_once() {
    let app = app_with(r#"[{ type = "sleep", duration = 60000 }]"#, "");
    let client = RingoverClient::connect(&app, None)
        .await
        .expect("WebSocket upgrade");
    // Keep the registry busy, so the call is still being admitted when the stream closes.
    for _ in 0..200_000 {
        app.handle.registry.do_send(switchboard::registry::GetStats);
    }
    let mut client = client;
    client
        .send_text(&json!({"call_id": "ro-gone-early"}).to_string())
        .await;
    drop(client);
    let closed = Instant::now();
    let call = app.wait_hangup("ro-gone-early").await;
    assert!(
        closed.elapsed() < Duration::from_secs(3),
        "the call waited {:?} for a leg",
        closed.elapsed()
    );
    // The session holds the close until the call is admitted, then hangs up as the caller
    // did; had its socket's context been dropped first, the call is told it was canceled.
    assert_eq!(call["hangup_by"], "remote", "{call}");
    assert!(
        call["hangup_reason"] == "normal" || call["hangup_reason"] == "cancel",
        "{call}"
    );
}
