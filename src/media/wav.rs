//! Reading and writing RIFF/WAVE files of PCM audio.
//!
//! The reader is lenient in the ways real producers need: `espeak-ng --stdout` writes a
//! placeholder data length, so a data chunk whose length runs past the end is read to the end.
//! It is strict where a header could make the switch do unbounded work: the sample rate must
//! be one the switch converts (`MIN_RATE..=MAX_RATE`), channels 1 to `MAX_CHANNELS`, and
//! samples 8 or 16 bits; what it decodes is never more samples than the bytes it was given.

use thiserror::Error;

use super::pcm::{alaw_to_linear, ulaw_to_linear};
use super::{MAX_RATE, MIN_RATE};

/// The most interleaved channels a file may declare (7.1 surround); they are mixed to mono.
pub const MAX_CHANNELS: u16 = 8;

/// Mono 16-bit audio read from a WAV file.
#[derive(Debug, Clone, PartialEq)]
pub struct WavAudio {
    pub rate: u32,
    pub samples: Vec<i16>,
}

/// Why bytes are not a WAV file this switch can play.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WavError {
    #[error("not a RIFF/WAVE file")]
    NotWav,
    #[error("WAV file has no fmt chunk before its data")]
    NoFormat,
    #[error("WAV file has no data chunk")]
    NoData,
    #[error("unsupported WAV encoding: format {format}, {bits} bits")]
    Unsupported { format: u16, bits: u16 },
    #[error("WAV file declares {0} channels; 1 to {MAX_CHANNELS} are accepted")]
    BadChannels(u16),
    #[error("WAV sample rate {0} Hz is outside {MIN_RATE}..={MAX_RATE} Hz")]
    BadRate(u32),
}

/// Parses a WAV file (PCM 8/16-bit, G.711 mu-law or A-law; any channel count, mixed to mono).
pub fn parse(bytes: &[u8]) -> Result<WavAudio, WavError> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(WavError::NotWav);
    }
    let mut pos = 12;
    let mut format: Option<(u16, u16, u32, u16)> = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let declared = u32::from_le_bytes([
            bytes[pos + 4],
            bytes[pos + 5],
            bytes[pos + 6],
            bytes[pos + 7],
        ]) as usize;
        let body_start = pos + 8;
        let body_end = body_start.saturating_add(declared).min(bytes.len());
        let body = &bytes[body_start..body_end];
        match id {
            b"fmt " => {
                if body.len() < 16 {
                    return Err(WavError::NoFormat);
                }
                let tag = u16::from_le_bytes([body[0], body[1]]);
                let channels = u16::from_le_bytes([body[2], body[3]]);
                let rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
                let bits = u16::from_le_bytes([body[14], body[15]]);
                // WAVE_FORMAT_EXTENSIBLE carries the real tag in its sub-format GUID.
                let tag = if tag == 0xfffe && body.len() >= 26 {
                    u16::from_le_bytes([body[24], body[25]])
                } else {
                    tag
                };
                format = Some((tag, channels, rate, bits));
            }
            b"data" => {
                let (tag, channels, rate, bits) = format.ok_or(WavError::NoFormat)?;
                if channels == 0 || channels > MAX_CHANNELS {
                    return Err(WavError::BadChannels(channels));
                }
                if !(MIN_RATE..=MAX_RATE).contains(&rate) {
                    return Err(WavError::BadRate(rate));
                }
                let samples = decode(tag, bits, channels, body)?;
                return Ok(WavAudio { rate, samples });
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        pos = body_start
            .saturating_add(declared)
            .saturating_add(declared & 1);
    }
    Err(WavError::NoData)
}

fn decode(tag: u16, bits: u16, channels: u16, body: &[u8]) -> Result<Vec<i16>, WavError> {
    let interleaved: Vec<i16> = match (tag, bits) {
        (1, 16) => body
            .chunks_exact(2)
            .map(|p| i16::from_le_bytes([p[0], p[1]]))
            .collect(),
        (1, 8) => body.iter().map(|&b| ((b as i16) - 128) << 8).collect(),
        (7, 8) => body.iter().map(|&b| ulaw_to_linear(b)).collect(),
        (6, 8) => body.iter().map(|&b| alaw_to_linear(b)).collect(),
        (format, bits) => return Err(WavError::Unsupported { format, bits }),
    };
    if channels == 1 {
        return Ok(interleaved);
    }
    let n = channels as usize;
    Ok(interleaved
        .chunks_exact(n)
        .map(|frame| (frame.iter().map(|&s| s as i32).sum::<i32>() / n as i32) as i16)
        .collect())
}

/// Writes a canonical 44-byte-header WAV file of 16-bit PCM with `channels` interleaved channels.
pub fn encode(samples: &[i16], rate: u32, channels: u16) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVE");
    out.extend_from_slice(b"fmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2 * channels as u32).to_le_bytes());
    out.extend_from_slice(&(2 * channels).to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    super::pcm::encode_s16le_into(samples, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_mono() {
        let samples: Vec<i16> = (0..100).map(|i| i * 100).collect();
        let parsed = parse(&encode(&samples, 8000, 1)).unwrap();
        assert_eq!(parsed.rate, 8000);
        assert_eq!(parsed.samples, samples);
    }

    #[test]
    fn stereo_is_mixed_to_mono() {
        let parsed = parse(&encode(&[100, 300, -100, -300], 16000, 2)).unwrap();
        assert_eq!(parsed.samples, vec![200, -200]);
    }

    #[test]
    fn placeholder_length_reads_to_end() {
        let mut bytes = encode(&[1, 2, 3], 22050, 1);
        bytes[40..44].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        assert_eq!(parse(&bytes).unwrap().samples, vec![1, 2, 3]);
    }

    #[test]
    fn rates_outside_the_switch_range_are_refused() {
        assert_eq!(parse(&encode(&[1, 2], 1, 1)), Err(WavError::BadRate(1)));
        assert_eq!(
            parse(&encode(&[1, 2], 1_000_000_000, 1)),
            Err(WavError::BadRate(1_000_000_000))
        );
        assert_eq!(parse(&encode(&[1], 0, 1)), Err(WavError::BadRate(0)));
        assert!(parse(&encode(&[1], MIN_RATE, 1)).is_ok());
        assert!(parse(&encode(&[1], MAX_RATE, 1)).is_ok());
    }

    #[test]
    fn odd_headers_are_refused() {
        let mut bytes = encode(&[1, 2], 8000, 1);
        // 9 channels.
        bytes[22..24].copy_from_slice(&9u16.to_le_bytes());
        assert_eq!(parse(&bytes), Err(WavError::BadChannels(9)));
        let mut bytes = encode(&[1, 2], 8000, 1);
        // 24 bits per sample.
        bytes[34..36].copy_from_slice(&24u16.to_le_bytes());
        assert_eq!(
            parse(&bytes),
            Err(WavError::Unsupported {
                format: 1,
                bits: 24
            })
        );
        // A data chunk that claims far more than the file holds reads what is there.
        let mut bytes = encode(&[1, 2, 3], 8000, 1);
        bytes[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse(&bytes).unwrap().samples, vec![1, 2, 3]);
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(parse(b"hello world, not a wav"), Err(WavError::NotWav));
        assert_eq!(parse(b""), Err(WavError::NotWav));
    }
}
