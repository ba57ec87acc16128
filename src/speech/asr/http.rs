//! The network recogniser: each utterance is posted as a WAV file to an OpenAI-compatible
//! `/v1/audio/transcriptions` endpoint (multipart form: `file`, `model`, `language`,
//! `response_format=json`, and the phrases as `prompt` when there are any), and the JSON
//! answer's `text` is what was heard. A phrase list is matched against that text afterwards
//! (`Grammar::closest`), so `branch` sees the phrase as written.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Deserialize;
use tokio::sync::Semaphore;

use super::{AsrError, Engine, Grammar, Recognition, Request};
use crate::config::AsrConfig;
use crate::http_body::{self, BodyError};
use crate::media::wav;

/// The longest answer read from the endpoint.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

#[derive(Deserialize)]
struct Answer {
    text: String,
}

pub struct HttpEngine {
    client: reqwest::Client,
    url: String,
    api_key: String,
    model: String,
    timeout: Duration,
    /// Requests in flight at once.
    slots: Arc<Semaphore>,
    /// Requests waiting for a slot, at most `queue`.
    queue: usize,
    waiting: Arc<AtomicUsize>,
}

impl HttpEngine {
    pub fn new(config: &AsrConfig, client: reqwest::Client) -> HttpEngine {
        HttpEngine {
            client,
            url: config.url.clone(),
            api_key: config.api_key.clone(),
            model: config.http_model.clone(),
            timeout: Duration::from_millis(config.timeout_ms),
            slots: Arc::new(Semaphore::new(config.concurrency)),
            queue: config.queue,
            waiting: Arc::new(AtomicUsize::new(0)),
        }
    }
}

/// The answer's body, refused once it passes `MAX_ANSWER_BYTES` (before reading it at all
/// when its length says so).
async fn read_capped(response: reqwest::Response) -> Result<Vec<u8>, String> {
    http_body::read_limited(response, MAX_ANSWER_BYTES)
        .await
        .map_err(|e| match e {
            BodyError::Http(e) => e.to_string(),
            BodyError::DeclaredTooLarge { .. } | BodyError::TooLarge { .. } => {
                format!("the answer is over {MAX_ANSWER_BYTES} bytes")
            }
        })
}

/// `en-US` → `en`: the endpoints take ISO-639-1.
fn iso_639_1(language: &str) -> String {
    language
        .split(['-', '_'])
        .next()
        .unwrap_or(language)
        .to_ascii_lowercase()
}

impl Engine for HttpEngine {
    fn recognize(&self, request: Request) -> BoxFuture<'static, Result<Recognition, AsrError>> {
        let client = self.client.clone();
        let url = self.url.clone();
        let api_key = self.api_key.clone();
        let model = self.model.clone();
        let timeout = self.timeout;
        let slots = self.slots.clone();
        let queue = self.queue;
        let waiting = self.waiting.clone();
        Box::pin(async move {
            let _slot = match slots.clone().try_acquire_owned() {
                Ok(slot) => slot,
                Err(_) => {
                    if waiting.fetch_add(1, Ordering::AcqRel) >= queue {
                        waiting.fetch_sub(1, Ordering::AcqRel);
                        return Err(AsrError::Busy(queue));
                    }
                    let slot = tokio::time::timeout(timeout, slots.acquire_owned()).await;
                    waiting.fetch_sub(1, Ordering::AcqRel);
                    slot.map_err(|_| AsrError::Timeout(timeout.as_millis() as u64))?
                        .map_err(|_| AsrError::Unavailable("closed".into()))?
                }
            };
            let body = wav::encode(&request.audio, request.rate, 1);
            let file = reqwest::multipart::Part::bytes(body)
                .file_name("utterance.wav")
                .mime_str("audio/wav")
                .map_err(|e| AsrError::Failed(e.to_string()))?;
            let mut form = reqwest::multipart::Form::new()
                .part("file", file)
                .text("model", model)
                .text("response_format", "json")
                .text("language", iso_639_1(&request.language));
            if let Grammar::Phrases(phrases) = request.grammar.as_ref() {
                form = form.text("prompt", phrases.join(", "));
            }
            let mut post = client.post(&url).multipart(form).timeout(timeout);
            if !api_key.is_empty() {
                post = post.bearer_auth(&api_key);
            }
            let response = post.send().await.map_err(|e| {
                if e.is_timeout() {
                    AsrError::Timeout(timeout.as_millis() as u64)
                } else {
                    AsrError::Unavailable(format!("{url}: {e}"))
                }
            })?;
            let status = response.status();
            let bytes = tokio::time::timeout(timeout, read_capped(response))
                .await
                .map_err(|_| AsrError::Timeout(timeout.as_millis() as u64))?
                .map_err(|e| AsrError::Failed(format!("{url}: {e}")))?;
            if !status.is_success() {
                let detail = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
                return Err(AsrError::Failed(format!(
                    "{url} answered {status}: {detail}"
                )));
            }
            let answer: Answer = serde_json::from_slice(&bytes).map_err(|e| {
                AsrError::Failed(format!("{url} answered JSON without a `text`: {e}"))
            })?;
            Ok(Recognition {
                text: request.grammar.closest(&answer.text),
                confidence: None,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn languages_go_out_as_two_letters() {
        assert_eq!(super::iso_639_1("en-US"), "en");
        assert_eq!(super::iso_639_1("fr"), "fr");
    }
}
