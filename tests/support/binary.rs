//! The switch binary in a process of its own: started on a config, its addresses read from
//! its log, its memory read from /proc, killed when dropped.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::PATIENCE;

/// The switch binary, running.
pub struct Switch {
    pub child: Child,
    pub http: String,
    pub grpc: String,
    pub client: reqwest::Client,
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
    pub fn start(dir: &Path, config: &str) -> Switch {
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

    pub async fn get(&self, path: &str) -> Value {
        let r = self
            .client
            .get(format!("{}{path}", self.http))
            .send()
            .await
            .expect("GET");
        r.json().await.expect("JSON")
    }

    /// Waits for the process to exit; its exit code.
    pub async fn exit_code(&mut self) -> Option<i32> {
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

impl Switch {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the process now, in KiB (`VmRSS` in /proc).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the switch is running");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS in /proc status")
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
