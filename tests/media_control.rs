//! Media control the same on every caller protocol: barge-in, played marks, time limits.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::*;
use switchboard::media::wav;
use switchboard::pb::smartivr::SmartIvrResponseType as T;

const LONG: &str = "This prompt is long on purpose, so that a caller has plenty of time to talk over it before it ends.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smartivr_speech_barges_in_and_the_flow_moves_on() {
    let app = spawn_app(&format!(
        r#"
[bots.b]
kind = "flow"
actions = [
  {{ type = "talk", text = "{LONG}", barge_in = true }},
  {{ type = "talk", text = "Next." }},
  {{ type = "hangup" }},
]
[[routes]]
bot = "b"
"#
    ));
    let mut gw = Gateway::dial(&app, "barge-ivr").await;
    let prompt = gw.expect_tts("long on purpose").await;
    let lasts = Duration::from_millis(
        wav::parse(&prompt.audio_content)
            .expect("WAV")
            .samples
            .len() as u64
            / 8,
    );
    let start = Instant::now();
    // Loud caller audio, 20 ms at a time, until the flow moves on.
    let mut i = 0;
    let next = loop {
        let frame = tone_frame(8000, 12_000.0, i);
        gw.send_audio(&switchboard::media::pcm::decode_s16le(&frame).expect("even"))
            .await;
        i += 1;
        match tokio::time::timeout(Duration::from_millis(20), gw.next()).await {
            Ok(r) => break r.expect("healthy").expect("open"),
            Err(_) => continue,
        }
    };
    assert_eq!(next.r#type, T::ResultTts as i32);
    assert!(next.text_bot.contains("Next"), "{}", next.text_bot);
    assert!(
        start.elapsed() < lasts / 2,
        "moved on after {:?}; the prompt lasts {lasts:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hangup_right_after_talk_waits_for_the_prompt_to_play() {
    let app = spawn_app(
        r#"
[bots.b]
kind = "flow"
actions = [{ type = "talk", text = "Goodbye and thank you." }, { type = "hangup" }]
[[routes]]
bot = "b"
"#,
    );
    let mut client = RingoverClient::dial(&app, json!({"call_id": "talk-hangup"})).await;
    let audio = client.next().await.json();
    let got = Instant::now();
    let lasts = Duration::from_millis(stream_audio_samples(&audio).len() as u64 / 8);
    match client.next().await {
        RoEvent::Closed(code) => assert_eq!(code, Some(1000)),
        other => panic!("expected close, got {other:?}"),
    }
    assert!(
        got.elapsed() + Duration::from_millis(100) >= lasts,
        "closed {:?} after a {lasts:?} prompt",
        got.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_max_call_duration_ends_with_timeout() {
    let app = spawn_app(
        r#"
[media]
max_call_duration = 1
[bots.b]
kind = "flow"
actions = [{ type = "answer" }, { type = "sleep", duration = 60000 }]
[[routes]]
bot = "b"
"#,
    );
    let mut gw = Gateway::dial(&app, "too-long").await;
    gw.expect(T::CallEnd).await;
    let call = app.wait_hangup("too-long").await;
    assert_eq!(call["hangup_reason"], "timeout");
    assert_eq!(call["hangup_by"], "local");
    assert!(call["hangup_detail"]
        .as_str()
        .is_some_and(|d| d.contains("maximum duration")));
}
