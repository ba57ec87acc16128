//! Audio helpers: tones, WAV samples, and telling tones apart by frequency.

/// A sine tone as s16 samples.
pub fn tone(freq: f64, rate: u32, ms: u32, amplitude: f64) -> Vec<i16> {
    let n = (rate as u64 * ms as u64 / 1000) as usize;
    (0..n)
        .map(|i| {
            (amplitude * (2.0 * std::f64::consts::PI * freq * i as f64 / rate as f64).sin()) as i16
        })
        .collect()
}

/// 20 ms of a 440 Hz tone at 8 kHz and `amplitude`, as s16le bytes.
pub fn tone_frame(rate: u32, amplitude: f64, frame_index: usize) -> Vec<u8> {
    let n = (rate / 50) as usize;
    let samples: Vec<i16> = (0..n)
        .map(|i| {
            let t = (frame_index * n + i) as f64 / rate as f64;
            (amplitude * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
        })
        .collect();
    switchboard::media::pcm::encode_s16le(&samples)
}

/// The interleaved samples of a 16-bit WAV file and its (rate, channels).
pub fn wav_samples(bytes: &[u8]) -> (u32, u16, Vec<i16>) {
    assert_eq!(&bytes[..4], b"RIFF", "a WAV file");
    let channels = u16::from_le_bytes([bytes[22], bytes[23]]);
    let rate = u32::from_le_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]);
    let samples = bytes[44..]
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    (rate, channels, samples)
}

/// A sine tone at 8 kHz.
pub fn tone_8k(hz: f64, ms: usize, amplitude: f64) -> Vec<i16> {
    (0..ms * 8)
        .map(|i| (amplitude * (2.0 * std::f64::consts::PI * hz * i as f64 / 8000.0).sin()) as i16)
        .collect()
}

/// The power of `freq` in `samples` (Goertzel), normalised by the block's length, so tones
/// can be told apart by frequency rather than loudness.
pub fn tone_power(samples: &[i16], rate: u32, freq: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let w = 2.0 * std::f64::consts::PI * freq / rate as f64;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = x as f64 + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    power / (samples.len() as f64 * samples.len() as f64)
}

/// Whether `freq` stands out in `samples`: at least ten times the power of each of `others`
/// and loud enough to be a tone, not noise.
pub fn has_tone(samples: &[i16], rate: u32, freq: f64, others: &[f64]) -> bool {
    let p = tone_power(samples, rate, freq);
    p > 1.0e5
        && others
            .iter()
            .all(|&o| p > 10.0 * tone_power(samples, rate, o))
}

/// `text` spoken by espeak-ng in `voice`, at `rate`: speech made at test time, never checked
/// in. Fails with the package name when espeak-ng is missing.
pub fn speak(text: &str, voice: &str, rate: u32) -> Vec<i16> {
    let out = std::process::Command::new("espeak-ng")
        .args(["-v", voice, "--stdout", text])
        .output()
        .expect("espeak-ng runs (Debian package espeak-ng; tools/test installs it)");
    assert!(out.status.success(), "espeak-ng failed");
    let audio = switchboard::media::wav::parse(&out.stdout).expect("espeak-ng writes a WAV");
    switchboard::media::resample_all(&audio.samples, audio.rate, rate).expect("resampled")
}
