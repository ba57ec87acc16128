//! Starting a switch process for a load run, on free loopback ports, with an echo bot.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A switch process started for a run; stopped (SIGTERM, then kill) when dropped.
pub struct SpawnedSwitch {
    child: Child,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    /// The SIP listener (UDP).
    pub sip: SocketAddr,
    pub token: String,
    _config: tempfile_path::TempPath,
}

mod tempfile_path {
    /// A run's config file; its folder (config, database, recordings) is removed when dropped.
    pub struct TempPath(pub std::path::PathBuf);
    impl Drop for TempPath {
        fn drop(&mut self) {
            if let Some(dir) = self.0.parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

fn free_port() -> std::io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

fn free_udp_port() -> std::io::Result<SocketAddr> {
    std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()
}

/// What every call of a spawned switch goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnBot {
    /// A flow that echoes the caller.
    Echo,
    /// A flow that greets and hangs up (set-up and churn runs).
    Greet,
    /// A `twilio_stream` bot at this address (an echo bot).
    Twilio(SocketAddr),
    /// A flow that puts the caller in the conference room named by its hotline.
    Room,
    /// A `live_call` bot at this address (an echo AI service), with its `frame_ms` and
    /// `streams_per_connection`.
    LiveCall {
        addr: SocketAddr,
        frame_ms: u32,
        streams_per_connection: usize,
    },
}

/// The configuration a spawned switch runs, every call routed to `bot`.
pub fn config_text(
    http: SocketAddr,
    grpc: SocketAddr,
    sip: SocketAddr,
    token: &str,
    max_calls: usize,
    bot: SpawnBot,
    data_dir: &std::path::Path,
) -> String {
    let flow = |actions: &str| format!("kind = \"flow\"\nactions = {actions}");
    let bot = match bot {
        SpawnBot::Echo => flow(r#"[{ type = "answer" }, { type = "echo", duration = 86400000 }]"#),
        SpawnBot::Greet => flow(r#"[{ type = "talk", text = "Hi." }, { type = "hangup" }]"#),
        SpawnBot::Room => flow(
            r#"[{ type = "conference_join", conference_id = "${hotline}" }, { type = "hangup" }]"#,
        ),
        SpawnBot::Twilio(addr) => format!("kind = \"twilio_stream\"\nurl = \"ws://{addr}/\""),
        SpawnBot::LiveCall {
            addr,
            frame_ms,
            streams_per_connection,
        } => format!(
            "kind = \"live_call\"\nurl = \"http://{addr}\"\nframe_ms = {frame_ms}\nstreams_per_connection = {streams_per_connection}"
        ),
    };
    format!(
        r#"
[server]
max_calls = {max_calls}
# Ended calls kept in memory: a cache for the REST API, kept small under churn.
keep_ended_calls = 1000
[http]
listen = "{http}"
[grpc]
listen = "{grpc}"
# SIP callers come from one loopback address: no per-source INVITE limit worth the name.
[sip]
listen = "{sip}"
rtp_ports = "30000-39999"
invites_per_second = 100000
[auth]
live_call_tokens = ["{token}"]
[store]
url = "sqlite://{data}/switchboard.db"
instance_file = "{data}/instance_id"
[recordings]
dir = "{data}/recordings"
[bots.echo]
{bot}
[[routes]]
bot = "echo"
"#,
        data = data_dir.display()
    )
}

impl SpawnedSwitch {
    /// Starts `exe serve` and waits until its health answers; with `twilio_bot`, every call
    /// goes to the `twilio_stream` bot at that address.
    pub async fn start(
        exe: &std::path::Path,
        max_calls: usize,
        greet_only: bool,
        twilio_bot: Option<SocketAddr>,
    ) -> Result<SpawnedSwitch, String> {
        let bot = match (twilio_bot, greet_only) {
            (Some(addr), _) => SpawnBot::Twilio(addr),
            (None, true) => SpawnBot::Greet,
            (None, false) => SpawnBot::Echo,
        };
        Self::start_with(exe, max_calls, bot).await
    }

    /// Starts `exe serve` with every call going to `bot`, and waits until its health answers.
    pub async fn start_with(
        exe: &std::path::Path,
        max_calls: usize,
        bot: SpawnBot,
    ) -> Result<SpawnedSwitch, String> {
        let http = free_port().map_err(|e| e.to_string())?;
        let grpc = free_port().map_err(|e| e.to_string())?;
        let sip = free_udp_port().map_err(|e| e.to_string())?;
        let token = "load-token".to_string();
        let run = std::env::temp_dir().join(format!("switchboard-load-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&run).map_err(|e| e.to_string())?;
        let path = run.join("switchboard.toml");
        std::fs::write(
            &path,
            config_text(http, grpc, sip, &token, max_calls, bot, &run),
        )
        .map_err(|e| e.to_string())?;
        let config = tempfile_path::TempPath(path);
        let child = Command::new(exe)
            .args(["serve", "--config"])
            .arg(&config.0)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        let switch = SpawnedSwitch {
            child,
            http,
            grpc,
            sip,
            token,
            _config: config,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while super::live_calls(http).await.is_none() {
            if Instant::now() > deadline {
                return Err("the switch did not answer /health within 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(switch)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for SpawnedSwitch {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
