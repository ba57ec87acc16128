//! live_call protobuf messages to call messages and back. Shared by the gRPC server (the
//! switch as an AI service) and the network bot (the switch as a gateway).

use thiserror::Error;

use crate::limits::LimitError;
use crate::media::pcm;
use crate::pb::live_call::{
    client_request, server_response, signal_message, ClientAudioChunk, ClientRequest,
    EndCallSignal, ErrorMessage, InitialInfo, KillAudio, ServerAudioChunk, ServerResponse,
    SignalMessage, StaffInfo, TransferCallSignal,
};
use crate::protocols::live_call_ws::convert::{check_initial_info, ACCEPTED_RATES};

/// Bytes per sample in the audio the switch sends.
pub const SAMPLE_WIDTH_BYTES: i32 = 2;

/// Why an audio chunk was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ChunkError {
    #[error("audio sample_rate {0} is not one of 8000, 16000, 24000, 48000")]
    BadRate(i32),
    #[error("audio sample_width {0} is not 16 bits (or 2 bytes)")]
    BadWidth(i32),
    #[error("audio num_channels {0} is not 1; only mono audio is accepted")]
    BadChannels(i32),
    #[error("audio_content: {0}")]
    BadAudio(#[from] pcm::PcmError),
}

/// Why a stream's first message cannot start a call (answered with INVALID_ARGUMENT).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum InfoError {
    #[error("the first message must carry initial_info")]
    Missing,
    #[error("{0}")]
    TooLarge(#[from] LimitError),
}

/// The `initial_info` of a stream's first message, its fields within their limits.
pub fn first_info(first: ClientRequest) -> Result<InitialInfo, InfoError> {
    let Some(client_request::Data::InitialInfo(info)) = first.data else {
        return Err(InfoError::Missing);
    };
    check_initial_info(
        &info.workspace_id,
        &info.call_id,
        &info.customer_phone_number,
        &info.type_call,
        &info.hotline,
        &info.url_audio_file,
    )?;
    Ok(info)
}

/// The samples and rate of an audio chunk; an unset rate means `default_rate`.
pub fn decode_chunk(
    rate: i32,
    width: i32,
    channels: i32,
    content: &[u8],
    default_rate: u32,
) -> Result<(u32, Vec<i16>), ChunkError> {
    let rate = if rate == 0 { default_rate as i32 } else { rate };
    if rate < 0 || !ACCEPTED_RATES.contains(&(rate as u32)) {
        return Err(ChunkError::BadRate(rate));
    }
    if !matches!(width, 0 | 2 | 16) {
        return Err(ChunkError::BadWidth(width));
    }
    if !matches!(channels, 0 | 1) {
        return Err(ChunkError::BadChannels(channels));
    }
    Ok((rate as u32, pcm::decode_s16le(content)?))
}

/// Decodes a client's `play_audio`.
pub fn client_chunk(
    chunk: &ClientAudioChunk,
    default_rate: u32,
) -> Result<(u32, Vec<i16>), ChunkError> {
    decode_chunk(
        chunk.sample_rate,
        chunk.sample_width,
        chunk.num_channels,
        &chunk.audio_content,
        default_rate,
    )
}

/// Decodes a server's `audio_output`.
pub fn server_chunk(
    chunk: &ServerAudioChunk,
    default_rate: u32,
) -> Result<(u32, Vec<i16>), ChunkError> {
    decode_chunk(
        chunk.sample_rate,
        chunk.sample_width,
        chunk.num_channels,
        &chunk.audio_content,
        default_rate,
    )
}

/// An audio chunk with truthful rate, width, channels and duration.
pub fn audio_fields(samples: &[i16], rate: u32) -> (i32, i32, i32, f32, Vec<u8>) {
    (
        rate as i32,
        SAMPLE_WIDTH_BYTES,
        1,
        samples.len() as f32 / rate as f32,
        pcm::encode_s16le(samples),
    )
}

