//! An in-process backend of the core's [`Store`] port, for tests and benchmarks.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use jobbot_core::cluster::{
    AttemptClaim, ClaimRefusal, FencingToken, LeaseRecord, NodeId, NodeRecord,
};
use jobbot_core::ids::{ChatId, SessionName};
use jobbot_core::scheduling::LearnedLimits;
use jobbot_core::store::{
    AgentEventRecord, ApiTokenRecord, Conversation, ConversationId, ConversationStatus, Enqueued,
    Holdup, InDoubt, IntakeOutcome, NewConversation, NewOutboxMessage, NewWorkflow, OutboxCounts,
    OutboxEnd, OutboxId, OutboxKind, OutboxMessage, OutboxStats, OutboxStatus, ProcessedMessage,
    RelayDirection, RelayRecord, SecretDigest, SentRecord, Store, StoreError, StoreHealth,
    UnixMillis, VacancyIntake, VacancyQuery, VacancyRecord, WebSession, WorkflowId, WorkflowRecord,
};
use jobbot_core::telegram::{PeerRef, RandomId, SentMessage, TopicId};
use jobbot_core::workflow::Workflow;

use crate::{
    SqliteStore, finished_workflow, never_attempted, no_conversation, no_outbox_message,
    no_workflow, page_size, session_taken, token_taken, topic_taken,
};

/// The length of a `sent_per_agent_hour` bucket.
const HOUR_MILLIS: i64 = 3_600_000;

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
    /// One lock over every table, so a method that reads one table and writes another (a relay
    /// record checks its conversation and outbox message) sees them consistent, as a SQLite
    /// transaction does.
    tables: Mutex<Tables>,
    /// The knowledge files (`KnowledgeIndex`, in `knowledge.rs`): no method touches them and
    /// another table together.
    knowledge: Mutex<crate::knowledge::KnowledgeTables>,
    /// The conversations' AI records (`AiStore`, in `ai_state.rs`).
    ai: Mutex<crate::ai_state::AiTables>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn ai(&self) -> MutexGuard<'_, crate::ai_state::AiTables> {
        self.ai
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn knowledge(&self) -> MutexGuard<'_, crate::knowledge::KnowledgeTables> {
        self.knowledge
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[derive(Debug, Default)]
struct Tables {
    outbox: Outbox,
    vacancies: Vacancies,
    conversations: Conversations,
    /// The newest auto-response each contact got from any channel: all the cooldown reads.
    last_auto_response: HashMap<ChatId, UnixMillis>,
    /// Agent events by `(at, sequence)`, so "newest first" is a reverse walk from the end and
    /// events at the same instant keep their recording order, like SQLite's `(at, id)`.
    agent_events: BTreeMap<(UnixMillis, u64), AgentEventRecord>,
    agent_event_count: u64,
    /// Web sessions by digest (`web_sessions`).
    web_sessions: HashMap<SecretDigest, WebSession>,
    /// API tokens in creation order (`api_tokens`; few, so lookups walk the list).
    api_tokens: Vec<ApiTokenRecord>,
    /// Paused agents with when they were paused.
    paused: BTreeMap<SessionName, UnixMillis>,
    /// Learned limits per agent (`learned_limits`).
    learned: BTreeMap<SessionName, LearnedLimits>,
    workflows: Workflows,
    /// Sealed session bytes (`SessionVault`, PostgreSQL's `session_data`).
    sessions: BTreeMap<SessionName, Vec<u8>>,
    /// `cluster_nodes` and `session_leases`.
    nodes: BTreeMap<NodeId, NodeRecord>,
    leases: BTreeMap<SessionName, LeaseRecord>,
    /// `account_users`.
    account_users: BTreeMap<SessionName, ChatId>,
}

/// The `workflows` table.
#[derive(Debug, Default)]
struct Workflows {
    records: BTreeMap<WorkflowId, WorkflowRecord>,
    by_key: HashMap<String, WorkflowId>,
    active: BTreeSet<WorkflowId>,
    /// The node executing each claimed workflow (`claimed_by`).
    claimed: HashMap<WorkflowId, NodeId>,
    last_id: i64,
}

impl Workflows {
    fn start(&mut self, new: &NewWorkflow) -> (WorkflowId, bool) {
        if let Some(&id) = self.by_key.get(&new.key) {
            return (id, false);
        }
        self.last_id += 1;
        let id = WorkflowId(self.last_id);
        self.by_key.insert(new.key.clone(), id);
        if !new.state.is_finished() {
            self.active.insert(id);
        }
        self.records.insert(
            id,
            WorkflowRecord {
                id,
                key: new.key.clone(),
                state: new.state.clone(),
                created_at: new.created_at,
                updated_at: new.created_at,
            },
        );
        (id, true)
    }
}

/// The processed messages (`processed_messages`, `notification_claims`).
#[derive(Debug, Default)]
struct Vacancies {
    records: BTreeMap<i64, VacancyRecord>,
    /// `(source, message_id)` of every record: each message is processed once.
    processed: HashSet<(ChatId, i32)>,
    /// The last claim of each `(channel, text hash)`.
    claims: HashMap<(String, String), UnixMillis>,
    last_id: i64,
}

impl Vacancies {
    /// Records a processed message; `false` when it was processed before.
    fn record(&mut self, message: &ProcessedMessage) -> bool {
        if !self.processed.insert((message.source, message.message_id)) {
            return false;
        }
        self.last_id += 1;
        let id = self.last_id;
        self.records.insert(
            id,
            VacancyRecord {
                id,
                message: message.clone(),
            },
        );
        true
    }

    fn claim(
        &mut self,
        channel_id: &str,
        text_hash: &str,
        window_start: UnixMillis,
        at: UnixMillis,
    ) -> bool {
        let key = (channel_id.to_owned(), text_hash.to_owned());
        match self.claims.get(&key) {
            Some(&claimed_at) if claimed_at >= window_start => false,
            _ => {
                self.claims.insert(key, at);
                true
            }
        }
    }
}

