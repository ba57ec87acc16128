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
    // Sized first, then filled pair by pair: the loop has no capacity checks and compiles to
    // vector moves (a plain copy on little-endian machines).
    let start = out.len();
    out.resize(start + bytes.len() / 2, 0);
    for (dst, pair) in out[start..].iter_mut().zip(bytes.chunks_exact(2)) {
        *dst = i16::from_le_bytes([pair[0], pair[1]]);
    }
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
    // Sized first, then filled: see `decode_s16le_into`.
    let start = out.len();
    out.resize(start + samples.len() * 2, 0);
    for (dst, s) in out[start..].chunks_exact_mut(2).zip(samples) {
        dst.copy_from_slice(&s.to_le_bytes());
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

/// Encodes one sample as a G.711 mu-law byte (the standard segment search, with the 0x84
/// bias and clipping at 32635).
pub fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = sample as i32;
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    let s = s.min(CLIP) + BIAS;
    // The segment is the position of the highest set bit above bit 7.
    let exponent = (31 - (s as u32).leading_zeros()).saturating_sub(7).min(7) as i32;
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !((sign | (exponent << 4) | mantissa) as u8)
}

/// Decodes mu-law bytes into `out` (appending).
pub fn decode_ulaw_into(bytes: &[u8], out: &mut Vec<i16>) {
    out.extend(bytes.iter().map(|&b| ulaw_to_linear(b)));
}

/// Encodes samples as mu-law bytes, appending to `out`.
pub fn encode_ulaw_into(samples: &[i16], out: &mut Vec<u8>) {
    out.extend(samples.iter().map(|&s| linear_to_ulaw(s)));
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
    fn s16le_appends_little_endian() {
        let mut bytes = vec![9];
        encode_s16le_into(&[0x1234, -2], &mut bytes);
        assert_eq!(bytes, [9, 0x34, 0x12, 0xfe, 0xff]);
        let mut samples = vec![7];
        decode_s16le_into(&bytes[1..], &mut samples).unwrap();
        assert_eq!(samples, [7, 0x1234, -2]);
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
        assert_eq!(linear_to_ulaw(0), 0xff);
        assert_eq!(linear_to_ulaw(32124), 0x80);
        assert_eq!(linear_to_ulaw(-32124), 0x00);
    }

    #[test]
    fn ulaw_round_trip_is_close() {
        for s in (-32000..32000).step_by(97) {
            let back = ulaw_to_linear(linear_to_ulaw(s as i16)) as i32;
            // mu-law keeps about 3% of the magnitude, and at least the smallest step.
            assert!((back - s).abs() <= (s.abs() / 16).max(8), "{s} -> {back}");
        }
        for byte in 0..=255u8 {
            // 0x7f and 0xff both mean zero.
            if byte != 0x7f {
                assert_eq!(linear_to_ulaw(ulaw_to_linear(byte)), byte, "{byte:#x}");
            }
        }
    }
}
