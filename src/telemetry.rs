//! Prometheus metrics: the process-wide recorder, every metric's name, and typed helpers, so
//! the rest of the switch never spells a metric name or passes an unbounded label.
//!
//! Labels come only from fixed sets (ingresses, hang-up reasons, protocol names, drop causes)
//! or from the configuration (bot names); anything else becomes `"other"`. Never a call id, a
//! reference or text a peer sent.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics::{Counter, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Calls live now (gauge).
pub const CALLS_LIVE: &str = "switchboard_calls_live";
/// Calls admitted, by `ingress`.
pub const CALLS_ADMITTED: &str = "switchboard_calls_admitted_total";
/// Calls refused, by `ingress` and `reason`.
pub const CALLS_REFUSED: &str = "switchboard_calls_refused_total";
/// Calls ended, by `ingress`, `bot` and `reason` (the call's `hangup_reason`).
pub const CALLS_ENDED: &str = "switchboard_calls_ended_total";
/// Seconds from a call's creation to `progressing` (answered), by `ingress`.
pub const CALL_SETUP_SECONDS: &str = "switchboard_call_setup_seconds";
/// Frames read from callers, by `protocol`.
pub const FRAMES_IN: &str = "switchboard_frames_in_total";
/// Frames written to callers, by `protocol`.
pub const FRAMES_OUT: &str = "switchboard_frames_out_total";
/// Frames dropped, by `protocol` and `cause`.
pub const FRAMES_DROPPED: &str = "switchboard_frames_dropped_total";
/// Store writes waiting to be written (gauge).
pub const STORE_QUEUED: &str = "switchboard_store_writes_queued";
/// Store writes written.
pub const STORE_WRITTEN: &str = "switchboard_store_writes_written_total";
/// Store write batches that failed (and were retried).
pub const STORE_FAILED: &str = "switchboard_store_write_failures_total";
/// Store writes dropped because the queue was full.
pub const STORE_DROPPED: &str = "switchboard_store_writes_dropped_total";
/// Seconds the text-to-speech program took to render a prompt (cache misses only).
pub const TTS_SECONDS: &str = "switchboard_tts_seconds";
/// Seconds speech recognition took for one utterance, queueing included.
pub const ASR_SECONDS: &str = "switchboard_asr_seconds";
/// Seconds of caller speech recognised.
pub const ASR_AUDIO_SECONDS: &str = "switchboard_asr_audio_seconds_total";
/// Utterances speech recognition failed on (off, unavailable, busy, timeout, engine error).
pub const ASR_FAILURES: &str = "switchboard_asr_failures_total";
/// Network bots (`live_call`, `smartivr`) that could not be reached, by `kind`.
pub const BOT_CONNECT_FAILURES: &str = "switchboard_bot_connect_failures_total";
/// Rate converters made at calls' boundaries, by `side` (`to_bot`, `to_caller`, `to_room`).
pub const RESAMPLERS: &str = "switchboard_resamplers_total";
/// Audio chunks converted at calls' boundaries, by `side`.
pub const RESAMPLED_CHUNKS: &str = "switchboard_resampled_chunks_total";

/// Every metric name, for the README and the tests.
pub const ALL: &[&str] = &[
    CALLS_LIVE,
    CALLS_ADMITTED,
    CALLS_REFUSED,
    CALLS_ENDED,
    CALL_SETUP_SECONDS,
    FRAMES_IN,
    FRAMES_OUT,
    FRAMES_DROPPED,
    STORE_QUEUED,
    STORE_WRITTEN,
    STORE_FAILED,
    STORE_DROPPED,
    TTS_SECONDS,
    ASR_SECONDS,
    ASR_AUDIO_SECONDS,
    ASR_FAILURES,
    BOT_CONNECT_FAILURES,
    RESAMPLERS,
    RESAMPLED_CHUNKS,
];

/// Histogram buckets in seconds: call set-up spans tens of milliseconds to tens of seconds.
const SETUP_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Histogram buckets in seconds: espeak-ng renders a sentence in about 40 ms.
const TTS_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// The Prometheus recorder, installed once per process: a process has one global recorder, and
/// test processes start several switches that share it.
static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder if none is yet; the handle that renders it, or `None`
/// when another recorder was installed first (then `/metrics` answers 503).
pub fn install() -> Option<&'static PrometheusHandle> {
    RECORDER
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(CALL_SETUP_SECONDS.into()), SETUP_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(TTS_SECONDS.into()), TTS_BUCKETS)
                        .and_then(|b| {
                            b.set_buckets_for_metric(Matcher::Full(ASR_SECONDS.into()), TTS_BUCKETS)
                        })
                });
            let handle = match builder.and_then(|b| b.install_recorder()) {
                Ok(handle) => handle,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed; /metrics is off");
                    return None;
                }
            };
            describe();
            Some(handle)
        })
        .as_ref()
}

