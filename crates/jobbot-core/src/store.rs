//! The store port: what the engine persists besides configuration. `jobbot-store` implements it
//! (SQLite now, PostgreSQL next); nothing outside that crate writes SQL. Methods are shaped by
//! the domain (`enqueue`, `mark_sent`), never by tables, so backends stay interchangeable.

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::ids::{ChatId, SessionName, Username};
use crate::telegram::{MessageContent, PeerRef, RandomId, SentMessage, TopicId};

/// Wall-clock time in milliseconds since the Unix epoch. The engine derives it from tokio time,
/// so on paused time it advances with the simulation.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct UnixMillis(pub i64);

impl UnixMillis {
    pub fn plus_seconds(self, seconds: u64) -> Self {
        Self(
            self.0
                .saturating_add(i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX)),
        )
    }

    pub fn as_seconds(self) -> i64 {
        self.0.div_euclid(1000)
    }
}

/// The id of an outbox message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OutboxId(pub i64);

impl fmt::Display for OutboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What an outgoing message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxKind {
    /// A vacancy notification to an output channel, sent by the main account.
    Notification,
    /// The first message to a vacancy's author, from one of the channel's agents.
    AutoResponse,
    /// An operator's reply relayed from a CRM topic to the contact, by the conversation's agent.
    RelayToContact,
    /// A post into a CRM topic (info post, mirrored message).
    TopicPost,
    /// Anything else (benchmarks, tools).
    Other,
}

impl OutboxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Notification => "notification",
            Self::AutoResponse => "auto_response",
            Self::RelayToContact => "relay_to_contact",
            Self::TopicPost => "topic_post",
            Self::Other => "other",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Notification,
            Self::AutoResponse,
            Self::RelayToContact,
            Self::TopicPost,
            Self::Other,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == text)
    }
}

/// Where an outgoing message goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Recipient {
    /// A person by public username. The sending agent resolves it itself: access hashes belong to
    /// one account, so no resolved peer is stored for "whichever agent sends".
    Username { username: Username },
    /// A person as one agent already knows them (they wrote to it). Valid only for that agent,
    /// so the message must be sticky to it.
    KnownPeer { peer: PeerRef },
    /// A channel or group the sender is in.
    Chat { chat: ChatId },
    /// A forum topic of a supergroup.
    Topic { group: ChatId, topic: TopicId },
}

/// Who may send a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum SenderSelection {
    /// The main account (`bot_session`).
    MainAccount,
    /// Any agent of the channel's pool (load-balanced), or exactly `sticky` when set.
    ChannelAgents { sticky: Option<SessionName> },
}

/// A message to put in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewOutboxMessage {
    /// The output channel this message belongs to (its config `id`).
    pub channel_id: String,
    pub kind: OutboxKind,
    pub sender: SenderSelection,
    pub recipient: Recipient,
    pub content: MessageContent,
    /// A first message to someone who never wrote to the sending account (Telegram limits these
    /// with `PEER_FLOOD`).
    pub first_contact: bool,
    /// At most one message per key, ever: e.g. `auto_response:<channel>:<user>`. Enqueueing a key
    /// that exists returns the existing message.
    pub idempotency_key: Option<String>,
    pub created_at: UnixMillis,
    /// Not sent before this instant (human-like delays are scheduled, not slept).
    pub not_before: Option<UnixMillis>,
    /// After this instant the message ends as expired, with the reason it could not go out.
    pub expires_at: UnixMillis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxStatus {
    Pending,
    Sent,
    /// Failed for good (the recipient refuses messages, the username does not exist, …).
    Failed,
    /// Its TTL passed before any agent could deliver it.
    Expired,
}

impl OutboxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Pending, Self::Sent, Self::Failed, Self::Expired]
            .into_iter()
            .find(|s| s.as_str() == text)
    }

    pub fn is_final(self) -> bool {
        self != Self::Pending
    }
}

/// A message in the outbox, with what happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxMessage {
    pub id: OutboxId,
    #[serde(flatten)]
    pub message: NewOutboxMessage,
    pub status: OutboxStatus,
    /// Sends attempted (each attempt reached, or may have reached, Telegram).
    pub attempts: u32,
    /// The agent it was last tried with.
    pub last_agent: Option<SessionName>,
    pub sent: Option<SentRecord>,
    /// Why it failed or expired; the last error while pending.
    pub reason: Option<String>,
    pub updated_at: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentRecord {
    pub agent: SessionName,
    pub message: SentMessage,
    pub at: UnixMillis,
}

/// What `enqueue` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    New(OutboxId),
    /// The idempotency key was taken; this is the message that holds it.
    Existing(OutboxId, OutboxStatus),
}

