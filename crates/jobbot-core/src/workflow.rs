//! Durable workflows: work that takes several steps, each of which must happen after the one
//! before it, across crashes and restarts. A workflow is a stored record whose state says which
//! step it is at; it advances by pure transitions:
//!
//! - [`Workflow::effect`]`(state, now)` names the one thing to do next (a Telegram call, a store
//!   write, a message through the outbox, a wait) — a function of the state alone, so a restart
//!   that loads the state does exactly what the crashed process was about to do;
//! - [`Workflow::on`]`(state, event, now)` takes what happened and gives the next state.
//!
//! Together they are `(state, event, now) → (state, effect)`. The engine's executor performs the
//! effect, feeds the outcome back as an event and saves the new state before performing its
//! effect. Every effect is therefore performed at least once, and each is idempotent by a stored
//! key (an outbox idempotency key, a stored `random_id`, a unique row), so each happens once.
//!
//! Two workflows exist:
//! - [`AutoResponse`]: a vacancy's author gets one message from one of the channel's agents;
//!   once it is delivered, the contact's conversation opens (one per contact per CRM group, with
//!   the agent that delivered it, for good) and its forum topic gets an info post and a mirror of
//!   the auto-response.
//! - [`RelayToTopic`]: a contact's private message to an agent is copied into the topic of each
//!   of their conversations with that agent (recreating a topic an admin deleted); a file with
//!   it is re-sent by the agent that received it, and when Telegram refuses the file, a note in
//!   the topic says so, with the message's text.
//! - [`MediaToContact`]: an operator's file from a topic goes to the contact through the
//!   conversation's agent (the account whose copy of the message carries the file reference);
//!   when it is not delivered, a note in the topic says why.
//!
//! Both file relays survive an expired file reference (core.telegram.org/api/file_reference):
//! refused with `FILE_REFERENCE_EXPIRED`, the agent fetches its message again for a fresh
//! reference ([`Effect::RefetchFile`]) and the file is queued once more, once; a message gone
//! by then, or a second refusal, leaves the note.
//! - [`AiTurn`]: one AI turn of a conversation: the model's answer, then the suggestion posted
//!   into the topic or the reply sent to the contact and mirrored into the topic.
//!
//! Operators' text answers from a topic need no workflow: their one step is an outbox message,
//! queued (idempotently) while the update is taken in.

use std::time::Duration;

mod ai_turn;
pub use ai_turn::{AiEnd, AiOutcome, AiStep, AiTurn};

use serde::{Deserialize, Serialize};

use crate::ids::{ChatId, SessionName, Username};
use crate::scheduling::FailureReason;
use crate::store::{ConversationId, Delivery, OutboxFailure, OutboxId, UnixMillis, WorkflowId};
use crate::telegram::{
    IncomingMessage, MediaFile, MessageAuthor, Peer, PeerKind, SentMessage, TelegramError, TopicId,
};

/// How long the workflows wait and retry. Durations, not instants: the state stores the
/// instants they lead to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkflowSettings {
    /// When no agent can resolve a contact now (none connected, all in a flood wait), try again
    /// after this long …
    pub resolve_retry: Duration,
    /// When no account can create a topic now, try again after this long.
    pub topic_retry: Duration,
    /// How long a contact's message waits for their conversation to open (their auto-response
    /// may still be on its way when they answer it).
    pub await_conversation: Duration,
    /// How often to look for that conversation meanwhile; and how often an auto-response that
    /// waits for another one to the same person ([`QueueTurn::Wait`]) looks again.
    pub conversation_retry: Duration,
}

impl Default for WorkflowSettings {
    fn default() -> Self {
        Self {
            resolve_retry: Duration::from_secs(60),
            topic_retry: Duration::from_secs(60),
            await_conversation: Duration::from_secs(24 * 3600),
            conversation_retry: Duration::from_secs(30),
        }
    }
}

/// A stored workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "workflow")]
pub enum Workflow {
    AutoResponse(AutoResponse),
    RelayToTopic(RelayToTopic),
    MediaToContact(MediaToContact),
    AiTurn(AiTurn),
}

