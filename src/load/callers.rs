//! The simulated callers of each protocol and the three run modes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tokio_tungstenite::tungstenite::Message;
use tonic::transport::{Channel, Endpoint};

use super::stats::Counters;
use super::{micros_since, proc_stats, LoadError, LoadOptions, Protocol, Report};
use crate::media::{pcm, samples_for_ms, wav};
use crate::pb::smartivr::smart_ivr_phonegateway_client::SmartIvrPhonegatewayClient;
use crate::pb::smartivr::{Config, SmartIvrRequest, SmartIvrResponseType};

/// One burst of tone is sent this often; its echo gives one round-trip figure.
pub(super) const BURST_EVERY_MS: u64 = 1000;
/// Received audio louder than this (RMS) is the echo of a burst.
pub(super) const BURST_RMS: f64 = 1000.0;
/// Calls sharing one HTTP/2 connection, as gateways multiplex calls.
const CALLS_PER_CHANNEL: usize = 100;
/// How long hang-up may take before the run stops waiting.
const HANGUP_GRACE: Duration = Duration::from_secs(30);

pub(super) fn tone(rate: u32, ms: u32) -> Vec<i16> {
    (0..samples_for_ms(rate, ms))
        .map(|i| {
            (12000.0 * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / rate as f64).sin()) as i16
        })
        .collect()
}

/// Pre-built live-call frames, encoded once for every caller.
struct WsFrames {
    silence: String,
    burst: String,
}

impl WsFrames {
    fn new() -> Self {
        let frame = |samples: &[i16]| {
            serde_json::json!({ "play_audio": {
                "sample_rate": 16000, "sample_width": 16, "num_channels": 1, "duration": 0.02,
                "audio_content": base64::engine::general_purpose::STANDARD.encode(pcm::encode_s16le(samples)),
            } })
            .to_string()
        };
        WsFrames {
            silence: frame(&vec![0; samples_for_ms(16000, 20)]),
            burst: frame(&tone(16000, 20)),
        }
    }
}

/// The RMS of the audio in an `audio_output` frame, without a full JSON parse.
fn ws_frame_rms(text: &str) -> Option<f64> {
    let key = "\"audio_content\":\"";
    let start = text.find(key)? + key.len();
    let end = start + text[start..].find('"')?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&text[start..end])
        .ok()?;
    Some(pcm::rms(&pcm::decode_s16le(&bytes).ok()?))
}

pub(super) struct CallCtx {
    pub opts: LoadOptions,
    pub counters: Arc<Counters>,
    pub stop: Arc<AtomicBool>,
    pub epoch: Instant,
}

async fn ws_caller(i: usize, ctx: Arc<CallCtx>, frames: Arc<WsFrames>) {
    let c = &ctx.counters;
    let url = format!(
        "ws://{}/live-call/websocket/load-{i}/+1555{i:07}?token={}",
        ctx.opts.http, ctx.opts.token
    );
    let ws = match tokio_tungstenite::connect_async_with_config(url, None, true).await {
        Ok((ws, _)) => ws,
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status().as_u16() == 503 => {
            return Counters::add(&c.refused, 1)
        }
        Err(_) => return Counters::add(&c.failed, 1),
    };
    let (mut sink, mut stream) = ws.split();
    let hotline = match ctx.opts.room_size {
        0 => "load".to_owned(),
        size => format!("room-{}", i / size),
    };
    let info = serde_json::json!({ "initial_info": {
        "workspace_id": "load", "call_id": format!("load-{i}"), "customer_phone_number": format!("+1555{i:07}"),
        "type_call": "inbound", "hotline": hotline } });
    if sink.send(Message::Text(info.to_string())).await.is_err() {
        return Counters::add(&c.failed, 1);
    }
    Counters::add(&c.admitted, 1);
    let pending = Arc::new(AtomicU64::new(0));
    let reader_pending = pending.clone();
    let reader_ctx = ctx.clone();
    let reader = tokio::spawn(async move {
        let c = &reader_ctx.counters;
        while let Some(Ok(msg)) = stream.next().await {
            let Message::Text(text) = msg else { continue };
            if text.starts_with("{\"audio_output\"") {
                Counters::add(&c.frames_received, 1);
                let sent = reader_pending.load(Ordering::Relaxed);
                if sent != 0 && ws_frame_rms(&text).is_some_and(|r| r > BURST_RMS) {
                    reader_pending.store(0, Ordering::Relaxed);
                    let now = micros_since(reader_ctx.epoch);
                    c.latency(Duration::from_micros(now.saturating_sub(sent)));
                }
            } else if !text.contains("kill_audio") {
                // The call's end (or an error); `kill_audio` only stops what plays.
                break;
            }
        }
    });
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    let burst_every = BURST_EVERY_MS / 20;
    let mut k: u64 = 0;
    while !ctx.stop.load(Ordering::Relaxed) {
        ticker.tick().await;
        let text = if k.is_multiple_of(burst_every) {
            if pending.swap(micros_since(ctx.epoch), Ordering::Relaxed) != 0 {
                Counters::add(&c.bursts_lost, 1);
            }
            frames.burst.clone()
        } else {
            frames.silence.clone()
        };
        if sink.send(Message::Text(text)).await.is_err() {
            Counters::add(&c.failed, 1);
            break;
        }
        Counters::add(&c.frames_sent, 1);
        k += 1;
    }
    let _ = sink.send(Message::Text("{\"disconnect\":{}}".into())).await;
    let _ = sink.close().await;
    let _ = tokio::time::timeout(HANGUP_GRACE, reader).await;
}

