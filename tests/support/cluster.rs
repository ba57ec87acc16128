//! Cluster test support: a fresh PostgreSQL database per test (dropped after), the local NATS
//! server (or a private one), switch processes joined into one cluster with a name of their own,
//! and a small HTTP client that shows which node served a request.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::binary::Switch;
use crate::support::*;

/// The PostgreSQL server the cluster tests use: `SWITCHBOARD_TEST_POSTGRES_URL`, else the local
/// trust-auth server.
pub fn postgres_url() -> String {
    std::env::var("SWITCHBOARD_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The NATS server the cluster tests use: `SWITCHBOARD_TEST_NATS_URL`, else the local one.
pub fn nats_url() -> String {
    std::env::var("SWITCHBOARD_TEST_NATS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into())
}

/// One fresh database, dropped when this is dropped.
pub struct Database {
    pub url: String,
    admin: String,
    name: String,
}

fn server_of(admin: &str) -> String {
    let base = admin.split('?').next().unwrap_or(admin);
    base.rsplit_once('/')
        .map(|(s, _)| s.to_owned())
        .filter(|s| !s.ends_with('/'))
        .unwrap_or(base.to_owned())
}

impl Database {
    pub async fn fresh() -> Database {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let admin = postgres_url();
        let name = format!("switchboard_cluster_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::AnyConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!(
                "the cluster tests need PostgreSQL at {admin} (set SWITCHBOARD_TEST_POSTGRES_URL): {e}"
            )
        });
        sqlx::Executor::execute(
            &mut conn,
            sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")),
        )
        .await
        .expect("create a test database");
        let url = format!("{}/{name}", server_of(&admin));
        Database { url, admin, name }
    }

    /// How many `event` rows the store has for call `id`.
    pub async fn count_events(&self, id: &str, event: &str) -> i64 {
        use sqlx::{Connection, Row};
        let mut conn = sqlx::AnyConnection::connect(&self.url)
            .await
            .expect("the test database");
        sqlx::query("SELECT COUNT(*) AS n FROM call_events WHERE call_id = $1 AND event = $2")
            .bind(id.to_owned())
            .bind(event.to_owned())
            .fetch_one(&mut conn)
            .await
            .expect("count events")
            .try_get::<i64, _>("n")
            .expect("a count")
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Dropped from async tests: the database goes on a thread of its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                use sqlx::Connection;
                if let Ok(mut conn) = sqlx::AnyConnection::connect(&admin).await {
                    let _ = sqlx::Executor::execute(
                        &mut conn,
                        sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")),
                    )
                    .await;
                }
            });
        })
        .join();
    }
}

/// Fails with a clear message when NATS is not there.
pub async fn require_nats(url: &str) -> async_nats::Client {
    async_nats::connect(url).await.unwrap_or_else(|e| {
        panic!("the cluster tests need a NATS server with JetStream at {url} (set SWITCHBOARD_TEST_NATS_URL): {e}")
    })
}

/// A cluster name no other test uses; its buckets are removed by `remove_buckets`.
pub fn cluster_name() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// Removes a test cluster's buckets from NATS.
pub async fn remove_buckets(url: &str, cluster: &str) {
    if let Ok(client) = async_nats::connect(url).await {
        let js = async_nats::jetstream::new(client);
        for bucket in ["nodes", "rooms"] {
            let _ = js
                .delete_key_value(format!("switchboard-{cluster}-{bucket}"))
                .await;
        }
    }
}

/// The API keys every cluster test uses: an admin key and one key per workspace.
pub const ADMIN: &str = "admin-key";
pub const KEY_A: &str = "key-a";
pub const KEY_B: &str = "key-b";

/// A flow that answers and then waits (for 10 minutes) for a key; no prompt, so no text to
/// speech is needed.
pub const HOLD_FLOW: &str = r#"
[bots.hold]
kind = "flow"
actions = [
  { type = "answer" },
  { type = "digits_receive", duration = 600000, length = 1 },
  { type = "hangup" },
]
[[routes]]
bot = "hold"
"#;

