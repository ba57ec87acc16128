//! The softphone page at `/phone`, in a real browser: Debian's Chromium driven by Playwright
//! (`tests/peers/softphone.py`), a fake microphone playing speech from espeak-ng, against the
//! real switch with an API key and a live-call token required.

#[path = "support/python.rs"]
mod python;
mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use support::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const INSTALL_CHROMIUM: &str = "apt-get install -y chromium";
const API_KEY: &str = "phone-api-key";
const TOKEN: &str = "phone-token";

/// The caller hears a greeting; three seconds of what the caller says are recorded.
const CONFIG: &str = r#"
[auth]
api_keys = [{ key = "phone-api-key" }]
live_call_tokens = ["phone-token"]

[bots.greeter]
kind = "flow"
actions = [
  { type = "answer" },
  { type = "talk", text = "Hello from the switch." },
  { type = "recording_start", format = "wav", duration = 3 },
  { type = "sleep", duration = 600000 },
]

[[routes]]
bot = "greeter"
"#;

/// Where this run's screenshots go.
fn artefacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("phone");
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    dir
}

/// A WAV of a person talking, for the fake microphone.
fn speech_wav(dir: &Path) -> PathBuf {
    let wav = dir.join("caller.wav");
    let out = Command::new("espeak-ng")
        .arg("-w")
        .arg(&wav)
        .arg("Hello, I would like to check the balance of my account, please.")
        .output()
        .unwrap_or_else(|e| panic!("espeak-ng is needed (apt-get install -y espeak-ng): {e}"));
    assert!(out.status.success(), "espeak-ng failed: {out:?}");
    wav
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_is_served_with_a_strict_policy() {
    let app = spawn_app(CONFIG);
    let r = app.http.get(app.url("/phone")).send().await.expect("GET");
    assert_eq!(r.status(), 200);
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    assert!(header(&r, "content-type").starts_with("text/html"));
    let csp = header(&r, "content-security-policy");
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    let html = r.text().await.expect("HTML");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "nothing from elsewhere"
    );
    for (file, kind) in [
        ("phone.js", "text/javascript"),
        ("capture-worklet.js", "text/javascript"),
        ("phone.css", "text/css"),
    ] {
        let r = app
            .http
            .get(app.url(&format!("/phone/{file}")))
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), 200, "{file}");
        assert!(header(&r, "content-type").starts_with(kind), "{file}");
        assert!(!header(&r, "content-security-policy").is_empty(), "{file}");
    }
    let r = app
        .http
        .get(app.url("/phone/secrets.txt"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_calls_talks_and_hangs_up_from_the_browser() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "this test drives Debian's Chromium at {CHROMIUM}; install it with `{INSTALL_CHROMIUM}`"
    );
    let shots = artefacts();
    let wav = speech_wav(&shots);
    let python = python::browser_env();

    let mut app = spawn_app(CONFIG);
    let mut driver = Command::new(python)
        .arg(python::peer_script("softphone.py"))
        .arg(app.url("/phone"))
        .arg(&wav)
        .arg(&shots)
        .arg(API_KEY)
        .arg(TOKEN)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the browser driver");
    let stdout = driver.stdout.take().expect("driver stdout");
    let (tx, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // Dropped on any failure below: the browser goes with it.
    let mut driver = KillOnDrop(driver);
    let next_line = |what: &str| {
        // Starting Chromium on a busy machine is slow: one patience for it, one for the call.
        match lines.recv_timeout(PATIENCE * 2) {
            Ok(line) => line,
            Err(_) => panic!("the browser driver never said {what}"),
        }
    };

    let line = tokio::task::block_in_place(|| next_line("LIVE"));
    let call_id = line
        .strip_prefix("LIVE ")
        .unwrap_or_else(|| panic!("expected LIVE, got {line:?}"))
        .to_owned();

    // On the switch: the call is up, from the live-call WebSocket, and the caller's speech
    // reached it (the recording's left channel is the caller).
    app.key = Some(API_KEY.into());
    let (status, record) = app.get_json(&format!("/calls/{call_id}")).await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["status"], "progressing", "{record}");
    assert_eq!(record["ingress"], "live_call_ws", "{record}");
    assert!(record["tm_progressing"].is_string(), "{record}");
    let list = recordings_when_done(&app, &call_id).await;
    let url = list["recordings"][0]["download_url"]
        .as_str()
        .expect("a download URL")
        .to_owned();
    let bytes = app
        .http
        .get(app.url(&url))
        .bearer_auth(API_KEY)
        .send()
        .await
        .expect("download")
        .bytes()
        .await
        .expect("WAV");
    let (_, channels, samples) = wav_samples(&bytes);
    assert_eq!(channels, 2);
    let caller: Vec<i16> = samples.chunks_exact(2).map(|f| f[0]).collect();
    let loud = caller.iter().filter(|s| s.unsigned_abs() > 500).count();
    assert!(
        loud > 1600,
        "the caller's speech should be on the recording's left channel: {loud} loud samples of {}",
        caller.len()
    );

    // The person hangs up.
    writeln!(driver.0.stdin.as_mut().expect("driver stdin"), "hangup").expect("tell the driver");
    let line = tokio::task::block_in_place(|| next_line("DONE"));
    assert_eq!(line, "DONE");
    let path = format!("/calls/{call_id}");
    eventually("the call hangs up", || async {
        app.get_json(&path).await.1["status"] == "hangup"
    })
    .await;
    let (_, ended) = app.get_json(&path).await;
    assert_eq!(ended["hangup_by"], "remote", "{ended}");
    let status = driver.0.wait().expect("driver exits");
    assert!(status.success(), "the browser driver failed: {status}");
    println!(
        "softphone screenshots: {} and {}",
        shots.join("phone-live.png").display(),
        shots.join("phone-ended.png").display()
    );
}

/// A child process killed when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
