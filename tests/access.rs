//! Access rules on every ingress, against the real switch: gRPC Bearer tokens and source
//! networks, tokens bound to a workspace, WebSocket and REST refusals, and the binary refusing
//! to listen beyond loopback without rules.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use serde_json::{json, Value};
use support::*;
use switchboard::pb::live_call::live_call_client::LiveCallClient;
use switchboard::pb::live_call::{client_request, ClientRequest, HealthCheckRequest, InitialInfo};
use switchboard::pb::smartivr::smart_ivr_phonegateway_client::SmartIvrPhonegatewayClient;
use switchboard::pb::smartivr::{Config as IvrConfig, SmartIvrRequest};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Status};

/// A flow that greets and waits, so an admitted call stays up while the test looks at it.
const WAIT_FLOW: &str = r#"
[bots.wait]
kind = "flow"
actions = [
  { type = "answer" },
  { type = "talk", text = "Hello." },
  { type = "sleep", duration = 600000 },
]
[[routes]]
bot = "wait"
"#;

/// The switch with `grpc_keys` in its `[grpc]` table (which `spawn_app` writes) and `extra`.
fn spawn_with_grpc(grpc_keys: &str, extra: &str) -> TestApp {
    let listener = "[grpc]\nlisten = \"127.0.0.1:0\"\n";
    let text = config_text(extra).replacen(listener, &format!("{listener}{grpc_keys}\n"), 1);
    let config = switchboard::config::Config::from_toml(&text).expect("test config is valid");
    TestApp {
        handle: switchboard::app::spawn(config).expect("switch starts"),
        http: reqwest::Client::new(),
        key: None,
    }
}

