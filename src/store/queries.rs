//! The store's SQL: batched writes for the writer, and the reads the APIs need.
//!
//! Placeholders are `$N`, which both SQLite and PostgreSQL accept. Times are stored as
//! microseconds since the epoch; the full call record is stored as JSON beside the columns
//! used for filtering.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, AssertSqlSafe};
use uuid::Uuid;

use super::writer::Write;
use super::{int, text, Store, StoreError};
use crate::call::state::{CallRecord, Direction, HangupBy, HangupReason, Status};

/// Largest page a list query returns.
pub const MAX_PAGE: usize = 100;

/// A recording's metadata.
#[derive(Debug, Clone)]
pub struct RecordingRow {
    pub id: Uuid,
    pub call_id: Uuid,
    pub format: String,
    pub path: String,
    /// `recording`, `done` or `failed`.
    pub status: String,
    pub rate: i64,
    pub started: DateTime<Utc>,
    pub ended: Option<DateTime<Utc>>,
    pub duration_ms: i64,
}

/// One line of a call's transcript.
#[derive(Debug, Clone)]
pub struct TranscriptRow {
    pub call_id: Uuid,
    pub seq: i64,
    /// `text_bot` (the bot spoke it) or `text_asr` (the caller said it).
    pub kind: String,
    pub text: String,
    pub at: DateTime<Utc>,
}

/// One stored event of a call.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub call_id: Uuid,
    pub event: String,
    pub status: String,
    pub at: DateTime<Utc>,
}

/// Which calls a list query returns; empty fields match anything.
#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    pub reference: Option<String>,
    pub workspace: Option<String>,
    pub status: Option<Status>,
    pub direction: Option<Direction>,
    /// Created at or after.
    pub from: Option<DateTime<Utc>>,
    /// Created before.
    pub to: Option<DateTime<Utc>>,
}

/// Where the next page starts: after this (creation time, id), newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageToken {
    created_us: i64,
    id: Uuid,
}

impl fmt::Display for PageToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.created_us, self.id.simple())
    }
}

impl FromStr for PageToken {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let (us, id) = s.split_once('_').ok_or(())?;
        Ok(PageToken {
            created_us: us.parse().map_err(|_| ())?,
            id: Uuid::parse_str(id).map_err(|_| ())?,
        })
    }
}

