//! Loading audio for `play`: WAV files by path, `file://` or `http(s)://` URL.
//!
//! Remote files are streamed and dropped as soon as they pass `MAX_FILE_BYTES`. Local files
//! are read from anywhere for flows the operator configured, but for actions a webhook
//! answered only from under `[media] files_dir` (none when it is empty), after resolving
//! `..` and symbolic links.

use std::path::{Path, PathBuf};

use thiserror::Error;
use tokio::io::AsyncReadExt;

use crate::http_body::{self as body, BodyError};
use crate::media::{resample_all, wav};

/// Largest file `play` reads, in bytes (about 17 minutes of 8 kHz 16-bit audio).
pub const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;

/// Why a file could not be played.
#[derive(Debug, Error)]
pub enum SourceError {
    #[error("cannot read file: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot fetch: {0}")]
    Http(#[from] reqwest::Error),
    #[error("fetch answered HTTP {0}")]
    Status(u16),
    #[error("file is larger than the limit of {MAX_FILE_BYTES} bytes")]
    TooLarge,
    #[error("cannot fetch: {0}")]
    Body(BodyError),
    #[error("local file `{path}` refused: {why}")]
    LocalRefused { path: String, why: &'static str },
    #[error("not playable: {0}")]
    Wav(#[from] wav::WavError),
    #[error("{0}")]
    Resample(#[from] crate::media::resample::ResampleError),
}

impl From<BodyError> for SourceError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::Http(e) => SourceError::Http(e),
            other => SourceError::Body(other),
        }
    }
}

/// Which local files `play` may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalFiles {
    /// Any path: a flow from the configuration, written by the operator.
    Any,
    /// Only files under this folder; `None` refuses every local file. Used for actions a
    /// webhook answered.
    Under(Option<PathBuf>),
}

impl LocalFiles {
    /// The rule for webhook actions under `[media] files_dir` (empty refuses local files).
    pub fn under(files_dir: &str) -> Self {
        LocalFiles::Under((!files_dir.is_empty()).then(|| PathBuf::from(files_dir)))
    }
}

/// Loads `url` as mono samples at `rate`; local files only as `local` allows.
pub async fn load(
    http: &reqwest::Client,
    url: &str,
    rate: u32,
    local: &LocalFiles,
) -> Result<Vec<i16>, SourceError> {
    let bytes = if url.starts_with("http://") || url.starts_with("https://") {
        let response = http.get(url).send().await?;
        if !response.status().is_success() {
            return Err(SourceError::Status(response.status().as_u16()));
        }
        body::read_limited(response, MAX_FILE_BYTES).await?
    } else {
        let path = url.strip_prefix("file://").unwrap_or(url);
        read_local(&allowed_path(path, local).await?).await?
    };
    let audio = wav::parse(&bytes)?;
    Ok(resample_all(&audio.samples, audio.rate, rate)?)
}

/// The file `path` names, if `local` allows it.
async fn allowed_path(path: &str, local: &LocalFiles) -> Result<PathBuf, SourceError> {
    let refused = |why| SourceError::LocalRefused {
        path: path.to_owned(),
        why,
    };
    match local {
        LocalFiles::Any => Ok(PathBuf::from(path)),
        LocalFiles::Under(None) => Err(refused(
            "local files are not allowed here ([media] files_dir is not set)",
        )),
        LocalFiles::Under(Some(dir)) => {
            let dir = tokio::fs::canonicalize(dir)
                .await
                .map_err(|_| refused("[media] files_dir cannot be read"))?;
            // A relative path is taken under the folder; an absolute one must lie in it.
            let file = tokio::fs::canonicalize(dir.join(Path::new(path)))
                .await
                .map_err(|_| refused("no such file under [media] files_dir"))?;
            if file.starts_with(&dir) {
                Ok(file)
            } else {
                Err(refused("it is outside [media] files_dir"))
            }
        }
    }
}

/// Reads a local file of at most `MAX_FILE_BYTES`.
async fn read_local(path: &Path) -> Result<Vec<u8>, SourceError> {
    let file = tokio::fs::File::open(path).await?;
    if file.metadata().await?.len() > MAX_FILE_BYTES as u64 {
        return Err(SourceError::TooLarge);
    }
    // Bounded even if the file grows while it is read.
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .await?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(SourceError::TooLarge);
    }
    Ok(bytes)
}
