//! An outbox kept in memory, for the benchmark only.
//!
//! The benchmark runs on paused tokio time, and the SQLite store answers from sqlx's own worker
//! thread: while the runtime waits for it, tokio sees every task idle and jumps the clock to the
//! next timer, so simulated time would leap forward during each query and the measured waits
//! would be the store's artefact. Every method here answers without awaiting anything.
//! (`jobbot_store::MemoryStore`, once it exists, can replace this.)

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use jobbot_core::ids::SessionName;
use jobbot_core::store::{
    Enqueued, NewOutboxMessage, OutboxCounts, OutboxId, OutboxMessage, OutboxStatus, SentRecord,
    Store, StoreError, StoreHealth, UnixMillis,
};
use jobbot_core::telegram::{RandomId, SentMessage};

#[derive(Default)]
pub struct BenchStore {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next_id: i64,
    messages: BTreeMap<OutboxId, OutboxMessage>,
    by_idempotency_key: HashMap<String, OutboxId>,
    /// The `random_id` each agent was given for each message, reused on a retry by that agent.
    random_ids: HashMap<(OutboxId, SessionName), RandomId>,
}

impl BenchStore {
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

fn missing(operation: &'static str, id: OutboxId) -> StoreError {
    StoreError::new(operation, format!("outbox message {id} does not exist"))
}

#[async_trait]
impl Store for BenchStore {
    async fn health(&self) -> Result<StoreHealth, StoreError> {
        Ok(StoreHealth {
            backend: "memory".into(),
            schema_version: 0,
        })
    }

    async fn enqueue(&self, message: NewOutboxMessage) -> Result<Enqueued, StoreError> {
        Ok(self.with(|state| {
            if let Some(key) = &message.idempotency_key
                && let Some(&id) = state.by_idempotency_key.get(key)
            {
                return Enqueued::Existing(id, state.messages[&id].status);
            }
            state.next_id += 1;
            let id = OutboxId(state.next_id);
            if let Some(key) = &message.idempotency_key {
                state.by_idempotency_key.insert(key.clone(), id);
            }
            let updated_at = message.created_at;
            state.messages.insert(
                id,
                OutboxMessage {
                    id,
                    message,
                    status: OutboxStatus::Pending,
                    attempts: 0,
                    last_agent: None,
                    sent: None,
                    reason: None,
                    updated_at,
                },
            );
            Enqueued::New(id)
        }))
    }

    async fn pending_outbox(&self) -> Result<Vec<OutboxMessage>, StoreError> {
        Ok(self.with(|state| {
            state
                .messages
                .values()
                .filter(|message| message.status == OutboxStatus::Pending)
                .cloned()
                .collect()
        }))
    }

    async fn outbox_message(&self, id: OutboxId) -> Result<Option<OutboxMessage>, StoreError> {
        Ok(self.with(|state| state.messages.get(&id).cloned()))
    }

    async fn begin_attempt(
        &self,
        id: OutboxId,
        agent: &SessionName,
        proposed: RandomId,
        at: UnixMillis,
    ) -> Result<RandomId, StoreError> {
        self.with(|state| {
            let message = state
                .messages
                .get_mut(&id)
                .ok_or_else(|| missing("record an attempt", id))?;
            message.attempts += 1;
            message.last_agent = Some(agent.clone());
            message.updated_at = at;
            Ok(*state
                .random_ids
                .entry((id, agent.clone()))
                .or_insert(proposed))
        })
    }

    async fn note_error(
        &self,
        id: OutboxId,
        reason: &str,
        at: UnixMillis,
    ) -> Result<(), StoreError> {
        self.with(|state| {
            let message = state
                .messages
                .get_mut(&id)
                .ok_or_else(|| missing("note an error", id))?;
            message.reason = Some(reason.to_owned());
            message.updated_at = at;
            Ok(())
        })
    }

    async fn mark_sent(
        &self,
        id: OutboxId,
        agent: &SessionName,
        sent: SentMessage,
        at: UnixMillis,
    ) -> Result<(), StoreError> {
        self.with(|state| {
            let message = state
                .messages
                .get_mut(&id)
                .ok_or_else(|| missing("mark a message sent", id))?;
            message.status = OutboxStatus::Sent;
            message.sent = Some(SentRecord {
                agent: agent.clone(),
                message: sent,
                at,
            });
            message.updated_at = at;
            Ok(())
        })
    }

    async fn mark_final(
        &self,
        id: OutboxId,
        status: OutboxStatus,
        reason: &str,
        at: UnixMillis,
    ) -> Result<(), StoreError> {
        self.with(|state| {
            let message = state
                .messages
                .get_mut(&id)
                .ok_or_else(|| missing("end a message", id))?;
            message.status = status;
            message.reason = Some(reason.to_owned());
            message.updated_at = at;
            Ok(())
        })
    }

    async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        Ok(self.with(|state| {
            let mut counts = OutboxCounts::default();
            for message in state.messages.values() {
                match message.status {
                    OutboxStatus::Pending => counts.pending += 1,
                    OutboxStatus::Sent => counts.sent += 1,
                    OutboxStatus::Failed => counts.failed += 1,
                    OutboxStatus::Expired => counts.expired += 1,
                }
            }
            counts
        }))
    }
}