/// `request` with `authorization: Bearer TOKEN` metadata when `token` is set.
fn with_token<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(t) = token {
        let value = format!("Bearer {t}").parse().expect("ASCII metadata");
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// Opens a SmartIVR `CallToBot` stream; `Ok` once the switch accepted it.
async fn smartivr_call(
    app: &TestApp,
    conversation_id: &str,
    token: Option<&str>,
) -> Result<(), Status> {
    let mut client = SmartIvrPhonegatewayClient::connect(app.grpc_url())
        .await
        .expect("gRPC connects");
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tx.send(SmartIvrRequest {
        config: Some(IvrConfig {
            conversation_id: conversation_id.into(),
        }),
        ..Default::default()
    })
    .await
    .expect("queue first message");
    let mut responses = client
        .call_to_bot(with_token(ReceiverStream::new(rx), token))
        .await?
        .into_inner();
    // An admitted call answers with its greeting.
    tokio::time::timeout(PATIENCE, responses.message())
        .await
        .expect("the switch answered in time")?
        .expect("a response");
    Ok(())
}

fn initial_info(call_id: &str, workspace: &str) -> ClientRequest {
    ClientRequest {
        status: true,
        data: Some(client_request::Data::InitialInfo(InitialInfo {
            workspace_id: workspace.into(),
            call_id: call_id.into(),
            customer_phone_number: "+84900000002".into(),
            type_call: "inbound".into(),
            hotline: "1900".into(),
            url_audio_file: String::new(),
        })),
    }
}

/// Opens a `live_call.LiveCall/StreamCall` stream; `Ok` once the switch sent a first response.
async fn live_call_grpc(
    app: &TestApp,
    call_id: &str,
    workspace: &str,
    token: Option<&str>,
) -> Result<(), Status> {
    let mut client = LiveCallClient::connect(app.grpc_url())
        .await
        .expect("gRPC connects");
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tx.send(initial_info(call_id, workspace))
        .await
        .expect("queue first message");
    let mut responses = client
        .stream_call(with_token(ReceiverStream::new(rx), token))
        .await?
        .into_inner();
    tokio::time::timeout(PATIENCE, responses.message())
        .await
        .expect("the switch answered in time")?
        .expect("a response");
    Ok(())
}

/// The calls the switch recorded with `reference` (after its writes are in the store).
async fn calls_with_reference(app: &TestApp, reference: &str) -> Vec<Value> {
    let (status, page) = app
        .get_json(&format!("/calls?reference={reference}&page_size=10"))
        .await;
    assert_eq!(status, 200, "{page}");
    page["result"].as_array().cloned().unwrap_or_default()
}

fn expect_code(result: Result<(), Status>, code: Code, what: &str) -> Status {
    match result {
        Err(status) => {
            assert_eq!(status.code(), code, "{what}: {status:?}");
            assert!(!status.message().is_empty(), "{what}: a message says why");
            status
        }
        Ok(()) => panic!("{what}: expected {code:?}, the switch accepted"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_takes_bearer_tokens_on_smartivr_and_live_call() {
    let app = spawn_with_grpc(
        r#"tokens = ["g0-token", { token = "ga-token", workspace = "a" }]"#,
        WAIT_FLOW,
    );

    let status = expect_code(
        smartivr_call(&app, "ivr-none", None).await,
        Code::Unauthenticated,
        "SmartIVR without a token",
    );
    assert!(status.message().contains("Bearer"), "{status:?}");
    expect_code(
        smartivr_call(&app, "ivr-wrong", Some("g0-tokenx")).await,
        Code::Unauthenticated,
        "SmartIVR with a wrong token",
    );
    smartivr_call(&app, "ivr-ok", Some("g0-token"))
        .await
        .expect("SmartIVR with the token is accepted");
    // A SmartIVR call through a token bound to a workspace is placed in it.
    smartivr_call(&app, "ivr-ws", Some("ga-token"))
        .await
        .expect("SmartIVR with a bound token is accepted");
    assert_eq!(app.call_by_reference("ivr-ws").await["workspace"], "a");

    expect_code(
        live_call_grpc(&app, "lc-none", "w", None).await,
        Code::Unauthenticated,
        "live_call without a token",
    );
    expect_code(
        live_call_grpc(&app, "lc-wrong", "w", Some("nope")).await,
        Code::Unauthenticated,
        "live_call with a wrong token",
    );
    let mut health = LiveCallClient::connect(app.grpc_url())
        .await
        .expect("connect");
    let refused = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await;
    assert_eq!(
        refused.map(|_| ()).unwrap_err().code(),
        Code::Unauthenticated
    );

    live_call_grpc(&app, "lc-ok", "w", Some("g0-token"))
        .await
        .expect("live_call with the token is accepted");
    assert_eq!(app.call_by_reference("lc-ok").await["workspace"], "w");

    // A token bound to workspace "a": another workspace is refused and no call is created.
    let status = expect_code(
        live_call_grpc(&app, "lc-b", "b", Some("ga-token")).await,
        Code::PermissionDenied,
        "live_call into another workspace",
    );
    assert!(status.message().contains("`a`"), "{status:?}");
    live_call_grpc(&app, "lc-a", "a", Some("ga-token"))
        .await
        .expect("live_call into the token's workspace");
    live_call_grpc(&app, "lc-empty", "", Some("ga-token"))
        .await
        .expect("live_call without a workspace takes the token's");
    assert_eq!(app.call_by_reference("lc-a").await["workspace"], "a");
    assert_eq!(app.call_by_reference("lc-empty").await["workspace"], "a");
    assert!(calls_with_reference(&app, "lc-b").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_allow_from_admits_by_source_address() {
    let elsewhere = spawn_with_grpc(r#"allow_from = ["10.0.0.0/8", "fd00::/8"]"#, WAIT_FLOW);
    let status = expect_code(
        smartivr_call(&elsewhere, "from-far", None).await,
        Code::PermissionDenied,
        "SmartIVR from outside allow_from",
    );
    assert!(status.message().contains("127.0.0.1"), "{status:?}");
    expect_code(
        live_call_grpc(&elsewhere, "from-far-lc", "w", None).await,
        Code::PermissionDenied,
        "live_call from outside allow_from",
    );
    drop(elsewhere);

    let here = spawn_with_grpc(r#"allow_from = ["10.0.0.0/8", "127.0.0.1/32"]"#, WAIT_FLOW);
    smartivr_call(&here, "from-here", None)
        .await
        .expect("SmartIVR from an allowed network");
    live_call_grpc(&here, "from-here-lc", "w", None)
        .await
        .expect("live_call from an allowed network");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_call_ws_token_bound_to_a_workspace_creates_calls_only_in_it() {
    let app = spawn_app(&format!(
        "[auth]\nlive_call_tokens = [\"free\", {{ token = \"ta\", workspace = \"a\" }}]\n{WAIT_FLOW}"
    ));
    let info = |call_id: &str, workspace: &str| {
        json!({ "initial_info": {
            "workspace_id": workspace,
            "call_id": call_id,
            "customer_phone_number": "+84900000001",
            "type_call": "inbound",
            "hotline": "1900",
            "url_audio_file": ""
        } })
    };

    assert_eq!(
        WsCaller::connect(&app, "/live-call/websocket/x/+1")
            .await
            .err(),
        Some(401),
        "no token"
    );

    let mut c = WsCaller::connect(&app, "/live-call/websocket/ws-b/+84900000001?token=ta")
        .await
        .expect("upgrade");
    c.send_json(info("ws-b", "b")).await;
    match c.next().await {
        WsEvent::Json(v) => {
            assert_eq!(v["error"]["error_code"], 403, "{v}");
            let message = v["error"]["message"].as_str().unwrap_or("");
            assert!(message.contains("`a`") && message.contains("`b`"), "{v}");
        }
        other => panic!("expected the error frame, got {other:?}"),
    }
    match c.next().await {
        WsEvent::Close(code) => assert_eq!(code, Some(1008)),
        other => panic!("expected a close, got {other:?}"),
    }
    assert!(calls_with_reference(&app, "ws-b").await.is_empty());

    for (call_id, workspace) in [("ws-a", "a"), ("ws-empty", "")] {
        let mut c = WsCaller::connect(
            &app,
            &format!("/live-call/websocket/{call_id}/+84900000001?token=ta"),
        )
        .await
        .expect("upgrade");
        c.send_json(info(call_id, workspace)).await;
        match c.next().await {
            WsEvent::Json(v) => assert!(v.get("audio_output").is_some(), "{v}"),
            other => panic!("expected the greeting, got {other:?}"),
        }
        assert_eq!(app.call_by_reference(call_id).await["workspace"], "a");
    }

    // A token without a workspace creates calls where it is asked to.
    let mut c = WsCaller::connect(&app, "/live-call/websocket/ws-free/+84900000001?token=free")
        .await
        .expect("upgrade");
    c.send_json(info("ws-free", "b")).await;
    assert!(matches!(c.next().await, WsEvent::Json(_)));
    assert_eq!(app.call_by_reference("ws-free").await["workspace"], "b");
}

/// The HTTP status and JSON body of a refused Ringover upgrade.
async fn ringover_refusal(app: &TestApp, token: Option<&str>) -> (u16, Value) {
    match RingoverClient::connect(app, token).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = serde_json::from_slice(response.body().as_deref().unwrap_or(b"{}"))
                .expect("JSON error body");
            (response.status().as_u16(), body)
        }
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("token {token:?} must be refused"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_ingresses_refuse_without_token_or_from_elsewhere() {
    let app = spawn_app(&format!(
        "[ringover]\ntokens = [\"r0\"]\n[auth]\nlive_call_allow_from = [\"192.0.2.0/24\"]\n{WAIT_FLOW}"
    ));
    let (status, body) = ringover_refusal(&app, None).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (401, json!(401)),
        "{body}"
    );
    let (status, _) = ringover_refusal(&app, Some("r1")).await;
    assert_eq!(status, 401);
    RingoverClient::connect(&app, Some("r0"))
        .await
        .expect("the right token connects");

    // The live-call WebSocket only admits 192.0.2.0/24: loopback gets 403, token or not.
    assert_eq!(
        WsCaller::connect(&app, "/live-call/websocket/c/+1")
            .await
            .err(),
        Some(403)
    );
    drop(app);

    let app = spawn_app(&format!(
        "[ringover]\nallow_from = [\"::1/128\"]\n{WAIT_FLOW}"
    ));
    let (status, body) = ringover_refusal(&app, None).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("127.0.0.1"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_admits_keys_or_allowed_networks() {
    let mut app =
        spawn_app("[auth]\napi_allow_from = [\"192.0.2.0/24\"]\napi_keys = [{ key = \"k\" }]\n");
    let (status, body) = app.get_json("/calls").await;
    assert_eq!(status, 401, "{body}");
    app.key = Some("k".into());
    let (status, body) = app.get_json("/calls").await;
    assert_eq!(status, 200, "{body}");
    drop(app);

    let app = spawn_app("[auth]\napi_allow_from = [\"127.0.0.0/8\"]\n");
    let (status, body) = app.get_json("/calls").await;
    assert_eq!(status, 200, "{body}");
    drop(app);

    let app = spawn_app("[auth]\napi_allow_from = [\"10.0.0.0/8\"]\n");
    let (status, body) = app.get_json("/calls").await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = app.get_json("/health").await;
    assert_eq!(status, 200, "/health stays open");
}

/// A config file under a fresh data folder: `listeners` and `extra`, the store kept there.
fn config_file(text: &str) -> std::path::PathBuf {
    let dir = temp_data_dir();
    let path = dir.join("config.toml");
    let full = format!("{}{text}", store_toml(&dir, &sqlite_url(&dir)));
    std::fs::write(&path, full).expect("write config");
    path
}

const PUBLIC: &str = "[http]\nlisten = \"0.0.0.0:0\"\n[grpc]\nlisten = \"0.0.0.0:0\"\n";

#[test]
fn the_binary_refuses_a_public_listener_without_rules() {
    let path = config_file(PUBLIC);
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info")
        .output()
        .expect("run switchboard");
    assert!(!out.status.success(), "{:?}", out.status);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in [
        "grpc.tokens",
        "grpc.allow_from",
        "grpc.allow_unauthenticated",
        "auth.live_call_tokens",
        "ringover.tokens",
        "twilio.tokens",
        "auth.api_keys",
    ] {
        assert!(stderr.contains(key), "{key} missing from: {stderr}");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("switchboard listening"), "{stdout}");
}

#[test]
fn the_binary_starts_a_public_listener_open_on_purpose() {
    let path = config_file(
        "[http]\nlisten = \"0.0.0.0:0\"\n\
         [grpc]\nlisten = \"0.0.0.0:0\"\nallow_unauthenticated = true\n\
         [ringover]\nallow_unauthenticated = true\n\
         [twilio]\nallow_unauthenticated = true\n\
         [auth]\napi_allow_unauthenticated = true\nlive_call_allow_unauthenticated = true\n",
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start switchboard");
    let stdout = child.stdout.take().expect("piped stdout");
    let (lines_tx, lines_rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    let listening = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines_rx.recv_timeout(left) {
            Ok(line) if line.contains("switchboard listening") => break true,
            Ok(line) => seen.push(line),
            Err(_) => break false,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    drop(lines_rx);
    let _ = reader.join();
    assert!(listening, "never said it was listening; printed: {seen:#?}");
    let warnings: Vec<&String> = seen
        .iter()
        .filter(|l| l.contains("WARN") && l.contains("allow_unauthenticated"))
        .collect();
    assert_eq!(warnings.len(), 5, "one warning per open ingress: {seen:#?}");
}
