//! jobbot's storage, and the only crate with SQL.
//!
//! - [`ConfigStore`] is the single owner of the configuration document (`configs/channels_config.json`,
//!   or a row in PostgreSQL shared by every node): it loads it, hands out validated [`Snapshot`]s,
//!   refuses stale or invalid writes, writes atomically, and reloads hand edits (or another
//!   node's writes, announced with `NOTIFY`) without ever writing over a document it could not
//!   load.
//! - [`PostgresStore`] is also the [`jobbot_core::store::SessionVault`] of a node on PostgreSQL:
//!   the sealed Telegram sessions.
//! - [`SqliteStore`] implements the core's operational store port, [`jobbot_core::store::Store`]:
//!   the durable outbox, processed messages and repost claims, CRM conversations with their
//!   relay records, workflows, pauses, statistics, web sessions and API tokens.
//! - [`PostgresStore`] implements the same port on PostgreSQL, with the same tables and the same
//!   row reading (`rows.rs`), and passes the same conformance checks (`tests/store.rs`).
//! - All of them also implement the core's [`jobbot_core::ai::knowledge::KnowledgeIndex`]: the
//!   AI's knowledge files, searched with SQLite FTS5, PostgreSQL full-text search, or BM25 in
//!   memory.
//! - All of them also implement the core's [`jobbot_core::ai::AiStore`]: each conversation's AI
//!   record (state, history, pending suggestion, counters), written with a version check.
//! - [`MemoryStore`] implements the same port in memory, with the same semantics and the same
//!   conformance checks, for the engine's paused-time tests and benchmarks. It persists nothing.
//! - [`ScratchDatabase`]: a PostgreSQL database of a benchmark's own (created, its transactions
//!   counted from `pg_stat_database`, dropped).

mod ai_state;
mod claims;
mod cluster_feed;
mod config_store;
mod knowledge;
mod leases;
pub mod legacy_files;
mod memory;
mod postgres;
mod postgres_documents;
pub mod pyrogram;
mod rows;
mod scratch;
mod sqlite;
pub mod telethon;

use std::path::PathBuf;

use jobbot_core::ids::{ChatId, SessionName};
use jobbot_core::store::{ConversationId, OutboxId, StoreError as PortError, WorkflowId};
use jobbot_core::telegram::TopicId;

pub use cluster_feed::{ClusterEvent, ClusterFeed};
pub use config_store::{
    ConfigStore, ConfigWatch, MigrationReport, Snapshot, StoreError, migrate_file,
};
pub use memory::MemoryStore;
pub use postgres::PostgresStore;
pub use scratch::{ScratchDatabase, ScratchError};
pub use sqlite::{Durability, SqliteStore};

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
    #[error(
        "the database URL's scheme {scheme:?} is not PostgreSQL's: give \
         postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
    )]
    NotPostgres { scheme: String },
    /// The database URL does not parse (the message describes the problem, not the URL, which
    /// may hold a password).
    #[error("the database URL is not a valid PostgreSQL URL: {source}")]
    InvalidUrl {
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "the schema name {schema:?} is not a plain identifier (lower-case letters, digits and \
         underscores, at most 63, not starting with a digit)"
    )]
    InvalidSchema { schema: String },
    #[error("could not connect to the database {database}: {source}")]
    Connect {
        database: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("could not bring the database {database} up to date: {source}")]
    MigrateDatabase {
        database: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
}

/// How many rows a listing (`vacancies`, `agent_events`) returns when its limit is 0.
pub const DEFAULT_PAGE_SIZE: u32 = 50;

/// The most rows one listing returns, whatever it asks for: a page is for reading, and paging
/// (`before_id`) reaches the rest.
pub const MAX_PAGE_SIZE: u32 = 500;

/// The number of rows a listing asked for `limit` returns.
pub fn page_size(limit: u32) -> u32 {
    match limit {
        0 => DEFAULT_PAGE_SIZE,
        limit => limit.min(MAX_PAGE_SIZE),
    }
}

/// The refusals both backends share, in one place so they say the same words (the engine's
/// tests run on the memory store and may match on them).
fn no_conversation(operation: &'static str, id: ConversationId) -> PortError {
    PortError::new(operation, format!("conversation #{} does not exist", id.0))
}

fn no_outbox_message(operation: &'static str, id: OutboxId) -> PortError {
    PortError::new(operation, format!("outbox message {id} does not exist"))
}

fn never_attempted(operation: &'static str, id: OutboxId, agent: &SessionName) -> PortError {
    PortError::new(
        operation,
        format!("{id} was never attempted on {agent}, so it cannot be in doubt there"),
    )
}

fn no_workflow(operation: &'static str, id: WorkflowId) -> PortError {
    PortError::new(operation, format!("workflow #{} does not exist", id.0))
}

fn finished_workflow(operation: &'static str, id: WorkflowId) -> PortError {
    PortError::new(
        operation,
        format!(
            "workflow #{} has finished, and a finished workflow stays so",
            id.0
        ),
    )
}

fn topic_taken(
    operation: &'static str,
    group: ChatId,
    topic: TopicId,
    holder: ConversationId,
) -> PortError {
    PortError::new(
        operation,
        format!(
            "topic {} of group {group} already belongs to conversation #{}",
            topic.0, holder.0
        ),
    )
}

fn session_taken(operation: &'static str) -> PortError {
    PortError::new(operation, "a session with this id exists")
}

fn token_taken(operation: &'static str, id: &str) -> PortError {
    PortError::new(
        operation,
        format!("a token with id {id:?} or with this value exists"),
    )
}
