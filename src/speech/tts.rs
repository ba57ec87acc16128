//! Text to speech with the `espeak-ng` program, run as a child process, with a cache.
//!
//! Rendering never blocks an actor thread: the child runs under tokio and its output is
//! awaited. Audio is cached by (text, voice, rate), already resampled to the rate the caller's
//! side wants, so a repeated prompt costs a map lookup.

use std::collections::{HashMap, VecDeque};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use thiserror::Error;
use tokio::io::AsyncWriteExt;

use crate::config::TtsConfig;
use crate::media::{resample_all, wav};

/// Longest text rendered, in bytes: a guard against runaway prompts.
const MAX_TEXT_BYTES: usize = 4096;

/// Why speech could not be rendered.
#[derive(Debug, Error)]
pub enum TtsError {
    #[error("text to speech is unavailable: cannot run `{command}`: {source}")]
    Unavailable {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed: {detail}")]
    Failed { command: String, detail: String },
    #[error("text to speech produced unreadable audio: {0}")]
    BadAudio(#[from] wav::WavError),
    #[error("text is too long to speak ({0} bytes)")]
    TooLong(usize),
    #[error("cannot convert speech audio: {0}")]
    Resample(#[from] crate::media::resample::ResampleError),
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    text: String,
    voice: String,
    rate: u32,
}

struct Cache {
    map: HashMap<Key, Arc<[i16]>>,
    order: VecDeque<Key>,
    capacity: usize,
}

/// The text-to-speech engine shared by all calls.
pub struct Tts {
    command: String,
    cache: Mutex<Cache>,
}

pub use crate::actions::Gender;

/// The espeak-ng voice for a VoIPBIN language and gender, for example `en-us+f3`.
pub fn voice_for(language: &str, gender: Gender) -> String {
    let lang: String = language
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect::<String>()
        .to_ascii_lowercase();
    let lang = if lang.is_empty() {
        "en-us".into()
    } else {
        lang
    };
    match gender {
        Gender::Female => format!("{lang}+f3"),
        Gender::Male => format!("{lang}+m3"),
        Gender::Neutral => lang,
    }
}

impl Tts {
    pub fn new(config: &TtsConfig) -> Self {
        Tts {
            command: config.command.clone(),
            cache: Mutex::new(Cache {
                map: HashMap::new(),
                order: VecDeque::new(),
                capacity: config.cache_entries,
            }),
        }
    }

    /// Speech for `text` in `voice`, as mono samples at `rate`.
    pub async fn render(&self, text: &str, voice: &str, rate: u32) -> Result<Arc<[i16]>, TtsError> {
        if text.len() > MAX_TEXT_BYTES {
            return Err(TtsError::TooLong(text.len()));
        }
        let key = Key {
            text: text.to_owned(),
            voice: voice.to_owned(),
            rate,
        };
        if let Some(hit) = self.lock().map.get(&key) {
            return Ok(hit.clone());
        }
        let started = std::time::Instant::now();
        let wav_bytes = self.run(text, voice).await?;
        crate::telemetry::tts_rendered(started.elapsed());
        let parsed = wav::parse(&wav_bytes)?;
        let audio: Arc<[i16]> = resample_all(&parsed.samples, parsed.rate, rate)?.into();
        let mut cache = self.lock();
        if cache.capacity > 0 && !cache.map.contains_key(&key) {
            if cache.map.len() >= cache.capacity {
                if let Some(old) = cache.order.pop_front() {
                    cache.map.remove(&old);
                }
            }
            cache.order.push_back(key.clone());
            cache.map.insert(key, audio.clone());
        }
        Ok(audio)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        // A poisoned cache only means another render panicked mid-insert; the map is intact.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn run(&self, text: &str, voice: &str) -> Result<Vec<u8>, TtsError> {
        // The text goes through stdin so that no text can be taken for an option.
        let mut child = tokio::process::Command::new(&self.command)
            .args(["--stdout", "-v", voice])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| TtsError::Unavailable {
                command: self.command.clone(),
                source,
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(text.as_bytes()).await;
            let _ = stdin.write_all(b"\n").await;
        }
        let output = child
            .wait_with_output()
            .await
            .map_err(|e| TtsError::Failed {
                command: self.command.clone(),
                detail: e.to_string(),
            })?;
        if !output.status.success() || output.stdout.is_empty() {
            return Err(TtsError::Failed {
                command: self.command.clone(),
                detail: format!(
                    "{}: {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            });
        }
        Ok(output.stdout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voices_follow_language_and_gender() {
        assert_eq!(voice_for("en-US", Gender::Female), "en-us+f3");
        assert_eq!(voice_for("fr", Gender::Male), "fr+m3");
        assert_eq!(voice_for("en; rm -rf", Gender::Neutral), "enrm-rf");
    }

    #[actix::test]
    async fn missing_program_is_a_clear_error() {
        let tts = Tts::new(&TtsConfig {
            command: "/nonexistent/espeak-ng".into(),
            cache_entries: 4,
        });
        let err = tts.render("hello", "en-us", 8000).await.unwrap_err();
        assert!(err.to_string().contains("unavailable"), "{err}");
    }
}
