//! The `fetch` flow action: a slow webhook holds the caller, then its actions run.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;
use switchboard::pb::smartivr::SmartIvrResponseType as T;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// A one-route webhook on 127.0.0.1:0 that answers every request with `reply` after `delay`,
/// and passes each request's JSON body to the returned receiver.
async fn webhook(delay: Duration, reply: Value) -> (String, mpsc::UnboundedReceiver<Value>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind webhook");
    let url = format!("http://{}/next", listener.local_addr().expect("addr"));
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let tx = tx.clone();
            let reply = reply.to_string();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read the head, then as much body as Content-Length says.
                let body = loop {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + length {
                            break buf[end + 4..end + 4 + length].to_vec();
                        }
                    }
                };
                let _ = tx.send(serde_json::from_slice(&body).unwrap_or(Value::Null));
                tokio::time::sleep(delay).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                    reply.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    (url, rx)
}

fn fetch_app(url: &str) -> TestApp {
    spawn_app(&format!(
        r#"
[bots.hook]
kind = "flow"
actions = [
  {{ type = "answer" }},
  {{ type = "talk", text = "Hello." }},
  {{ type = "digits_receive", duration = 100, length = 1 }},
  {{ type = "fetch", url = "{url}", timeout = 20000, hold_after_ms = 200 }},
  {{ type = "talk", text = "The webhook failed." }},
]
[[routes]]
bot = "hook"
"#
    ))
}

fn reply() -> Value {
    json!({"actions": [
        {"type": "talk", "text": "Fetched."},
        {"type": "hangup"},
    ]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_webhook_holds_a_smartivr_caller_then_its_actions_run() {
    let (url, mut requests) = webhook(Duration::from_millis(1500), reply()).await;
    let app = fetch_app(&url);
    let mut gw = Gateway::dial(&app, "fetch-1").await;
    gw.expect_tts("Hello").await;
    gw.press("7").await;
    gw.expect(T::CallWait).await;
    let body = tokio::time::timeout(PATIENCE, requests.recv())
        .await
        .expect("webhook asked")
        .expect("a request body");
    assert_eq!(body["reference"], "fetch-1");
    assert_eq!(body["status"], "progressing");
    assert_eq!(body["variables"]["digits"], "7");
    gw.expect_tts("Fetched").await;
    gw.expect(T::CallEnd).await;
    let call = app.wait_hangup("fetch-1").await;
    assert_eq!(call["hangup_reason"], "normal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_webhook_lets_the_flow_go_on() {
    let (url, _requests) = webhook(Duration::ZERO, json!({"actions": "nope"})).await;
    let app = fetch_app(&url);
    let mut gw = Gateway::dial(&app, "fetch-bad").await;
    gw.expect_tts("Hello").await;
    gw.expect_tts("webhook failed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ringover_caller_hears_hold_music_until_the_next_prompt() {
    let (url, _requests) = webhook(Duration::from_millis(1500), reply()).await;
    let app = fetch_app(&url);
    let mut client = RingoverClient::dial(&app, json!({"call_id": "fetch-ro"})).await;
    // Keep the stream alive with a little silence now and then.
    client.send_binary(vec![0; 320]).await;
    let greeting = client.next().await.json();
    assert_eq!(greeting["type"], "streamAudio");
    // Hold music (the built-in tone), then a break before the fetched prompt.
    let hold = client.next().await.json();
    assert_eq!(hold["type"], "streamAudio", "{hold}");
    let tone = stream_audio_samples(&hold);
    assert!(switchboard::media::pcm::rms(&tone) > 100.0);
    let mut saw_break = false;
    loop {
        let v = client.next().await.json();
        if v == json!({"event": "break"}) {
            saw_break = true;
            continue;
        }
        assert_eq!(v["type"], "streamAudio", "{v}");
        if saw_break {
            break;
        }
    }
    match client.next().await {
        RoEvent::Closed(code) => assert_eq!(code, Some(1000)),
        other => panic!("expected close, got {other:?}"),
    }
}