/// The CRM tables (`conversations`, `relays`, `own_posts`).
#[derive(Debug, Default)]
struct Conversations {
    /// By `ConversationId.0`, which is not `Ord`; id order is creation order.
    by_id: BTreeMap<i64, Conversation>,
    by_contact: HashMap<(ChatId, ChatId), ConversationId>,
    by_topic: HashMap<(ChatId, TopicId), ConversationId>,
    /// The relayed source messages; nothing reads relay records back but their uniqueness.
    relayed: HashSet<(ConversationId, RelayDirection, ChatId, i32)>,
    /// Outbox messages that carry a relay record: one record each.
    relayed_outbox: HashSet<OutboxId>,
    /// The random id each creator was given per `(conversation, replaced topic or 0)`.
    topic_attempts: HashMap<(ConversationId, i32, SessionName), RandomId>,
    own_posts: HashMap<(ChatId, i32), Option<ConversationId>>,
    last_id: i64,
}

impl Conversations {
    fn get_mut(
        &mut self,
        operation: &'static str,
        id: ConversationId,
    ) -> Result<&mut Conversation, StoreError> {
        self.by_id
            .get_mut(&id.0)
            .ok_or_else(|| no_conversation(operation, id))
    }

    fn found(&self, id: Option<&ConversationId>) -> Option<Conversation> {
        id.map(|id| self.by_id[&id.0].clone())
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
    /// Each message's last claim by a node: the node and the expiry of the lease it was taken
    /// under (`claimed_by`, `claim_expires_at`).
    claims: HashMap<OutboxId, (NodeId, UnixMillis)>,
    counts: OutboxCounts,
    last_id: i64,
}

impl Outbox {
    /// Enqueues, or finds the holder of the key.
    fn enqueue(&mut self, message: NewOutboxMessage) -> Enqueued {
        if let Some(key) = &message.idempotency_key
            && let Some(&holder) = self.idempotency_keys.get(key)
        {
            let status = self.messages[&holder].status;
            return Enqueued::Existing(holder, status);
        }
        self.last_id += 1;
        let id = OutboxId(self.last_id);
        if let Some(key) = &message.idempotency_key {
            self.idempotency_keys.insert(key.clone(), id);
        }
        let updated_at = message.created_at;
        self.messages.insert(
            id,
            OutboxMessage {
                id,
                message,
                status: OutboxStatus::Pending,
                attempts: 0,
                last_agent: None,
                in_doubt: None,
                sent: None,
                holdup: None,
                end: None,
                updated_at,
            },
        );
        self.pending.insert(id);
        self.counts.pending += 1;
        Enqueued::New(id)
    }

    /// The message `id`, if it is pending; else the same error [`SqliteStore`] gives.
    /// Records an attempt on `agent` (`Store::begin_attempt`).
    fn attempt(
        &mut self,
        operation: &'static str,
        id: OutboxId,
        agent: &SessionName,
        proposed: RandomId,
        at: UnixMillis,
    ) -> Result<RandomId, StoreError> {
        let message = self.pending_message(operation, id)?;
        message.attempts = message.attempts.saturating_add(1);
        message.last_agent = Some(agent.clone());
        message.updated_at = at;
        // The first id this agent was given wins: re-sending with it lets Telegram drop the
        // duplicate if the earlier attempt did get through.
        let random_id = *self
            .random_ids
            .entry((id, agent.clone()))
            .or_insert(proposed);
        self.messages.get_mut(&id).expect("pending above").in_doubt = Some(InDoubt {
            agent: agent.clone(),
            random_id,
        });
        Ok(random_id)
    }

