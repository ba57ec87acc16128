//! The ringback tone a caller hears while the switch sets up a call for it (the North American
//! ring: 440 Hz and 480 Hz together, 2 s on, 4 s off).

use super::samples_for_ms;

/// The two pitches sounded together.
const RING_HZ: [f64; 2] = [440.0, 480.0];
/// Each pitch's level: together about −16 dBFS, the usual loudness of a ring.
const RING_AMPLITUDE: f64 = 2600.0;
/// This much ringing…
const RING_ON_MS: u32 = 2000;
/// …in every period this long (the rest is silence).
const RING_PERIOD_MS: u32 = 6000;

/// One period of ringback at `rate`: 2 s of tone then 4 s of silence, to be repeated.
pub fn period(rate: u32) -> Vec<i16> {
    let on = samples_for_ms(rate, RING_ON_MS);
    let period = samples_for_ms(rate, RING_PERIOD_MS);
    let fade = (rate as f64 / 100.0).max(1.0);
    (0..period)
        .map(|i| {
            if i >= on {
                return 0;
            }
            let t = i as f64 / rate as f64;
            // A 10 ms fade in and out avoids clicks.
            let edge = (i.min(on - i) as f64 / fade).min(1.0);
            let v: f64 = RING_HZ
                .iter()
                .map(|f| (2.0 * std::f64::consts::PI * f * t).sin())
                .sum();
            (RING_AMPLITUDE * edge * v) as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_seconds_of_ring_then_four_of_silence() {
        let p = period(8000);
        assert_eq!(p.len(), 48000);
        assert!(p[..16000].iter().any(|s| s.unsigned_abs() > 4000));
        assert!(p[16000..].iter().all(|s| *s == 0));
    }
}
