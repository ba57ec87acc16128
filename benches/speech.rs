//! Speech recognition through the whole switch: SmartIVR gateways speak 8 kHz espeak-ng
//! phrases in real time to a flow that listens with the embedded recogniser (pocketsphinx),
//! and the figures come from what the gateways receive.
//!
//! - Accuracy: 30 IVR phrases × 4 espeak-ng voices, exact match of RESULT_ASR's `text_asr`.
//! - Latency: from the moment the switch can know an utterance ended (the last loud 10 ms of
//!   the phrase plus `[asr] end_silence_ms` of quiet has reached it) to RESULT_ASR, with 1, 10
//!   and 50 callers speaking at once (start offsets spread over one second).
//! - CPU per recognised second: the decoder threads' CPU time (from /proc) over the seconds
//!   of speech they recognised.
//!
//! Run: `cargo bench --bench speech` (needs espeak-ng, libpocketsphinx3, pocketsphinx-en-us).

use std::time::{Duration, Instant};

use switchboard::media::{pcm, resample_all, wav};
use switchboard::pb::smartivr::smart_ivr_phonegateway_client::SmartIvrPhonegatewayClient;
use switchboard::pb::smartivr::{Config as IvrConfig, SmartIvrRequest, SmartIvrResponseType};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const PHRASES: [&str; 30] = [
    "check my balance",
    "talk to an agent",
    "pay my bill",
    "report a lost card",
    "open a new account",
    "close my account",
    "speak to a representative",
    "yes",
    "no",
    "repeat that",
    "main menu",
    "billing question",
    "technical support",
    "cancel my order",
    "track my order",
    "change my address",
    "reset my password",
    "make a payment",
    "account balance",
    "recent transactions",
    "activate my card",
    "hours of operation",
    "store locations",
    "speak to someone",
    "transfer funds",
    "order status",
    "new customer",
    "existing customer",
    "help",
    "goodbye",
];
const VOICES: [&str; 4] = ["en-us", "en-us+m3", "en-us+f2", "en"];
const RATE: u32 = 8000;
/// 20 ms of 8 kHz audio per gateway message.
const CHUNK: usize = 160;
const END_SILENCE_MS: u64 = 600;

fn speak(text: &str, voice: &str) -> Vec<i16> {
    let out = std::process::Command::new("espeak-ng")
        .args(["-v", voice, "--stdout", text])
        .output()
        .expect("espeak-ng runs");
    let audio = wav::parse(&out.stdout).expect("a WAV");
    resample_all(&audio.samples, audio.rate, RATE).expect("resampled")
}

/// The sample just after the last loud 10 ms window (the end of speech).
fn speech_end(audio: &[i16]) -> usize {
    let window = (RATE / 100) as usize;
    audio
        .chunks(window)
        .enumerate()
        .rev()
        .find(|(_, w)| pcm::rms(w) > switchboard::media::vad::SPEECH_RMS)
        .map(|(i, w)| i * window + w.len())
        .unwrap_or(audio.len())
}

struct Outcome {
    heard: String,
    /// From end of speech + end silence reaching the switch, to RESULT_ASR.
    latency: Option<Duration>,
}

/// One gateway call: 300 ms of silence, the phrase, then silence until RESULT_ASR.
async fn call(grpc: String, id: String, audio: Vec<i16>, delay: Duration) -> Outcome {
    tokio::time::sleep(delay).await;
    let mut client = SmartIvrPhonegatewayClient::connect(grpc)
        .await
        .expect("connect");
    let (tx, rx) = mpsc::channel(256);
    let config = Some(IvrConfig {
        conversation_id: id,
    });
    tx.send(SmartIvrRequest {
        config: config.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut responses = client
        .call_to_bot(ReceiverStream::new(rx))
        .await
        .expect("call accepted")
        .into_inner();
    let lead = vec![0i16; (RATE as usize) * 3 / 10];
    let end = lead.len() + speech_end(&audio);
    // The sample whose arrival lets the switch know the utterance is over.
    let known = end + (RATE as usize) * END_SILENCE_MS as usize / 1000;
    let mut stream = lead;
    stream.extend_from_slice(&audio);
    stream.resize(known + RATE as usize * 3, 0);
    let sender = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut known_at = None;
        for (i, chunk) in stream.chunks(CHUNK).enumerate() {
            tick.tick().await;
            if known_at.is_none() && (i + 1) * CHUNK > known {
                known_at = Some(Instant::now());
            }
            let msg = SmartIvrRequest {
                config: config.clone(),
                audio_content: pcm::encode_s16le(chunk),
                ..Default::default()
            };
            if tx.send(msg).await.is_err() {
                break;
            }
        }
        (known_at, tx)
    });
    let mut heard = None;
    while let Ok(Ok(Some(r))) =
        tokio::time::timeout(Duration::from_secs(30), responses.message()).await
    {
        if r.r#type == SmartIvrResponseType::ResultAsr as i32 {
            heard = Some((r.text_asr, Instant::now()));
            break;
        }
    }
    let (known_at, _tx) = sender.await.unwrap();
    match heard {
        Some((text, at)) => Outcome {
            heard: text,
            latency: known_at.map(|k| at.saturating_duration_since(k)),
        },
        None => Outcome {
            heard: String::new(),
            latency: None,
        },
    }
}