    fn pending_message(
        &mut self,
        operation: &'static str,
        id: OutboxId,
    ) -> Result<&mut OutboxMessage, StoreError> {
        match self.messages.get_mut(&id) {
            None => Err(no_outbox_message(operation, id)),
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

    /// Ends pending message `id` as `end` (an error when it is not pending).
    fn end(
        &mut self,
        operation: &'static str,
        id: OutboxId,
        end: &OutboxEnd,
        at: UnixMillis,
    ) -> Result<(), StoreError> {
        let message = self.pending_message(operation, id)?;
        message.status = end.status();
        message.end = Some(end.clone());
        message.in_doubt = None;
        message.updated_at = at;
        self.count_end(id, end.status());
        Ok(())
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
    fn lock(&self, operation: &'static str) -> Result<MutexGuard<'_, Tables>, StoreError> {
        self.tables.lock().map_err(|_| {
            StoreError::new(
                operation,
                "the in-memory store is unusable after a panic while it was being changed",
            )
        })
    }
}

/// PostgreSQL's `session_data` in memory, for the session store's tests.
#[async_trait::async_trait]
impl jobbot_core::store::SessionVault for MemoryStore {
    async fn load_session(&self, name: &SessionName) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock("load a session")?.sessions.get(name).cloned())
    }

    async fn save_session(
        &self,
        name: &SessionName,
        sealed: &[u8],
        _now: UnixMillis,
    ) -> Result<(), StoreError> {
        self.lock("save a session")?
            .sessions
            .insert(name.clone(), sealed.to_vec());
        Ok(())
    }

    async fn session_names(&self) -> Result<Vec<SessionName>, StoreError> {
        Ok(self
            .lock("list the sessions")?
            .sessions
            .keys()
            .cloned()
            .collect())
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
        let mut tables = self.lock("enqueue an outbox message")?;
        Ok(tables.outbox.enqueue(message))
    }

    async fn pending_outbox(&self) -> Result<Vec<OutboxMessage>, StoreError> {
        let tables = self.lock("read the pending outbox")?;
        let outbox = &tables.outbox;
        Ok(outbox
            .pending
            .iter()
            .map(|id| outbox.messages[id].clone())
            .collect())
    }

    async fn outbox_message(&self, id: OutboxId) -> Result<Option<OutboxMessage>, StoreError> {
        let tables = self.lock("read an outbox message")?;
        Ok(tables.outbox.messages.get(&id).cloned())
    }

    async fn outbox_by_key(&self, key: &str) -> Result<Option<OutboxMessage>, StoreError> {
        let tables = self.lock("find a message by its key")?;
        let outbox = &tables.outbox;
        Ok(outbox
            .idempotency_keys
            .get(key)
            .map(|id| outbox.messages[id].clone()))
    }

    async fn begin_attempt(
        &self,
        id: OutboxId,
        agent: &SessionName,
        proposed: RandomId,
        at: UnixMillis,
    ) -> Result<RandomId, StoreError> {
        let operation = "begin a send attempt";
        self.lock(operation)?
            .outbox
            .attempt(operation, id, agent, proposed, at)
    }

    async fn note_holdup(
        &self,
        id: OutboxId,
        holdup: &Holdup,
        at: UnixMillis,
    ) -> Result<(), StoreError> {
        let operation = "note what holds a message up";
        let mut tables = self.lock(operation)?;
        let outbox = &mut tables.outbox;
        outbox.pending_message(operation, id)?;
        let random_id = match holdup {
            Holdup::InDoubt { agent, .. } => Some(
                outbox
                    .random_ids
                    .get(&(id, agent.clone()))
                    .copied()
                    .ok_or_else(|| never_attempted(operation, id, agent))?,
            ),
            _ => None,
        };
        let message = outbox.pending_message(operation, id)?;
        match holdup {
            Holdup::Refused { agent, .. } | Holdup::NotAttempted { agent } => {
                if message
                    .in_doubt
                    .as_ref()
                    .is_some_and(|doubt| &doubt.agent == agent)
                {
                    message.in_doubt = None;
                }
            }
            Holdup::InDoubt { agent, .. } => {
                message.in_doubt = random_id.map(|random_id| InDoubt {
                    agent: agent.clone(),
                    random_id,
                });
            }
            Holdup::Waiting { .. } => {}
        }
        message.holdup = Some(holdup.clone());
        message.updated_at = at;
        Ok(())
    }

    async fn mark_sent(
        &self,
        id: OutboxId,
        agent: &SessionName,
        sent: Option<SentMessage>,
        at: UnixMillis,
    ) -> Result<(), StoreError> {
        let operation = "mark an outbox message sent";
        let mut tables = self.lock(operation)?;
        let outbox = &mut tables.outbox;
        let message = outbox.pending_message(operation, id)?;
        message.status = OutboxStatus::Sent;
        // The last holdup stays, as in SQLite: it explains why the send took retries.
        message.sent = Some(SentRecord {
            agent: agent.clone(),
            message: sent,
            at,
        });
        message.in_doubt = None;
        message.updated_at = at;
        outbox.count_end(id, OutboxStatus::Sent);
        Ok(())
    }

    async fn mark_ended(
        &self,
        id: OutboxId,
        end: &OutboxEnd,
        at: UnixMillis,
    ) -> Result<(), StoreError> {
        let operation = "end an outbox message";
        let mut tables = self.lock(operation)?;
        let outbox = &mut tables.outbox;
        outbox.end(operation, id, end, at)?;
        Ok(())
    }

    async fn ended_outbox(
        &self,
        since: UnixMillis,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let tables = self.lock("list the messages that ended undelivered")?;
        let limit = usize::try_from(page_size(limit)).unwrap_or(usize::MAX);
        let mut ended: Vec<&OutboxMessage> = tables
            .outbox
            .messages
            .values()
            .filter(|message| {
                matches!(message.status, OutboxStatus::Failed | OutboxStatus::Expired)
                    && message.updated_at >= since
            })
            .collect();
        // Newest first, ties by id, as SQLite's `ORDER BY updated_at DESC, id DESC`.
        ended.sort_by_key(|message| std::cmp::Reverse((message.updated_at, message.id)));
        Ok(ended.into_iter().take(limit).cloned().collect())
    }

    async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        Ok(self.lock("count the outbox")?.outbox.counts)
    }

    async fn record_processed(&self, message: &ProcessedMessage) -> Result<bool, StoreError> {
        let mut tables = self.lock("record a processed message")?;
        Ok(tables.vacancies.record(message))
    }

    async fn take_in_vacancy(&self, intake: &VacancyIntake) -> Result<IntakeOutcome, StoreError> {
        let mut tables = self.lock("take in a vacancy")?;
        let message = &intake.message;
        if tables
            .vacancies
            .processed
            .contains(&(message.source, message.message_id))
        {
            return Ok(IntakeOutcome::AlreadyProcessed);
        }
        // Everything below happens under the one lock, as SQLite's one transaction.
        let mut record = message.clone();
        let mut notified = Vec::new();
        let mut reposts = Vec::new();
        let mut workflows = Vec::new();
        for channel in &intake.channels {
            let claimed = tables.vacancies.claim(
                &channel.channel_id,
                &message.text_hash,
                intake.window_start,
                message.processed_at,
            );
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
            let enqueued = tables.outbox.enqueue(channel.notification.clone());
            notified.push((channel.channel_id.clone(), enqueued));
            for workflow in &channel.workflows {
                workflows.push(tables.workflows.start(workflow).0);
            }
        }
        tables.vacancies.record(&record);
        Ok(IntakeOutcome::Processed {
            notified,
            reposts,
            workflows,
        })
    }

    async fn is_processed(&self, source: ChatId, message_id: i32) -> Result<bool, StoreError> {
        let tables = self.lock("check whether a message was processed")?;
        Ok(tables.vacancies.processed.contains(&(source, message_id)))
    }

    async fn claim_notification(
        &self,
        channel_id: &str,
        text_hash: &str,
        window_start: UnixMillis,
        at: UnixMillis,
    ) -> Result<bool, StoreError> {
        let mut tables = self.lock("claim a notification")?;
        Ok(tables
            .vacancies
            .claim(channel_id, text_hash, window_start, at))
    }

    async fn vacancies(&self, query: &VacancyQuery) -> Result<Vec<VacancyRecord>, StoreError> {
        let tables = self.lock("list vacancies")?;
        let below = query.before_id.unwrap_or(i64::MAX);
        let limit = usize::try_from(page_size(query.limit)).unwrap_or(usize::MAX);
        Ok(tables
            .vacancies
            .records
            .range(..below)
            .rev()
            .map(|(_, record)| record)
            .filter(|record| {
                query
                    .status
                    .is_none_or(|status| record.message.status == status)
            })
            .filter(|record| {
                query.channel_id.as_ref().is_none_or(|channel_id| {
                    record
                        .message
                        .matched
                        .iter()
                        .any(|matched| &matched.channel_id == channel_id)
                })
            })
            .take(limit)
            .cloned()
            .collect())
    }

    async fn open_conversation(
        &self,
        new: &NewConversation,
    ) -> Result<(Conversation, bool), StoreError> {
        let mut tables = self.lock("open a conversation")?;
        let conversations = &mut tables.conversations;
        // An existing conversation keeps everything, its agent above all: the contact already
        // talks to that account.
        if let Some(existing) =
            conversations.found(conversations.by_contact.get(&(new.group, new.contact)))
        {
            return Ok((existing, false));
        }
        conversations.last_id += 1;
        let id = ConversationId(conversations.last_id);
        let conversation = Conversation {
            id,
            channel_id: new.channel_id.clone(),
            group: new.group,
            topic: None,
            contact: new.contact,
            contact_username: new.contact_username.clone(),
            contact_name: new.contact_name.clone(),
            agent: new.agent.clone(),
            contact_peer: new.contact_peer,
            contact_author: new.contact_author.clone(),
            status: ConversationStatus::Active,
            created_at: new.created_at,
            last_message_at: new.created_at,
        };
        conversations
            .by_contact
            .insert((new.group, new.contact), id);
        conversations.by_id.insert(id.0, conversation.clone());
        Ok((conversation, true))
    }

    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>, StoreError> {
        let tables = self.lock("read a conversation")?;
        Ok(tables.conversations.by_id.get(&id.0).cloned())
    }

    async fn conversation_by_contact(
        &self,
        group: ChatId,
        contact: ChatId,
    ) -> Result<Option<Conversation>, StoreError> {
        let tables = self.lock("find a contact's conversation")?;
        let conversations = &tables.conversations;
        Ok(conversations.found(conversations.by_contact.get(&(group, contact))))
    }

    async fn conversation_by_topic(
        &self,
        group: ChatId,
        topic: TopicId,
    ) -> Result<Option<Conversation>, StoreError> {
        let tables = self.lock("find a topic's conversation")?;
        let conversations = &tables.conversations;
        Ok(conversations.found(conversations.by_topic.get(&(group, topic))))
    }

    async fn remember_contact_peer(
        &self,
        id: ConversationId,
        peer: PeerRef,
    ) -> Result<bool, StoreError> {
        let mut tables = self.lock("remember a contact's peer")?;
        match tables.conversations.by_id.get_mut(&id.0) {
            Some(conversation)
                if conversation.contact_peer.is_none() && conversation.contact == peer.id =>
            {
                conversation.contact_peer = Some(peer);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn conversations_with_contact(
        &self,
        agent: &SessionName,
        contact: ChatId,
    ) -> Result<Vec<Conversation>, StoreError> {
        let tables = self.lock("list a contact's conversations")?;
        // A scan where SQLite has an index: a contact has a handful of conversations, and this
        // store holds a test's worth of them.
        Ok(tables
            .conversations
            .by_id
            .values()
            .filter(|conversation| {
                &conversation.agent == agent
                    && conversation.contact == contact
                    && conversation.status == ConversationStatus::Active
            })
            .cloned()
            .collect())
    }

    async fn begin_topic_creation(
        &self,
        id: ConversationId,
        replacing: Option<TopicId>,
        creator: &SessionName,
        proposed: RandomId,
    ) -> Result<RandomId, StoreError> {
        let operation = "record a topic creation";
        let mut tables = self.lock(operation)?;
        let conversations = &mut tables.conversations;
        conversations.get_mut(operation, id)?;
        let replacing = replacing.map_or(0, |topic| topic.0);
        Ok(*conversations
            .topic_attempts
            .entry((id, replacing, creator.clone()))
            .or_insert(proposed))
    }

    async fn set_conversation_topic(
        &self,
        id: ConversationId,
        topic: Option<TopicId>,
    ) -> Result<(), StoreError> {
        let operation = "set a conversation's topic";
        let mut tables = self.lock(operation)?;
        let conversations = &mut tables.conversations;
        let conversation = conversations.get_mut(operation, id)?;
        let (group, previous) = (conversation.group, conversation.topic);
        if let Some(topic) = topic
            && let Some(&holder) = conversations.by_topic.get(&(group, topic))
            && holder != id
        {
            return Err(topic_taken(operation, group, topic, holder));
        }
        if let Some(previous) = previous {
            conversations.by_topic.remove(&(group, previous));
        }
        if let Some(topic) = topic {
            conversations.by_topic.insert((group, topic), id);
        }
        conversations.get_mut(operation, id)?.topic = topic;
        Ok(())
    }

    async fn touch_conversation(
        &self,
        id: ConversationId,
        at: UnixMillis,
    ) -> Result<(), StoreError> {
        let operation = "touch a conversation";
        let mut tables = self.lock(operation)?;
        let conversation = tables.conversations.get_mut(operation, id)?;
        // Never backwards, as in SQLite.
        conversation.last_message_at = conversation.last_message_at.max(at);
        Ok(())
    }

    async fn record_relay(&self, record: &RelayRecord) -> Result<bool, StoreError> {
        let operation = "record a relayed message";
        let mut tables = self.lock(operation)?;
        if !tables
            .conversations
            .by_id
            .contains_key(&record.conversation.0)
        {
            return Err(no_conversation(operation, record.conversation));
        }
        if let Some(outbox) = record.outbox
            && !tables.outbox.messages.contains_key(&outbox)
        {
            return Err(no_outbox_message(operation, outbox));
        }
        let conversations = &mut tables.conversations;
        // One record per outbox message, as SQLite's unique index.
        if let Some(outbox) = record.outbox
            && conversations.relayed_outbox.contains(&outbox)
        {
            return Ok(false);
        }
        let new = match record.source {
            // Service posts have no source and are deduplicated only by their outbox message.
            None => true,
            Some((chat, message_id)) => conversations.relayed.insert((
                record.conversation,
                record.direction,
                chat,
                message_id,
            )),
        };
        if new && let Some(outbox) = record.outbox {
            conversations.relayed_outbox.insert(outbox);
        }
        Ok(new)
    }

    async fn is_own_post(&self, group: ChatId, message_id: i32) -> Result<bool, StoreError> {
        let tables = self.lock("check whether a post is jobbot's own")?;
        Ok(tables
            .conversations
            .own_posts
            .contains_key(&(group, message_id)))
    }

    async fn record_own_post(
        &self,
        group: ChatId,
        message_id: i32,
        conversation: Option<ConversationId>,
    ) -> Result<(), StoreError> {
        let operation = "record an own post";
        let mut tables = self.lock(operation)?;
        let conversations = &mut tables.conversations;
        if let Some(id) = conversation
            && !conversations.by_id.contains_key(&id.0)
        {
            return Err(no_conversation(operation, id));
        }
        // The first record stays, as in SQLite.
        conversations
            .own_posts
            .entry((group, message_id))
            .or_insert(conversation);
        Ok(())
    }

    async fn last_auto_response_to(
        &self,
        contact: ChatId,
    ) -> Result<Option<UnixMillis>, StoreError> {
        let tables = self.lock("read a contact's last auto-response")?;
        Ok(tables.last_auto_response.get(&contact).copied())
    }

    async fn record_auto_response(
        &self,
        _channel_id: &str,
        contact: ChatId,
        at: UnixMillis,
    ) -> Result<(), StoreError> {
        let mut tables = self.lock("record an auto-response")?;
        let last = tables.last_auto_response.entry(contact).or_insert(at);
        *last = (*last).max(at);
        Ok(())
    }

    async fn outbox_stats(&self, since: UnixMillis) -> Result<OutboxStats, StoreError> {
        let tables = self.lock("read the outbox statistics")?;
        // The same choice as SQLite: pending messages always (the backlog now), ended ones when
        // they ended at or after `since`. Keys sort by their text, as SQLite's ORDER BY does.
        let mut by_kind: BTreeMap<(&str, &str), (OutboxKind, OutboxStatus, u64)> = BTreeMap::new();
        let mut per_hour: BTreeMap<(UnixMillis, &SessionName), u64> = BTreeMap::new();
        for message in tables.outbox.messages.values() {
            if message.status == OutboxStatus::Pending || message.updated_at >= since {
                let kind = message.message.kind;
                by_kind
                    .entry((kind.as_str(), message.status.as_str()))
                    .or_insert((kind, message.status, 0))
                    .2 += 1;
            }
            if let Some(sent) = &message.sent
                && sent.at >= since
            {
                let hour = UnixMillis(sent.at.0.div_euclid(HOUR_MILLIS) * HOUR_MILLIS);
                *per_hour.entry((hour, &sent.agent)).or_default() += 1;
            }
        }
        Ok(OutboxStats {
            by_kind_and_status: by_kind.into_values().collect(),
            sent_per_agent_hour: per_hour
                .into_iter()
                .map(|((hour, agent), count)| (agent.clone(), hour, count))
                .collect(),
        })
    }

    async fn record_agent_event(&self, event: &AgentEventRecord) -> Result<(), StoreError> {
        let mut tables = self.lock("record an agent event")?;
        tables.agent_event_count += 1;
        let sequence = tables.agent_event_count;
        tables
            .agent_events
            .insert((event.at, sequence), event.clone());
        Ok(())
    }

    async fn agent_events(
        &self,
        since: UnixMillis,
        limit: u32,
    ) -> Result<Vec<AgentEventRecord>, StoreError> {
        let tables = self.lock("list agent events")?;
        let limit = usize::try_from(page_size(limit)).unwrap_or(usize::MAX);
        Ok(tables
            .agent_events
            .range((since, 0)..)
            .rev()
            .take(limit)
            .map(|(_, event)| event.clone())
            .collect())
    }

    async fn set_agent_paused(
        &self,
        agent: &SessionName,
        paused: bool,
        at: UnixMillis,
    ) -> Result<(), StoreError> {
        let mut tables = self.lock("record an agent's pause")?;
        if paused {
            tables.paused.entry(agent.clone()).or_insert(at);
        } else {
            tables.paused.remove(agent);
        }
        Ok(())
    }

    async fn paused_agents(&self) -> Result<Vec<SessionName>, StoreError> {
        let tables = self.lock("list paused agents")?;
        Ok(tables.paused.keys().cloned().collect())
    }

    async fn save_learned_limits(
        &self,
        agent: &SessionName,
        learned: &LearnedLimits,
        _at: UnixMillis,
    ) -> Result<(), StoreError> {
        let mut tables = self.lock("store an agent's learned limits")?;
        tables.learned.insert(agent.clone(), *learned);
        Ok(())
    }

    async fn learned_limits(&self) -> Result<Vec<(SessionName, LearnedLimits)>, StoreError> {
        let tables = self.lock("list learned limits")?;
        Ok(tables
            .learned
            .iter()
            .map(|(agent, learned)| (agent.clone(), *learned))
            .collect())
    }

    async fn start_workflow(&self, new: &NewWorkflow) -> Result<(WorkflowId, bool), StoreError> {
        let mut tables = self.lock("start a workflow")?;
        Ok(tables.workflows.start(new))
    }

    async fn active_workflows(&self) -> Result<Vec<WorkflowRecord>, StoreError> {
        let tables = self.lock("list active workflows")?;
        let workflows = &tables.workflows;
        Ok(workflows
            .active
            .iter()
            .map(|id| workflows.records[id].clone())
            .collect())
    }

    async fn workflow(&self, id: WorkflowId) -> Result<Option<WorkflowRecord>, StoreError> {
        let tables = self.lock("read a workflow")?;
        Ok(tables.workflows.records.get(&id).cloned())
    }

    async fn workflow_by_key(&self, key: &str) -> Result<Option<WorkflowRecord>, StoreError> {
        let tables = self.lock("read a workflow")?;
        let workflows = &tables.workflows;
        Ok(workflows
            .by_key
            .get(key)
            .and_then(|id| workflows.records.get(id))
            .cloned())
    }

    async fn save_workflow(
        &self,
        id: WorkflowId,
        state: &Workflow,
        at: UnixMillis,
    ) -> Result<(), StoreError> {
        let operation = "save a workflow";
        let mut tables = self.lock(operation)?;
        let workflows = &mut tables.workflows;
        let Some(record) = workflows.records.get_mut(&id) else {
            return Err(no_workflow(operation, id));
        };
        if record.state.is_finished() {
            return Err(finished_workflow(operation, id));
        }
        if record.state.kind() != state.kind() {
            return Err(StoreError::new(
                operation,
                format!(
                    "workflow #{} is a {}, not a {}",
                    id.0,
                    record.state.kind(),
                    state.kind()
                ),
            ));
        }
        record.state = state.clone();
        record.updated_at = at;
        if state.is_finished() {
            workflows.active.remove(&id);
        }
        Ok(())
    }

    async fn create_web_session(&self, session: &WebSession) -> Result<(), StoreError> {
        let operation = "create a web session";
        let mut tables = self.lock(operation)?;
        if tables.web_sessions.contains_key(&session.digest) {
            return Err(session_taken(operation));
        }
        tables.web_sessions.insert(session.digest, session.clone());
        Ok(())
    }

    async fn web_session(
        &self,
        digest: &SecretDigest,
        now: UnixMillis,
    ) -> Result<Option<WebSession>, StoreError> {
        let tables = self.lock("read a web session")?;
        Ok(tables
            .web_sessions
            .get(digest)
            .filter(|session| session.expires_at > now)
            .cloned())
    }

    async fn touch_web_session(
        &self,
        digest: &SecretDigest,
        at: UnixMillis,
    ) -> Result<(), StoreError> {
        let mut tables = self.lock("touch a web session")?;
        if let Some(session) = tables.web_sessions.get_mut(digest) {
            session.last_seen_at = session.last_seen_at.max(at);
        }
        Ok(())
    }

    async fn end_web_session(&self, digest: &SecretDigest) -> Result<bool, StoreError> {
        let mut tables = self.lock("end a web session")?;
        Ok(tables.web_sessions.remove(digest).is_some())
    }

    async fn create_api_token(&self, token: &ApiTokenRecord) -> Result<(), StoreError> {
        let operation = "create an API token";
        let mut tables = self.lock(operation)?;
        if tables
            .api_tokens
            .iter()
            .any(|known| known.id == token.id || known.digest == token.digest)
        {
            return Err(token_taken(operation, &token.id));
        }
        tables.api_tokens.push(token.clone());
        Ok(())
    }

    async fn api_tokens(&self, now: UnixMillis) -> Result<Vec<ApiTokenRecord>, StoreError> {
        let tables = self.lock("list API tokens")?;
        let mut tokens: Vec<ApiTokenRecord> = tables
            .api_tokens
            .iter()
            .filter(|token| token.expires_at > now)
            .cloned()
            .collect();
        tokens.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(tokens)
    }

    async fn api_token_by_digest(
        &self,
        digest: &SecretDigest,
        now: UnixMillis,
    ) -> Result<Option<ApiTokenRecord>, StoreError> {
        let tables = self.lock("read an API token")?;
        Ok(tables
            .api_tokens
            .iter()
            .find(|token| token.digest == *digest && token.expires_at > now)
            .cloned())
    }

    async fn touch_api_token(&self, id: &str, at: UnixMillis) -> Result<(), StoreError> {
        let mut tables = self.lock("touch an API token")?;
        if let Some(token) = tables.api_tokens.iter_mut().find(|token| token.id == id) {
            token.last_used_at = Some(token.last_used_at.map_or(at, |last| last.max(at)));
        }
        Ok(())
    }

    async fn revoke_api_token(&self, id: &str) -> Result<bool, StoreError> {
        let mut tables = self.lock("revoke an API token")?;
        let before = tables.api_tokens.len();
        tables.api_tokens.retain(|token| token.id != id);
        Ok(tables.api_tokens.len() != before)
    }

    async fn purge_expired_auth(&self, now: UnixMillis) -> Result<u64, StoreError> {
        let mut tables = self.lock("purge expired sessions and tokens")?;
        let before = tables.web_sessions.len() + tables.api_tokens.len();
        tables
            .web_sessions
            .retain(|_, session| session.expires_at > now);
        tables.api_tokens.retain(|token| token.expires_at > now);
        let after = tables.web_sessions.len() + tables.api_tokens.len();
        Ok(u64::try_from(before - after).unwrap_or(u64::MAX))
    }

    async fn heartbeat(
        &self,
        node: &NodeId,
        now: UnixMillis,
        expires_at: UnixMillis,
    ) -> Result<(), StoreError> {
        let mut tables = self.lock("record a node's heartbeat")?;
        let record = tables
            .nodes
            .entry(node.clone())
            .or_insert_with(|| NodeRecord {
                node: node.clone(),
                started_at: now,
                heartbeat_at: now,
                expires_at,
            });
        record.heartbeat_at = now;
        record.expires_at = expires_at;
        Ok(())
    }

    async fn leave_cluster(&self, node: &NodeId) -> Result<(), StoreError> {
        let mut tables = self.lock("remove a node from the cluster")?;
        tables.nodes.remove(node);
        for lease in tables.leases.values_mut() {
            if lease.holder.as_ref() == Some(node) {
                lease.holder = None;
            }
        }
        Ok(())
    }

    async fn cluster_nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        Ok(self
            .lock("list the cluster's nodes")?
            .nodes
            .values()
            .cloned()
            .collect())
    }

    async fn session_leases(&self) -> Result<Vec<LeaseRecord>, StoreError> {
        Ok(self
            .lock("list the session leases")?
            .leases
            .values()
            .cloned()
            .collect())
    }

    async fn acquire_lease(
        &self,
        session: &SessionName,
        node: &NodeId,
        now: UnixMillis,
        expires_at: UnixMillis,
    ) -> Result<Option<LeaseRecord>, StoreError> {
        let mut tables = self.lock("take a session's lease")?;
        let Some(lease) = tables.leases.get_mut(session) else {
            let lease = LeaseRecord {
                session: session.clone(),
                holder: Some(node.clone()),
                token: FencingToken(1),
                acquired_at: now,
                renewed_at: now,
                expires_at,
            };
            tables.leases.insert(session.clone(), lease.clone());
            return Ok(Some(lease));
        };
        match lease.holder_at(now) {
            Some(holder) if holder != node => return Ok(None),
            Some(_) => {}
            None => {
                lease.token = FencingToken(lease.token.0 + 1);
                lease.acquired_at = now;
                lease.holder = Some(node.clone());
            }
        }
        lease.renewed_at = now;
        lease.expires_at = expires_at;
        Ok(Some(lease.clone()))
    }

    async fn renew_lease(
        &self,
        session: &SessionName,
        node: &NodeId,
        token: FencingToken,
        now: UnixMillis,
        expires_at: UnixMillis,
    ) -> Result<Option<LeaseRecord>, StoreError> {
        let mut tables = self.lock("renew a session's lease")?;
        match tables.leases.get_mut(session) {
            Some(lease) if lease.holder.as_ref() == Some(node) && lease.token == token => {
                lease.renewed_at = now;
                lease.expires_at = expires_at;
                Ok(Some(lease.clone()))
            }
            _ => Ok(None),
        }
    }

    async fn holds_lease(
        &self,
        session: &SessionName,
        node: &NodeId,
        token: FencingToken,
        now: UnixMillis,
    ) -> Result<bool, StoreError> {
        Ok(self
            .lock("check a session's lease")?
            .leases
            .get(session)
            .is_some_and(|lease| lease.holder_at(now) == Some(node) && lease.token == token))
    }

    async fn claim_attempt(
        &self,
        id: OutboxId,
        agent: &SessionName,
        node: &NodeId,
        token: FencingToken,
        proposed: RandomId,
        at: UnixMillis,
    ) -> Result<AttemptClaim, StoreError> {
        let operation = "claim a message for a send attempt";
        let mut tables = self.lock(operation)?;
        let Tables { outbox, leases, .. } = &mut *tables;
        let Some(message) = outbox
            .messages
            .get(&id)
            .filter(|message| message.status == OutboxStatus::Pending)
        else {
            return Ok(AttemptClaim::Refused(ClaimRefusal::NotPending));
        };
        let Some(lease) = leases
            .get(agent)
            .filter(|lease| lease.holder_at(at) == Some(node) && lease.token == token)
        else {
            return Ok(AttemptClaim::Refused(ClaimRefusal::LeaseNotHeld));
        };
        if let Some(doubt) = message
            .in_doubt
            .as_ref()
            .filter(|doubt| &doubt.agent != agent)
        {
            return Ok(AttemptClaim::Refused(ClaimRefusal::InDoubtOn {
                agent: doubt.agent.clone(),
            }));
        }
        if let Some((claimer, until)) = outbox.claims.get(&id)
            && claimer != node
            && *until > at
        {
            return Ok(AttemptClaim::Refused(ClaimRefusal::ClaimedElsewhere {
                node: claimer.clone(),
                until: *until,
            }));
        }
        let until = lease.expires_at;
        let random_id = outbox.attempt(operation, id, agent, proposed, at)?;
        outbox.claims.insert(id, (node.clone(), until));
        Ok(AttemptClaim::Taken(random_id))
    }

    async fn remember_account_user(
        &self,
        session: &SessionName,
        user: ChatId,
    ) -> Result<(), StoreError> {
        self.lock("record an account's user")?
            .account_users
            .insert(session.clone(), user);
        Ok(())
    }

    async fn account_users(&self) -> Result<Vec<ChatId>, StoreError> {
        Ok(self
            .lock("list the accounts' users")?
            .account_users
            .values()
            .copied()
            .collect())
    }

    async fn end_unclaimed(
        &self,
        id: OutboxId,
        end: &OutboxEnd,
        node: &NodeId,
        at: UnixMillis,
    ) -> Result<Result<(), ClaimRefusal>, StoreError> {
        let operation = "end an outbox message no other node holds";
        let mut tables = self.lock(operation)?;
        let outbox = &mut tables.outbox;
        if !outbox
            .messages
            .get(&id)
            .is_some_and(|message| message.status == OutboxStatus::Pending)
        {
            return Ok(Err(ClaimRefusal::NotPending));
        }
        if let Some((claimer, until)) = outbox.claims.get(&id)
            && claimer != node
            && *until > at
        {
            return Ok(Err(ClaimRefusal::ClaimedElsewhere {
                node: claimer.clone(),
                until: *until,
            }));
        }
        outbox.end(operation, id, end, at)?;
        Ok(Ok(()))
    }

    async fn hand_over_workflow(
        &self,
        id: WorkflowId,
        from: &NodeId,
        to: &NodeId,
    ) -> Result<bool, StoreError> {
        let mut tables = self.lock("hand a workflow to another node")?;
        let workflows = &mut tables.workflows;
        if !workflows.active.contains(&id) || workflows.claimed.get(&id) != Some(from) {
            return Ok(false);
        }
        workflows.claimed.insert(id, to.clone());
        Ok(true)
    }

    async fn claim_workflow(
        &self,
        id: WorkflowId,
        node: &NodeId,
        now: UnixMillis,
    ) -> Result<bool, StoreError> {
        let mut tables = self.lock("claim a workflow")?;
        let Tables {
            workflows, nodes, ..
        } = &mut *tables;
        let alive = |node: &NodeId| nodes.get(node).is_some_and(|record| record.is_alive(now));
        if !workflows.active.contains(&id) || !alive(node) {
            return Ok(false);
        }
        let free = match workflows.claimed.get(&id) {
            None => true,
            Some(claimer) => claimer == node || !alive(claimer),
        };
        if free {
            workflows.claimed.insert(id, node.clone());
        }
        Ok(free)
    }

    async fn release_lease(
        &self,
        session: &SessionName,
        node: &NodeId,
        token: FencingToken,
    ) -> Result<bool, StoreError> {
        let mut tables = self.lock("give a session's lease back")?;
        match tables.leases.get_mut(session) {
            Some(lease) if lease.holder.as_ref() == Some(node) && lease.token == token => {
                lease.holder = None;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use jobbot_core::ids::Username;
    use jobbot_core::store::{Recipient, SenderSelection, VacancyContacts, VacancyStatus};
    use jobbot_core::telegram::MessageContent;

    use super::*;

    fn incoming() -> jobbot_core::telegram::IncomingMessage {
        jobbot_core::telegram::IncomingMessage {
            chat: ChatId::user(42).unwrap(),
            chat_kind: jobbot_core::telegram::PeerKind::User,
            chat_title: None,
            chat_username: None,
            message_id: 3,
            sender: None,
            text: "Hi".to_owned(),
            media: None,
            file: None,
            date: 0,
            outgoing: false,
            is_service: false,
            topic_id: None,
        }
    }

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
        ready_on_first_poll("outbox_by_key", store.outbox_by_key("k")).unwrap();
        ready_on_first_poll(
            "begin_attempt",
            store.begin_attempt(id, &agent, RandomId(7), at),
        )
        .unwrap();
        let holdup = Holdup::Refused {
            agent: agent.clone(),
            error: jobbot_core::telegram::TelegramError::FloodWait { seconds: 3 },
        };
        ready_on_first_poll("note_holdup", store.note_holdup(id, &holdup, at)).unwrap();
        let sent = SentMessage {
            chat: ChatId::user(42).unwrap(),
            message_id: 1,
        };
        ready_on_first_poll("mark_sent", store.mark_sent(id, &agent, Some(sent), at)).unwrap();
        let expired = OutboxEnd::Expired { last_holdup: None };
        ready_on_first_poll("mark_ended", store.mark_ended(id, &expired, at)).unwrap_err();
        ready_on_first_poll("ended_outbox", store.ended_outbox(at, 0)).unwrap();
        let source = ChatId::channel(1_111).unwrap();
        let processed = ProcessedMessage {
            source,
            message_id: 5,
            source_title: "Jobs".to_owned(),
            link: "https://t.me/c/1111/5".to_owned(),
            text: "Rust developer".to_owned(),
            text_hash: "hash".to_owned(),
            posted_at: at,
            processed_at: at,
            status: VacancyStatus::NotRelevant,
            matched: Vec::new(),
            contacts: VacancyContacts::default(),
        };
        assert!(
            ready_on_first_poll("record_processed", store.record_processed(&processed)).unwrap()
        );
        let processed = processed.clone();
        ready_on_first_poll("is_processed", store.is_processed(source, 5)).unwrap();
        ready_on_first_poll(
            "claim_notification",
            store.claim_notification("channel_1", "hash", at, at),
        )
        .unwrap();
        ready_on_first_poll("vacancies", store.vacancies(&VacancyQuery::default())).unwrap();
        let group = ChatId::channel(2_222).unwrap();
        let contact = ChatId::user(42).unwrap();
        let new = NewConversation {
            channel_id: "channel_1".to_owned(),
            group,
            contact,
            contact_username: None,
            contact_name: "Alice".to_owned(),
            agent: agent.clone(),
            contact_peer: None,
            contact_author: None,
            created_at: at,
        };
        let (conversation, _) =
            ready_on_first_poll("open_conversation", store.open_conversation(&new)).unwrap();
        let conversation = conversation.id;
        ready_on_first_poll("conversation", store.conversation(conversation)).unwrap();
        ready_on_first_poll(
            "conversation_by_contact",
            store.conversation_by_contact(group, contact),
        )
        .unwrap();
        ready_on_first_poll(
            "set_conversation_topic",
            store.set_conversation_topic(conversation, Some(TopicId(3))),
        )
        .unwrap();
        ready_on_first_poll(
            "conversation_by_topic",
            store.conversation_by_topic(group, TopicId(3)),
        )
        .unwrap();
        ready_on_first_poll(
            "conversations_with_contact",
            store.conversations_with_contact(&agent, contact),
        )
        .unwrap();
        ready_on_first_poll(
            "touch_conversation",
            store.touch_conversation(conversation, at),
        )
        .unwrap();
        let relay = RelayRecord {
            conversation,
            direction: RelayDirection::Service,
            source: None,
            outbox: Some(id),
            at,
        };
        ready_on_first_poll("record_relay", store.record_relay(&relay)).unwrap();
        ready_on_first_poll(
            "record_own_post",
            store.record_own_post(group, 9, Some(conversation)),
        )
        .unwrap();
        ready_on_first_poll("is_own_post", store.is_own_post(group, 9)).unwrap();
        ready_on_first_poll(
            "record_auto_response",
            store.record_auto_response("channel_1", contact, at),
        )
        .unwrap();
        ready_on_first_poll(
            "last_auto_response_to",
            store.last_auto_response_to(contact),
        )
        .unwrap();
        ready_on_first_poll("outbox_stats", store.outbox_stats(at)).unwrap();
        let event = AgentEventRecord {
            agent: agent.clone(),
            event: jobbot_core::store::AgentEvent::FloodWait { seconds: 30 },
            at,
        };
        ready_on_first_poll("record_agent_event", store.record_agent_event(&event)).unwrap();
        ready_on_first_poll("agent_events", store.agent_events(at, 0)).unwrap();
        ready_on_first_poll(
            "begin_topic_creation",
            store.begin_topic_creation(conversation, None, &agent, RandomId(5)),
        )
        .unwrap();
        ready_on_first_poll("set_agent_paused", store.set_agent_paused(&agent, true, at)).unwrap();
        ready_on_first_poll("paused_agents", store.paused_agents()).unwrap();
        let intake = VacancyIntake {
            message: ProcessedMessage {
                message_id: 6,
                ..processed.clone()
            },
            window_start: at,
            channels: Vec::new(),
        };
        ready_on_first_poll("take_in_vacancy", store.take_in_vacancy(&intake)).unwrap();
        let workflow = NewWorkflow {
            key: "relay".to_owned(),
            state: jobbot_core::workflow::Workflow::RelayToTopic(
                jobbot_core::workflow::RelayToTopic::into_conversation(
                    agent.clone(),
                    incoming(),
                    conversation,
                ),
            ),
            created_at: at,
        };
        let (workflow_id, _) =
            ready_on_first_poll("start_workflow", store.start_workflow(&workflow)).unwrap();
        ready_on_first_poll("active_workflows", store.active_workflows()).unwrap();
        ready_on_first_poll("workflow", store.workflow(workflow_id)).unwrap();
        ready_on_first_poll(
            "save_workflow",
            store.save_workflow(workflow_id, &workflow.state, at),
        )
        .unwrap();
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
