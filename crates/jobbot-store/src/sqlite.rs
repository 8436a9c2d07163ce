//! The SQLite backend of the core's [`Store`] port: one file, `<data dir>/jobbot.sqlite`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jobbot_core::ids::{ChatId, SessionName};
use jobbot_core::store::{
    Enqueued, NewOutboxMessage, OutboxCounts, OutboxId, OutboxKind, OutboxMessage, OutboxStatus,
    SentRecord, Store, StoreError, StoreHealth, UnixMillis,
};
use jobbot_core::telegram::{RandomId, SentMessage};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, SqliteExecutor};

use crate::DatabaseError;

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

/// Maps a database failure to the core's error, naming what was being done.
fn failed(operation: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |error| StoreError::new(operation, error)
}

/// The columns `read_outbox_row` reads, in one place so every query selects the same.
const OUTBOX_COLUMNS: &str = "id, channel_id, kind, sender, recipient, content, first_contact, \
     idempotency_key, created_at, not_before, expires_at, status, attempts, last_agent, \
     sent_agent, sent_chat, sent_message_id, sent_at, reason, updated_at";

/// SQLite's default `BEGIN` is deferred: a transaction that reads first and writes later can find
/// the database changed under it and fail at once with `SQLITE_BUSY` (the busy timeout does not
/// apply). Taking the write lock up front makes concurrent writers queue instead.
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

fn to_json<T: Serialize>(
    operation: &'static str,
    column: &str,
    value: &T,
) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|error| StoreError::new(operation, format!("could not encode {column}: {error}")))
}

fn column<'r, T>(row: &'r SqliteRow, name: &str) -> Result<T, String>
where
    T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    row.try_get(name)
        .map_err(|error| format!("column {name}: {error}"))
}

fn json_column<T: DeserializeOwned>(row: &SqliteRow, name: &str) -> Result<T, String> {
    let text: String = column(row, name)?;
    serde_json::from_str(&text).map_err(|error| format!("column {name}: {error}"))
}

fn session_column(row: &SqliteRow, name: &str) -> Result<Option<SessionName>, String> {
    column::<Option<String>>(row, name)?
        .map(|text| SessionName::parse(&text).map_err(|error| format!("column {name}: {error}")))
        .transpose()
}

fn parse_status(text: &str) -> Result<OutboxStatus, String> {
    OutboxStatus::parse(text).ok_or_else(|| format!("unknown outbox status {text:?}"))
}

/// Reads one `outbox` row selected with [`OUTBOX_COLUMNS`]. The error says which column is
/// wrong; the caller adds which message and what it was doing.
fn read_outbox_row(row: &SqliteRow) -> Result<OutboxMessage, String> {
    let kind: String = column(row, "kind")?;
    let status: String = column(row, "status")?;
    let attempts: i64 = column(row, "attempts")?;
    let sent = match session_column(row, "sent_agent")? {
        None => None,
        Some(agent) => {
            let chat: i64 = column(row, "sent_chat")?;
            let message_id: i64 = column(row, "sent_message_id")?;
            Some(SentRecord {
                agent,
                message: SentMessage {
                    chat: ChatId::from_bot_api(chat)
                        .ok_or_else(|| format!("column sent_chat: {chat} is not a chat id"))?,
                    message_id: i32::try_from(message_id).map_err(|_| {
                        format!("column sent_message_id: {message_id} is out of range")
                    })?,
                },
                at: UnixMillis(column(row, "sent_at")?),
            })
        }
    };
    Ok(OutboxMessage {
        id: OutboxId(column(row, "id")?),
        message: NewOutboxMessage {
            channel_id: column(row, "channel_id")?,
            kind: OutboxKind::parse(&kind)
                .ok_or_else(|| format!("unknown outbox kind {kind:?}"))?,
            sender: json_column(row, "sender")?,
            recipient: json_column(row, "recipient")?,
            content: json_column(row, "content")?,
            first_contact: column(row, "first_contact")?,
            idempotency_key: column(row, "idempotency_key")?,
            created_at: UnixMillis(column(row, "created_at")?),
            not_before: column::<Option<i64>>(row, "not_before")?.map(UnixMillis),
            expires_at: UnixMillis(column(row, "expires_at")?),
        },
        status: parse_status(&status)?,
        attempts: u32::try_from(attempts)
            .map_err(|_| format!("column attempts: {attempts} is out of range"))?,
        last_agent: session_column(row, "last_agent")?,
        sent,
        reason: column(row, "reason")?,
        updated_at: UnixMillis(column(row, "updated_at")?),
    })
}