/// What a workflow's executor does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Nothing until `at` (then feed [`Event::Woke`]).
    SleepUntil(UnixMillis),
    /// Resolve the auto-response's contact through one of the channel's agents.
    Resolve,
    /// Queue the auto-response (idempotency key `auto_response:<channel>:<contact id>`) to
    /// `peer`, resolved by `resolver`; or answer why not ([`Event::Skipped`]).
    QueueAutoResponse { resolver: SessionName, peer: Peer },
    /// Wait until the outbox message ends.
    AwaitOutbox(OutboxId),
    /// Open the conversation with the auto-response's contact for `agent` (idempotent: one per
    /// contact per CRM group) and record the auto-response for the cooldown.
    OpenConversation {
        agent: SessionName,
        resolver: SessionName,
        peer: Peer,
    },
    /// Make sure the conversation has a topic; `stale` is one found deleted, to replace.
    EnsureTopic {
        conversation: ConversationId,
        stale: Option<TopicId>,
    },
    /// Queue `post` into `topic` (idempotency key: the post's key, plus `:<topic>` when the topic
    /// replaced a deleted one, plus `:main` when `by_main`). Posted by the conversation's agent,
    /// or by the main account when `by_main`.
    QueuePost {
        conversation: ConversationId,
        post: PostKind,
        topic: TopicId,
        replaced: bool,
        by_main: bool,
    },
    /// Remember a delivered post as jobbot's own (by id, never by text) and as a relay record.
    RecordPost {
        conversation: ConversationId,
        post: PostKind,
        outbox: OutboxId,
        message: Option<SentMessage>,
    },
    /// Look for the conversations of a relayed message's contact with its agent.
    FindConversations,
    /// Start one relay per conversation (idempotent by key) and end this one.
    Fork { conversations: Vec<ConversationId> },
    /// Ask the automatic replier, and queue its answer with a mirror in the topic.
    AutoReply { conversation: ConversationId },
    /// Queue an operator's file to the contact, by the conversation's agent (idempotency key
    /// `relay_to_contact:<group>:<message id>`, `:refetched` after [`Effect::RefetchFile`]).
    QueueToContact { conversation: ConversationId },
    /// Fetch message `message_id` of `chat` again through `agent` (the account whose copy it
    /// is) for its file with a fresh reference; answer [`Event::FileRefetched`].
    RefetchFile {
        agent: SessionName,
        chat: ChatId,
        message_id: i32,
    },
    /// Run the AI turn (or read its stored decision) and apply it to the conversation's AI
    /// record; answer [`Event::AiDecided`].
    AiGenerate {
        conversation: ConversationId,
        turn: u64,
    },
    /// Queue the turn's reply to the contact by the conversation's agent (key
    /// `ai_reply:<conversation>:<turn>`), after the channel's reply delay.
    AiQueueReply {
        conversation: ConversationId,
        turn: u64,
    },
    /// Record the turn's reply as sent in the conversation's AI (once per turn).
    AiRecordSent {
        conversation: ConversationId,
        turn: u64,
    },
    /// Nothing more to do.
    Finished,
}

/// What happened when an effect was performed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Woke,
    Resolved {
        agent: SessionName,
        peer: Peer,
    },
    /// Telegram says nobody can reach this contact (no such username …).
    Unreachable {
        error: TelegramError,
    },
    /// No agent could try now.
    NoResolverNow,
    Skipped {
        reason: SkipReason,
    },
    Queued {
        outbox: OutboxId,
    },
    /// Another auto-response to the same person goes first ([`QueueTurn::Wait`]).
    AnotherAnswersFirst,
    Delivered(Delivery),
    Opened {
        conversation: ConversationId,
    },
    TopicReady {
        topic: TopicId,
    },
    /// No account could create the topic now.
    NoTopicNow,
    /// The conversation is gone (it never existed, or was removed by hand).
    NoConversation,
    Recorded,
    ConversationsFound {
        conversations: Vec<ConversationId>,
    },
    Forked,
    Replied,
    AiDecided(AiOutcome),
    /// The message's file as fetched again; `None` when the message is gone, has no file, or
    /// could not be fetched.
    FileRefetched {
        file: Option<Box<MediaFile>>,
    },
}

/// Which post into a conversation's topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "post")]
pub enum PostKind {
    /// Who the contact is, which vacancy brought them, through which agent.
    Info,
    /// The auto-response as the agent sent it.
    Mirror,
    /// A contact's private message.
    ContactMessage,
    /// A contact's file Telegram refused to copy: the message's text and why.
    MediaNote,
    /// An operator's file that did not reach the contact, and why.
    DeliveryNote,
    /// An AI suggestion for the operators (never relayed).
    AiSuggestion,
    /// An AI reply as it was sent to the contact.
    AiMirror,
}

/// Why an auto-response was not queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "skip")]
pub enum SkipReason {
    #[error("the channel is gone, disabled, or no longer answers with CRM")]
    ChannelOff,
    #[error("the contact got an auto-response from another channel recently")]
    Cooldown,
    #[error("the auto-response template does not parse")]
    TemplateInvalid,
    /// The contact was answered from this channel before (the idempotency key is taken by a
    /// message that ended earlier).
    #[error("this channel answered the contact before")]
    AnsweredBefore,
    /// Another channel's auto-response answered this very vacancy: its author hears once per
    /// message, as in the original (`contacted_users`).
    #[error("another channel answered this vacancy")]
    AnsweredForVacancy,
}

// ----- Posts into a topic -----

/// One post into a conversation's topic: get the topic, queue the post, wait for it, record it.
/// A topic found deleted is replaced once. A post the conversation's agent may not make in the
/// CRM group (typed `ChatForbidden`: it is not a member — no invite link configured, its join
/// refused or still pending — or it was removed) is made by the main account instead, the
/// group's creator: lost otherwise, the operator would never see the conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "phase")]
pub enum TopicPost {
    /// Needs the conversation's topic; `stale` was found deleted. Retried at `retry_at` when no
    /// account could create one.
    NeedTopic {
        stale: Option<TopicId>,
        retry_at: Option<UnixMillis>,
    },
    Queue {
        topic: TopicId,
        replaced: bool,
        /// Made by the main account (the agent was refused).
        #[serde(default)]
        by_main: bool,
    },
    Queued {
        topic: TopicId,
        replaced: bool,
        outbox: OutboxId,
        #[serde(default)]
        by_main: bool,
    },
    Record {
        outbox: OutboxId,
        message: Option<SentMessage>,
    },
    Posted {
        message: Option<SentMessage>,
    },
    NotPosted {
        delivery: Delivery,
    },
    /// The conversation disappeared.
    NoConversation,
}

