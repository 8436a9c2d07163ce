//! The SQLite backend of the core's [`Store`] port: one file, `<data dir>/jobbot.sqlite`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jobbot_core::cluster::{FencingToken, LeaseRecord, NodeId, NodeRecord};
use jobbot_core::ids::{ChatId, SessionName, Username};
use jobbot_core::scheduling::LearnedLimits;
use jobbot_core::store::{
    AgentEventRecord, ApiTokenRecord, Conversation, ConversationId, Enqueued, Holdup,
    IntakeOutcome, NewConversation, NewOutboxMessage, NewWorkflow, OutboxCounts, OutboxEnd,
    OutboxId, OutboxMessage, OutboxStats, ProcessedMessage, RelayRecord, SecretDigest, Store,
    StoreError, StoreHealth, UnixMillis, VacancyIntake, VacancyQuery, VacancyRecord, WebSession,
    WorkflowId, WorkflowRecord,
};
use jobbot_core::telegram::{PeerRef, RandomId, SentMessage, TopicId};
use jobbot_core::workflow::Workflow;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqliteExecutor};

use crate::rows::{
    API_TOKEN_COLUMNS, CONVERSATION_COLUMNS, HOUR_MILLIS, OUTBOX_COLUMNS, VACANCY_COLUMNS,
    WORKFLOW_COLUMNS, agent_names, failed, is_unique_violation, outbox_counts_from,
    outbox_stats_from, parse_status, read_agent_event, read_api_token, read_conversations,
    read_learned_limits, read_outbox_rows, read_row, read_rows, read_vacancy_row, read_web_session,
    read_workflow_row, relay_direction_text, to_json,
};
use crate::{
    DatabaseError, finished_workflow, never_attempted, no_conversation, no_outbox_message,
    no_workflow, page_size, session_taken, token_taken, topic_taken,
};
use crate::{claims, leases};

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
    pub(crate) pool: SqlitePool,
    path: PathBuf,
}

/// When a commit counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// On disk when the commit returns (`synchronous=FULL`): what jobbot runs with. Several
    /// commits record what already happened in Telegram (an attempt begun before its send, a
    /// message marked sent), and losing one to a power cut could send a message twice.
    Full,
    /// `synchronous=NORMAL`: a power cut may lose the last commits. Only for `jobbot bench
    /// store`, to measure what `Full` costs.
    Normal,
}

impl SqliteStore {
    pub const FILE_NAME: &'static str = "jobbot.sqlite";

    /// Opens (creating it and `data_dir` if needed) `data_dir/jobbot.sqlite` and applies the
    /// migrations it has not seen yet.
    pub async fn open(data_dir: impl AsRef<Path>) -> Result<Self, DatabaseError> {
        Self::open_with(data_dir, Durability::Full).await
    }

    /// [`SqliteStore::open`] with a chosen durability.
    pub async fn open_with(
        data_dir: impl AsRef<Path>,
        durability: Durability,
    ) -> Result<Self, DatabaseError> {
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
            // See `Durability`; ARCHITECTURE.md has the measurement (`jobbot bench store`).
            .synchronous(match durability {
                Durability::Full => SqliteSynchronous::Full,
                Durability::Normal => SqliteSynchronous::Normal,
            })
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

/// SQLite's default `BEGIN` is deferred: a transaction that reads first and writes later can find
/// the database changed under it and fail at once with `SQLITE_BUSY` (the busy timeout does not
/// apply). Taking the write lock up front makes concurrent writers queue instead.
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

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

/// Whether conversation `id` exists, read inside the caller's transaction.
async fn conversation_exists<'c>(
    executor: impl SqliteExecutor<'c>,
    operation: &'static str,
    id: ConversationId,
) -> Result<bool, StoreError> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM conversations WHERE id = ?")
        .bind(id.0)
        .fetch_optional(executor)
        .await
        .map_err(failed(operation))?;
    Ok(found.is_some())
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
        let mut transaction = self
            .pool
            .begin_with(BEGIN_WRITE)
            .await
            .map_err(failed(operation))?;
        let outcome = enqueue_in(&mut transaction, operation, &message).await?;
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

