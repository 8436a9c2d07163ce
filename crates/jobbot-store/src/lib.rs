//! jobbot's storage, and the only crate with SQL.
//!
//! - [`ConfigStore`] is the single owner of `configs/channels_config.json`: it loads it, hands out
//!   validated [`Snapshot`]s, refuses stale or invalid writes, writes atomically, and reloads hand
//!   edits without ever writing over a file it could not load.
//! - [`SqliteStore`] implements the core's operational store port, [`jobbot_core::store::Store`]
//!   (the durable outbox now; processed messages, conversations and statistics as later issues
//!   add them). A PostgreSQL backend comes later behind the same trait and runs the same
//!   conformance checks (`tests/store.rs`).
//! - [`MemoryStore`] implements the same port in memory, with the same semantics and the same
//!   conformance checks, for the engine's paused-time tests and benchmarks. It persists nothing.

mod config_store;
mod memory;
mod sqlite;

use std::path::PathBuf;

pub use config_store::{
    ConfigStore, ConfigWatch, MigrationReport, Snapshot, StoreError, migrate_file,
};
pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

/// A failure to open the operational store. Messages name the database file; they never hold
/// connection credentials. (Once open, the store's methods fail with the core's
/// [`jobbot_core::store::StoreError`].)
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
}
