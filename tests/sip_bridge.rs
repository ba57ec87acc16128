//! Calls that the switch dials itself, bridged to other calls: a flow's `connect` to a phone
//! number through a SIP trunk, and a room's `join` with a `destination`. The called side is
//! SIPp answering and sending back every RTP packet it gets (`-rtp_echo`), so a WebSocket
//! caller that sends a tone hears that same tone come back only if audio crosses the bridge
//! both ways.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::sip::{self, free_udp_port, Sipp};
use support::*;
use switchboard::pb::smartivr::smart_ivr_phonegateway_server::{
    SmartIvrPhonegateway, SmartIvrPhonegatewayServer,
};
use switchboard::pb::smartivr::{
    SmartIvrRequest, SmartIvrResponse, SmartIvrResponseType as T, Status as IvrStatus,
};
use tokio_stream::wrappers::ReceiverStream;
use tokio_tungstenite::tungstenite::Message;

/// The caller's tone, and the ringback's two (which must not be what is heard).
const CALLER_HZ: f64 = 700.0;
const RINGBACK_HZ: [f64; 2] = [440.0, 480.0];

/// Ten RTP ports of this test process's own, spread by process id.
fn rtp_range() -> String {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % 20;
    let base = 46000 + (std::process::id() % 50) as u16 * 200 + n * 10;
    format!("{base}-{}", base + 9)
}

/// A switch with SIP, a trunk to SIPp on `trunk_port`, and a flow that `connect`s every
/// caller of hotline `bridge` to +15557000 through it (and says so when the bridge ends).
fn app_with_trunk(trunk_port: u16) -> TestApp {
    spawn_app(&format!(
        r#"
[auth]
live_call_tokens = ["t"]

[sip]
listen = "127.0.0.1:0"
rtp_ports = "{}"

[sip.trunks.carrier]
host = "127.0.0.1"
port = {trunk_port}
caller_id = "+15550001"

[bots.front]
kind = "flow"
actions = [
  {{ type = "connect", destinations = [{{ type = "tel", target = "+15557000" }}] }},
  {{ type = "talk", text = "The other side hung up." }},
  {{ type = "sleep", duration = 600000 }},
]

[bots.lobby]
kind = "flow"
actions = [
  {{ type = "answer" }},
  {{ type = "sleep", duration = 600000 }},
]

[[routes]]
bot = "front"
match = {{ hotline = "bridge" }}

[[routes]]
bot = "lobby"
"#,
        rtp_range()
    ))
}

/// 20 ms of the caller's tone at 16 kHz, frame `i` of a continuous tone, as `play_audio`.
fn tone_message(i: usize) -> Message {
    let samples: Vec<i16> = (0..320)
        .map(|k| {
            let t = (i * 320 + k) as f64 / 16000.0;
            (6000.0 * (2.0 * std::f64::consts::PI * CALLER_HZ * t).sin()) as i16
        })
        .collect();
    Message::Text(play_audio(&samples, 16000))
}

/// Whether the last 200 ms of what the caller heard (8 kHz) is its own tone, not ringback.
fn hears_own_tone(heard: &[i16]) -> bool {
    heard.len() >= 1600 && {
        let last = &heard[heard.len() - 1600..];
        tone_power(last, 8000, CALLER_HZ) > 1.0e5 && has_tone(last, 8000, CALLER_HZ, &RINGBACK_HZ)
    }
}

