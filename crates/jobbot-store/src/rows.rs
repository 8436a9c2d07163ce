//! What both SQL backends share: reading rows into the core's types, and the column lists the
//! reads expect. Each backend writes its own SQL (SQLite's and PostgreSQL's dialects, locking and
//! conflict handling differ); the tables have the same columns with the same meaning, so a row
//! reads the same from either. Integers are 64-bit on both (`INTEGER`, `BIGINT`), JSON columns
//! are text holding the core types' serde form, digests are bytes.

use jobbot_core::ids::{ChatId, SessionName, Username};
use jobbot_core::store::{
    AgentEvent, AgentEventRecord, ApiTokenRecord, Conversation, ConversationId, ConversationStatus,
    InDoubt, NewOutboxMessage, OutboxCounts, OutboxId, OutboxKind, OutboxMessage, OutboxStats,
    OutboxStatus, ProcessedMessage, RelayDirection, SecretDigest, SentRecord, StoreError,
    UnixMillis, VacancyRecord, VacancyStatus, WebSession, WorkflowId, WorkflowRecord,
};
use jobbot_core::telegram::{PeerRef, RandomId, SentMessage, TopicId};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::Row;

/// A row that yields a column as `T`: every sqlx row, for the types its database decodes.
pub(crate) trait Column<T> {
    fn column(&self, name: &str) -> Result<T, String>;
}

impl<T, R> Column<T> for R
where
    R: Row,
    for<'r> T: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'n> &'n str: sqlx::ColumnIndex<R>,
{
    fn column(&self, name: &str) -> Result<T, String> {
        self.try_get(name)
            .map_err(|error| format!("column {name}: {error}"))
    }
}

/// A row of either backend, with every column type the reads below use.
pub(crate) trait StoredRow:
    Column<i64>
    + Column<Option<i64>>
    + Column<String>
    + Column<Option<String>>
    + Column<bool>
    + Column<Vec<u8>>
{
}

impl<R> StoredRow for R where
    R: Column<i64>
        + Column<Option<i64>>
        + Column<String>
        + Column<Option<String>>
        + Column<bool>
        + Column<Vec<u8>>
{
}

/// Maps a database failure to the core's error, naming what was being done.
pub(crate) fn failed(operation: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |error| StoreError::new(operation, error)
}

/// The columns `read_outbox_row` reads, in one place so every query selects the same. The
/// in-doubt attempt's random id comes from `outbox_attempts`.
pub(crate) const OUTBOX_COLUMNS: &str = "id, channel_id, kind, sender, recipient, content, first_contact, \
     idempotency_key, created_at, not_before, expires_at, status, attempts, last_agent, \
     in_doubt_agent, (SELECT random_id FROM outbox_attempts a \
         WHERE a.outbox_id = outbox.id AND a.agent = outbox.in_doubt_agent) AS in_doubt_random_id, \
     sent_agent, sent_chat, sent_message_id, sent_at, holdup, end_reason, updated_at";

pub(crate) fn to_json<T: Serialize>(
    operation: &'static str,
    column: &str,
    value: &T,
) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|error| StoreError::new(operation, format!("could not encode {column}: {error}")))
}

pub(crate) fn column<T>(row: &impl Column<T>, name: &str) -> Result<T, String> {
    row.column(name)
}

pub(crate) fn json_column<T: DeserializeOwned>(
    row: &impl StoredRow,
    name: &str,
) -> Result<T, String> {
    let text: String = column(row, name)?;
    serde_json::from_str(&text).map_err(|error| format!("column {name}: {error}"))
}

pub(crate) fn optional_json_column<T: DeserializeOwned>(
    row: &impl StoredRow,
    name: &str,
) -> Result<Option<T>, String> {
    column::<Option<String>>(row, name)?
        .map(|text| serde_json::from_str(&text).map_err(|error| format!("column {name}: {error}")))
        .transpose()
}

pub(crate) fn session_column(
    row: &impl StoredRow,
    name: &str,
) -> Result<Option<SessionName>, String> {
    column::<Option<String>>(row, name)?
        .map(|text| SessionName::parse(&text).map_err(|error| format!("column {name}: {error}")))
        .transpose()
}