fn micros(t: &DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

fn record_json(record: &CallRecord) -> Result<String, sqlx::Error> {
    serde_json::to_string(record).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

fn record_of(row: &AnyRow) -> Result<CallRecord, StoreError> {
    let json = text(row, "record")?;
    serde_json::from_str(&json).map_err(|e| StoreError::Malformed(e.to_string()))
}

const UPSERT_CALL: &str = "INSERT INTO calls \
    (id, owner, reference, workspace, status, direction, created_us, updated_us, record) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
    ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, reference = excluded.reference, \
    workspace = excluded.workspace, status = excluded.status, updated_us = excluded.updated_us, \
    record = excluded.record";

const INSERT_EVENT: &str =
    "INSERT INTO call_events (id, call_id, seq, event, status, at_us, record) \
    VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING";

/// Writes one batch in one transaction.
pub(super) async fn write_batch(
    pool: &AnyPool,
    owner: &str,
    batch: &[&Write],
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    for write in batch {
        match write {
            Write::Call {
                record,
                event,
                seq,
                at,
            } => {
                let json = record_json(record)?;
                upsert_call(&mut tx, owner, record, &json).await?;
                // The event id is derived from the call and sequence, so a retried batch
                // whose commit did land adds nothing twice.
                let event_id = format!("{}-{seq}-{}", record.id.simple(), micros(at));
                sqlx::query(INSERT_EVENT)
                    .bind(event_id)
                    .bind(record.id.to_string())
                    .bind(*seq as i64)
                    .bind(event.to_string())
                    .bind(record.status.as_str().to_owned())
                    .bind(micros(at))
                    .bind(json)
                    .execute(&mut *tx)
                    .await?;
            }
            Write::Transcript(row) => {
                sqlx::query(
                    "INSERT INTO transcripts (id, call_id, seq, kind, text, at_us) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
                )
                .bind(format!("{}-{}", row.call_id.simple(), row.seq))
                .bind(row.call_id.to_string())
                .bind(row.seq)
                .bind(row.kind.clone())
                .bind(row.text.clone())
                .bind(micros(&row.at))
                .execute(&mut *tx)
                .await?;
            }
            Write::Recording(row) => {
                sqlx::query(
                    "INSERT INTO recordings \
                     (id, call_id, format, path, status, rate, started_us, ended_us, duration_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (id) DO UPDATE SET status = excluded.status, \
                     ended_us = excluded.ended_us, duration_ms = excluded.duration_ms, \
                     path = excluded.path",
                )
                .bind(row.id.to_string())
                .bind(row.call_id.to_string())
                .bind(row.format.clone())
                .bind(row.path.clone())
                .bind(row.status.clone())
                .bind(row.rate)
                .bind(micros(&row.started))
                .bind(row.ended.as_ref().map(micros))
                .bind(row.duration_ms)
                .execute(&mut *tx)
                .await?;
            }
            Write::Room(room) => {
                let json =
                    serde_json::to_string(&**room).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
                sqlx::query(
                    "INSERT INTO rooms (id, workspace, status, created_us, updated_us, record) \
                     VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (id) DO UPDATE SET status = excluded.status, \
                     updated_us = excluded.updated_us, record = excluded.record",
                )
                .bind(room.id.to_string())
                .bind(room.workspace.clone())
                .bind(
                    if room.status == crate::room::RoomStatus::Closed {
                        "closed"
                    } else {
                        "active"
                    }
                    .to_owned(),
                )
                .bind(micros(&room.tm_create))
                .bind(micros(&room.tm_update))
                .bind(json)
                .execute(&mut *tx)
                .await?;
            }
            Write::Sync(_) => {}
        }
    }
    tx.commit().await
}

async fn upsert_call(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    owner: &str,
    record: &CallRecord,
    json: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(UPSERT_CALL)
        .bind(record.id.to_string())
        .bind(owner.to_owned())
        .bind(record.reference.clone())
        .bind(record.workspace.clone())
        .bind(record.status.as_str().to_owned())
        .bind(record.direction.as_str().to_owned())
        .bind(micros(&record.tm_create))
        .bind(micros(&record.tm_update))
        .bind(json.to_owned())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

enum Param {
    Text(String),
    Int(i64),
}

/// Note left on calls a crash left open, closed at the next start.
pub const ORPHAN_DETAIL: &str = "the switch stopped without hanging up; closed at restart";

impl Store {
    /// One call by id.
    pub async fn get_call(&self, id: Uuid) -> Result<Option<CallRecord>, StoreError> {
        self.run(move |pool| async move {
            let row = sqlx::query("SELECT record FROM calls WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(&pool)
                .await?;
            row.as_ref().map(record_of).transpose()
        })
        .await
    }

    /// One room by id.
    pub async fn get_room(&self, id: Uuid) -> Result<Option<crate::room::RoomRecord>, StoreError> {
        self.run(move |pool| async move {
            let row = sqlx::query("SELECT record FROM rooms WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(&pool)
                .await?;
            row.as_ref()
                .map(|row| {
                    let json = text(row, "record")?;
                    serde_json::from_str(&json).map_err(|e| StoreError::Malformed(e.to_string()))
                })
                .transpose()
        })
        .await
    }

    /// A page of calls matching `filter`, newest first, and the token of the next page.
    pub async fn list_calls(
        &self,
        filter: CallFilter,
        page_size: usize,
        after: Option<PageToken>,
    ) -> Result<(Vec<CallRecord>, Option<PageToken>), StoreError> {
        let page_size = page_size.clamp(1, MAX_PAGE);
        self.run(move |pool| async move {
            let mut sql = String::from("SELECT created_us, id, record FROM calls WHERE 1 = 1");
            let mut params = Vec::new();
            let mut cond = |sql: &mut String, column: &str, op: &str, p: Param| {
                params.push(p);
                sql.push_str(&format!(" AND {column} {op} ${}", params.len()));
            };
            if let Some(r) = filter.reference {
                cond(&mut sql, "reference", "=", Param::Text(r));
            }
            if let Some(w) = filter.workspace {
                cond(&mut sql, "workspace", "=", Param::Text(w));
            }
            if let Some(s) = filter.status {
                cond(&mut sql, "status", "=", Param::Text(s.as_str().into()));
            }
            if let Some(d) = filter.direction {
                cond(&mut sql, "direction", "=", Param::Text(d.as_str().into()));
            }
            if let Some(from) = filter.from {
                cond(&mut sql, "created_us", ">=", Param::Int(micros(&from)));
            }
            if let Some(to) = filter.to {
                cond(&mut sql, "created_us", "<", Param::Int(micros(&to)));
            }
            if let Some(t) = after {
                let n = params.len();
                sql.push_str(&format!(
                    " AND (created_us < ${} OR (created_us = ${} AND id < ${}))",
                    n + 1,
                    n + 1,
                    n + 2
                ));
                params.push(Param::Int(t.created_us));
                params.push(Param::Text(t.id.to_string()));
            }
            sql.push_str(&format!(
                " ORDER BY created_us DESC, id DESC LIMIT {}",
                page_size + 1
            ));
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for p in params {
                query = match p {
                    Param::Text(s) => query.bind(s),
                    Param::Int(i) => query.bind(i),
                };
            }
            let rows = query.fetch_all(&pool).await?;
            let more = rows.len() > page_size;
            let mut records = Vec::with_capacity(page_size);
            let mut last = None;
            for row in rows.iter().take(page_size) {
                let record = record_of(row)?;
                let id = Uuid::parse_str(&text(row, "id")?)
                    .map_err(|e| StoreError::Malformed(e.to_string()))?;
                last = Some(PageToken {
                    created_us: int(row, "created_us")?,
                    id,
                });
                records.push(record);
            }
            Ok((records, if more { last } else { None }))
        })
        .await
    }

    /// Every stored event of a call, oldest first.
    pub async fn events_of(&self, call_id: Uuid) -> Result<Vec<EventRow>, StoreError> {
        self.run(move |pool| async move {
            let rows = sqlx::query(
                "SELECT event, status, at_us FROM call_events WHERE call_id = $1 \
                 ORDER BY at_us, seq",
            )
            .bind(call_id.to_string())
            .fetch_all(&pool)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok(EventRow {
                        call_id,
                        event: text(row, "event")?,
                        status: text(row, "status")?,
                        at: from_micros(int(row, "at_us")?),
                    })
                })
                .collect()
        })
        .await
    }

    /// A call's recordings, oldest first.
    pub async fn recordings_of(&self, call_id: Uuid) -> Result<Vec<RecordingRow>, StoreError> {
        self.run(move |pool| async move {
            let rows = sqlx::query(
                "SELECT id, call_id, format, path, status, rate, started_us, ended_us, duration_ms \
                 FROM recordings WHERE call_id = $1 ORDER BY started_us",
            )
            .bind(call_id.to_string())
            .fetch_all(&pool)
            .await?;
            rows.iter().map(recording_of).collect()
        })
        .await
    }

    /// A call's transcript, oldest first.
    pub async fn transcript_of(&self, call_id: Uuid) -> Result<Vec<TranscriptRow>, StoreError> {
        self.run(move |pool| async move {
            let rows = sqlx::query(
                "SELECT seq, kind, text, at_us FROM transcripts WHERE call_id = $1 \
                 ORDER BY at_us, seq",
            )
            .bind(call_id.to_string())
            .fetch_all(&pool)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok(TranscriptRow {
                        call_id,
                        seq: int(row, "seq")?,
                        kind: text(row, "kind")?,
                        text: text(row, "text")?,
                        at: from_micros(int(row, "at_us")?),
                    })
                })
                .collect()
        })
        .await
    }

    /// Closes the calls a crash of this switch left open, as `failed`; how many.
    pub async fn close_orphans(&self) -> Result<usize, StoreError> {
        let owner = self.owner.clone();
        Ok(self.close_calls_of(&owner, ORPHAN_DETAIL).await?.len())
    }

    /// Closes the open calls of `owner` (a switch that crashed, or a cluster node that was
    /// lost) as `failed` with `detail`, and answers the records it closed. Each call is closed
    /// once: the row is updated only while it is still open, so two switches closing the same
    /// calls at once close each call once between them, and only the one that closed it gets
    /// its record (and writes its `call_hangup` event).
    pub async fn close_calls_of(
        &self,
        owner: &str,
        detail: &str,
    ) -> Result<Vec<CallRecord>, StoreError> {
        let (owner, detail) = (owner.to_owned(), detail.to_owned());
        self.run(move |pool| async move {
            let rows = sqlx::query("SELECT record FROM calls WHERE owner = $1 AND status <> $2")
                .bind(owner.clone())
                .bind(Status::Hangup.as_str().to_owned())
                .fetch_all(&pool)
                .await?;
            let now = Utc::now();
            let mut closed = Vec::new();
            let mut tx = pool.begin().await?;
            for row in &rows {
                let mut record = record_of(row)?;
                record.hangup_by = Some(HangupBy::Local);
                record.hangup_reason = Some(HangupReason::Failed);
                record.hangup_detail = detail.clone();
                record.status = Status::Hangup;
                record.tm_hangup = Some(now);
                record.tm_update = now;
                record.recording_id = None;
                let json = record_json(&record)?;
                let updated = sqlx::query(
                    "UPDATE calls SET status = $1, updated_us = $2, record = $3 \
                     WHERE id = $4 AND status <> $1",
                )
                .bind(Status::Hangup.as_str().to_owned())
                .bind(micros(&now))
                .bind(json.clone())
                .bind(record.id.to_string())
                .execute(&mut *tx)
                .await?;
                if updated.rows_affected() == 0 {
                    continue;
                }
                sqlx::query(INSERT_EVENT)
                    .bind(format!("{}-orphan-{}", record.id.simple(), micros(&now)))
                    .bind(record.id.to_string())
                    .bind(0i64)
                    .bind("call_hangup".to_owned())
                    .bind(Status::Hangup.as_str().to_owned())
                    .bind(micros(&now))
                    .bind(json)
                    .execute(&mut *tx)
                    .await?;
                closed.push(record);
            }
            tx.commit().await?;
            Ok(closed)
        })
        .await
    }

    /// The owners (switches) that have open calls in the store.
    pub async fn open_owners(&self) -> Result<Vec<String>, StoreError> {
        self.run(move |pool| async move {
            let rows = sqlx::query("SELECT DISTINCT owner FROM calls WHERE status <> $1")
                .bind(Status::Hangup.as_str().to_owned())
                .fetch_all(&pool)
                .await?;
            rows.iter().map(|r| text(r, "owner")).collect()
        })
        .await
    }

    /// The switch that holds (or last held) a call, by the store.
    pub async fn owner_of(&self, id: Uuid) -> Result<Option<String>, StoreError> {
        self.run(move |pool| async move {
            let row = sqlx::query("SELECT owner FROM calls WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(&pool)
                .await?;
            row.as_ref().map(|r| text(r, "owner")).transpose()
        })
        .await
    }
}

fn recording_of(row: &AnyRow) -> Result<RecordingRow, StoreError> {
    let uuid = |column: &str| {
        Uuid::parse_str(&text(row, column)?).map_err(|e| StoreError::Malformed(e.to_string()))
    };
    Ok(RecordingRow {
        id: uuid("id")?,
        call_id: uuid("call_id")?,
        format: text(row, "format")?,
        path: text(row, "path")?,
        status: text(row, "status")?,
        rate: int(row, "rate")?,
        started: from_micros(int(row, "started_us")?),
        ended: sqlx::Row::try_get::<Option<i64>, _>(row, "ended_us")?.map(from_micros),
        duration_ms: int(row, "duration_ms")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_refuse_junk() {
        let t = PageToken {
            created_us: 1_700_000_000_000_000,
            id: Uuid::new_v4(),
        };
        assert_eq!(t.to_string().parse::<PageToken>(), Ok(t));
        for junk in [
            "",
            "zzz",
            "12",
            "12_nope",
            "x_00000000000000000000000000000000",
        ] {
            assert!(junk.parse::<PageToken>().is_err(), "{junk}");
        }
    }
}
