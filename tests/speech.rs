//! Speech recognition end to end: callers speak (espeak-ng, made at test time) to the real
//! switch over SmartIVR and the live-call WebSocket; the embedded flow recognises them with
//! pocketsphinx, or with an HTTP engine against a local `/v1/audio/transcriptions` stand-in.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;
use switchboard::pb::smartivr::SmartIvrResponseType as T;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A flow that asks, listens for one of two phrases and branches on it.
fn ivr_flow(listen: &str) -> String {
    format!(
        r#"
[bots.ivr]
kind = "flow"
actions = [
  {{ type = "answer" }},
  {listen},
  {{ type = "branch", variable = "speech", default_target_id = "none", target_ids = {{ "check my balance" = "balance", "talk to an agent" = "agent", "2" = "agent" }} }},
  {{ type = "talk", id = "balance", text = "Your balance is ten dollars." }},
  {{ type = "hangup" }},
  {{ type = "talk", id = "agent", text = "Connecting you to an agent." }},
  {{ type = "hangup" }},
  {{ type = "talk", id = "none", text = "Sorry. ${{speech_error}}" }},
  {{ type = "hangup" }},
]
[[routes]]
bot = "ivr"
"#
    )
}

const SPEECH_RECEIVE: &str = r#"{ type = "speech_receive", duration = 20000, phrases = ["check my balance", "talk to an agent"] }"#;

/// 8 kHz speech followed by a second of silence (the end of speech).
fn utterance(text: &str) -> Vec<i16> {
    let mut audio = speak(text, "en-us", 8000);
    audio.extend(std::iter::repeat_n(0, 8000));
    audio
}

