//! The schema, as migrations compiled into the binary and applied at start-up.

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, SqlSafeStr};

use super::StoreError;

/// Every migration, oldest first: (version, description, SQL).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "calls, events, recordings, transcripts",
        include_str!("../../migrations/0001_calls.sql"),
    ),
    (
        2,
        "conference rooms",
        include_str!("../../migrations/0002_rooms.sql"),
    ),
];

/// Applies the migrations the database has not seen yet.
pub async fn migrate(pool: &AnyPool) -> Result<(), StoreError> {
    let migrations = MIGRATIONS
        .iter()
        .map(|(version, description, sql)| {
            Migration::new(
                *version,
                Cow::Borrowed(*description),
                MigrationType::Simple,
                sql.into_sql_str(),
                false,
            )
        })
        .collect();
    Migrator::with_migrations(migrations).run(pool).await?;
    Ok(())
}
