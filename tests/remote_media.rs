//! Media the switch reads from elsewhere: `play` files over HTTP and from disk, and their WAV
//! headers, are bounded before they reach memory or the resampler.

mod support;

use std::path::Path;

use serde_json::json;
use support::*;
use switchboard::bots::flow::source::{self, LocalFiles, SourceError, MAX_FILE_BYTES};
use switchboard::media::wav::{self, WavError};
use switchboard::pb::smartivr::SmartIvrResponseType as T;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

/// How the test server sends its endless body.
#[derive(Clone, Copy)]
enum Framing {
    /// Declares a Content-Length far past the limit.
    Declared,
    /// Sends chunks with no length, never ending.
    Chunked,
}

/// Bytes the test server gives up at, so a switch that reads everything fails the test
/// instead of hanging it.
const SERVER_CAP: usize = 8 * MAX_FILE_BYTES;

/// A server on 127.0.0.1:0 that answers one request with a WAV header and then zeros until
/// the client stops reading; it reports how many body bytes it managed to write.
async fn endless_server(framing: Framing) -> (String, oneshot::Receiver<usize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/huge.wav", listener.local_addr().expect("addr"));
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let Ok((mut socket, _)) = listener.accept().await else {
            return;
        };
        let mut head = [0u8; 4096];
        let _ = socket.read(&mut head).await;
        let response_head = match framing {
            Framing::Declared => format!(
                "HTTP/1.1 200 OK\r\ncontent-type: audio/wav\r\ncontent-length: {}\r\n\r\n",
                SERVER_CAP
            ),
            Framing::Chunked => {
                "HTTP/1.1 200 OK\r\ncontent-type: audio/wav\r\ntransfer-encoding: chunked\r\n\r\n"
                    .to_owned()
            }
        };
        if socket.write_all(response_head.as_bytes()).await.is_err() {
            let _ = tx.send(0);
            return;
        }
        let block = vec![0u8; 64 * 1024];
        let mut written = 0;
        while written < SERVER_CAP {
            let sent = match framing {
                Framing::Declared => socket.write_all(&block).await,
                Framing::Chunked => {
                    let mut framed = format!("{:x}\r\n", block.len()).into_bytes();
                    framed.extend_from_slice(&block);
                    framed.extend_from_slice(b"\r\n");
                    socket.write_all(&framed).await
                }
            };
            if sent.is_err() {
                break;
            }
            written += block.len();
        }
        let _ = tx.send(written);
    });
    (url, rx)
}

