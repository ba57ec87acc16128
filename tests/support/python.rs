//! Python peers: a virtual environment the suite creates once (grpcio and its code generator
//! from PyPI), stubs generated from `proto/`, and peer programs from `tests/peers/` run in it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// grpcio as Python AI services use it; the code generator of the same release.
const GRPCIO: &str = "grpcio==1.68.1";
const GRPCIO_TOOLS: &str = "grpcio-tools==1.68.1";

/// The venv and generated stubs, created on first use (a file lock keeps test binaries that
/// run at once from building it twice). Panics with the reason when it cannot be built.
pub fn python_env() -> (PathBuf, PathBuf) {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-peers");
    std::fs::create_dir_all(&root).expect("python peers folder");
    let venv = root.join("venv");
    let stubs = root.join("stubs");
    let python = venv.join("bin").join("python");
    let lock = std::fs::File::create(root.join("lock")).expect("lock file");
    lock.lock().expect("lock the python peers folder");
    let ready = root.join("ready");
    if !ready.exists() {
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv));
        run(Command::new(&python)
            .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
            .args([GRPCIO, GRPCIO_TOOLS]));
        std::fs::create_dir_all(&stubs).expect("stubs folder");
        let proto = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
        run(Command::new(&python)
            .args(["-m", "grpc_tools.protoc"])
            .arg(format!("-I{}", proto.display()))
            .arg(format!("--python_out={}", stubs.display()))
            .arg(format!("--grpc_python_out={}", stubs.display()))
            .arg(proto.join("live_call.proto")));
        std::fs::write(&ready, GRPCIO).expect("ready marker");
    }
    let _ = lock.unlock();
    (python, stubs)
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
}

impl PythonPeer {
    /// Runs `tests/peers/{script}` with the stubs folder as its argument and waits (up to
    /// `patience`) for the `PORT n` line it prints once listening.
    pub fn start(script: &str, patience: Duration) -> PythonPeer {
        let (python, stubs) = python_env();
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/peers")
            .join(script);
        let mut child = Command::new(python)
            .arg(&script)
            .arg(&stubs)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the python peer");
        let stdout = child.stdout.take().expect("peer stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line.strip_prefix("PORT ") {
                    let _ = tx.send(port.trim().parse::<u16>().ok());
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
        PythonPeer { child, port }
    }
}

impl Drop for PythonPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
