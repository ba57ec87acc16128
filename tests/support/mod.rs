//! Test support: start the real switch on 127.0.0.1:0 and talk to it with real clients.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use switchboard::app::{self, AppHandle};
use switchboard::config::Config;
use switchboard::pb::smartivr::smart_ivr_phonegateway_client::SmartIvrPhonegatewayClient;
use switchboard::pb::smartivr::{
    Config as IvrConfig, SmartIvrRequest, SmartIvrResponse, SmartIvrResponseType,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

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
}

/// A SmartIVR phone gateway, as a tonic client.
pub struct Gateway {
    pub conversation_id: String,
    tx: Option<mpsc::Sender<SmartIvrRequest>>,
    responses: Streaming<SmartIvrResponse>,
}

impl Gateway {
    /// Opens a `CallToBot` stream whose first message carries config.
    pub async fn dial(app: &TestApp, conversation_id: &str) -> Gateway {
        let first = SmartIvrRequest {
            config: Some(IvrConfig {
                conversation_id: conversation_id.into(),
            }),
            ..Default::default()
        };
        Self::open_with(app, conversation_id, first)
            .await
            .expect("call accepted")
    }

    /// Opens a stream whose first message is `first`.
    pub async fn open_with(
        app: &TestApp,
        conversation_id: &str,
        first: SmartIvrRequest,
    ) -> Result<Gateway, tonic::Status> {
        Self::open_at(&app.grpc_url(), conversation_id, first).await
    }

    /// Opens a `CallToBot` stream with config on the switch at `grpc_url`.
    pub async fn dial_at(grpc_url: &str, conversation_id: &str) -> Result<Gateway, tonic::Status> {
        let first = SmartIvrRequest {
            config: Some(IvrConfig {
                conversation_id: conversation_id.into(),
            }),
            ..Default::default()
        };
        Self::open_at(grpc_url, conversation_id, first).await
    }

    /// Opens a stream whose first message is `first` on the switch at `grpc_url`.
    pub async fn open_at(
        grpc_url: &str,
        conversation_id: &str,
        first: SmartIvrRequest,
    ) -> Result<Gateway, tonic::Status> {
        let mut client = SmartIvrPhonegatewayClient::connect(grpc_url.to_owned())
            .await
            .expect("gRPC connects");
        let (tx, rx) = mpsc::channel(64);
        tx.send(first).await.expect("queue first message");
        let responses = client
            .call_to_bot(ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(Gateway {
            conversation_id: conversation_id.into(),
            tx: Some(tx),
            responses,
        })
    }

    fn config(&self) -> Option<IvrConfig> {
        Some(IvrConfig {
            conversation_id: self.conversation_id.clone(),
        })
    }

    pub async fn send(&self, msg: SmartIvrRequest) {
        if let Some(tx) = &self.tx {
            tx.send(msg).await.expect("gateway stream open");
        }
    }

    /// Presses one key, repeating config as real gateways do.
    pub async fn press(&self, key: &str) {
        self.send(SmartIvrRequest {
            config: self.config(),
            key_press: key.into(),
            ..Default::default()
        })
        .await;
    }

    /// Sends caller audio (s16le 8 kHz).
    pub async fn send_audio(&self, samples: &[i16]) {
        self.send(SmartIvrRequest {
            config: self.config(),
            audio_content: switchboard::media::pcm::encode_s16le(samples),
            ..Default::default()
        })
        .await;
    }

    /// The next response; `Ok(None)` when the stream ended cleanly.
    pub async fn next(&mut self) -> Result<Option<SmartIvrResponse>, tonic::Status> {
        tokio::time::timeout(PATIENCE, self.responses.message())
            .await
            .expect("the switch answered in time")
    }

    /// The next response, which must be of `kind`.
    pub async fn expect(&mut self, kind: SmartIvrResponseType) -> SmartIvrResponse {
        let r = self
            .next()
            .await
            .expect("stream healthy")
            .expect("stream still open");
        assert_eq!(
            r.r#type,
            kind as i32,
            "expected {kind:?}, got {:?} ({:?})",
            SmartIvrResponseType::try_from(r.r#type),
            r.text_bot
        );
        r
    }

    /// Waits for a RESULT_TTS whose text contains `text`.
    pub async fn expect_tts(&mut self, text: &str) -> SmartIvrResponse {
        let r = self.expect(SmartIvrResponseType::ResultTts).await;
        assert!(
            r.text_bot.contains(text),
            "expected {text:?} in {:?}",
            r.text_bot
        );
        r
    }

    /// Drops the gateway's side of the stream: the caller hangs up.
    pub fn hang_up(mut self) {
        self.tx = None;
        drop(self);
    }
}

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
        use base64::Engine;
        loop {
            match self.next().await {
                WsEvent::Json(v) if v.get("audio_output").is_some() => {
                    let b64 = v["audio_output"]["audio_content"]
                        .as_str()
                        .expect("base64 text");
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .expect("valid base64");
                    audio.extend(
                        switchboard::media::pcm::decode_s16le(&bytes).expect("even length"),
                    );
                }
                other => return other,
            }
        }
    }
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

/// A sine tone as s16 samples.
pub fn tone(freq: f64, rate: u32, ms: u32, amplitude: f64) -> Vec<i16> {
    let n = (rate as u64 * ms as u64 / 1000) as usize;
    (0..n)
        .map(|i| {
            (amplitude * (2.0 * std::f64::consts::PI * freq * i as f64 / rate as f64).sin()) as i16
        })
        .collect()
}

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

type WsStream =
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

/// 20 ms of a 440 Hz tone at 8 kHz and `amplitude`, as s16le bytes.
pub fn tone_frame(rate: u32, amplitude: f64, frame_index: usize) -> Vec<u8> {
    let n = (rate / 50) as usize;
    let samples: Vec<i16> = (0..n)
        .map(|i| {
            let t = (frame_index * n + i) as f64 / rate as f64;
            (amplitude * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
        })
        .collect();
    switchboard::media::pcm::encode_s16le(&samples)
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

/// The interleaved samples of a 16-bit WAV file and its (rate, channels).
pub fn wav_samples(bytes: &[u8]) -> (u32, u16, Vec<i16>) {
    assert_eq!(&bytes[..4], b"RIFF", "a WAV file");
    let channels = u16::from_le_bytes([bytes[22], bytes[23]]);
    let rate = u32::from_le_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]);
    let samples = bytes[44..]
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    (rate, channels, samples)
}

/// A sine tone at 8 kHz.
pub fn tone_8k(hz: f64, ms: usize, amplitude: f64) -> Vec<i16> {
    (0..ms * 8)
        .map(|i| (amplitude * (2.0 * std::f64::consts::PI * hz * i as f64 / 8000.0).sin()) as i16)
        .collect()
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

/// The power of `freq` in `samples` (Goertzel), normalised by the block's length, so tones
/// can be told apart by frequency rather than loudness.
pub fn tone_power(samples: &[i16], rate: u32, freq: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let w = 2.0 * std::f64::consts::PI * freq / rate as f64;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = x as f64 + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    power / (samples.len() as f64 * samples.len() as f64)
}

/// Whether `freq` stands out in `samples`: at least ten times the power of each of `others`
/// and loud enough to be a tone, not noise.
pub fn has_tone(samples: &[i16], rate: u32, freq: f64, others: &[f64]) -> bool {
    let p = tone_power(samples, rate, freq);
    p > 1.0e5
        && others
            .iter()
            .all(|&o| p > 10.0 * tone_power(samples, rate, o))
}

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
