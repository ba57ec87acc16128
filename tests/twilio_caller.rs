//! Twilio Media Streams as a caller protocol, end to end: a real WebSocket client playing
//! Twilio (the messages Twilio sends) against the real switch.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

fn menu_app(extra: &str) -> TestApp {
    spawn_app(&format!(
        "{extra}\n{MENU_FLOW}\n[[routes]]\nbot = \"menu\"\nmatch = {{ ingress = \"twilio\", hotline = \"1900\" }}\n"
    ))
}

/// Reads messages until a `mark`, gathering the audio of the `media` before it. Panics on a
/// close.
async fn utterance(c: &mut TwilioClient) -> (Vec<i16>, Value) {
    let mut audio = Vec::new();
    loop {
        let m = c.next().await.json();
        match m["event"].as_str() {
            Some("media") => {
                assert_eq!(m["streamSid"], c.stream_sid.as_str(), "{m}");
                audio.extend(twilio_media_samples(&m));
            }
            Some("mark") => return (audio, m),
            Some("clear") => continue,
            _ => panic!("unexpected message {m}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greeting_is_mulaw_media_then_a_mark_and_keys_work() {
    let app = menu_app("");
    let mut c = TwilioClient::dial(
        &app,
        "CA-greet",
        json!({"hotline": "1900", "from": "+15551230000", "to": "+15559870000", "workspace": "acme"}),
    )
    .await;
    let started = Instant::now();
    let (hello, mark) = utterance(&mut c).await;
    assert!(hello.len() > 2400, "{} samples of greeting", hello.len());
    assert!(
        switchboard::media::pcm::rms(&hello) > 300.0,
        "speech is audible"
    );
    assert_eq!(mark["mark"]["name"], "prompt-1", "{mark}");
    let call = app.call_by_reference("CA-greet").await;
    assert_eq!(call["status"], "progressing");
    assert_eq!(call["source"]["target"], "+15551230000");
    assert_eq!(call["destination"]["target"], "+15559870000");
    assert_eq!(call["metadata"]["streamSid"], c.stream_sid.as_str());
    assert_eq!(call["metadata"]["customParameters"]["hotline"], "1900");

    // Twilio echoes the mark once it has played the greeting; the menu follows only after
    // the greeting has had time to play.
    let hello_lasts = Duration::from_millis(hello.len() as u64 / 8);
    c.mark("prompt-1").await;
    let (menu, mark) = utterance(&mut c).await;
    assert!(
        started.elapsed() + Duration::from_millis(100) >= hello_lasts,
        "the menu came {:?} after a {hello_lasts:?} greeting",
        started.elapsed()
    );
    assert!(menu.len() > 8000, "the menu prompt");
    assert_eq!(mark["mark"]["name"], "prompt-2");
    c.mark("prompt-2").await;

    // Key 3: goodbye, then the switch closes the stream.
    c.press("3").await;
    let (bye, _) = utterance(&mut c).await;
    assert!(!bye.is_empty());
    match c.next().await {
        RoEvent::Closed(code) => assert_eq!(code, Some(1000)),
        other => panic!("expected the close, got {other:?}"),
    }
    let call = app.wait_hangup("CA-greet").await;
    assert_eq!(call["hangup_reason"], "normal");
    assert_eq!(call["hangup_by"], "local");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_speech_over_a_barge_in_prompt_sends_clear() {
    let app = spawn_app(
        r#"
[bots.b]
kind = "flow"
actions = [
  { type = "talk", text = "This prompt is long on purpose, so that a caller has plenty of time to talk over it.", barge_in = true },
  { type = "talk", text = "Next." },
  { type = "sleep", duration = 20000 },
]
[[routes]]
bot = "b"
"#,
    );
    let mut c = TwilioClient::dial(&app, "CA-barge", json!({})).await;
    let (prompt, _) = utterance(&mut c).await;
    let lasts = Duration::from_millis(prompt.len() as u64 / 8);
    let start = Instant::now();
    // Loud caller audio in 20 ms messages until the switch says `clear`.
    let mut i = 0;
    let clear = loop {
        c.send_audio(&tone_8k(440.0, 20, 12_000.0)).await;
        i += 1;
        assert!(i < 1000, "no clear after 20 s of speech");
        match tokio::time::timeout(Duration::from_millis(20), c.next()).await {
            Ok(RoEvent::Json(m)) if m["event"] == "clear" => break m,
            Ok(RoEvent::Json(_)) => continue,
            Ok(other) => panic!("{other:?}"),
            Err(_) => continue,
        }
    };
    assert_eq!(clear["streamSid"], c.stream_sid.as_str());
    assert!(
        start.elapsed() < lasts / 2,
        "clear after {:?}; the prompt lasts {lasts:?}",
        start.elapsed()
    );
    // The flow moved on to the next prompt.
    let (next, _) = utterance(&mut c).await;
    assert!(!next.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_stops_ends_the_call_as_remote() {
    let app = menu_app("");
    let mut c = TwilioClient::dial(&app, "CA-stop", json!({"hotline": "1900"})).await;
    utterance(&mut c).await;
    c.stop().await;
    let call = app.wait_hangup("CA-stop").await;
    assert_eq!(call["hangup_reason"], "normal");
    assert_eq!(call["hangup_by"], "remote");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_in_the_url_or_in_start_and_signatures() {
    let app = menu_app("[twilio]\ntokens = [\"tw-secret\"]\nauth_token = \"12345\"\n");
    let url = |q: &str| format!("ws://{}/twilio/stream{q}", app.handle.http_addr);
    let connect = |url: String, signature: Option<String>| async move {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = url.into_client_request().unwrap();
        if let Some(s) = signature {
            request
                .headers_mut()
                .insert("X-Twilio-Signature", s.parse().unwrap());
        }
        tokio_tungstenite::connect_async(request).await
    };
    let status = |r: Result<_, tokio_tungstenite::tungstenite::Error>| match r {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Ok(_) => 101,
        Err(e) => panic!("{e}"),
    };
    // Twilio signs the URL it was given.
    let sign = |u: &str| switchboard::protocols::twilio::convert::signature("12345", u);
    let good = url("?token=tw-secret");
    assert_eq!(
        status(connect(good.clone(), None).await),
        403,
        "no signature"
    );
    assert_eq!(
        status(connect(good.clone(), Some(sign(&url("?token=other")))).await),
        403,
        "a signature of another URL"
    );
    let wss = good.replacen("ws://", "wss://", 1);
    assert_eq!(status(connect(good.clone(), Some(sign(&wss))).await), 101);
    let wrong = url("?token=nope");
    assert_eq!(
        status(connect(wrong.clone(), Some(sign(&wrong))).await),
        401
    );

    // Without a token in the URL, the one in `start` counts.
    let bare = url("");
    let (ws, _) = connect(bare.clone(), Some(sign(&bare))).await.unwrap();
    let mut c = TwilioClient::from_ws(ws);
    c.start(
        "CA-late-token",
        json!({"hotline": "1900", "token": "tw-secret"}),
    )
    .await;
    let (hello, _) = utterance(&mut c).await;
    assert!(!hello.is_empty());
    let call = app.call_by_reference("CA-late-token").await;
    assert!(
        call["metadata"]["customParameters"].get("token").is_none(),
        "the token is not kept: {call}"
    );
    let (ws, _) = connect(bare.clone(), Some(sign(&bare))).await.unwrap();
    let mut c = TwilioClient::from_ws(ws);
    c.start("CA-no-token", json!({"hotline": "1900", "token": "wrong"}))
        .await;
    match c.next().await {
        RoEvent::Closed(code) => assert_eq!(code, Some(1008)),
        other => panic!("expected a close, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_get_clear_errors() {
    let app = menu_app("");
    // Media before start: closed with 1008, no call.
    let mut c = TwilioClient::connect(&app, "").await.unwrap();
    c.send_audio(&[0; 160]).await;
    match c.next().await {
        RoEvent::Closed(code) => assert_eq!(code, Some(1008)),
        other => panic!("{other:?}"),
    }
    // Bad base64 after start: 1007 and the call fails with why.
    let mut c = TwilioClient::dial(&app, "CA-b64", json!({"hotline": "1900"})).await;
    utterance(&mut c).await;
    c.send_json(json!({"event": "media", "streamSid": c.stream_sid, "media": {"payload": "@@"}}))
        .await;
    loop {
        match c.next().await {
            RoEvent::Closed(code) => {
                assert_eq!(code, Some(1007));
                break;
            }
            RoEvent::Json(_) => continue,
        }
    }
    let call = app.wait_hangup("CA-b64").await;
    assert_eq!(call["hangup_reason"], "failed");
    assert!(
        call["hangup_detail"].as_str().unwrap().contains("base64"),
        "{call}"
    );
    // Unknown events are skipped; the call goes on and keys still work.
    let mut c = TwilioClient::dial(&app, "CA-unknown", json!({"hotline": "1900"})).await;
    utterance(&mut c).await;
    c.send_json(json!({"event": "brand-new", "streamSid": c.stream_sid}))
        .await;
    c.press("3").await;
    loop {
        match c.next().await {
            RoEvent::Closed(code) => {
                assert_eq!(code, Some(1000));
                break;
            }
            RoEvent::Json(_) => continue,
        }
    }
    assert_eq!(
        app.wait_hangup("CA-unknown").await["hangup_reason"],
        "normal"
    );
    // A frame over 64 KiB: 1009, failed.
    let mut c = TwilioClient::dial(&app, "CA-huge", json!({"hotline": "1900"})).await;
    utterance(&mut c).await;
    c.send_text(format!(
        r#"{{"event":"media","media":{{"payload":"{}"}}}}"#,
        "A".repeat(100_000)
    ))
    .await;
    loop {
        match c.next().await {
            RoEvent::Closed(code) => {
                assert_eq!(code, Some(1009));
                break;
            }
            RoEvent::Json(_) => continue,
        }
    }
    assert_eq!(app.wait_hangup("CA-huge").await["hangup_reason"], "failed");
    // No route for this hotline: the call is refused and the socket closed with 1008.
    let mut c = TwilioClient::dial(&app, "CA-noroute", json!({"hotline": "0000"})).await;
    match c.next().await {
        RoEvent::Closed(code) => assert_eq!(code, Some(1008)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_without_start_is_closed_and_creates_no_call() {
    let app = menu_app("");
    let mut c = TwilioClient::connect(&app, "").await.unwrap();
    c.send_json(json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        .await;
    let waited = Instant::now();
    match c.next().await {
        RoEvent::Closed(code) => assert_eq!(code, Some(1008)),
        other => panic!("expected the close, got {other:?}"),
    }
    assert!(
        waited.elapsed() >= Duration::from_secs(9),
        "{:?}",
        waited.elapsed()
    );
    let (status, page) = app.get_json("/calls?page_size=10").await;
    assert_eq!(status, 200);
    assert_eq!(page["result"].as_array().map(Vec::len), Some(0), "{page}");
}
