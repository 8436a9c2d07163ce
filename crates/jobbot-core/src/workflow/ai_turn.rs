//! One AI turn of a conversation, as a stored workflow: generate (the model's answer is applied
//! to the conversation's AI record, which keeps the decision, so a replay asks the model nothing
//! again), then either post the suggestion into the topic (`suggest`) or queue the reply to the
//! contact through the outbox by the conversation's agent (keyed by the turn, so it goes out
//! once), wait for it, record it sent, and mirror it into the topic (`auto`).

use serde::{Deserialize, Serialize};

use super::{Effect, Event, PostKind, TopicPost, WorkflowSettings};
use crate::store::{ConversationId, Delivery, OutboxId, UnixMillis};

/// A turn of `conversation`'s AI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AiTurn {
    pub conversation: ConversationId,
    pub turn: u64,
    pub step: AiStep,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "step")]
pub enum AiStep {
    /// Ask the model (or read the decision a run before this one stored).
    Generate,
    /// Post the suggestion into the topic.
    Suggest {
        text: String,
        post: TopicPost,
    },
    /// Queue the reply to the contact (`None`), then wait for it.
    Send {
        text: String,
        outbox: Option<OutboxId>,
    },
    /// Delivered: record it in the conversation's AI.
    Sent {
        text: String,
    },
    /// Mirror the sent reply into the topic.
    Mirror {
        text: String,
        post: TopicPost,
    },
    Finished {
        end: AiEnd,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "end")]
pub enum AiEnd {
    /// Nothing to deliver (discarded, failed, stale).
    Nothing,
    Suggested {
        post: TopicPost,
    },
    /// Sent and mirrored (or not, as `mirror` says).
    Sent {
        mirror: TopicPost,
    },
    /// The outbox gave up on the reply.
    NotSent {
        delivery: Delivery,
    },
}

/// What the generate step came to, as the workflow needs it.
#[derive(Clone, PartialEq, Eq)]
pub enum AiOutcome {
    Suggest { text: String },
    Send { text: String },
    Nothing,
}

impl std::fmt::Debug for AiOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Suggest { text } => write!(f, "Suggest({} chars)", text.chars().count()),
            Self::Send { text } => write!(f, "Send({} chars)", text.chars().count()),
            Self::Nothing => write!(f, "Nothing"),
        }
    }
}

impl AiTurn {
    pub fn new(conversation: ConversationId, turn: u64) -> Self {
        Self {
            conversation,
            turn,
            step: AiStep::Generate,
        }
    }

    /// One workflow per turn of a conversation.
    pub fn key(conversation: ConversationId, turn: u64) -> String {
        format!("ai_turn:{}:{turn}", conversation.0)
    }

    /// The outbox key of the turn's reply to the contact (also used when an operator sends the
    /// turn's suggestion: one message per turn, whichever way it goes).
    pub fn reply_key(conversation: ConversationId, turn: u64) -> String {
        format!("ai_reply:{}:{turn}", conversation.0)
    }

    /// The text the step carries (posts take it from here).
    pub fn text(&self) -> Option<&str> {
        match &self.step {
            AiStep::Suggest { text, .. }
            | AiStep::Send { text, .. }
            | AiStep::Sent { text }
            | AiStep::Mirror { text, .. } => Some(text),
            AiStep::Generate | AiStep::Finished { .. } => None,
        }
    }

    pub(super) fn effect(&self, now: UnixMillis) -> Effect {
        let conversation = self.conversation;
        match &self.step {
            AiStep::Generate => Effect::AiGenerate {
                conversation,
                turn: self.turn,
            },
            AiStep::Suggest { post, .. } => post.effect(conversation, PostKind::AiSuggestion, now),
            AiStep::Send { outbox: None, .. } => Effect::AiQueueReply {
                conversation,
                turn: self.turn,
            },
            AiStep::Send {
                outbox: Some(outbox),
                ..
            } => Effect::AwaitOutbox(*outbox),
            AiStep::Sent { .. } => Effect::AiRecordSent {
                conversation,
                turn: self.turn,
            },
            AiStep::Mirror { post, .. } => post.effect(conversation, PostKind::AiMirror, now),
            AiStep::Finished { .. } => Effect::Finished,
        }
    }

    pub(super) fn on(self, event: Event, now: UnixMillis, settings: &WorkflowSettings) -> Self {
        let step = match (self.step, event) {
            (AiStep::Generate, Event::AiDecided(outcome)) => match outcome {
                AiOutcome::Suggest { text } => AiStep::Suggest {
                    text,
                    post: TopicPost::new(),
                },
                AiOutcome::Send { text } => AiStep::Send { text, outbox: None },
                AiOutcome::Nothing => AiStep::Finished {
                    end: AiEnd::Nothing,
                },
            },
            (AiStep::Suggest { text, post }, event) => match post.on(event, now, settings) {
                post if post.is_finished() => AiStep::Finished {
                    end: AiEnd::Suggested { post },
                },
                post => AiStep::Suggest { text, post },
            },
            (AiStep::Send { text, outbox: None }, Event::Queued { outbox }) => AiStep::Send {
                text,
                outbox: Some(outbox),
            },
            (AiStep::Send { text, .. }, Event::Delivered(Delivery::Sent { .. })) => {
                AiStep::Sent { text }
            }
            (AiStep::Send { .. }, Event::Delivered(delivery)) => AiStep::Finished {
                end: AiEnd::NotSent { delivery },
            },
            (AiStep::Send { .. }, Event::NoConversation) => AiStep::Finished {
                end: AiEnd::Nothing,
            },
            (AiStep::Sent { text }, Event::Recorded) => AiStep::Mirror {
                text,
                post: TopicPost::new(),
            },
            (AiStep::Mirror { text, post }, event) => match post.on(event, now, settings) {
                post if post.is_finished() => AiStep::Finished {
                    end: AiEnd::Sent { mirror: post },
                },
                post => AiStep::Mirror { text, post },
            },
            (step, _) => step,
        };
        Self { step, ..self }
    }
}
