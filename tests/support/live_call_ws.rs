//! A live-call WebSocket caller (web or mobile).

use serde_json::Value;

use super::{TestApp, PATIENCE};

/// A live-call WebSocket client (web or mobile caller).
pub struct WsCaller {
    pub ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

/// What a WebSocket caller receives, simplified.
#[derive(Debug)]
pub enum WsEvent {
    Json(Value),
    Close(Option<u16>),
}

impl WsCaller {
    /// Connects to the live-call endpoint; `Err` carries the HTTP status of a refused upgrade.
    pub async fn connect(app: &TestApp, path: &str) -> Result<WsCaller, u16> {
        use tokio_tungstenite::tungstenite::Error;
        let url = format!("ws://{}{}", app.handle.http_addr, path);
        match tokio_tungstenite::connect_async(url).await {
            Ok((ws, _)) => Ok(WsCaller { ws }),
            Err(Error::Http(response)) => Err(response.status().as_u16()),
            Err(e) => panic!("WebSocket connect failed: {e}"),
        }
    }

    pub async fn send_json(&mut self, value: Value) {
        self.send_text(value.to_string()).await;
    }

    pub async fn send_text(&mut self, text: String) {
        use futures_util::SinkExt;
        use tokio_tungstenite::tungstenite::Message;
        self.ws.send(Message::Text(text)).await.expect("send frame");
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        use futures_util::SinkExt;
        use tokio_tungstenite::tungstenite::Message;
        self.ws
            .send(Message::Binary(bytes))
            .await
            .expect("send frame");
    }

    /// The next JSON frame or the close; pings are answered by the client library.
    pub async fn next(&mut self) -> WsEvent {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        loop {
            let msg = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("the switch sent something in time");
            match msg {
                Some(Ok(Message::Text(t))) => {
                    return WsEvent::Json(serde_json::from_str(&t).expect("server frames are JSON"))
                }
                Some(Ok(Message::Close(frame))) => {
                    return WsEvent::Close(frame.map(|f| u16::from(f.code)))
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return WsEvent::Close(None),
            }
        }
    }

    /// The next JSON frame that is not audio, counting audio samples on the way.
    pub async fn next_non_audio(&mut self, audio: &mut Vec<i16>) -> WsEvent {
        loop {
            match self.next().await {
                WsEvent::Json(v) if v.get("audio_output").is_some() => {
                    audio.extend(audio_output(&v).expect("base64 text"));
                }
                other => return other,
            }
        }
    }
}

/// The samples of an `audio_output` frame, if it is one.
pub fn audio_output(v: &Value) -> Option<Vec<i16>> {
    use base64::Engine;
    let b = v["audio_output"]["audio_content"].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b)
        .expect("valid base64");
    Some(switchboard::media::pcm::decode_s16le(&bytes).expect("even length"))
}

/// A `play_audio` frame of 20 ms of `samples` at `rate`.
pub fn play_audio(samples: &[i16], rate: u32) -> String {
    use base64::Engine;
    let audio = base64::engine::general_purpose::STANDARD
        .encode(switchboard::media::pcm::encode_s16le(samples));
    serde_json::json!({ "play_audio": { "sample_rate": rate, "sample_width": 2,
        "num_channels": 1, "duration": 0.02, "audio_content": audio } })
    .to_string()
}

/// `initial_info` for a caller.
pub fn initial_info(call_id: &str, hotline: &str) -> Value {
    serde_json::json!({ "initial_info": {
        "workspace_id": "ws-1",
        "call_id": call_id,
        "customer_phone_number": "+84900000001",
        "type_call": "inbound",
        "hotline": hotline,
        "url_audio_file": ""
    } })
}