    async fn outbox_by_key(&self, key: &str) -> Result<Option<OutboxMessage>, StoreError> {
        let operation = "find a message by its key";
        let row = sqlx::query(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE idempotency_key = ?"
        ))
        .bind(key)
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
            "UPDATE outbox SET attempts = attempts + 1, last_agent = ?, in_doubt_agent = ?, \
                 updated_at = ? \
             WHERE id = ? AND status = 'pending'",
        )
        .bind(agent.as_str())
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
        let random_id = claims::attempt_random_id::<sqlx::Sqlite>(
            &mut transaction,
            operation,
            id,
            agent,
            proposed,
            at,
        )
        .await?;
        transaction.commit().await.map_err(failed(operation))?;
        Ok(random_id)
    }

    async fn note_holdup(
        &self,
        id: OutboxId,
        holdup: &Holdup,
        at: UnixMillis,
    ) -> Result<(), StoreError> {
        let operation = "note what holds a message up";
        let text = to_json(operation, "the holdup", holdup)?;
        // A refusal by the in-doubt agent settles the doubt; being in doubt sets it; waiting
        // leaves it as it is.
        let (effect, agent) = match holdup {
            Holdup::Refused { agent, .. } | Holdup::NotAttempted { agent } => {
                ("refused", Some(agent))
            }
            Holdup::InDoubt { agent, .. } => ("in_doubt", Some(agent)),
            Holdup::Waiting { .. } => ("waiting", None),
        };
        let mut transaction = self
            .pool
            .begin_with(BEGIN_WRITE)
            .await
            .map_err(failed(operation))?;
        let noted = sqlx::query(
            "UPDATE outbox SET holdup = ?1, updated_at = ?2, in_doubt_agent = CASE ?5 \
                 WHEN 'refused' THEN \
                     CASE WHEN in_doubt_agent = ?4 THEN NULL ELSE in_doubt_agent END \
                 WHEN 'in_doubt' THEN ?4 \
                 ELSE in_doubt_agent END \
             WHERE id = ?3 AND status = 'pending'",
        )
        .bind(text)
        .bind(at.0)
        .bind(id.0)
        .bind(agent.map(SessionName::as_str))
        .bind(effect)
        .execute(&mut *transaction)
        .await
        .map_err(failed(operation))?;
        if noted.rows_affected() == 0 {
            return Err(not_pending(&mut *transaction, operation, id).await);
        }
        if let Holdup::InDoubt { agent, .. } = holdup {
            // In doubt means an attempt was made there, with its random id on record.
            let attempted: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM outbox_attempts WHERE outbox_id = ? AND agent = ?",
            )
            .bind(id.0)
            .bind(agent.as_str())
            .fetch_optional(&mut *transaction)
            .await
            .map_err(failed(operation))?;
            if attempted.is_none() {
                return Err(never_attempted(operation, id, agent));
            }
        }
        transaction.commit().await.map_err(failed(operation))?;
        Ok(())
    }

    async fn mark_sent(
        &self,
        id: OutboxId,
        agent: &SessionName,
        message: Option<SentMessage>,
        at: UnixMillis,
    ) -> Result<(), StoreError> {
        let operation = "mark an outbox message sent";
        let marked = sqlx::query(
            "UPDATE outbox SET status = 'sent', sent_agent = ?, sent_chat = ?, \
                 sent_message_id = ?, sent_at = ?, in_doubt_agent = NULL, updated_at = ? \
             WHERE id = ? AND status = 'pending'",
        )
        .bind(agent.as_str())
        .bind(message.map(|sent| sent.chat.get()))
        .bind(message.map(|sent| sent.message_id))
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

    async fn mark_ended(
        &self,
        id: OutboxId,
        end: &OutboxEnd,
        at: UnixMillis,
    ) -> Result<(), StoreError> {
        let operation = "end an outbox message";
        let text = to_json(operation, "the end", end)?;
        let ended = sqlx::query(
            "UPDATE outbox SET status = ?, end_reason = ?, in_doubt_agent = NULL, updated_at = ? \
             WHERE id = ? AND status = 'pending'",
        )
        .bind(end.status().as_str())
        .bind(text)
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

    async fn ended_outbox(
        &self,
        since: UnixMillis,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let operation = "list the messages that ended undelivered";
        let rows = sqlx::query(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox \
             WHERE status IN ('failed', 'expired') AND updated_at >= ? \
             ORDER BY updated_at DESC, id DESC LIMIT ?"
        ))
        .bind(since.0)
        .bind(i64::from(page_size(limit)))
        .fetch_all(&self.pool)
        .await
        .map_err(failed(operation))?;
        read_outbox_rows(operation, &rows)
    }

    async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        let operation = "count the outbox";
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM outbox GROUP BY status")
                .fetch_all(&self.pool)
                .await
                .map_err(failed(operation))?;
        outbox_counts_from(operation, rows)
    }

    async fn record_processed(&self, message: &ProcessedMessage) -> Result<bool, StoreError> {
        let operation = "record a processed message";
        let mut transaction = self
            .pool
            .begin_with(BEGIN_WRITE)
            .await
            .map_err(failed(operation))?;
        let inserted = insert_processed_in(&mut transaction, operation, message).await?;
        transaction.commit().await.map_err(failed(operation))?;
        Ok(inserted)
    }

    async fn take_in_vacancy(&self, intake: &VacancyIntake) -> Result<IntakeOutcome, StoreError> {
        let operation = "take in a vacancy";
        let message = &intake.message;
        let mut transaction = self
            .pool
            .begin_with(BEGIN_WRITE)
            .await
            .map_err(failed(operation))?;
        let seen: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM processed_messages WHERE source = ? AND message_id = ?",
        )
        .bind(message.source.get())
        .bind(message.message_id)
        .fetch_optional(&mut *transaction)
        .await
        .map_err(failed(operation))?;
        if seen.is_some() {
            return Ok(IntakeOutcome::AlreadyProcessed);
        }
        let mut record = message.clone();
        let mut notified = Vec::new();
        let mut reposts = Vec::new();
        let mut workflows = Vec::new();
        for channel in &intake.channels {
            let claimed = claim_in(
                &mut transaction,
                &channel.channel_id,
                &message.text_hash,
                intake.window_start,
                message.processed_at,
            )
            .await?;
            for matched in record
                .matched
                .iter_mut()
                .filter(|matched| matched.channel_id == channel.channel_id)
            {
                matched.notified = claimed;
            }
            if !claimed {
                reposts.push(channel.channel_id.clone());
                continue;
            }
            let enqueued = enqueue_in(&mut transaction, operation, &channel.notification).await?;
            notified.push((channel.channel_id.clone(), enqueued));
            for workflow in &channel.workflows {
                let (id, _) = start_workflow_in(&mut transaction, operation, workflow).await?;
                workflows.push(id);
            }
        }
        insert_processed_in(&mut transaction, operation, &record).await?;
        transaction.commit().await.map_err(failed(operation))?;
        Ok(IntakeOutcome::Processed {
            notified,
            reposts,
            workflows,
        })
    }

    async fn is_processed(&self, source: ChatId, message_id: i32) -> Result<bool, StoreError> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM processed_messages WHERE source = ? AND message_id = ?",
        )
        .bind(source.get())
        .bind(message_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(failed("check whether a message was processed"))?;
        Ok(found.is_some())
    }

    async fn claim_notification(
        &self,
        channel_id: &str,
        text_hash: &str,
        window_start: UnixMillis,
        at: UnixMillis,
    ) -> Result<bool, StoreError> {
        let mut connection = self
            .pool
            .acquire()
            .await
            .map_err(failed("claim a notification"))?;
        claim_in(&mut connection, channel_id, text_hash, window_start, at).await
    }

    async fn vacancies(&self, query: &VacancyQuery) -> Result<Vec<VacancyRecord>, StoreError> {
        let operation = "list vacancies";
        let mut select = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {VACANCY_COLUMNS} FROM processed_messages WHERE 1 = 1"
        ));
        if let Some(status) = query.status {
            select.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(channel_id) = &query.channel_id {
            select
                .push(" AND id IN (SELECT processed_id FROM vacancy_channels WHERE channel_id = ")
                .push_bind(channel_id.as_str())
                .push(")");
        }
        if let Some(before_id) = query.before_id {
            select.push(" AND id < ").push_bind(before_id);
        }
        select
            .push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(page_size(query.limit)));
        let rows = select
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(failed(operation))?;
        read_rows(operation, "processed message", &rows, read_vacancy_row)
    }

    async fn open_conversation(
        &self,
        new: &NewConversation,
    ) -> Result<(Conversation, bool), StoreError> {
        let operation = "open a conversation";
        let mut transaction = self
            .pool
            .begin_with(BEGIN_WRITE)
            .await
            .map_err(failed(operation))?;
        // An existing conversation keeps everything, its agent above all: the contact already
        // talks to that account. The SELECT runs under the same write lock, so a concurrent open
        // either inserted first (and is found) or waits.
        let inserted = sqlx::query(
            "INSERT INTO conversations (channel_id, group_id, topic_id, contact, \
                 contact_username, contact_name, agent, contact_peer_id, \
                 contact_peer_access_hash, contact_author, status, created_at, last_message_at) \
             VALUES (?, ?, NULL, ?, ?, ?, ?, ?, ?, ?, 'active', ?, ?) \
             ON CONFLICT (group_id, contact) DO NOTHING",
        )
        .bind(&new.channel_id)
        .bind(new.group.get())
        .bind(new.contact.get())
        .bind(new.contact_username.as_ref().map(Username::as_str))
        .bind(&new.contact_name)
        .bind(new.agent.as_str())
        .bind(new.contact_peer.map(|peer| peer.id.get()))
        .bind(new.contact_peer.map(|peer| peer.access_hash))
        .bind(
            new.contact_author
                .as_ref()
                .map(|author| to_json(operation, "contact_author", author))
                .transpose()?,
        )
        .bind(new.created_at.0)
        .bind(new.created_at.0)
        .execute(&mut *transaction)
        .await
        .map_err(failed(operation))?;
        let rows = sqlx::query(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE group_id = ? AND contact = ?"
        ))
        .bind(new.group.get())
        .bind(new.contact.get())
        .fetch_all(&mut *transaction)
        .await
        .map_err(failed(operation))?;
        transaction.commit().await.map_err(failed(operation))?;
        let conversation = read_conversations(operation, &rows)?
            .pop()
            .ok_or_else(|| StoreError::new(operation, "the conversation vanished"))?;
        Ok((conversation, inserted.rows_affected() > 0))
    }

    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>, StoreError> {
        let operation = "read a conversation";
        let rows = sqlx::query(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = ?"
        ))
        .bind(id.0)
        .fetch_all(&self.pool)
        .await
        .map_err(failed(operation))?;
        Ok(read_conversations(operation, &rows)?.pop())
    }

    async fn conversation_by_contact(
        &self,
        group: ChatId,
        contact: ChatId,
    ) -> Result<Option<Conversation>, StoreError> {
        let operation = "find a contact's conversation";
        let rows = sqlx::query(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE group_id = ? AND contact = ?"
        ))
        .bind(group.get())
        .bind(contact.get())
        .fetch_all(&self.pool)
        .await
        .map_err(failed(operation))?;
        Ok(read_conversations(operation, &rows)?.pop())
    }

    async fn conversation_by_topic(
        &self,
        group: ChatId,
        topic: TopicId,
    ) -> Result<Option<Conversation>, StoreError> {
        let operation = "find a topic's conversation";
        let rows = sqlx::query(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE group_id = ? AND topic_id = ?"
        ))
        .bind(group.get())
        .bind(topic.0)
        .fetch_all(&self.pool)
        .await
        .map_err(failed(operation))?;
        Ok(read_conversations(operation, &rows)?.pop())
    }

    async fn remember_contact_peer(
        &self,
        id: ConversationId,
        peer: PeerRef,
    ) -> Result<bool, StoreError> {
        let operation = "remember a contact's peer";
        let updated = sqlx::query(
            "UPDATE conversations SET contact_peer_id = ?, contact_peer_access_hash = ? \
             WHERE id = ? AND contact = ? AND contact_peer_id IS NULL",
        )
        .bind(peer.id.get())
        .bind(peer.access_hash)
        .bind(id.0)
        .bind(peer.id.get())
        .execute(&self.pool)
        .await
        .map_err(failed(operation))?;
        Ok(updated.rows_affected() == 1)
    }

    async fn conversations_with_contact(
        &self,
        agent: &SessionName,
        contact: ChatId,
    ) -> Result<Vec<Conversation>, StoreError> {
        let operation = "list a contact's conversations";
        let rows = sqlx::query(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations \
             WHERE agent = ? AND contact = ? AND status = 'active' ORDER BY id"
        ))
        .bind(agent.as_str())
        .bind(contact.get())
        .fetch_all(&self.pool)
        .await
        .map_err(failed(operation))?;
        read_conversations(operation, &rows)
    }

    async fn begin_topic_creation(
        &self,
        id: ConversationId,
        replacing: Option<TopicId>,
        creator: &SessionName,
        proposed: RandomId,
    ) -> Result<RandomId, StoreError> {
        let operation = "record a topic creation";
        let mut transaction = self
            .pool
            .begin_with(BEGIN_WRITE)
            .await
            .map_err(failed(operation))?;
        if !conversation_exists(&mut *transaction, operation, id).await? {
            return Err(no_conversation(operation, id));
        }
        let replacing = replacing.map_or(0, |topic| topic.0);
        // The first id this creator was given wins, as for sends.
        sqlx::query(
            "INSERT INTO topic_attempts (conversation_id, replacing, creator, random_id) \
             VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(id.0)
        .bind(replacing)
        .bind(creator.as_str())
        .bind(proposed.0)
        .execute(&mut *transaction)
        .await
        .map_err(failed(operation))?;
        let random_id: i64 = sqlx::query_scalar(
            "SELECT random_id FROM topic_attempts \
             WHERE conversation_id = ? AND replacing = ? AND creator = ?",
        )
        .bind(id.0)
        .bind(replacing)
        .bind(creator.as_str())
        .fetch_one(&mut *transaction)
        .await
        .map_err(failed(operation))?;
        transaction.commit().await.map_err(failed(operation))?;
        Ok(RandomId(random_id))
    }

    async fn set_conversation_topic(
        &self,
        id: ConversationId,
        topic: Option<TopicId>,
    ) -> Result<(), StoreError> {
        let operation = "set a conversation's topic";
        let mut transaction = self
            .pool
            .begin_with(BEGIN_WRITE)
            .await
            .map_err(failed(operation))?;
        let group: Option<i64> =
            sqlx::query_scalar("SELECT group_id FROM conversations WHERE id = ?")
                .bind(id.0)
                .fetch_optional(&mut *transaction)
                .await
                .map_err(failed(operation))?;
        let Some(group) = group else {
            return Err(no_conversation(operation, id));
        };
        if let Some(topic) = topic {
            // The unique index refuses a topic held by another conversation too; asking first
            // says which one, in the words the memory store uses.
            let holder: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM conversations WHERE group_id = ? AND topic_id = ? AND id != ?",
            )
            .bind(group)
            .bind(topic.0)
            .bind(id.0)
            .fetch_optional(&mut *transaction)
            .await
            .map_err(failed(operation))?;
            if let Some(holder) = holder {
                let group = ChatId::from_bot_api(group).ok_or_else(|| {
                    StoreError::new(
                        operation,
                        format!("column group_id: {group} is not a chat id"),
                    )
                })?;
                return Err(topic_taken(operation, group, topic, ConversationId(holder)));
            }
        }
        sqlx::query("UPDATE conversations SET topic_id = ? WHERE id = ?")
            .bind(topic.map(|topic| topic.0))
            .bind(id.0)
            .execute(&mut *transaction)
            .await
            .map_err(failed(operation))?;
        transaction.commit().await.map_err(failed(operation))?;
        Ok(())
    }

    async fn touch_conversation(
        &self,
        id: ConversationId,
        at: UnixMillis,
    ) -> Result<(), StoreError> {
        let operation = "touch a conversation";
        // Never backwards: relays finishing out of order must not make a conversation look
        // older than its newest message.
        let touched = sqlx::query(
            "UPDATE conversations SET last_message_at = MAX(last_message_at, ?) WHERE id = ?",
        )
        .bind(at.0)
        .bind(id.0)
        .execute(&self.pool)
        .await
        .map_err(failed(operation))?;
        if touched.rows_affected() == 0 {
            return Err(no_conversation(operation, id));
        }
        Ok(())
    }

    async fn record_relay(&self, record: &RelayRecord) -> Result<bool, StoreError> {
        let operation = "record a relayed message";
        let mut transaction = self
            .pool
            .begin_with(BEGIN_WRITE)
            .await
            .map_err(failed(operation))?;
        if !conversation_exists(&mut *transaction, operation, record.conversation).await? {
            return Err(no_conversation(operation, record.conversation));
        }
        if let Some(outbox) = record.outbox {
            let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM outbox WHERE id = ?")
                .bind(outbox.0)
                .fetch_optional(&mut *transaction)
                .await
                .map_err(failed(operation))?;
            if found.is_none() {
                return Err(no_outbox_message(operation, outbox));
            }
        }
        let inserted = sqlx::query(
            "INSERT INTO relays (conversation_id, direction, source_chat, source_message_id, \
                 outbox_id, at) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(record.conversation.0)
        .bind(relay_direction_text(record.direction))
        .bind(record.source.map(|(chat, _)| chat.get()))
        .bind(record.source.map(|(_, message_id)| message_id))
        .bind(record.outbox.map(|outbox| outbox.0))
        .bind(record.at.0)
        .execute(&mut *transaction)
        .await
        .map_err(failed(operation))?;
        transaction.commit().await.map_err(failed(operation))?;
        Ok(inserted.rows_affected() > 0)
    }

    async fn is_own_post(&self, group: ChatId, message_id: i32) -> Result<bool, StoreError> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM own_posts WHERE group_id = ? AND message_id = ?")
                .bind(group.get())
                .bind(message_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(failed("check whether a post is jobbot's own"))?;
        Ok(found.is_some())
    }

    async fn record_own_post(
        &self,
        group: ChatId,
        message_id: i32,
        conversation: Option<ConversationId>,
    ) -> Result<(), StoreError> {
        let operation = "record an own post";
        let mut transaction = self
            .pool
            .begin_with(BEGIN_WRITE)
            .await
            .map_err(failed(operation))?;
        if let Some(id) = conversation
            && !conversation_exists(&mut *transaction, operation, id).await?
        {
            return Err(no_conversation(operation, id));
        }
        // Message ids are unique in a group, so a repeat is the same post: the first record stays.
        sqlx::query(
            "INSERT INTO own_posts (group_id, message_id, conversation_id) VALUES (?, ?, ?) \
             ON CONFLICT DO NOTHING",
        )
        .bind(group.get())
        .bind(message_id)
        .bind(conversation.map(|id| id.0))
        .execute(&mut *transaction)
        .await
        .map_err(failed(operation))?;
        transaction.commit().await.map_err(failed(operation))?;
        Ok(())
    }

    async fn last_auto_response_to(
        &self,
        contact: ChatId,
    ) -> Result<Option<UnixMillis>, StoreError> {
        let last: Option<i64> =
            sqlx::query_scalar("SELECT MAX(last_at) FROM auto_responses WHERE contact = ?")
                .bind(contact.get())
                .fetch_one(&self.pool)
                .await
                .map_err(failed("read a contact's last auto-response"))?;
        Ok(last.map(UnixMillis))
    }

    async fn record_auto_response(
        &self,
        channel_id: &str,
        contact: ChatId,
        at: UnixMillis,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO auto_responses (contact, channel_id, last_at) VALUES (?, ?, ?) \
             ON CONFLICT (contact, channel_id) \
             DO UPDATE SET last_at = MAX(last_at, excluded.last_at)",
        )
        .bind(contact.get())
        .bind(channel_id)
        .bind(at.0)
        .execute(&self.pool)
        .await
        .map_err(failed("record an auto-response"))?;
        Ok(())
    }

    async fn outbox_stats(&self, since: UnixMillis) -> Result<OutboxStats, StoreError> {
        let operation = "read the outbox statistics";
        // Pending messages are the backlog now, whatever their age; an ended message's
        // `updated_at` is when it ended, so the others count when they ended at or after `since`.
        let by_kind: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT kind, status, COUNT(*) FROM outbox \
             WHERE status = 'pending' OR updated_at >= ? \
             GROUP BY kind, status ORDER BY kind, status",
        )
        .bind(since.0)
        .fetch_all(&self.pool)
        .await
        .map_err(failed(operation))?;
        // The euclidean remainder floors negative instants too, as the memory store's
        // `div_euclid` does.
        let per_hour: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT sent_agent, sent_at - ((sent_at % ?1) + ?1) % ?1 AS hour, COUNT(*) \
             FROM outbox WHERE sent_at >= ?2 \
             GROUP BY sent_agent, hour ORDER BY hour, sent_agent",
        )
        .bind(HOUR_MILLIS)
        .bind(since.0)
        .fetch_all(&self.pool)
        .await
        .map_err(failed(operation))?;
        outbox_stats_from(operation, by_kind, per_hour)
    }

    async fn record_agent_event(&self, event: &AgentEventRecord) -> Result<(), StoreError> {
        let operation = "record an agent event";
        let detail = to_json(operation, "the event", &event.event)?;
        sqlx::query("INSERT INTO agent_events (agent, kind, detail, at) VALUES (?, ?, ?, ?)")
            .bind(event.agent.as_str())
            .bind(event.event.kind())
            .bind(detail)
            .bind(event.at.0)
            .execute(&self.pool)
            .await
            .map_err(failed(operation))?;
        Ok(())
    }

    async fn agent_events(
        &self,
        since: UnixMillis,
        limit: u32,
    ) -> Result<Vec<AgentEventRecord>, StoreError> {
        let operation = "list agent events";
        let rows = sqlx::query(
            "SELECT id, agent, detail, at FROM agent_events WHERE at >= ? \
             ORDER BY at DESC, id DESC LIMIT ?",
        )
        .bind(since.0)
        .bind(i64::from(page_size(limit)))
        .fetch_all(&self.pool)
        .await
        .map_err(failed(operation))?;
        read_rows(operation, "agent event", &rows, read_agent_event)
    }

    async fn set_agent_paused(
        &self,
        agent: &SessionName,
        paused: bool,
        at: UnixMillis,
    ) -> Result<(), StoreError> {
        let operation = "record an agent's pause";
        let query = if paused {
            // The first pause's time stays: pausing twice is one pause.
            sqlx::query(
                "INSERT INTO agent_pauses (agent, paused_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(agent.as_str())
            .bind(at.0)
        } else {
            sqlx::query("DELETE FROM agent_pauses WHERE agent = ?").bind(agent.as_str())
        };
        query.execute(&self.pool).await.map_err(failed(operation))?;
        Ok(())
    }

    async fn paused_agents(&self) -> Result<Vec<SessionName>, StoreError> {
        let operation = "list paused agents";
        let names: Vec<String> =
            sqlx::query_scalar("SELECT agent FROM agent_pauses ORDER BY agent")
                .fetch_all(&self.pool)
                .await
                .map_err(failed(operation))?;
        agent_names(operation, &names)
    }

    async fn save_learned_limits(
        &self,
        agent: &SessionName,
        learned: &LearnedLimits,
        at: UnixMillis,
    ) -> Result<(), StoreError> {
        let operation = "store an agent's learned limits";
        let json = to_json(operation, "learned", learned)?;
        sqlx::query(
            "INSERT INTO learned_limits (agent, learned, updated_at) VALUES (?, ?, ?) \
             ON CONFLICT (agent) DO UPDATE SET learned = excluded.learned, updated_at = excluded.updated_at",
        )
        .bind(agent.as_str())
        .bind(json)
        .bind(at.0)
        .execute(&self.pool)
        .await
        .map_err(failed(operation))?;
        Ok(())
    }

    async fn learned_limits(&self) -> Result<Vec<(SessionName, LearnedLimits)>, StoreError> {
        let operation = "list learned limits";
        let rows = sqlx::query("SELECT agent, learned FROM learned_limits ORDER BY agent")
            .fetch_all(&self.pool)
            .await
            .map_err(failed(operation))?;
        read_rows(operation, "learned limits", &rows, read_learned_limits)
    }

    async fn start_workflow(&self, new: &NewWorkflow) -> Result<(WorkflowId, bool), StoreError> {
        let operation = "start a workflow";
        let mut transaction = self
            .pool
            .begin_with(BEGIN_WRITE)
            .await
            .map_err(failed(operation))?;
        let started = start_workflow_in(&mut transaction, operation, new).await?;
        transaction.commit().await.map_err(failed(operation))?;
        Ok(started)
    }

    async fn active_workflows(&self) -> Result<Vec<WorkflowRecord>, StoreError> {
        let operation = "list active workflows";
        let rows = sqlx::query(&format!(
            "SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE finished = 0 ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(failed(operation))?;
        read_rows(operation, "workflow", &rows, read_workflow_row)
    }

    async fn workflow(&self, id: WorkflowId) -> Result<Option<WorkflowRecord>, StoreError> {
        let operation = "read a workflow";
        let rows = sqlx::query(&format!(
            "SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE id = ?"
        ))
        .bind(id.0)
        .fetch_all(&self.pool)
        .await
        .map_err(failed(operation))?;
        Ok(read_rows(operation, "workflow", &rows, read_workflow_row)?.pop())
    }

    async fn workflow_by_key(&self, key: &str) -> Result<Option<WorkflowRecord>, StoreError> {
        let operation = "read a workflow";
        let rows = sqlx::query(&format!(
            "SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE key = ?"
        ))
        .bind(key)
        .fetch_all(&self.pool)
        .await
        .map_err(failed(operation))?;
        Ok(read_rows(operation, "workflow", &rows, read_workflow_row)?.pop())
    }

    async fn save_workflow(
        &self,
        id: WorkflowId,
        state: &Workflow,
        at: UnixMillis,
    ) -> Result<(), StoreError> {
        let operation = "save a workflow";
        let text = to_json(operation, "the state", state)?;
        let mut transaction = self
            .pool
            .begin_with(BEGIN_WRITE)
            .await
            .map_err(failed(operation))?;
        let saved = sqlx::query(
            "UPDATE workflows SET state = ?, finished = ?, updated_at = ? \
             WHERE id = ? AND finished = 0 AND kind = ?",
        )
        .bind(text)
        .bind(state.is_finished())
        .bind(at.0)
        .bind(id.0)
        .bind(state.kind())
        .execute(&mut *transaction)
        .await
        .map_err(failed(operation))?;
        if saved.rows_affected() == 0 {
            let found: Option<(bool, String)> =
                sqlx::query_as("SELECT finished, kind FROM workflows WHERE id = ?")
                    .bind(id.0)
                    .fetch_optional(&mut *transaction)
                    .await
                    .map_err(failed(operation))?;
            return Err(match found {
                None => no_workflow(operation, id),
                Some((true, _)) => finished_workflow(operation, id),
                Some((false, kind)) => StoreError::new(
                    operation,
                    format!("workflow #{} is a {kind}, not a {}", id.0, state.kind()),
                ),
            });
        }
        transaction.commit().await.map_err(failed(operation))?;
        Ok(())
    }

    async fn create_web_session(&self, session: &WebSession) -> Result<(), StoreError> {
        let operation = "create a web session";
        sqlx::query(
            "INSERT INTO web_sessions (digest, created_at, expires_at, last_seen_at) \
             VALUES (?, ?, ?, ?)",
        )
        .bind(session.digest.0.as_slice())
        .bind(session.created_at.0)
        .bind(session.expires_at.0)
        .bind(session.last_seen_at.0)
        .execute(&self.pool)
        .await
        .map_err(|error| {
            if is_unique_violation(&error) {
                session_taken(operation)
            } else {
                StoreError::new(operation, error)
            }
        })?;
        Ok(())
    }

    async fn web_session(
        &self,
        digest: &SecretDigest,
        now: UnixMillis,
    ) -> Result<Option<WebSession>, StoreError> {
        let operation = "read a web session";
        let row = sqlx::query(
            "SELECT digest, created_at, expires_at, last_seen_at FROM web_sessions \
             WHERE digest = ? AND expires_at > ?",
        )
        .bind(digest.0.as_slice())
        .bind(now.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(failed(operation))?;
        row.as_ref()
            .map(|row| read_row(operation, "a web session", row, read_web_session))
            .transpose()
    }

    async fn touch_web_session(
        &self,
        digest: &SecretDigest,
        at: UnixMillis,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE web_sessions SET last_seen_at = MAX(last_seen_at, ?) WHERE digest = ?")
            .bind(at.0)
            .bind(digest.0.as_slice())
            .execute(&self.pool)
            .await
            .map_err(failed("touch a web session"))?;
        Ok(())
    }

    async fn end_web_session(&self, digest: &SecretDigest) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM web_sessions WHERE digest = ?")
            .bind(digest.0.as_slice())
            .execute(&self.pool)
            .await
            .map_err(failed("end a web session"))?;
        Ok(result.rows_affected() > 0)
    }

    async fn create_api_token(&self, token: &ApiTokenRecord) -> Result<(), StoreError> {
        let operation = "create an API token";
        sqlx::query(
            "INSERT INTO api_tokens (id, name, digest, created_at, expires_at, last_used_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&token.id)
        .bind(&token.name)
        .bind(token.digest.0.as_slice())
        .bind(token.created_at.0)
        .bind(token.expires_at.0)
        .bind(token.last_used_at.map(|at| at.0))
        .execute(&self.pool)
        .await
        .map_err(|error| {
            if is_unique_violation(&error) {
                token_taken(operation, &token.id)
            } else {
                StoreError::new(operation, error)
            }
        })?;
        Ok(())
    }

    async fn api_tokens(&self, now: UnixMillis) -> Result<Vec<ApiTokenRecord>, StoreError> {
        let operation = "list API tokens";
        let rows = sqlx::query(&format!(
            "SELECT {API_TOKEN_COLUMNS} FROM api_tokens WHERE expires_at > ? \
             ORDER BY created_at, id"
        ))
        .bind(now.0)
        .fetch_all(&self.pool)
        .await
        .map_err(failed(operation))?;
        rows.iter()
            .map(|row| read_row(operation, "an API token", row, read_api_token))
            .collect()
    }

    async fn api_token_by_digest(
        &self,
        digest: &SecretDigest,
        now: UnixMillis,
    ) -> Result<Option<ApiTokenRecord>, StoreError> {
        let operation = "read an API token";
        let row = sqlx::query(&format!(
            "SELECT {API_TOKEN_COLUMNS} FROM api_tokens WHERE digest = ? AND expires_at > ?"
        ))
        .bind(digest.0.as_slice())
        .bind(now.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(failed(operation))?;
        row.as_ref()
            .map(|row| read_row(operation, "an API token", row, read_api_token))
            .transpose()
    }

    async fn touch_api_token(&self, id: &str, at: UnixMillis) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE api_tokens SET last_used_at = MAX(COALESCE(last_used_at, ?), ?) WHERE id = ?",
        )
        .bind(at.0)
        .bind(at.0)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(failed("touch an API token"))?;
        Ok(())
    }

    async fn revoke_api_token(&self, id: &str) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM api_tokens WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(failed("revoke an API token"))?;
        Ok(result.rows_affected() > 0)
    }

    async fn purge_expired_auth(&self, now: UnixMillis) -> Result<u64, StoreError> {
        let operation = "purge expired sessions and tokens";
        let mut transaction = self
            .pool
            .begin_with(BEGIN_WRITE)
            .await
            .map_err(failed(operation))?;
        let sessions = sqlx::query("DELETE FROM web_sessions WHERE expires_at <= ?")
            .bind(now.0)
            .execute(&mut *transaction)
            .await
            .map_err(failed(operation))?
            .rows_affected();
        let tokens = sqlx::query("DELETE FROM api_tokens WHERE expires_at <= ?")
            .bind(now.0)
            .execute(&mut *transaction)
            .await
            .map_err(failed(operation))?
            .rows_affected();
        transaction.commit().await.map_err(failed(operation))?;
        Ok(sessions + tokens)
    }
    async fn heartbeat(
        &self,
        node: &NodeId,
        now: UnixMillis,
        expires_at: UnixMillis,
    ) -> Result<(), StoreError> {
        leases::heartbeat(&self.pool, node, now, expires_at).await
    }

    async fn leave_cluster(&self, node: &NodeId) -> Result<(), StoreError> {
        let operation = "remove a node from the cluster";
        let mut transaction = self
            .pool
            .begin_with(BEGIN_WRITE)
            .await
            .map_err(failed(operation))?;
        leases::leave::<sqlx::Sqlite>(&mut transaction, node).await?;
        transaction.commit().await.map_err(failed(operation))
    }

    async fn cluster_nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        leases::nodes(&self.pool).await
    }

    async fn session_leases(&self) -> Result<Vec<LeaseRecord>, StoreError> {
        leases::leases(&self.pool).await
    }

    async fn acquire_lease(
        &self,
        session: &SessionName,
        node: &NodeId,
        now: UnixMillis,
        expires_at: UnixMillis,
    ) -> Result<Option<LeaseRecord>, StoreError> {
        leases::acquire(&self.pool, session, node, now, expires_at).await
    }

    async fn renew_lease(
        &self,
        session: &SessionName,
        node: &NodeId,
        token: FencingToken,
        now: UnixMillis,
        expires_at: UnixMillis,
    ) -> Result<Option<LeaseRecord>, StoreError> {
        leases::renew(&self.pool, session, node, token, now, expires_at).await
    }

    async fn renew_leases(
        &self,
        node: &NodeId,
        leases: &[(SessionName, FencingToken)],
        now: UnixMillis,
        expires_at: UnixMillis,
    ) -> Result<Vec<LeaseRecord>, StoreError> {
        leases::renew_many(&self.pool, node, leases, now, expires_at).await
    }

    async fn release_lease(
        &self,
        session: &SessionName,
        node: &NodeId,
        token: FencingToken,
    ) -> Result<bool, StoreError> {
        leases::release(&self.pool, session, node, token).await
    }

    async fn holds_lease(
        &self,
        session: &SessionName,
        node: &NodeId,
        token: FencingToken,
        now: UnixMillis,
    ) -> Result<bool, StoreError> {
        leases::holds(&self.pool, session, node, token, now).await
    }

    async fn claim_attempt(
        &self,
        id: OutboxId,
        agent: &SessionName,
        node: &NodeId,
        token: FencingToken,
        proposed: RandomId,
        at: UnixMillis,
    ) -> Result<jobbot_core::cluster::AttemptClaim, StoreError> {
        let operation = "claim a message for a send attempt";
        let mut transaction = self
            .pool
            .begin_with(BEGIN_WRITE)
            .await
            .map_err(failed(operation))?;
        let claim = claims::claim_attempt::<sqlx::Sqlite>(
            &mut transaction,
            id,
            (agent, node, token),
            proposed,
            at,
        )
        .await?;
        transaction.commit().await.map_err(failed(operation))?;
        Ok(claim)
    }

    async fn remember_account_user(
        &self,
        session: &SessionName,
        user: ChatId,
    ) -> Result<(), StoreError> {
        claims::remember_account_user(&self.pool, session, user).await
    }

    async fn account_users(&self) -> Result<Vec<ChatId>, StoreError> {
        claims::account_users(&self.pool).await
    }

    async fn end_unclaimed(
        &self,
        id: OutboxId,
        end: &OutboxEnd,
        node: &NodeId,
        at: UnixMillis,
    ) -> Result<Result<(), jobbot_core::cluster::ClaimRefusal>, StoreError> {
        let operation = "end an outbox message no other node holds";
        let mut transaction = self
            .pool
            .begin_with(BEGIN_WRITE)
            .await
            .map_err(failed(operation))?;
        let ended =
            claims::end_unclaimed::<sqlx::Sqlite>(&mut transaction, id, end, node, at).await?;
        transaction.commit().await.map_err(failed(operation))?;
        Ok(ended)
    }

    async fn hand_over_workflow(
        &self,
        id: WorkflowId,
        from: &NodeId,
        to: &NodeId,
    ) -> Result<bool, StoreError> {
        claims::hand_over_workflow(&self.pool, id, from, to).await
    }

    async fn claim_workflow(
        &self,
        id: WorkflowId,
        node: &NodeId,
        now: UnixMillis,
    ) -> Result<bool, StoreError> {
        claims::claim_workflow(&self.pool, id, node, now).await
    }
}

