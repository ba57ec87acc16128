//! Live-call WebSocket frames (JSON text) to call messages and back. Only this module and the
//! session know the JSON shapes.

use std::borrow::Cow;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::limits::{self, LimitError};
use crate::media::pcm;

/// Rates a client may declare for `play_audio`.
pub use crate::media::STANDARD_RATES as ACCEPTED_RATES;

/// Why a client frame was refused (answered with `error{error_code: 400}`).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame is not valid JSON: {0}")]
    BadJson(String),
    #[error("frame must be a JSON object with one of initial_info, play_audio, disconnect")]
    NotAnObject,
    #[error("unknown message `{0}`; expected initial_info, play_audio or disconnect")]
    UnknownMessage(String),
    #[error("{message} is malformed: {detail}")]
    BadFields {
        message: &'static str,
        detail: String,
    },
    #[error("play_audio.audio_content is not valid base64: {0}")]
    BadBase64(String),
    #[error("play_audio.audio_content: {0}")]
    BadAudio(#[from] pcm::PcmError),
    #[error("play_audio.sample_rate {0} is not one of 8000, 16000, 24000, 48000")]
    BadRate(u32),
    #[error("play_audio.sample_width {0} is not 16 bits (or 2 bytes)")]
    BadWidth(u32),
    #[error("play_audio.num_channels {0} is not 1; only mono audio is accepted")]
    BadChannels(u32),
    #[error("binary frames are not part of this protocol; send JSON text frames")]
    Binary,
    #[error("{0}")]
    TooLarge(#[from] LimitError),
}

/// `initial_info`: who is calling. Missing fields fall back to the URL's values.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct InitialInfo {
    pub workspace_id: String,
    pub call_id: String,
    pub customer_phone_number: String,
    pub type_call: String,
    pub hotline: String,
    pub url_audio_file: String,
}

/// `play_audio`: one chunk of caller audio. The base64 text is borrowed from the frame.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PlayAudio<'a> {
    #[serde(default = "default_rate")]
    pub sample_rate: u32,
    #[serde(default = "default_width")]
    pub sample_width: u32,
    #[serde(default = "default_channels")]
    pub num_channels: u32,
    #[serde(default)]
    pub duration: f64,
    #[serde(borrow)]
    pub audio_content: Cow<'a, str>,
}

impl PlayAudio<'_> {
    /// The same chunk owning its text.
    pub fn into_owned(self) -> PlayAudio<'static> {
        PlayAudio {
            sample_rate: self.sample_rate,
            sample_width: self.sample_width,
            num_channels: self.num_channels,
            duration: self.duration,
            audio_content: Cow::Owned(self.audio_content.into_owned()),
        }
    }
}

fn default_rate() -> u32 {
    16000
}
fn default_width() -> u32 {
    16
}
fn default_channels() -> u32 {
    1
}

/// A client frame.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientFrame<'a> {
    InitialInfo(InitialInfo),
    PlayAudio(PlayAudio<'a>),
    Disconnect,
}

/// The frames as serde reads them in one pass (the fast path for well-formed frames).
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Wire<'a> {
    InitialInfo(InitialInfo),
    PlayAudio(#[serde(borrow)] PlayAudio<'a>),
    Disconnect(serde::de::IgnoredAny),
}

/// Parses one text frame. An `initial_info` whose fields are over their limits is refused.
pub fn parse(text: &str) -> Result<ClientFrame<'_>, FrameError> {
    let frame = match serde_json::from_str::<Wire>(text) {
        Ok(Wire::PlayAudio(p)) => ClientFrame::PlayAudio(p),
        Ok(Wire::InitialInfo(i)) => ClientFrame::InitialInfo(i),
        Ok(Wire::Disconnect(_)) => ClientFrame::Disconnect,
        // A frame that does not read in one pass is looked at again to say exactly why.
        Err(_) => parse_slowly(text)?,
    };
    if let ClientFrame::InitialInfo(i) = &frame {
        check_initial_info(
            &i.workspace_id,
            &i.call_id,
            &i.customer_phone_number,
            &i.type_call,
            &i.hotline,
            &i.url_audio_file,
        )?;
    }
    Ok(frame)
}

