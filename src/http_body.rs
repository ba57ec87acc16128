//! Reading a remote answer's body with a size limit, without holding more than the limit.
//!
//! A declared `Content-Length` over the limit is refused before any of the body is read; a
//! body without one (or that lies) is read chunk by chunk and dropped as soon as it passes
//! the limit.

use thiserror::Error;

/// Why a body was not read.
#[derive(Debug, Error)]
pub enum BodyError {
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("body is larger than the limit of {limit} bytes (Content-Length {declared})")]
    DeclaredTooLarge { declared: u64, limit: usize },
    #[error("body passed the limit of {limit} bytes; reading stopped")]
    TooLarge { limit: usize },
}

/// Reads `response`'s body, refusing one of more than `limit` bytes.
pub async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    let declared = response.content_length();
    if let Some(declared) = declared {
        if declared > limit as u64 {
            return Err(BodyError::DeclaredTooLarge { declared, limit });
        }
    }
    // `declared` is at most `limit` here, so this never reserves more than the limit.
    let mut body = Vec::with_capacity(declared.map_or(0, |d| d as usize));
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