/// Inserts an outbox message inside the caller's write transaction, or finds the one holding its
/// idempotency key.
async fn enqueue_in(
    connection: &mut SqliteConnection,
    operation: &'static str,
    message: &NewOutboxMessage,
) -> Result<Enqueued, StoreError> {
    let sender = to_json(operation, "the sender", &message.sender)?;
    let recipient = to_json(operation, "the recipient", &message.recipient)?;
    let content = to_json(operation, "the content", &message.content)?;
    // A taken key inserts nothing (and a NULL key never conflicts); the SELECT below then finds
    // the holder. Both run under the caller's write lock, so a concurrent enqueue of the same key
    // either inserted before this one (and is found) or waits for it.
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
    .fetch_optional(&mut *connection)
    .await
    .map_err(failed(operation))?;
    Ok(match inserted {
        Some(id) => Enqueued::New(OutboxId(id)),
        None => {
            let (id, status): (i64, String) =
                sqlx::query_as("SELECT id, status FROM outbox WHERE idempotency_key = ?")
                    .bind(&message.idempotency_key)
                    .fetch_one(&mut *connection)
                    .await
                    .map_err(failed(operation))?;
            let status =
                parse_status(&status).map_err(|problem| StoreError::new(operation, problem))?;
            Enqueued::Existing(OutboxId(id), status)
        }
    })
}

