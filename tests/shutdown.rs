//! Shutdown and crashes with the real binary: SIGTERM drains and hangs up live calls with a
//! recorded reason and exits 0; after kill -9 the next start closes the calls left open.

#[path = "support/binary.rs"]
mod binary;
mod support;

use std::process::Command;

use binary::Switch;

use serde_json::Value;
use support::*;
use switchboard::pb::smartivr::SmartIvrResponseType as T;

fn config(store: &str, extra: &str) -> String {
    format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[grpc]\nlisten = \"127.0.0.1:0\"\n{store}{extra}{MENU_FLOW}\n[[routes]]\nbot = \"menu\"\n"
    )
}

/// Every call in the store, through an in-process switch on the same store.
async fn stored_calls(app: &TestApp) -> Vec<Value> {
    let (status, page) = app.get_json("/calls?page_size=100").await;
    assert_eq!(status, 200, "{page}");
    page["result"].as_array().expect("result").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_hangs_up_twenty_calls_and_exits_zero() {
    let dir = temp_data_dir();
    let store = store_toml(&dir, &fresh_store_url(&dir).await);
    let mut switch = Switch::start(&dir, &config(&store, "[server]\ndrain_seconds = 2\n"));
    let mut gateways = Vec::new();
    for i in 0..20 {
        let mut gw = Gateway::dial_at(&switch.grpc, &format!("term-{i}"))
            .await
            .expect("call accepted");
        gw.expect_tts("Hello").await;
        gateways.push(gw);
    }
    eventually("20 calls live in the store", || async {
        let page = switch.get("/calls?page_size=100").await;
        page["result"]
            .as_array()
            .is_some_and(|r| r.iter().filter(|c| c["status"] == "progressing").count() == 20)
    })
    .await;

    let pid = switch.child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    eventually("health says draining", || async {
        switch.get("/health").await["status"] == "draining"
    })
    .await;
    let refused = Gateway::dial_at(&switch.grpc, "term-late").await.err();
    assert_eq!(
        refused.map(|s| s.code()),
        Some(tonic::Code::Unavailable),
        "no new calls while draining"
    );
    let r = switch
        .client
        .post(format!("{}/api/v1/calls/initiate", switch.http))
        .json(&serde_json::json!({"destination": {"type": "tel", "target": "+1555"}}))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 503, "no outgoing calls while draining");
    for gw in &mut gateways {
        // Prompts still queued may come first; the call must end with CALL_END.
        loop {
            let r = gw
                .next()
                .await
                .expect("stream healthy")
                .expect("CALL_END before close");
            if r.r#type == T::CallEnd as i32 {
                break;
            }
            assert_eq!(r.r#type, T::ResultTts as i32, "{r:?}");
        }
    }
    assert_eq!(switch.exit_code().await, Some(0));

    let app = spawn_app(&format!("{store}{MENU_FLOW}\n[[routes]]\nbot = \"menu\"\n"));
    let calls = stored_calls(&app).await;
    assert_eq!(calls.len(), 20);
    for call in calls {
        assert_eq!(call["status"], "hangup", "{call}");
        assert_eq!(call["hangup_by"], "local", "{call}");
        assert_eq!(call["hangup_reason"], "normal", "{call}");
        assert_eq!(call["hangup_detail"], "switch shutting down", "{call}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_then_restart_closes_the_orphaned_calls() {
    let dir = temp_data_dir();
    let store = store_toml(&dir, &fresh_store_url(&dir).await);
    let mut switch = Switch::start(&dir, &config(&store, ""));
    let mut gateways = Vec::new();
    for i in 0..3 {
        let mut gw = Gateway::dial_at(&switch.grpc, &format!("orphan-{i}"))
            .await
            .expect("call accepted");
        gw.expect_tts("Hello").await;
        gateways.push(gw);
    }
    eventually("3 calls live in the store", || async {
        let page = switch.get("/calls?page_size=100").await;
        page["result"]
            .as_array()
            .is_some_and(|r| r.iter().filter(|c| c["status"] == "progressing").count() == 3)
    })
    .await;
    switch.child.kill().expect("kill -9");
    switch.exit_code().await;

    let app = spawn_app(&format!("{store}{MENU_FLOW}\n[[routes]]\nbot = \"menu\"\n"));
    let calls = stored_calls(&app).await;
    assert_eq!(calls.len(), 3);
    for call in calls {
        assert_eq!(call["status"], "hangup", "{call}");
        assert_eq!(call["hangup_reason"], "failed", "{call}");
        assert!(call["tm_hangup"].is_string(), "{call}");
        assert!(
            call["hangup_detail"].as_str().unwrap().contains("restart"),
            "{call}"
        );
    }
    let (_, health) = app.get_json("/health").await;
    assert_eq!(health["calls"]["live_calls"], 0);
    drop(gateways);
}
