//! The SmartIVR phone-gateway path, end to end: a tonic gateway client against the real switch.

mod support;

use support::*;
use switchboard::media::{pcm, wav};
use switchboard::pb::smartivr::{Config as IvrConfig, SmartIvrRequest, SmartIvrResponseType as T};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greeting_is_real_speech_as_wav() {
    let app = spawn_menu_app();
    let mut gw = Gateway::dial(&app, "greet-1").await;
    let r = gw.expect_tts("Hello").await;
    assert_eq!(r.status.as_ref().map(|s| s.code), Some(200));
    let audio = wav::parse(&r.audio_content).expect("RESULT_TTS audio is a WAV file");
    assert_eq!(audio.rate, 8000);
    // At least a quarter second of audible speech.
    assert!(
        audio.samples.len() > 2000,
        "{} samples",
        audio.samples.len()
    );
    assert!(pcm::rms(&audio.samples) > 300.0, "speech is audible");
    assert_eq!(&r.audio_content[..4], b"RIFF");

    let call = app.call_by_reference("greet-1").await;
    assert_eq!(call["status"], "progressing");
    assert_eq!(call["direction"], "incoming");
    assert_eq!(call["ingress"], "smartivr");
    assert_ne!(
        call["id"], "greet-1",
        "the call id is the switch's own UUID"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcm_packing_sends_raw_audio() {
    let app = spawn_app(&format!(
        "[smartivr]\ntts_audio = \"pcm\"\n{MENU_FLOW}\n[[routes]]\nbot = \"menu\"\n"
    ));
    let mut gw = Gateway::dial(&app, "pcm-1").await;
    let r = gw.expect_tts("Hello").await;
    assert_ne!(&r.audio_content[..4], b"RIFF");
    assert_eq!(r.audio_content.len() % 2, 0);
    assert!(pcm::rms(&pcm::decode_s16le(&r.audio_content).unwrap()) > 300.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_one_repeats_the_menu() {
    let app = spawn_menu_app();
    let mut gw = Gateway::dial(&app, "repeat-1").await;
    gw.expect_tts("Hello").await;
    gw.expect_tts("Press one").await;
    gw.press("1").await;
    gw.expect_tts("Press one").await;
    gw.press("3").await;
    gw.expect_tts("Goodbye").await;
    gw.expect(T::CallEnd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_two_forwards_to_the_agent() {
    let app = spawn_menu_app();
    let mut gw = Gateway::dial(&app, "forward-1").await;
    gw.expect_tts("Hello").await;
    gw.expect_tts("Press one").await;
    gw.press("2").await;
    let r = gw.expect(T::CallForward).await;
    let json: serde_json::Value =
        serde_json::from_str(&r.forward_sip_json).expect("forward_sip_json is JSON");
    assert_eq!(json["forward_type"], 2);
    assert_eq!(json["customer_number"], "+15550100");
    gw.hang_up();
    let call = app.wait_hangup("forward-1").await;
    assert_eq!(call["hangup_by"], "remote");
    assert_eq!(call["hangup_reason"], "normal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_three_ends_the_call_and_the_record_says_so() {
    let app = spawn_menu_app();
    let mut gw = Gateway::dial(&app, "end-1").await;
    // Pressed during the greeting: type-ahead keeps it for the menu.
    gw.press("3").await;
    gw.expect_tts("Hello").await;
    gw.expect_tts("Press one").await;
    gw.expect_tts("Goodbye").await;
    let end = gw.expect(T::CallEnd).await;
    assert_eq!(end.status.map(|s| s.code), Some(200));
    assert!(
        gw.next().await.expect("clean end").is_none(),
        "stream ends after CALL_END"
    );
    let call = app.wait_hangup("end-1").await;
    assert_eq!(call["hangup_by"], "local");
    assert_eq!(call["hangup_reason"], "normal");
    assert!(call["tm_progressing"].is_string());
    assert!(call["tm_hangup"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_without_config_is_refused_and_the_next_call_works() {
    let app = spawn_menu_app();
    let first = SmartIvrRequest {
        audio_content: vec![0; 320],
        ..Default::default()
    };
    let mut bad = Gateway::open_with(&app, "x", first)
        .await
        .expect("stream opens");
    let r = bad
        .next()
        .await
        .expect("a response first")
        .expect("not ended yet");
    let status = r.status.expect("status set");
    assert_eq!(status.code, -1);
    assert!(status.message.contains("config"), "{}", status.message);
    let err = bad.next().await.expect_err("then INVALID_ARGUMENT");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    let mut good = Gateway::dial(&app, "after-bad").await;
    good.expect_tts("Hello").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_error_mid_call_fails_the_call() {
    let app = spawn_menu_app();
    let mut gw = Gateway::dial(&app, "broken-1").await;
    gw.expect_tts("Hello").await;
    gw.send(SmartIvrRequest {
        config: Some(IvrConfig {
            conversation_id: "broken-1".into(),
        }),
        audio_content: vec![1, 2, 3],
        ..Default::default()
    })
    .await;
    // Whatever prompts were already queued, the stream ends with -1 and INVALID_ARGUMENT.
    let mut saw_error_status = false;
    let err = loop {
        match gw.next().await {
            Ok(Some(r)) => {
                if r.status.as_ref().is_some_and(|s| s.code == -1) {
                    assert!(r.status.unwrap().message.contains("odd number of bytes"));
                    saw_error_status = true;
                }
            }
            Ok(None) => panic!("stream ended without an error status"),
            Err(e) => break e,
        }
    };
    assert!(saw_error_status);
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let call = app.wait_hangup("broken-1").await;
    assert_eq!(call["hangup_reason"], "failed");
    assert_eq!(call["hangup_by"], "local");
    assert!(call["hangup_detail"]
        .as_str()
        .unwrap()
        .contains("odd number of bytes"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_stream_leaves_a_remote_normal_record() {
    let app = spawn_menu_app();
    let mut gw = Gateway::dial(&app, "drop-1").await;
    gw.send_audio(&[0; 1600]).await;
    gw.expect_tts("Hello").await;
    gw.hang_up();
    let call = app.wait_hangup("drop-1").await;
    assert_eq!(call["hangup_by"], "remote");
    assert_eq!(call["hangup_reason"], "normal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_hangup_ends_a_live_call_locally() {
    let app = spawn_menu_app();
    let mut gw = Gateway::dial(&app, "rest-hangup").await;
    gw.expect_tts("Hello").await;
    let call = app.call_by_reference("rest-hangup").await;
    let id = call["id"].as_str().unwrap().to_owned();
    let (status, body) = app.post_json(&format!("/calls/{id}/hangup")).await;
    assert_eq!(status, 200, "{body}");
    loop {
        match gw.next().await {
            Ok(Some(r)) if r.r#type == T::CallEnd as i32 => break,
            Ok(Some(_)) => continue,
            other => panic!("expected CALL_END, got {other:?}"),
        }
    }
    let call = app.wait_hangup("rest-hangup").await;
    assert_eq!(call["hangup_by"], "local");
    assert_eq!(call["hangup_reason"], "normal");
    let (status, body) = app.post_json(&format!("/calls/{id}/hangup")).await;
    assert_eq!(status, 409, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_calls_at_once_all_complete() {
    let app = spawn_menu_app();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let reference = format!("many-{i}");
        let gw = Gateway::dial(&app, &reference).await;
        tasks.push(tokio::spawn(async move {
            let mut gw = gw;
            gw.press("3").await;
            gw.expect_tts("Hello").await;
            gw.expect_tts("Press one").await;
            gw.expect_tts("Goodbye").await;
            gw.expect(T::CallEnd).await;
        }));
    }
    for t in tasks {
        t.await.expect("call completed");
    }
    for i in 0..50 {
        let call = app.wait_hangup(&format!("many-{i}")).await;
        assert_eq!(call["hangup_reason"], "normal");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cancelled_while_its_call_is_admitted_ends_the_call_at_once() {
    let app = spawn_menu_app();
    // Keep the registry busy, so the call is still being admitted when the gateway gives up.
    for _ in 0..500_000 {
        app.handle.registry.do_send(switchboard::registry::GetStats);
    }
    let grpc = app.grpc_url();
    let dialing = tokio::spawn(async move { Gateway::dial_at(&grpc, "gone-early").await });
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    dialing.abort();
    // Aborting a dial that has already finished leaves its gateway (and its open stream) in
    // the task's output until that is taken: take it and drop it, so the caller is gone
    // however the race went.
    let _ = dialing.await;
    let cancelled = std::time::Instant::now();
    let call = app.wait_hangup("gone-early").await;
    assert!(
        cancelled.elapsed() < std::time::Duration::from_secs(3),
        "the call waited {:?} for a leg: {call}",
        cancelled.elapsed()
    );
    // Cancelled while admitted, the call is told its caller went away; the race can also be
    // lost (admitted and attached first, then the stream breaks): the caller hung up.
    assert_eq!(call["hangup_by"], "remote", "{call}");
    match call["hangup_reason"].as_str() {
        Some("cancel") => assert_eq!(
            call["hangup_detail"], "the caller went away before the call was admitted",
            "{call}"
        ),
        Some("normal") => {}
        _ => panic!("{call}"),
    }
}
