//! What peers can make the switch read: oversized ids, numbers, metadata and keys are refused
//! on every protocol and the Calls API, and request bodies are bounded in size and time.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;
use switchboard::pb::live_call::live_call_client::LiveCallClient;
use switchboard::pb::live_call::{client_request, server_response, ClientRequest, InitialInfo};
use switchboard::pb::smartivr::{Config as IvrConfig, SmartIvrRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const WS_TOKEN: &str = "t0ken";

fn limits_app(extra: &str) -> TestApp {
    spawn_app(&format!(
        "{MENU_FLOW}\n[[routes]]\nbot = \"menu\"\n[auth]\nlive_call_tokens = [\"{WS_TOKEN}\"]\n{extra}"
    ))
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_api_refuses_oversized_fields_naming_them() {
    let app = limits_app("");
    let cases = [
        (
            json!({"destination": {"type": "tel", "target": "1".repeat(257)}}),
            "destination.target",
            "256",
        ),
        (
            json!({"destination": {"type": "tel", "target": "+1"}, "reference": "r".repeat(129)}),
            "reference",
            "128",
        ),
        (
            json!({"destination": {"type": "tel", "target": "+1"}, "workspace": "w".repeat(129)}),
            "workspace",
            "128",
        ),
        (
            json!({"destination": {"type": "tel", "target": "+1", "target_name": "n".repeat(300)}}),
            "destination.target_name",
            "256",
        ),
        (
            json!({"destination": {"type": "t".repeat(1000), "target": "+1"}}),
            "destination.type",
            "32",
        ),
        (
            json!({"destination": {"type": "tel", "target": "+1"}, "source": {"type": "tel", "target": "2".repeat(300)}}),
            "source.target",
            "256",
        ),
    ];
    for (body, field, limit) in cases {
        let (status, answer) = app.post_body("/api/v1/calls/initiate", &body).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["code"], 400, "{answer}");
        let text = message(&answer);
        assert!(text.contains(field), "{field}: {answer}");
        assert!(text.contains(limit), "{field}: {answer}");
    }
    let (status, answer) = app
        .get_json(&format!(
            "/api/v1/calls/history?reference={}",
            "r".repeat(200)
        ))
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(message(&answer).contains("reference"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_keys_in_one_smartivr_message_fail_the_call() {
    let app = limits_app("");
    let mut gw = Gateway::dial(&app, "keys-1").await;
    gw.expect_tts("Hello").await;
    gw.send(SmartIvrRequest {
        config: Some(IvrConfig {
            conversation_id: "keys-1".into(),
        }),
        key_press: "1".repeat(1_000_000),
        ..Default::default()
    })
    .await;
    let mut error_message = None;
    let err = loop {
        match gw.next().await {
            Ok(Some(r)) => {
                if let Some(s) = r.status.filter(|s| s.code == -1) {
                    error_message = Some(s.message);
                }
            }
            Ok(None) => panic!("stream ended without an error status"),
            Err(e) => break e,
        }
    };
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("key_press"), "{err:?}");
    let error_message = error_message.expect("a status -1 response");
    assert!(error_message.contains("key_press"), "{error_message}");
    assert!(error_message.contains("32"), "{error_message}");
    let call = app.wait_hangup("keys-1").await;
    assert_eq!(call["hangup_reason"], "failed");
    let detail = call["hangup_detail"].as_str().unwrap_or("");
    assert!(detail.contains("key_press"), "{call}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_conversation_id_is_refused() {
    let app = limits_app("");
    let long = "c".repeat(129);
    let first = SmartIvrRequest {
        config: Some(IvrConfig {
            conversation_id: long.clone(),
        }),
        ..Default::default()
    };
    let err = match Gateway::open_with(&app, &long, first).await {
        Err(e) => e,
        Ok(mut gw) => loop {
            match gw.next().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("stream ended without an error"),
                Err(e) => break e,
            }
        },
    };
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("config.conversation_id"), "{err:?}");
    assert!(err.message().contains("128"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_call_ws_refuses_oversized_ids() {
    let app = limits_app("");
    let long_number = "9".repeat(300);
    let refused = WsCaller::connect(
        &app,
        &format!("/live-call/websocket/c1/{long_number}?token={WS_TOKEN}"),
    )
    .await;
    assert_eq!(refused.err(), Some(400));

    let mut ws = WsCaller::connect(
        &app,
        &format!("/live-call/websocket/ws-limit/+84900000001?token={WS_TOKEN}"),
    )
    .await
    .expect("upgrade");
    let mut info = initial_info("ws-limit", "1900");
    info["initial_info"]["call_id"] = json!("c".repeat(129));
    ws.send_json(info).await;
    match ws.next().await {
        WsEvent::Json(v) => {
            assert_eq!(v["error"]["error_code"], 400, "{v}");
            let text = v["error"]["message"].as_str().unwrap_or("");
            assert!(text.contains("initial_info.call_id"), "{v}");
            assert!(text.contains("128"), "{v}");
        }
        other => panic!("expected an error frame, got {other:?}"),
    }
    // The session goes on: a valid initial_info still starts the call.
    ws.send_json(initial_info("ws-limit", "1900")).await;
    app.call_by_reference("ws-limit").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_call_grpc_refuses_oversized_initial_info() {
    let app = limits_app("");
    let mut client = LiveCallClient::connect(app.grpc_url())
        .await
        .expect("connect");
    let (tx, rx) = mpsc::channel(4);
    tx.send(ClientRequest {
        status: true,
        data: Some(client_request::Data::InitialInfo(InitialInfo {
            call_id: "g".repeat(200),
            hotline: "1900".into(),
            ..Default::default()
        })),
    })
    .await
    .expect("queue");
    let mut stream = client
        .stream_call(ReceiverStream::new(rx))
        .await
        .expect("stream opens")
        .into_inner();
    let first = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("answered in time")
        .expect("an error response first")
        .expect("a response");
    let Some(server_response::Data::Error(e)) = first.data else {
        panic!("expected an error response, got {first:?}");
    };
    assert_eq!(e.error_code, 400);
    assert!(e.message.contains("initial_info.call_id"), "{e:?}");
    let status = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("answered in time")
        .expect_err("the stream ends with an error");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ringover_metadata_with_an_oversized_call_id_is_refused() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let app = limits_app("");
    let mut client =
        RingoverClient::dial(&app, json!({"event": "start", "callId": "x".repeat(200)})).await;
    let close = loop {
        let item = tokio::time::timeout(PATIENCE, client.ws.next())
            .await
            .expect("the switch answered in time");
        match item {
            Some(Ok(Message::Close(frame))) => break frame.expect("a close frame"),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(u16::from(close.code), 1008);
    assert!(close.reason.contains("metadata.callId"), "{close:?}");
    assert!(close.reason.contains("128"), "{close:?}");
}

/// The status line and JSON body of a raw HTTP/1.1 answer read from `socket` until it closes
/// or the body is whole.
async fn read_answer(socket: &mut tokio::net::tcp::OwnedReadHalf) -> (u16, Value) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = socket.read(&mut chunk).await.unwrap_or(0);
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = &text[..end];
            let length = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length || n == 0 {
                let status = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let body = &buf[end + 4..(end + 4 + length).min(buf.len())];
                return (status, serde_json::from_slice(body).unwrap_or(Value::Null));
            }
        }
        assert!(n > 0, "connection closed before an answer: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_gets_408_json() {
    let text = config_text(&format!("{MENU_FLOW}\n[[routes]]\nbot = \"menu\"\n"));
    let mut config = switchboard::config::Config::from_toml(&text).expect("valid config");
    config.http.body_timeout_ms = 500;
    let app = TestApp {
        handle: switchboard::app::spawn(config).expect("switch starts"),
        http: reqwest::Client::new(),
        key: None,
    };
    let stream = tokio::net::TcpStream::connect(app.handle.http_addr)
        .await
        .expect("connect");
    let (mut read, mut write) = stream.into_split();
    let head = "POST /api/v1/calls/initiate HTTP/1.1\r\nHost: switch\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{";
    write.write_all(head.as_bytes()).await.expect("send head");
    // A client that sends one byte every 200 ms, until the switch stops listening.
    let trickle = tokio::spawn(async move {
        for _ in 0..1000 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if write.write_all(b" ").await.is_err() {
                break;
            }
        }
    });
    let (status, body) = tokio::time::timeout(PATIENCE, read_answer(&mut read))
        .await
        .expect("answered in time");
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["error"]["code"], 408, "{body}");
    assert!(message(&body).contains("500 ms"), "{body}");
    trickle.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_and_wrong_method_answers_are_json() {
    let app = limits_app("");
    let big =
        json!({"destination": {"type": "tel", "target": "+1"}, "reference": "r".repeat(100_000)});
    let (status, body) = app.post_body("/api/v1/calls/initiate", &big).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], 413, "{body}");
    assert!(message(&body).contains("65536"), "{body}");

    // A raw body (record/start reads bytes) over the limit.
    let id = uuid::Uuid::new_v4();
    let r = app
        .http
        .post(app.url(&format!("/api/v1/calls/{id}/record/start")))
        .body(vec![b' '; 100_000])
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status().as_u16(), 413);
    let body: Value = r.json().await.expect("JSON body");
    assert_eq!(body["error"]["code"], 413, "{body}");

    for (method, path) in [
        (reqwest::Method::DELETE, "/health"),
        (reqwest::Method::PUT, "/api/v1/calls/history"),
        (reqwest::Method::GET, "/calls/x/hangup"),
    ] {
        let r = app
            .http
            .request(method.clone(), app.url(path))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status().as_u16(), 405, "{method} {path}");
        let body: Value = r.json().await.expect("JSON body");
        assert_eq!(body["error"]["code"], 405, "{body}");
        assert!(message(&body).contains(method.as_str()), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_without_the_json_content_type_gets_a_415_that_says_which_header() {
    let app = limits_app("");
    let body = r#"{"destination": {"type": "tel", "target": "+15550100"}}"#;
    // What `curl -d` sends unless told otherwise.
    let r = app
        .http
        .post(app.url("/api/v1/calls/initiate"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status().as_u16(), 415);
    let answer: Value = r.json().await.expect("JSON body");
    assert_eq!(answer["error"]["code"], 415, "{answer}");
    let text = message(&answer);
    assert!(text.contains("Content-Type: application/json"), "{answer}");
    assert!(
        text.contains("application/x-www-form-urlencoded"),
        "{answer}"
    );

    let r = app
        .http
        .post(app.url("/api/v1/calls/initiate"))
        .body(body)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status().as_u16(), 415);
    let answer: Value = r.json().await.expect("JSON body");
    assert!(message(&answer).contains("no Content-Type"), "{answer}");
}