impl TopicPost {
    pub fn new() -> Self {
        Self::NeedTopic {
            stale: None,
            retry_at: None,
        }
    }

    pub fn is_finished(&self) -> bool {
        matches!(
            self,
            Self::Posted { .. } | Self::NotPosted { .. } | Self::NoConversation
        )
    }

    fn effect(&self, conversation: ConversationId, post: PostKind, now: UnixMillis) -> Effect {
        match self {
            Self::NeedTopic {
                retry_at: Some(at), ..
            } if *at > now => Effect::SleepUntil(*at),
            Self::NeedTopic { stale, .. } => Effect::EnsureTopic {
                conversation,
                stale: *stale,
            },
            Self::Queue {
                topic,
                replaced,
                by_main,
            } => Effect::QueuePost {
                conversation,
                post,
                topic: *topic,
                replaced: *replaced,
                by_main: *by_main,
            },
            Self::Queued { outbox, .. } => Effect::AwaitOutbox(*outbox),
            Self::Record { outbox, message } => Effect::RecordPost {
                conversation,
                post,
                outbox: *outbox,
                message: *message,
            },
            Self::Posted { .. } | Self::NotPosted { .. } | Self::NoConversation => Effect::Finished,
        }
    }

    fn on(self, event: Event, now: UnixMillis, settings: &WorkflowSettings) -> Self {
        match (self, event) {
            (Self::NeedTopic { stale, .. }, Event::Woke) => Self::NeedTopic {
                stale,
                retry_at: None,
            },
            (Self::NeedTopic { stale, .. }, Event::TopicReady { topic }) => Self::Queue {
                topic,
                replaced: stale.is_some(),
                by_main: false,
            },
            (Self::NeedTopic { stale, .. }, Event::NoTopicNow) => Self::NeedTopic {
                stale,
                retry_at: Some(now.plus(settings.topic_retry)),
            },
            (_, Event::NoConversation) => Self::NoConversation,
            (
                Self::Queue {
                    topic,
                    replaced,
                    by_main,
                },
                Event::Queued { outbox },
            ) => Self::Queued {
                topic,
                replaced,
                outbox,
                by_main,
            },
            (Self::Queued { outbox, .. }, Event::Delivered(Delivery::Sent { message, .. })) => {
                Self::Record { outbox, message }
            }
            // Typed, never by the error's text: the topic was deleted; replace it once.
            (
                Self::Queued {
                    topic,
                    replaced: false,
                    ..
                },
                Event::Delivered(Delivery::Failed {
                    failure:
                        OutboxFailure::Recipient {
                            error: TelegramError::TopicDeleted,
                            ..
                        },
                }),
            ) => Self::NeedTopic {
                stale: Some(topic),
                retry_at: None,
            },
            // Typed: the agent may not post in the group; the main account (its creator) may.
            (
                Self::Queued {
                    topic,
                    replaced,
                    by_main: false,
                    ..
                },
                Event::Delivered(Delivery::Failed {
                    failure:
                        OutboxFailure::GaveUp {
                            reason: FailureReason::ChatForbidden { .. },
                            ..
                        },
                }),
            ) => Self::Queue {
                topic,
                replaced,
                by_main: true,
            },
            (Self::Queued { .. }, Event::Delivered(delivery)) => Self::NotPosted { delivery },
            (Self::Record { message, .. }, Event::Recorded) => Self::Posted { message },
            // An event that does not belong to this phase changes nothing; the effect repeats.
            (phase, _) => phase,
        }
    }
}

impl Default for TopicPost {
    fn default() -> Self {
        Self::new()
    }
}

// ----- The auto-response -----

/// The vacancy an auto-response answers, as its posts show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VacancyRef {
    pub source: ChatId,
    /// The source's public username, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_username: Option<Username>,
    pub message_id: i32,
    pub source_title: String,
    /// `https://t.me/<username>/<id>` or `https://t.me/c/<id>/<id>`.
    pub link: String,
    pub text: String,
}

/// One channel's answer to one vacancy's author, and the conversation it opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoResponse {
    pub channel_id: String,
    pub vacancy: VacancyRef,
    /// The author: by username, or by the message they posted when they have none.
    pub contact: ContactRef,
    pub step: AutoResponseStep,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "step")]
pub enum AutoResponseStep {
    /// Find the contact through one of the channel's agents; when none can now, again at
    /// `retry_at`, until `give_up_at`.
    Resolve {
        retry_at: Option<UnixMillis>,
        give_up_at: UnixMillis,
    },
    /// Resolved by `resolver` (whose access hash `peer` carries): queue the auto-response; while
    /// another auto-response to the same person goes first, again at `retry_at`.
    Queue {
        resolver: SessionName,
        peer: Peer,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_at: Option<UnixMillis>,
    },
    /// Queued as `outbox`: wait until it ends.
    Queued {
        resolver: SessionName,
        peer: Peer,
        outbox: OutboxId,
    },
    /// Delivered by `agent`: open the conversation.
    Open {
        resolver: SessionName,
        peer: Peer,
        agent: SessionName,
        outbox: OutboxId,
    },
    /// The conversation is open: post the info post, then the mirror, into its topic.
    Post {
        conversation: ConversationId,
        agent: SessionName,
        outbox: OutboxId,
        info: TopicPost,
        mirror: TopicPost,
    },
    Finished {
        end: AutoResponseEnd,
    },
}