/// A SmartIVR gateway speaks `text` in 100 ms messages and collects responses up to the next
/// RESULT_TTS, which it returns with the kinds and `text_asr` seen before it.
/// Responses wait in the stream while it speaks.
async fn gateway_says(gw: &mut Gateway, text: &str) -> (Vec<(i32, String)>, String) {
    // In real time, as a gateway streams a live caller.
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for chunk in utterance(text).chunks(800) {
        tick.tick().await;
        gw.send_audio(chunk).await;
    }
    let mut seen = Vec::new();
    loop {
        let r = gw
            .next()
            .await
            .expect("stream healthy")
            .expect("stream open");
        if r.r#type == T::ResultTts as i32 {
            return (seen, r.text_bot);
        }
        seen.push((r.r#type, r.text_asr));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smartivr_gateway_gets_recognize_then_result_asr_then_the_branch() {
    let app = spawn_app(&ivr_flow(SPEECH_RECEIVE));
    let mut gw = Gateway::dial(&app, "asr-ivr-1").await;
    app.wait_for_call("asr-ivr-1", |c| c["status"] == "progressing")
        .await;
    let (seen, tts) = gateway_says(&mut gw, "check my balance").await;
    let kinds: Vec<i32> = seen.iter().map(|(k, _)| *k).collect();
    let asr = kinds
        .iter()
        .position(|k| *k == T::ResultAsr as i32)
        .unwrap_or_else(|| panic!("no RESULT_ASR in {seen:?}"));
    assert!(
        kinds[..asr].contains(&(T::Recognize as i32)),
        "RECOGNIZE with a partial text comes before RESULT_ASR: {seen:?}"
    );
    assert_eq!(seen[asr].1, "check my balance");
    assert!(tts.contains("balance is ten dollars"), "{tts}");
    gw.expect(T::CallEnd).await;

    let call = app.wait_hangup("asr-ivr-1").await;
    let (_, transcript) = app
        .get_json(&format!(
            "/api/v1/calls/{}/transcript",
            call["id"].as_str().unwrap()
        ))
        .await;
    let lines: Vec<(String, String)> = transcript["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().into(),
                e["text"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        lines.contains(&("text_asr".into(), "check my balance".into())),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_or_speech_whichever_comes_first() {
    let listen = r#"{ type = "digits_receive", duration = 20000, length = 1, speech = { phrases = ["check my balance", "talk to an agent"] } }"#;
    let flow = ivr_flow(listen).replace(
        r#"{ type = "branch", variable = "speech""#,
        r#"{ type = "branch", variable = "digits", default_target_id = "by_speech", target_ids = { "2" = "agent" } },
  { type = "branch", id = "by_speech", variable = "speech""#,
    );
    let app = spawn_app(&flow);
    let mut gw = Gateway::dial(&app, "asr-keys-1").await;
    app.wait_for_call("asr-keys-1", |c| c["status"] == "progressing")
        .await;
    gw.press("2").await;
    gw.expect_tts("Connecting you to an agent").await;

    let mut gw = Gateway::dial(&app, "asr-keys-2").await;
    app.wait_for_call("asr-keys-2", |c| c["status"] == "progressing")
        .await;
    let (_, tts) = gateway_says(&mut gw, "talk to an agent").await;
    assert!(tts.contains("Connecting you to an agent"), "{tts}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_takes_the_no_input_path_after_the_duration() {
    let listen = r#"{ type = "speech_receive", duration = 1500, phrases = ["check my balance"] }"#;
    let app = spawn_app(&ivr_flow(listen));
    let mut gw = Gateway::dial(&app, "asr-silent-1").await;
    // The gateway streams silence; nothing is said.
    for _ in 0..10 {
        gw.send_audio(&[0i16; 800]).await;
    }
    let r = gw.expect(T::ResultTts).await;
    assert_eq!(r.text_bot.trim(), "Sorry.", "no input, and no error either");
}

/// A live-call WebSocket caller that sends `audio` in real time (20 ms `play_audio` frames at
/// 8 kHz) and keeps every frame it receives.
async fn ws_send_paced(c: &mut WsCaller, audio: &[i16]) {
    use base64::Engine;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for frame in audio.chunks(160) {
        tick.tick().await;
        let bytes = switchboard::media::pcm::encode_s16le(frame);
        let content = base64::engine::general_purpose::STANDARD.encode(bytes);
        c.send_json(
            json!({ "play_audio": { "sample_rate": 8000, "sample_width": 2,
            "num_channels": 1, "duration": 0.02, "audio_content": content } }),
        )
        .await;
    }
}

async fn transcript_lines(app: &TestApp, call_id: &str) -> Vec<(String, String)> {
    let (_, t) = app
        .get_json(&format!("/api/v1/calls/{call_id}/transcript"))
        .await;
    t["entries"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["type"].as_str().unwrap_or("").into(),
                        e["text"].as_str().unwrap_or("").into(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_caller_talks_to_an_agent_by_voice() {
    let app = spawn_app(&ivr_flow(SPEECH_RECEIVE));
    let mut c = WsCaller::connect(&app, "/live-call/websocket/asr-web/+84900000001")
        .await
        .unwrap();
    c.send_json(initial_info("asr-web-1", "1900")).await;
    let call = app
        .wait_for_call("asr-web-1", |c| c["status"] == "progressing")
        .await;
    let id = call["id"].as_str().unwrap().to_owned();
    ws_send_paced(&mut c, &utterance("talk to an agent")).await;
    app.wait_hangup("asr-web-1").await;
    let lines = transcript_lines(&app, &id).await;
    assert!(
        lines.contains(&("text_asr".into(), "talk to an agent".into())),
        "{lines:?}"
    );
    assert!(
        lines.contains(&("text_bot".into(), "Connecting you to an agent.".into())),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_over_a_barge_in_prompt_stops_it_and_is_recognised() {
    let prompt = r#"{ type = "talk", barge_in = true, text = "Welcome to the bank. You can check your balance, pay a bill, report a lost card, or talk to an agent. Please say what you would like to do after you hear the options again." },
  { type = "speech_receive", duration = 20000, phrases = ["check my balance", "talk to an agent"] }"#;
    let app = spawn_app(&ivr_flow(prompt));
    let mut c = WsCaller::connect(&app, "/live-call/websocket/asr-web/+84900000001")
        .await
        .unwrap();
    c.send_json(initial_info("asr-barge-1", "1900")).await;
    // The prompt is playing once its audio arrives.
    loop {
        match c.next().await {
            WsEvent::Json(v) if v.get("audio_output").is_some() => break,
            WsEvent::Json(_) => continue,
            WsEvent::Close(code) => panic!("closed early: {code:?}"),
        }
    }
    let call = app.call_by_reference("asr-barge-1").await;
    let id = call["id"].as_str().unwrap().to_owned();
    // The caller speaks over the prompt, in real time; what the switch sends meanwhile waits
    // in the socket and is read afterwards.
    ws_send_paced(&mut c, &utterance("check my balance")).await;
    let mut killed = false;
    loop {
        match c.next().await {
            WsEvent::Json(v) if v["signal"].get("kill_audio").is_some() => killed = true,
            WsEvent::Json(_) => {}
            WsEvent::Close(_) => break,
        }
    }
    assert!(killed, "the prompt was stopped (kill_audio)");
    let lines = transcript_lines(&app, &id).await;
    assert!(
        lines.contains(&("text_asr".into(), "check my balance".into())),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|(_, t)| t.contains("balance is ten dollars")),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcribe_puts_the_callers_lines_in_the_transcript_and_on_the_event_stream() {
    let flow = r#"
[bots.listen]
kind = "flow"
actions = [
  { type = "answer" },
  { type = "transcribe_start", language = "en-US" },
  { type = "digits_receive", duration = 60000, length = 1 },
  { type = "transcribe_stop" },
  { type = "hangup" },
]
[[routes]]
bot = "listen"
"#;
    let app = spawn_app(flow);
    let mut gw = Gateway::dial(&app, "asr-tr-1").await;
    let call = app
        .wait_for_call("asr-tr-1", |c| c["status"] == "progressing")
        .await;
    let id = call["id"].as_str().unwrap().to_owned();
    let mut events = app
        .http
        .get(app.url(&format!("/calls/{id}/events")))
        .send()
        .await
        .unwrap();
    for chunk in utterance("please check the balance of my account").chunks(800) {
        gw.send_audio(chunk).await;
    }
    // The line arrives live on the call's event stream.
    let mut text = String::new();
    let line = tokio::time::timeout(PATIENCE, async {
        loop {
            let chunk = events.chunk().await.unwrap().expect("stream open");
            text.push_str(&String::from_utf8_lossy(&chunk));
            if let Some(at) = text.find("event: transcript\ndata: ") {
                let rest = &text[at + 24..];
                if let Some(end) = rest.find('\n') {
                    return serde_json::from_str::<Value>(&rest[..end]).unwrap();
                }
            }
        }
    })
    .await
    .expect("a transcript event in time");
    assert_eq!(line["type"], "text_asr");
    assert_eq!(line["call_id"], id.as_str());
    let said = line["text"].as_str().unwrap().to_owned();
    assert!(!said.trim().is_empty());
    gw.press("1").await;
    gw.expect(T::CallEnd).await;
    app.wait_hangup("asr-tr-1").await;
    let lines = transcript_lines(&app, &id).await;
    assert!(lines.contains(&("text_asr".into(), said)), "{lines:?}");

    // The Calls API starts and stops it on a live call, and refuses bad actions.
    let mut gw = Gateway::dial(&app, "asr-tr-2").await;
    let call = app
        .wait_for_call("asr-tr-2", |c| c["status"] == "progressing")
        .await;
    let base = format!("/api/v1/calls/{}", call["id"].as_str().unwrap());
    let (status, on) = app
        .post_body(&format!("{base}/transcribe"), &json!({ "action": "stop" }))
        .await;
    assert_eq!((status, &on["transcription"]), (200, &json!(false)), "{on}");
    let (status, bad) = app
        .post_body(&format!("{base}/transcribe"), &json!({ "action": "pause" }))
        .await;
    assert_eq!(status, 400, "{bad}");
    assert!(bad.to_string().contains("pause"), "{bad}");
    gw.press("1").await;
    gw.expect(T::CallEnd).await;
}

/// What the stand-in recogniser does with each request.
#[derive(Clone, Copy)]
enum StandIn {
    Answer,
    Fail,
    Hang,
    /// An answer far over the switch's 64 KiB bound.
    Huge,
}

/// A local OpenAI-style `/v1/audio/transcriptions` endpoint: reads one multipart POST per
/// connection, checks it carries a WAV file and a model, and answers as `mode` says.
async fn stand_in(mode: StandIn) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/v1/audio/transcriptions",
        listener.local_addr().unwrap()
    );
    let (seen_tx, seen) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let seen_tx = seen_tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let (head_end, length) = loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (end + 4, length);
                    }
                };
                while buf.len() < head_end + length {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body = String::from_utf8_lossy(&buf[head_end..]).into_owned();
                let request = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let _ = seen_tx.send(format!("{request}\n{body}"));
                let huge = format!("{{\"text\": \"{}\"}}", "a".repeat(1 << 20));
                let (status, answer) = match mode {
                    StandIn::Answer => ("200 OK", r#"{"text": "Check my balance."}"#),
                    StandIn::Fail => ("500 Internal Server Error", r#"{"error": "model crashed"}"#),
                    StandIn::Huge => ("200 OK", huge.as_str()),
                    StandIn::Hang => {
                        tokio::time::sleep(Duration::from_secs(120)).await;
                        return;
                    }
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = sock.write_all(response.as_bytes()).await;
            });
        }
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_engine_answers_fails_and_times_out_clearly() {
    for (mode, expect) in [
        (StandIn::Answer, "Your balance is ten dollars."),
        (StandIn::Fail, "500"),
        (StandIn::Hang, "timed out"),
        (StandIn::Huge, "over 65536 bytes"),
    ] {
        let (url, mut seen) = stand_in(mode).await;
        let app = spawn_app(&format!(
            "[asr]\nengine = \"http\"\nurl = \"{url}\"\napi_key = \"sk-test\"\ntimeout_ms = 1500\n{}",
            ivr_flow(SPEECH_RECEIVE)
        ));
        let mut gw = Gateway::dial(&app, "asr-http").await;
        app.wait_for_call("asr-http", |c| c["status"] == "progressing")
            .await;
        let (_, tts) = gateway_says(&mut gw, "check my balance").await;
        assert!(tts.contains(expect), "expected {expect:?} in {tts:?}");
        let request = seen.recv().await.expect("the engine posted");
        assert!(
            request.starts_with("POST /v1/audio/transcriptions"),
            "{request}"
        );
        assert!(request
            .to_lowercase()
            .contains("authorization: bearer sk-test"));
        assert!(request.contains("RIFF") && request.contains("name=\"model\""));
        assert!(
            request.contains("check my balance, talk to an agent"),
            "phrases as the prompt"
        );
        gw.expect(T::CallEnd).await;
        let call = app.wait_hangup("asr-http").await;
        assert_eq!(
            call["hangup_reason"], "normal",
            "never a stuck or failed call"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_engine_is_a_clear_error_and_the_switch_stays_up() {
    let app = spawn_app(&format!(
        "[asr]\nmodel = \"/nonexistent/pocketsphinx/en-us\"\n{}",
        ivr_flow(SPEECH_RECEIVE)
    ));
    let mut gw = Gateway::dial(&app, "asr-missing-1").await;
    let call = app
        .wait_for_call("asr-missing-1", |c| c["status"] == "progressing")
        .await;
    let (status, err) = app
        .post_json(&format!(
            "/api/v1/calls/{}/transcribe",
            call["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, 503, "{err}");
    assert!(err.to_string().contains("pocketsphinx-en-us"), "{err}");
    let (_, tts) = gateway_says(&mut gw, "check my balance").await;
    assert!(tts.starts_with("Sorry."), "{tts}");
    assert!(tts.contains("/nonexistent/pocketsphinx/en-us"), "{tts}");
    assert!(tts.contains("libpocketsphinx3 pocketsphinx-en-us"), "{tts}");
    gw.expect(T::CallEnd).await;
    let (status, health) = app.get_json("/health").await;
    assert_eq!(status, 200, "{health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_with_auto_transcribe_keeps_what_its_callers_say() {
    let flow = r#"
[bots.meet]
kind = "flow"
actions = [
  { type = "answer" },
  { type = "conference_join", conference_id = "townhall" },
  { type = "hangup" },
]
[[routes]]
bot = "meet"
"#;
    let app = spawn_app(flow);
    let (status, room) = app
        .post_body(
            "/api/v1/calls/rooms",
            &json!({ "name": "townhall", "type": "persistent",
                     "settings": { "auto_transcribe": true } }),
        )
        .await;
    assert_eq!(status, 201, "{room}");
    let room_id = room["room_id"].as_str().unwrap().to_owned();
    let gw = Gateway::dial(&app, "asr-room-1").await;
    eventually("the caller is in the room", || async {
        let (_, r) = app
            .get_json(&format!("/api/v1/calls/rooms/{room_id}"))
            .await;
        r["current_participants"] == 1
    })
    .await;
    for chunk in utterance("please check the balance of my account").chunks(800) {
        gw.send_audio(chunk).await;
    }
    let call = app.call_by_reference("asr-room-1").await;
    let call_id = call["id"].as_str().unwrap().to_owned();
    eventually("the room's transcript has the caller's line", || async {
        let (_, t) = app
            .get_json(&format!("/api/v1/calls/rooms/{room_id}/transcript"))
            .await;
        t["transcription"] == true
            && t["entries"].as_array().is_some_and(|e| {
                e.iter().any(|l| {
                    l["type"] == "text_asr"
                        && l["call_id"] == call_id.as_str()
                        && l["text"].as_str().is_some_and(|t| !t.trim().is_empty())
                })
            })
    })
    .await;
    gw.hang_up();
    app.wait_hangup("asr-room-1").await;
}
