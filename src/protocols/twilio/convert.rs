//! Twilio Media Streams messages to call messages and back. Only this module knows the JSON.
//!
//! Both directions of the protocol live here, because the switch speaks it on both sides:
//! toward callers (`/twilio/stream`, where the switch stands where a bot would) and toward
//! bots (`kind = "twilio_stream"`, where the switch stands where Twilio would). Every message
//! is a JSON text frame with an `event`: `connected`, `start`, `media` (base64 mu-law, 8 kHz
//! mono), `dtmf`, `mark`, `clear` and `stop`. Unknown events are reported as such, so each
//! side can log and skip them (the protocol grows new ones).

use base64::Engine as _;
use serde_json::{json, Map, Value};
use thiserror::Error;

use crate::limits::{
    self, LimitError, MAX_ADDRESS_BYTES, MAX_ID_BYTES, MAX_NAME_BYTES, MAX_WORKSPACE_BYTES,
};
use crate::media::{is_dtmf, pcm};

/// The only audio format the protocol carries.
pub const ENCODING: &str = "audio/x-mulaw";
/// Its rate.
pub const SAMPLE_RATE: u32 = 8000;
/// Custom parameters that become the call's addresses and route keys, with their limits.
const ADDRESS_PARAMETERS: &[(&str, usize)] = &[
    ("from", MAX_ADDRESS_BYTES),
    ("from_number", MAX_ADDRESS_BYTES),
    ("to", MAX_ADDRESS_BYTES),
    ("to_number", MAX_ADDRESS_BYTES),
    ("hotline", MAX_ADDRESS_BYTES),
    ("workspace", MAX_WORKSPACE_BYTES),
];
/// Event names longer than this are not events.
const MAX_EVENT_BYTES: usize = 32;

/// A message the switch cannot use.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MessageError {
    #[error("{0}")]
    TooLarge(#[from] LimitError),
    #[error("message is not JSON: {0}")]
    NotJson(String),
    #[error("message is JSON but not an object")]
    NotObject,
    #[error("message has no `event`")]
    NoEvent,
    #[error("`{event}` message: {problem}")]
    Field {
        event: &'static str,
        problem: String,
    },
}

fn field(event: &'static str, problem: impl Into<String>) -> MessageError {
    MessageError::Field {
        event,
        problem: problem.into(),
    }
}

/// What a `start` message says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Start {
    pub stream_sid: String,
    pub call_sid: String,
    pub account_sid: String,
    /// `customParameters`: strings the stream's owner attached (token, from, to, hotline…).
    pub custom: Map<String, Value>,
}

impl Start {
    /// A custom parameter as text, if set and not empty.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.custom
            .get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }
}

/// One message read from a peer.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    Connected,
    Start(Box<Start>),
    /// mu-law bytes.
    Media(Vec<u8>),
    Dtmf(char),
    Mark(String),
    Clear,
    Stop,
    /// An event this side does not know; skipped.
    Unknown(String),
}

fn str_at<'a>(o: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    o.get(key).and_then(Value::as_str)
}

/// An id field of `start`, at most `MAX_ID_BYTES` long; empty when absent.
fn id_at(o: &Map<String, Value>, key: &str) -> Result<String, MessageError> {
    let v = str_at(o, key).unwrap_or_default();
    limits::check_len(&format!("start.{key}"), v, MAX_ID_BYTES)?;
    Ok(v.to_owned())
}