impl Enqueued {
    pub fn id(self) -> OutboxId {
        match self {
            Self::New(id) | Self::Existing(id, _) => id,
        }
    }
}

/// Counts of outbox messages by status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OutboxCounts {
    pub pending: u64,
    pub sent: u64,
    pub failed: u64,
    pub expired: u64,
}

/// What `health` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreHealth {
    /// `"sqlite"` or `"postgres"`.
    pub backend: String,
    /// The version of the last migration applied.
    pub schema_version: i64,
}

/// A failure of the store. The message names what was being done; it never holds credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("could not {operation}: {message}")]
pub struct StoreError {
    pub operation: &'static str,
    pub message: String,
}

impl StoreError {
    pub fn new(operation: &'static str, message: impl fmt::Display) -> Self {
        Self {
            operation,
            message: message.to_string(),
        }
    }
}

// ----- Processed messages (the vacancy history) -----

/// What monitoring decided about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VacancyStatus {
    /// Matched at least one output channel.
    Relevant,
    NotRelevant,
}

impl VacancyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Relevant => "relevant",
            Self::NotRelevant => "not_relevant",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Relevant, Self::NotRelevant]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// An output channel a message matched, with the include keywords that decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchedChannel {
    pub channel_id: String,
    pub keywords: Vec<String>,
    /// Whether a notification was queued (`false` when the same vacancy was already notified to
    /// this channel from another source within the repost window).
    pub notified: bool,
}

/// Contacts found in a message, as the web history shows them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VacancyContacts {
    /// `@name` forms.
    pub telegram: Vec<String>,
    pub emails: Vec<String>,
    pub phones: Vec<String>,
    /// The ranked CRM target, `@name`, if any.
    pub crm_target: Option<String>,
}

/// A message monitoring looked at. `(source, message_id)` is unique: a message is processed once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessedMessage {
    pub source: ChatId,
    pub message_id: i32,
    pub source_title: String,
    /// `https://t.me/<username>/<id>` or `https://t.me/c/<id>/<id>`.
    pub link: String,
    pub text: String,
    /// Hash of the normalised text, for repost detection across sources.
    pub text_hash: String,
    /// When the message was posted.
    pub posted_at: UnixMillis,
    pub processed_at: UnixMillis,
    pub status: VacancyStatus,
    pub matched: Vec<MatchedChannel>,
    pub contacts: VacancyContacts,
}

/// A processed message with its row id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VacancyRecord {
    pub id: i64,
    #[serde(flatten)]
    pub message: ProcessedMessage,
}

/// Which vacancies to list, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VacancyQuery {
    pub status: Option<VacancyStatus>,
    /// Only messages that matched this channel.
    pub channel_id: Option<String>,
    /// Only rows with an id below this (paging).
    pub before_id: Option<i64>,
    pub limit: u32,
}

// ----- CRM conversations -----

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConversationId(pub i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationStatus {
    Active,
    Closed,
}

/// One contact's conversation in one CRM group: one topic, one agent (sticky, for good).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: ConversationId,
    pub channel_id: String,
    pub group: ChatId,
    /// `None` until the topic is created (or after it was found deleted, until recreated).
    pub topic: Option<TopicId>,
    pub contact: ChatId,
    pub contact_username: Option<Username>,
    pub contact_name: String,
    /// The agent that talks to this contact; never changes.
    pub agent: SessionName,
    /// The contact as the agent knows them (access hash is the agent's own).
    pub contact_peer: Option<PeerRef>,
    pub status: ConversationStatus,
    pub created_at: UnixMillis,
    pub last_message_at: UnixMillis,
}

/// A conversation to start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewConversation {
    pub channel_id: String,
    pub group: ChatId,
    pub contact: ChatId,
    pub contact_username: Option<Username>,
    pub contact_name: String,
    pub agent: SessionName,
    pub contact_peer: Option<PeerRef>,
    pub created_at: UnixMillis,
}

/// Which way a relayed message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelayDirection {
    /// From the contact's private chat into the topic.
    ContactToTopic,
    /// From an operator in the topic to the contact.
    TopicToContact,
    /// A post jobbot made in the topic itself (info post, mirrored auto-response): never relayed.
    Service,
}

/// A message jobbot copied (or posted) for a conversation, both ends by id. Service posts are
/// recognised by these ids, never by their text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayRecord {
    pub conversation: ConversationId,
    pub direction: RelayDirection,
    /// The message that was relayed (`None` for a service post).
    pub source: Option<(ChatId, i32)>,
    /// The outbox message that carries it.
    pub outbox: Option<OutboxId>,
    pub at: UnixMillis,
}

// ----- Statistics -----

