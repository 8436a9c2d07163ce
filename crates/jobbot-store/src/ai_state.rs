//! The core's [`AiStore`] port: each conversation's AI record, written with a version check
//! (migration `0051_ai_conversations.sql` on SQLite and PostgreSQL, a map in memory), and the
//! counters summed per channel.

use std::collections::BTreeMap;

use async_trait::async_trait;
use jobbot_core::ai::{AiChannelStats, AiCounters, AiRecord, AiStore, StoredAi};
use jobbot_core::store::{ConversationId, StoreError, UnixMillis};

use crate::rows::{StoredRow, column, failed, json_column, read_row, to_json};
use crate::{MemoryStore, PostgresStore, SqliteStore};

const COLUMNS: &str = "conversation_id, channel_id, version, record, updated_at";

fn read_stored(row: &impl StoredRow) -> Result<StoredAi, String> {
    Ok(StoredAi {
        conversation: ConversationId(column(row, "conversation_id")?),
        channel_id: column(row, "channel_id")?,
        version: column(row, "version")?,
        record: json_column(row, "record")?,
        updated_at: UnixMillis(column(row, "updated_at")?),
    })
}

fn read_stats(row: &impl StoredRow) -> Result<AiChannelStats, String> {
    let count = |name: &str| -> Result<u64, String> {
        let value: i64 = column(row, name)?;
        u64::try_from(value).map_err(|_| format!("column {name}: {value} is negative"))
    };
    Ok(AiChannelStats {
        channel_id: column(row, "channel_id")?,
        conversations: count("conversations")?,
        counters: AiCounters {
            suggestions: count("suggestions")?,
            replies_sent: count("replies_sent")?,
            prompt_tokens: count("prompt_tokens")?,
            completion_tokens: count("completion_tokens")?,
            errors: count("errors")?,
        },
    })
}

/// The counters as columns (saturated into SQL's signed integers).
fn counter_columns(counters: &AiCounters) -> [i64; 5] {
    [
        counters.suggestions,
        counters.replies_sent,
        counters.prompt_tokens,
        counters.completion_tokens,
        counters.errors,
    ]
    .map(|value| i64::try_from(value).unwrap_or(i64::MAX))
}

const STATS_QUERY: &str = "SELECT channel_id, COUNT(*) AS conversations, \
     CAST(SUM(suggestions) AS BIGINT) AS suggestions, \
     CAST(SUM(replies_sent) AS BIGINT) AS replies_sent, \
     CAST(SUM(prompt_tokens) AS BIGINT) AS prompt_tokens, \
     CAST(SUM(completion_tokens) AS BIGINT) AS completion_tokens, \
     CAST(SUM(errors) AS BIGINT) AS errors \
     FROM ai_conversations GROUP BY channel_id ORDER BY channel_id";

/// [`AiStore::recent_ai_records`]: `{channel}` and `{limit}` become the backend's placeholders.
fn recent_query(channel: &str, limit: &str) -> String {
    format!(
        "SELECT {COLUMNS} FROM ai_conversations WHERE ({channel} IS NULL OR channel_id = {channel}) \
         ORDER BY updated_at DESC, conversation_id DESC LIMIT {limit}"
    )
}

#[async_trait]
impl AiStore for SqliteStore {
    async fn ai_record(
        &self,
        conversation: ConversationId,
    ) -> Result<Option<StoredAi>, StoreError> {
        let operation = "read a conversation's AI";
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM ai_conversations WHERE conversation_id = ?"
        ))
        .bind(conversation.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(failed(operation))?;
        row.map(|row| read_row(operation, "an AI record", &row, read_stored))
            .transpose()
    }

    async fn save_ai_record(
        &self,
        conversation: ConversationId,
        channel_id: &str,
        expected: i64,
        record: &AiRecord,
        at: UnixMillis,
    ) -> Result<Option<i64>, StoreError> {
        let operation = "save a conversation's AI";
        let text = to_json(operation, "record", record)?;
        let [suggestions, replies, prompt, completion, errors] = counter_columns(&record.counters);
        let version = expected + 1;
        let query = if expected == 0 {
            "INSERT INTO ai_conversations (conversation_id, channel_id, version, record, \
             suggestions, replies_sent, prompt_tokens, completion_tokens, errors, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT DO NOTHING"
        } else {
            "UPDATE ai_conversations SET channel_id = ?2, version = ?3, record = ?4, \
             suggestions = ?5, replies_sent = ?6, prompt_tokens = ?7, completion_tokens = ?8, \
             errors = ?9, updated_at = ?10 WHERE conversation_id = ?1 AND version = ?11"
        };
        let mut query = sqlx::query(query)
            .bind(conversation.0)
            .bind(channel_id)
            .bind(version)
            .bind(text)
            .bind(suggestions)
            .bind(replies)
            .bind(prompt)
            .bind(completion)
            .bind(errors)
            .bind(at.0);
        if expected != 0 {
            query = query.bind(expected);
        }
        let done = query.execute(&self.pool).await.map_err(failed(operation))?;
        Ok((done.rows_affected() == 1).then_some(version))
    }

    async fn ai_stats(&self) -> Result<Vec<AiChannelStats>, StoreError> {
        let operation = "sum the AI counters";
        let rows = sqlx::query(STATS_QUERY)
            .fetch_all(&self.pool)
            .await
            .map_err(failed(operation))?;
        rows.iter()
            .map(|row| read_row(operation, "AI counters", row, read_stats))
            .collect()
    }

    async fn recent_ai_records(
        &self,
        channel_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredAi>, StoreError> {
        let operation = "list the latest AI records";
        let rows = sqlx::query(&recent_query("?1", "?2"))
            .bind(channel_id)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(failed(operation))?;
        rows.iter()
            .map(|row| read_row(operation, "an AI record", row, read_stored))
            .collect()
    }
}