async fn refused_without_reading_whole(framing: Framing) {
    let (url, written) = endless_server(framing).await;
    let http = reqwest::Client::new();
    let result = tokio::time::timeout(PATIENCE, source::load(&http, &url, 8000, &LocalFiles::Any))
        .await
        .expect("refused in time");
    let err = result.expect_err("a body past the limit is refused");
    assert!(matches!(err, SourceError::Body(_)), "{err}");
    assert!(
        err.to_string().contains(&MAX_FILE_BYTES.to_string()),
        "{err}"
    );
    drop(http);
    let written = tokio::time::timeout(PATIENCE, written)
        .await
        .expect("the server stopped in time")
        .expect("the server reported");
    assert!(
        written < SERVER_CAP,
        "the server wrote all {written} bytes: the body was read whole"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_play_url_declaring_a_huge_body_is_refused_up_front() {
    refused_without_reading_whole(Framing::Declared).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_play_url_streaming_past_the_limit_is_cut_off() {
    refused_without_reading_whole(Framing::Chunked).await;
}

fn write_wav(path: &Path, rate: u32) {
    std::fs::write(path, wav::encode(&[0, 100, -100, 0], rate, 1)).expect("write WAV");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wav_rates_outside_8_to_48_khz_are_refused() {
    let dir = temp_data_dir();
    let http = reqwest::Client::new();
    for rate in [1, 1_000_000_000] {
        let path = dir.join(format!("rate-{rate}.wav"));
        write_wav(&path, rate);
        let err = source::load(&http, &path.display().to_string(), 8000, &LocalFiles::Any)
            .await
            .expect_err("refused");
        assert!(
            matches!(err, SourceError::Wav(WavError::BadRate(r)) if r == rate),
            "{err}"
        );
        assert!(err.to_string().contains("8000..=48000"), "{err}");
    }
    let ok = dir.join("ok.wav");
    write_wav(&ok, 16000);
    let samples = source::load(&http, &ok.display().to_string(), 8000, &LocalFiles::Any)
        .await
        .expect("a 16 kHz file plays");
    assert_eq!(samples.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_local_files_are_confined_to_files_dir() {
    let dir = temp_data_dir();
    let files = dir.join("media");
    let outside = dir.join("private");
    std::fs::create_dir_all(&files).expect("media dir");
    std::fs::create_dir_all(&outside).expect("private dir");
    write_wav(&files.join("hello.wav"), 8000);
    write_wav(&outside.join("secret.wav"), 8000);
    let http = reqwest::Client::new();
    let confined = LocalFiles::under(&files.display().to_string());

    for allowed in [
        "hello.wav".to_owned(),
        files.join("hello.wav").display().to_string(),
        format!("file://{}", files.join("hello.wav").display()),
    ] {
        let samples = source::load(&http, &allowed, 8000, &confined)
            .await
            .unwrap_or_else(|e| panic!("{allowed}: {e}"));
        assert_eq!(samples.len(), 4, "{allowed}");
    }

    #[cfg(unix)]
    std::os::unix::fs::symlink(outside.join("secret.wav"), files.join("link.wav"))
        .expect("symlink");
    let mut refused = vec![
        "../private/secret.wav".to_owned(),
        outside.join("secret.wav").display().to_string(),
        format!("file://{}/../private/secret.wav", files.display()),
        "/etc/passwd".to_owned(),
    ];
    if cfg!(unix) {
        refused.push("link.wav".to_owned());
    }
    for path in &refused {
        let err = source::load(&http, path, 8000, &confined)
            .await
            .expect_err("outside files_dir");
        assert!(
            matches!(err, SourceError::LocalRefused { .. }),
            "{path}: {err}"
        );
    }
    // No files_dir: a webhook may name no local file at all.
    let err = source::load(&http, "hello.wav", 8000, &LocalFiles::under(""))
        .await
        .expect_err("no local files");
    assert!(err.to_string().contains("files_dir"), "{err}");
}

/// A webhook on 127.0.0.1:0 that answers every request with `reply`.
async fn webhook(reply: serde_json::Value) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind webhook");
    let url = format!("http://{}/next", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let reply = reply.to_string();
            tokio::spawn(async move {
                let mut head = vec![0u8; 64 * 1024];
                let _ = socket.read(&mut head).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                    reply.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_play_of_a_file_outside_files_dir_is_skipped() {
    let dir = temp_data_dir();
    let files = dir.join("media");
    std::fs::create_dir_all(&files).expect("media dir");
    let secret = dir.join("secret.wav");
    write_wav(&secret, 8000);
    let hook = webhook(json!({"actions": [
        {"type": "play", "stream_urls": [secret.display().to_string()]},
        {"type": "talk", "text": "After the file."},
        {"type": "hangup"},
    ]}))
    .await;
    let app = spawn_app(&format!(
        r#"
[media]
files_dir = "{}"
[bots.hook]
kind = "flow"
actions = [
  {{ type = "answer" }},
  {{ type = "fetch", url = "{hook}", hold_after_ms = 60000 }},
]
[[routes]]
bot = "hook"
"#,
        files.display()
    ));
    let mut gw = Gateway::dial(&app, "confined-1").await;
    // The file is refused (logged), so the first audio the caller gets is the next prompt.
    let r = gw.expect(T::ResultTts).await;
    assert!(r.text_bot.contains("After the file"), "{r:?}");
    gw.expect(T::CallEnd).await;
}
