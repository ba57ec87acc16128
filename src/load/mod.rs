//! `switchboard load`: a load generator that plays many concurrent callers against a running
//! switch over a real caller protocol, each streaming audio at real time both ways against a
//! bot that echoes, and reports admissions, frames, round-trip latency, and the switch
//! process's CPU and memory per call (read from /proc, so the generator's own work is not
//! counted). It targets loopback only and stops by itself. `--abuse` plays hostile peers
//! instead, one flood at a time, and reports what each costs ([`abuse`]).

pub mod abuse;
mod callers;
pub mod proc_stats;
mod sip;
mod spawn;
pub mod stats;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;

use stats::Counters;

pub use abuse::{AbuseOptions, AbuseReport, AbuseRow, Flood};
pub use spawn::{SpawnBot, SpawnedSwitch};

/// Which caller protocol the simulated callers speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// SmartIVR gRPC gateways: 100 ms frames of 8 kHz audio, whole-utterance replies.
    Smartivr,
    /// Live-call WebSocket: 20 ms base64 frames at 16 kHz, paced 8 kHz replies.
    Ws,
    /// Ringover media streams: 20 ms binary L16 frames at 8 kHz, whole-utterance replies.
    Ringover,
    /// Twilio Media Streams: 20 ms mu-law `media` messages, whole-utterance replies with marks.
    Twilio,
    /// SIP over UDP: an INVITE with a PCMU offer, 20 ms RTP both ways (paced replies), BYE.
    Sip,
}

/// Which bot a spawned switch routes every call to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Bot {
    /// The embedded flow engine echoing the caller (or greeting, in setup and churn runs).
    Flow,
    /// A `twilio_stream` bot: the switch's own Twilio Media Streams echo bot, run by the load
    /// generator (so its cost is not the switch's).
    Twilio,
    /// Conference rooms: every `--room-size` consecutive callers share a room (live-call
    /// WebSocket callers only); each hears the others' mix.
    Room,
    /// A `live_call` bot: the switch's own `live_call` echo AI service (gRPC), run by the
    /// load generator (so its cost is not the switch's).
    LiveCall,
}

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Hold `calls` concurrent calls streaming audio both ways.
    Stream,
    /// Place `calls` calls as fast as possible, each waiting for the bot's greeting.
    Setup,
    /// Place and end `calls` calls in sequence; compare memory after the first 1,000.
    Churn,
}

/// Options of a load run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub protocol: Protocol,
    pub mode: Mode,
    /// The switch's HTTP listener (WebSocket and health).
    pub http: SocketAddr,
    /// The switch's gRPC listener.
    pub grpc: SocketAddr,
    /// The switch's SIP listener (UDP), for `Protocol::Sip`.
    pub sip: Option<SocketAddr>,
    /// The live-call WebSocket token.
    pub token: String,
    pub calls: usize,
    /// Calls are started evenly over this time.
    pub ramp: Duration,
    /// All calls stream for this long; CPU is measured over it.
    pub hold: Duration,
    /// The switch's process id, for CPU and memory figures.
    pub pid: Option<u32>,
    /// Concurrent calls in `setup` and `churn` modes.
    pub concurrency: usize,
    /// Callers per conference room (0: no rooms): caller `i` uses hotline `room-{i / size}`.
    pub room_size: usize,
}

/// Why a run could not go on.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("refusing to load {0}: the load generator only targets loopback")]
    NotLoopback(SocketAddr),
    #[error("{0}")]
    Setup(String),
}

