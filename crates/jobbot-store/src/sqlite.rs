//! The SQLite backend of [`Store`]: one file, `<data dir>/jobbot.sqlite`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::{DatabaseError, Store, StoreHealth};

/// The migrations, embedded at compile time so the binary carries its schema.
static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// How long a connection waits for another's write lock before failing with "database is locked".
/// Writes are short; a wait this long means something is stuck, and failing says so.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// SQLite allows one writer at a time; with WAL readers do not block it. A few connections let
/// reads (the web pages) run beside the engine's writes.
const MAX_CONNECTIONS: u32 = 4;

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    path: PathBuf,
}

impl SqliteStore {
    pub const FILE_NAME: &'static str = "jobbot.sqlite";

    /// Opens (creating it and `data_dir` if needed) `data_dir/jobbot.sqlite` and applies the
    /// migrations it has not seen yet.
    pub async fn open(data_dir: impl AsRef<Path>) -> Result<Self, DatabaseError> {
        let data_dir = data_dir.as_ref();
        tokio::fs::create_dir_all(data_dir)
            .await
            .map_err(|source| DatabaseError::DataDirectory {
                path: data_dir.to_owned(),
                source,
            })?;
        let path = data_dir.join(Self::FILE_NAME);
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            // WAL: readers and the writer do not block each other, and a commit is one append.
            .journal_mode(SqliteJournalMode::Wal)
            // In WAL mode NORMAL is safe against corruption; a power cut can lose only the last
            // commits, which the engine redoes (it dedupes by message id). FULL would fsync every
            // commit for little gain here.
            .synchronous(SqliteSynchronous::Normal)
            // SQLite leaves foreign keys off unless asked, per connection.
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(|source| DatabaseError::Open {
                path: path.clone(),
                source,
            })?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|source| DatabaseError::Migrate {
                path: path.clone(),
                source,
            })?;
        Ok(Self { pool, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The version of the newest migration this build carries.
    pub fn latest_schema_version() -> i64 {
        MIGRATOR
            .iter()
            .map(|migration| migration.version)
            .max()
            .unwrap_or(0)
    }

    /// Closes every connection and checkpoints the WAL into the database file.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn health(&self) -> Result<StoreHealth, DatabaseError> {
        let query_error = |source| DatabaseError::Query {
            operation: "check the database's health",
            source,
        };
        let application: Option<String> =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'application'")
                .fetch_optional(&self.pool)
                .await
                .map_err(query_error)?;
        if application.as_deref() != Some("jobbot") {
            return Err(DatabaseError::NotJobbot(format!(
                "{} is not a jobbot database",
                self.path.display()
            )));
        }
        let schema_version: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await
                .map_err(query_error)?;
        Ok(StoreHealth {
            backend: "sqlite",
            schema_version: schema_version.unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// These settings are per connection, so only a connection from the store's own pool shows
    /// them (the journal mode, stored in the file, is checked in `tests/store.rs`).
    #[tokio::test]
    async fn every_connection_has_foreign_keys_normal_sync_and_a_busy_timeout() {
        let directory = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(directory.path()).await.unwrap();
        let mut connection = store.pool.acquire().await.unwrap();
        let check = |pragma: &'static str, expected: i64| (pragma, expected);
        for (pragma, expected) in [
            check("PRAGMA foreign_keys", 1),
            // NORMAL is 1 (OFF 0, FULL 2).
            check("PRAGMA synchronous", 1),
            check("PRAGMA busy_timeout", BUSY_TIMEOUT.as_millis() as i64),
        ] {
            let value: i64 = sqlx::query_scalar(pragma)
                .fetch_one(&mut *connection)
                .await
                .unwrap();
            assert_eq!(value, expected, "{pragma}");
        }
        drop(connection);
        store.close().await;
    }
}
