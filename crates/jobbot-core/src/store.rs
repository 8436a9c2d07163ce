//! The store port: what the engine persists besides configuration. `jobbot-store` implements it
//! (SQLite, PostgreSQL, and in memory); nothing outside that crate writes SQL. Methods are shaped by
//! the domain (`enqueue`, `mark_sent`), never by tables, so backends stay interchangeable.

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::cluster::{AttemptClaim, ClaimRefusal, FencingToken, LeaseRecord, NodeId, NodeRecord};
use crate::ids::{ChatId, SessionName, Username};
use crate::scheduling::{FailureReason, LearnedLimits};
use crate::telegram::{
    DeadReason, MessageAuthor, MessageContent, PeerRef, RandomId, SentMessage, TelegramError,
    TopicId,
};
use crate::workflow::Workflow;

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

    /// This instant plus `duration` (saturating).
    pub fn plus(self, duration: std::time::Duration) -> Self {
        Self(
            self.0
                .saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)),
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
    /// so the message must be sticky to it. A peer saved by another session of the account (or
    /// before a new login) is unknown to the current one (`PEER_ID_INVALID`, access hashes are
    /// per session): the person's `username`, when known, is resolved instead before they are
    /// judged unreachable.
    KnownPeer {
        peer: PeerRef,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        username: Option<Username>,
    },
    /// The author of a group message who has no public username (see [`MessageAuthor`]): the
    /// sending agent finds them through the message itself, so any agent that can see the group
    /// may send, as with `Username`.
    Author { author: MessageAuthor },
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

/// A message in the outbox, with what happened to it. Everything about its fate is typed: no
/// reason is a string to compare or parse.
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
    /// The attempt that may have reached Telegram without a known outcome (the process died
    /// mid-send, or the connection dropped): the message is retried only on that agent with that
    /// `random_id` (Telegram drops the repeat), never moved to another account.
    pub in_doubt: Option<InDoubt>,
    pub sent: Option<SentRecord>,
    /// What held it up last while it was pending (kept once it ends: it explains the retries).
    pub holdup: Option<Holdup>,
    /// Why it failed or expired.
    pub end: Option<OutboxEnd>,
    pub updated_at: UnixMillis,
}

impl OutboxMessage {
    /// How it ended, or `None` while it is pending.
    pub fn delivery(&self) -> Option<Delivery> {
        match (&self.status, &self.sent, &self.end) {
            (OutboxStatus::Pending, ..) => None,
            (OutboxStatus::Sent, Some(sent), _) => Some(Delivery::Sent {
                agent: sent.agent.clone(),
                message: sent.message,
            }),
            (_, _, Some(end)) => Some(Delivery::from(end.clone())),
            // A store never returns an ended message without its record; say so rather than
            // invent one.
            (status, ..) => Some(Delivery::Failed {
                failure: OutboxFailure::Unrecorded { status: *status },
            }),
        }
    }
}

/// An attempt that may have been delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InDoubt {
    pub agent: SessionName,
    /// The id the attempt was made with; a retry on `agent` repeats it.
    pub random_id: RandomId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentRecord {
    pub agent: SessionName,
    /// `None` when Telegram said the send was already on its way (`RANDOM_ID_DUPLICATE`) without
    /// naming the message: delivered, id unknown.
    pub message: Option<SentMessage>,
    pub at: UnixMillis,
}

/// How a message ended, for those awaiting it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "delivery")]
pub enum Delivery {
    Sent {
        agent: SessionName,
        /// `None` when delivered by an earlier attempt whose id Telegram did not return.
        message: Option<SentMessage>,
    },
    Failed {
        failure: OutboxFailure,
    },
    Expired {
        last_holdup: Option<Holdup>,
    },
}

impl From<OutboxEnd> for Delivery {
    fn from(end: OutboxEnd) -> Self {
        match end {
            OutboxEnd::Failed { failure } => Self::Failed { failure },
            OutboxEnd::Expired { last_holdup } => Self::Expired { last_holdup },
        }
    }
}