pub(crate) fn digest_column(row: &impl StoredRow, name: &str) -> Result<SecretDigest, String> {
    let bytes: Vec<u8> = column(row, name)?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map(SecretDigest)
        .map_err(|_| format!("column {name}: not a 32-byte digest"))
}

pub(crate) fn read_web_session(row: &impl StoredRow) -> Result<WebSession, String> {
    Ok(WebSession {
        digest: digest_column(row, "digest")?,
        created_at: UnixMillis(column(row, "created_at")?),
        expires_at: UnixMillis(column(row, "expires_at")?),
        last_seen_at: UnixMillis(column(row, "last_seen_at")?),
    })
}

pub(crate) const API_TOKEN_COLUMNS: &str = "id, name, digest, created_at, expires_at, last_used_at";

pub(crate) fn read_api_token(row: &impl StoredRow) -> Result<ApiTokenRecord, String> {
    Ok(ApiTokenRecord {
        id: column(row, "id")?,
        name: column(row, "name")?,
        digest: digest_column(row, "digest")?,
        created_at: UnixMillis(column(row, "created_at")?),
        expires_at: UnixMillis(column(row, "expires_at")?),
        last_used_at: column::<Option<i64>>(row, "last_used_at")?.map(UnixMillis),
    })
}

/// Reads one row with `read`, for rows without a numeric `id` to name them by.
pub(crate) fn read_row<T, R: StoredRow>(
    operation: &'static str,
    what: &str,
    row: &R,
    read: impl Fn(&R) -> Result<T, String>,
) -> Result<T, StoreError> {
    read(row)
        .map_err(|problem| StoreError::new(operation, format!("{what} is unreadable: {problem}")))
}

/// A unique constraint refused the row (the caller's duplicate, not a broken database).
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(database) if database.is_unique_violation())
}

pub(crate) fn parse_status(text: &str) -> Result<OutboxStatus, String> {
    OutboxStatus::parse(text).ok_or_else(|| format!("unknown outbox status {text:?}"))
}

/// Reads one `outbox` row selected with [`OUTBOX_COLUMNS`]. The error says which column is
/// wrong; the caller adds which message and what it was doing.
pub(crate) fn read_outbox_row(row: &impl StoredRow) -> Result<OutboxMessage, String> {
    let kind: String = column(row, "kind")?;
    let status: String = column(row, "status")?;
    let attempts: i64 = column(row, "attempts")?;
    let sent = match session_column(row, "sent_agent")? {
        None => None,
        Some(agent) => {
            let message = match column::<Option<i64>>(row, "sent_chat")? {
                None => None,
                Some(chat) => {
                    let message_id: i64 = column(row, "sent_message_id")?;
                    Some(SentMessage {
                        chat: ChatId::from_bot_api(chat)
                            .ok_or_else(|| format!("column sent_chat: {chat} is not a chat id"))?,
                        message_id: i32::try_from(message_id).map_err(|_| {
                            format!("column sent_message_id: {message_id} is out of range")
                        })?,
                    })
                }
            };
            Some(SentRecord {
                agent,
                message,
                at: UnixMillis(column(row, "sent_at")?),
            })
        }
    };
    let in_doubt = match session_column(row, "in_doubt_agent")? {
        None => None,
        Some(agent) => Some(InDoubt {
            agent,
            random_id: RandomId(
                column::<Option<i64>>(row, "in_doubt_random_id")?
                    .ok_or("the in-doubt attempt has no random id on record")?,
            ),
        }),
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
        in_doubt,
        sent,
        holdup: optional_json_column(row, "holdup")?,
        end: optional_json_column(row, "end_reason")?,
        updated_at: UnixMillis(column(row, "updated_at")?),
    })
}

pub(crate) fn read_outbox_rows<R: StoredRow>(
    operation: &'static str,
    rows: &[R],
) -> Result<Vec<OutboxMessage>, StoreError> {
    rows.iter()
        .map(|row| {
            read_outbox_row(row).map_err(|problem| {
                let id = column::<i64>(row, "id").unwrap_or_default();
                StoreError::new(
                    operation,
                    format!("outbox message #{id} is unreadable: {problem}"),
                )
            })
        })
        .collect()
}