/// What a run measured.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub protocol: String,
    pub mode: String,
    pub calls: usize,
    pub admitted: u64,
    pub refused: u64,
    pub failed: u64,
    pub frames_sent: u64,
    pub frames_received: u64,
    pub bursts_lost: u64,
    pub latency_count: usize,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    /// SIP: packets received and how far their spacing was from 20 ms (p50, p99, max).
    pub jitter: Option<(usize, f64, f64, f64)>,
    /// Calls set up per second (setup mode) or during the ramp.
    pub setup_rate: f64,
    /// Share of one core used by the switch per concurrent call, in percent.
    pub cpu_percent_per_call: Option<f64>,
    /// Resident memory added per concurrent call, in kilobytes.
    pub rss_kb_per_call: Option<f64>,
    pub rss_idle_mb: Option<f64>,
    /// Churn: RSS after the first 1,000 calls and at the end, in MB.
    pub churn_rss_mb: Option<(f64, f64)>,
    /// Churn: RSS after half the calls, in MB (shows whether growth has levelled off).
    pub churn_half_rss_mb: Option<f64>,
    /// Churn: live calls the switch still reports at the end.
    pub live_after: Option<u64>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "protocol            {}", self.protocol)?;
        writeln!(f, "mode                {}", self.mode)?;
        writeln!(
            f,
            "calls               {} (admitted {}, refused {}, failed {})",
            self.calls, self.admitted, self.refused, self.failed
        )?;
        writeln!(f, "call set-up rate    {:.0} calls/s", self.setup_rate)?;
        writeln!(
            f,
            "frames              sent {}, received {}, bursts lost {}",
            self.frames_sent, self.frames_received, self.bursts_lost
        )?;
        writeln!(
            f,
            "round trip          n={} p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.latency_count, self.latency_p50_ms, self.latency_p99_ms, self.latency_max_ms
        )?;
        if let Some((n, p50, p99, max)) = self.jitter {
            writeln!(
                f,
                "packet spacing      n={n} off 20 ms by p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.1} ms"
            )?;
        }
        if let Some(cpu) = self.cpu_percent_per_call {
            writeln!(f, "switch CPU          {cpu:.4} % of one core per call")?;
        }
        if let Some(rss) = self.rss_kb_per_call {
            writeln!(
                f,
                "switch RSS          {rss:.1} KB per call (idle {:.1} MB)",
                self.rss_idle_mb.unwrap_or(0.0)
            )?;
        }
        if let Some((first, last)) = self.churn_rss_mb {
            let half = self.churn_half_rss_mb.unwrap_or(0.0);
            writeln!(
                f,
                "churn RSS           {first:.1} MB after 1,000 calls, {half:.1} MB after half, {last:.1} MB at the end ({:+.1} % from 1,000; {:+.1} % over the second half)",
                (last - first) / first * 100.0,
                (last - half) / half * 100.0
            )?;
        }
        if let Some(live) = self.live_after {
            writeln!(f, "live calls after    {live}")?;
        }
        Ok(())
    }
}

/// Runs the load and returns what it measured.
pub async fn run(opts: LoadOptions) -> Result<Report, LoadError> {
    if opts.protocol == Protocol::Sip && opts.mode != Mode::Stream {
        return Err(LoadError::Setup(
            "SIP set-up rates are measured with SIPp (tools/bench.sh); --protocol sip streams"
                .into(),
        ));
    }
    for addr in [opts.http, opts.grpc].into_iter().chain(opts.sip) {
        if !addr.ip().is_loopback() {
            return Err(LoadError::NotLoopback(addr));
        }
    }
    let counters = Arc::new(Counters::default());
    let mut report = Report {
        protocol: format!("{:?}", opts.protocol).to_lowercase(),
        mode: format!("{:?}", opts.mode).to_lowercase(),
        calls: opts.calls,
        ..Default::default()
    };
    let idle = opts.pid.and_then(proc_stats::sample);
    report.rss_idle_mb = idle.map(|s| s.rss_bytes as f64 / 1e6);
    match opts.mode {
        Mode::Stream => callers::stream(&opts, &counters, &mut report, idle).await?,
        Mode::Setup => callers::setup(&opts, &counters, &mut report).await?,
        Mode::Churn => callers::churn(&opts, &counters, &mut report).await?,
    }
    report.admitted = Counters::get(&counters.admitted);
    report.refused = Counters::get(&counters.refused);
    report.failed = Counters::get(&counters.failed);
    report.frames_sent = Counters::get(&counters.frames_sent);
    report.frames_received = Counters::get(&counters.frames_received);
    report.bursts_lost = Counters::get(&counters.bursts_lost);
    let (n, p50, p99, max) = counters.latency_summary();
    report.latency_count = n;
    report.latency_p50_ms = p50;
    report.latency_p99_ms = p99;
    report.latency_max_ms = max;
    if opts.protocol == Protocol::Sip {
        report.jitter = Some(counters.jitter_summary());
    }
    Ok(report)
}

/// Live calls the switch reports on `/health`.
pub async fn live_calls(http: SocketAddr) -> Option<u64> {
    let body: serde_json::Value = reqwest::get(format!("http://{http}/health"))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    body["calls"]["live_calls"].as_u64()
}

/// Time since `epoch` in microseconds (never 0, which means "none").
fn micros_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_micros() as u64 + 1
}
