//! An unmodified Pipecat bot (`pipecat-ai` from PyPI, `TwilioFrameSerializer` over its FastAPI
//! WebSocket transport) behind a `twilio_stream` bot: live-call and SmartIVR callers reach it
//! through the switch. The peer is `tests/peers/pipecat_twilio_bot.py`.

#[path = "support/python.rs"]
mod python;
mod support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use python::PythonPeer;
use serde_json::json;
use support::*;
use switchboard::media::wav;
use switchboard::pb::smartivr::SmartIvrResponseType as T;

/// Building the venv (first run) and importing Pipecat on a busy machine.
const PEER_START: Duration = Duration::from_secs(900);

async fn pipecat() -> PythonPeer {
    tokio::task::spawn_blocking(|| {
        let python = python::pipecat_env();
        PythonPeer::start_with(&python, "pipecat_twilio_bot.py", &[], PEER_START)
    })
    .await
    .expect("peer thread")
}

/// Routes hotline `interrupt` and `close` to the bot in those modes, everything else to echo.
fn app_for(peer: &PythonPeer) -> TestApp {
    let url = format!("ws://127.0.0.1:{}/ws", peer.port);
    let bot = |name: &str, mode: &str| {
        format!("[bots.{name}]\nkind = \"twilio_stream\"\nurl = \"{url}\"\ncustom_parameters = {{ mode = \"{mode}\" }}\n")
    };
    spawn_app(&format!(
        "[auth]\nlive_call_tokens = [\"t\"]\n{}{}{}\
         [[routes]]\nbot = \"interrupt\"\nmatch = {{ hotline = \"interrupt\" }}\n\
         [[routes]]\nbot = \"close\"\nmatch = {{ hotline = \"close\" }}\n\
         [[routes]]\nbot = \"echo\"\n",
        bot("echo", "echo"),
        bot("interrupt", "interrupt"),
        bot("close", "close"),
    ))
}

async fn ws_caller(app: &TestApp, id: &str, hotline: &str) -> WsCaller {
    let mut c = WsCaller::connect(
        app,
        &format!("/live-call/websocket/{id}/+84900000001?token=t"),
    )
    .await
    .expect("upgrade");
    c.send_json(initial_info(id, hotline)).await;
    c
}