/// Checks `initial_info`'s fields against their limits (the gRPC protocol's too).
pub fn check_initial_info(
    workspace_id: &str,
    call_id: &str,
    customer_phone_number: &str,
    type_call: &str,
    hotline: &str,
    url_audio_file: &str,
) -> Result<(), LimitError> {
    use limits::{
        check_len, MAX_ADDRESS_BYTES, MAX_ID_BYTES, MAX_URL_BYTES, MAX_WORD_BYTES,
        MAX_WORKSPACE_BYTES,
    };
    check_len(
        "initial_info.workspace_id",
        workspace_id,
        MAX_WORKSPACE_BYTES,
    )?;
    check_len("initial_info.call_id", call_id, MAX_ID_BYTES)?;
    check_len(
        "initial_info.customer_phone_number",
        customer_phone_number,
        MAX_ADDRESS_BYTES,
    )?;
    check_len("initial_info.type_call", type_call, MAX_WORD_BYTES)?;
    check_len("initial_info.hotline", hotline, MAX_ADDRESS_BYTES)?;
    check_len("initial_info.url_audio_file", url_audio_file, MAX_URL_BYTES)
}

/// Checks the call id and customer number of the WebSocket URL against their limits.
pub fn check_url(call_id: &str, customer_phone_number: &str) -> Result<(), FrameError> {
    limits::check_len("URL call_id", call_id, limits::MAX_ID_BYTES)?;
    limits::check_len(
        "URL customer_phone_number",
        customer_phone_number,
        limits::MAX_ADDRESS_BYTES,
    )?;
    Ok(())
}

fn parse_slowly(text: &str) -> Result<ClientFrame<'static>, FrameError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| FrameError::BadJson(e.to_string()))?;
    let serde_json::Value::Object(mut map) = value else {
        return Err(FrameError::NotAnObject);
    };
    let bad = |message: &'static str| {
        move |e: serde_json::Error| FrameError::BadFields {
            message,
            detail: e.to_string(),
        }
    };
    if let Some(v) = map.remove("play_audio") {
        let text = v.to_string();
        return serde_json::from_str::<PlayAudio>(&text)
            .map(|p| ClientFrame::PlayAudio(p.into_owned()))
            .map_err(bad("play_audio"));
    }
    if let Some(v) = map.remove("initial_info") {
        return serde_json::from_value(v)
            .map(ClientFrame::InitialInfo)
            .map_err(bad("initial_info"));
    }
    if map.remove("disconnect").is_some() {
        return Ok(ClientFrame::Disconnect);
    }
    match map.keys().next() {
        Some(key) => Err(FrameError::UnknownMessage(key.clone())),
        None => Err(FrameError::NotAnObject),
    }
}

/// The samples of a `play_audio` chunk and their rate.
pub fn decode_audio(
    chunk: &PlayAudio<'_>,
    scratch: &mut Vec<u8>,
) -> Result<(u32, Vec<i16>), FrameError> {
    if !ACCEPTED_RATES.contains(&chunk.sample_rate) {
        return Err(FrameError::BadRate(chunk.sample_rate));
    }
    if chunk.sample_width != 16 && chunk.sample_width != 2 {
        return Err(FrameError::BadWidth(chunk.sample_width));
    }
    if chunk.num_channels != 1 && chunk.num_channels != 0 {
        return Err(FrameError::BadChannels(chunk.num_channels));
    }
    scratch.clear();
    base64::engine::general_purpose::STANDARD
        .decode_vec(chunk.audio_content.as_bytes(), scratch)
        .map_err(|e| FrameError::BadBase64(e.to_string()))?;
    Ok((chunk.sample_rate, pcm::decode_s16le(scratch)?))
}

/// `{"audio_output":{"audio_content": BASE64}}` for samples (8 kHz s16le), written directly:
/// base64 needs no JSON escaping, and this runs for every 20 ms frame of every call.
pub fn audio_output(samples: &[i16], scratch: &mut Vec<u8>) -> String {
    const HEAD: &str = "{\"audio_output\":{\"audio_content\":\"";
    const TAIL: &str = "\"}}";
    scratch.clear();
    pcm::encode_s16le_into(samples, scratch);
    let mut out = String::with_capacity(HEAD.len() + scratch.len().div_ceil(3) * 4 + TAIL.len());
    out.push_str(HEAD);
    base64::engine::general_purpose::STANDARD.encode_string(&scratch[..], &mut out);
    out.push_str(TAIL);
    out
}

/// `signal.end_call`.
pub fn end_call(call_id: &str) -> String {
    serde_json::json!({ "signal": { "end_call": { "call_id": call_id } } }).to_string()
}

/// `signal.kill_audio`: stop playing queued bot audio now.
pub fn kill_audio(call_id: &str) -> String {
    serde_json::json!({ "signal": { "kill_audio": { "call_id": call_id } } }).to_string()
}

/// One transfer target.
#[derive(Debug, Clone, Serialize)]
pub struct Staff {
    pub name: String,
    pub phone_number: String,
}

