//! Hold music: a configured WAV file, or a built-in gentle tone when none is configured.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use thiserror::Error;

use super::{resample_all, samples_for_ms, wav};

/// The built-in tone's pitch.
const TONE_HZ: f64 = 440.0;
/// The built-in tone's level: quiet, about −24 dBFS.
const TONE_AMPLITUDE: f64 = 2000.0;
/// The built-in pattern: this much tone…
const TONE_ON_MS: u32 = 400;
/// …then this much silence, repeated.
const TONE_PERIOD_MS: u32 = 3000;

/// Hold music could not be loaded.
#[derive(Debug, Error)]
pub enum HoldError {
    #[error("cannot read hold music {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("hold music {path}: {source}")]
    Wav { path: String, source: wav::WavError },
    #[error("hold music {path}: {source}")]
    Resample {
        path: String,
        source: super::resample::ResampleError,
    },
}

/// One period of the built-in hold tone at `rate`.
pub fn builtin_tone(rate: u32) -> Vec<i16> {
    let on = samples_for_ms(rate, TONE_ON_MS);
    let period = samples_for_ms(rate, TONE_PERIOD_MS);
    (0..period)
        .map(|i| {
            if i >= on {
                return 0;
            }
            let t = i as f64 / rate as f64;
            // A short fade in and out avoids clicks.
            let edge = (i.min(on - i) as f64 / (rate as f64 / 100.0)).min(1.0);
            (TONE_AMPLITUDE * edge * (2.0 * std::f64::consts::PI * TONE_HZ * t).sin()) as i16
        })
        .collect()
}

/// Hold music at `rate`: the WAV at `path`, or the built-in tone when `path` is empty.
pub fn load(path: &str, rate: u32) -> Result<Vec<i16>, HoldError> {
    if path.is_empty() {
        return Ok(builtin_tone(rate));
    }
    let bytes = std::fs::read(path).map_err(|source| HoldError::Read {
        path: path.to_owned(),
        source,
    })?;
    let audio = wav::parse(&bytes).map_err(|source| HoldError::Wav {
        path: path.to_owned(),
        source,
    })?;
    resample_all(&audio.samples, audio.rate, rate).map_err(|source| HoldError::Resample {
        path: path.to_owned(),
        source,
    })
}

/// Loaded hold music by file and rate.
type Cache = Mutex<HashMap<(String, u32), Arc<[i16]>>>;

/// Hold music loaded once per file and rate, shared by every call.
static CACHE: OnceLock<Cache> = OnceLock::new();

/// Like `load`, but each file is read once per rate and shared.
pub fn cached(path: &str, rate: u32) -> Result<Arc<[i16]>, HoldError> {
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let key = (path.to_owned(), rate);
    if let Some(audio) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return Ok(audio);
    }
    let audio: Arc<[i16]> = load(path, rate)?.into();
    if let Ok(mut c) = cache.lock() {
        c.insert(key, audio.clone());
    }
    Ok(audio)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_tone_is_audible_then_silent() {
        let t = builtin_tone(8000);
        assert_eq!(t.len(), 24000);
        assert!(crate::media::pcm::rms(&t[..3200]) > 500.0);
        assert!(t[3200..].iter().all(|&s| s == 0));
    }

    #[test]
    fn missing_file_is_named() {
        let err = load("/nonexistent/hold.wav", 8000).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/hold.wav"));
    }
}
