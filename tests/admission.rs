//! Over `max_calls`, new calls are refused at once on every protocol, and the admitted call
//! goes on.

mod support;

use serde_json::json;
use support::*;
use switchboard::pb::smartivr::SmartIvrRequest;

const CONFIG: &str = r#"
[server]
max_calls = 1
[auth]
live_call_tokens = ["t"]
[bots.wait]
kind = "flow"
actions = [{ type = "talk", text = "Hello." }, { type = "sleep", duration = 600000 }]
[[routes]]
bot = "wait"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_over_the_limit_are_refused_on_every_protocol() {
    let app = spawn_app(CONFIG);
    let mut first = Gateway::dial(&app, "admitted").await;
    first.expect_tts("Hello").await;

    // SmartIVR: RESOURCE_EXHAUSTED.
    let refused = Gateway::open_with(
        &app,
        "over",
        SmartIvrRequest {
            config: Some(switchboard::pb::smartivr::Config {
                conversation_id: "over".into(),
            }),
            ..Default::default()
        },
    )
    .await;
    match refused {
        Err(status) => assert_eq!(status.code(), tonic::Code::ResourceExhausted),
        Ok(_) => panic!("a second call was admitted over max_calls = 1"),
    }
    // Live-call WebSocket and Ringover: HTTP 503 before the upgrade.
    assert_eq!(
        WsCaller::connect(&app, "/live-call/websocket/over/+1?token=t")
            .await
            .err(),
        Some(503)
    );
    match RingoverClient::connect(&app, None).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status().as_u16(), 503),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a Ringover stream was admitted over max_calls = 1"),
    }

    // The admitted call is unaffected.
    let call = app.call_by_reference("admitted").await;
    assert_eq!(call["status"], "progressing");
    first.hang_up();
    app.wait_hangup("admitted").await;

    // Once it has ended there is room again.
    let mut c = WsCaller::connect(&app, "/live-call/websocket/after/+1?token=t")
        .await
        .expect("room again");
    c.send_json(initial_info("after", "1900")).await;
    let mut audio = Vec::new();
    c.send_json(json!({ "disconnect": {} })).await;
    let _ = c.next_non_audio(&mut audio).await;
    app.wait_hangup("after").await;
}