/// Another auto-response on record, as [`AutoResponse::queue_turn`] weighs it.
#[derive(Debug, Clone, Copy)]
pub struct OtherAnswer<'a> {
    pub id: WorkflowId,
    pub workflow: &'a AutoResponse,
    /// Its channel's auto-response message to this person, if one is on record.
    pub message: AnswerMessage,
    /// Whether its conversation would be the one this auto-response's agent is chosen by (the
    /// same CRM group), or a cross-channel cooldown applies: then an answer of another vacancy to
    /// the same person is waited for too.
    pub holds_contact: bool,
}

/// An auto-response's channel's message to the person (key `auto_response:<channel>:<contact>`),
/// as the outbox has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerMessage {
    None,
    /// Queued before the workflow started (its `created_at` before the workflow's): an earlier
    /// vacancy's, which it goes on with.
    Earlier,
    /// Its own, not out yet.
    Pending,
    /// Its own, delivered.
    Sent,
    /// Its own, failed or expired.
    Ended,
}

/// Whether an auto-response is queued now. The original wrote once per vacancy across
/// channels (`contacted_users`, `original-system.md` §2b); jobbot keeps that for answers that
/// run side by side and may fail:
/// - of one vacancy's answers (one per matched channel, started in one intake), the earliest
///   unfinished one has the turn; one whose message went out ends the others
///   ([`QueueTurn::Skip`], [`SkipReason::AnsweredForVacancy`]); one that failed leaves the turn
///   to the next channel;
/// - an answer to another vacancy by the same person, in the same CRM group (or with a
///   cross-channel cooldown), is waited for while its message is queued or on its way and until
///   its conversation is open, so the cooldown and the conversation's agent apply. One still
///   resolving cannot be known to be the same person: two answers of different vacancies that
///   reach this step within the same moment may still both go.
///
/// The price of the order: a later channel's answer waits for an earlier one still resolving the
/// person (its agents all away), at most until that one gives up (`resolve_give_up`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueTurn {
    Go,
    Wait,
    Skip(SkipReason),
}

/// Who an auto-response goes to. An agent can address a stranger only by a public username, or,
/// for the author of a group message who has none, by that message ([`MessageAuthor`]).
/// Stored untagged: a workflow stored before authors were answered holds a bare username.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ContactRef {
    Username(Username),
    Author(MessageAuthor),
}

impl ContactRef {
    pub fn username(&self) -> Option<&Username> {
        match self {
            Self::Username(username) => Some(username),
            Self::Author(_) => None,
        }
    }
}

impl From<Username> for ContactRef {
    fn from(username: Username) -> Self {
        Self::Username(username)
    }
}

impl std::fmt::Display for ContactRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Username(username) => username.fmt(f),
            Self::Author(author) => author.fmt(f),
        }
    }
}

/// How an auto-response workflow ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "end")]
pub enum AutoResponseEnd {
    /// Delivered; the conversation is open and its posts are done (each ended as it says).
    Completed {
        conversation: ConversationId,
        info: TopicPost,
        mirror: TopicPost,
    },
    Skipped {
        reason: SkipReason,
    },
    /// The outbox message ended without delivery (failed with its typed reason, or expired).
    NotDelivered {
        delivery: Delivery,
    },
    Unreachable {
        error: TelegramError,
    },
    /// The username belongs to a bot, a channel or a group: only people get auto-responses.
    NotAPerson {
        kind: PeerKind,
    },
    /// No agent could resolve the contact before `give_up_at`.
    GaveUpResolving,
}

impl AutoResponse {
    /// A new workflow for `contact`, resolving at once and giving up after `give_up`.
    pub fn new(
        channel_id: String,
        vacancy: VacancyRef,
        contact: impl Into<ContactRef>,
        now: UnixMillis,
        give_up: Duration,
    ) -> Self {
        Self {
            channel_id,
            vacancy,
            contact: contact.into(),
            step: AutoResponseStep::Resolve {
                retry_at: None,
                give_up_at: now.plus(give_up),
            },
        }
    }

    /// The key that makes the workflow start once per (channel, vacancy).
    pub fn key(channel_id: &str, source: ChatId, message_id: i32) -> String {
        format!("auto_response:{channel_id}:{source}:{message_id}")
    }

    /// The contact's user id, once resolved: what a reply arriving early is matched with.
    pub fn contact_id(&self) -> Option<ChatId> {
        match &self.step {
            AutoResponseStep::Queue { peer, .. }
            | AutoResponseStep::Queued { peer, .. }
            | AutoResponseStep::Open { peer, .. } => Some(peer.id()),
            AutoResponseStep::Resolve { .. }
            | AutoResponseStep::Post { .. }
            | AutoResponseStep::Finished { .. } => None,
        }
    }