/// The metrics in Prometheus text format; `None` without a recorder.
pub fn render() -> Option<String> {
    let handle = RECORDER.get()?.as_ref()?;
    handle.run_upkeep();
    Some(handle.render())
}

fn describe() {
    describe_gauge!(CALLS_LIVE, "Calls live now.");
    describe_counter!(CALLS_ADMITTED, "Calls admitted, by ingress.");
    describe_counter!(CALLS_REFUSED, "Calls refused, by ingress and reason.");
    describe_counter!(
        CALLS_ENDED,
        "Calls ended, by ingress, bot and hangup reason."
    );
    describe_histogram!(
        CALL_SETUP_SECONDS,
        Unit::Seconds,
        "Time from a call's creation to progressing (answered), by ingress."
    );
    describe_counter!(FRAMES_IN, "Frames read from callers, by protocol.");
    describe_counter!(FRAMES_OUT, "Frames written to callers, by protocol.");
    describe_counter!(FRAMES_DROPPED, "Frames dropped, by protocol and cause.");
    describe_gauge!(STORE_QUEUED, "Store writes waiting to be written.");
    describe_counter!(STORE_WRITTEN, "Store writes written.");
    describe_counter!(STORE_FAILED, "Store write batches that failed.");
    describe_counter!(STORE_DROPPED, "Store writes dropped: the queue was full.");
    describe_histogram!(
        TTS_SECONDS,
        Unit::Seconds,
        "Time the text-to-speech program took to render a prompt."
    );
    describe_histogram!(
        ASR_SECONDS,
        Unit::Seconds,
        "Time speech recognition took for one utterance, queueing included."
    );
    describe_counter!(ASR_AUDIO_SECONDS, "Seconds of caller speech recognised.");
    describe_counter!(ASR_FAILURES, "Utterances speech recognition failed on.");
    describe_counter!(
        BOT_CONNECT_FAILURES,
        "Network bots that could not be reached, by kind."
    );
    describe_counter!(
        RESAMPLERS,
        "Rate converters made at calls' boundaries, by side."
    );
    describe_counter!(
        RESAMPLED_CHUNKS,
        "Audio chunks converted at calls' boundaries, by side."
    );
}

/// The ingress label: one of `config::INGRESSES`, else `other`.
pub fn ingress_label(ingress: &str) -> &'static str {
    crate::config::INGRESSES
        .iter()
        .find(|known| **known == ingress)
        .copied()
        .unwrap_or("other")
}

/// A call was admitted on `ingress` (and is live from now).
pub fn call_admitted(ingress: &str) {
    counter!(CALLS_ADMITTED, "ingress" => ingress_label(ingress)).increment(1);
    gauge!(CALLS_LIVE).increment(1.0);
}

/// A call was refused on `ingress`; `reason` is one of a fixed set (`full`, `draining`,
/// `no_route`, `no_master`).
pub fn call_refused(ingress: &str, reason: &'static str) {
    counter!(CALLS_REFUSED, "ingress" => ingress_label(ingress), "reason" => reason).increment(1);
}

/// A live call is gone (its actor stopped or it hung up).
pub fn call_gone() {
    gauge!(CALLS_LIVE).decrement(1.0);
}

/// A call hung up. `bot` is a configured bot's name (a bounded set); `reason` its
/// `hangup_reason`.
pub fn call_ended(ingress: &str, bot: &str, reason: &'static str) {
    let bot = if bot.is_empty() { "none" } else { bot };
    counter!(
        CALLS_ENDED,
        "ingress" => ingress_label(ingress),
        "bot" => bot.to_owned(),
        "reason" => reason
    )
    .increment(1);
}

/// A call on `ingress` became `progressing` `setup` after it was created.
pub fn call_set_up(ingress: &str, setup: Duration) {
    histogram!(CALL_SETUP_SECONDS, "ingress" => ingress_label(ingress)).record(setup.as_secs_f64());
}

/// The text-to-speech program rendered a prompt in `took`.
pub fn tts_rendered(took: Duration) {
    histogram!(TTS_SECONDS).record(took.as_secs_f64());
}