/// Why a pending message is not out yet: the latest reason, for the status page and, if it
/// expires, for its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "holdup")]
pub enum Holdup {
    /// Telegram refused the attempt on `agent` without delivering it (a flood wait, `PEER_FLOOD`,
    /// a dead session, slow mode …): another agent, or a later attempt, may send it.
    #[error("not delivered by {agent}: {error}")]
    Refused {
        agent: SessionName,
        error: TelegramError,
    },
    /// The connection dropped mid-send: Telegram may have delivered it. It stays with `agent`.
    #[error("in doubt on {agent}: {error}")]
    InDoubt {
        agent: SessionName,
        error: TelegramError,
    },
    /// The attempt on `agent` was never made (the account was not connected when its turn
    /// came): nothing reached Telegram.
    #[error("not sent: {agent} was not connected")]
    NotAttempted { agent: SessionName },
    /// No agent can take it now.
    #[error("waiting: {reason}")]
    Waiting { reason: Unavailable },
}

/// Why no agent can take a message now, with agents named by session (the scheduler's own
/// reasons name them by a key that means nothing after a restart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum Unavailable {
    #[error("every agent that could send is connecting or reconnecting")]
    AgentsNotConnected,
    #[error("the conversation's agent {agent} is not connected yet")]
    StickyAgentNotConnected { agent: SessionName },
    #[error("the channel has no agents")]
    EmptyPool,
    #[error("every agent is dead or paused ({dead} dead, {paused} paused)")]
    AllUnavailable { dead: u32, paused: u32 },
    #[error("no agent may write first to strangers (every usable agent has a cold-DM cap of 0)")]
    NoAgentMayWriteFirst,
    #[error("no agent other than {agent} can take it")]
    OnlyTheAvoidedAgent { agent: SessionName },
    #[error("the conversation's agent {agent} is dead ({dead_reason}); log it in again")]
    StickyAgentDead {
        agent: SessionName,
        dead_reason: DeadReason,
    },
    #[error("the conversation's agent {agent} is paused; resume it to continue")]
    StickyAgentPaused { agent: SessionName },
    #[error("the conversation's agent {agent} is no longer configured")]
    StickyAgentRemoved { agent: SessionName },
    #[error("the conversation's agent {agent} is not one of the channel's agents")]
    StickyAgentNotInPool { agent: SessionName },
    #[error("the conversation's agent {agent} may not write first to strangers (cold-DM cap 0)")]
    StickyAgentMayNotWriteFirst { agent: SessionName },
    #[error("the channel is not configured or not enabled")]
    NoSuchChannel,
}

/// How a message ended without being sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "end")]
pub enum OutboxEnd {
    #[error("failed: {failure}")]
    Failed { failure: OutboxFailure },
    /// Its time to live passed before any agent could deliver it.
    #[error("expired{}", .last_holdup.as_ref().map(|h| format!(" ({h})")).unwrap_or_default())]
    Expired { last_holdup: Option<Holdup> },
}

impl OutboxEnd {
    pub fn status(&self) -> OutboxStatus {
        match self {
            Self::Failed { .. } => OutboxStatus::Failed,
            Self::Expired { .. } => OutboxStatus::Expired,
        }
    }
}

/// Why a message failed for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "failure")]
pub enum OutboxFailure {
    /// The recipient cannot be reached by any account (privacy settings, no such username, not a
    /// person, a deleted topic).
    #[error("{agent}: {error}")]
    Recipient {
        agent: SessionName,
        error: TelegramError,
    },
    /// The policy gave up on it (the conversation's agent is dead or removed, a forbidden chat,
    /// an error with no rule).
    #[error("{agent}: {reason}")]
    GaveUp {
        agent: SessionName,
        reason: FailureReason,
    },
    /// An attempt that may have been delivered, on an account that is gone: moving it to another
    /// account could deliver it twice, so it ends here, for the operator to check.
    #[error(
        "may have been delivered by {agent} (random_id {}), which is {account}; not retried elsewhere",
        .random_id.0
    )]
    InDoubtAccountGone {
        agent: SessionName,
        random_id: RandomId,
        account: AccountGone,
    },
    /// Never produced by jobbot: a row ended without its record (hand-edited or a bug).
    #[error("ended as {} with no record of why", .status.as_str())]
    Unrecorded { status: OutboxStatus },
}

