//! Counters and latency figures shared by every simulated caller.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Counters updated by caller tasks.
#[derive(Default)]
pub struct Counters {
    pub admitted: AtomicU64,
    pub refused: AtomicU64,
    pub failed: AtomicU64,
    pub frames_sent: AtomicU64,
    pub frames_received: AtomicU64,
    /// Echoed bursts that never came back.
    pub bursts_lost: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
    /// How far the spacing of consecutive packets received is from their 20 ms clock (SIP).
    jitters_us: Mutex<Vec<u64>>,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Records one round trip.
    pub fn latency(&self, d: Duration) {
        if let Ok(mut v) = self.latencies_us.lock() {
            v.push(d.as_micros() as u64);
        }
    }

    /// Records one packet's spacing error.
    pub fn jitter(&self, d: Duration) {
        if let Ok(mut v) = self.jitters_us.lock() {
            v.push(d.as_micros() as u64);
        }
    }

    /// (count, p50, p99, max) of recorded round trips, in milliseconds.
    pub fn latency_summary(&self) -> (usize, f64, f64, f64) {
        summary(&self.latencies_us)
    }

    /// (count, p50, p99, max) of recorded packet spacing errors, in milliseconds.
    pub fn jitter_summary(&self) -> (usize, f64, f64, f64) {
        summary(&self.jitters_us)
    }
}

fn summary(values: &Mutex<Vec<u64>>) -> (usize, f64, f64, f64) {
    let mut v = values.lock().map(|v| v.clone()).unwrap_or_default();
    if v.is_empty() {
        return (0, 0.0, 0.0, 0.0);
    }
    v.sort_unstable();
    let pick = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
    (
        v.len(),
        pick(0.5),
        pick(0.99),
        *v.last().unwrap_or(&0) as f64 / 1000.0,
    )
}