/// Starts a workflow inside the caller's write transaction, or finds the one holding its key.
async fn start_workflow_in(
    connection: &mut SqliteConnection,
    operation: &'static str,
    new: &NewWorkflow,
) -> Result<(WorkflowId, bool), StoreError> {
    let state = to_json(operation, "the state", &new.state)?;
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO workflows (key, kind, state, finished, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING RETURNING id",
    )
    .bind(&new.key)
    .bind(new.state.kind())
    .bind(state)
    .bind(new.state.is_finished())
    .bind(new.created_at.0)
    .bind(new.created_at.0)
    .fetch_optional(&mut *connection)
    .await
    .map_err(failed(operation))?;
    Ok(match inserted {
        Some(id) => (WorkflowId(id), true),
        None => {
            let id: i64 = sqlx::query_scalar("SELECT id FROM workflows WHERE key = ?")
                .bind(&new.key)
                .fetch_one(&mut *connection)
                .await
                .map_err(failed(operation))?;
            (WorkflowId(id), false)
        }
    })
}

/// Inserts a processed message and its channels inside the caller's write transaction; `false`
/// (nothing written) when it was processed before.
async fn insert_processed_in(
    connection: &mut SqliteConnection,
    operation: &'static str,
    message: &ProcessedMessage,
) -> Result<bool, StoreError> {
    let matched = to_json(operation, "the matched channels", &message.matched)?;
    let contacts = to_json(operation, "the contacts", &message.contacts)?;
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO processed_messages (source, message_id, source_title, link, text, \
             text_hash, posted_at, processed_at, status, matched, contacts) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (source, message_id) DO NOTHING \
         RETURNING id",
    )
    .bind(message.source.get())
    .bind(message.message_id)
    .bind(&message.source_title)
    .bind(&message.link)
    .bind(&message.text)
    .bind(&message.text_hash)
    .bind(message.posted_at.0)
    .bind(message.processed_at.0)
    .bind(message.status.as_str())
    .bind(matched)
    .bind(contacts)
    .fetch_optional(&mut *connection)
    .await
    .map_err(failed(operation))?;
    let Some(id) = inserted else {
        return Ok(false);
    };
    for channel in &message.matched {
        // A channel listed twice is one channel for filtering.
        sqlx::query(
            "INSERT INTO vacancy_channels (channel_id, processed_id) VALUES (?, ?) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&channel.channel_id)
        .bind(id)
        .execute(&mut *connection)
        .await
        .map_err(failed(operation))?;
    }
    Ok(true)
}