/// `signal.transfer_call`.
pub fn transfer_call(call_id: &str, customer_phone_number: &str, target_staff: &[Staff]) -> String {
    serde_json::json!({
        "signal": { "transfer_call": {
            "call_id": call_id,
            "customer_phone_number": customer_phone_number,
            "target_staff": target_staff,
        } }
    })
    .to_string()
}

/// `error{error_code, message}`.
pub fn error(code: u16, message: &str) -> String {
    serde_json::json!({ "error": { "error_code": code, "message": message } }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse() {
        assert_eq!(parse(r#"{"disconnect":{}}"#), Ok(ClientFrame::Disconnect));
        // Escaped text still reads (owned rather than borrowed).
        let f = parse(r#"{"play_audio":{"audio_content":"AQ\u0041CAA=="}}"#).unwrap();
        let ClientFrame::PlayAudio(p) = f else {
            panic!()
        };
        assert_eq!(
            decode_audio(&p, &mut Vec::new()).unwrap(),
            (16000, vec![1, 2])
        );
        let f = parse(r#"{"initial_info":{"workspace_id":"w","hotline":"1900"}}"#).unwrap();
        let ClientFrame::InitialInfo(info) = f else {
            panic!()
        };
        assert_eq!(info.workspace_id, "w");
        assert_eq!(info.call_id, "");
        let f = parse(r#"{"play_audio":{"sample_rate":8000,"sample_width":2,"num_channels":1,"duration":0.02,"audio_content":"AQACAA=="}}"#).unwrap();
        let ClientFrame::PlayAudio(p) = f else {
            panic!()
        };
        assert_eq!(
            decode_audio(&p, &mut Vec::new()).unwrap(),
            (8000, vec![1, 2])
        );
    }

    #[test]
    fn malformed_frames_are_named() {
        assert!(matches!(parse("{nope"), Err(FrameError::BadJson(_))));
        assert_eq!(parse("[1]"), Err(FrameError::NotAnObject));
        assert_eq!(
            parse(r#"{"dance":{}}"#),
            Err(FrameError::UnknownMessage("dance".into()))
        );
        assert!(matches!(
            parse(r#"{"play_audio":{"sample_rate":"x"}}"#),
            Err(FrameError::BadFields { .. })
        ));
        let chunk = |rate: u32, width: u32, content: &'static str| PlayAudio {
            sample_rate: rate,
            sample_width: width,
            num_channels: 1,
            duration: 0.0,
            audio_content: content.into(),
        };
        assert!(matches!(
            decode_audio(&chunk(16000, 16, "!!!"), &mut Vec::new()),
            Err(FrameError::BadBase64(_))
        ));
        assert!(matches!(
            decode_audio(&chunk(16000, 16, "AQID"), &mut Vec::new()),
            Err(FrameError::BadAudio(_))
        ));
        assert_eq!(
            decode_audio(&chunk(11025, 16, ""), &mut Vec::new()),
            Err(FrameError::BadRate(11025))
        );
        assert_eq!(
            decode_audio(&chunk(8000, 8, ""), &mut Vec::new()),
            Err(FrameError::BadWidth(8))
        );
    }

    #[test]
    fn oversized_initial_info_fields_are_named() {
        let frame = serde_json::json!({"initial_info": {"call_id": "c".repeat(129)}}).to_string();
        let err = parse(&frame).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge(_)));
        assert!(err.to_string().contains("initial_info.call_id"), "{err}");
        assert!(err.to_string().contains("128"), "{err}");
        let frame =
            serde_json::json!({"initial_info": {"hotline": "1".repeat(300), "x": 1}}).to_string();
        let err = parse(&frame).unwrap_err();
        assert!(err.to_string().contains("initial_info.hotline"), "{err}");
        assert!(check_url("c1", &"9".repeat(257)).is_err());
        assert!(check_url("c1", "+84900000001").is_ok());
    }

    #[test]
    fn outbound_shapes() {
        let mut scratch = Vec::new();
        let v: serde_json::Value =
            serde_json::from_str(&audio_output(&[1, 2], &mut scratch)).unwrap();
        assert_eq!(v["audio_output"]["audio_content"], "AQACAA==");
        let v: serde_json::Value = serde_json::from_str(&transfer_call(
            "c",
            "+84",
            &[Staff {
                name: "A".into(),
                phone_number: "1".into(),
            }],
        ))
        .unwrap();
        assert_eq!(
            v["signal"]["transfer_call"]["target_staff"][0]["phone_number"],
            "1"
        );
        let v: serde_json::Value = serde_json::from_str(&error(400, "bad")).unwrap();
        assert_eq!(v["error"]["error_code"], 400);
    }
}