#[async_trait]
impl AiStore for PostgresStore {
    async fn ai_record(
        &self,
        conversation: ConversationId,
    ) -> Result<Option<StoredAi>, StoreError> {
        let operation = "read a conversation's AI";
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM ai_conversations WHERE conversation_id = $1"
        ))
        .bind(conversation.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(failed(operation))?;
        row.map(|row| read_row(operation, "an AI record", &row, read_stored))
            .transpose()
    }

    async fn save_ai_record(
        &self,
        conversation: ConversationId,
        channel_id: &str,
        expected: i64,
        record: &AiRecord,
        at: UnixMillis,
    ) -> Result<Option<i64>, StoreError> {
        let operation = "save a conversation's AI";
        let text = to_json(operation, "record", record)?;
        let [suggestions, replies, prompt, completion, errors] = counter_columns(&record.counters);
        let version = expected + 1;
        let query = if expected == 0 {
            "INSERT INTO ai_conversations (conversation_id, channel_id, version, record, \
             suggestions, replies_sent, prompt_tokens, completion_tokens, errors, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING"
        } else {
            "UPDATE ai_conversations SET channel_id = $2, version = $3, record = $4, \
             suggestions = $5, replies_sent = $6, prompt_tokens = $7, completion_tokens = $8, \
             errors = $9, updated_at = $10 WHERE conversation_id = $1 AND version = $11"
        };
        let mut query = sqlx::query(query)
            .bind(conversation.0)
            .bind(channel_id)
            .bind(version)
            .bind(text)
            .bind(suggestions)
            .bind(replies)
            .bind(prompt)
            .bind(completion)
            .bind(errors)
            .bind(at.0);
        if expected != 0 {
            query = query.bind(expected);
        }
        let done = query.execute(&self.pool).await.map_err(failed(operation))?;
        Ok((done.rows_affected() == 1).then_some(version))
    }

    async fn ai_stats(&self) -> Result<Vec<AiChannelStats>, StoreError> {
        let operation = "sum the AI counters";
        let rows = sqlx::query(STATS_QUERY)
            .fetch_all(&self.pool)
            .await
            .map_err(failed(operation))?;
        rows.iter()
            .map(|row| read_row(operation, "AI counters", row, read_stats))
            .collect()
    }

    async fn recent_ai_records(
        &self,
        channel_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredAi>, StoreError> {
        let operation = "list the latest AI records";
        let rows = sqlx::query(&recent_query("$1::TEXT", "$2"))
            .bind(channel_id)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(failed(operation))?;
        rows.iter()
            .map(|row| read_row(operation, "an AI record", row, read_stored))
            .collect()
    }
}

/// The AI records of [`MemoryStore`].
#[derive(Debug, Default)]
pub(crate) struct AiTables {
    records: BTreeMap<i64, StoredAi>,
}

#[async_trait]
impl AiStore for MemoryStore {
    async fn ai_record(
        &self,
        conversation: ConversationId,
    ) -> Result<Option<StoredAi>, StoreError> {
        Ok(self.ai().records.get(&conversation.0).cloned())
    }

    async fn save_ai_record(
        &self,
        conversation: ConversationId,
        channel_id: &str,
        expected: i64,
        record: &AiRecord,
        at: UnixMillis,
    ) -> Result<Option<i64>, StoreError> {
        let mut tables = self.ai();
        let current = tables
            .records
            .get(&conversation.0)
            .map_or(0, |stored| stored.version);
        if current != expected {
            return Ok(None);
        }
        let version = expected + 1;
        tables.records.insert(
            conversation.0,
            StoredAi {
                conversation,
                channel_id: channel_id.to_owned(),
                version,
                record: record.clone(),
                updated_at: at,
            },
        );
        Ok(Some(version))
    }

    async fn ai_stats(&self) -> Result<Vec<AiChannelStats>, StoreError> {
        let mut by_channel: BTreeMap<String, AiChannelStats> = BTreeMap::new();
        for stored in self.ai().records.values() {
            let stats = by_channel
                .entry(stored.channel_id.clone())
                .or_insert_with(|| AiChannelStats {
                    channel_id: stored.channel_id.clone(),
                    conversations: 0,
                    counters: AiCounters::default(),
                });
            stats.conversations += 1;
            stats.counters.add(&stored.record.counters);
        }
        Ok(by_channel.into_values().collect())
    }

    async fn recent_ai_records(
        &self,
        channel_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredAi>, StoreError> {
        let mut records: Vec<StoredAi> = self
            .ai()
            .records
            .values()
            .filter(|stored| channel_id.is_none_or(|channel| stored.channel_id == channel))
            .cloned()
            .collect();
        records
            .sort_by_key(|stored| std::cmp::Reverse((stored.updated_at.0, stored.conversation.0)));
        records.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(records)
    }
}
