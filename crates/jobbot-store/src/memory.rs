//! An in-process backend of the core's [`Store`] port, for tests and benchmarks.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use jobbot_core::ids::SessionName;
use jobbot_core::store::{
    Enqueued, NewOutboxMessage, OutboxCounts, OutboxId, OutboxMessage, OutboxStatus, SentRecord,
    Store, StoreError, StoreHealth, UnixMillis,
};
use jobbot_core::telegram::{RandomId, SentMessage};

use crate::SqliteStore;

/// A [`Store`] held in memory, with exactly the semantics of [`SqliteStore`] (both pass the same
/// conformance checks in `tests/store.rs`).
///
/// It exists for the engine's paused-time tests and benchmarks. sqlx runs every SQLite query on a
/// worker thread, so each call parks the calling task; with every runtime task parked, tokio's
/// paused clock auto-advances, and simulated time jumps forward in the middle of a store call.
/// Every method here finishes on its first poll: it takes a `std::sync::Mutex`, does its work and
/// releases the lock without awaiting anything, so it never yields and the clock moves only when
/// the test or the engine waits on purpose.
///
/// It persists nothing: dropping it loses the outbox. A test of what survives a restart must use
/// [`SqliteStore`].
#[derive(Debug, Default)]
pub struct MemoryStore {
    outbox: Mutex<Outbox>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

/// The outbox's tables. Nothing is ever deleted, so ids (like SQLite's `AUTOINCREMENT`) start at
/// 1 and are never reused, and id order is enqueue order.
#[derive(Debug, Default)]
struct Outbox {
    messages: BTreeMap<OutboxId, OutboxMessage>,
    /// Which message holds each idempotency key; messages without a key are not here.
    idempotency_keys: HashMap<String, OutboxId>,
    /// The ids of the pending messages, so reading the backlog costs the backlog, not the history
    /// (SQLite's partial index `outbox_pending`).
    pending: BTreeSet<OutboxId>,
    /// The random id each agent was first given for each message (`outbox_attempts`).
    random_ids: HashMap<(OutboxId, SessionName), RandomId>,
    counts: OutboxCounts,
    last_id: i64,
}

impl Outbox {
    /// The message `id`, if it is pending; else the same error [`SqliteStore`] gives.
    fn pending_message(
        &mut self,
        operation: &'static str,
        id: OutboxId,
    ) -> Result<&mut OutboxMessage, StoreError> {
        match self.messages.get_mut(&id) {
            None => Err(StoreError::new(
                operation,
                format!("outbox message {id} does not exist"),
            )),
            Some(message) if message.status != OutboxStatus::Pending => Err(StoreError::new(
                operation,
                format!(
                    "outbox message {id} is already {}, and a message ends only once",
                    message.status.as_str()
                ),
            )),
            Some(message) => Ok(message),
        }
    }

