//! Durable call records (sqlx): calls, their events, recordings and transcripts.
//!
//! One code path serves SQLite (the embedded default) and PostgreSQL through sqlx's `Any`
//! driver. Every database operation runs on the store's own tokio runtime, so callers on any
//! thread (actix arbiters, HTTP workers) only await a join handle. Writes never block a call:
//! they go through the `Journal` to the writer task (`writer`), which batches and retries.

pub mod journal;
pub mod queries;
pub mod schema;
pub mod writer;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::AnyPool;
use thiserror::Error;
use tokio::runtime::{Handle, Runtime};

use crate::config::StoreConfig;
pub use journal::{CallEvent, Journal};
pub use queries::{CallFilter, EventRow, PageToken, RecordingRow, TranscriptRow};

/// Connections in the pool: one writer and a few readers.
const POOL_CONNECTIONS: u32 = 4;
/// How long a query waits for a free connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long SQLite waits on a locked database before a write fails (then the writer retries).
const SQLITE_BUSY_MS: u32 = 1000;
/// Threads of the store's runtime.
const STORE_THREADS: usize = 1;

/// Why the store failed.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("cannot apply migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot prepare {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("a stored row is malformed: {0}")]
    Malformed(String),
    #[error("the store is stopped")]
    Stopped,
}

/// The store: a pool on its own runtime, plus the journal that feeds its writer.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    rt: Handle,
    /// This switch's instance id: the owner of the calls it writes.
    pub owner: String,
    pub journal: Journal,
}

/// Owns the store's runtime; shut it down last.
pub struct StoreRuntime {
    runtime: Option<Runtime>,
}

impl StoreRuntime {
    /// Stops the runtime without waiting for its tasks (the writer was flushed before).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for StoreRuntime {
    // Dropping a tokio runtime inside async code panics; stopping it in the background is safe
    // anywhere (for example when start-up fails after the store opened).
    fn drop(&mut self) {
        self.stop();
    }
}

/// Appends `mode=rwc` to a SQLite URL (create the file) and creates its folder.
fn prepare_sqlite(url: &str) -> Result<String, StoreError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let path = rest.split('?').next().unwrap_or(rest);
    if path != ":memory:" && !path.is_empty() {
        if let Some(parent) = Path::new(path).parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(|source| StoreError::Io {
                    path: parent.display().to_string(),
                    source,
                })?;
            }
        }
    }
    Ok(if url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    })
}

/// Reads this switch's instance id from `path`, creating it on first start.
pub fn instance_id(path: &str) -> Result<String, StoreError> {
    let io = |source| StoreError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => Ok(text.trim().to_owned()),
        Ok(_) | Err(_) => {
            if let Some(parent) = Path::new(path).parent() {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(parent).map_err(io)?;
                }
            }
            let id = uuid::Uuid::new_v4().to_string();
            std::fs::write(path, format!("{id}\n")).map_err(io)?;
            Ok(id)
        }
    }
}

impl Store {
    /// Connects, applies migrations and starts the writer.
    pub async fn open(config: &StoreConfig) -> Result<(Store, StoreRuntime), StoreError> {
        Store::open_as(config, None).await
    }

    /// Like `open`, with the calls written as `owner`'s instead of the instance id's (a cluster
    /// node's `node_id`).
    pub async fn open_as(
        config: &StoreConfig,
        owner: Option<&str>,
    ) -> Result<(Store, StoreRuntime), StoreError> {
        sqlx::any::install_default_drivers();
        let owner = match owner {
            Some(owner) => owner.to_owned(),
            None => instance_id(&config.instance_file)?,
        };
        let sqlite = config.url.starts_with("sqlite:");
        let url = if sqlite {
            prepare_sqlite(&config.url)?
        } else {
            config.url.clone()
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(STORE_THREADS)
            .thread_name("switchboard-store")
            .enable_all()
            .build()
            .map_err(|source| StoreError::Io {
                path: "store runtime".into(),
                source,
            })?;
        // Owned by `StoreRuntime` at once, so an error below stops it safely.
        let runtime = StoreRuntime {
            runtime: Some(runtime),
        };
        let rt = runtime
            .runtime
            .as_ref()
            .map(|r| r.handle().clone())
            .ok_or(StoreError::Stopped)?;
        let pool = rt
            .spawn(async move {
                let mut options = AnyPoolOptions::new()
                    .max_connections(POOL_CONNECTIONS)
                    .acquire_timeout(ACQUIRE_TIMEOUT);
                if sqlite {
                    options = options.after_connect(|conn, _meta| {
                        Box::pin(async move {
                            sqlx::Executor::execute(
                                &mut *conn,
                                sqlx::AssertSqlSafe(format!(
                                    "PRAGMA busy_timeout = {SQLITE_BUSY_MS}"
                                )),
                            )
                            .await?;
                            Ok(())
                        })
                    });
                }
                let pool = options.connect(&url).await?;
                if sqlite {
                    sqlx::query("PRAGMA journal_mode = WAL")
                        .fetch_optional(&pool)
                        .await?;
                }
                schema::migrate(&pool).await?;
                Ok::<_, StoreError>(pool)
            })
            .await
            .map_err(|_| StoreError::Stopped)??;
        let journal = writer::start(&rt, pool.clone(), owner.clone(), config.max_queued);
        Ok((
            Store {
                pool,
                rt,
                owner,
                journal,
            },
            runtime,
        ))
    }

    /// Runs `f` with the pool on the store's runtime.
    async fn run<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(AnyPool) -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        self.rt
            .spawn(f(self.pool.clone()))
            .await
            .map_err(|_| StoreError::Stopped)?
    }

    /// Waits until every write queued before now is in the database, at most `timeout`.
    /// Returns false when it timed out (the database is unreachable or slow).
    pub async fn sync(&self, timeout: Duration) -> bool {
        self.journal.sync(timeout).await
    }
}

fn text(row: &AnyRow, column: &str) -> Result<String, StoreError> {
    sqlx::Row::try_get::<String, _>(row, column).map_err(StoreError::from)
}

fn int(row: &AnyRow, column: &str) -> Result<i64, StoreError> {
    sqlx::Row::try_get::<i64, _>(row, column).map_err(StoreError::from)
}

/// Shared health of the writer, for logs and `/health`.
pub type WriterHealth = Arc<writer::Health>;
