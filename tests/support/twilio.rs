//! A Twilio Media Streams peer on `/twilio/stream`.

use serde_json::Value;

use super::ringover::{next_event, RoEvent, WsStream};
use super::TestApp;

/// A Twilio Media Streams peer on `/twilio/stream`: plays Twilio toward the switch.
pub struct TwilioClient {
    pub ws: WsStream,
    pub stream_sid: String,
    sequence: u64,
}

impl TwilioClient {
    /// Connects with `query` (for example `?token=t`, or empty).
    pub async fn connect(
        app: &TestApp,
        query: &str,
    ) -> Result<TwilioClient, tokio_tungstenite::tungstenite::Error> {
        let url = format!("ws://{}/twilio/stream{query}", app.handle.http_addr);
        let (ws, _) = tokio_tungstenite::connect_async(url).await?;
        Ok(TwilioClient {
            ws,
            stream_sid: format!("MZ{}", uuid::Uuid::new_v4().simple()),
            sequence: 0,
        })
    }

    /// A peer on a socket already open.
    pub fn from_ws(ws: WsStream) -> TwilioClient {
        TwilioClient {
            ws,
            stream_sid: format!("MZ{}", uuid::Uuid::new_v4().simple()),
            sequence: 0,
        }
    }

    /// Connects and sends `connected` and `start` with `custom` parameters and `call_sid`.
    pub async fn dial(app: &TestApp, call_sid: &str, custom: Value) -> TwilioClient {
        let mut c = Self::connect(app, "").await.expect("WebSocket upgrade");
        c.start(call_sid, custom).await;
        c
    }

    fn next_sequence(&mut self) -> String {
        self.sequence += 1;
        self.sequence.to_string()
    }

    /// `connected` then `start`, as Twilio opens a stream.
    pub async fn start(&mut self, call_sid: &str, custom: Value) {
        self.send_json(
            serde_json::json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
        )
        .await;
        let seq = self.next_sequence();
        let start = serde_json::json!({
            "event": "start",
            "sequenceNumber": seq,
            "start": {
                "accountSid": "AC00000000000000000000000000000000",
                "streamSid": self.stream_sid,
                "callSid": call_sid,
                "tracks": ["inbound"],
                "customParameters": custom,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
            },
            "streamSid": self.stream_sid,
        });
        self.send_json(start).await;
    }

    pub async fn send_json(&mut self, value: Value) {
        self.send_text(value.to_string()).await;
    }

    pub async fn send_text(&mut self, text: String) {
        use futures_util::SinkExt;
        self.ws
            .send(tokio_tungstenite::tungstenite::Message::Text(text))
            .await
            .expect("send text frame");
    }

    /// One `media` message of caller audio.
    pub async fn send_audio(&mut self, samples: &[i16]) {
        use base64::Engine as _;
        let mut bytes = Vec::new();
        switchboard::media::pcm::encode_ulaw_into(samples, &mut bytes);
        let seq = self.next_sequence();
        let media = serde_json::json!({
            "event": "media",
            "sequenceNumber": seq,
            "media": {"track": "inbound", "chunk": seq, "timestamp": "0",
                      "payload": base64::engine::general_purpose::STANDARD.encode(bytes)},
            "streamSid": self.stream_sid,
        });
        self.send_json(media).await;
    }

    pub async fn press(&mut self, digit: &str) {
        let seq = self.next_sequence();
        let dtmf = serde_json::json!({"event": "dtmf", "streamSid": self.stream_sid,
            "sequenceNumber": seq, "dtmf": {"track": "inbound_track", "digit": digit}});
        self.send_json(dtmf).await;
    }

    pub async fn mark(&mut self, name: &str) {
        let seq = self.next_sequence();
        let mark = serde_json::json!({"event": "mark", "streamSid": self.stream_sid,
            "sequenceNumber": seq, "mark": {"name": name}});
        self.send_json(mark).await;
    }

    pub async fn stop(&mut self) {
        let seq = self.next_sequence();
        let stop = serde_json::json!({"event": "stop", "streamSid": self.stream_sid,
            "sequenceNumber": seq, "stop": {"accountSid": "AC0", "callSid": "CA0"}});
        self.send_json(stop).await;
    }

    /// The next text message (JSON) or the close.
    pub async fn next(&mut self) -> RoEvent {
        next_event(&mut self.ws).await
    }
}

/// The mu-law audio of a Twilio `media` message, decoded.
pub fn twilio_media_samples(v: &Value) -> Vec<i16> {
    use base64::Engine as _;
    let payload = v["media"]["payload"].as_str().expect("media.payload");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .expect("payload is base64");
    let mut out = Vec::new();
    switchboard::media::pcm::decode_ulaw_into(&bytes, &mut out);
    out
}