    /// Moves the bookkeeping of a message that just ended from pending to `status`.
    fn count_end(&mut self, id: OutboxId, status: OutboxStatus) {
        self.pending.remove(&id);
        self.counts.pending -= 1;
        match status {
            OutboxStatus::Pending => {
                unreachable!("callers end messages as sent, failed or expired")
            }
            OutboxStatus::Sent => self.counts.sent += 1,
            OutboxStatus::Failed => self.counts.failed += 1,
            OutboxStatus::Expired => self.counts.expired += 1,
        }
    }
}

impl MemoryStore {
    /// Every method takes the lock, works, and drops the guard before returning, so it is never
    /// held across an await. A panic while holding it (a bug in this file) could leave the tables
    /// half-updated, so a poisoned lock is an error rather than data to trust.
    fn lock(&self, operation: &'static str) -> Result<MutexGuard<'_, Outbox>, StoreError> {
        self.outbox.lock().map_err(|_| {
            StoreError::new(
                operation,
                "the in-memory store is unusable after a panic while it was being changed",
            )
        })
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    /// Reports the schema version of the SQLite migrations whose behaviour this store mirrors.
    async fn health(&self) -> Result<StoreHealth, StoreError> {
        // The only way this store can be unhealthy is a poisoned lock.
        drop(self.lock("check the database's health")?);
        Ok(StoreHealth {
            backend: "memory".to_owned(),
            schema_version: SqliteStore::latest_schema_version(),
        })
    }

    async fn enqueue(&self, message: NewOutboxMessage) -> Result<Enqueued, StoreError> {
        let mut outbox = self.lock("enqueue an outbox message")?;
        if let Some(key) = &message.idempotency_key
            && let Some(&holder) = outbox.idempotency_keys.get(key)
        {
            let status = outbox.messages[&holder].status;
            return Ok(Enqueued::Existing(holder, status));
        }
        outbox.last_id += 1;
        let id = OutboxId(outbox.last_id);
        if let Some(key) = &message.idempotency_key {
            outbox.idempotency_keys.insert(key.clone(), id);
        }
        let updated_at = message.created_at;
        outbox.messages.insert(
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
        outbox.pending.insert(id);
        outbox.counts.pending += 1;
        Ok(Enqueued::New(id))
    }

    async fn pending_outbox(&self) -> Result<Vec<OutboxMessage>, StoreError> {
        let outbox = self.lock("read the pending outbox")?;
        Ok(outbox
            .pending
            .iter()
            .map(|id| outbox.messages[id].clone())
            .collect())
    }

    async fn outbox_message(&self, id: OutboxId) -> Result<Option<OutboxMessage>, StoreError> {
        let outbox = self.lock("read an outbox message")?;
        Ok(outbox.messages.get(&id).cloned())
    }

    async fn begin_attempt(
        &self,
        id: OutboxId,
        agent: &SessionName,
        proposed: RandomId,
        at: UnixMillis,
    ) -> Result<RandomId, StoreError> {
        let operation = "begin a send attempt";
        let mut outbox = self.lock(operation)?;
        let message = outbox.pending_message(operation, id)?;
        message.attempts = message.attempts.saturating_add(1);
        message.last_agent = Some(agent.clone());
        message.updated_at = at;
        // The first id this agent was given wins: re-sending with it lets Telegram drop the
        // duplicate if the earlier attempt did get through.
        Ok(*outbox
            .random_ids
            .entry((id, agent.clone()))
            .or_insert(proposed))
    }

    async fn note_error(
        &self,
        id: OutboxId,
        reason: &str,
        at: UnixMillis,
    ) -> Result<(), StoreError> {
        let operation = "note an outbox error";
        let mut outbox = self.lock(operation)?;
        let message = outbox.pending_message(operation, id)?;
        message.reason = Some(reason.to_owned());
        message.updated_at = at;
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
        let mut outbox = self.lock(operation)?;
        let message = outbox.pending_message(operation, id)?;
        message.status = OutboxStatus::Sent;
        // The last error while pending stays, as in SQLite: it explains why the send took retries.
        message.sent = Some(SentRecord {
            agent: agent.clone(),
            message: sent,
            at,
        });
        message.updated_at = at;
        outbox.count_end(id, OutboxStatus::Sent);
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
        // Checked before the message is looked at, in the same order and words as SQLite.
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
        let mut outbox = self.lock(operation)?;
        let message = outbox.pending_message(operation, id)?;
        message.status = status;
        message.reason = Some(reason.to_owned());
        message.updated_at = at;
        outbox.count_end(id, status);
        Ok(())
    }

    async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        Ok(self.lock("count the outbox")?.counts)
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use jobbot_core::ids::{ChatId, Username};
    use jobbot_core::store::{OutboxKind, Recipient, SenderSelection};
    use jobbot_core::telegram::MessageContent;

    use super::*;

    /// Polls `future` exactly once and returns its output, failing if it would have yielded.
    fn ready_on_first_poll<T>(what: &str, future: impl Future<Output = T>) -> T {
        let mut context = Context::from_waker(Waker::noop());
        match pin!(future).poll(&mut context) {
            Poll::Ready(output) => output,
            Poll::Pending => panic!("{what} yielded; paused time would advance under it"),
        }
    }

    /// The reason this store exists: no method ever returns `Pending`, so no runtime is needed
    /// at all, and on paused time the clock cannot auto-advance during a store call.
    #[test]
    fn every_method_completes_on_its_first_poll() {
        let store = MemoryStore::new();
        let agent = SessionName::parse("agent_1").unwrap();
        let message = NewOutboxMessage {
            channel_id: "channel_1".to_owned(),
            kind: OutboxKind::AutoResponse,
            sender: SenderSelection::ChannelAgents { sticky: None },
            recipient: Recipient::Username {
                username: Username::parse("alice_dev").unwrap(),
            },
            content: MessageContent::plain("Hello"),
            first_contact: true,
            idempotency_key: Some("auto_response:channel_1:alice".to_owned()),
            created_at: UnixMillis(1_000),
            not_before: None,
            expires_at: UnixMillis(61_000),
        };
        let at = UnixMillis(2_000);

        ready_on_first_poll("health", store.health()).unwrap();
        let id = ready_on_first_poll("enqueue", store.enqueue(message.clone()))
            .unwrap()
            .id();
        let again = ready_on_first_poll("enqueue of a taken key", store.enqueue(message)).unwrap();
        assert_eq!(again, Enqueued::Existing(id, OutboxStatus::Pending));
        ready_on_first_poll("pending_outbox", store.pending_outbox()).unwrap();
        ready_on_first_poll("outbox_message", store.outbox_message(id)).unwrap();
        ready_on_first_poll(
            "begin_attempt",
            store.begin_attempt(id, &agent, RandomId(7), at),
        )
        .unwrap();
        ready_on_first_poll("note_error", store.note_error(id, "FLOOD_WAIT_3", at)).unwrap();
        let sent = SentMessage {
            chat: ChatId::user(42).unwrap(),
            message_id: 1,
        };
        ready_on_first_poll("mark_sent", store.mark_sent(id, &agent, sent, at)).unwrap();
        ready_on_first_poll(
            "mark_final",
            store.mark_final(id, OutboxStatus::Failed, "late", at),
        )
        .unwrap_err();
        let counts = ready_on_first_poll("outbox_counts", store.outbox_counts()).unwrap();
        assert_eq!(
            counts,
            OutboxCounts {
                sent: 1,
                ..OutboxCounts::default()
            }
        );
    }
}