/// The config of one node.
pub fn node_config(
    dir: &Path,
    db: &str,
    nats: &str,
    cluster: &str,
    node: &str,
    extra: &str,
) -> String {
    format!(
        r#"[http]
listen = "127.0.0.1:0"
[grpc]
listen = "127.0.0.1:0"
[server]
drain_seconds = 30
[store]
url = "{db}"
instance_file = "{instance}"
[recordings]
dir = "{recordings}"
[auth]
api_keys = [ {{ key = "{ADMIN}" }}, {{ key = "{KEY_A}", workspace = "a" }}, {{ key = "{KEY_B}", workspace = "b" }} ]
[cluster]
enabled = true
nats_url = "{nats}"
cluster_name = "{cluster}"
node_id = "{node}"
heartbeat_ms = 1000
request_timeout_ms = 3000
{extra}
{HOLD_FLOW}"#,
        instance = dir.join("instance_id").display(),
        recordings = dir.join("recordings").display(),
    )
}

/// One switch of a test cluster.
pub struct Node {
    pub id: String,
    pub switch: Switch,
    pub dir: PathBuf,
}

impl Node {
    pub fn start(db: &str, nats: &str, cluster: &str, id: &str, extra: &str) -> Node {
        let dir = temp_data_dir();
        let switch = Switch::start(&dir, &node_config(&dir, db, nats, cluster, id, extra));
        Node {
            id: id.to_owned(),
            switch,
            dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.switch.http)
    }

    /// GET with `key`: status, the node that served it (`X-Switchboard-Node`, when forwarded),
    /// JSON body.
    pub async fn get(&self, path: &str, key: &str) -> (u16, Option<String>, Value) {
        let r = self
            .switch
            .client
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .expect("GET");
        reply(r).await
    }

    /// POST with `key` and a JSON body (none when `Null`).
    pub async fn post(&self, path: &str, key: &str, body: &Value) -> (u16, Option<String>, Value) {
        let mut req = self.switch.client.post(self.url(path)).bearer_auth(key);
        if !body.is_null() {
            req = req.json(body);
        }
        reply(req.send().await.expect("POST")).await
    }

    /// The latest record of call `id` as this node shows it (`GET /calls/{id}`).
    pub async fn call(&self, id: &str) -> Value {
        let (status, _, body) = self.get(&format!("/calls/{id}"), ADMIN).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The id of the call with `reference`, once the store has it.
    pub async fn call_id(&self, reference: &str) -> String {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let (_, _, page) = self
                .get(&format!("/calls?reference={reference}&page_size=1"), ADMIN)
                .await;
            if let Some(id) = page["result"][0]["id"].as_str() {
                return id.to_owned();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never in the store: call {reference}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The id of the call with `reference` once this node shows it answered.
    pub async fn answered(&self, reference: &str) -> String {
        let id = self.call_id(reference).await;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let call = self.call(&id).await;
            if call["status"] == "progressing" {
                return id;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "call {reference} never answered: {call}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.switch.child.id()
    }

    /// Sends `signal` (`TERM`, `KILL`) to the process.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -{signal}");
    }
}

async fn reply(r: reqwest::Response) -> (u16, Option<String>, Value) {
    let status = r.status().as_u16();
    let node = r
        .headers()
        .get("x-switchboard-node")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = r.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, node, body)
}

/// A free TCP port on loopback (for processes that cannot be told to pick one).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A NATS server of the test's own (JetStream, storage under a temp folder), restartable.
pub struct PrivateNats {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl PrivateNats {
    pub async fn start() -> PrivateNats {
        let mut nats = PrivateNats {
            port: free_port(),
            dir: temp_data_dir(),
            child: None,
        };
        nats.restart().await;
        nats
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGKILL: nothing is flushed on purpose).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and storage, and waits until it answers.
    pub async fn restart(&mut self) {
        self.stop();
        let child = Command::new("/usr/sbin/nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("/usr/sbin/nats-server starts");
        self.child = Some(child);
        let url = self.url();
        eventually("the private NATS server answers", || async {
            async_nats::ConnectOptions::new()
                .connection_timeout(Duration::from_millis(500))
                .connect(url.as_str())
                .await
                .is_ok()
        })
        .await;
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