    /// Whether this auto-response (workflow `id`, to `contact`) may be queued now, given the
    /// other auto-responses on record (the unfinished ones, and the finished ones of the same
    /// vacancy). See [`QueueTurn`] for the rules.
    pub fn queue_turn<'a>(
        &self,
        id: WorkflowId,
        contact: ChatId,
        others: impl IntoIterator<Item = OtherAnswer<'a>>,
    ) -> QueueTurn {
        use AutoResponseStep as Step;
        let mut turn = QueueTurn::Go;
        for other in others {
            if other.id == id {
                continue;
            }
            let step = &other.workflow.step;
            let earlier = other.id < id;
            let unfinished = !matches!(step, Step::Finished { .. });
            if other.workflow.vacancy.source == self.vacancy.source
                && other.workflow.vacancy.message_id == self.vacancy.message_id
            {
                match other.message {
                    // Another channel's message for this vacancy went out (the outbox says so,
                    // whatever step its workflow is at or ended in).
                    AnswerMessage::Sent => return QueueTurn::Skip(SkipReason::AnsweredForVacancy),
                    // On its way (queued; or its step not saved yet after a crash).
                    AnswerMessage::Pending => turn = QueueTurn::Wait,
                    // Not queued yet: the earlier workflow has the turn whatever its step (both
                    // were started in one intake, so the earlier one is on record before the
                    // later one looks: Lamport's bakery, the intake's order as the ticket).
                    AnswerMessage::None if earlier && unfinished => turn = QueueTurn::Wait,
                    // Finished without a message, its message failed, or it goes on with an
                    // earlier vacancy's message: it sends nothing for this one.
                    AnswerMessage::None | AnswerMessage::Earlier | AnswerMessage::Ended => {}
                }
            } else if other.holds_contact && other.workflow.contact_id() == Some(contact) {
                // Another vacancy of the same person: waited for while its message may be on
                // its way and until its conversation is open (what makes the next answer come
                // from the same agent, and the cooldown count it).
                let ahead = match step {
                    Step::Queued { .. } | Step::Open { .. } => true,
                    Step::Queue { .. } => {
                        earlier
                            || matches!(other.message, AnswerMessage::Pending | AnswerMessage::Sent)
                    }
                    _ => false,
                };
                if ahead {
                    turn = QueueTurn::Wait;
                }
            }
        }
        turn
    }

    fn effect(&self, now: UnixMillis) -> Effect {
        match &self.step {
            AutoResponseStep::Resolve {
                retry_at: Some(at), ..
            } if *at > now => Effect::SleepUntil(*at),
            AutoResponseStep::Resolve { .. } => Effect::Resolve,
            AutoResponseStep::Queue {
                retry_at: Some(at), ..
            } if *at > now => Effect::SleepUntil(*at),
            AutoResponseStep::Queue { resolver, peer, .. } => Effect::QueueAutoResponse {
                resolver: resolver.clone(),
                peer: peer.clone(),
            },
            AutoResponseStep::Queued { outbox, .. } => Effect::AwaitOutbox(*outbox),
            AutoResponseStep::Open {
                resolver,
                peer,
                agent,
                ..
            } => Effect::OpenConversation {
                agent: agent.clone(),
                resolver: resolver.clone(),
                peer: peer.clone(),
            },
            AutoResponseStep::Post {
                conversation,
                info,
                mirror,
                ..
            } => {
                // The info post first: operators read who the contact is before the message.
                if !info.is_finished() {
                    info.effect(*conversation, PostKind::Info, now)
                } else {
                    mirror.effect(*conversation, PostKind::Mirror, now)
                }
            }
            AutoResponseStep::Finished { .. } => Effect::Finished,
        }
    }

    fn on(self, event: Event, now: UnixMillis, settings: &WorkflowSettings) -> Self {
        use AutoResponseStep as Step;
        let step = match (self.step, event) {
            // The channel went away (or stopped answering) before the conversation opened.
            (
                Step::Resolve { .. } | Step::Queue { .. } | Step::Queued { .. } | Step::Open { .. },
                Event::Skipped { reason },
            ) => Step::Finished {
                end: AutoResponseEnd::Skipped { reason },
            },
            (Step::Resolve { give_up_at, .. }, Event::Woke) => Step::Resolve {
                retry_at: None,
                give_up_at,
            },
            (Step::Resolve { .. }, Event::Resolved { peer, .. }) if peer.kind != PeerKind::User => {
                Step::Finished {
                    end: AutoResponseEnd::NotAPerson { kind: peer.kind },
                }
            }
            (Step::Resolve { .. }, Event::Resolved { agent, peer }) => Step::Queue {
                resolver: agent,
                peer,
                retry_at: None,
            },
            (Step::Resolve { .. }, Event::Unreachable { error }) => Step::Finished {
                end: AutoResponseEnd::Unreachable { error },
            },
            (Step::Resolve { give_up_at, .. }, Event::NoResolverNow) => {
                let retry_at = now.plus(settings.resolve_retry);
                if retry_at > give_up_at {
                    Step::Finished {
                        end: AutoResponseEnd::GaveUpResolving,
                    }
                } else {
                    Step::Resolve {
                        retry_at: Some(retry_at),
                        give_up_at,
                    }
                }
            }
            (Step::Queue { resolver, peer, .. }, Event::Queued { outbox }) => Step::Queued {
                resolver,
                peer,
                outbox,
            },
            (Step::Queue { resolver, peer, .. }, Event::AnotherAnswersFirst) => Step::Queue {
                resolver,
                peer,
                retry_at: Some(now.plus(settings.conversation_retry)),
            },
            (Step::Queue { resolver, peer, .. }, Event::Woke) => Step::Queue {
                resolver,
                peer,
                retry_at: None,
            },
            (
                Step::Queued {
                    resolver,
                    peer,
                    outbox,
                },
                Event::Delivered(Delivery::Sent { agent, .. }),
            ) => Step::Open {
                resolver,
                peer,
                agent,
                outbox,
            },
            (Step::Queued { .. }, Event::Delivered(delivery)) => Step::Finished {
                end: AutoResponseEnd::NotDelivered { delivery },
            },
            (Step::Open { agent, outbox, .. }, Event::Opened { conversation }) => Step::Post {
                conversation,
                agent,
                outbox,
                info: TopicPost::new(),
                mirror: TopicPost::new(),
            },
            (
                Step::Post {
                    conversation,
                    agent,
                    outbox,
                    info,
                    mirror,
                },
                event,
            ) => {
                let (info, mirror) = if !info.is_finished() {
                    (info.on(event, now, settings), mirror)
                } else {
                    (info, mirror.on(event, now, settings))
                };
                if info.is_finished() && mirror.is_finished() {
                    Step::Finished {
                        end: AutoResponseEnd::Completed {
                            conversation,
                            info,
                            mirror,
                        },
                    }
                } else {
                    Step::Post {
                        conversation,
                        agent,
                        outbox,
                        info,
                        mirror,
                    }
                }
            }
            // An event that does not belong to this step changes nothing; the effect repeats.
            (step, _) => step,
        };
        Self { step, ..self }
    }
}