async fn send_16k(c: &mut WsCaller, samples: &[i16]) {
    for frame in samples.chunks(320) {
        let b64 = base64::engine::general_purpose::STANDARD
            .encode(switchboard::media::pcm::encode_s16le(frame));
        c.send_json(
            json!({"play_audio": {"sample_rate": 16000, "sample_width": 16,
            "num_channels": 1, "duration": 0.02, "audio_content": b64}}),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn audio_of(v: &serde_json::Value) -> Option<Vec<i16>> {
    let b64 = v["audio_output"]["audio_content"].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    switchboard::media::pcm::decode_s16le(&bytes).ok()
}

fn expect_line(peer: &PythonPeer, prefix: &str) -> String {
    peer.expect_line(prefix, PATIENCE)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_caller_hears_its_tone_through_pipecat_and_hanging_up_closes_the_bot() {
    let peer = pipecat().await;
    let app = app_for(&peer);
    let mut caller = ws_caller(&app, "pc-ws", "1900").await;
    let call = app.call_by_reference("pc-ws").await;
    let start = expect_line(&peer, "START");
    assert!(
        start.starts_with(&format!("START {} ", call["id"].as_str().unwrap())),
        "Pipecat read callSid = the call id: {start}"
    );
    assert!(start.contains(r#""ingress": "live_call_ws""#), "{start}");
    assert!(start.contains(r#""hotline": "1900""#), "{start}");

    // Two seconds of 440 Hz, at real time, in 20 ms frames; the echo comes back.
    send_16k(&mut caller, &tone(440.0, 16000, 2000, 8000.0)).await;
    let mut heard = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while heard.len() < 8000 && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(2), caller.next()).await {
            Ok(WsEvent::Json(v)) => heard.extend(audio_of(&v).unwrap_or_default()),
            Ok(WsEvent::Close(c)) => panic!("closed {c:?}"),
            Err(_) => break,
        }
    }
    let loud: Vec<i16> = heard
        .chunks(160)
        .filter(|f| switchboard::media::pcm::rms(f) > 1000.0)
        .flatten()
        .copied()
        .collect();
    assert!(loud.len() >= 4000, "{} loud samples came back", loud.len());
    assert!(
        has_tone(&loud, 8000, 440.0, &[300.0, 600.0, 1200.0]),
        "the caller hears its own 440 Hz"
    );

    // The caller hangs up: the switch sends `stop` and closes; Pipecat sees the disconnect.
    caller.send_json(json!({"disconnect": {}})).await;
    let gone = expect_line(&peer, "DISCONNECTED");
    assert!(gone.ends_with(call["id"].as_str().unwrap()), "{gone}");
    let call = app.wait_hangup("pc-ws").await;
    assert_eq!(call["hangup_reason"], "normal");
    assert_eq!(call["hangup_by"], "remote");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smartivr_caller_hears_its_tone_and_a_key_reaches_pipecat_as_dtmf() {
    let peer = pipecat().await;
    let app = app_for(&peer);
    let mut gw = Gateway::dial(&app, "pc-ivr").await;
    expect_line(&peer, "START");
    // A second of 440 Hz, then silence, in 100 ms frames at real time: one utterance back.
    let talk = async {
        let spoken = tone(440.0, 8000, 1000, 8000.0);
        for frame in spoken.chunks(800) {
            gw.send_audio(frame).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for _ in 0..15 {
            gw.send_audio(&[0; 800]).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    talk.await;
    let r = gw.expect(T::ResultTts).await;
    let heard = wav::parse(&r.audio_content).expect("WAV").samples;
    assert!(heard.len() >= 4000, "{} samples", heard.len());
    assert!(
        has_tone(&heard, 8000, 440.0, &[300.0, 600.0, 1200.0]),
        "the gateway hears its own 440 Hz"
    );

    // Key 5 reaches Pipecat as DTMF; it answers with 1200 Hz.
    gw.press("5").await;
    assert_eq!(expect_line(&peer, "DTMF"), "DTMF 5");
    let keep_sending = async {
        for _ in 0..20 {
            gw.send_audio(&[0; 800]).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    keep_sending.await;
    let r = gw.expect(T::ResultTts).await;
    let answer = wav::parse(&r.audio_content).expect("WAV").samples;
    assert!(
        has_tone(&answer, 8000, 1200.0, &[440.0, 700.0]),
        "the bot's answer to the key"
    );
    gw.hang_up();
    expect_line(&peer, "DISCONNECTED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipecat_interrupting_itself_clears_the_callers_audio_and_closing_ends_the_call() {
    let peer = pipecat().await;
    let app = app_for(&peer);

    // The bot plays six seconds of 700 Hz and interrupts itself after one and a half.
    let mut caller = ws_caller(&app, "pc-int", "interrupt").await;
    expect_line(&peer, "START");
    let mut heard = Vec::new();
    loop {
        match caller.next().await {
            WsEvent::Json(v) if v["signal"].get("kill_audio").is_some() => break,
            WsEvent::Json(v) => heard.extend(audio_of(&v).unwrap_or_default()),
            WsEvent::Close(c) => panic!("closed {c:?} before the interruption"),
        }
    }
    expect_line(&peer, "INTERRUPTED");
    assert!(
        has_tone(&heard, 8000, 700.0, &[440.0, 1200.0]),
        "the bot's tone played before the interruption"
    );
    assert!(
        heard.len() < 8000 * 4,
        "{} samples before the clear: far less than the six seconds sent",
        heard.len()
    );
    let mut after = 0;
    loop {
        match tokio::time::timeout(Duration::from_millis(800), caller.next()).await {
            Ok(WsEvent::Json(v)) => {
                if let Some(a) = audio_of(&v) {
                    if switchboard::media::pcm::rms(&a) > 1000.0 {
                        after += a.len();
                    }
                }
            }
            Ok(WsEvent::Close(c)) => panic!("closed {c:?}"),
            Err(_) => break,
        }
    }
    assert!(after < 4000, "{after} loud samples after the clear");
    assert_eq!(
        app.call_by_reference("pc-int").await["status"],
        "progressing"
    );

    // A bot that ends its pipeline closes the socket: the call ends, normal.
    let mut caller = ws_caller(&app, "pc-close", "close").await;
    expect_line(&peer, "ENDING");
    loop {
        match caller.next().await {
            WsEvent::Json(v) if v["signal"].get("end_call").is_some() => break,
            WsEvent::Json(_) => continue,
            WsEvent::Close(c) => panic!("closed {c:?} without end_call"),
        }
    }
    let call = app.wait_hangup("pc-close").await;
    assert_eq!(call["hangup_reason"], "normal", "{call}");
}