/// The columns `read_vacancy_row` reads.
pub(crate) const VACANCY_COLUMNS: &str = "id, source, message_id, source_title, link, text, text_hash, \
     posted_at, processed_at, status, matched, contacts";

/// The columns `read_conversation_row` reads.
pub(crate) const CONVERSATION_COLUMNS: &str = "id, channel_id, group_id, topic_id, contact, \
     contact_username, contact_name, agent, contact_peer_id, contact_peer_access_hash, \
     contact_author, status, created_at, last_message_at";

/// The length of a `sent_per_agent_hour` bucket.
pub(crate) const HOUR_MILLIS: i64 = 3_600_000;

pub(crate) fn chat_column(row: &impl StoredRow, name: &str) -> Result<ChatId, String> {
    let id: i64 = column(row, name)?;
    ChatId::from_bot_api(id).ok_or_else(|| format!("column {name}: {id} is not a chat id"))
}

pub(crate) fn message_id_column(row: &impl StoredRow, name: &str) -> Result<i32, String> {
    let id: i64 = column(row, name)?;
    i32::try_from(id).map_err(|_| format!("column {name}: {id} is out of range"))
}

pub(crate) fn read_vacancy_row(row: &impl StoredRow) -> Result<VacancyRecord, String> {
    let status: String = column(row, "status")?;
    Ok(VacancyRecord {
        id: column(row, "id")?,
        message: ProcessedMessage {
            source: chat_column(row, "source")?,
            message_id: message_id_column(row, "message_id")?,
            source_title: column(row, "source_title")?,
            link: column(row, "link")?,
            text: column(row, "text")?,
            text_hash: column(row, "text_hash")?,
            posted_at: UnixMillis(column(row, "posted_at")?),
            processed_at: UnixMillis(column(row, "processed_at")?),
            status: VacancyStatus::parse(&status)
                .ok_or_else(|| format!("unknown vacancy status {status:?}"))?,
            matched: json_column(row, "matched")?,
            contacts: json_column(row, "contacts")?,
        },
    })
}

pub(crate) fn read_conversation_row(row: &impl StoredRow) -> Result<Conversation, String> {
    let status: String = column(row, "status")?;
    let contact_peer = match column::<Option<i64>>(row, "contact_peer_id")? {
        None => None,
        Some(_) => Some(PeerRef {
            id: chat_column(row, "contact_peer_id")?,
            access_hash: column(row, "contact_peer_access_hash")?,
        }),
    };
    let topic = column::<Option<i64>>(row, "topic_id")?
        .map(|topic| {
            i32::try_from(topic)
                .map(TopicId)
                .map_err(|_| format!("column topic_id: {topic} is out of range"))
        })
        .transpose()?;
    let contact_username = column::<Option<String>>(row, "contact_username")?
        .map(|name| {
            Username::parse(&name).map_err(|error| format!("column contact_username: {error}"))
        })
        .transpose()?;
    Ok(Conversation {
        id: ConversationId(column(row, "id")?),
        channel_id: column(row, "channel_id")?,
        group: chat_column(row, "group_id")?,
        topic,
        contact: chat_column(row, "contact")?,
        contact_username,
        contact_name: column(row, "contact_name")?,
        agent: session_column(row, "agent")?.ok_or("column agent: NULL")?,
        contact_peer,
        contact_author: optional_json_column(row, "contact_author")?,
        status: match status.as_str() {
            "active" => ConversationStatus::Active,
            "closed" => ConversationStatus::Closed,
            other => return Err(format!("unknown conversation status {other:?}")),
        },
        created_at: UnixMillis(column(row, "created_at")?),
        last_message_at: UnixMillis(column(row, "last_message_at")?),
    })
}

/// Reads rows with `read`, naming the unreadable row by its `id` column.
pub(crate) fn read_rows<T, R: StoredRow>(
    operation: &'static str,
    what: &str,
    rows: &[R],
    read: impl Fn(&R) -> Result<T, String>,
) -> Result<Vec<T>, StoreError> {
    rows.iter()
        .map(|row| {
            read(row).map_err(|problem| {
                let id = column::<i64>(row, "id").unwrap_or_default();
                StoreError::new(operation, format!("{what} #{id} is unreadable: {problem}"))
            })
        })
        .collect()
}

