//! An echo bot speaking Twilio Media Streams over a WebSocket: after `connected` and `start`,
//! every `media` payload goes straight back as `media`, each `dtmf` key is answered with a
//! `mark` named `dtmf-KEY`, and `stop` or the close ends the stream. A real peer for demos,
//! tests and load runs (`switchboard echo-bot --twilio`), not part of the switch's call path.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// The largest message the echo bot reads.
const MAX_MESSAGE: usize = 1024 * 1024;

/// One stream: the two opening messages, then echo until the end.
async fn echo(socket: TcpStream) {
    let config = WebSocketConfig {
        max_message_size: Some(MAX_MESSAGE),
        max_frame_size: Some(MAX_MESSAGE),
        ..WebSocketConfig::default()
    };
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(socket, Some(config)).await else {
        return;
    };
    let _ = socket_nodelay(&ws);
    let (mut sink, mut stream) = ws.split();
    let mut stream_sid = String::new();
    let mut opened = 0;
    while let Some(Ok(message)) = stream.next().await {
        let Message::Text(text) = message else {
            if matches!(message, Message::Close(_)) {
                break;
            }
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            break;
        };
        let event = v["event"].as_str().unwrap_or_default();
        // `connected` and `start` come first, in this order.
        if opened < 2 {
            let expected = ["connected", "start"][opened];
            if event != expected {
                eprintln!("twilio echo bot: `{event}` where `{expected}` was due");
                break;
            }
            opened += 1;
            if event == "start" {
                stream_sid = v["start"]["streamSid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
            }
            continue;
        }
        let reply = match event {
            "media" => json!({
                "event": "media",
                "streamSid": stream_sid,
                "media": { "payload": v["media"]["payload"] },
            }),
            "dtmf" => json!({
                "event": "mark",
                "streamSid": stream_sid,
                "mark": { "name": format!("dtmf-{}", v["dtmf"]["digit"].as_str().unwrap_or("?")) },
            }),
            "stop" => break,
            _ => continue,
        };
        if sink.send(Message::Text(reply.to_string())).await.is_err() {
            break;
        }
    }
    let _ = sink.close().await;
}

fn socket_nodelay(ws: &tokio_tungstenite::WebSocketStream<TcpStream>) -> std::io::Result<()> {
    ws.get_ref().set_nodelay(true)
}

/// Serves the echo bot on `listener` until `shutdown` resolves.
pub async fn serve(listener: TcpListener, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => {
                    tokio::spawn(echo(socket));
                }
                Err(e) => {
                    eprintln!("twilio echo bot: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Binds `addr` and serves until Ctrl-C.
pub async fn run(addr: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind(addr).await?;
    println!(
        "Twilio Media Streams echo bot on ws://{}",
        listener.local_addr()?
    );
    serve(listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    Ok(())
}
