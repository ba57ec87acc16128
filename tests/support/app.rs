//! The switch under test: config, start-up, REST helpers, stores and waiting.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use switchboard::app::{self, AppHandle};
use switchboard::config::Config;

/// Generous wait for anything the switch does: the test machine is small and busy.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A flow with short prompts and the demo's key menu.
pub const MENU_FLOW: &str = r#"
[bots.menu]
kind = "flow"
actions = [
  { type = "answer" },
  { type = "talk", id = "greeting", text = "Hello." },
  { type = "talk", id = "menu", text = "Press one, two or three." },
  { type = "digits_receive", duration = 20000, length = 1 },
  { type = "branch", variable = "digits", default_target_id = "bye", target_ids = { "1" = "menu", "2" = "agent", "3" = "bye" } },
  { type = "talk", id = "bye", text = "Goodbye." },
  { type = "hangup" },
  { type = "connect", id = "agent", destinations = [{ type = "tel", target = "+15550100", target_name = "Agent Smith" }] },
]
"#;

/// A running switch for one test.
pub struct TestApp {
    pub handle: AppHandle,
    pub http: reqwest::Client,
    /// Sent as `Authorization: Bearer KEY` when set.
    pub key: Option<String>,
}

/// A folder of its own for one test's data (database, instance id, recordings).
pub fn temp_data_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchboard-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// `[store]` and `[recordings]` keeping everything under `dir`: SQLite by default, or the
/// PostgreSQL database in `SWITCHBOARD_TEST_POSTGRES_URL` (one fresh database per call
/// of `fresh_store_url`).
pub fn store_toml(dir: &Path, url: &str) -> String {
    format!(
        "[store]\nurl = \"{url}\"\ninstance_file = \"{}\"\n[recordings]\ndir = \"{}\"\n",
        dir.join("instance_id").display(),
        dir.join("recordings").display()
    )
}

/// A SQLite URL under `dir`.
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("switchboard.db").display())
}

/// The full config text: listeners on 127.0.0.1:0 and `extra`; a store of its own (SQLite,
/// or PostgreSQL with `SWITCHBOARD_TEST_POSTGRES_URL`) unless `extra` has a `[store]`.
pub fn config_text(extra: &str) -> String {
    let store = if extra.contains("[store]") {
        String::new()
    } else {
        let dir = temp_data_dir();
        let url = match postgres_admin_url() {
            // `spawn_app` is called from async tests: create the database on a thread of its own.
            Some(_) => {
                let for_thread = dir.clone();
                std::thread::spawn(move || {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime")
                        .block_on(fresh_store_url(&for_thread))
                })
                .join()
                .expect("database created")
            }
            None => sqlite_url(&dir),
        };
        store_toml(&dir, &url)
    };
    format!("[http]\nlisten = \"127.0.0.1:0\"\n[grpc]\nlisten = \"127.0.0.1:0\"\n{store}{extra}")
}

/// Starts the switch with `extra` TOML appended to listeners on 127.0.0.1:0.
pub fn spawn_app(extra: &str) -> TestApp {
    let config = Config::from_toml(&config_text(extra)).expect("test config is valid");
    let handle = app::spawn(config).expect("switch starts");
    TestApp {
        handle,
        http: reqwest::Client::new(),
        key: None,
    }
}

/// The menu flow routed for every call.
pub fn spawn_menu_app() -> TestApp {
    spawn_app(&format!("{MENU_FLOW}\n[[routes]]\nbot = \"menu\"\n"))
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.handle.http_addr, path)
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.handle.grpc_addr)
    }

    fn authorized(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.key {
            Some(key) => r.bearer_auth(key),
            None => r,
        }
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let r = self
            .authorized(self.http.get(self.url(path)))
            .send()
            .await
            .expect("GET");
        let status = r.status().as_u16();
        (status, r.json().await.expect("JSON body"))
    }

    pub async fn post_json(&self, path: &str) -> (u16, Value) {
        let r = self
            .authorized(self.http.post(self.url(path)))
            .send()
            .await
            .expect("POST");
        let status = r.status().as_u16();
        (status, r.json().await.expect("JSON body"))
    }

    /// POSTs a JSON body.
    pub async fn post_body(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .authorized(self.http.post(self.url(path)))
            .json(body)
            .send()
            .await
            .expect("POST");
        let status = r.status().as_u16();
        (status, r.json().await.expect("JSON body"))
    }

    /// The record of the call with this reference, once it exists.
    pub async fn call_by_reference(&self, reference: &str) -> Value {
        self.wait_for_call(reference, |_| true).await
    }

    /// Waits until the call with `reference` satisfies `done`.
    pub async fn wait_for_call(&self, reference: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let (status, page) = self
                .get_json(&format!("/calls?reference={reference}&page_size=1"))
                .await;
            assert_eq!(status, 200, "{page}");
            if let Some(call) = page["result"].get(0) {
                if done(call) {
                    return call.clone();
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "call {reference} never got there; last seen {page}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until the call with `reference` has hung up.
    pub async fn wait_hangup(&self, reference: &str) -> Value {
        self.wait_for_call(reference, |c| c["status"] == "hangup")
            .await
    }

    /// Waits until the call with id `id` (`GET /calls/{id}`) has hung up; its record.
    pub async fn wait_hangup_by_id(&self, id: &str) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let (_, call) = self.get_json(&format!("/calls/{id}")).await;
            if call["status"] == "hangup" {
                return call;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "call {id} never hung up: {call}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// The PostgreSQL server tests may use, from `SWITCHBOARD_TEST_POSTGRES_URL`.
pub fn postgres_admin_url() -> Option<String> {
    std::env::var("SWITCHBOARD_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
}

/// A store URL for one test: a fresh PostgreSQL database when
/// `SWITCHBOARD_TEST_POSTGRES_URL` is set, else a SQLite file under `dir`.
pub async fn fresh_store_url(dir: &Path) -> String {
    let Some(admin) = postgres_admin_url() else {
        return sqlite_url(dir);
    };
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let name = format!("switchboard_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::AnyConnection::connect(&admin)
        .await
        .expect("SWITCHBOARD_TEST_POSTGRES_URL reachable");
    sqlx::Executor::execute(
        &mut conn,
        sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")),
    )
    .await
    .expect("create a test database");
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b.to_owned(), format!("?{q}")),
        None => (admin.clone(), String::new()),
    };
    let server = base
        .rsplit_once('/')
        .map(|(s, _)| s.to_owned())
        .filter(|s| !s.ends_with('/'))
        .unwrap_or(base.clone());
    format!("{server}/{name}{query}")
}

/// Waits until `check` passes, polling; fails after `PATIENCE` with `what`.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A call's recordings once the first one is written.
pub async fn recordings_when_done(app: &TestApp, call_id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (status, list) = app
            .get_json(&format!("/api/v1/calls/{call_id}/recordings"))
            .await;
        assert_eq!(status, 200, "{list}");
        if list["recordings"][0]["status"] == "done" {
            return list;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "recording never written: {list}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
