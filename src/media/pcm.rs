//! Signed 16-bit little-endian PCM and G.711 codecs.

use thiserror::Error;

/// Why a block of bytes is not valid s16le PCM.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PcmError {
    #[error("PCM audio has an odd number of bytes ({0}); s16le needs two bytes per sample")]
    OddLength(usize),
}

/// Decodes s16le bytes into `out` (appending). Odd-length input is refused whole.
pub fn decode_s16le_into(bytes: &[u8], out: &mut Vec<i16>) -> Result<(), PcmError> {
    if !bytes.len().is_multiple_of(2) {
        return Err(PcmError::OddLength(bytes.len()));
    }
    out.reserve(bytes.len() / 2);
    out.extend(
        bytes
            .chunks_exact(2)
            .map(|pair| i16::from_le_bytes([pair[0], pair[1]])),
    );
    Ok(())
}

/// Decodes s16le bytes into a new vector.
pub fn decode_s16le(bytes: &[u8]) -> Result<Vec<i16>, PcmError> {
    let mut out = Vec::with_capacity(bytes.len() / 2);
    decode_s16le_into(bytes, &mut out)?;
    Ok(out)
}

/// Encodes samples as s16le bytes, appending to `out`.
pub fn encode_s16le_into(samples: &[i16], out: &mut Vec<u8>) {
    out.reserve(samples.len() * 2);
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
}

/// Encodes samples as s16le bytes.
pub fn encode_s16le(samples: &[i16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(samples.len() * 2);
    encode_s16le_into(samples, &mut out);
    out
}

/// Decodes one G.711 mu-law byte.
pub fn ulaw_to_linear(byte: u8) -> i16 {
    let u = !byte;
    let sign = u & 0x80;
    let exponent = (u >> 4) & 0x07;
    let mantissa = u & 0x0f;
    let magnitude = ((((mantissa as i32) << 3) + 0x84) << exponent) - 0x84;
    if sign != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// Decodes one G.711 A-law byte.
pub fn alaw_to_linear(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let sign = a & 0x80;
    let exponent = (a >> 4) & 0x07;
    let mantissa = (a & 0x0f) as i32;
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    if sign != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

/// Root-mean-square level of a block of samples (0 for an empty block).
pub fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|&s| (s as f64) * (s as f64)).sum();
    (sum / samples.len() as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s16le_round_trip() {
        let samples = vec![0, 1, -1, i16::MAX, i16::MIN, 1234];
        assert_eq!(decode_s16le(&encode_s16le(&samples)).unwrap(), samples);
    }

    #[test]
    fn odd_length_is_refused() {
        assert_eq!(decode_s16le(&[1, 2, 3]), Err(PcmError::OddLength(3)));
    }

    #[test]
    fn g711_known_values() {
        assert_eq!(ulaw_to_linear(0xff), 0);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(alaw_to_linear(0xd5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
    }
}
