//! jobbot's storage, and the only crate with SQL.
//!
//! - [`ConfigStore`] is the single owner of `configs/channels_config.json`: it loads it, hands out
//!   validated [`Snapshot`]s, refuses stale or invalid writes, writes atomically, and reloads hand
//!   edits without ever writing over a file it could not load.
//! - [`Store`] is the operational store (processed messages, outbox, conversations, statistics as
//!   later issues add them), with [`SqliteStore`] as its first backend. A PostgreSQL backend comes
//!   later behind the same trait and runs the same conformance checks.

mod config_store;
mod sqlite;

use std::path::PathBuf;

pub use config_store::{
    ConfigStore, ConfigWatch, MigrationReport, Snapshot, StoreError, migrate_file,
};
pub use sqlite::SqliteStore;

/// The operational store: everything the engine persists that is not configuration.
///
/// Each later issue adds the methods it needs (marking messages processed, the outbox,
/// conversations, statistics) here and implements them in every backend; keep methods
/// domain-shaped (`mark_processed(channel, message)`), never SQL-shaped, so backends stay
/// interchangeable and SQL stays in this crate. Callers hold an `Arc<dyn Store>`.
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// Checks that the database answers and has jobbot's schema. For health pages and startup
    /// self-checks.
    async fn health(&self) -> Result<StoreHealth, DatabaseError>;
}

/// What [`Store::health`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreHealth {
    /// `"sqlite"` or `"postgres"`.
    pub backend: &'static str,
    /// The version of the last migration applied.
    pub schema_version: i64,
}

/// A failure of the operational store. Messages name the database file; they never hold
/// connection credentials.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("could not create the data directory {path}: {source}")]
    DataDirectory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not open the database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: sqlx::Error,
    },
    #[error("could not bring the database {path} up to date: {source}")]
    Migrate {
        path: PathBuf,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// `operation` says what was being done, e.g. "check health".
    #[error("could not {operation}: {source}")]
    Query {
        operation: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// The database answered but is not a jobbot database (or its schema is missing).
    #[error("{0}")]
    NotJobbot(String),
}
