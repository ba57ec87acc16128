//! SmartIVR frames to call messages and back. Only this module and the session know prost.

use thiserror::Error;

use crate::call::messages::CallerEvent;
use crate::call::state::Address;
use crate::config::TtsAudio;
use crate::limits::{self, LimitError, MAX_ID_BYTES};
use crate::media::{is_dtmf, pcm, wav, TELEPHONE_RATE};
use crate::pb::smartivr::{SmartIvrRequest, SmartIvrResponse, SmartIvrResponseType, Status};

/// Status code of a successful response.
pub const STATUS_OK: i32 = 200;
/// Status code of an error response.
pub const STATUS_ERROR: i32 = -1;

/// A gateway broke the protocol.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("the first message must carry config")]
    NoConfig,
    #[error("config.conversation_id is empty")]
    EmptyConversationId,
    #[error("config.conversation_id changed from `{was}` to `{now}` mid-call")]
    ConversationChanged { was: String, now: String },
    #[error("key_press `{0}` is not a DTMF key")]
    BadKey(String),
    #[error("audio_content: {0}")]
    BadAudio(#[from] pcm::PcmError),
    #[error("{0}")]
    TooLarge(#[from] LimitError),
}

/// The conversation id of a stream's first message.
pub fn first_config(msg: &SmartIvrRequest) -> Result<String, ProtocolError> {
    let config = msg.config.as_ref().ok_or(ProtocolError::NoConfig)?;
    if config.conversation_id.trim().is_empty() {
        return Err(ProtocolError::EmptyConversationId);
    }
    limits::check_len(
        "config.conversation_id",
        &config.conversation_id,
        MAX_ID_BYTES,
    )?;
    Ok(config.conversation_id.clone())
}

/// What one gateway message means for the call, appended to `out` in order. A message adds
/// at most `limits::MAX_KEYS_PER_MESSAGE` key events and one audio event.
pub fn inbound(
    msg: &SmartIvrRequest,
    conversation_id: &str,
    out: &mut Vec<CallerEvent>,
) -> Result<(), ProtocolError> {
    if let Some(config) = &msg.config {
        // Real gateways repeat config on every message; a different id is a broken stream.
        if !config.conversation_id.is_empty() && config.conversation_id != conversation_id {
            limits::check_len(
                "config.conversation_id",
                &config.conversation_id,
                MAX_ID_BYTES,
            )?;
            return Err(ProtocolError::ConversationChanged {
                was: conversation_id.to_owned(),
                now: config.conversation_id.clone(),
            });
        }
    }
    if !msg.key_press.is_empty() {
        limits::check_keys("key_press", &msg.key_press)?;
        let key = msg.key_press.trim();
        if key.is_empty() || !key.chars().all(is_dtmf) {
            return Err(ProtocolError::BadKey(msg.key_press.clone()));
        }
        out.extend(key.chars().map(CallerEvent::Dtmf));
    }
    if !msg.audio_content.is_empty() {
        out.push(CallerEvent::Audio(pcm::decode_s16le(&msg.audio_content)?));
    }
    Ok(())
}

fn ok_status() -> Option<Status> {
    Some(Status {
        code: STATUS_OK,
        message: String::new(),
    })
}

/// RESULT_TTS with the bot's text and its 8 kHz audio, as WAV or raw PCM.
pub fn tts(text: Option<String>, audio: &[i16], packing: TtsAudio) -> SmartIvrResponse {
    let audio_content = match packing {
        TtsAudio::Wav => wav::encode(audio, TELEPHONE_RATE, 1),
        TtsAudio::Pcm => pcm::encode_s16le(audio),
    };
    SmartIvrResponse {
        r#type: SmartIvrResponseType::ResultTts as i32,
        text_bot: text.unwrap_or_default(),
        status: ok_status(),
        audio_content,
        ..Default::default()
    }
}

/// RECOGNIZE (`partial`) or RESULT_ASR with what the caller said, in `text_asr`.
pub fn heard(text: &str, partial: bool) -> SmartIvrResponse {
    let kind = if partial {
        SmartIvrResponseType::Recognize
    } else {
        SmartIvrResponseType::ResultAsr
    };
    SmartIvrResponse {
        r#type: kind as i32,
        text_asr: text.to_owned(),
        status: ok_status(),
        ..Default::default()
    }
}

/// CALL_WAIT: the gateway plays hold music until the next response.
pub fn wait() -> SmartIvrResponse {
    SmartIvrResponse {
        r#type: SmartIvrResponseType::CallWait as i32,
        status: ok_status(),
        ..Default::default()
    }
}

/// CALL_END: the gateway hangs up; `detail` says why when it was not ordinary.
pub fn end(detail: &str) -> SmartIvrResponse {
    SmartIvrResponse {
        r#type: SmartIvrResponseType::CallEnd as i32,
        status: Some(Status {
            code: STATUS_OK,
            message: detail.to_owned(),
        }),
        ..Default::default()
    }
}

/// A response carrying `status{code: -1, message}`.
pub fn error(message: &str) -> SmartIvrResponse {
    SmartIvrResponse {
        r#type: SmartIvrResponseType::CallEnd as i32,
        status: Some(Status {
            code: STATUS_ERROR,
            message: message.to_owned(),
        }),
        ..Default::default()
    }
}

/// CALL_FORWARD with `forward_sip_json`: `forward_type` 1 with `sip_url` for SIP addresses,
/// 2 with `customer_number` for telephone numbers (and anything else that is a number).
pub fn forward(destination: &Address, display_number: &str) -> SmartIvrResponse {
    let json = if destination.kind == "sip" || destination.target.starts_with("sip:") {
        let sip_url = if destination.target.starts_with("sip:") {
            destination.target.clone()
        } else {
            format!("sip:{}", destination.target)
        };
        serde_json::json!({ "forward_type": 1, "sip_url": sip_url })
    } else {
        serde_json::json!({
            "forward_type": 2,
            "customer_number": destination.target,
            "display_number": display_number,
        })
    };
    SmartIvrResponse {
        r#type: SmartIvrResponseType::CallForward as i32,
        forward_sip_json: json.to_string(),
        status: ok_status(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::smartivr::Config;

    fn msg(config: Option<&str>, key: &str, audio: Vec<u8>) -> SmartIvrRequest {
        SmartIvrRequest {
            config: config.map(|c| Config {
                conversation_id: c.into(),
            }),
            key_press: key.into(),
            audio_content: audio,
            ..Default::default()
        }
    }

    #[test]
    fn first_message_needs_config() {
        assert_eq!(
            first_config(&msg(None, "", vec![])),
            Err(ProtocolError::NoConfig)
        );
        assert_eq!(
            first_config(&msg(Some(" "), "", vec![])),
            Err(ProtocolError::EmptyConversationId)
        );
        assert_eq!(first_config(&msg(Some("c1"), "", vec![])).unwrap(), "c1");
    }

    #[test]
    fn inbound_frames_become_events() {
        let mut out = Vec::new();
        inbound(&msg(Some("c1"), "5", vec![]), "c1", &mut out).unwrap();
        inbound(&msg(None, "", vec![1, 0, 2, 0]), "c1", &mut out).unwrap();
        assert!(matches!(out[0], CallerEvent::Dtmf('5')));
        assert!(matches!(&out[1], CallerEvent::Audio(s) if s == &vec![1, 2]));
    }

    #[test]
    fn broken_frames_are_named() {
        let mut out = Vec::new();
        assert!(matches!(
            inbound(&msg(Some("other"), "", vec![]), "c1", &mut out),
            Err(ProtocolError::ConversationChanged { .. })
        ));
        assert_eq!(
            inbound(&msg(None, "x", vec![]), "c1", &mut out),
            Err(ProtocolError::BadKey("x".into()))
        );
        assert!(matches!(
            inbound(&msg(None, "", vec![1, 2, 3]), "c1", &mut out),
            Err(ProtocolError::BadAudio(_))
        ));
    }

    #[test]
    fn oversized_fields_are_named_with_their_limit() {
        let long = "c".repeat(MAX_ID_BYTES + 1);
        let err = first_config(&msg(Some(&long), "", vec![])).unwrap_err();
        assert!(err.to_string().contains("config.conversation_id"), "{err}");
        assert!(err.to_string().contains("128"), "{err}");
        let mut out = Vec::new();
        let err = inbound(&msg(Some(&long), "", vec![]), "c1", &mut out).unwrap_err();
        assert!(matches!(err, ProtocolError::TooLarge(_)), "{err}");
        let keys = "1".repeat(1_000_000);
        let err = inbound(&msg(None, &keys, vec![]), "c1", &mut out).unwrap_err();
        assert!(err.to_string().contains("key_press"), "{err}");
        assert!(err.to_string().contains("32"), "{err}");
        assert!(out.is_empty());
        inbound(&msg(None, &"1".repeat(32), vec![]), "c1", &mut out).unwrap();
        assert_eq!(out.len(), 32);
    }

    #[test]
    fn forward_json_by_destination_type() {
        let tel = forward(&Address::tel("+84900000001"), "1900");
        let v: serde_json::Value = serde_json::from_str(&tel.forward_sip_json).unwrap();
        assert_eq!(v["forward_type"], 2);
        assert_eq!(v["customer_number"], "+84900000001");
        let sip = forward(
            &Address {
                kind: "sip".into(),
                target: "agent@pbx.example".into(),
                ..Default::default()
            },
            "",
        );
        let v: serde_json::Value = serde_json::from_str(&sip.forward_sip_json).unwrap();
        assert_eq!(v["forward_type"], 1);
        assert_eq!(v["sip_url"], "sip:agent@pbx.example");
    }

    #[test]
    fn tts_packs_wav_or_pcm() {
        let wav_resp = tts(Some("hi".into()), &[1, 2], TtsAudio::Wav);
        assert_eq!(&wav_resp.audio_content[..4], b"RIFF");
        assert_eq!(wav_resp.audio_content.len(), 48);
        let pcm_resp = tts(None, &[1, 2], TtsAudio::Pcm);
        assert_eq!(pcm_resp.audio_content, vec![1, 0, 2, 0]);
        assert_eq!(pcm_resp.status.unwrap().code, 200);
    }
}
