//! The Calls API (`/api/v1/calls`), live events and API keys, against the real switch.

mod support;

use serde_json::{json, Value};
use support::*;
use switchboard::pb::smartivr::SmartIvrResponseType as T;

const NIL: &str = "00000000-0000-0000-0000-000000000000";

fn menu_app(extra: &str) -> TestApp {
    spawn_app(&format!("{extra}{MENU_FLOW}\n[[routes]]\nbot = \"menu\"\n"))
}

async fn live_call(app: &TestApp, reference: &str) -> (Gateway, String) {
    let mut gw = Gateway::dial(app, reference).await;
    gw.expect_tts("Hello").await;
    let call = app.call_by_reference(reference).await;
    (gw, call["id"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initiate_fails_clearly_and_records_a_failed_dialout() {
    let app = menu_app("");
    for (body, needle) in [
        (
            json!({"destination": {"type": "fax", "target": "1"}}),
            "destination.type",
        ),
        (
            json!({"destination": {"type": "tel", "target": " "}}),
            "target",
        ),
        (json!({"to": "+1555"}), "bad JSON"),
    ] {
        let (status, err) = app.post_body("/api/v1/calls/initiate", &body).await;
        assert_eq!(status, 400, "{body}: {err}");
        assert!(
            err["error"]["message"].as_str().unwrap().contains(needle),
            "{err}"
        );
    }
    let (status, body) = app
        .post_body(
            "/api/v1/calls/initiate",
            &json!({"destination": {"type": "tel", "target": "+15550123"}, "reference": "out-1"}),
        )
        .await;
    assert_eq!(status, 502, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not placed"));
    let call = &body["call"];
    assert_eq!(call["status"], "ended", "{body}");
    assert_eq!(call["call"]["direction"], "outgoing");
    assert_eq!(call["call"]["hangup_reason"], "dialout");
    assert_eq!(call["call"]["destination"]["target"], "+15550123");
    let id = call["call_id"].as_str().unwrap();

    let (status, got) = app.get_json(&format!("/api/v1/calls/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(got["call"]["hangup_reason"], "dialout");
    assert!(got["call"]["tm_hangup"].is_string());
    assert!(got["call"]["hangup_detail"]
        .as_str()
        .unwrap()
        .contains("outgoing"));
    let stored = app
        .wait_for_call("out-1", |c| c["status"] == "hangup")
        .await;
    assert_eq!(stored["hangup_reason"], "dialout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_end_and_history_with_filters_and_paging() {
    let app = menu_app("");
    let (status, _) = app.get_json("/api/v1/calls/not-a-uuid").await;
    assert_eq!(status, 400);
    let missing = uuid::Uuid::new_v4();
    let (status, _) = app.get_json(&format!("/api/v1/calls/{missing}")).await;
    assert_eq!(status, 404);
    let (status, _) = app.post_json(&format!("/api/v1/calls/{missing}/end")).await;
    assert_eq!(status, 404);

    let (gw1, id1) = live_call(&app, "hist-1").await;
    let (gw2, id2) = live_call(&app, "hist-2").await;
    let (status, got) = app.get_json(&format!("/api/v1/calls/{id1}")).await;
    assert_eq!(status, 200);
    assert_eq!(got["status"], "active");
    assert_eq!(got["participants"][1]["role"], "bot");
    assert_eq!(got["participants"][1]["user_id"], "menu");

    let (status, ended) = app.post_json(&format!("/api/v1/calls/{id1}/end")).await;
    assert_eq!(status, 200, "{ended}");
    app.wait_hangup("hist-1").await;
    let (status, again) = app.post_json(&format!("/api/v1/calls/{id1}/end")).await;
    assert_eq!(status, 409, "{again}");
    drop(gw1);

    let (_, out) = app
        .post_body(
            "/api/v1/calls/initiate",
            &json!({"destination": {"type": "sip", "target": "bob@example.com"}, "reference": "hist-out"}),
        )
        .await;
    let out_id = out["call"]["call_id"].as_str().unwrap().to_owned();

    let ids = |page: &Value| -> Vec<String> {
        page["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["call_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, all) = app.get_json("/api/v1/calls/history").await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(ids(&all), [out_id.clone(), id2.clone(), id1.clone()]);
    let (_, outgoing) = app
        .get_json("/api/v1/calls/history?direction=outgoing")
        .await;
    assert_eq!(ids(&outgoing), [out_id.as_str()]);
    let (_, hung) = app.get_json("/api/v1/calls/history?status=hangup").await;
    assert_eq!(ids(&hung), [out_id.clone(), id1.clone()]);
    let (_, by_ref) = app.get_json("/api/v1/calls/history?reference=hist-2").await;
    assert_eq!(ids(&by_ref), [id2.as_str()]);
    let (_, future) = app
        .get_json("/api/v1/calls/history?from=2999-01-01T00:00:00Z")
        .await;
    assert_eq!(ids(&future), Vec::<String>::new());
    let (_, past) = app
        .get_json("/api/v1/calls/history?from=2000-01-01T00:00:00Z&to=2999-01-01T00:00:00Z")
        .await;
    assert_eq!(ids(&past).len(), 3);

    let (_, p1) = app.get_json("/api/v1/calls/history?page_size=2").await;
    assert_eq!(ids(&p1), [out_id.clone(), id2.clone()]);
    let token = p1["next_page_token"].as_str().unwrap();
    let (_, p2) = app
        .get_json(&format!(
            "/api/v1/calls/history?page_size=2&page_token={token}"
        ))
        .await;
    assert_eq!(ids(&p2), [id1.as_str()]);
    assert_eq!(p2["next_page_token"], "");

    for bad in [
        "status=ringingish",
        "direction=sideways",
        "from=yesterday",
        "from=2030-01-01T00:00:00Z&to=2020-01-01T00:00:00Z",
        "page_size=0",
        "page_size=1000",
        "page_token=zzz",
        "colour=red",
    ] {
        let (status, err) = app.get_json(&format!("/api/v1/calls/history?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {err}");
        assert_eq!(err["error"]["code"], 400);
    }
    gw2.hang_up();
    app.wait_hangup("hist-2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_and_transcript_endpoints() {
    let app = menu_app("");
    let (mut gw, id) = live_call(&app, "rec-api").await;
    let base = format!("/api/v1/calls/{id}");

    let (status, err) = app
        .post_body(&format!("{base}/record/start"), &json!({"format": "mp3"}))
        .await;
    assert_eq!(status, 400, "{err}");
    let (status, err) = app.post_json(&format!("{base}/record/stop")).await;
    assert_eq!(status, 409, "{err}");
    let (status, started) = app.post_json(&format!("{base}/record/start")).await;
    assert_eq!(status, 201, "{started}");
    let rec_id = started["recording_id"].as_str().unwrap().to_owned();
    let (status, _) = app.post_json(&format!("{base}/record/start")).await;
    assert_eq!(status, 409);
    let (_, got) = app.get_json(&base).await;
    assert_eq!(got["recording"], true);
    assert_eq!(got["call"]["recording_id"], rec_id.as_str());

    gw.expect_tts("Press one").await;
    gw.send_audio(&tone_8k(300.0, 200, 5000.0)).await;
    let (status, stopped) = app.post_json(&format!("{base}/record/stop")).await;
    assert_eq!(status, 200, "{stopped}");
    assert_eq!(stopped["recording_id"], rec_id.as_str());

    let list = recordings_when_done(&app, &id).await;
    let rec = &list["recordings"][0];
    assert_eq!(rec["recording_id"], rec_id.as_str());
    assert_eq!(rec["format"], "wav");
    let r = app
        .http
        .get(app.url(rec["download_url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (rate, channels, _) = wav_samples(&r.bytes().await.unwrap());
    assert_eq!((rate, channels), (8000, 2));
    let (status, _) = app
        .get_json(&format!("{base}/recordings/{}", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(status, 404);
    let (status, _) = app.get_json(&format!("{base}/recordings/nope")).await;
    assert_eq!(status, 400);

    let (status, on) = app.post_json(&format!("{base}/transcribe")).await;
    assert_eq!(status, 200, "{on}");
    assert_eq!(on["transcription"], true);

    gw.press("3").await;
    gw.expect_tts("Goodbye").await;
    gw.expect(T::CallEnd).await;
    app.wait_hangup("rec-api").await;
    let (status, _) = app.post_json(&format!("{base}/transcribe")).await;
    assert_eq!(status, 409);
    let (status, _) = app.post_json(&format!("{base}/record/start")).await;
    assert_eq!(status, 409);
    let (status, transcript) = app.get_json(&format!("{base}/transcript")).await;
    assert_eq!(status, 200);
    let texts: Vec<&str> = transcript["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["Hello.", "Press one, two or three.", "Goodbye."]);
    let missing = uuid::Uuid::new_v4();
    for path in ["transcript", "recordings"] {
        let (status, _) = app
            .get_json(&format!("/api/v1/calls/{missing}/{path}"))
            .await;
        assert_eq!(status, 404, "{path}");
    }
    for path in ["transcribe", "record/start", "record/stop"] {
        let (status, _) = app
            .post_json(&format!("/api/v1/calls/{missing}/{path}"))
            .await;
        assert_eq!(status, 404, "{path}");
    }
}

/// Reads an SSE response until `until` is among the event names seen.
async fn read_events(mut r: reqwest::Response, until: &str) -> Vec<String> {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let names: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .map(str::to_owned)
            .collect();
        if names.iter().any(|n| n == until) {
            return names;
        }
        let chunk = tokio::time::timeout_at(deadline, r.chunk())
            .await
            .expect("events in time")
            .expect("stream healthy");
        match chunk {
            Some(bytes) => text.push_str(&String::from_utf8_lossy(&bytes)),
            None => return names,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_events_as_server_sent_events() {
    let app = menu_app("");
    let all = app.http.get(app.url("/events")).send().await.unwrap();
    assert_eq!(all.status(), 200);
    assert_eq!(all.headers()["content-type"], "text/event-stream");
    let (gw, id) = live_call(&app, "sse-1").await;
    let one = app
        .http
        .get(app.url(&format!("/calls/{id}/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), 200);
    gw.hang_up();
    let names = read_events(all, "call_hangup").await;
    assert_eq!(names.first().map(String::as_str), Some("call_created"));
    assert!(names.iter().any(|n| n == "call_progressing"), "{names:?}");
    assert!(names.iter().any(|n| n == "call_updated"), "{names:?}");
    // The one-call stream ends after the call's hangup.
    let names = read_events(one, "never").await;
    assert_eq!(names.last().map(String::as_str), Some("call_hangup"));
    // An ended call's stream gives its final record and closes.
    let again = app
        .http
        .get(app.url(&format!("/calls/{id}/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(read_events(again, "never").await, ["call_hangup"]);
    let (status, _) = app
        .get_json(&format!("/calls/{}/events", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_and_workspace_isolation() {
    let mut app = menu_app(
        r#"
[auth]
api_keys = [ { key = "admin-secret" }, { key = "team-a-secret", workspace = "a" } ]
"#,
    );
    // No key, a wrong key, a malformed header: 401 JSON, on every API.
    for path in ["/calls", "/api/v1/calls/history", "/events"] {
        let r = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], 401);
        let r = app
            .http
            .get(app.url(path))
            .bearer_auth("admin-secreT")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let r = app
            .http
            .get(app.url(path))
            .header("Authorization", "admin-secret")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    let (status, _) = app.get_json("/health").await;
    assert_eq!(status, 200, "health stays open for probes");

    let initiate = |ws: &str| json!({"destination": {"type": "tel", "target": "+1555"}, "workspace": ws, "reference": format!("ws-{ws}")});
    app.key = Some("admin-secret".into());
    let (status, b) = app
        .post_body("/api/v1/calls/initiate", &initiate("b"))
        .await;
    assert_eq!(status, 502, "{b}");
    let b_id = b["call"]["call_id"].as_str().unwrap().to_owned();
    app.key = Some("team-a-secret".into());
    let (status, a) = app
        .post_body("/api/v1/calls/initiate", &initiate("a"))
        .await;
    assert_eq!(status, 502, "{a}");
    let a_id = a["call"]["call_id"].as_str().unwrap().to_owned();
    assert_eq!(a["call"]["call"]["workspace"], "a");
    let (status, _) = app
        .post_body("/api/v1/calls/initiate", &initiate("b"))
        .await;
    assert_eq!(status, 404, "a key of workspace a cannot create calls in b");

    // Team a sees its own call and nothing of b.
    let (status, _) = app.get_json(&format!("/calls/{a_id}")).await;
    assert_eq!(status, 200);
    for path in [
        format!("/calls/{b_id}"),
        format!("/api/v1/calls/{b_id}"),
        format!("/api/v1/calls/{b_id}/transcript"),
        format!("/api/v1/calls/{b_id}/recordings"),
        format!("/calls/{b_id}/events"),
    ] {
        let (status, body) = app.get_json(&path).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let (status, _) = app.post_json(&format!("/calls/{b_id}/hangup")).await;
    assert_eq!(status, 404);
    let (_, page) = app.get_json("/calls").await;
    let refs: Vec<&str> = page["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["reference"].as_str().unwrap())
        .collect();
    assert_eq!(refs, ["ws-a"]);
    let (_, history) = app.get_json("/api/v1/calls/history").await;
    assert_eq!(history["result"].as_array().unwrap().len(), 1);

    // The unrestricted key sees both.
    app.key = Some("admin-secret".into());
    let (_, page) = app.get_json("/calls").await;
    assert_eq!(page["result"].as_array().unwrap().len(), 2);
    let (status, _) = app.get_json(&format!("/calls/{b_id}")).await;
    assert_eq!(status, 200);
    assert_ne!(a_id, NIL);
}
