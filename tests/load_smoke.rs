//! A small run of the load generator against the real switch, so that it cannot rot.

mod support;

use std::time::Duration;

use support::*;
use switchboard::load::{self, LoadOptions, Mode, Protocol};

fn options(app: &TestApp, protocol: Protocol, mode: Mode, calls: usize) -> LoadOptions {
    LoadOptions {
        protocol,
        mode,
        http: app.handle.http_addr,
        grpc: app.handle.grpc_addr,
        sip: app.handle.sip_addr,
        token: "load".into(),
        calls,
        ramp: Duration::from_millis(300),
        hold: Duration::from_secs(2),
        pid: Some(std::process::id()),
        concurrency: 4,
        room_size: 0,
    }
}

const ECHO: &str = r#"
[auth]
live_call_tokens = ["load"]
[bots.echo]
kind = "flow"
actions = [{ type = "answer" }, { type = "echo", duration = 600000 }]
[[routes]]
bot = "echo"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_callers_stream_and_hear_their_echo() {
    let app = spawn_app(ECHO);
    let report = load::run(options(&app, Protocol::Ws, Mode::Stream, 3))
        .await
        .expect("run");
    assert_eq!(report.admitted, 3, "{report}");
    assert_eq!(report.refused + report.failed, 0, "{report}");
    assert!(
        report.frames_sent > 0 && report.frames_received > 0,
        "{report}"
    );
    assert!(
        report.latency_count > 0,
        "echoed bursts were timed: {report}"
    );
    assert!(report.cpu_percent_per_call.is_some(), "{report}");
    let printed = report.to_string();
    assert!(printed.contains("% of one core per call"), "{printed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smartivr_callers_stream_and_hear_their_echo() {
    let app = spawn_app(ECHO);
    let report = load::run(options(&app, Protocol::Smartivr, Mode::Stream, 2))
        .await
        .expect("run");
    assert_eq!(report.admitted, 2, "{report}");
    assert!(report.frames_received > 0, "utterances came back: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ringover_streams_stream_and_hear_their_echo() {
    let app = spawn_app(ECHO);
    let report = load::run(options(&app, Protocol::Ringover, Mode::Stream, 2))
        .await
        .expect("run");
    assert_eq!(report.admitted, 2, "{report}");
    assert!(report.frames_received > 0, "utterances came back: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_streams_stream_and_hear_their_echo() {
    let app = spawn_app(ECHO);
    let report = load::run(options(&app, Protocol::Twilio, Mode::Stream, 2))
        .await
        .expect("run");
    assert_eq!(report.admitted, 2, "{report}");
    assert_eq!(report.failed, 0, "{report}");
    assert!(report.frames_received > 0, "utterances came back: {report}");
    assert!(
        report.latency_count > 0,
        "echoed bursts were timed: {report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_hear_their_echo_through_the_twilio_echo_bot() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bot = listener.local_addr().unwrap();
    tokio::spawn(switchboard::bots::twilio_echo::serve(
        listener,
        std::future::pending(),
    ));
    let app = spawn_app(&format!(
        "[auth]\nlive_call_tokens = [\"load\"]\n[bots.tw]\nkind = \"twilio_stream\"\nurl = \"ws://{bot}/\"\n[[routes]]\nbot = \"tw\"\n"
    ));
    let report = load::run(options(&app, Protocol::Ws, Mode::Stream, 3))
        .await
        .expect("run");
    assert_eq!(report.admitted, 3, "{report}");
    assert_eq!(report.failed, 0, "{report}");
    assert!(
        report.latency_count > 0,
        "echoed bursts were timed: {report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_callers_in_rooms_hear_each_other() {
    let app = spawn_app(
        r#"
[auth]
live_call_tokens = ["load"]
[bots.rooms]
kind = "flow"
actions = [{ type = "conference_join", conference_id = "${hotline}" }, { type = "hangup" }]
[[routes]]
bot = "rooms"
"#,
    );
    let mut opts = options(&app, Protocol::Ws, Mode::Stream, 4);
    opts.room_size = 2;
    let report = load::run(opts).await.expect("run");
    assert_eq!(report.admitted, 4, "{report}");
    assert_eq!(report.failed, 0, "{report}");
    let (status, call) = app.get_json("/calls?reference=load-0&page_size=1").await;
    assert_eq!(status, 200);
    let first = &call["result"][0];
    // Each hears the other's bursts through its room (never its own).
    assert!(
        report.latency_count > 0,
        "bursts were heard: {report}\n{first}"
    );
    assert_ne!(
        first["room_id"], "00000000-0000-0000-0000-000000000000",
        "{first}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_leaves_no_live_calls() {
    let app = spawn_app(
        "[bots.hi]\nkind = \"flow\"\nactions = [{ type = \"talk\", text = \"Hi.\" }, { type = \"hangup\" }]\n[[routes]]\nbot = \"hi\"\n",
    );
    let report = load::run(options(&app, Protocol::Smartivr, Mode::Churn, 20))
        .await
        .expect("run");
    assert_eq!(report.admitted, 20, "{report}");
    assert_eq!(
        report.frames_received, 20,
        "every call was greeted: {report}"
    );
    assert_eq!(report.live_after, Some(0), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_refuses_targets_off_loopback() {
    let app = spawn_app(ECHO);
    let mut opts = options(&app, Protocol::Ws, Mode::Stream, 1);
    opts.http = "10.1.2.3:8080".parse().unwrap();
    assert!(load::run(opts).await.is_err());
}

const SIP_ECHO: &str = r#"
[sip]
listen = "127.0.0.1:0"
rtp_ports = "41000-41099"
invites_per_second = 1000
[bots.echo]
kind = "flow"
actions = [{ type = "answer" }, { type = "echo", duration = 600000 }]
[[routes]]
bot = "echo"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_callers_stream_rtp_and_hear_their_echo() {
    let app = spawn_app(SIP_ECHO);
    let report = load::run(options(&app, Protocol::Sip, Mode::Stream, 3))
        .await
        .expect("run");
    assert_eq!(report.admitted, 3, "{report}");
    assert_eq!(report.refused + report.failed, 0, "{report}");
    assert!(
        report.frames_sent > 0 && report.frames_received > 0,
        "{report}"
    );
    assert!(
        report.latency_count > 0,
        "echoed bursts were timed: {report}"
    );
    let (spaced, ..) = report.jitter.expect("SIP runs measure packet spacing");
    assert!(spaced > 0, "{report}");
    assert!(report.to_string().contains("packet spacing"), "{report}");
}
