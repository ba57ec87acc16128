//! The store writer: one task that drains the journal's queue into the database in batches.
//!
//! A failed batch stays at the head of the queue and is retried with a growing pause; the
//! queue keeps filling meanwhile, up to `[store] max_queued`, so the switch goes on switching
//! calls while the database is away and catches up when it returns.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::AnyPool;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use super::journal::Journal;
use super::queries::{self, RecordingRow, TranscriptRow};
use crate::call::state::CallRecord;

/// Room in the channel between the journal and the writer (the writer empties it into its
/// own queue continuously, so this only absorbs bursts).
const CHANNEL_CAPACITY: usize = 8192;
/// Writes per transaction.
const BATCH: usize = 256;
/// First pause after a failed batch; it doubles up to `MAX_RETRY_PAUSE`.
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(50);
/// Longest pause between retries while the database is away.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// One queued write.
#[derive(Debug)]
pub enum Write {
    /// A call's row and one event row.
    Call {
        record: Arc<CallRecord>,
        event: &'static str,
        seq: u64,
        at: DateTime<Utc>,
    },
    Transcript(TranscriptRow),
    Recording(RecordingRow),
    /// A room's row.
    Room(Arc<crate::room::RoomRecord>),
    /// Answered once every write queued before it is in the database.
    Sync(oneshot::Sender<()>),
}

/// The writer's health, shared with `/health` and the logs.
#[derive(Debug, Default)]
pub struct Health {
    pub failing: AtomicBool,
    pub queued: AtomicUsize,
    pub written: AtomicU64,
    pub dropped: AtomicU64,
    pub last_error: Mutex<String>,
}

/// What `/health` shows of the store.
#[derive(Debug, Serialize)]
pub struct HealthView {
    pub status: &'static str,
    pub queued: usize,
    pub written: u64,
    pub dropped: u64,
    pub last_error: String,
}

impl Health {
    pub fn view(&self) -> HealthView {
        HealthView {
            status: if self.failing.load(Ordering::Relaxed) {
                "failing"
            } else {
                "ok"
            },
            queued: self.queued.load(Ordering::Relaxed),
            written: self.written.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .map(|e| e.clone())
                .unwrap_or_default(),
        }
    }
}

/// Starts the writer on `rt`; returns the journal feeding it.
pub fn start(rt: &Handle, pool: AnyPool, owner: String, max_queued: usize) -> Journal {
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    let health = Arc::new(Health::default());
    let writer = Writer {
        pool,
        owner,
        max_queued: max_queued.max(1),
        rx,
        queue: VecDeque::new(),
        health: health.clone(),
    };
    rt.spawn(writer.run());
    Journal::new(tx, health)
}

struct Writer {
    pool: AnyPool,
    owner: String,
    max_queued: usize,
    rx: mpsc::Receiver<Write>,
    queue: VecDeque<Write>,
    health: Arc<Health>,
}

impl Writer {
    fn push(&mut self, write: Write) {
        self.queue.push_back(write);
        if self.queue.len() > self.max_queued {
            // Losing the oldest write is the bound's price; say so loudly.
            if let Some(Write::Sync(reply)) = self.queue.pop_front() {
                let _ = reply.send(());
            }
            let dropped = self.health.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            crate::telemetry::store_dropped();
            tracing::error!(
                dropped,
                max_queued = self.max_queued,
                "store queue full while the database is away: oldest write dropped"
            );
        }
        self.health
            .queued
            .store(self.queue.len(), Ordering::Relaxed);
    }

    /// Moves everything waiting in the channel into the queue.
    fn drain_channel(&mut self) {
        while let Ok(write) = self.rx.try_recv() {
            self.push(write);
        }
    }

    async fn run(mut self) {
        let mut pause = FIRST_RETRY_PAUSE;
        loop {
            if self.queue.is_empty() {
                match self.rx.recv().await {
                    Some(write) => self.push(write),
                    None => return,
                }
            }
            self.drain_channel();
            // Answer syncs whose writes are all done.
            while matches!(self.queue.front(), Some(Write::Sync(_))) {
                if let Some(Write::Sync(reply)) = self.queue.pop_front() {
                    let _ = reply.send(());
                }
            }
            let n = self
                .queue
                .iter()
                .take(BATCH)
                .take_while(|w| !matches!(w, Write::Sync(_)))
                .count();
            if n == 0 {
                self.health
                    .queued
                    .store(self.queue.len(), Ordering::Relaxed);
                continue;
            }
            // The batch leaves the queue while it is written, so the queue can keep taking
            // what the journal sends meanwhile: the channel never fills behind a slow write.
            let batch: Vec<Write> = self.queue.drain(..n).collect();
            let result = {
                let refs: Vec<&Write> = batch.iter().collect();
                let (pool, owner) = (self.pool.clone(), self.owner.clone());
                let write = queries::write_batch(&pool, &owner, &refs);
                tokio::pin!(write);
                loop {
                    tokio::select! {
                        result = &mut write => break result,
                        Some(w) = self.rx.recv() => self.push(w),
                    }
                }
            };
            match result {
                Ok(()) => {
                    self.health.written.fetch_add(n as u64, Ordering::Relaxed);
                    crate::telemetry::store_written(n as u64);
                    self.health
                        .queued
                        .store(self.queue.len(), Ordering::Relaxed);
                    if self.health.failing.swap(false, Ordering::Relaxed) {
                        tracing::info!(
                            queued = self.queue.len(),
                            "store reachable again; catching up"
                        );
                    }
                    pause = FIRST_RETRY_PAUSE;
                }
                Err(e) => {
                    // Put the batch back in front, in order, and wait before retrying while
                    // still taking new writes.
                    for w in batch.into_iter().rev() {
                        self.queue.push_front(w);
                    }
                    crate::telemetry::store_failed();
                    if !self.health.failing.swap(true, Ordering::Relaxed) {
                        tracing::error!(error = %e, queued = self.queue.len(), "store write failed; keeping writes queued and retrying");
                    }
                    if let Ok(mut last) = self.health.last_error.lock() {
                        *last = e.to_string();
                    }
                    let wait = tokio::time::sleep(pause);
                    tokio::pin!(wait);
                    loop {
                        tokio::select! {
                            _ = &mut wait => break,
                            Some(w) = self.rx.recv() => self.push(w),
                        }
                    }
                    pause = (pause * 2).min(MAX_RETRY_PAUSE);
                }
            }
        }
    }
}
