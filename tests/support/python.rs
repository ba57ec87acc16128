//! Python peers: virtual environments the suite creates once from PyPI, and peer programs
//! from `tests/peers/` run in them. `python_env` has grpcio and stubs generated from `proto/`
//! (AI services); `browser_env` has Playwright, which drives Debian's Chromium (it downloads
//! no browser).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// grpcio as Python AI services use it; the code generator of the same release.
const GRPCIO: &str = "grpcio==1.68.1";
const GRPCIO_TOOLS: &str = "grpcio-tools==1.68.1";
/// Playwright's Python package (its driver only: the browser is `/usr/bin/chromium`).
const PLAYWRIGHT: &str = "playwright==1.65.2";
/// Pipecat with its WebSocket transports, and the ASGI server its examples run on.
const PIPECAT: &str = "pipecat-ai[websocket]==1.14.0";
const UVICORN: &str = "uvicorn==0.54.0";

/// A venv under the cargo target tmp dir named `name`, with `requirements` installed and
/// `prepare` run once in its folder (given its python). A file lock keeps test binaries that
/// run at once from building it twice; a marker naming the requirements says it is complete.
/// Panics with the reason when it cannot be built.
fn venv(
    name: &str,
    requirements: &[&str],
    prepare: impl FnOnce(&Path, &Path),
) -> (PathBuf, PathBuf) {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&root).expect("python peers folder");
    let venv = root.join("venv");
    let python = venv.join("bin").join("python");
    let lock = std::fs::File::create(root.join("lock")).expect("lock file");
    lock.lock().expect("lock the python peers folder");
    let ready = root.join("ready");
    let wanted = requirements.join("\n");
    if std::fs::read_to_string(&ready).ok().as_deref() != Some(wanted.as_str()) {
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv));
        run(Command::new(&python)
            .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
            .args(requirements));
        prepare(&root, &python);
        std::fs::write(&ready, wanted).expect("ready marker");
    }
    let _ = lock.unlock();
    (python, root)
}

/// The grpcio venv and its generated stubs folder.
pub fn python_env() -> (PathBuf, PathBuf) {
    let (python, root) = venv("python-peers", &[GRPCIO, GRPCIO_TOOLS], |root, python| {
        let stubs = root.join("stubs");
        std::fs::create_dir_all(&stubs).expect("stubs folder");
        let proto = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
        run(Command::new(python)
            .args(["-m", "grpc_tools.protoc"])
            .arg(format!("-I{}", proto.display()))
            .arg(format!("--python_out={}", stubs.display()))
            .arg(format!("--grpc_python_out={}", stubs.display()))
            .arg(proto.join("live_call.proto")));
    });
    (python, root.join("stubs"))
}

/// The Playwright venv's python.
pub fn browser_env() -> PathBuf {
    venv("browser-peers", &[PLAYWRIGHT], |_, _| {}).0
}

/// The Pipecat venv's python (Pipecat as published, unmodified).
pub fn pipecat_env() -> PathBuf {
    venv("pipecat-peers", &[PIPECAT, UVICORN], |_, _| {}).0
}

/// A peer script under `tests/peers/`.
pub fn peer_script(script: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/peers")
        .join(script)
}

fn run(command: &mut Command) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Python peer program; killed when dropped.
pub struct PythonPeer {
    child: Child,
    pub port: u16,
    /// The lines it prints after `PORT n`.
    pub lines: std::sync::mpsc::Receiver<String>,
}

impl PythonPeer {
    /// Runs `tests/peers/{script}` with the stubs folder as its argument and waits (up to
    /// `patience`) for the `PORT n` line it prints once listening.
    pub fn start(script: &str, patience: Duration) -> PythonPeer {
        let (python, stubs) = python_env();
        Self::start_with(&python, script, &[stubs.as_os_str()], patience)
    }

    /// Runs `tests/peers/{script}` with `python` and `args`, and waits (up to `patience`) for
    /// the `PORT n` line it prints once listening.
    pub fn start_with(
        python: &Path,
        script: &str,
        args: &[&std::ffi::OsStr],
        patience: Duration,
    ) -> PythonPeer {
        let script = peer_script(script);
        let mut child = Command::new(python)
            .arg(&script)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the python peer");
        let stdout = child.stdout.take().expect("peer stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let (lines_tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line.strip_prefix("PORT ") {
                    let _ = tx.send(port.trim().parse::<u16>().ok());
                } else {
                    let _ = lines_tx.send(line);
                }
            }
        });
        let port = match rx.recv_timeout(patience) {
            Ok(Some(port)) => port,
            other => {
                let _ = child.kill();
                panic!("{} did not start listening: {other:?}", script.display())
            }
        };
        PythonPeer { child, port, lines }
    }

    /// Waits (up to `patience`) for a printed line starting with `prefix`; the lines before it
    /// are skipped.
    pub fn expect_line(&self, prefix: &str, patience: Duration) -> String {
        let deadline = std::time::Instant::now() + patience;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => continue,
                Err(e) => panic!("the peer printed no `{prefix}` line: {e}"),
            }
        }
    }
}

impl Drop for PythonPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