/// What became of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "account")]
pub enum AccountGone {
    #[error("no longer configured")]
    Removed,
    #[error("no longer one of the channel's agents")]
    RemovedFromChannel,
    #[error("dead ({reason})")]
    Dead { reason: DeadReason },
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
    /// For a contact without a username found through a group message of theirs: that message,
    /// through which the agent can find them again while it holds no reference of its own.
    pub contact_author: Option<MessageAuthor>,
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
    /// See [`Conversation::contact_author`].
    pub contact_author: Option<MessageAuthor>,
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

/// An agent event worth keeping (flood waits, `PEER_FLOOD`, deaths, reconnects), for the usage
/// charts and the dashboard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentEventRecord {
    pub agent: SessionName,
    #[serde(flatten)]
    pub event: AgentEvent,
    pub at: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum AgentEvent {
    /// Telegram told the agent to wait before repeating a call.
    FloodWait { seconds: u32 },
    /// Telegram limited the agent's first messages to strangers.
    PeerFlood,
    /// The session can no longer be used until a new login.
    Dead { reason: DeadReason },
    /// The agent is connected again after losing its connection.
    Reconnected,
}

impl AgentEvent {
    /// The event's kind as stored (and as the serde tag says it).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::FloodWait { .. } => "flood_wait",
            Self::PeerFlood => "peer_flood",
            Self::Dead { .. } => "dead",
            Self::Reconnected => "reconnected",
        }
    }
}

// ----- Workflows -----

/// The id of a stored workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkflowId(pub i64);

/// A workflow to start. At most one workflow per key, ever: starting a key that exists returns
/// the existing one, so a replayed trigger starts nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewWorkflow {
    pub key: String,
    pub state: Workflow,
    pub created_at: UnixMillis,
}

/// A stored workflow and its current state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowRecord {
    pub id: WorkflowId,
    pub key: String,
    pub state: Workflow,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

// ----- Monitoring's hand-over -----

/// Everything monitoring decided about one source message, written in one transaction: the
/// processed record, the repost claims, the notifications of the claimed channels and the CRM
/// workflows they start. Either all of it is on record or none of it, so a crash can neither
/// lose a notification (a claim without its message) nor a CRM hand-over (a record without it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VacancyIntake {
    /// `matched[].notified` is decided by the claims in the transaction; what the caller put
    /// there is ignored.
    pub message: ProcessedMessage,
    /// Claims older than this do not count (the repost window).
    pub window_start: UnixMillis,
    /// One per matched channel, in `message.matched` order.
    pub channels: Vec<ChannelIntake>,
}

/// What one matched channel gets if its repost claim succeeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelIntake {
    pub channel_id: String,
    pub notification: NewOutboxMessage,
    /// Started with the notification (the channel's auto-response, when it has CRM).
    pub workflows: Vec<NewWorkflow>,
}