// ----- Files -----

impl Effect {
    /// Fetch `message` again through `agent`, the account whose copy it is.
    fn refetch(agent: &SessionName, message: &IncomingMessage) -> Self {
        Self::RefetchFile {
            agent: agent.clone(),
            chat: message.chat,
            message_id: message.message_id,
        }
    }
}

/// Whether a file's send failed only because its reference expired: fetched again, it may go.
fn reference_expired(delivery: &Delivery) -> bool {
    matches!(
        delivery,
        Delivery::Failed {
            failure: OutboxFailure::Recipient {
                error: TelegramError::FileReferenceExpired,
                ..
            },
        }
    )
}

// ----- A contact's message into the topic -----

/// A contact's private message to an agent, copied into the topic of their conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayToTopic {
    /// The agent the contact wrote to.
    pub agent: SessionName,
    pub message: IncomingMessage,
    pub step: RelayStep,
    /// The message's file was fetched again after its reference expired (at most once; the
    /// post's idempotency key then ends in `:refetched`).
    #[serde(default)]
    pub file_refetched: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "step")]
pub enum RelayStep {
    /// The contact has no conversation with the agent yet: their auto-response is still on its
    /// way (or its conversation is about to open). Look again at `retry_at`, until `until`.
    AwaitConversation {
        until: UnixMillis,
        retry_at: Option<UnixMillis>,
    },
    /// Conversations were found: one relay each (started by key, so a replay starts none).
    Fork {
        conversations: Vec<ConversationId>,
    },
    Post {
        conversation: ConversationId,
        post: TopicPost,
    },
    /// The file's reference expired (`delivery`): fetch the message again for a fresh one.
    RefetchFile {
        conversation: ConversationId,
        delivery: Delivery,
    },
    /// The message's file was not copied (`delivery` says why): post its text with a note.
    Note {
        conversation: ConversationId,
        delivery: Delivery,
        post: TopicPost,
    },
    /// Posted: the automatic replier may answer.
    Reply {
        conversation: ConversationId,
        post: TopicPost,
    },
    Finished {
        end: RelayEnd,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "end")]
pub enum RelayEnd {
    /// Copied into the topic (or not, as `post` says).
    Done { post: TopicPost },
    /// Handed to one relay per conversation.
    Forked { conversations: Vec<ConversationId> },
    /// No conversation opened in time: the message was not an answer to jobbot.
    NoConversation,
}

impl RelayToTopic {
    /// A relay into `conversation`'s topic.
    pub fn into_conversation(
        agent: SessionName,
        message: IncomingMessage,
        conversation: ConversationId,
    ) -> Self {
        Self {
            agent,
            message,
            step: RelayStep::Post {
                conversation,
                post: TopicPost::new(),
            },
            file_refetched: false,
        }
    }

    /// A relay that waits for the contact's conversation to open.
    pub fn awaiting_conversation(
        agent: SessionName,
        message: IncomingMessage,
        now: UnixMillis,
        settings: &WorkflowSettings,
    ) -> Self {
        Self {
            agent,
            message,
            step: RelayStep::AwaitConversation {
                until: now.plus(settings.await_conversation),
                retry_at: None,
            },
            file_refetched: false,
        }
    }

    /// The key of the relay of `message_id` into `conversation`.
    pub fn key(conversation: ConversationId, message_id: i32) -> String {
        format!("relay_to_topic:{}:{message_id}", conversation.0)
    }

