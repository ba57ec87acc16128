-- Call records, their events, recordings and transcripts. Portable SQL: SQLite and PostgreSQL.
CREATE TABLE IF NOT EXISTS calls (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    reference TEXT NOT NULL,
    workspace TEXT NOT NULL,
    status TEXT NOT NULL,
    direction TEXT NOT NULL,
    created_us BIGINT NOT NULL,
    updated_us BIGINT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_by_created ON calls (created_us, id);
CREATE INDEX IF NOT EXISTS calls_by_reference ON calls (reference);
CREATE INDEX IF NOT EXISTS calls_by_owner ON calls (owner, status);
CREATE TABLE IF NOT EXISTS call_events (
    id TEXT PRIMARY KEY,
    call_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    event TEXT NOT NULL,
    status TEXT NOT NULL,
    at_us BIGINT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS call_events_by_call ON call_events (call_id, at_us, seq);
CREATE TABLE IF NOT EXISTS recordings (
    id TEXT PRIMARY KEY,
    call_id TEXT NOT NULL,
    format TEXT NOT NULL,
    path TEXT NOT NULL,
    status TEXT NOT NULL,
    rate BIGINT NOT NULL,
    started_us BIGINT NOT NULL,
    ended_us BIGINT,
    duration_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS recordings_by_call ON recordings (call_id, started_us);
CREATE TABLE IF NOT EXISTS transcripts (
    id TEXT PRIMARY KEY,
    call_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    text TEXT NOT NULL,
    at_us BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS transcripts_by_call ON transcripts (call_id, at_us, seq);