/// `audio_output` for the gateway.
pub fn audio_output(samples: &[i16], rate: u32) -> ServerResponse {
    let (sample_rate, sample_width, num_channels, duration, audio_content) =
        audio_fields(samples, rate);
    ServerResponse {
        status: true,
        data: Some(server_response::Data::AudioOutput(ServerAudioChunk {
            sample_rate,
            sample_width,
            num_channels,
            duration,
            audio_content,
        })),
    }
}

/// `play_audio` for an AI service.
pub fn play_audio(samples: &[i16], rate: u32) -> ClientAudioChunk {
    let (sample_rate, sample_width, num_channels, duration, audio_content) =
        audio_fields(samples, rate);
    ClientAudioChunk {
        sample_rate,
        sample_width,
        num_channels,
        duration,
        audio_content,
    }
}

fn signal(s: signal_message::SignalType) -> ServerResponse {
    ServerResponse {
        status: true,
        data: Some(server_response::Data::Signal(SignalMessage {
            signal_type: Some(s),
        })),
    }
}

/// `signal.end_call`.
pub fn end_call(call_id: &str) -> ServerResponse {
    signal(signal_message::SignalType::EndCall(EndCallSignal {
        call_id: call_id.to_owned(),
    }))
}

/// `signal.kill_audio`.
pub fn kill_audio(call_id: &str) -> ServerResponse {
    signal(signal_message::SignalType::KillAudio(KillAudio {
        call_id: call_id.to_owned(),
    }))
}

/// `signal.transfer_call` to one target.
pub fn transfer_call(
    call_id: &str,
    customer: &str,
    name: &str,
    phone_number: &str,
) -> ServerResponse {
    signal(signal_message::SignalType::TransferCall(
        TransferCallSignal {
            call_id: call_id.to_owned(),
            customer_phone_number: customer.to_owned(),
            target_staff: vec![StaffInfo {
                name: name.to_owned(),
                phone_number: phone_number.to_owned(),
            }],
        },
    ))
}

/// An `error` response (`status = false`).
pub fn error(code: i32, message: &str) -> ServerResponse {
    ServerResponse {
        status: false,
        data: Some(server_response::Data::Error(ErrorMessage {
            error_code: code,
            internal_error_code: 0,
            message: message.to_owned(),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_output_fields_are_truthful() {
        let r = audio_output(&[0; 480], 24000);
        let Some(server_response::Data::AudioOutput(a)) = r.data else {
            panic!()
        };
        assert_eq!(
            (a.sample_rate, a.sample_width, a.num_channels),
            (24000, 2, 1)
        );
        assert!((a.duration - 0.02).abs() < 1e-6);
        assert_eq!(a.audio_content.len(), 960);
    }

    #[test]
    fn first_info_is_required_and_bounded() {
        let request = |info: Option<InitialInfo>| ClientRequest {
            status: true,
            data: info.map(client_request::Data::InitialInfo),
        };
        assert_eq!(first_info(request(None)), Err(InfoError::Missing));
        let info = InitialInfo {
            call_id: "c1".into(),
            ..Default::default()
        };
        assert_eq!(first_info(request(Some(info.clone()))), Ok(info));
        let long = InitialInfo {
            workspace_id: "w".repeat(1000),
            ..Default::default()
        };
        let err = first_info(request(Some(long))).unwrap_err();
        assert!(
            err.to_string().contains("initial_info.workspace_id"),
            "{err}"
        );
        assert!(err.to_string().contains("128"), "{err}");
    }

    #[test]
    fn chunks_are_checked() {
        assert_eq!(
            decode_chunk(0, 0, 0, &[1, 0], 16000).unwrap(),
            (16000, vec![1])
        );
        assert_eq!(
            decode_chunk(11025, 16, 1, &[], 16000),
            Err(ChunkError::BadRate(11025))
        );
        assert_eq!(
            decode_chunk(8000, 8, 1, &[], 16000),
            Err(ChunkError::BadWidth(8))
        );
        assert_eq!(
            decode_chunk(8000, 2, 2, &[], 16000),
            Err(ChunkError::BadChannels(2))
        );
        assert!(matches!(
            decode_chunk(8000, 2, 1, &[1], 16000),
            Err(ChunkError::BadAudio(_))
        ));
    }
}
