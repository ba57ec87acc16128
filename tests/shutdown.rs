//! Shutdown and crashes with the real binary: SIGTERM drains and hangs up live calls with a
//! recorded reason and exits 0; after kill -9 the next start closes the calls left open.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::*;
use switchboard::pb::smartivr::SmartIvrResponseType as T;

/// The switch binary, running.
struct Switch {
    child: Child,
    http: String,
    grpc: String,
    client: reqwest::Client,
}

/// Strips terminal colour codes from a log line.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn field(line: &str, name: &str) -> Option<String> {
    let start = line.find(&format!("{name}="))? + name.len() + 1;
    line[start..].split_whitespace().next().map(str::to_owned)
}

impl Switch {
    /// Starts `switchboard serve` on `config` (written under `dir`) and waits until it listens.
    fn start(dir: &Path, config: &str) -> Switch {
        let path = dir.join("config.toml");
        std::fs::write(&path, config).expect("write config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("serve")
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the switch binary starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let line = plain(&line);
                if line.contains("switchboard listening") {
                    let _ = tx.send((field(&line, "http_addr"), field(&line, "grpc_addr")));
                }
            }
        });
        let (http, grpc) = rx
            .recv_timeout(PATIENCE)
            .expect("the switch logs its addresses");
        Switch {
            child,
            http: format!("http://{}", http.expect("http_addr")),
            grpc: format!("http://{}", grpc.expect("grpc_addr")),
            client: reqwest::Client::new(),
        }
    }

    async fn get(&self, path: &str) -> Value {
        let r = self
            .client
            .get(format!("{}{path}", self.http))
            .send()
            .await
            .expect("GET");
        r.json().await.expect("JSON")
    }

    /// Waits for the process to exit; its exit code.
    async fn exit_code(&mut self) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the switch never exited"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
