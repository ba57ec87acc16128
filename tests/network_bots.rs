//! Any caller protocol to any bot: SmartIVR callers to a live_call AI service, WebSocket
//! callers to an upstream SmartIVR callbot. The bots are real gRPC services started here.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;
use switchboard::bots::echo_service;
use switchboard::media::{pcm, wav};
use switchboard::pb::smartivr::smart_ivr_phonegateway_server::{
    SmartIvrPhonegateway, SmartIvrPhonegatewayServer,
};
use switchboard::pb::smartivr::{
    SmartIvrRequest, SmartIvrResponse, SmartIvrResponseType as T, Status as IvrStatus,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Starts the echo AI service on its own runtime, so that dropping the runtime kills it.
fn start_echo_bot() -> (SocketAddr, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().unwrap();
    rt.spawn(echo_service::serve(listener, std::future::pending()));
    (addr, rt)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smartivr_caller_hears_itself_through_a_live_call_echo_bot_then_the_bot_dies() {
    let (bot_addr, bot_runtime) = std::thread::spawn(start_echo_bot).join().unwrap();
    let app = spawn_app(&format!(
        "[bots.echo]\nkind = \"live_call\"\nurl = \"http://{bot_addr}\"\nsample_rate = 16000\n[[routes]]\nbot = \"echo\"\n"
    ));
    let mut gw = Gateway::dial(&app, "echo-1").await;
    // One second of a tone in 100 ms frames, as a gateway sends, then the caller is quiet.
    let spoken = tone(440.0, 8000, 1000, 8000.0);
    for frame in spoken.chunks(800) {
        gw.send_audio(frame).await;
    }
    let r = gw.expect(T::ResultTts).await;
    let heard = wav::parse(&r.audio_content).expect("WAV");
    assert_eq!(heard.rate, 8000);
    // The echo comes back as one whole utterance, not 100 ms pieces.
    let ms = heard.samples.len() as u64 * 1000 / 8000;
    assert!((900..=1400).contains(&ms), "utterance of {ms} ms");
    assert!(
        pcm::rms(&heard.samples) > 3000.0,
        "the caller's tone came back"
    );
    let call = app.call_by_reference("echo-1").await;
    assert_eq!(call["status"], "progressing");
    assert_eq!(call["bot"], "echo");

    // Kill the bot mid-call: the gateway gets CALL_END and the record says failed.
    let killed = Instant::now();
    bot_runtime.shutdown_background();
    loop {
        match gw.next().await {
            Ok(Some(r)) if r.r#type == T::CallEnd as i32 => break,
            Ok(Some(_)) => continue,
            other => panic!("expected CALL_END, got {other:?}"),
        }
    }
    let call = app.wait_hangup("echo-1").await;
    assert_eq!(call["hangup_reason"], "failed");
    assert!(
        killed.elapsed() < Duration::from_secs(10),
        "ended in {:?}",
        killed.elapsed()
    );
}

/// What the upstream callbot saw.
#[derive(Debug, Default)]
struct Seen {
    conversation_ids: Vec<String>,
    audio_frames: Vec<usize>,
    keys: Vec<String>,
}

/// A small SmartIVR callbot: greets with a tone, hangs up after a second of caller audio.
struct Callbot {
    seen: mpsc::UnboundedSender<Seen>,
}

#[tonic::async_trait]
impl SmartIvrPhonegateway for Callbot {
    type CallToBotStream = ReceiverStream<Result<SmartIvrResponse, tonic::Status>>;

    async fn call_to_bot(
        &self,
        request: tonic::Request<tonic::Streaming<SmartIvrRequest>>,
    ) -> Result<tonic::Response<Self::CallToBotStream>, tonic::Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let report = self.seen.clone();
        tokio::spawn(async move {
            let mut seen = Seen::default();
            let mut heard = 0usize;
            let mut greeted = false;
            while let Ok(Some(msg)) = inbound.message().await {
                if let Some(c) = &msg.config {
                    seen.conversation_ids.push(c.conversation_id.clone());
                }
                if !msg.key_press.is_empty() {
                    seen.keys.push(msg.key_press.clone());
                }
                if !greeted {
                    greeted = true;
                    let audio = wav::encode(&tone(600.0, 8000, 500, 6000.0), 8000, 1);
                    let _ = tx
                        .send(Ok(SmartIvrResponse {
                            r#type: T::ResultTts as i32,
                            text_bot: "hi there".into(),
                            audio_content: audio,
                            status: Some(IvrStatus {
                                code: 200,
                                message: String::new(),
                            }),
                            ..Default::default()
                        }))
                        .await;
                }
                if !msg.audio_content.is_empty() {
                    seen.audio_frames.push(msg.audio_content.len());
                    heard += msg.audio_content.len() / 2;
                    if heard >= 8000 {
                        // What it heard, as a speech bot reports it, then goodbye.
                        let _ = tx
                            .send(Ok(SmartIvrResponse {
                                r#type: T::ResultAsr as i32,
                                text_asr: "a low hum".into(),
                                status: Some(IvrStatus {
                                    code: 200,
                                    message: String::new(),
                                }),
                                ..Default::default()
                            }))
                            .await;
                        let _ = tx
                            .send(Ok(SmartIvrResponse {
                                r#type: T::CallEnd as i32,
                                status: Some(IvrStatus {
                                    code: 200,
                                    message: String::new(),
                                }),
                                ..Default::default()
                            }))
                            .await;
                        break;
                    }
                }
            }
            let _ = report.send(seen);
        });
        Ok(tonic::Response::new(ReceiverStream::new(rx)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_caller_talks_to_an_upstream_smartivr_callbot() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bot_addr = listener.local_addr().unwrap();
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(SmartIvrPhonegatewayServer::new(Callbot { seen: seen_tx }))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let app = spawn_app(&format!(
        "[auth]\nlive_call_tokens = [\"t\"]\n[bots.upstream]\nkind = \"smartivr\"\nurl = \"http://{bot_addr}\"\n[[routes]]\nbot = \"upstream\"\n"
    ));
    let mut c = WsCaller::connect(&app, "/live-call/websocket/up-1/+84900000003?token=t")
        .await
        .expect("upgrade");
    c.send_json(initial_info("up-1", "1900")).await;
    // The callbot's greeting arrives as paced 8 kHz audio.
    let mut greeting = Vec::new();
    use base64::Engine;
    while greeting.len() < 4000 {
        match c.next().await {
            WsEvent::Json(v) if v.get("audio_output").is_some() => {
                let b = v["audio_output"]["audio_content"].as_str().unwrap();
                let bytes = base64::engine::general_purpose::STANDARD.decode(b).unwrap();
                greeting.extend(pcm::decode_s16le(&bytes).unwrap());
            }
            other => panic!("expected greeting audio, got {other:?}"),
        }
    }
    assert!(pcm::rms(&greeting) > 3000.0);
    // The caller speaks 1.2 s at 16 kHz in 20 ms frames; the callbot hangs up after 1 s.
    for frame in tone(300.0, 16000, 1200, 5000.0).chunks(320) {
        c.send_json(json!({ "play_audio": {
            "sample_rate": 16000, "sample_width": 16, "num_channels": 1, "duration": 0.02,
            "audio_content": base64::engine::general_purpose::STANDARD.encode(pcm::encode_s16le(frame)),
        } }))
        .await;
    }
    let mut rest = Vec::new();
    let WsEvent::Json(v) = c.next_non_audio(&mut rest).await else {
        panic!("expected end_call")
    };
    assert_eq!(v["signal"]["end_call"]["call_id"], "up-1");
    match c.next().await {
        WsEvent::Close(code) => assert_eq!(code, Some(1000)),
        other => panic!("expected close 1000, got {other:?}"),
    }
    let seen = tokio::time::timeout(PATIENCE, seen_rx.recv())
        .await
        .unwrap()
        .unwrap();
    // Config first and on every message, with the caller's call id.
    assert!(!seen.conversation_ids.is_empty());
    assert!(seen.conversation_ids.iter().all(|id| id == "up-1"));
    // 100 ms frames of 8 kHz s16le.
    assert!(seen.audio_frames.len() >= 10);
    assert!(
        seen.audio_frames.iter().all(|&n| n == 1600),
        "{:?}",
        seen.audio_frames
    );
    let call = app.wait_hangup("up-1").await;
    assert_eq!(call["hangup_by"], "local");
    assert_eq!(call["hangup_reason"], "normal");
    assert_eq!(call["bot"], "upstream");
    // The callbot's RESULT_ASR is the caller's line in the transcript, beside its own words.
    let (_, transcript) = app
        .get_json(&format!(
            "/api/v1/calls/{}/transcript",
            call["id"].as_str().unwrap()
        ))
        .await;
    let lines: Vec<(&str, &str)> = transcript["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["type"].as_str().unwrap(), e["text"].as_str().unwrap()))
        .collect();
    assert!(lines.contains(&("text_bot", "hi there")), "{lines:?}");
    assert!(lines.contains(&("text_asr", "a low hum")), "{lines:?}");
}