/// Claims the right to notify `channel_id` of `text_hash` (see `Store::claim_notification`).
async fn claim_in(
    connection: &mut SqliteConnection,
    channel_id: &str,
    text_hash: &str,
    window_start: UnixMillis,
    at: UnixMillis,
) -> Result<bool, StoreError> {
    // One statement, so it is atomic: it inserts the first claim, replaces one older than the
    // window, and changes nothing (no row counted) when a claim inside the window holds.
    let claimed = sqlx::query(
        "INSERT INTO notification_claims (channel_id, text_hash, claimed_at) VALUES (?, ?, ?) \
         ON CONFLICT (channel_id, text_hash) DO UPDATE SET claimed_at = excluded.claimed_at \
         WHERE notification_claims.claimed_at < ?",
    )
    .bind(channel_id)
    .bind(text_hash)
    .bind(at.0)
    .bind(window_start.0)
    .execute(&mut *connection)
    .await
    .map_err(failed("claim a notification"))?;
    Ok(claimed.rows_affected() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// These settings are per connection, so only a connection from the store's own pool shows
    /// them (the journal mode, stored in the file, is checked in `tests/store.rs`).
    #[tokio::test]
    async fn every_connection_has_foreign_keys_full_sync_and_a_busy_timeout() {
        let directory = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(directory.path()).await.unwrap();
        let mut connection = store.pool.acquire().await.unwrap();
        let check = |pragma: &'static str, expected: i64| (pragma, expected);
        for (pragma, expected) in [
            check("PRAGMA foreign_keys", 1),
            // FULL is 2 (OFF 0, NORMAL 1).
            check("PRAGMA synchronous", 2),
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