pub(crate) fn read_conversations<R: StoredRow>(
    operation: &'static str,
    rows: &[R],
) -> Result<Vec<Conversation>, StoreError> {
    read_rows(operation, "conversation", rows, read_conversation_row)
}

pub(crate) fn relay_direction_text(direction: RelayDirection) -> &'static str {
    match direction {
        RelayDirection::ContactToTopic => "contact_to_topic",
        RelayDirection::TopicToContact => "topic_to_contact",
        RelayDirection::Service => "service",
    }
}

pub(crate) fn as_count(count: i64) -> u64 {
    u64::try_from(count).unwrap_or_default()
}

/// The columns `read_workflow_row` reads.
pub(crate) const WORKFLOW_COLUMNS: &str = "id, key, state, created_at, updated_at";

pub(crate) fn read_workflow_row(row: &impl StoredRow) -> Result<WorkflowRecord, String> {
    Ok(WorkflowRecord {
        id: WorkflowId(column(row, "id")?),
        key: column(row, "key")?,
        state: json_column(row, "state")?,
        created_at: UnixMillis(column(row, "created_at")?),
        updated_at: UnixMillis(column(row, "updated_at")?),
    })
}

/// Counts by status from `(status, COUNT(*))` rows.
pub(crate) fn outbox_counts_from(
    operation: &'static str,
    rows: Vec<(String, i64)>,
) -> Result<OutboxCounts, StoreError> {
    let mut counts = OutboxCounts::default();
    for (status, count) in rows {
        let count = as_count(count);
        match parse_status(&status).map_err(|problem| StoreError::new(operation, problem))? {
            OutboxStatus::Pending => counts.pending = count,
            OutboxStatus::Sent => counts.sent = count,
            OutboxStatus::Failed => counts.failed = count,
            OutboxStatus::Expired => counts.expired = count,
        }
    }
    Ok(counts)
}

/// The statistics from `(kind, status, COUNT(*))` and `(sent_agent, hour, COUNT(*))` rows.
pub(crate) fn outbox_stats_from(
    operation: &'static str,
    by_kind: Vec<(String, String, i64)>,
    per_hour: Vec<(String, i64, i64)>,
) -> Result<OutboxStats, StoreError> {
    let mut stats = OutboxStats::default();
    for (kind, status, count) in by_kind {
        let kind = OutboxKind::parse(&kind)
            .ok_or_else(|| StoreError::new(operation, format!("unknown outbox kind {kind:?}")))?;
        let status =
            parse_status(&status).map_err(|problem| StoreError::new(operation, problem))?;
        stats
            .by_kind_and_status
            .push((kind, status, as_count(count)));
    }
    for (agent, hour, count) in per_hour {
        let agent = SessionName::parse(&agent)
            .map_err(|error| StoreError::new(operation, format!("column sent_agent: {error}")))?;
        stats
            .sent_per_agent_hour
            .push((agent, UnixMillis(hour), as_count(count)));
    }
    Ok(stats)
}

/// Session names read from column `agent`.
pub(crate) fn agent_names(
    operation: &'static str,
    names: &[String],
) -> Result<Vec<SessionName>, StoreError> {
    names
        .iter()
        .map(|name| {
            SessionName::parse(name)
                .map_err(|error| StoreError::new(operation, format!("column agent: {error}")))
        })
        .collect()
}

/// Reads an `agent_events` row (`agent, detail, at`).
pub(crate) fn read_learned_limits(
    row: &impl StoredRow,
) -> Result<(SessionName, jobbot_core::scheduling::LearnedLimits), String> {
    Ok((
        session_column(row, "agent")?.ok_or("column agent: NULL")?,
        json_column(row, "learned")?,
    ))
}

pub(crate) fn read_agent_event(row: &impl StoredRow) -> Result<AgentEventRecord, String> {
    Ok(AgentEventRecord {
        agent: session_column(row, "agent")?.ok_or("column agent: NULL")?,
        event: json_column::<AgentEvent>(row, "detail")?,
        at: UnixMillis(column(row, "at")?),
    })
}