/// Counters and usage over time for the status API.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OutboxStats {
    /// Messages by kind and final status, e.g. ("notification", "sent") → 12.
    pub by_kind_and_status: Vec<(OutboxKind, OutboxStatus, u64)>,
    /// Sent messages per agent per hour bucket (unix ms of the hour's start), newest last.
    pub sent_per_agent_hour: Vec<(SessionName, UnixMillis, u64)>,
}

/// An agent event worth keeping (flood waits, PeerFlood, deaths) for the usage charts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentEventRecord {
    pub agent: SessionName,
    /// `flood_wait`, `peer_flood`, `dead`, …
    pub kind: String,
    pub detail: String,
    pub at: UnixMillis,
}

// ----- Web authentication -----

/// The SHA-256 digest of a secret (a web session id, an API token). The store keeps only
/// digests: reading the database gives no way in.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretDigest(pub [u8; 32]);

impl SecretDigest {
    pub fn of(secret: &str) -> Self {
        use sha2::Digest as _;
        Self(sha2::Sha256::digest(secret.as_bytes()).into())
    }

    /// Compares in time independent of where the digests differ.
    pub fn matches(&self, other: &SecretDigest) -> bool {
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl fmt::Debug for SecretDigest {
    /// The first four bytes only: enough to tell two apart in a test failure.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretDigest({}…)", hex::encode(&self.0[..4]))
    }
}

/// A browser session of the web interface, by the digest of its id. It ends at `expires_at`
/// however active it is (an open tab that polls cannot keep it alive for ever); the web also
/// ends it after a time without requests (`last_seen_at`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSession {
    pub digest: SecretDigest,
    pub created_at: UnixMillis,
    pub expires_at: UnixMillis,
    pub last_seen_at: UnixMillis,
}

/// An API token for scripts, by the digest of its value (shown once, when created). It stops
/// working at `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenRecord {
    pub id: String,
    pub name: String,
    pub digest: SecretDigest,
    pub created_at: UnixMillis,
    pub expires_at: UnixMillis,
    pub last_used_at: Option<UnixMillis>,
}

/// The operational store. Callers hold an `Arc<dyn Store>`.
#[async_trait]
pub trait Store: Send + Sync {
    /// Checks that the database answers and has jobbot's schema.
    async fn health(&self) -> Result<StoreHealth, StoreError>;

    // ----- The outbox -----

    /// Stores a message before anything is sent. With an idempotency key that is already taken,
    /// stores nothing and returns the message holding the key, whatever its status.
    async fn enqueue(&self, message: NewOutboxMessage) -> Result<Enqueued, StoreError>;

    /// Every pending message, oldest first (what a restart resumes).
    async fn pending_outbox(&self) -> Result<Vec<OutboxMessage>, StoreError>;

    async fn outbox_message(&self, id: OutboxId) -> Result<Option<OutboxMessage>, StoreError>;

    /// Records an attempt on `agent` before it is made and returns the `random_id` to send with:
    /// the one this agent was given for this message before, if any, else `proposed`. A retry on
    /// the same account therefore repeats its `random_id`, and Telegram drops the duplicate.
    async fn begin_attempt(
        &self,
        id: OutboxId,
        agent: &SessionName,
        proposed: RandomId,
        at: UnixMillis,
    ) -> Result<RandomId, StoreError>;

    /// Notes an error on a pending message that will be retried.
    async fn note_error(
        &self,
        id: OutboxId,
        reason: &str,
        at: UnixMillis,
    ) -> Result<(), StoreError>;

    async fn mark_sent(
        &self,
        id: OutboxId,
        agent: &SessionName,
        sent: SentMessage,
        at: UnixMillis,
    ) -> Result<(), StoreError>;

    /// Ends a message as `Failed` or `Expired` with its reason.
    async fn mark_final(
        &self,
        id: OutboxId,
        status: OutboxStatus,
        reason: &str,
        at: UnixMillis,
    ) -> Result<(), StoreError>;

    async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError>;

    // ----- Processed messages -----

    /// Records a processed message. `false` (and nothing stored) when `(source, message_id)` was
    /// processed before: each message is processed once, edits included.
    async fn record_processed(&self, message: &ProcessedMessage) -> Result<bool, StoreError>;

    async fn is_processed(&self, source: ChatId, message_id: i32) -> Result<bool, StoreError>;

    /// Claims the right to notify `channel_id` of the text with `text_hash`: `true` (and the claim
    /// recorded at `at`) unless that channel was already notified of it at or after
    /// `window_start`. Atomic, so two sources posting the same vacancy at once notify once.
    async fn claim_notification(
        &self,
        channel_id: &str,
        text_hash: &str,
        window_start: UnixMillis,
        at: UnixMillis,
    ) -> Result<bool, StoreError>;