/// Sends the caller's tone every 20 ms and collects what it hears until it hears its own
/// tone back.
async fn talk_until_echoed(c: &mut WsCaller) -> Vec<i16> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut heard = Vec::new();
    let mut i = 0;
    while !hears_own_tone(&heard) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the caller never heard its tone back ({} samples heard)",
            heard.len()
        );
        tokio::select! {
            _ = tick.tick() => {
                c.ws.send(tone_message(i)).await.expect("send");
                i += 1;
            }
            msg = c.ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).expect("JSON");
                    heard.extend(audio_output(&v).unwrap_or_default());
                }
                Some(Ok(_)) => {}
                other => panic!("the caller's socket ended: {other:?}"),
            },
        }
    }
    heard
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_a_phone_number_dials_the_trunk_and_bridges_the_caller_to_it() {
    let port = free_udp_port();
    let callee = Sipp::echo_server(port, "uas_echo.xml");
    let app = app_with_trunk(port);
    let mut c = WsCaller::connect(&app, "/live-call/websocket/sb1/+84900000071?token=t")
        .await
        .expect("upgrade");
    c.send_json(initial_info("sb1", "bridge")).await;
    // The caller's tone goes out over RTP to the callee and comes back through the bridge.
    talk_until_echoed(&mut c).await;

    let master = app.call_by_reference("sb1").await;
    let chained = master["chained_call_ids"].as_array().expect("chained ids");
    assert_eq!(chained.len(), 1, "{master}");
    let child_id = chained[0].as_str().expect("id").to_owned();
    let (_, child) = app.get_json(&format!("/calls/{child_id}")).await;
    assert_eq!(child["master_call_id"], master["id"], "{child}");
    assert_eq!(child["direction"], "outgoing", "{child}");
    assert_eq!(child["status"], "progressing", "{child}");
    assert_eq!(child["destination"]["type"], "tel", "{child}");
    assert_eq!(child["destination"]["target"], "+15557000", "{child}");

    // The caller hangs up: the chained call is hung up with it, and the callee gets its BYE.
    drop(c);
    let master = app.wait_hangup("sb1").await;
    assert_eq!(master["hangup_by"], "remote", "{master}");
    let child = app.wait_hangup_by_id(&child_id).await;
    assert!(child["tm_progressing"].is_string(), "{child}");
    let run = callee.finish().await;
    assert!(run.success, "SIPp failed:\n{}", run.output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_dials_a_sip_destination_in_and_the_caller_hears_it() {
    let port = free_udp_port();
    let callee = Sipp::echo_server(port, "uas_echo.xml");
    let app = app_with_trunk(port);
    let (status, room) = app
        .post_body("/api/v1/calls/rooms", &json!({ "name": "dial-in" }))
        .await;
    assert_eq!(status, 201, "{room}");
    let room = room["room_id"].as_str().expect("room id").to_owned();
    let mut c = WsCaller::connect(&app, "/live-call/websocket/sb2/+84900000072?token=t")
        .await
        .expect("upgrade");
    c.send_json(initial_info("sb2", "lobby")).await;
    let caller = app
        .wait_for_call("sb2", |c| c["status"] == "progressing")
        .await;
    let join = |body: Value| {
        let app = &app;
        let room = room.clone();
        async move {
            app.post_body(&format!("/api/v1/calls/rooms/{room}/join"), &body)
                .await
        }
    };
    let (status, p) = join(json!({ "call_id": caller["id"] })).await;
    assert_eq!(status, 200, "{p}");

    // A destination of a type nothing dials, and a malformed one, are refused clearly.
    let (status, v) = join(json!({ "destination": { "type": "agent", "target": "x" } })).await;
    assert_eq!(status, 502, "{v}");
    let (status, v) = join(json!({ "destination": { "type": "sip", "target": " " } })).await;
    assert_eq!(status, 400, "{v}");

    let (status, dialled) = join(json!({ "destination": {
        "type": "sip", "target": format!("sip:echo@127.0.0.1:{port}") } }))
    .await;
    assert_eq!(status, 202, "{dialled}");
    assert_eq!(dialled["call"]["status"], "dialing", "{dialled}");
    let id = dialled["call"]["call_id"]
        .as_str()
        .expect("call id")
        .to_owned();
    // Once answered it is a participant, and the caller hears its own tone back from it
    // (a room mixes everyone but the listener: this is the callee's echo).
    talk_until_echoed(&mut c).await;
    let (_, parts) = app
        .get_json(&format!("/api/v1/calls/rooms/{room}/participants"))
        .await;
    let ids: Vec<&str> = parts["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .filter_map(|p| p["call_id"].as_str())
        .collect();
    assert!(ids.contains(&id.as_str()), "{parts}");

    // Taken out of the room, a dialled participant is hung up.
    let (status, v) = app
        .post_body(
            &format!("/api/v1/calls/rooms/{room}/leave"),
            &json!({ "call_id": id }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let ended = app.wait_hangup_by_id(&id).await;
    assert_eq!(ended["hangup_reason"], "normal", "{ended}");
    assert_eq!(ended["hangup_by"], "local", "{ended}");
    let run = callee.finish().await;
    assert!(run.success, "SIPp failed:\n{}", run.output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_number_ends_its_chained_call_busy_and_the_flow_goes_on() {
    let port = free_udp_port();
    let callee = Sipp::server(port, "uas_busy.xml", &[], &[]);
    let app = app_with_trunk(port);
    let mut c = WsCaller::connect(&app, "/live-call/websocket/sb3/+84900000073?token=t")
        .await
        .expect("upgrade");
    c.send_json(initial_info("sb3", "bridge")).await;
    // The flow goes on past the `connect` ("The other side hung up.")…
    app.wait_for_call("sb3", |c| c["action"]["type"] == "talk")
        .await;
    let master = app.call_by_reference("sb3").await;
    let chained = master["chained_call_ids"].as_array().expect("chained ids");
    assert_eq!(chained.len(), 1, "{master}");
    // …and the chained call's record says why.
    let child = app
        .wait_hangup_by_id(chained[0].as_str().expect("id"))
        .await;
    assert_eq!(child["hangup_reason"], "busy", "{child}");
    assert!(child["tm_progressing"].is_null(), "{child}");
    let run = callee.finish().await;
    assert!(run.success, "SIPp failed:\n{}", run.output);
}

/// An upstream SmartIVR callbot that forwards every call to +15557000 at once (CALL_FORWARD,
/// `forward_type` 2), as a bot's transfer does.
struct Forwarder;

#[tonic::async_trait]
impl SmartIvrPhonegateway for Forwarder {
    type CallToBotStream = ReceiverStream<Result<SmartIvrResponse, tonic::Status>>;

    async fn call_to_bot(
        &self,
        request: tonic::Request<tonic::Streaming<SmartIvrRequest>>,
    ) -> Result<tonic::Response<Self::CallToBotStream>, tonic::Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut forwarded = false;
            while let Ok(Some(_)) = inbound.message().await {
                if !forwarded {
                    forwarded = true;
                    let forward = SmartIvrResponse {
                        r#type: T::CallForward as i32,
                        forward_sip_json: json!({
                            "customer_number": "+15557000", "forward_type": 2 })
                        .to_string(),
                        status: Some(IvrStatus {
                            code: 200,
                            message: String::new(),
                        }),
                        ..Default::default()
                    };
                    let _ = tx.send(Ok(forward)).await;
                }
            }
        });
        Ok(tonic::Response::new(ReceiverStream::new(rx)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_a_sip_caller_cannot_take_is_bridged_through_the_trunk() {
    // The bot: a SmartIVR callbot that forwards the call.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let bot = listener.local_addr().expect("addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(SmartIvrPhonegatewayServer::new(Forwarder))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    // The number it forwards to, behind the trunk.
    let port = free_udp_port();
    let callee = Sipp::echo_server(port, "uas_echo.xml");
    let app = spawn_app(&format!(
        r#"
[sip]
listen = "127.0.0.1:0"
rtp_ports = "{}"

[sip.trunks.carrier]
host = "127.0.0.1"
port = {port}

[bots.upstream]
kind = "smartivr"
url = "http://{bot}"

[[routes]]
bot = "upstream"
"#,
        rtp_range()
    ));
    // The caller: a SIP phone whose Allow has no REFER, so it cannot be sent elsewhere.
    let sip = app.handle.sip_addr.expect("SIP listens");
    let caller =
        tokio::spawn(
            async move { sip::sipp(sip, "no_refer.xml", "support", "sb-refer-1", &[]).await },
        );
    // The switch makes the transfer itself: a chained call to the number, answered…
    let master = app
        .wait_for_call("sb-refer-1", |c| {
            c["chained_call_ids"]
                .as_array()
                .is_some_and(|ids| !ids.is_empty())
        })
        .await;
    let child_id = master["chained_call_ids"][0]
        .as_str()
        .expect("id")
        .to_owned();
    let child = wait_status(&app, &child_id, "progressing").await;
    assert_eq!(child["destination"]["target"], "+15557000", "{child}");
    assert_eq!(child["master_call_id"], master["id"], "{child}");
    // …and when that bridge ends, so does the call: both phones get their BYE.
    let (status, v) = app
        .post_json(&format!("/api/v1/calls/{child_id}/end"))
        .await;
    assert_eq!(status, 200, "{v}");
    let ended = app.wait_hangup("sb-refer-1").await;
    assert_eq!(ended["hangup_reason"], "normal", "{ended}");
    let detail = ended["hangup_detail"].as_str().unwrap_or_default();
    assert!(detail.contains("transferred through the switch"), "{ended}");
    let run = caller.await.expect("caller");
    assert!(run.success, "the caller's SIPp failed:\n{}", run.output);
    let run = callee.finish().await;
    assert!(run.success, "the callee's SIPp failed:\n{}", run.output);
}

/// Waits until call `id` has `status`, and answers its record.
async fn wait_status(app: &TestApp, id: &str, status: &str) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (_, call) = app.get_json(&format!("/calls/{id}")).await;
        if call["status"] == status {
            return call;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "call {id} never became {status}: {call}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
