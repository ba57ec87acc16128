//! `serve --log-format json` on the real binary: every line is a JSON object without colour
//! codes, and lines about a call carry its id, protocol sessions' lines too.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use serde_json::Value;
use support::*;

/// The switch binary, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for the next log line for which `wanted` holds; panics on a line that is not JSON.
fn next_line(lines: &mpsc::Receiver<String>, wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = lines
            .recv_timeout(left)
            .expect("the wanted log line within the patience");
        assert!(!line.contains('\u{1b}'), "colour codes in {line:?}");
        let value: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(value["level"].is_string(), "{line}");
        assert!(value["timestamp"].is_string(), "{line}");
        if wanted(&value) {
            return value;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_carry_the_call_id() {
    let dir = temp_data_dir();
    let path = dir.join("config.toml");
    let config = config_text(&format!("{MENU_FLOW}\n[[routes]]\nbot = \"menu\"\n"));
    std::fs::write(&path, config).expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--log-format", "json", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the switch binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let _running = Running(child);
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let listening = tokio::task::block_in_place(|| {
        next_line(&lines, |v| v["message"] == "switchboard listening")
    });
    let grpc = format!(
        "http://{}",
        listening["grpc_addr"].as_str().expect("grpc_addr field")
    );
    let http = listening["http_addr"].as_str().expect("http_addr field");

    let mut gateway = Gateway::dial_at(&grpc, "json-log-call")
        .await
        .expect("call accepted");
    gateway.expect_tts("Hello").await;
    // More keys in one message than the protocol allows: the session logs a protocol error.
    gateway.press(&"1".repeat(40)).await;

    let page: Value = reqwest::get(format!(
        "http://{http}/calls?reference=json-log-call&page_size=1"
    ))
    .await
    .expect("GET /calls")
    .json()
    .await
    .expect("JSON");
    let id = page["result"][0]["id"]
        .as_str()
        .expect("the call's id")
        .to_owned();

    let created = tokio::task::block_in_place(|| {
        next_line(&lines, |v| {
            v["message"] == "call created" && v["call"] == id.as_str()
        })
    });
    assert_eq!(created["reference"], "json-log-call");
    // A protocol session's line names the switch's call id beside the gateway's reference.
    let refused = tokio::task::block_in_place(|| {
        next_line(&lines, |v| v["message"] == "SmartIVR protocol error")
    });
    assert_eq!(refused["call"], id.as_str(), "{refused}");
    assert_eq!(refused["reference"], "json-log-call", "{refused}");
    tokio::task::block_in_place(|| {
        next_line(&lines, |v| {
            v["message"] == "call hung up" && v["call"] == id.as_str()
        })
    });
}