/// CPU seconds (user + system) of this process's threads named `asr-*`.
fn decoder_cpu() -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    let mut total = 0.0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("asr-") {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let after = stat.rsplit(')').next().unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        // Fields 14 and 15 (utime, stime) are at 11 and 12 after the name.
        let ut: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        let st: f64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        total += (ut + st) / tick;
    }
    total
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() {
    let dir = std::env::temp_dir().join(format!("switchboard-bench-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let phrases = PHRASES
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let config = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[grpc]\nlisten = \"127.0.0.1:0\"\n\
         [server]\nmax_calls = 1000\n\
         [store]\nurl = \"sqlite://{db}\"\ninstance_file = \"{inst}\"\n\
         [asr]\nend_silence_ms = {END_SILENCE_MS}\n\
         [bots.listen]\nkind = \"flow\"\nactions = [\n  {{ type = \"answer\" }},\n  \
         {{ type = \"speech_receive\", duration = 30000, phrases = [{phrases}] }},\n  {{ type = \"hangup\" }},\n]\n\
         [[routes]]\nbot = \"listen\"\n",
        db = dir.join("b.db").display(),
        inst = dir.join("instance").display(),
    );
    let config = switchboard::config::Config::from_toml(&config).expect("config");
    let decoders = config.asr.decoder_count();
    let app = switchboard::app::spawn(config).expect("switch starts");
    let grpc = format!("http://{}", app.grpc_addr);

    println!("speech bench: {decoders} decoders, {RATE} Hz callers, end of speech after {END_SILENCE_MS} ms of quiet");
    let mut audio = Vec::new();
    for voice in VOICES {
        for phrase in PHRASES {
            audio.push((voice, phrase, speak(phrase, voice)));
        }
    }

    // Accuracy: every phrase in every voice, ten calls at a time.
    let cpu0 = decoder_cpu();
    let started = Instant::now();
    let mut exact = 0;
    let mut misses = Vec::new();
    let mut seconds = 0.0;
    for batch in audio.chunks(10) {
        let mut calls = Vec::new();
        for (i, (voice, phrase, samples)) in batch.iter().enumerate() {
            seconds += samples.len() as f64 / RATE as f64;
            let id = format!("acc-{voice}-{phrase}");
            calls.push((
                *voice,
                *phrase,
                tokio::spawn(call(
                    grpc.clone(),
                    id,
                    samples.clone(),
                    Duration::from_millis(i as u64 * 37),
                )),
            ));
        }
        for (voice, phrase, handle) in calls {
            let outcome = handle.await.unwrap();
            if outcome.heard == phrase {
                exact += 1;
            } else {
                misses.push(format!("{voice}: {phrase:?} -> {:?}", outcome.heard));
            }
        }
    }
    let cpu = decoder_cpu() - cpu0;
    println!(
        "accuracy: {exact}/{} exact ({:.1} %), {:.0} s of speech in {:.0} s; decoder CPU {:.3} s per recognised second",
        audio.len(),
        100.0 * exact as f64 / audio.len() as f64,
        seconds,
        started.elapsed().as_secs_f64(),
        cpu / seconds
    );
    for m in &misses {
        println!("  miss {m}");
    }

    // Latency with callers speaking at once.
    println!("| callers speaking at once | recognised | end of speech → RESULT_ASR p50 | p95 | max | decoder CPU per recognised s |");
    println!("|---|---|---|---|---|---|");
    for n in [1usize, 10, 50] {
        let cpu0 = decoder_cpu();
        let mut calls = Vec::new();
        let mut seconds = 0.0;
        for i in 0..n {
            let (_, _, samples) = &audio[(i * 7) % audio.len()];
            seconds += samples.len() as f64 / RATE as f64;
            let offset = Duration::from_millis(((i * 389) % 1000) as u64);
            calls.push(tokio::spawn(call(
                grpc.clone(),
                format!("lat-{n}-{i}"),
                samples.clone(),
                offset,
            )));
        }
        let mut latencies = Vec::new();
        let mut recognised = 0;
        for (i, handle) in calls.into_iter().enumerate() {
            let outcome = handle.await.unwrap();
            let (_, phrase, _) = &audio[(i * 7) % audio.len()];
            if outcome.heard == *phrase {
                recognised += 1;
            }
            if let Some(l) = outcome.latency {
                latencies.push(l);
            }
        }
        latencies.sort();
        let cpu = decoder_cpu() - cpu0;
        println!(
            "| {n} | {recognised}/{n} | {:.0} ms | {:.0} ms | {:.0} ms | {:.3} s |",
            percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
            percentile(&latencies, 0.95).as_secs_f64() * 1000.0,
            latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
            cpu / seconds
        );
    }
    drop(app);
    let _ = std::fs::remove_dir_all(&dir);
}
