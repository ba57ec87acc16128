//! Audio handling: PCM conversion, WAV files, and rate conversion behind one small interface.
//!
//! Inside the switch, audio is mono signed 16-bit samples at an explicit rate. Wire encodings
//! (WAV headers, base64, RTP) end in the protocol modules; rates are converted here.

pub mod g711;
pub mod hold;
pub mod pcm;
pub mod resample;
pub mod ringback;
pub mod vad;
pub mod wav;

pub use resample::{resample_all, Engine, RateAdapter, RateConverter, StreamResampler};

/// Samples per second in the telephone band, the rate phone gateways use.
pub const TELEPHONE_RATE: u32 = 8000;

/// The lowest audio rate the switch accepts from configuration.
pub const MIN_RATE: u32 = 8000;
/// The highest audio rate the switch accepts from configuration.
pub const MAX_RATE: u32 = 48000;

/// The rates a peer may declare for its audio where its protocol lets it choose (live_call).
pub const STANDARD_RATES: [u32; 4] = [8000, 16000, 24000, 48000];

/// The length of one real-time media frame, in milliseconds.
pub const FRAME_MS: u32 = 20;

/// Whether `c` is a DTMF key.
pub fn is_dtmf(c: char) -> bool {
    matches!(c, '0'..='9' | '*' | '#' | 'A'..='D')
}

/// How many samples a span of `ms` milliseconds holds at `rate`.
pub fn samples_for_ms(rate: u32, ms: u32) -> usize {
    (rate as u64 * ms as u64 / 1000) as usize
}

/// How long `samples` samples last at `rate`, in milliseconds (rounded up).
pub fn duration_ms(samples: usize, rate: u32) -> u64 {
    if rate == 0 {
        return 0;
    }
    (samples as u64 * 1000).div_ceil(rate as u64)
}
