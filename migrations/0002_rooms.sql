-- Conference rooms (their live participants are in the record). Portable SQL: SQLite and PostgreSQL.
CREATE TABLE IF NOT EXISTS rooms (
    id TEXT PRIMARY KEY,
    workspace TEXT NOT NULL,
    status TEXT NOT NULL,
    created_us BIGINT NOT NULL,
    updated_us BIGINT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS rooms_by_workspace ON rooms (workspace, created_us);