    /// The key of a relay still looking for its conversation.
    pub fn awaiting_key(agent: &SessionName, contact: ChatId, message_id: i32) -> String {
        format!("relay_awaiting:{agent}:{contact}:{message_id}")
    }

    fn effect(&self, now: UnixMillis) -> Effect {
        match &self.step {
            RelayStep::AwaitConversation {
                retry_at: Some(at), ..
            } if *at > now => Effect::SleepUntil(*at),
            RelayStep::AwaitConversation { .. } => Effect::FindConversations,
            RelayStep::Fork { conversations } => Effect::Fork {
                conversations: conversations.clone(),
            },
            RelayStep::Post { conversation, post } => {
                post.effect(*conversation, PostKind::ContactMessage, now)
            }
            RelayStep::RefetchFile { .. } => Effect::refetch(&self.agent, &self.message),
            RelayStep::Note {
                conversation, post, ..
            } => post.effect(*conversation, PostKind::MediaNote, now),
            RelayStep::Reply { conversation, .. } => Effect::AutoReply {
                conversation: *conversation,
            },
            RelayStep::Finished { .. } => Effect::Finished,
        }
    }

    fn on(self, event: Event, now: UnixMillis, settings: &WorkflowSettings) -> Self {
        let Self {
            agent,
            mut message,
            step,
            mut file_refetched,
        } = self;
        let step = match (step, event) {
            (RelayStep::AwaitConversation { until, .. }, Event::Woke) => {
                RelayStep::AwaitConversation {
                    until,
                    retry_at: None,
                }
            }
            (RelayStep::AwaitConversation { .. }, Event::ConversationsFound { conversations })
                if !conversations.is_empty() =>
            {
                RelayStep::Fork { conversations }
            }
            (RelayStep::AwaitConversation { until, .. }, Event::ConversationsFound { .. }) => {
                let retry_at = now.plus(settings.conversation_retry);
                if retry_at > until {
                    RelayStep::Finished {
                        end: RelayEnd::NoConversation,
                    }
                } else {
                    RelayStep::AwaitConversation {
                        until,
                        retry_at: Some(retry_at),
                    }
                }
            }
            (RelayStep::Fork { conversations }, Event::Forked) => RelayStep::Finished {
                end: RelayEnd::Forked { conversations },
            },
            (RelayStep::Post { conversation, post }, event) => {
                let post = post.on(event, now, settings);
                match post {
                    post @ TopicPost::Posted { .. } => RelayStep::Reply { conversation, post },
                    TopicPost::NotPosted { delivery }
                        if message.file.is_some()
                            && !file_refetched
                            && reference_expired(&delivery) =>
                    {
                        RelayStep::RefetchFile {
                            conversation,
                            delivery,
                        }
                    }
                    // Never a silent drop: a file that did not go into the topic leaves its text
                    // there with a note saying why.
                    TopicPost::NotPosted { delivery } if message.file.is_some() => {
                        RelayStep::Note {
                            conversation,
                            delivery,
                            post: TopicPost::new(),
                        }
                    }
                    post if post.is_finished() => RelayStep::Finished {
                        end: RelayEnd::Done { post },
                    },
                    post => RelayStep::Post { conversation, post },
                }
            }
            (
                RelayStep::Note {
                    conversation,
                    delivery,
                    post,
                },
                event,
            ) => {
                let post = post.on(event, now, settings);
                match post {
                    post @ TopicPost::Posted { .. } => RelayStep::Reply { conversation, post },
                    post if post.is_finished() => RelayStep::Finished {
                        end: RelayEnd::Done { post },
                    },
                    post => RelayStep::Note {
                        conversation,
                        delivery,
                        post,
                    },
                }
            }
            (
                RelayStep::RefetchFile {
                    conversation,
                    delivery,
                },
                Event::FileRefetched { file },
            ) => {
                file_refetched = true;
                match file {
                    Some(file) => {
                        message.file = Some(file);
                        RelayStep::Post {
                            conversation,
                            post: TopicPost::new(),
                        }
                    }
                    None => RelayStep::Note {
                        conversation,
                        delivery,
                        post: TopicPost::new(),
                    },
                }
            }
            (RelayStep::Reply { post, .. }, Event::Replied) => RelayStep::Finished {
                end: RelayEnd::Done { post },
            },
            (step, _) => step,
        };
        Self {
            agent,
            message,
            step,
            file_refetched,
        }
    }
}

// ----- An operator's file to the contact -----

/// An operator's file from a conversation's topic, sent to the contact by the conversation's
/// agent: `message` is the agent's own copy of the topic message, whose file reference only that
/// account may use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaToContact {
    pub agent: SessionName,
    pub conversation: ConversationId,
    pub message: IncomingMessage,
    pub step: MediaToContactStep,
    /// The message's file was fetched again after its reference expired (at most once; the
    /// message to the contact is then queued with a key of its own).
    #[serde(default)]
    pub file_refetched: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "step")]
pub enum MediaToContactStep {
    Queue,
    Queued {
        outbox: OutboxId,
    },
    /// The file's reference expired (`delivery`): fetch the topic message again for a fresh one.
    RefetchFile {
        delivery: Delivery,
    },
    /// Not delivered (`delivery` says why): a note in the topic tells the operator.
    Note {
        delivery: Delivery,
        post: TopicPost,
    },
    Finished {
        end: MediaToContactEnd,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "end")]