/// Speech recognition handled `audio_seconds` of speech in `took`.
pub fn asr_done(audio_seconds: f64, took: Duration, ok: bool) {
    histogram!(ASR_SECONDS).record(took.as_secs_f64());
    if ok {
        counter!(ASR_AUDIO_SECONDS).increment(audio_seconds.round() as u64);
    } else {
        counter!(ASR_FAILURES).increment(1);
    }
}

/// A network bot of `kind` (`live_call`, `smartivr`) could not be reached.
pub fn bot_connect_failed(kind: &'static str) {
    counter!(BOT_CONNECT_FAILURES, "kind" => kind).increment(1);
}

/// A call made a rate converter on `side` (`to_bot`, `to_caller`, `to_room`); the counter of
/// the chunks it converts.
pub fn resampler_made(side: &'static str) -> Counter {
    counter!(RESAMPLERS, "side" => side).increment(1);
    counter!(RESAMPLED_CHUNKS, "side" => side)
}

/// The store writer wrote `n` writes.
pub fn store_written(n: u64) {
    counter!(STORE_WRITTEN).increment(n);
}

/// A store write batch failed.
pub fn store_failed() {
    counter!(STORE_FAILED).increment(1);
}

/// A store write was dropped.
pub fn store_dropped() {
    counter!(STORE_DROPPED).increment(1);
}

/// Store writes waiting now.
pub fn store_queued(queued: usize) {
    gauge!(STORE_QUEUED).set(queued as f64);
}

/// A session's frames are added to their metric in batches of this many (and the rest when
/// the session ends): per frame the session only bumps a field of its own. The metric lags a
/// live call by less than a second of 20 ms frames.
const FRAME_BATCH: u32 = 50;

/// One counter of a session's frames, added to its metric in batches.
pub struct FrameCount {
    counter: Counter,
    pending: u32,
}

impl FrameCount {
    fn new(counter: Counter) -> Self {
        FrameCount {
            counter,
            pending: 0,
        }
    }

    /// One more frame.
    pub fn add(&mut self) {
        self.pending += 1;
        if self.pending >= FRAME_BATCH {
            self.flush();
        }
    }

    /// Adds what is pending to the metric now.
    pub fn flush(&mut self) {
        if self.pending > 0 {
            self.counter.increment(u64::from(self.pending));
            self.pending = 0;
        }
    }
}

impl Clone for FrameCount {
    /// A copy counts on its own, from zero; what this one has pending stays here.
    fn clone(&self) -> Self {
        FrameCount::new(self.counter.clone())
    }
}

impl Drop for FrameCount {
    fn drop(&mut self) {
        self.flush();
    }
}

/// One protocol session's frame counters, looked up once; counting a frame is a local add.
#[derive(Clone)]
pub struct Frames {
    protocol: &'static str,
    /// Frames read from the caller.
    pub received: FrameCount,
    /// Frames written toward the caller.
    pub sent: FrameCount,
}

impl Frames {
    /// Counters for a session of `protocol` (`smartivr`, `live_call_ws`, `live_call_grpc`,
    /// `ringover`, `twilio`).
    pub fn new(protocol: &'static str) -> Self {
        Frames {
            protocol,
            received: FrameCount::new(counter!(FRAMES_IN, "protocol" => protocol)),
            sent: FrameCount::new(counter!(FRAMES_OUT, "protocol" => protocol)),
        }
    }

    /// A frame was dropped for `cause`: `slow_peer` (audio toward a peer that does not read),
    /// `skipped_reply` (a pong or error reply skipped for the same reason), `key_rate` (DTMF
    /// past the rate limit), `call_busy` (the call's mailbox was full).
    pub fn dropped(&self, cause: &'static str) {
        counter!(FRAMES_DROPPED, "protocol" => self.protocol, "cause" => cause).increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_ingresses_are_other() {
        assert_eq!(ingress_label("smartivr"), "smartivr");
        assert_eq!(ingress_label("api"), "api");
        assert_eq!(ingress_label("x-peer-text"), "other");
    }

    #[test]
    fn names_follow_prometheus_conventions() {
        for name in ALL {
            assert!(name.starts_with("switchboard_"), "{name}");
            let counter = name.ends_with("_total");
            let seconds = name.ends_with("_seconds");
            let gauge = *name == CALLS_LIVE || *name == STORE_QUEUED;
            assert!(counter || seconds || gauge, "{name}");
        }
    }
}