/// Parses one text frame of at most `max_bytes` bytes.
pub fn parse(text: &str, max_bytes: usize) -> Result<Inbound, MessageError> {
    limits::check_len("message", text, max_bytes)?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| MessageError::NotJson(e.to_string()))?;
    let Value::Object(o) = value else {
        return Err(MessageError::NotObject);
    };
    let event = str_at(&o, "event").ok_or(MessageError::NoEvent)?;
    limits::check_len("event", event, MAX_EVENT_BYTES)?;
    Ok(match event {
        "connected" => Inbound::Connected,
        "start" => {
            let s = o
                .get("start")
                .and_then(Value::as_object)
                .ok_or_else(|| field("start", "no `start` object"))?;
            let mut stream_sid = id_at(s, "streamSid")?;
            if stream_sid.is_empty() {
                stream_sid = str_at(&o, "streamSid").unwrap_or_default().to_owned();
                limits::check_len("streamSid", &stream_sid, MAX_ID_BYTES)?;
            }
            if let Some(format) = s.get("mediaFormat").and_then(Value::as_object) {
                let encoding = str_at(format, "encoding").unwrap_or(ENCODING);
                let rate = format
                    .get("sampleRate")
                    .and_then(Value::as_u64)
                    .unwrap_or(SAMPLE_RATE as u64);
                if encoding != ENCODING || rate != SAMPLE_RATE as u64 {
                    return Err(field(
                        "start",
                        format!("media format {encoding:.32} at {rate} Hz; only {ENCODING} at {SAMPLE_RATE} Hz is spoken"),
                    ));
                }
            }
            let custom = match s.get("customParameters") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(c)) => {
                    let value = Value::Object(c.clone());
                    limits::check_metadata("start.customParameters", &value)?;
                    for (key, limit) in ADDRESS_PARAMETERS {
                        if let Some(v) = str_at(c, key) {
                            limits::check_len(&format!("customParameters.{key}"), v, *limit)?;
                        }
                    }
                    c.clone()
                }
                Some(_) => return Err(field("start", "`customParameters` is not an object")),
            };
            Inbound::Start(Box::new(Start {
                stream_sid,
                call_sid: id_at(s, "callSid")?,
                account_sid: id_at(s, "accountSid")?,
                custom,
            }))
        }
        "media" => {
            let media = o
                .get("media")
                .and_then(Value::as_object)
                .ok_or_else(|| field("media", "no `media` object"))?;
            if let Some(track) = str_at(media, "track") {
                // Only the caller's side is taken; an outbound track echoes the bot.
                if track.starts_with("outbound") {
                    return Ok(Inbound::Media(Vec::new()));
                }
            }
            let payload =
                str_at(media, "payload").ok_or_else(|| field("media", "no `payload` string"))?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(payload)
                .map_err(|e| field("media", format!("payload is not base64: {e}")))?;
            Inbound::Media(bytes)
        }
        "dtmf" => {
            let digit = o
                .get("dtmf")
                .and_then(Value::as_object)
                .and_then(|d| str_at(d, "digit"))
                .ok_or_else(|| field("dtmf", "no `dtmf.digit`"))?;
            let mut chars = digit.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) if is_dtmf(c) => Inbound::Dtmf(c),
                _ => return Err(field("dtmf", format!("`{:.8}` is not one DTMF key", digit))),
            }
        }
        "mark" => {
            let name = o
                .get("mark")
                .and_then(Value::as_object)
                .and_then(|m| str_at(m, "name"))
                .ok_or_else(|| field("mark", "no `mark.name`"))?;
            limits::check_len("mark.name", name, MAX_NAME_BYTES)?;
            Inbound::Mark(name.to_owned())
        }
        "clear" => Inbound::Clear,
        "stop" => Inbound::Stop,
        other => Inbound::Unknown(other.to_owned()),
    })
}

/// Decodes mu-law bytes to samples, appending to `out`.
pub fn decode(bytes: &[u8], out: &mut Vec<i16>) {
    pcm::decode_ulaw_into(bytes, out);
}

/// Builds the messages of one stream: the stream id (quoted once) and the sequence numbers.
#[derive(Debug)]
pub struct Writer {
    /// The stream id as a JSON string, quotes included.
    sid_json: String,
    sequence: u64,
    chunk: u64,
    /// Milliseconds of media sent so far (for `timestamp`).
    sent_ms: u64,
    encoded: Vec<u8>,
    base64: String,
}

impl Writer {
    pub fn new(stream_sid: &str) -> Self {
        Writer {
            sid_json: Value::String(stream_sid.to_owned()).to_string(),
            sequence: 0,
            chunk: 0,
            sent_ms: 0,
            encoded: Vec::with_capacity(1024),
            base64: String::with_capacity(2048),
        }
    }

    fn next_sequence(&mut self) -> u64 {
        self.sequence += 1;
        self.sequence
    }

    /// `connected`, the first message toward a bot.
    pub fn connected(&mut self) -> String {
        self.next_sequence();
        json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}).to_string()
    }

    /// `start`, the second message toward a bot.
    pub fn start(&mut self, start: &Start) -> String {
        let seq = self.next_sequence();
        json!({
            "event": "start",
            "sequenceNumber": seq.to_string(),
            "start": {
                "accountSid": start.account_sid,
                "streamSid": start.stream_sid,
                "callSid": start.call_sid,
                "tracks": ["inbound"],
                "customParameters": start.custom,
                "mediaFormat": {"encoding": ENCODING, "sampleRate": SAMPLE_RATE, "channels": 1},
            },
            "streamSid": start.stream_sid,
        })
        .to_string()
    }

    fn encode(&mut self, samples: &[i16]) {
        self.encoded.clear();
        pcm::encode_ulaw_into(samples, &mut self.encoded);
        self.base64.clear();
        base64::engine::general_purpose::STANDARD.encode_string(&self.encoded, &mut self.base64);
    }

    /// Caller audio toward a bot, as Twilio sends it (`track`, `chunk`, `timestamp`).
    pub fn inbound_media(&mut self, samples: &[i16]) -> String {
        let seq = self.next_sequence();
        self.chunk += 1;
        let timestamp = self.sent_ms;
        self.sent_ms += crate::media::duration_ms(samples.len(), SAMPLE_RATE);
        self.encode(samples);
        format!(
            r#"{{"event":"media","sequenceNumber":"{seq}","media":{{"track":"inbound","chunk":"{}","timestamp":"{timestamp}","payload":"{}"}},"streamSid":{}}}"#,
            self.chunk, self.base64, self.sid_json
        )
    }

    /// Bot audio toward a caller's side, as bots send it.
    pub fn outbound_media(&mut self, samples: &[i16]) -> String {
        self.encode(samples);
        format!(
            r#"{{"event":"media","streamSid":{},"media":{{"payload":"{}"}}}}"#,
            self.sid_json, self.base64
        )
    }

    /// A key the caller pressed, toward a bot.
    pub fn dtmf(&mut self, digit: char) -> String {
        let seq = self.next_sequence();
        json!({
            "event": "dtmf",
            "streamSid": Value::String(self.sid()),
            "sequenceNumber": seq.to_string(),
            "dtmf": {"track": "inbound_track", "digit": digit.to_string()},
        })
        .to_string()
    }

    /// A mark: toward a bot, once what it sent before it has played; toward a caller's side,
    /// after a whole prompt.
    pub fn mark(&mut self, name: &str) -> String {
        let seq = self.next_sequence();
        json!({
            "event": "mark",
            "streamSid": Value::String(self.sid()),
            "sequenceNumber": seq.to_string(),
            "mark": {"name": name},
        })
        .to_string()
    }

    /// `clear`: drop the audio queued at the caller's side.
    pub fn clear(&self) -> String {
        format!(r#"{{"event":"clear","streamSid":{}}}"#, self.sid_json)
    }

    /// `stop`, the last message toward a bot.
    pub fn stop(&mut self, account_sid: &str, call_sid: &str) -> String {
        let seq = self.next_sequence();
        json!({
            "event": "stop",
            "sequenceNumber": seq.to_string(),
            "streamSid": Value::String(self.sid()),
            "stop": {"accountSid": account_sid, "callSid": call_sid},
        })
        .to_string()
    }

    fn sid(&self) -> String {
        serde_json::from_str::<String>(&self.sid_json).unwrap_or_default()
    }
}

