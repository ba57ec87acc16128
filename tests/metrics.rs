//! `GET /metrics` against the real switch: the documented names, a call's end counted with its
//! labels, and the REST API's access rule.

mod support;

use std::time::Duration;

use support::*;
use switchboard::pb::smartivr::SmartIvrResponseType;

/// A flow that greets and hangs up, under a bot name no other test uses: the recorder is
/// process-wide, so this test reads only its own bot's series.
fn greet_and_hang_up(bot: &str) -> String {
    format!(
        r#"
[bots.{bot}]
kind = "flow"
actions = [
  {{ type = "answer" }},
  {{ type = "talk", text = "Hello." }},
  {{ type = "hangup" }},
]
[[routes]]
bot = "{bot}"
"#
    )
}

/// The value of the first series of `name` whose labels include every one of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name).then_some((rest, value))
        })
        .find(|(rest, _)| {
            labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|(_, value)| value.parse().ok())
}

async fn scrape(app: &TestApp) -> (u16, String) {
    let mut request = app.http.get(app.url("/metrics"));
    if let Some(key) = &app.key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.expect("GET /metrics");
    let status = response.status().as_u16();
    (status, response.text().await.expect("metrics text"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_end_moves_the_ended_counter_with_its_labels() {
    let bot = format!("metrics_{}", uuid::Uuid::new_v4().simple());
    let app = spawn_app(&greet_and_hang_up(&bot));
    let ended = [
        ("ingress", "smartivr"),
        ("bot", bot.as_str()),
        ("reason", "normal"),
    ];

    let (status, before) = scrape(&app).await;
    assert_eq!(status, 200, "{before}");
    assert_eq!(
        sample(&before, "switchboard_calls_ended_total", &ended),
        None
    );

    let mut gateway = Gateway::dial(&app, "metrics-call").await;
    gateway.expect(SmartIvrResponseType::ResultTts).await;
    gateway.send_audio(&[0; 800]).await;
    app.wait_hangup("metrics-call").await;

    let deadline = tokio::time::Instant::now() + PATIENCE;
    let text = loop {
        let (_, text) = scrape(&app).await;
        if sample(&text, "switchboard_calls_ended_total", &ended) == Some(1.0) {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the call's end was never counted:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for name in [
        "switchboard_calls_live",
        "switchboard_calls_admitted_total",
        "switchboard_calls_ended_total",
        "switchboard_call_setup_seconds_bucket",
        "switchboard_call_setup_seconds_count",
        "switchboard_frames_in_total",
        "switchboard_frames_out_total",
        "switchboard_store_writes_queued",
        "switchboard_store_writes_written_total",
        "switchboard_tts_seconds_bucket",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "{name} missing:\n{text}"
        );
    }
    assert!(text.contains("# TYPE switchboard_calls_ended_total counter"));
    assert!(text.contains("# TYPE switchboard_call_setup_seconds histogram"));
    assert!(
        sample(
            &text,
            "switchboard_calls_admitted_total",
            &[("ingress", "smartivr")]
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    assert!(
        sample(
            &text,
            "switchboard_frames_in_total",
            &[("protocol", "smartivr")]
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    // No call's id or reference is ever a label.
    assert!(!text.contains("metrics-call"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_counted_by_ingress_and_reason() {
    let bot = format!("metrics_{}", uuid::Uuid::new_v4().simple());
    // The only route is for another hotline: a SmartIVR call has none.
    let app = spawn_app(&format!(
        "[bots.{bot}]\nkind = \"flow\"\nactions = [{{ type = \"hangup\" }}]\n[[routes]]\nbot = \"{bot}\"\nmatch = {{ hotline = \"elsewhere\" }}\n"
    ));
    let (_, before) = scrape(&app).await;
    let full = [("ingress", "smartivr"), ("reason", "no_route")];
    let was = sample(&before, "switchboard_calls_refused_total", &full).unwrap_or(0.0);
    let refused = Gateway::dial_at(&app.grpc_url(), "metrics-refused").await;
    assert!(refused.is_err());
    let (_, after) = scrape(&app).await;
    let now = sample(&after, "switchboard_calls_refused_total", &full).unwrap_or(0.0);
    assert!(now > was, "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_the_api_access_rule() {
    let mut app = spawn_app("[auth]\napi_keys = [{ key = \"metrics-key\" }]\n");
    let (status, _) = scrape(&app).await;
    assert_eq!(status, 401);
    app.key = Some("metrics-key".into());
    let (status, text) = scrape(&app).await;
    assert_eq!(status, 200, "{text}");
}
