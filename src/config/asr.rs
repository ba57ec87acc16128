//! `[asr]`: speech recognition.

use std::path::PathBuf;

use serde::Deserialize;

/// Which recogniser hears callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AsrEngineKind {
    /// Debian's pocketsphinx, loaded at run time, offline: grammars and phrase lists.
    Pocketsphinx,
    /// An OpenAI-compatible `/v1/audio/transcriptions` endpoint: free dictation.
    Http,
    /// No recognition: speech actions fail with a clear error.
    Off,
}

/// Speech recognition.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AsrConfig {
    pub engine: AsrEngineKind,
    /// pocketsphinx: the acoustic model directory, the pronouncing dictionary and the
    /// language model used for dictation (`transcribe`). Debian's `pocketsphinx-en-us` paths
    /// by default.
    pub model: PathBuf,
    pub dictionary: PathBuf,
    pub language_model: PathBuf,
    /// pocketsphinx: decoders kept loaded (each about 35 MB), each on its own thread; 0 means
    /// one per core.
    pub decoders: usize,
    /// Utterances waiting for a decoder (or an HTTP slot); past it a recognition fails with
    /// "busy" at once.
    pub queue: usize,
    /// Quiet after speech that ends an utterance.
    pub end_silence_ms: u32,
    /// The longest utterance; longer speech is cut and recognised in pieces.
    pub max_utterance_ms: u32,
    /// http: the endpoint (`http://host:port/v1/audio/transcriptions`).
    pub url: String,
    /// http: sent as `Authorization: Bearer …` when set.
    pub api_key: String,
    /// http: the `model` form field.
    pub http_model: String,
    /// The language when an action names none (`en-US`; the HTTP engine sends `en`).
    pub language: String,
    /// http: the longest a request may take.
    pub timeout_ms: u64,
    /// http: requests in flight at once.
    pub concurrency: usize,
}

impl Default for AsrConfig {
    fn default() -> Self {
        let model = PathBuf::from("/usr/share/pocketsphinx/model/en-us");
        AsrConfig {
            engine: AsrEngineKind::Pocketsphinx,
            dictionary: model.join("cmudict-en-us.dict"),
            language_model: model.join("en-us.lm.bin"),
            model: model.join("en-us"),
            decoders: 0,
            queue: 256,
            end_silence_ms: 600,
            max_utterance_ms: 15_000,
            url: String::new(),
            api_key: String::new(),
            http_model: "whisper-1".into(),
            language: "en-US".into(),
            timeout_ms: 10_000,
            concurrency: 8,
        }
    }
}

impl AsrConfig {
    /// Checks values that would make recognition misbehave.
    pub fn validate(&self) -> Result<(), String> {
        if self.engine == AsrEngineKind::Http && !crate::actions::is_http_url(&self.url) {
            return Err(format!(
                "asr.url `{}` must be an http(s) URL when asr.engine = \"http\"",
                self.url
            ));
        }
        if self.queue == 0 {
            return Err("asr.queue must be at least 1".into());
        }
        if self.concurrency == 0 {
            return Err("asr.concurrency must be at least 1".into());
        }
        if !(100..=5000).contains(&self.end_silence_ms) {
            return Err(format!(
                "asr.end_silence_ms {} is outside 100..=5000",
                self.end_silence_ms
            ));
        }
        if !(1000..=60_000).contains(&self.max_utterance_ms) {
            return Err(format!(
                "asr.max_utterance_ms {} is outside 1000..=60000",
                self.max_utterance_ms
            ));
        }
        if self.timeout_ms == 0 {
            return Err("asr.timeout_ms must be at least 1".into());
        }
        Ok(())
    }

    /// Decoders to keep: `decoders`, or one per core.
    pub fn decoder_count(&self) -> usize {
        if self.decoders > 0 {
            return self.decoders;
        }
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    }
}