/// `X-Twilio-Signature` of a request to `url` (a WebSocket upgrade has no body): base64 of
/// HMAC-SHA1 over the URL, keyed with the account's auth token.
pub fn signature(auth_token: &str, url: &str) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<sha1::Sha1> as KeyInit>::new_from_slice(auth_token.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(url.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: &str = r#"{"event":"start","sequenceNumber":"1","start":{"accountSid":"AC1","streamSid":"MZ1","callSid":"CA1","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},"customParameters":{"hotline":"1900","token":"t"}},"streamSid":"MZ1"}"#;

    #[test]
    fn start_is_read() {
        let Inbound::Start(s) = parse(START, 65536).unwrap() else {
            panic!("not a start")
        };
        assert_eq!(s.stream_sid, "MZ1");
        assert_eq!(s.call_sid, "CA1");
        assert_eq!(s.param("hotline"), Some("1900"));
        assert_eq!(s.param("from"), None);
    }

    #[test]
    fn bad_messages_say_why() {
        assert!(matches!(parse("nope", 100), Err(MessageError::NotJson(_))));
        assert_eq!(parse("[1]", 100), Err(MessageError::NotObject));
        assert_eq!(parse("{}", 100), Err(MessageError::NoEvent));
        let bad = parse(r#"{"event":"media","media":{"payload":"!!"}}"#, 100).unwrap_err();
        assert!(bad.to_string().contains("not base64"), "{bad}");
        let bad = parse(r#"{"event":"dtmf","dtmf":{"digit":"12"}}"#, 100).unwrap_err();
        assert!(bad.to_string().contains("not one DTMF key"), "{bad}");
        assert!(matches!(
            parse(&"x".repeat(200), 100),
            Err(MessageError::TooLarge(_))
        ));
        assert_eq!(
            parse(r#"{"event":"ping"}"#, 100),
            Ok(Inbound::Unknown("ping".into()))
        );
        let wrong = START.replace("audio/x-mulaw", "audio/l16");
        assert!(parse(&wrong, 65536).is_err());
    }

    #[test]
    fn messages_round_trip() {
        let mut w = Writer::new("MZ\"1");
        let samples: Vec<i16> = (0..160).map(|i| (i * 100) as i16).collect();
        let Inbound::Media(bytes) = parse(&w.inbound_media(&samples), 65536).unwrap() else {
            panic!("not media")
        };
        assert_eq!(bytes.len(), 160);
        let Inbound::Media(bytes) = parse(&w.outbound_media(&samples), 65536).unwrap() else {
            panic!("not media")
        };
        assert_eq!(bytes.len(), 160);
        assert_eq!(parse(&w.dtmf('#'), 1000), Ok(Inbound::Dtmf('#')));
        assert_eq!(parse(&w.mark("m1"), 1000), Ok(Inbound::Mark("m1".into())));
        assert_eq!(parse(&w.clear(), 1000), Ok(Inbound::Clear));
        assert_eq!(parse(&w.stop("AC", "CA"), 1000), Ok(Inbound::Stop));
        assert_eq!(parse(&w.connected(), 1000), Ok(Inbound::Connected));
        let v: Value = serde_json::from_str(&w.clear()).unwrap();
        assert_eq!(v["streamSid"], "MZ\"1");
    }

    #[test]
    fn signatures_follow_twilio() {
        // HMAC-SHA1("key", "The quick brown fox jumps over the lazy dog"), base64.
        assert_eq!(
            signature("key", "The quick brown fox jumps over the lazy dog"),
            "3nybhbi3iqa8ino29wqQcBydtNk="
        );
    }
}
