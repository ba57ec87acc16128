//! `switchboard dial`: places one test call as a SmartIVR phone gateway would, and prints what
//! comes back. It streams a WAV file (or silence) in 100 ms frames at real time, repeats
//! `config` on every message as real gateways do, and presses one of the given keys after each
//! prompt has had time to play.

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::media::{resample_all, samples_for_ms, wav, TELEPHONE_RATE};
use crate::pb::smartivr::smart_ivr_phonegateway_client::SmartIvrPhonegatewayClient;
use crate::pb::smartivr::{Config, SmartIvrRequest, SmartIvrResponseType};

/// Milliseconds of audio per message, as real gateways send.
const FRAME_MS: u32 = 100;

/// What to dial.
#[derive(Debug, Clone)]
pub struct DialOptions {
    /// The switch's gRPC address, for example `http://127.0.0.1:50051`.
    pub grpc: String,
    pub conversation_id: String,
    /// Caller audio to stream (any rate, mixed to mono); silence when absent.
    pub wav: Option<PathBuf>,
    /// Keys to press, one after each prompt.
    pub keys: String,
    /// Hang up after this many seconds if the switch has not ended the call.
    pub max_seconds: u64,
    /// Save each prompt's audio as a WAV file here.
    pub save_dir: Option<PathBuf>,
    /// Sent as `authorization: Bearer TOKEN` metadata, for a switch with `[grpc] tokens`.
    pub token: Option<String>,
}

#[derive(Debug, Error)]
pub enum DialError {
    #[error("cannot connect to {0}: {1}")]
    Connect(String, String),
    #[error("cannot read {0}: {1}")]
    Wav(String, String),
    #[error("the switch refused the call: {0}")]
    Refused(tonic::Status),
    #[error("cannot create --save-dir {0}: {1}")]
    SaveDir(String, String),
}

/// A connect error with its causes ("transport error" alone says nothing).
fn connect_error(e: &tonic::transport::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Places the call; returns when it ends. Prints one line per response.
pub async fn dial(opts: DialOptions) -> Result<(), DialError> {
    let caller_audio = match &opts.wav {
        Some(path) => {
            let bytes = std::fs::read(path)
                .map_err(|e| DialError::Wav(path.display().to_string(), e.to_string()))?;
            let parsed = wav::parse(&bytes)
                .map_err(|e| DialError::Wav(path.display().to_string(), e.to_string()))?;
            resample_all(&parsed.samples, parsed.rate, TELEPHONE_RATE)
                .map_err(|e| DialError::Wav(path.display().to_string(), e.to_string()))?
        }
        None => Vec::new(),
    };
    if let Some(dir) = &opts.save_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| DialError::SaveDir(dir.display().to_string(), e.to_string()))?;
    }
    // `127.0.0.1:50051` means the plain-text gRPC listener there.
    let url = if opts.grpc.contains("://") {
        opts.grpc.clone()
    } else {
        format!("http://{}", opts.grpc)
    };
    let mut client = SmartIvrPhonegatewayClient::connect(url.clone())
        .await
        .map_err(|e| DialError::Connect(url.clone(), connect_error(&e)))?;
    let (tx, rx) = mpsc::channel::<SmartIvrRequest>(64);
    let config = Some(Config {
        conversation_id: opts.conversation_id.clone(),
    });
    let _ = tx
        .send(SmartIvrRequest {
            config: config.clone(),
            ..Default::default()
        })
        .await;
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(token) = &opts.token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| DialError::Connect(opts.grpc.clone(), "the token is not ASCII".into()))?;
        request.metadata_mut().insert("authorization", value);
    }
    let mut responses = client
        .call_to_bot(request)
        .await
        .map_err(DialError::Refused)?
        .into_inner();

    // Caller audio at real time, then silence.
    let audio_tx = tx.clone();
    let audio_config = config.clone();
    let pump = tokio::spawn(async move {
        let frame = samples_for_ms(TELEPHONE_RATE, FRAME_MS);
        let mut ticker = tokio::time::interval(Duration::from_millis(FRAME_MS as u64));
        let mut pos = 0;
        loop {
            ticker.tick().await;
            let mut samples = vec![0i16; frame];
            if pos < caller_audio.len() {
                let n = frame.min(caller_audio.len() - pos);
                samples[..n].copy_from_slice(&caller_audio[pos..pos + n]);
                pos += n;
            }
            let msg = SmartIvrRequest {
                config: audio_config.clone(),
                audio_content: crate::media::pcm::encode_s16le(&samples),
                ..Default::default()
            };
            if audio_tx.send(msg).await.is_err() {
                break;
            }
        }
    });

    let mut keys = opts.keys.chars();
    let mut prompts = 0;
    let deadline = tokio::time::sleep(Duration::from_secs(opts.max_seconds));
    tokio::pin!(deadline);
    loop {
        let next = tokio::select! {
            _ = &mut deadline => { println!("hanging up after {} s", opts.max_seconds); break; }
            next = responses.message() => next,
        };
        let response = match next {
            Ok(Some(r)) => r,
            Ok(None) => {
                println!("stream ended");
                break;
            }
            Err(status) => {
                println!(
                    "stream ended with {:?}: {}",
                    status.code(),
                    status.message()
                );
                break;
            }
        };
        let kind = SmartIvrResponseType::try_from(response.r#type)
            .map(|t| t.as_str_name())
            .unwrap_or("UNKNOWN");
        let status = response.status.clone().unwrap_or_default();
        match SmartIvrResponseType::try_from(response.r#type) {
            Ok(SmartIvrResponseType::ResultTts) => {
                let (ms, samples) = match wav::parse(&response.audio_content) {
                    Ok(a) => (
                        crate::media::duration_ms(a.samples.len(), a.rate),
                        a.samples,
                    ),
                    Err(_) => {
                        let s = crate::media::pcm::decode_s16le(&response.audio_content)
                            .unwrap_or_default();
                        (crate::media::duration_ms(s.len(), TELEPHONE_RATE), s)
                    }
                };
                prompts += 1;
                println!(
                    "{kind} status={} text={:?} audio={} ms",
                    status.code, response.text_bot, ms
                );
                if let Some(dir) = &opts.save_dir {
                    let path = dir.join(format!("prompt-{prompts}.wav"));
                    std::fs::write(&path, wav::encode(&samples, TELEPHONE_RATE, 1)).map_err(
                        |e| DialError::SaveDir(path.display().to_string(), e.to_string()),
                    )?;
                }
                if let Some(key) = keys.next() {
                    let key_tx = tx.clone();
                    let key_config = config.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        println!("pressing {key}");
                        let _ = key_tx
                            .send(SmartIvrRequest {
                                config: key_config,
                                key_press: key.to_string(),
                                ..Default::default()
                            })
                            .await;
                    });
                }
            }
            Ok(SmartIvrResponseType::CallForward) => {
                // A gateway hands the call over and leaves the stream.
                println!(
                    "{kind} status={} forward_sip_json={}",
                    status.code, response.forward_sip_json
                );
                println!("transferred; hanging up");
                break;
            }
            _ => println!("{kind} status={} message={:?}", status.code, status.message),
        }
    }
    pump.abort();
    Ok(())
}
