//! What crosses the boundary between a caller leg and its call: audio converted between rates
//! only there, and only when they differ; and a leg that ends telling its call, once, however it
//! ends.

mod support;

use std::time::{Duration, Instant};

use actix::prelude::*;
use base64::Engine;
use serde_json::json;
use support::*;
use switchboard::call::messages::{Delivery, LegCommand, LegFormat};
use switchboard::protocols::leg::CallLink;
use switchboard::registry::{CreateCall, NewCall};

/// A caller leg that ignores what it is told.
struct QuietLeg;

impl Actor for QuietLeg {
    type Context = Context<Self>;
}

impl Handler<LegCommand> for QuietLeg {
    type Result = ();
    fn handle(&mut self, _msg: LegCommand, _ctx: &mut Context<Self>) {}
}

const CONFIG: &str = r#"
[auth]
live_call_tokens = ["t0ken"]
[bots.wait]
kind = "flow"
actions = [{ type = "answer" }, { type = "sleep", duration = 600000 }]
[bots.echo]
kind = "flow"
actions = [{ type = "answer" }, { type = "echo", duration = 600000 }]
[[routes]]
bot = "echo"
match = { ingress = "live_call_ws" }
[[routes]]
bot = "wait"
"#;

/// Every series of the rate converters' two counters, summed: (converters made, chunks
/// converted). The recorder is process-wide; no other test in this file converts rates.
async fn resampling(app: &TestApp) -> (f64, f64) {
    let mut request = app.http.get(app.url("/metrics"));
    if let Some(key) = &app.key {
        request = request.bearer_auth(key);
    }
    let text = request
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    let total = |name: &str| -> f64 {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let metric = series.split('{').next()?;
                (metric == name).then(|| value.parse::<f64>().ok())?
            })
            .sum()
    };
    (
        total("switchboard_resamplers_total"),
        total("switchboard_resampled_chunks_total"),
    )
}

/// A live-call caller sending one second of a 500 Hz tone at `rate` to the echo flow; what
/// it hears back (8 kHz, the protocol's output rate).
async fn echo_call(app: &TestApp, reference: &str, rate: u32) -> Vec<i16> {
    let mut c = WsCaller::connect(
        app,
        &format!("/live-call/websocket/{reference}/+84900000001?token=t0ken"),
    )
    .await
    .expect("upgrade");
    c.send_json(initial_info(reference, "echo")).await;
    app.wait_for_call(reference, |c| c["status"] == "progressing")
        .await;
    let frame = tone(500.0, rate, 20, 8000.0);
    let content = base64::engine::general_purpose::STANDARD
        .encode(switchboard::media::pcm::encode_s16le(&frame));
    for _ in 0..50 {
        c.send_json(
            json!({ "play_audio": { "sample_rate": rate, "sample_width": 16,
            "num_channels": 1, "duration": 0.02, "audio_content": content } }),
        )
        .await;
    }
    let mut heard = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while heard.len() < 4000 {
        assert!(Instant::now() < deadline, "heard {} samples", heard.len());
        let event = c.next_non_audio(&mut heard);
        match tokio::time::timeout(Duration::from_millis(500), event).await {
            Ok(other) => panic!("expected echoed audio, got {other:?}"),
            Err(_) => continue,
        }
    }
    c.send_json(json!({ "disconnect": {} })).await;
    app.wait_hangup(reference).await;
    heard
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_is_converted_once_and_only_between_different_rates() {
    let app = spawn_app(CONFIG);
    let before = resampling(&app).await;
    // An 8 kHz caller and a bot at the caller's rate: nothing is resampled anywhere, the
    // echo is heard at once at the protocol's 8 kHz.
    let heard = echo_call(&app, "rates-8k", 8000).await;
    assert!(switchboard::media::pcm::rms(&heard) > 1000.0);
    assert!(has_tone(&heard, 8000, 500.0, &[1000.0, 2000.0]));
    assert_eq!(
        resampling(&app).await,
        before,
        "an 8 kHz call was resampled"
    );
    // A 16 kHz caller: the echo comes back at 16 kHz and is converted once, toward the
    // caller's 8 kHz output.
    let heard = echo_call(&app, "rates-16k", 16000).await;
    assert!(has_tone(&heard, 8000, 500.0, &[1000.0, 2000.0]));
    // Chunks are counted in batches, the rest when the converter goes with its call.
    let deadline = Instant::now() + PATIENCE;
    let after = loop {
        let after = resampling(&app).await;
        if after.1 - before.1 >= 25.0 {
            break after;
        }
        assert!(Instant::now() < deadline, "{before:?} {after:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(after.0 - before.0, 1.0, "{before:?} {after:?}");
}

#[actix::test]
async fn a_session_that_ends_without_a_goodbye_ends_its_call_at_once() {
    let app = spawn_app(CONFIG);
    let handle = app
        .handle
        .registry
        .send(CreateCall {
            call: NewCall::incoming("api", "leg-dropped"),
        })
        .await
        .expect("registry alive")
        .expect("admitted");
    // A gRPC session holds its call through a `CallLink`; one stopped or dropped other than by
    // its peer's goodbye or its own hangup (its actor never started, its arbiter stopped)
    // used to leave the call to the media timeout.
    let link = CallLink::new(handle.addr, handle.id);
    link.attach(
        QuietLeg.start().recipient(),
        LegFormat {
            in_rate: 8000,
            out_rate: 8000,
            delivery: Delivery::Whole,
            plays_urls: false,
            plays_hold_music: false,
        },
    );
    app.wait_for_call("leg-dropped", |c| c["status"] == "progressing")
        .await;
    let dropped = Instant::now();
    drop(link);
    let call = app.wait_hangup("leg-dropped").await;
    assert!(
        dropped.elapsed() < Duration::from_secs(3),
        "{:?}",
        dropped.elapsed()
    );
    assert_eq!(call["hangup_reason"], "failed", "{call}");
    assert_eq!(call["hangup_by"], "local", "{call}");
    assert_eq!(
        call["hangup_detail"], "the caller's session ended without a hangup",
        "{call}"
    );
}
