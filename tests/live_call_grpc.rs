//! The switch as a live_call AI service: a tonic live_call client (a KnM gateway) against it.

mod support;

use support::*;
use switchboard::pb::live_call::health_check_response::ServingStatus;
use switchboard::pb::live_call::live_call_client::LiveCallClient;
use switchboard::pb::live_call::{
    client_request, server_response, signal_message, ClientRequest, HealthCheckRequest, InitialInfo,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const CONFIG: &str = r#"
[bots.bye]
kind = "flow"
actions = [
  { type = "talk", text = "Goodbye." },
  { type = "hangup" },
]
[[routes]]
bot = "bye"
"#;

fn info(call_id: &str) -> ClientRequest {
    ClientRequest {
        status: true,
        data: Some(client_request::Data::InitialInfo(InitialInfo {
            workspace_id: "w".into(),
            call_id: call_id.into(),
            customer_phone_number: "+84900000002".into(),
            type_call: "inbound".into(),
            hotline: "1900".into(),
            url_audio_file: String::new(),
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_gets_the_greeting_at_24_khz_with_truthful_fields() {
    let app = spawn_app(CONFIG);
    let mut client = LiveCallClient::connect(app.grpc_url())
        .await
        .expect("connect");
    let health = client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("check")
        .into_inner();
    assert_eq!(health.status, ServingStatus::Serving as i32);

    let (tx, rx) = mpsc::channel(16);
    tx.send(info("grpc-1")).await.unwrap();
    let mut stream = client
        .stream_call(ReceiverStream::new(rx))
        .await
        .expect("accepted")
        .into_inner();
    let mut samples = 0usize;
    let end = loop {
        let msg = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("in time")
            .expect("healthy")
            .expect("open");
        assert!(msg.status);
        match msg.data {
            Some(server_response::Data::AudioOutput(a)) => {
                assert_eq!(a.sample_rate, 24000);
                assert_eq!(a.sample_width, 2);
                assert_eq!(a.num_channels, 1);
                let n = a.audio_content.len() / 2;
                assert!(
                    (a.duration - n as f32 / 24000.0).abs() < 1e-5,
                    "duration {}",
                    a.duration
                );
                samples += n;
            }
            Some(server_response::Data::Signal(s)) => break s,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(
        samples > 24000 / 4,
        "at least 250 ms of speech, got {samples} samples"
    );
    match end.signal_type {
        Some(signal_message::SignalType::EndCall(e)) => assert_eq!(e.call_id, "grpc-1"),
        other => panic!("expected end_call, got {other:?}"),
    }
    let done = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("in time");
    assert!(
        matches!(done, Ok(None)),
        "stream ends after end_call: {done:?}"
    );
    let call = app.wait_hangup("grpc-1").await;
    assert_eq!(call["ingress"], "live_call_grpc");
    assert_eq!(call["hangup_by"], "local");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_message_without_initial_info_is_refused() {
    let app = spawn_app(CONFIG);
    let mut client = LiveCallClient::connect(app.grpc_url())
        .await
        .expect("connect");
    let (tx, rx) = mpsc::channel(4);
    tx.send(ClientRequest {
        status: true,
        data: Some(client_request::Data::Disconnect(Default::default())),
    })
    .await
    .unwrap();
    let mut stream = client
        .stream_call(ReceiverStream::new(rx))
        .await
        .expect("opens")
        .into_inner();
    let first = stream
        .message()
        .await
        .expect("an error response")
        .expect("open");
    assert!(!first.status);
    let Some(server_response::Data::Error(e)) = first.data else {
        panic!("expected error")
    };
    assert_eq!(e.error_code, 400);
    assert!(e.message.contains("initial_info"));
    let err = stream.message().await.expect_err("then INVALID_ARGUMENT");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_reads_no_audio_is_hung_up_with_why() {
    let app = spawn_app(
        r#"
[media]
write_timeout_ms = 1000
[bots.echo]
kind = "flow"
actions = [{ type = "answer" }, { type = "echo", duration = 600000 }]
[[routes]]
bot = "echo"
"#,
    );
    // A small receive window: what the gateway does not read backs up at once.
    let channel = tonic::transport::Endpoint::from_shared(app.grpc_url())
        .expect("url")
        .initial_stream_window_size(4096)
        .initial_connection_window_size(4096)
        .connect()
        .await
        .expect("connect");
    let (tx, rx) = mpsc::channel(16);
    tx.send(info("grpc-deaf")).await.unwrap();
    // The response stream is opened and never read.
    let _responses = LiveCallClient::new(channel)
        .stream_call(ReceiverStream::new(rx))
        .await
        .expect("accepted");
    app.wait_for_call("grpc-deaf", |c| c["status"] == "progressing")
        .await;
    // The echo bot sends every chunk back; keep talking until the call ends.
    let chunk = switchboard::media::pcm::encode_s16le(&tone(440.0, 16000, 20, 8000.0));
    let talker = tokio::spawn(async move {
        loop {
            let audio = ClientRequest {
                status: true,
                data: Some(client_request::Data::PlayAudio(
                    switchboard::pb::live_call::ClientAudioChunk {
                        sample_rate: 16000,
                        sample_width: 2,
                        num_channels: 1,
                        duration: 0.02,
                        audio_content: chunk.clone(),
                    },
                )),
            };
            if tx.send(audio).await.is_err() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    });
    let call = app.wait_hangup("grpc-deaf").await;
    talker.abort();
    assert_eq!(call["hangup_reason"], "failed", "{call}");
    assert_eq!(call["hangup_by"], "local", "{call}");
    let detail = call["hangup_detail"].as_str().unwrap_or("");
    assert!(detail.contains("read no audio"), "{detail}");
}
