//! Loading audio for `play`: WAV files by path, `file://` or `http(s)://` URL.

use thiserror::Error;

use crate::media::{resample_all, wav};

/// Largest file `play` fetches, in bytes (about 10 minutes of 8 kHz 16-bit audio).
const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum SourceError {
    #[error("cannot read file: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot fetch: {0}")]
    Http(#[from] reqwest::Error),
    #[error("fetch answered HTTP {0}")]
    Status(u16),
    #[error("file is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge,
    #[error("not playable: {0}")]
    Wav(#[from] wav::WavError),
    #[error("{0}")]
    Resample(#[from] crate::media::resample::ResampleError),
}

/// Loads `url` as mono samples at `rate`.
pub async fn load(http: &reqwest::Client, url: &str, rate: u32) -> Result<Vec<i16>, SourceError> {
    let bytes = if url.starts_with("http://") || url.starts_with("https://") {
        let response = http.get(url).send().await?;
        if !response.status().is_success() {
            return Err(SourceError::Status(response.status().as_u16()));
        }
        let body = response.bytes().await?;
        body.to_vec()
    } else {
        let path = url.strip_prefix("file://").unwrap_or(url);
        tokio::fs::read(path).await?
    };
    if bytes.len() > MAX_FILE_BYTES {
        return Err(SourceError::TooLarge);
    }
    let audio = wav::parse(&bytes)?;
    Ok(resample_all(&audio.samples, audio.rate, rate)?)
}
