//! G.711 companding: μ-law (PCMU) and A-law (PCMA), one byte per 8 kHz sample, both ways.
//!
//! Decoding uses tables built once; encoding follows the segment search of the standard (the
//! sign, a 3-bit segment and a 4-bit step, inverted as G.711 sends them).

use std::sync::OnceLock;

/// The μ-law bias added before the segment search.
const ULAW_BIAS: i32 = 0x84;
/// The largest magnitude μ-law encodes (larger ones are clipped).
const ULAW_CLIP: i32 = 32635;

/// One G.711 law.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    /// μ-law, RTP payload type 0.
    Ulaw,
    /// A-law, RTP payload type 8.
    Alaw,
}

impl Law {
    /// The silent byte of this law.
    pub fn silence(self) -> u8 {
        match self {
            Law::Ulaw => 0xFF,
            Law::Alaw => 0xD5,
        }
    }

    /// Encodes `samples`, appending one byte each to `out`.
    pub fn encode(self, samples: &[i16], out: &mut Vec<u8>) {
        out.reserve(samples.len());
        match self {
            Law::Ulaw => out.extend(samples.iter().map(|&s| ulaw_encode(s))),
            Law::Alaw => out.extend(samples.iter().map(|&s| alaw_encode(s))),
        }
    }

    /// Decodes `bytes`, appending one sample each to `out`.
    pub fn decode(self, bytes: &[u8], out: &mut Vec<i16>) {
        let table = match self {
            Law::Ulaw => ulaw_table(),
            Law::Alaw => alaw_table(),
        };
        out.reserve(bytes.len());
        out.extend(bytes.iter().map(|&b| table[b as usize]));
    }
}

/// Encodes one sample to μ-law.
pub fn ulaw_encode(sample: i16) -> u8 {
    let mut s = sample as i32;
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(ULAW_CLIP) + ULAW_BIAS;
    // The segment is the position of the highest set bit above bit 7.
    let mut segment = 7;
    let mut mask = 0x4000;
    while segment > 0 && s & mask == 0 {
        segment -= 1;
        mask >>= 1;
    }
    let step = (s >> (segment + 3)) & 0x0F;
    !(sign | (segment << 4) as u8 | step as u8)
}

/// Decodes one μ-law byte.
pub fn ulaw_decode(byte: u8) -> i16 {
    let b = !byte;
    let sign = b & 0x80;
    let segment = ((b >> 4) & 0x07) as i32;
    let step = (b & 0x0F) as i32;
    let magnitude = (((step << 3) + ULAW_BIAS) << segment) - ULAW_BIAS;
    if sign != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// Encodes one sample to A-law.
pub fn alaw_encode(sample: i16) -> u8 {
    // A-law works on 13-bit magnitudes.
    let s = (sample as i32) >> 3;
    let (sign, magnitude) = if s >= 0 { (0x80, s) } else { (0x00, -s - 1) };
    let magnitude = magnitude.min(0x0FFF);
    let byte = if magnitude < 32 {
        (magnitude >> 1) as u8
    } else {
        let mut segment = 1;
        while segment < 7 && magnitude >= (32 << segment) {
            segment += 1;
        }
        ((segment << 4) as u8) | ((magnitude >> segment) & 0x0F) as u8
    };
    (byte | sign) ^ 0x55
}

/// Decodes one A-law byte.
pub fn alaw_decode(byte: u8) -> i16 {
    let b = byte ^ 0x55;
    let segment = ((b >> 4) & 0x07) as i32;
    let step = (b & 0x0F) as i32;
    let magnitude = if segment == 0 {
        (step << 4) + 8
    } else {
        ((step << 4) + 0x108) << (segment - 1)
    };
    if b & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

fn ulaw_table() -> &'static [i16; 256] {
    static TABLE: OnceLock<[i16; 256]> = OnceLock::new();
    TABLE.get_or_init(|| std::array::from_fn(|b| ulaw_decode(b as u8)))
}

fn alaw_table() -> &'static [i16; 256] {
    static TABLE: OnceLock<[i16; 256]> = OnceLock::new();
    TABLE.get_or_init(|| std::array::from_fn(|b| alaw_decode(b as u8)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x7F), 0);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
    }

    #[test]
    fn every_byte_survives_decode_then_encode() {
        for b in 0..=255u8 {
            let u = ulaw_decode(b);
            // 0x7F is μ-law's negative zero: it encodes back as positive zero.
            if b != 0x7F {
                assert_eq!(ulaw_encode(u), b, "ulaw {b:#x} -> {u}");
            }
            assert_eq!(alaw_encode(alaw_decode(b)), b, "alaw {b:#x}");
        }
    }

    #[test]
    fn round_trips_stay_close() {
        for s in (i16::MIN..=i16::MAX).step_by(97) {
            for law in [Law::Ulaw, Law::Alaw] {
                let mut bytes = Vec::new();
                law.encode(&[s], &mut bytes);
                let mut back = Vec::new();
                law.decode(&bytes, &mut back);
                let err = (back[0] as i32 - s as i32).abs();
                // The step grows with the magnitude: within 1/16 of it, plus the small steps.
                assert!(
                    err <= (s as i32).abs() / 16 + 40,
                    "{law:?} {s} -> {}",
                    back[0]
                );
            }
        }
    }

    #[test]
    fn silence_bytes_decode_near_zero() {
        let mut out = Vec::new();
        Law::Ulaw.decode(&[Law::Ulaw.silence()], &mut out);
        Law::Alaw.decode(&[Law::Alaw.silence()], &mut out);
        assert!(out.iter().all(|s| s.abs() <= 8));
    }
}
