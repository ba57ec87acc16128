//! A Ringover media server on `/ringover/stream`.

use serde_json::Value;

use super::{TestApp, PATIENCE};

/// What a Ringover media server receives from the switch.
#[derive(Debug)]
pub enum RoEvent {
    /// A JSON text frame.
    Json(Value),
    /// The switch closed the socket with this code (None: no close frame).
    Closed(Option<u16>),
}

impl RoEvent {
    /// The JSON of a text frame, or a panic naming what came instead.
    pub fn json(self) -> Value {
        match self {
            RoEvent::Json(v) => v,
            other => panic!("expected a JSON frame, got {other:?}"),
        }
    }
}

pub type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A Ringover media server: a real WebSocket client on `/ringover/stream`.
pub struct RingoverClient {
    pub ws: WsStream,
}

impl RingoverClient {
    /// Connects with an optional `?token=`.
    pub async fn connect(
        app: &TestApp,
        token: Option<&str>,
    ) -> Result<RingoverClient, tokio_tungstenite::tungstenite::Error> {
        let mut url = format!("ws://{}/ringover/stream", app.handle.http_addr);
        if let Some(t) = token {
            url.push_str(&format!("?token={t}"));
        }
        let (ws, _) = tokio_tungstenite::connect_async(url).await?;
        Ok(RingoverClient { ws })
    }

    /// Connects and sends the metadata frame.
    pub async fn dial(app: &TestApp, metadata: Value) -> RingoverClient {
        let mut c = Self::connect(app, None).await.expect("WebSocket upgrade");
        c.send_text(&metadata.to_string()).await;
        c
    }

    pub async fn send_text(&mut self, text: &str) {
        use futures_util::SinkExt;
        self.ws
            .send(tokio_tungstenite::tungstenite::Message::Text(text.into()))
            .await
            .expect("send text frame");
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        use futures_util::SinkExt;
        self.ws
            .send(tokio_tungstenite::tungstenite::Message::Binary(bytes))
            .await
            .expect("send binary frame");
    }

    /// The next text frame or the close, skipping pings.
    pub async fn next(&mut self) -> RoEvent {
        next_event(&mut self.ws).await
    }
}

/// The next text frame or close from a Ringover socket (or its read half).
pub async fn next_event<S>(read: &mut S) -> RoEvent
where
    S: futures_util::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    use futures_util::StreamExt as _;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let item = tokio::time::timeout(PATIENCE, read.next())
            .await
            .expect("the switch sent something in time");
        match item {
            Some(Ok(Message::Text(t))) => {
                return RoEvent::Json(serde_json::from_str(&t).expect("text frames are JSON"))
            }
            Some(Ok(Message::Close(frame))) => {
                return RoEvent::Closed(frame.map(|f| u16::from(f.code)))
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return RoEvent::Closed(None),
        }
    }
}

/// Decodes a `streamAudio` frame's samples.
pub fn stream_audio_samples(v: &Value) -> Vec<i16> {
    use base64::Engine as _;
    let data = v["data"]["audioData"].as_str().expect("audioData");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .expect("audioData is base64");
    switchboard::media::pcm::decode_s16le(&bytes).expect("even length")
}