    async fn vacancies(&self, query: &VacancyQuery) -> Result<Vec<VacancyRecord>, StoreError>;

    // ----- CRM conversations -----

    /// Starts a conversation, or returns the one that exists for `(group, contact)`: one
    /// conversation per contact per CRM group, even when several triggers race.
    async fn open_conversation(
        &self,
        new: &NewConversation,
    ) -> Result<(Conversation, bool), StoreError>;

    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>, StoreError>;

    async fn conversation_by_contact(
        &self,
        group: ChatId,
        contact: ChatId,
    ) -> Result<Option<Conversation>, StoreError>;

    async fn conversation_by_topic(
        &self,
        group: ChatId,
        topic: TopicId,
    ) -> Result<Option<Conversation>, StoreError>;

    /// Every active conversation of an agent's contact (a contact may talk to one agent in
    /// several CRM groups).
    async fn conversations_with_contact(
        &self,
        agent: &SessionName,
        contact: ChatId,
    ) -> Result<Vec<Conversation>, StoreError>;

    /// Sets (or clears, after the topic was found deleted) a conversation's topic.
    async fn set_conversation_topic(
        &self,
        id: ConversationId,
        topic: Option<TopicId>,
    ) -> Result<(), StoreError>;

    async fn touch_conversation(
        &self,
        id: ConversationId,
        at: UnixMillis,
    ) -> Result<(), StoreError>;

    /// Records a relayed or service message. `false` when the same source message was relayed
    /// for this conversation before (replays are skipped).
    async fn record_relay(&self, record: &RelayRecord) -> Result<bool, StoreError>;

    /// Whether a message in a CRM group is one jobbot posted (its id is on record).
    async fn is_own_post(&self, group: ChatId, message_id: i32) -> Result<bool, StoreError>;

    /// Remembers a message jobbot posted in a CRM group, by id.
    async fn record_own_post(
        &self,
        group: ChatId,
        message_id: i32,
        conversation: Option<ConversationId>,
    ) -> Result<(), StoreError>;

    /// When `contact` last got an auto-response from any channel (for the cross-channel cooldown).
    async fn last_auto_response_to(
        &self,
        contact: ChatId,
    ) -> Result<Option<UnixMillis>, StoreError>;

    async fn record_auto_response(
        &self,
        channel_id: &str,
        contact: ChatId,
        at: UnixMillis,
    ) -> Result<(), StoreError>;

    // ----- Statistics -----

    async fn outbox_stats(&self, since: UnixMillis) -> Result<OutboxStats, StoreError>;

    async fn record_agent_event(&self, event: &AgentEventRecord) -> Result<(), StoreError>;

    async fn agent_events(
        &self,
        since: UnixMillis,
        limit: u32,
    ) -> Result<Vec<AgentEventRecord>, StoreError>;

    // ----- Web authentication -----

    /// Stores a new web session. A digest that exists already is refused.
    async fn create_web_session(&self, session: &WebSession) -> Result<(), StoreError>;

    /// The session with `digest`, unless it has expired by `now` (an expired one is as good as
    /// gone, whether or not it was purged yet).
    async fn web_session(
        &self,
        digest: &SecretDigest,
        now: UnixMillis,
    ) -> Result<Option<WebSession>, StoreError>;

    /// Records a request on a session (`last_seen_at`, never moved back). Its expiry stays.
    async fn touch_web_session(
        &self,
        digest: &SecretDigest,
        at: UnixMillis,
    ) -> Result<(), StoreError>;

    /// Ends a session; `false` when there was none.
    async fn end_web_session(&self, digest: &SecretDigest) -> Result<bool, StoreError>;

    /// Stores a new API token. An id or digest that exists already is refused.
    async fn create_api_token(&self, token: &ApiTokenRecord) -> Result<(), StoreError>;

    /// Every token that has not expired by `now`, oldest first.
    async fn api_tokens(&self, now: UnixMillis) -> Result<Vec<ApiTokenRecord>, StoreError>;

    /// The token with `digest`, unless it has expired by `now`.
    async fn api_token_by_digest(
        &self,
        digest: &SecretDigest,
        now: UnixMillis,
    ) -> Result<Option<ApiTokenRecord>, StoreError>;

    /// Records a use of a token (`last_used_at`, never moved back).
    async fn touch_api_token(&self, id: &str, at: UnixMillis) -> Result<(), StoreError>;

    /// Revokes a token; `false` when there was none with that id.
    async fn revoke_api_token(&self, id: &str) -> Result<bool, StoreError>;

    /// Deletes the sessions and tokens that expired by `now`; returns how many.
    async fn purge_expired_auth(&self, now: UnixMillis) -> Result<u64, StoreError>;
}
