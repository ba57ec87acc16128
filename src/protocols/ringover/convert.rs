//! Ringover streamer frames to call messages and back. Only this module knows the JSON.
//!
//! Outbound, exactly the five shapes Ringover documents: `streamAudio` (note: `type`, not
//! `event`), `play`, `break`, `digits` and `transfer`. Inbound is inferred (Ringover does not
//! publish it; it follows FreeSWITCH mod_audio_stream): JSON text frames carry metadata or
//! control, binary frames carry raw L16 audio or, in RTP mode, RTP packets of PCMU/PCMA.

use base64::Engine as _;
use serde_json::{json, Map, Value};
use thiserror::Error;

use crate::call::state::Address;
use crate::limits::{
    self, LimitError, MAX_ADDRESS_BYTES, MAX_ID_BYTES, MAX_METADATA_BYTES, MAX_METADATA_DEPTH,
};
use crate::media::{is_dtmf, pcm};

/// Length of an RTP header without CSRCs or extension.
pub const RTP_HEADER: usize = 12;
/// RTP payload type of G.711 mu-law.
pub const PT_PCMU: u8 = 0;
/// RTP payload type of G.711 A-law.
pub const PT_PCMA: u8 = 8;

/// Keys that name the call, in the order they are tried.
const REFERENCE_KEYS: &[&str] = &[
    "call_id",
    "callId",
    "callid",
    "call_uuid",
    "callUuid",
    "uuid",
    "callSid",
    "id",
];
/// Keys that name the caller.
const CALLER_KEYS: &[&str] = &[
    "from",
    "caller",
    "from_number",
    "fromNumber",
    "callerNumber",
];
/// Keys that name the number called.
const CALLEE_KEYS: &[&str] = &["to", "callee", "to_number", "toNumber", "calleeNumber"];
/// Objects inside the metadata that are searched for those keys too (one level deep).
const NESTED_KEYS: &[&str] = &["metadata", "data", "start", "call"];

/// A frame the switch cannot use. None of these ends a call: the frame is logged and dropped.
/// A first frame whose metadata names the call with over-long ids refuses the call.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("{0}")]
    TooLarge(#[from] LimitError),
    #[error("text frame is not JSON: {0}")]
    NotJson(String),
    #[error("text frame is JSON but not an object")]
    NotObject,
    #[error("RTP packet of {0} bytes is shorter than its header")]
    ShortRtp(usize),
    #[error("RTP version {0} is not 2")]
    RtpVersion(u8),
    #[error("RTP payload type {0} is neither PCMU (0) nor PCMA (8)")]
    RtpPayloadType(u8),
}

/// What the metadata says about the call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallInfo {
    pub reference: Option<String>,
    pub caller: Option<String>,
    pub callee: Option<String>,
}

