//! Speech recognition behind one small interface (`Engine`), with two engines:
//!
//! - `sphinx`: Debian's pocketsphinx, loaded at run time, on a bounded pool of decoder
//!   threads. Offline; it recognises grammars and phrase lists well and free dictation poorly
//!   (its open language model is shown in README "Speech recognition").
//! - `http`: an OpenAI-compatible `/v1/audio/transcriptions` endpoint (whisper.cpp's server,
//!   faster-whisper servers, hosted APIs): free dictation.
//!
//! Callers cut utterances with `endpoint::Endpointer` and hand each one whole to
//! `Asr::recognize`, which never runs on the caller's thread: the decoder pool runs on its own
//! threads, the HTTP engine on the runtime. Partial hypotheses, where the engine has them,
//! arrive on an optional channel before the final text.

pub mod endpoint;
mod http;
mod sphinx;

use std::sync::Arc;
use std::time::Instant;

use futures_util::future::BoxFuture;
use thiserror::Error;

use crate::config::{AsrConfig, AsrEngineKind};

/// The Debian packages the embedded engine needs.
pub const SPHINX_PACKAGES: &str = "libpocketsphinx3 pocketsphinx-en-us";

/// What the recogniser may hear.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Grammar {
    /// Exactly one of these phrases.
    Phrases(Vec<String>),
    /// A JSGF grammar, as text.
    Jsgf(String),
    /// Anything (dictation): the engine's open vocabulary.
    Dictation,
}

impl Grammar {
    /// The JSGF text of a phrase list or grammar; `None` for dictation.
    pub fn to_jsgf(&self) -> Option<String> {
        match self {
            Grammar::Phrases(phrases) => {
                let alternatives: Vec<String> = phrases
                    .iter()
                    .map(|p| normalise(p))
                    .filter(|p| !p.is_empty())
                    .collect();
                Some(format!(
                    "#JSGF V1.0;\ngrammar phrases;\npublic <phrase> = {};\n",
                    alternatives.join(" | ")
                ))
            }
            Grammar::Jsgf(text) => Some(text.clone()),
            Grammar::Dictation => None,
        }
    }

    /// The phrase of a list that `text` says, for engines that hear anything: the one phrase
    /// equal to the text, or the one phrase contained in it. Otherwise `text` as heard.
    pub fn closest(&self, text: &str) -> String {
        let heard = normalise(text);
        let Grammar::Phrases(phrases) = self else {
            return text.trim().to_owned();
        };
        let normalised: Vec<String> = phrases.iter().map(|p| normalise(p)).collect();
        if let Some(i) = normalised.iter().position(|p| *p == heard) {
            return phrases[i].clone();
        }
        let padded = format!(" {heard} ");
        let mut inside = normalised
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.is_empty() && padded.contains(&format!(" {p} ")));
        match (inside.next(), inside.next()) {
            (Some((i, _)), None) => phrases[i].clone(),
            _ => heard,
        }
    }
}

impl From<&crate::actions::SpeechOptions> for Grammar {
    /// The grammar a speech action listens with: its JSGF text, its phrases, or (neither)
    /// dictation.
    fn from(options: &crate::actions::SpeechOptions) -> Grammar {
        match &options.grammar {
            Some(text) => Grammar::Jsgf(text.clone()),
            None if options.phrases.is_empty() => Grammar::Dictation,
            None => Grammar::Phrases(options.phrases.clone()),
        }
    }
}

/// Lower case words of letters, digits and apostrophes, single spaces: how phrases are
/// compared and put in grammars.
pub fn normalise(text: &str) -> String {
    text.to_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// What was heard.
#[derive(Debug, Clone, PartialEq)]
pub struct Recognition {
    /// The text; empty when nothing in the grammar matched.
    pub text: String,
    /// 0..=1 where the engine gives one.
    pub confidence: Option<f32>,
}

/// Why an utterance could not be recognised.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum AsrError {
    #[error("speech recognition is off (`[asr] engine = \"off\"`)")]
    Off,
    #[error("speech recognition is unavailable: {0}")]
    Unavailable(String),
    #[error("speech recognition is busy: {0} utterances are waiting")]
    Busy(usize),
    #[error("speech recognition timed out after {0} ms")]
    Timeout(u64),
    #[error("the grammar is not usable: {0}")]
    BadGrammar(String),
    #[error("speech recognition failed: {0}")]
    Failed(String),
}