pub enum MediaToContactEnd {
    Delivered,
    /// Not delivered; the note was posted (or not, as `post` says).
    Noted {
        delivery: Delivery,
        post: TopicPost,
    },
    /// The conversation is gone, or its contact cannot be addressed.
    NoConversation,
}

impl MediaToContact {
    pub fn new(agent: SessionName, conversation: ConversationId, message: IncomingMessage) -> Self {
        Self {
            agent,
            conversation,
            message,
            step: MediaToContactStep::Queue,
            file_refetched: false,
        }
    }

    /// The key of the relay of topic message `message_id` in `group`.
    pub fn key(group: ChatId, message_id: i32) -> String {
        format!("media_to_contact:{}:{message_id}", group.get())
    }

    fn effect(&self, now: UnixMillis) -> Effect {
        match &self.step {
            MediaToContactStep::Queue => Effect::QueueToContact {
                conversation: self.conversation,
            },
            MediaToContactStep::Queued { outbox } => Effect::AwaitOutbox(*outbox),
            MediaToContactStep::RefetchFile { .. } => Effect::refetch(&self.agent, &self.message),
            MediaToContactStep::Note { post, .. } => {
                post.effect(self.conversation, PostKind::DeliveryNote, now)
            }
            MediaToContactStep::Finished { .. } => Effect::Finished,
        }
    }

    fn on(self, event: Event, now: UnixMillis, settings: &WorkflowSettings) -> Self {
        let Self {
            agent,
            conversation,
            mut message,
            step,
            mut file_refetched,
        } = self;
        let step = match (step, event) {
            (MediaToContactStep::Queue, Event::Queued { outbox }) => {
                MediaToContactStep::Queued { outbox }
            }
            (MediaToContactStep::Queue, Event::NoConversation) => MediaToContactStep::Finished {
                end: MediaToContactEnd::NoConversation,
            },
            (MediaToContactStep::Queued { .. }, Event::Delivered(Delivery::Sent { .. })) => {
                MediaToContactStep::Finished {
                    end: MediaToContactEnd::Delivered,
                }
            }
            (MediaToContactStep::Queued { .. }, Event::Delivered(delivery))
                if !file_refetched && reference_expired(&delivery) =>
            {
                MediaToContactStep::RefetchFile { delivery }
            }
            (MediaToContactStep::Queued { .. }, Event::Delivered(delivery)) => {
                MediaToContactStep::Note {
                    delivery,
                    post: TopicPost::new(),
                }
            }
            (MediaToContactStep::RefetchFile { delivery }, Event::FileRefetched { file }) => {
                file_refetched = true;
                match file {
                    Some(file) => {
                        message.file = Some(file);
                        MediaToContactStep::Queue
                    }
                    None => MediaToContactStep::Note {
                        delivery,
                        post: TopicPost::new(),
                    },
                }
            }
            (MediaToContactStep::Note { delivery, post }, event) => {
                let post = post.on(event, now, settings);
                if post.is_finished() {
                    MediaToContactStep::Finished {
                        end: MediaToContactEnd::Noted { delivery, post },
                    }
                } else {
                    MediaToContactStep::Note { delivery, post }
                }
            }
            (step, _) => step,
        };
        Self {
            agent,
            conversation,
            message,
            step,
            file_refetched,
        }
    }
}

// ----- The enum -----

impl Workflow {
    /// The kind, as stored.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::AutoResponse(_) => "auto_response",
            Self::RelayToTopic(_) => "relay_to_topic",
            Self::MediaToContact(_) => "media_to_contact",
            Self::AiTurn(_) => "ai_turn",
        }
    }

    pub fn is_finished(&self) -> bool {
        match self {
            Self::AutoResponse(workflow) => {
                matches!(workflow.step, AutoResponseStep::Finished { .. })
            }
            Self::RelayToTopic(workflow) => matches!(workflow.step, RelayStep::Finished { .. }),
            Self::MediaToContact(workflow) => {
                matches!(workflow.step, MediaToContactStep::Finished { .. })
            }
            Self::AiTurn(workflow) => matches!(workflow.step, AiStep::Finished { .. }),
        }
    }

    /// The one thing to do next, from the state alone.
    pub fn effect(&self, now: UnixMillis) -> Effect {
        match self {
            Self::AutoResponse(workflow) => workflow.effect(now),
            Self::RelayToTopic(workflow) => workflow.effect(now),
            Self::MediaToContact(workflow) => workflow.effect(now),
            Self::AiTurn(workflow) => workflow.effect(now),
        }
    }

    /// The state after `event`. An event that does not fit the state changes nothing (the effect
    /// is performed again).
    pub fn on(self, event: Event, now: UnixMillis, settings: &WorkflowSettings) -> Self {
        match self {
            Self::AutoResponse(workflow) => Self::AutoResponse(workflow.on(event, now, settings)),
            Self::RelayToTopic(workflow) => Self::RelayToTopic(workflow.on(event, now, settings)),
            Self::MediaToContact(workflow) => {
                Self::MediaToContact(workflow.on(event, now, settings))
            }
            Self::AiTurn(workflow) => Self::AiTurn(workflow.on(event, now, settings)),
        }
    }
}

#[cfg(test)]
mod tests;
