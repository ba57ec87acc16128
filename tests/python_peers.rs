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
