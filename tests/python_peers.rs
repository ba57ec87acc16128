//! Network bots written the way real AI services are: a grpcio (Python) live_call service,
//! which sends its response headers only with its first message, and so answers nothing until
//! it has heard the caller. The switch must write the caller's audio without waiting for it.

#[path = "support/python.rs"]
mod python;
mod support;

use std::time::Duration;

use python::PythonPeer;
use support::*;
use switchboard::media::{pcm, wav};
use switchboard::pb::smartivr::SmartIvrResponseType as T;

/// Starting Python and importing grpcio on a busy machine.
const PEER_START: Duration = Duration::from_secs(120);

fn echo_app(peer: &PythonPeer) -> TestApp {
    spawn_app(&format!(
        "[auth]\nlive_call_tokens = [\"py\"]\n[bots.echo]\nkind = \"live_call\"\nurl = \"http://127.0.0.1:{}\"\nsample_rate = 16000\n[[routes]]\nbot = \"echo\"\n",
        peer.port
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smartivr_caller_hears_itself_through_a_grpcio_echo_service() {
    let peer = tokio::task::spawn_blocking(|| PythonPeer::start("grpcio_echo.py", PEER_START))
        .await
        .expect("peer thread");
    let app = echo_app(&peer);
    let mut gw = Gateway::dial(&app, "py-echo-1").await;
    let spoken = tone(440.0, 8000, 1000, 8000.0);
    for frame in spoken.chunks(800) {
        gw.send_audio(frame).await;
    }
    let r = gw.expect(T::ResultTts).await;
    let heard = wav::parse(&r.audio_content).expect("WAV");
    assert!(
        pcm::rms(&heard.samples) > 3000.0,
        "the caller's tone came back through the Python service"
    );
    let call = app.call_by_reference("py-echo-1").await;
    assert_eq!(call["status"], "progressing");
    gw.hang_up();
    let call = app.wait_hangup("py-echo-1").await;
    assert_eq!(call["hangup_reason"], "normal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_caller_hears_itself_through_a_grpcio_echo_service() {
    let peer = tokio::task::spawn_blocking(|| PythonPeer::start("grpcio_echo.py", PEER_START))
        .await
        .expect("peer thread");
    let app = echo_app(&peer);
    let mut caller = WsCaller::connect(&app, "/live-call/websocket/py-ws-1/+84900000001?token=py")
        .await
        .expect("upgrade");
    caller.send_json(initial_info("py-ws-1", "1900")).await;
    // Half a second of a loud tone at 16 kHz in 20 ms chunks.
    let spoken = tone(440.0, 16000, 500, 8000.0);
    for chunk in spoken.chunks(320) {
        let bytes = pcm::encode_s16le(chunk);
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        caller
            .send_json(
                serde_json::json!({"play_audio": {"sample_rate": 16000, "audio_content": b64}}),
            )
            .await;
    }
    // Bot audio comes back paced as 8 kHz `audio_output`; wait for the tone in it.
    let mut heard: Vec<i16> = Vec::new();
    loop {
        match caller.next().await {
            WsEvent::Json(v) if v.get("audio_output").is_some() => {
                use base64::Engine;
                let b64 = v["audio_output"]["audio_content"].as_str().unwrap_or("");
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .expect("valid base64");
                heard.extend(pcm::decode_s16le(&bytes).expect("even length"));
                if heard.len() >= 1600 && pcm::rms(&heard[heard.len() - 1600..]) > 3000.0 {
                    break;
                }
            }
            WsEvent::Json(_) => {}
            WsEvent::Close(code) => panic!("closed ({code:?}) before the echo came back"),
        }
    }
    caller
        .send_json(serde_json::json!({"disconnect": {}}))
        .await;
    let call = app.wait_hangup("py-ws-1").await;
    assert_eq!(call["hangup_reason"], "normal");
}

/// The switch's established TCP connections to `port` on loopback, from /proc/net/tcp.
fn connections_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let remote_port = fields
                .get(2)
                .and_then(|r| r.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            // State 01 is ESTABLISHED.
            remote_port == Some(port) && fields.get(3) == Some(&"01")
        })
        .count()
}

/// Calls to one bot share HTTP/2 connections, `streams_per_connection` calls each, and every
/// caller still hears only its own audio; caller audio goes in `frame_ms` chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_callers_share_connections_to_a_grpcio_service_and_each_hears_itself() {
    let peer = tokio::task::spawn_blocking(|| PythonPeer::start("grpcio_echo.py", PEER_START))
        .await
        .expect("peer thread");
    // One arbiter, so that the three calls share one pool of connections.
    let app = spawn_app(&format!(
        "[server]\narbiters = 1\n[auth]\nlive_call_tokens = [\"py\"]\n[bots.echo]\nkind = \"live_call\"\nurl = \"http://127.0.0.1:{}\"\nsample_rate = 16000\nframe_ms = 60\nstreams_per_connection = 2\n[[routes]]\nbot = \"echo\"\n",
        peer.port
    ));
    let freqs = [500.0, 1100.0, 1700.0];
    let mut callers = Vec::new();
    for (i, _) in freqs.iter().enumerate() {
        let mut caller = WsCaller::connect(
            &app,
            &format!("/live-call/websocket/py-share-{i}/+8490000000{i}?token=py"),
        )
        .await
        .expect("upgrade");
        caller
            .send_json(initial_info(&format!("py-share-{i}"), "1900"))
            .await;
        callers.push(caller);
    }
    for (caller, &freq) in callers.iter_mut().zip(&freqs) {
        for chunk in tone(freq, 16000, 1000, 8000.0).chunks(320) {
            caller.send_text(play_audio(chunk, 16000)).await;
        }
    }
    for (i, caller) in callers.iter_mut().enumerate() {
        let others: Vec<f64> = freqs.iter().copied().filter(|&f| f != freqs[i]).collect();
        let mut heard: Vec<i16> = Vec::new();
        loop {
            match caller.next().await {
                WsEvent::Json(v) => {
                    if let Some(samples) = audio_output(&v) {
                        heard.extend(samples);
                    }
                }
                WsEvent::Close(code) => panic!("caller {i} closed ({code:?}) before its echo"),
            }
            let tail = &heard[heard.len().saturating_sub(3200)..];
            if tail.len() == 3200 && pcm::rms(tail) > 3000.0 {
                break;
            }
        }
        let tail = &heard[heard.len() - 3200..];
        assert!(
            has_tone(tail, 8000, freqs[i], &others),
            "caller {i} hears its own {} Hz tone and no other",
            freqs[i]
        );
    }
    // Three calls, two streams per connection: two connections, not three.
    assert_eq!(connections_to(peer.port), 2, "connections to the bot");
    for (i, caller) in callers.iter_mut().enumerate() {
        caller
            .send_json(serde_json::json!({"disconnect": {}}))
            .await;
        let call = app.wait_hangup(&format!("py-share-{i}")).await;
        assert_eq!(call["hangup_reason"], "normal");
    }
}