/// Parses a text frame as a JSON object of at most `limits::MAX_METADATA_BYTES` bytes,
/// nested at most `limits::MAX_METADATA_DEPTH` deep (the first frame is the call's metadata).
pub fn parse_text(text: &str) -> Result<Map<String, Value>, FrameError> {
    limits::check_len("text frame", text, MAX_METADATA_BYTES)?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| FrameError::NotJson(e.to_string()))?;
    if limits::json_depth(&value) > MAX_METADATA_DEPTH {
        return Err(LimitError::TooDeep {
            field: "text frame".into(),
            limit: MAX_METADATA_DEPTH,
        }
        .into());
    }
    match value {
        Value::Object(o) => Ok(o),
        _ => Err(FrameError::NotObject),
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The first of `keys` with a value (top level, then one level down), with where it was.
fn find(o: &Map<String, Value>, keys: &[&str]) -> Option<(String, String)> {
    keys.iter()
        .find_map(|k| o.get(*k).and_then(scalar).map(|v| (k.to_string(), v)))
        .or_else(|| {
            NESTED_KEYS.iter().find_map(|n| {
                let inner = o.get(*n).and_then(Value::as_object)?;
                keys.iter().find_map(|k| {
                    inner
                        .get(*k)
                        .and_then(scalar)
                        .map(|v| (format!("{n}.{k}"), v))
                })
            })
        })
}

/// The first of `keys` with a value, refused when longer than `limit`.
fn find_bounded(
    o: &Map<String, Value>,
    keys: &[&str],
    limit: usize,
) -> Result<Option<String>, FrameError> {
    match find(o, keys) {
        Some((key, value)) => {
            limits::check_len(&format!("metadata.{key}"), &value, limit)?;
            Ok(Some(value))
        }
        None => Ok(None),
    }
}

/// The call's reference, caller and callee from common metadata keys. Metadata over its
/// limits, or naming the call with an id or number over its limit, is refused.
pub fn call_info(metadata: &Map<String, Value>) -> Result<CallInfo, FrameError> {
    limits::check_metadata("metadata", &Value::Object(metadata.clone()))?;
    Ok(CallInfo {
        reference: find_bounded(metadata, REFERENCE_KEYS, MAX_ID_BYTES)?,
        caller: find_bounded(metadata, CALLER_KEYS, MAX_ADDRESS_BYTES)?,
        callee: find_bounded(metadata, CALLEE_KEYS, MAX_ADDRESS_BYTES)?,
    })
}

/// DTMF keys in a control frame: `{"event":"dtmf","digit":"5"}`, `{"dtmf":"5"}` or
/// `{"event":"dtmf","digits":"12"}`. Anything else carries none. More than
/// `limits::MAX_KEYS_PER_MESSAGE` keys in one frame is refused.
pub fn dtmf(o: &Map<String, Value>) -> Result<Vec<char>, FrameError> {
    let is_dtmf_event = o
        .get("event")
        .or_else(|| o.get("type"))
        .and_then(Value::as_str)
        .is_some_and(|e| e.eq_ignore_ascii_case("dtmf"));
    let keys = if is_dtmf_event {
        ["digit", "digits", "dtmf", "data"]
            .iter()
            .find_map(|k| o.get(*k).and_then(scalar))
    } else {
        o.get("dtmf").and_then(scalar)
    };
    let Some(keys) = keys else {
        return Ok(Vec::new());
    };
    limits::check_keys("dtmf", &keys)?;
    Ok(keys.chars().filter(|c| is_dtmf(*c)).collect())
}

/// Raw L16 frames of any size: an odd trailing byte is kept and joined to the next frame,
/// since a media server may split frames anywhere.
#[derive(Debug, Default)]
pub struct L16Decoder {
    carry: Option<u8>,
}

impl L16Decoder {
    /// Appends the whole samples in `bytes` (with any byte carried over) to `out`.
    pub fn decode(&mut self, bytes: &[u8], out: &mut Vec<i16>) {
        let mut rest = bytes;
        if let Some(low) = self.carry.take() {
            match rest.split_first() {
                Some((high, tail)) => {
                    out.push(i16::from_le_bytes([low, *high]));
                    rest = tail;
                }
                None => {
                    self.carry = Some(low);
                    return;
                }
            }
        }
        let mut chunks = rest.chunks_exact(2);
        out.extend(chunks.by_ref().map(|c| i16::from_le_bytes([c[0], c[1]])));
        self.carry = chunks.remainder().first().copied();
    }
}

/// Decodes one RTP packet of PCMU or PCMA (8 kHz) into `out`.
pub fn decode_rtp(packet: &[u8], out: &mut Vec<i16>) -> Result<(), FrameError> {
    if packet.len() < RTP_HEADER {
        return Err(FrameError::ShortRtp(packet.len()));
    }
    let version = packet[0] >> 6;
    if version != 2 {
        return Err(FrameError::RtpVersion(version));
    }
    let padding = packet[0] & 0x20 != 0;
    let extension = packet[0] & 0x10 != 0;
    let csrcs = (packet[0] & 0x0f) as usize;
    let payload_type = packet[1] & 0x7f;
    let mut start = RTP_HEADER + 4 * csrcs;
    if extension {
        let words = packet
            .get(start + 2..start + 4)
            .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
            .ok_or(FrameError::ShortRtp(packet.len()))?;
        start += 4 + 4 * words;
    }
    let mut end = packet.len();
    if padding {
        end = end.saturating_sub(packet.last().copied().unwrap_or(0) as usize);
    }
    let payload = packet
        .get(start..end.max(start))
        .ok_or(FrameError::ShortRtp(packet.len()))?;
    match payload_type {
        PT_PCMU => out.extend(payload.iter().map(|b| pcm::ulaw_to_linear(*b))),
        PT_PCMA => out.extend(payload.iter().map(|b| pcm::alaw_to_linear(*b))),
        other => return Err(FrameError::RtpPayloadType(other)),
    }
    Ok(())
}

// Outbound frames are written with their keys in the order Ringover's documentation shows
// (serde_json would sort them); values go through serde_json so they are always escaped.

/// `streamAudio`: raw s16le bot audio at `rate`, base64.
pub fn stream_audio(samples: &[i16], rate: u32) -> String {
    let data = base64::engine::general_purpose::STANDARD.encode(pcm::encode_s16le(samples));
    format!(
        r#"{{"type":"streamAudio","data":{{"audioDataType":"raw","sampleRate":{rate},"audioData":"{data}"}}}}"#
    )
}

/// `play`: the media server fetches and plays `url`.
pub fn play(url: &str) -> String {
    format!(r#"{{"event":"play","file":{}}}"#, Value::from(url))
}

/// `break`: stop what is playing.
pub fn stop() -> String {
    r#"{"event":"break"}"#.to_owned()
}

/// A key string as Ringover's examples send it: a JSON number when it is one (no sign, no
/// leading zero), else the string as is, so `*`, `#`, `+` and leading zeros survive.
fn number_or_string(s: &str) -> Value {
    let plain =
        !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    match s.parse::<u64>() {
        Ok(n) if plain => json!(n),
        _ => json!(s),
    }
}

/// `digits`: send DTMF toward the caller's side.
pub fn digits(keys: &str) -> String {
    format!(r#"{{"event":"digits","data":{}}}"#, number_or_string(keys))
}

/// `transfer`: hand the caller to `destination` (its number, as a JSON number when it is one).
pub fn transfer(destination: &Address) -> String {
    format!(
        r#"{{"event":"transfer","data":{}}}"#,
        number_or_string(destination.target.trim())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn outbound_shapes_match_the_seed() {
        let v: Value = serde_json::from_str(&stream_audio(&[1, -1], 16000)).unwrap();
        assert_eq!(v["type"], "streamAudio");
        assert_eq!(v["data"]["audioDataType"], "raw");
        assert_eq!(v["data"]["sampleRate"], 16000);
        assert_eq!(v["data"]["audioData"], "AQD//w==");
        assert_eq!(
            play("https://x/a.mp3"),
            r#"{"event":"play","file":"https://x/a.mp3"}"#
        );
        assert_eq!(stop(), r#"{"event":"break"}"#);
        assert_eq!(digits("123"), r#"{"event":"digits","data":123}"#);
        assert_eq!(digits("0*1#"), r#"{"event":"digits","data":"0*1#"}"#);
        assert_eq!(
            transfer(&Address::tel("33100000000")),
            r#"{"event":"transfer","data":33100000000}"#
        );
        assert_eq!(
            transfer(&Address::tel("+15550100")),
            r#"{"event":"transfer","data":"+15550100"}"#
        );
    }

    #[test]
    fn metadata_keys_are_found_at_the_top_or_one_level_down() {
        let info = call_info(&obj(
            json!({"callId": "c-1", "from": "+331", "to": 3302, "x": 1}),
        ))
        .unwrap();
        assert_eq!(info.reference.as_deref(), Some("c-1"));
        assert_eq!(info.caller.as_deref(), Some("+331"));
        assert_eq!(info.callee.as_deref(), Some("3302"));
        let info = call_info(&obj(json!({"event": "start", "start": {"uuid": "u-9"}}))).unwrap();
        assert_eq!(info.reference.as_deref(), Some("u-9"));
        assert_eq!(
            call_info(&obj(json!({"nothing": true}))),
            Ok(CallInfo::default())
        );
    }

    #[test]
    fn text_frames_that_are_not_objects_are_named() {
        assert!(matches!(parse_text("hello"), Err(FrameError::NotJson(_))));
        assert_eq!(parse_text("[1]").unwrap_err(), FrameError::NotObject);
        assert!(parse_text(r#"{"a":1}"#).is_ok());
    }

    #[test]
    fn dtmf_control_frames() {
        assert_eq!(
            dtmf(&obj(json!({"event": "dtmf", "digit": "5"}))),
            Ok(vec!['5'])
        );
        assert_eq!(dtmf(&obj(json!({"dtmf": "1#"}))), Ok(vec!['1', '#']));
        assert_eq!(dtmf(&obj(json!({"event": "mark"}))), Ok(vec![]));
        let err = dtmf(&obj(json!({"dtmf": "1".repeat(1000)}))).unwrap_err();
        assert!(err.to_string().contains("dtmf"), "{err}");
    }

    #[test]
    fn oversized_metadata_is_refused_naming_the_field() {
        let err = call_info(&obj(json!({"start": {"callSid": "x".repeat(129)}}))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "metadata.start.callSid is 129 bytes long; the limit is 128 bytes"
        );
        let err = call_info(&obj(json!({"from": "1".repeat(257)}))).unwrap_err();
        assert!(err.to_string().contains("metadata.from"), "{err}");
        let big = json!({"blob": "x".repeat(MAX_METADATA_BYTES)}).to_string();
        assert!(matches!(parse_text(&big), Err(FrameError::TooLarge(_))));
        let deep = format!("{}1{}", "{\"a\":".repeat(20), "}".repeat(20));
        assert!(matches!(parse_text(&deep), Err(FrameError::TooLarge(_))));
    }

    #[test]
    fn odd_l16_frames_carry_their_last_byte() {
        let mut d = L16Decoder::default();
        let mut out = Vec::new();
        d.decode(&[1, 0, 2], &mut out);
        assert_eq!(out, vec![1]);
        d.decode(&[0], &mut out);
        assert_eq!(out, vec![1, 2]);
        d.decode(&[], &mut out);
        d.decode(&[3, 0, 4, 0], &mut out);
        assert_eq!(out, vec![1, 2, 3, 4]);
    }

    #[test]
    fn rtp_packets_decode_and_bad_ones_are_named() {
        let mut packet = vec![0x80, PT_PCMU, 0, 1, 0, 0, 0, 160, 0, 0, 0, 1];
        packet.extend([0xff; 160]);
        let mut out = Vec::new();
        decode_rtp(&packet, &mut out).unwrap();
        assert_eq!(out.len(), 160);
        assert!(out.iter().all(|&s| s == 0));
        packet[1] = PT_PCMA;
        decode_rtp(&packet, &mut out).unwrap();
        assert_eq!(out.len(), 320);
        packet[1] = 96;
        assert_eq!(
            decode_rtp(&packet, &mut out),
            Err(FrameError::RtpPayloadType(96))
        );
        assert_eq!(
            decode_rtp(&[0x80; 5], &mut out),
            Err(FrameError::ShortRtp(5))
        );
        assert_eq!(
            decode_rtp(&[0x40; 12], &mut out),
            Err(FrameError::RtpVersion(1))
        );
    }
}