/// A Ringover media server's stream: metadata, then 20 ms binary L16 frames at 8 kHz with a
/// 200 ms tone each second; the echo comes back as one `streamAudio` utterance.
async fn ringover_caller(i: usize, ctx: Arc<CallCtx>, silence: Arc<Vec<u8>>, burst: Arc<Vec<u8>>) {
    let c = &ctx.counters;
    let url = format!("ws://{}/ringover/stream", ctx.opts.http);
    let ws = match tokio_tungstenite::connect_async_with_config(url, None, true).await {
        Ok((ws, _)) => ws,
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status().as_u16() == 503 => {
            return Counters::add(&c.refused, 1)
        }
        Err(_) => return Counters::add(&c.failed, 1),
    };
    let (mut sink, mut stream) = ws.split();
    let metadata = serde_json::json!({ "call_id": format!("load-{i}"), "from": format!("+1555{i:07}"), "to": "+15550000" });
    if sink
        .send(Message::Text(metadata.to_string()))
        .await
        .is_err()
    {
        return Counters::add(&c.failed, 1);
    }
    Counters::add(&c.admitted, 1);
    let pending = Arc::new(AtomicU64::new(0));
    let reader_pending = pending.clone();
    let reader_ctx = ctx.clone();
    let reader = tokio::spawn(async move {
        let c = &reader_ctx.counters;
        while let Some(Ok(msg)) = stream.next().await {
            match msg {
                Message::Text(text) if text.contains("\"streamAudio\"") => {
                    Counters::add(&c.frames_received, 1);
                    let sent = reader_pending.swap(0, Ordering::Relaxed);
                    if sent != 0 {
                        let now = micros_since(reader_ctx.epoch);
                        c.latency(Duration::from_micros(now.saturating_sub(sent)));
                    }
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    });
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    let burst_every = BURST_EVERY_MS / 20;
    let mut k: u64 = 0;
    while !ctx.stop.load(Ordering::Relaxed) {
        ticker.tick().await;
        // Ten frames (200 ms) of tone each second: one utterance to echo.
        let phase = k % burst_every;
        if phase == 0 && pending.swap(micros_since(ctx.epoch), Ordering::Relaxed) != 0 {
            Counters::add(&c.bursts_lost, 1);
        }
        let frame = if phase < 10 { &burst } else { &silence };
        if sink
            .send(Message::Binary(frame.as_ref().clone()))
            .await
            .is_err()
        {
            Counters::add(&c.failed, 1);
            break;
        }
        Counters::add(&c.frames_sent, 1);
        k += 1;
    }
    let _ = sink.close().await;
    let _ = tokio::time::timeout(HANGUP_GRACE, reader).await;
}

/// Pre-built Twilio `media` messages of 20 ms, encoded once for every caller.
struct TwilioFrames {
    silence: String,
    burst: String,
}

impl TwilioFrames {
    fn new() -> Self {
        let frame = |samples: &[i16]| {
            let mut ulaw = Vec::with_capacity(samples.len());
            pcm::encode_ulaw_into(samples, &mut ulaw);
            serde_json::json!({ "event": "media", "streamSid": "MZload",
                "media": { "track": "inbound", "chunk": "1", "timestamp": "0",
                           "payload": base64::engine::general_purpose::STANDARD.encode(ulaw) } })
            .to_string()
        };
        TwilioFrames {
            silence: frame(&vec![0; samples_for_ms(8000, 20)]),
            burst: frame(&tone(8000, 20)),
        }
    }
}

/// A Twilio Media Streams caller: `connected`, `start`, then 20 ms `media` messages with a
/// 200 ms tone each second; the echo comes back as one utterance (`media` and a `mark`, which
/// the caller echoes as Twilio does).
async fn twilio_caller(i: usize, ctx: Arc<CallCtx>, frames: Arc<TwilioFrames>) {
    let c = &ctx.counters;
    let url = format!("ws://{}/twilio/stream", ctx.opts.http);
    let ws = match tokio_tungstenite::connect_async_with_config(url, None, true).await {
        Ok((ws, _)) => ws,
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status().as_u16() == 503 => {
            return Counters::add(&c.refused, 1)
        }
        Err(_) => return Counters::add(&c.failed, 1),
    };
    let (mut sink, mut stream) = ws.split();
    let connected =
        serde_json::json!({"event": "connected", "protocol": "Call", "version": "1.0.0"});
    let start = serde_json::json!({ "event": "start", "sequenceNumber": "1", "streamSid": "MZload",
        "start": { "streamSid": "MZload", "callSid": format!("load-{i}"), "accountSid": "AC0",
            "tracks": ["inbound"],
            "customParameters": { "from": format!("+1555{i:07}"), "to": "+15550000" },
            "mediaFormat": { "encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1 } } });
    for m in [connected, start] {
        if sink.send(Message::Text(m.to_string())).await.is_err() {
            return Counters::add(&c.failed, 1);
        }
    }
    Counters::add(&c.admitted, 1);
    let pending = Arc::new(AtomicU64::new(0));
    let reader_pending = pending.clone();
    let reader_ctx = ctx.clone();
    // Marks are echoed through the same sink as the media.
    let (marks_tx, mut marks) = mpsc::channel::<String>(16);
    let reader = tokio::spawn(async move {
        let c = &reader_ctx.counters;
        while let Some(Ok(msg)) = stream.next().await {
            match msg {
                Message::Text(text) if text.starts_with("{\"event\":\"media\"") => {
                    Counters::add(&c.frames_received, 1);
                    let sent = reader_pending.swap(0, Ordering::Relaxed);
                    if sent != 0 {
                        let now = micros_since(reader_ctx.epoch);
                        c.latency(Duration::from_micros(now.saturating_sub(sent)));
                    }
                }
                Message::Text(text) if text.contains("\"mark\"") => {
                    let _ = marks_tx.try_send(text);
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    });
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    let burst_every = BURST_EVERY_MS / 20;
    let mut k: u64 = 0;
    while !ctx.stop.load(Ordering::Relaxed) {
        ticker.tick().await;
        let phase = k % burst_every;
        if phase == 0 && pending.swap(micros_since(ctx.epoch), Ordering::Relaxed) != 0 {
            Counters::add(&c.bursts_lost, 1);
        }
        let frame = if phase < 10 {
            &frames.burst
        } else {
            &frames.silence
        };
        if sink.send(Message::Text(frame.clone())).await.is_err() {
            Counters::add(&c.failed, 1);
            break;
        }
        while let Ok(mark) = marks.try_recv() {
            let _ = sink.send(Message::Text(mark)).await;
        }
        Counters::add(&c.frames_sent, 1);
        k += 1;
    }
    let stop = serde_json::json!({"event": "stop", "streamSid": "MZload", "stop": {}});
    let _ = sink.send(Message::Text(stop.to_string())).await;
    let _ = sink.close().await;
    let _ = tokio::time::timeout(HANGUP_GRACE, reader).await;
}

fn channel_for(channels: &[Channel], i: usize) -> Channel {
    channels[(i / CALLS_PER_CHANNEL) % channels.len()].clone()
}

async fn smartivr_channels(opts: &LoadOptions) -> Result<Vec<Channel>, LoadError> {
    // As many connections as calls in flight need: all calls in stream mode, `concurrency` in
    // the set-up and churn modes.
    let in_flight = match opts.mode {
        super::Mode::Stream => opts.calls,
        super::Mode::Setup | super::Mode::Churn => opts.concurrency.min(opts.calls),
    };
    let n = in_flight.div_ceil(CALLS_PER_CHANNEL).max(1);
    let mut channels = Vec::with_capacity(n);
    for _ in 0..n {
        let ch = Endpoint::from_shared(format!("http://{}", opts.grpc))
            .map_err(|e| LoadError::Setup(e.to_string()))?
            .connect()
            .await
            .map_err(|e| {
                LoadError::Setup(format!("cannot reach the switch's gRPC listener: {e}"))
            })?;
        channels.push(ch);
    }
    Ok(channels)
}

/// Opens a SmartIVR call; `None` if refused or failed (counted).
async fn smartivr_open(
    i: usize,
    channel: Channel,
    c: &Counters,
) -> Option<(
    mpsc::Sender<SmartIvrRequest>,
    tonic::Streaming<crate::pb::smartivr::SmartIvrResponse>,
    Option<Config>,
)> {
    let config = Some(Config {
        conversation_id: format!("load-{i}"),
    });
    let (tx, rx) = mpsc::channel(16);
    let _ = tx.try_send(SmartIvrRequest {
        config: config.clone(),
        ..Default::default()
    });
    match SmartIvrPhonegatewayClient::new(channel)
        .call_to_bot(ReceiverStream::new(rx))
        .await
    {
        Ok(r) => {
            Counters::add(&c.admitted, 1);
            Some((tx, r.into_inner(), config))
        }
        Err(s)
            if s.code() == tonic::Code::ResourceExhausted
                || s.code() == tonic::Code::Unavailable =>
        {
            Counters::add(&c.refused, 1);
            None
        }
        Err(_) => {
            Counters::add(&c.failed, 1);
            None
        }
    }
}

async fn smartivr_caller(
    i: usize,
    ctx: Arc<CallCtx>,
    channel: Channel,
    silence: Arc<Vec<u8>>,
    burst: Arc<Vec<u8>>,
) {
    let c = &ctx.counters;
    let Some((tx, mut responses, config)) = smartivr_open(i, channel, c).await else {
        return;
    };
    let pending = Arc::new(AtomicU64::new(0));
    let reader_pending = pending.clone();
    let reader_ctx = ctx.clone();
    let reader = tokio::spawn(async move {
        let c = &reader_ctx.counters;
        while let Ok(Some(r)) = responses.message().await {
            if r.r#type != SmartIvrResponseType::ResultTts as i32 {
                continue;
            }
            Counters::add(&c.frames_received, 1);
            let loud =
                wav::parse(&r.audio_content).is_ok_and(|a| pcm::rms(&a.samples) > BURST_RMS / 4.0);
            let sent = reader_pending.swap(0, Ordering::Relaxed);
            if loud && sent != 0 {
                let now = micros_since(reader_ctx.epoch);
                c.latency(Duration::from_micros(now.saturating_sub(sent)));
            }
        }
    });
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    let burst_every = BURST_EVERY_MS / 100;
    let mut k: u64 = 0;
    while !ctx.stop.load(Ordering::Relaxed) {
        ticker.tick().await;
        // Two frames (200 ms) of tone each second: one utterance to echo.
        let audio = match k % burst_every {
            0 => {
                if pending.swap(micros_since(ctx.epoch), Ordering::Relaxed) != 0 {
                    Counters::add(&c.bursts_lost, 1);
                }
                burst.as_ref().clone()
            }
            1 => burst.as_ref().clone(),
            _ => silence.as_ref().clone(),
        };
        let msg = SmartIvrRequest {
            config: config.clone(),
            audio_content: audio,
            ..Default::default()
        };
        if tx.send(msg).await.is_err() {
            Counters::add(&c.failed, 1);
            break;
        }
        Counters::add(&c.frames_sent, 1);
        k += 1;
    }
    drop(tx);
    let _ = tokio::time::timeout(HANGUP_GRACE, reader).await;
}

/// Holds `calls` concurrent streaming calls and measures the switch over the hold.
pub async fn stream(
    opts: &LoadOptions,
    counters: &Arc<Counters>,
    report: &mut Report,
    idle: Option<proc_stats::Sample>,
) -> Result<(), LoadError> {
    let ctx = Arc::new(CallCtx {
        opts: opts.clone(),
        counters: counters.clone(),
        stop: Arc::new(AtomicBool::new(false)),
        epoch: Instant::now(),
    });
    let ws_frames = Arc::new(WsFrames::new());
    let twilio_frames = Arc::new(TwilioFrames::new());
    let silence = Arc::new(pcm::encode_s16le(&vec![0; samples_for_ms(8000, 100)]));
    let burst = Arc::new(pcm::encode_s16le(&tone(8000, 100)));
    let silence_20 = Arc::new(pcm::encode_s16le(&vec![0; samples_for_ms(8000, 20)]));
    let burst_20 = Arc::new(pcm::encode_s16le(&tone(8000, 20)));
    let channels = match opts.protocol {
        Protocol::Smartivr => smartivr_channels(opts).await?,
        Protocol::Ws | Protocol::Ringover | Protocol::Twilio | Protocol::Sip => Vec::new(),
    };
    let ramp_start = Instant::now();
    let mut tasks = Vec::with_capacity(opts.calls);
    for i in 0..opts.calls {
        let at = ramp_start + opts.ramp.mul_f64(i as f64 / opts.calls.max(1) as f64);
        tokio::time::sleep_until(at.into()).await;
        let ctx = ctx.clone();
        tasks.push(match opts.protocol {
            Protocol::Ws => tokio::spawn(ws_caller(i, ctx, ws_frames.clone())),
            Protocol::Twilio => tokio::spawn(twilio_caller(i, ctx, twilio_frames.clone())),
            Protocol::Sip => tokio::spawn(super::sip::sip_caller(i, ctx)),
            Protocol::Ringover => tokio::spawn(ringover_caller(
                i,
                ctx,
                silence_20.clone(),
                burst_20.clone(),
            )),
            Protocol::Smartivr => tokio::spawn(smartivr_caller(
                i,
                ctx,
                channel_for(&channels, i),
                silence.clone(),
                burst.clone(),
            )),
        });
    }
    report.setup_rate = opts.calls as f64 / ramp_start.elapsed().as_secs_f64().max(1e-3);
    // Let the last calls settle before measuring.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start = opts.pid.and_then(proc_stats::sample);
    tokio::time::sleep(opts.hold).await;
    let end = opts.pid.and_then(proc_stats::sample);
    let live = Counters::get(&counters.admitted)
        .saturating_sub(Counters::get(&counters.failed))
        .max(1) as f64;
    if let (Some(start), Some(end)) = (start, end) {
        report.cpu_percent_per_call = Some(proc_stats::core_share(&start, &end) * 100.0 / live);
        if let Some(idle) = idle {
            report.rss_kb_per_call =
                Some((end.rss_bytes as f64 - idle.rss_bytes as f64) / 1024.0 / live);
        }
    }
    ctx.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(HANGUP_GRACE, t).await;
    }
    Ok(())
}

/// One call that waits for the bot's first audio, then hangs up. Returns once it has.
async fn greeted_call(i: usize, opts: &LoadOptions, c: &Counters, channel: Option<Channel>) {
    match (opts.protocol, channel) {
        (Protocol::Smartivr, Some(channel)) => {
            let Some((tx, mut responses, _)) = smartivr_open(i, channel, c).await else {
                return;
            };
            match tokio::time::timeout(HANGUP_GRACE, responses.message()).await {
                Ok(Ok(Some(_))) => Counters::add(&c.frames_received, 1),
                _ => Counters::add(&c.failed, 1),
            }
            drop(tx);
        }
        _ => {
            let url = format!(
                "ws://{}/live-call/websocket/setup-{i}/+1?token={}",
                opts.http, opts.token
            );
            let Ok((mut ws, _)) =
                tokio_tungstenite::connect_async_with_config(url, None, true).await
            else {
                return Counters::add(&c.refused, 1);
            };
            let info = serde_json::json!({ "initial_info": { "call_id": format!("setup-{i}") } });
            if ws.send(Message::Text(info.to_string())).await.is_err() {
                return Counters::add(&c.failed, 1);
            }
            Counters::add(&c.admitted, 1);
            match tokio::time::timeout(HANGUP_GRACE, ws.next()).await {
                Ok(Some(Ok(_))) => Counters::add(&c.frames_received, 1),
                _ => Counters::add(&c.failed, 1),
            }
            let _ = ws.close(None).await;
        }
    }
}

async fn many_calls(
    opts: &LoadOptions,
    counters: &Arc<Counters>,
    first_index: usize,
) -> Result<f64, LoadError> {
    let channels = match opts.protocol {
        Protocol::Smartivr => smartivr_channels(opts).await?,
        Protocol::Ws | Protocol::Ringover | Protocol::Twilio | Protocol::Sip => Vec::new(),
    };
    let limit = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in first_index..first_index + opts.calls {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            break;
        };
        let (opts2, c) = (opts.clone(), counters.clone());
        let channel = (!channels.is_empty()).then(|| channel_for(&channels, i));
        tasks.push(tokio::spawn(async move {
            greeted_call(i, &opts2, &c, channel).await;
            drop(permit);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(opts.calls as f64 / started.elapsed().as_secs_f64().max(1e-3))
}

/// Places calls as fast as `concurrency` allows; each waits for the greeting.
pub async fn setup(
    opts: &LoadOptions,
    counters: &Arc<Counters>,
    report: &mut Report,
) -> Result<(), LoadError> {
    report.setup_rate = many_calls(opts, counters, 0).await?;
    Ok(())
}

/// Calls in the first churn phase, after which memory is the baseline.
const CHURN_BASELINE_CALLS: usize = 1000;

/// Places and ends calls in sequence; compares memory once the first 1,000 calls are over with
/// memory once all are over, each time after the switch has settled (no live calls, no queued
/// store writes), so the two samples are taken in the same state.
pub async fn churn(
    opts: &LoadOptions,
    counters: &Arc<Counters>,
    report: &mut Report,
) -> Result<(), LoadError> {
    let started = Instant::now();
    // Three phases, each ending settled: the first 1,000 calls, up to half, the rest.
    let first = opts.calls.min(CHURN_BASELINE_CALLS);
    let half = (opts.calls / 2).max(first);
    let mut samples = Vec::new();
    let mut done = 0;
    for end in [first, half, opts.calls] {
        let mut phase = opts.clone();
        phase.calls = end - done;
        many_calls(&phase, counters, done).await?;
        done = end;
        report.live_after = settle(opts.http).await;
        samples.push(opts.pid.and_then(proc_stats::sample));
    }
    report.setup_rate = opts.calls as f64 / started.elapsed().as_secs_f64().max(1e-3);
    if let [Some(a), Some(b), Some(c)] = samples[..] {
        let mb = |s: proc_stats::Sample| s.rss_bytes as f64 / 1e6;
        report.churn_rss_mb = Some((mb(a), mb(c)));
        report.churn_half_rss_mb = Some(mb(b));
    }
    Ok(())
}

/// Waits until the switch has no live call and no queued store write; returns the live count.
async fn settle(http: std::net::SocketAddr) -> Option<u64> {
    let deadline = Instant::now() + HANGUP_GRACE;
    loop {
        let health: Option<serde_json::Value> =
            match reqwest::get(format!("http://{http}/health")).await {
                Ok(r) => r.json().await.ok(),
                Err(_) => None,
            };
        let live = health
            .as_ref()
            .and_then(|h| h["calls"]["live_calls"].as_u64());
        let queued = health
            .as_ref()
            .and_then(|h| h["store"]["queued"].as_u64())
            .unwrap_or(0);
        if (live == Some(0) && queued == 0) || Instant::now() > deadline {
            return live;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