/// One utterance to recognise.
pub struct Request {
    /// Mono s16 audio at `rate`.
    pub audio: Vec<i16>,
    pub rate: u32,
    pub grammar: Arc<Grammar>,
    /// `en-US` style; engines that take a language use it.
    pub language: String,
}

/// A recogniser.
pub trait Engine: Send + Sync {
    /// Loads what the engine needs, if it can (this may block for a moment); why not.
    fn ready(&self) -> Result<(), AsrError> {
        Ok(())
    }

    /// Recognises one whole utterance.
    fn recognize(&self, request: Request) -> BoxFuture<'static, Result<Recognition, AsrError>>;
}

/// The recogniser every call shares.
#[derive(Clone)]
pub struct Asr {
    engine: Option<Arc<dyn Engine>>,
    config: Arc<AsrConfig>,
}

impl Asr {
    /// The engine `config` names. Nothing is loaded yet: pocketsphinx loads on first use,
    /// so a switch without it starts, and says what is missing when speech is first needed.
    pub fn new(config: &AsrConfig, http: reqwest::Client) -> Asr {
        let engine: Option<Arc<dyn Engine>> = match config.engine {
            AsrEngineKind::Pocketsphinx => Some(Arc::new(sphinx::SphinxPool::new(config))),
            AsrEngineKind::Http => Some(Arc::new(http::HttpEngine::new(config, http))),
            AsrEngineKind::Off => None,
        };
        Asr {
            engine,
            config: Arc::new(config.clone()),
        }
    }

    /// The `[asr]` settings.
    pub fn config(&self) -> &AsrConfig {
        &self.config
    }

    /// An end-of-speech detector with the configured timings, for audio at `rate`.
    pub fn endpointer(&self, rate: u32) -> endpoint::Endpointer {
        endpoint::Endpointer::new(
            rate,
            self.config.end_silence_ms,
            self.config.max_utterance_ms,
        )
    }

    /// Whether recognition can run: loads the embedded engine if it is not yet (on the
    /// blocking pool), and says why not.
    pub async fn ready(&self) -> Result<(), AsrError> {
        let Some(engine) = self.engine.clone() else {
            return Err(AsrError::Off);
        };
        tokio::task::spawn_blocking(move || engine.ready())
            .await
            .unwrap_or_else(|e| Err(AsrError::Failed(e.to_string())))
    }

    /// Loads the engine now, on a thread of its own, so the first caller does not wait for
    /// it (pocketsphinx: the library and a decoder, about half a second). A failure is
    /// logged here and reported again to whatever needs speech.
    pub fn warm_up(&self) {
        let Some(engine) = self.engine.clone() else {
            return;
        };
        let spawned = std::thread::Builder::new()
            .name("asr-warm-up".into())
            .spawn(move || {
                if let Err(e) = engine.ready() {
                    tracing::warn!(error = %e, "speech recognition is not available");
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start loading speech recognition");
        }
    }

    /// Recognises one utterance, and records how long it took.
    pub async fn recognize(&self, request: Request) -> Result<Recognition, AsrError> {
        let Some(engine) = self.engine.clone() else {
            return Err(AsrError::Off);
        };
        let seconds = request.audio.len() as f64 / request.rate.max(1) as f64;
        let started = Instant::now();
        let result = engine.recognize(request).await;
        crate::telemetry::asr_done(seconds, started.elapsed(), result.is_ok());
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phrases_become_a_jsgf_alternation_of_normalised_words() {
        let g = Grammar::Phrases(vec!["Check my balance!".into(), "talk to an agent".into()]);
        let jsgf = g.to_jsgf().unwrap();
        assert!(jsgf.contains("public <phrase> = check my balance | talk to an agent;"));
        assert_eq!(Grammar::Dictation.to_jsgf(), None);
    }

    #[test]
    fn free_text_maps_to_the_one_phrase_it_says() {
        let g = Grammar::Phrases(vec!["check my balance".into(), "talk to an agent".into()]);
        assert_eq!(g.closest("Check my balance."), "check my balance");
        assert_eq!(
            g.closest("I want to talk to an agent please"),
            "talk to an agent"
        );
        assert_eq!(g.closest("something else"), "something else");
        assert_eq!(Grammar::Dictation.closest(" Hello. "), "Hello.");
    }
}