/// What [`Store::take_in_vacancy`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntakeOutcome {
    /// `(source, message_id)` was processed before; nothing was written.
    AlreadyProcessed,
    Processed {
        /// The claimed channels with their notifications.
        notified: Vec<(String, Enqueued)>,
        /// Matched channels that had this vacancy from another source within the window.
        reposts: Vec<String>,
        /// The workflows started (or found started).
        workflows: Vec<WorkflowId>,
    },
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

    /// The message holding an idempotency key, if any.
    async fn outbox_by_key(&self, key: &str) -> Result<Option<OutboxMessage>, StoreError>;

    /// Records an attempt on `agent` before it is made and returns the `random_id` to send with:
    /// the one this agent was given for this message before, if any, else `proposed`. A retry on
    /// the same account therefore repeats its `random_id`, and Telegram drops the duplicate. The
    /// attempt is in doubt (`in_doubt`) until its outcome is recorded, so a crash mid-send leaves
    /// the message bound to this agent.
    async fn begin_attempt(
        &self,
        id: OutboxId,
        agent: &SessionName,
        proposed: RandomId,
        at: UnixMillis,
    ) -> Result<RandomId, StoreError>;

    /// Notes what holds a pending message up. [`Holdup::Refused`] or [`Holdup::NotAttempted`]
    /// by the in-doubt agent clears the doubt (the attempt was not delivered); [`Holdup::InDoubt`]
    /// keeps the message bound to its agent; [`Holdup::Waiting`] leaves the doubt as it is.
    async fn note_holdup(
        &self,
        id: OutboxId,
        holdup: &Holdup,
        at: UnixMillis,
    ) -> Result<(), StoreError>;

    /// Ends a message as sent by `agent` (`message` is `None` when Telegram said an earlier
    /// attempt was on its way without naming the message).
    async fn mark_sent(
        &self,
        id: OutboxId,
        agent: &SessionName,
        message: Option<SentMessage>,
        at: UnixMillis,
    ) -> Result<(), StoreError>;

    /// Ends a message as failed or expired, with why.
    async fn mark_ended(
        &self,
        id: OutboxId,
        end: &OutboxEnd,
        at: UnixMillis,
    ) -> Result<(), StoreError>;

    /// The messages that ended as failed or expired, newest first (what the operator checks).
    async fn ended_outbox(
        &self,
        since: UnixMillis,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError>;

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

    /// Records a processed message with its claims, notifications and CRM workflows in one
    /// transaction (see [`VacancyIntake`]).
    async fn take_in_vacancy(&self, intake: &VacancyIntake) -> Result<IntakeOutcome, StoreError>;

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

    /// Keeps `peer`, the contact's own reference as the conversation's agent received it with a
    /// private message of theirs ([`crate::telegram::Sender::peer`]), when the conversation has
    /// none: the agent can then answer them by it, whatever becomes of their username. An
    /// existing reference stays; a peer that is not the conversation's contact is ignored.
    /// Returns whether it was kept.
    async fn remember_contact_peer(
        &self,
        id: ConversationId,
        peer: PeerRef,
    ) -> Result<bool, StoreError>;

    /// Every active conversation of an agent's contact (a contact may talk to one agent in
    /// several CRM groups).
    async fn conversations_with_contact(
        &self,
        agent: &SessionName,
        contact: ChatId,
    ) -> Result<Vec<Conversation>, StoreError>;

    /// Records that `creator` is about to create the topic of conversation `id` (the first one, or
    /// the one replacing the deleted `replacing`) and returns the `random_id` to create it with:
    /// the one this creator was given for it before, if any, else `proposed`. A retry after a crash
    /// repeats it, and Telegram returns the topic already created instead of a second one.
    async fn begin_topic_creation(
        &self,
        id: ConversationId,
        replacing: Option<TopicId>,
        creator: &SessionName,
        proposed: RandomId,
    ) -> Result<RandomId, StoreError>;

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

    /// Recorded agent events at or after `since`, newest first.
    async fn agent_events(
        &self,
        since: UnixMillis,
        limit: u32,
    ) -> Result<Vec<AgentEventRecord>, StoreError>;

    // ----- Agent pauses -----

    /// Records an operator's pause (or its end). A pause lasts until the operator resumes the
    /// agent, across configuration changes and restarts.
    async fn set_agent_paused(
        &self,
        agent: &SessionName,
        paused: bool,
        at: UnixMillis,
    ) -> Result<(), StoreError>;

    /// Every paused agent, by name.
    async fn paused_agents(&self) -> Result<Vec<SessionName>, StoreError>;

    // ----- Learned limits -----

    /// Stores what the scheduler learned about an agent's limits, replacing what was stored, so
    /// a restart does not re-learn them by flooding the account again.
    async fn save_learned_limits(
        &self,
        agent: &SessionName,
        learned: &LearnedLimits,
        at: UnixMillis,
    ) -> Result<(), StoreError>;

    /// Every agent's stored learned limits, by name.
    async fn learned_limits(&self) -> Result<Vec<(SessionName, LearnedLimits)>, StoreError>;

    // ----- Workflows -----

    /// Starts a workflow, or returns the one holding its key (`false`: it existed).
    async fn start_workflow(&self, new: &NewWorkflow) -> Result<(WorkflowId, bool), StoreError>;

    /// Every workflow that has not finished, oldest first (what a restart resumes).
    async fn active_workflows(&self) -> Result<Vec<WorkflowRecord>, StoreError>;

    async fn workflow(&self, id: WorkflowId) -> Result<Option<WorkflowRecord>, StoreError>;

    /// The workflow holding `key`, finished or not (how it ended, for tools and the crash suite).
    async fn workflow_by_key(&self, key: &str) -> Result<Option<WorkflowRecord>, StoreError>;

    /// Stores a workflow's new state. A finished state ([`Workflow::is_finished`]) is the last:
    /// saving over a finished workflow is refused.
    async fn save_workflow(
        &self,
        id: WorkflowId,
        state: &Workflow,
        at: UnixMillis,
    ) -> Result<(), StoreError>;

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

    // ----- Nodes and session leases (`crate::cluster` decides; these only record) -----

    /// Records that `node` is alive until `expires_at` (its row is created on the first one).
    async fn heartbeat(
        &self,
        node: &NodeId,
        now: UnixMillis,
        expires_at: UnixMillis,
    ) -> Result<(), StoreError>;

    /// Removes `node` and gives back every lease it holds (an orderly stop, so the others take
    /// its sessions at once instead of after the leases expire).
    async fn leave_cluster(&self, node: &NodeId) -> Result<(), StoreError>;

    /// Every node on record, alive or not, by name.
    async fn cluster_nodes(&self) -> Result<Vec<NodeRecord>, StoreError>;

    /// Every lease on record, held or not, by session.
    async fn session_leases(&self) -> Result<Vec<LeaseRecord>, StoreError>;

    /// Takes the lease of `session` for `node` until `expires_at` if nobody holds it at `now`
    /// (free, released or expired: with the next fencing token), or extends it when `node`
    /// holds it already (same token). `None` when another node holds it.
    async fn acquire_lease(
        &self,
        session: &SessionName,
        node: &NodeId,
        now: UnixMillis,
        expires_at: UnixMillis,
    ) -> Result<Option<LeaseRecord>, StoreError>;

    /// Extends the lease `node` holds with `token` until `expires_at`. `None` when the lease
    /// has another holder or token: it was lost, and the session must not be used.
    async fn renew_lease(
        &self,
        session: &SessionName,
        node: &NodeId,
        token: FencingToken,
        now: UnixMillis,
        expires_at: UnixMillis,
    ) -> Result<Option<LeaseRecord>, StoreError>;

    /// Renews every lease of `leases` that `node` still holds with the token named, until
    /// `expires_at` (each as [`Store::renew_lease`]); returns the renewed ones. A lease missing
    /// from the answer was lost. The SQL backends do it in one statement, not one per lease.
    async fn renew_leases(
        &self,
        node: &NodeId,
        leases: &[(SessionName, FencingToken)],
        now: UnixMillis,
        expires_at: UnixMillis,
    ) -> Result<Vec<LeaseRecord>, StoreError> {
        let mut renewed = Vec::with_capacity(leases.len());
        for (session, token) in leases {
            if let Some(lease) = self
                .renew_lease(session, node, *token, now, expires_at)
                .await?
            {
                renewed.push(lease);
            }
        }
        Ok(renewed)
    }

    /// Whether `node` holds the lease of `session` with `token`, unexpired at `now`. (A send's
    /// fence is the same check inside [`Store::claim_attempt`]'s transaction, so a node that
    /// lost a lease, paused past its expiry say, never sends on it.)
    async fn holds_lease(
        &self,
        session: &SessionName,
        node: &NodeId,
        token: FencingToken,
        now: UnixMillis,
    ) -> Result<bool, StoreError>;

    /// Records that `session` is the Telegram user `user` (the node connecting it does, so
    /// every node knows every node's accounts as jobbot's own).
    async fn remember_account_user(
        &self,
        session: &SessionName,
        user: ChatId,
    ) -> Result<(), StoreError>;

    /// The Telegram users of every account on record.
    async fn account_users(&self) -> Result<Vec<ChatId>, StoreError>;

    /// With several nodes, `begin_attempt` under a claim: in one transaction, checks that
    /// `node` holds `agent`'s lease with `token` at `at`, that the message is pending, not in
    /// doubt on another agent and not claimed by another node (a claim runs until the lease
    /// expiry it was taken under, so a dead node's claims lapse with its leases); then records
    /// the attempt as `begin_attempt` does and the claim (`node`, the lease's token and
    /// expiry). Of two nodes claiming one message at once, one gets it.
    async fn claim_attempt(
        &self,
        id: OutboxId,
        agent: &SessionName,
        node: &NodeId,
        token: FencingToken,
        proposed: RandomId,
        at: UnixMillis,
    ) -> Result<AttemptClaim, StoreError>;

    /// With several nodes: takes (or keeps) workflow `id` for `node`, which then alone executes
    /// its steps. Taken when no node claimed it, when `node` did, or when its claimer is no
    /// longer alive at `now` (its heartbeat expired, or it left the cluster). `false` when
    /// another live node has it, or when it has finished or does not exist.
    /// With several nodes, [`Store::mark_ended`] by `node`, which may not hold the message: it
    /// ends only while no other node's claim on it runs past `at` (that node's attempt decides
    /// how it ends: a dispatcher's expiry timer must not end a message another node is
    /// sending). `Ok(Err(ClaimedElsewhere))` names the claim; `Ok(Err(NotPending))` when it has
    /// already ended or does not exist. Nothing changes on a refusal.
    async fn end_unclaimed(
        &self,
        id: OutboxId,
        end: &OutboxEnd,
        node: &NodeId,
        at: UnixMillis,
    ) -> Result<Result<(), ClaimRefusal>, StoreError>;

    async fn claim_workflow(
        &self,
        id: WorkflowId,
        node: &NodeId,
        now: UnixMillis,
    ) -> Result<bool, StoreError>;

    /// With several nodes: hands workflow `id`, claimed by `from`, to `to` (a step needs an
    /// account whose lease `to` holds, so only `to` can perform it). `false` (nothing changed)
    /// when `from` does not hold the claim or the workflow has finished.
    async fn hand_over_workflow(
        &self,
        id: WorkflowId,
        from: &NodeId,
        to: &NodeId,
    ) -> Result<bool, StoreError>;

    /// Gives back the lease `node` holds with `token`; `false` when it did not hold it.
    async fn release_lease(
        &self,
        session: &SessionName,
        node: &NodeId,
        token: FencingToken,
    ) -> Result<bool, StoreError>;
}

/// Where Telegram sessions live when they are not files: the database every node shares
/// (`--database-url`). It keeps each session's bytes as the session store sealed them
/// (ChaCha20-Poly1305 with `JOBBOT_SESSION_KEY`): it never sees an auth key in the clear, and
/// it never decides who may use a session (that is the session's lease).
#[async_trait]
pub trait SessionVault: Send + Sync + fmt::Debug {
    /// The sealed bytes of session `name`, or `None` when there is none.
    async fn load_session(&self, name: &SessionName) -> Result<Option<Vec<u8>>, StoreError>;

    /// Replaces the sealed bytes of session `name`.
    async fn save_session(
        &self,
        name: &SessionName,
        sealed: &[u8],
        now: UnixMillis,
    ) -> Result<(), StoreError>;

    /// Every stored session's name, in order.
    async fn session_names(&self) -> Result<Vec<SessionName>, StoreError>;
}