fn read_outbox_rows(
    operation: &'static str,
    rows: &[SqliteRow],
) -> Result<Vec<OutboxMessage>, StoreError> {
    rows.iter()
        .map(|row| {
            read_outbox_row(row).map_err(|problem| {
                let id = row.try_get::<i64, _>("id").unwrap_or_default();
                StoreError::new(
                    operation,
                    format!("outbox message #{id} is unreadable: {problem}"),
                )
            })
        })
        .collect()
}

/// Explains why an update that needed a pending message changed nothing: the message is missing,
/// or it already ended (a message ends once).
async fn not_pending<'c>(
    executor: impl SqliteExecutor<'c>,
    operation: &'static str,
    id: OutboxId,
) -> StoreError {
    let status: Result<Option<String>, sqlx::Error> =
        sqlx::query_scalar("SELECT status FROM outbox WHERE id = ?")
            .bind(id.0)
            .fetch_optional(executor)
            .await;
    match status {
        Err(error) => StoreError::new(operation, error),
        Ok(None) => StoreError::new(operation, format!("outbox message {id} does not exist")),
        Ok(Some(status)) => StoreError::new(
            operation,
            format!("outbox message {id} is already {status}, and a message ends only once"),
        ),
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn health(&self) -> Result<StoreHealth, StoreError> {
        let operation = "check the database's health";
        let application: Option<String> =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'application'")
                .fetch_optional(&self.pool)
                .await
                .map_err(failed(operation))?;
        if application.as_deref() != Some("jobbot") {
            return Err(StoreError::new(
                operation,
                format!("{} is not a jobbot database", self.path.display()),
            ));
        }
        let schema_version: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await
                .map_err(failed(operation))?;
        Ok(StoreHealth {
            backend: "sqlite".to_owned(),
            schema_version: schema_version.unwrap_or(0),
        })
    }

    async fn enqueue(&self, message: NewOutboxMessage) -> Result<Enqueued, StoreError> {
        let operation = "enqueue an outbox message";
        let sender = to_json(operation, "the sender", &message.sender)?;
        let recipient = to_json(operation, "the recipient", &message.recipient)?;
        let content = to_json(operation, "the content", &message.content)?;
        let mut transaction = self
            .pool
            .begin_with(BEGIN_WRITE)
            .await
            .map_err(failed(operation))?;
        // A taken key inserts nothing (and a NULL key never conflicts); the SELECT below then
        // finds the holder. Both run under one write lock, so a concurrent enqueue of the same
        // key either inserted before this one (and is found) or waits for it.
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO outbox (channel_id, kind, sender, recipient, content, first_contact, \
                 idempotency_key, created_at, not_before, expires_at, status, attempts, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?) \
             ON CONFLICT (idempotency_key) DO NOTHING \
             RETURNING id",
        )
        .bind(&message.channel_id)
        .bind(message.kind.as_str())
        .bind(sender)
        .bind(recipient)
        .bind(content)
        .bind(message.first_contact)
        .bind(&message.idempotency_key)
        .bind(message.created_at.0)
        .bind(message.not_before.map(|at| at.0))
        .bind(message.expires_at.0)
        .bind(message.created_at.0)
        .fetch_optional(&mut *transaction)
        .await
        .map_err(failed(operation))?;
        let outcome = match inserted {
            Some(id) => Enqueued::New(OutboxId(id)),
            None => {
                let (id, status): (i64, String) =
                    sqlx::query_as("SELECT id, status FROM outbox WHERE idempotency_key = ?")
                        .bind(&message.idempotency_key)
                        .fetch_one(&mut *transaction)
                        .await
                        .map_err(failed(operation))?;
                let status =
                    parse_status(&status).map_err(|problem| StoreError::new(operation, problem))?;
                Enqueued::Existing(OutboxId(id), status)
            }
        };
        transaction.commit().await.map_err(failed(operation))?;
        Ok(outcome)
    }

    async fn pending_outbox(&self) -> Result<Vec<OutboxMessage>, StoreError> {
        let operation = "read the pending outbox";
        let rows = sqlx::query(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE status = 'pending' ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(failed(operation))?;
        read_outbox_rows(operation, &rows)
    }

    async fn outbox_message(&self, id: OutboxId) -> Result<Option<OutboxMessage>, StoreError> {
        let operation = "read an outbox message";
        let row = sqlx::query(&format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = ?"))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(failed(operation))?;
        Ok(read_outbox_rows(operation, row.as_slice())?.pop())
    }

    async fn begin_attempt(
        &self,
        id: OutboxId,
        agent: &SessionName,
        proposed: RandomId,
        at: UnixMillis,
    ) -> Result<RandomId, StoreError> {
        let operation = "begin a send attempt";
        let mut transaction = self
            .pool
            .begin_with(BEGIN_WRITE)
            .await
            .map_err(failed(operation))?;
        let counted = sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, last_agent = ?, updated_at = ? \
             WHERE id = ? AND status = 'pending'",
        )
        .bind(agent.as_str())
        .bind(at.0)
        .bind(id.0)
        .execute(&mut *transaction)
        .await
        .map_err(failed(operation))?;
        if counted.rows_affected() == 0 {
            // Dropping the transaction rolls it back; it changed nothing anyway.
            return Err(not_pending(&mut *transaction, operation, id).await);
        }
        // The first id this agent was given wins: re-sending with it lets Telegram drop the
        // duplicate if the earlier attempt did get through.
        sqlx::query(
            "INSERT INTO outbox_attempts (outbox_id, agent, random_id, first_attempt_at) \
             VALUES (?, ?, ?, ?) ON CONFLICT (outbox_id, agent) DO NOTHING",
        )
        .bind(id.0)
        .bind(agent.as_str())
        .bind(proposed.0)
        .bind(at.0)
        .execute(&mut *transaction)
        .await
        .map_err(failed(operation))?;
        let random_id: i64 = sqlx::query_scalar(
            "SELECT random_id FROM outbox_attempts WHERE outbox_id = ? AND agent = ?",
        )
        .bind(id.0)
        .bind(agent.as_str())
        .fetch_one(&mut *transaction)
        .await
        .map_err(failed(operation))?;
        transaction.commit().await.map_err(failed(operation))?;
        Ok(RandomId(random_id))
    }

    async fn note_error(
        &self,
        id: OutboxId,
        reason: &str,
        at: UnixMillis,
    ) -> Result<(), StoreError> {
        let operation = "note an outbox error";
        let noted = sqlx::query(
            "UPDATE outbox SET reason = ?, updated_at = ? WHERE id = ? AND status = 'pending'",
        )
        .bind(reason)
        .bind(at.0)
        .bind(id.0)
        .execute(&self.pool)
        .await
        .map_err(failed(operation))?;
        if noted.rows_affected() == 0 {
            return Err(not_pending(&self.pool, operation, id).await);
        }
        Ok(())
    }

    async fn mark_sent(
        &self,
        id: OutboxId,
        agent: &SessionName,
        sent: SentMessage,
        at: UnixMillis,
    ) -> Result<(), StoreError> {
        let operation = "mark an outbox message sent";
        let marked = sqlx::query(
            "UPDATE outbox SET status = 'sent', sent_agent = ?, sent_chat = ?, \
                 sent_message_id = ?, sent_at = ?, updated_at = ? \
             WHERE id = ? AND status = 'pending'",
        )
        .bind(agent.as_str())
        .bind(sent.chat.get())
        .bind(sent.message_id)
        .bind(at.0)
        .bind(at.0)
        .bind(id.0)
        .execute(&self.pool)
        .await
        .map_err(failed(operation))?;
        if marked.rows_affected() == 0 {
            return Err(not_pending(&self.pool, operation, id).await);
        }
        Ok(())
    }

    async fn mark_final(
        &self,
        id: OutboxId,
        status: OutboxStatus,
        reason: &str,
        at: UnixMillis,
    ) -> Result<(), StoreError> {
        let operation = "end an outbox message";
        match status {
            OutboxStatus::Failed | OutboxStatus::Expired => {}
            OutboxStatus::Pending => {
                return Err(StoreError::new(
                    operation,
                    format!("{id} cannot end as pending; use failed or expired"),
                ));
            }
            OutboxStatus::Sent => {
                return Err(StoreError::new(
                    operation,
                    format!("{id} cannot end as sent without its sent record; use mark_sent"),
                ));
            }
        }
        let ended = sqlx::query(
            "UPDATE outbox SET status = ?, reason = ?, updated_at = ? \
             WHERE id = ? AND status = 'pending'",
        )
        .bind(status.as_str())
        .bind(reason)
        .bind(at.0)
        .bind(id.0)
        .execute(&self.pool)
        .await
        .map_err(failed(operation))?;
        if ended.rows_affected() == 0 {
            return Err(not_pending(&self.pool, operation, id).await);
        }
        Ok(())
    }

    async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        let operation = "count the outbox";
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM outbox GROUP BY status")
                .fetch_all(&self.pool)
                .await
                .map_err(failed(operation))?;
        let mut counts = OutboxCounts::default();
        for (status, count) in rows {
            let count = u64::try_from(count).unwrap_or_default();
            match parse_status(&status).map_err(|problem| StoreError::new(operation, problem))? {
                OutboxStatus::Pending => counts.pending = count,
                OutboxStatus::Sent => counts.sent = count,
                OutboxStatus::Failed => counts.failed = count,
                OutboxStatus::Expired => counts.expired = count,
            }
        }
        Ok(counts)
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
