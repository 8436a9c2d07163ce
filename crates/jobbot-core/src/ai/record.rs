//! What the store keeps of one conversation's AI: the state machine's state, the history the
//! model sees, the pending suggestion, the last turn's decision and the counters, as one record
//! written with a version check ([`AiStore::save_ai_record`]), so two writers (the intake taking
//! a contact's message, a turn coming back from the model) never overwrite each other.
//!
//! Each change is a pure function of the record, so a step replayed after a crash changes
//! nothing twice: a contact's message is taken once (its id is remembered), a turn is decided
//! once (the decision is kept and returned again), a reply is counted sent once (its turn is
//! remembered).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::analysis::{Analysis, AnalysisError};
use super::conversation::{
    AiConversation, AiPolicy, ContactDecision, DiscardReason, ReplyDecision, Turn,
};
use super::prompt::{Author, HistoryEntry};
use super::settings::AiMode;
use crate::store::{ConversationId, StoreError, UnixMillis};

/// The most history entries kept (the longest context window a channel may ask for).
pub const MAX_HISTORY: usize = super::AiSettings::MAX_CONTEXT_WINDOW as usize;
/// How many taken message ids and sent turns are remembered (replays come soon after).
const MAX_REMEMBERED: usize = 200;

/// What a turn came to.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "decision")]
pub enum TurnDecision {
    /// Post this suggestion in the topic (`suggest`).
    Suggest { text: String },
    /// Send this reply to the contact (`auto`).
    Send { text: String },
    /// Nothing to deliver.
    Discard { reason: DiscardReason },
    /// Every provider failed.
    Failed,
}

impl std::fmt::Debug for TurnDecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Suggest { text } => write!(f, "Suggest({} chars)", text.chars().count()),
            Self::Send { text } => write!(f, "Send({} chars)", text.chars().count()),
            Self::Discard { reason } => write!(f, "Discard({reason:?})"),
            Self::Failed => write!(f, "Failed"),
        }
    }
}

/// The last decided turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decided {
    pub turn: u64,
    pub decision: TurnDecision,
}

/// A suggestion waiting for an operator.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suggestion {
    pub turn: u64,
    pub text: String,
    pub at: UnixMillis,
    /// Its post in the topic, once delivered.
    pub message_id: Option<i32>,
}

impl std::fmt::Debug for Suggestion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Suggestion")
            .field("turn", &self.turn)
            .field("chars", &self.text.chars().count())
            .field("message_id", &self.message_id)
            .finish()
    }
}

/// What a conversation's AI did, summed per channel in the statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AiCounters {
    /// Suggestions posted for operators.
    pub suggestions: u64,
    /// AI replies that reached the contact (`auto`, or a suggestion an operator sent).
    pub replies_sent: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Model calls that failed after every retry and fallback.
    pub errors: u64,
}

impl AiCounters {
    pub fn add(&mut self, other: &Self) {
        self.suggestions += other.suggestions;
        self.replies_sent += other.replies_sent;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.errors += other.errors;
    }
}

/// One conversation's stored AI.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AiRecord {
    pub state: AiConversation,
    /// Oldest first, at most [`MAX_HISTORY`].
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
    /// Ids of the contact's messages taken in (newest last).
    #[serde(default)]
    pub taken: Vec<i32>,
    #[serde(default)]
    pub decided: Option<Decided>,
    #[serde(default)]
    pub suggestion: Option<Suggestion>,
    /// Turns whose reply reached the contact (newest last).
    #[serde(default)]
    pub sent: Vec<u64>,
    #[serde(default)]
    pub counters: AiCounters,
}

/// What a model call of a turn returned, for [`AiRecord::decide`].
pub struct TurnResult<'a> {
    pub analysis: Option<Result<&'a Analysis, &'a AnalysisError>>,
    /// The reply's text, or `None` when every provider failed.
    pub reply: Option<&'a str>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Calls of the turn that failed for good (the analysis, the reply).
    pub failed_calls: u64,
}

impl AiRecord {
    /// Takes a contact's message in, once per message id: `None` when it was taken before.
    pub fn take_contact_message(
        &mut self,
        message_id: i32,
        text: &str,
        policy: &AiPolicy,
        now: UnixMillis,
    ) -> Option<ContactDecision> {
        if self.taken.contains(&message_id) {
            return None;
        }
        remember(&mut self.taken, message_id);
        self.push_history(Author::Contact, text, now);
        Some(self.state.on_contact_message(text, policy, now))
    }

    /// Applies a turn's result, once: a turn decided before returns its decision again. Returns
    /// the decision and the turn to start next, if the contact wrote meanwhile.
    pub fn decide(
        &mut self,
        turn: u64,
        result: TurnResult<'_>,
        policy: &AiPolicy,
        now: UnixMillis,
    ) -> (TurnDecision, Option<Turn>) {
        if let Some(decided) = self.decided.as_ref().filter(|d| d.turn == turn) {
            return (decided.decision.clone(), None);
        }
        self.counters.prompt_tokens += result.prompt_tokens;
        self.counters.completion_tokens += result.completion_tokens;
        self.counters.errors += result.failed_calls;
        if let Some(analysis) = result.analysis {
            self.state.on_analysis(turn, analysis, policy);
        }
        let (decision, next) = match result.reply {
            Some(text) => match self.state.on_reply(turn, text, policy, now) {
                (ReplyDecision::Deliver { text, mode }, next) => {
                    if mode == AiMode::Auto {
                        (TurnDecision::Send { text }, next)
                    } else {
                        self.counters.suggestions += 1;
                        self.suggestion = Some(Suggestion {
                            turn,
                            text: text.clone(),
                            at: now,
                            message_id: None,
                        });
                        (TurnDecision::Suggest { text }, next)
                    }
                }
                (ReplyDecision::Discard(reason), next) => (TurnDecision::Discard { reason }, next),
            },
            None => (
                TurnDecision::Failed,
                self.state.on_reply_failed(turn, policy, now),
            ),
        };
        self.decided = Some(Decided {
            turn,
            decision: decision.clone(),
        });
        (decision, next)
    }

    /// An AI reply of `turn` reached the contact; `false` when it was recorded before.
    pub fn reply_sent(&mut self, turn: u64, text: &str, now: UnixMillis) -> bool {
        if self.sent.contains(&turn) {
            return false;
        }
        remember(&mut self.sent, turn);
        self.counters.replies_sent += 1;
        self.push_history(Author::Ai, text, now);
        self.state.on_ai_message_sent(text, now);
        if self.suggestion.as_ref().is_some_and(|s| s.turn == turn) {
            self.suggestion = None;
        }
        true
    }

    /// The conversation began with a vacancy and jobbot's auto-response to it: both join the
    /// history the model sees (the vacancy as the conversation's context), each once however
    /// often this is replayed.
    pub fn vacancy_answered(&mut self, vacancy: &str, auto_response: &str, now: UnixMillis) {
        for (author, text) in [
            (Author::Vacancy, vacancy),
            (Author::AutoResponse, auto_response),
        ] {
            let known = self
                .history
                .iter()
                .any(|entry| entry.author == author && entry.text == text);
            if !text.trim().is_empty() && !known {
                self.push_history(author, text, now);
            }
        }
    }

    /// An operator wrote to the contact from the topic: the conversation is handed over and a
    /// pending suggestion is dropped (the operator answered instead).
    pub fn operator_wrote(&mut self, text: &str, now: UnixMillis) {
        self.push_history(Author::Operator, text, now);
        self.state.on_operator_message(now);
        self.suggestion = None;
    }

    /// The suggestion's post in the topic was delivered.
    pub fn suggestion_posted(&mut self, turn: u64, message_id: i32) -> bool {
        match &mut self.suggestion {
            Some(suggestion) if suggestion.turn == turn && suggestion.message_id.is_none() => {
                suggestion.message_id = Some(message_id);
                true
            }
            _ => false,
        }
    }

    fn push_history(&mut self, author: Author, text: &str, at: UnixMillis) {
        self.history.push(HistoryEntry {
            author,
            text: text.to_owned(),
            at,
        });
        // The oldest go first, but never a vacancy: it is what the conversation is about.
        let mut excess = self.history.len().saturating_sub(MAX_HISTORY);
        self.history.retain(|entry| {
            if excess > 0 && entry.author != Author::Vacancy {
                excess -= 1;
                false
            } else {
                true
            }
        });
    }
}

fn remember<T>(list: &mut Vec<T>, value: T) {
    list.push(value);
    let excess = list.len().saturating_sub(MAX_REMEMBERED);
    list.drain(..excess);
}

/// A stored record with its version (the number of writes so far).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAi {
    pub conversation: ConversationId,
    pub channel_id: String,
    pub version: i64,
    pub record: AiRecord,
    pub updated_at: UnixMillis,
}

/// One channel's summed counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AiChannelStats {
    pub channel_id: String,
    pub conversations: u64,
    pub counters: AiCounters,
}

/// The store of conversations' AI records (every backend implements it).
#[async_trait]
pub trait AiStore: Send + Sync {
    async fn ai_record(&self, conversation: ConversationId)
    -> Result<Option<StoredAi>, StoreError>;

    /// Writes `record` if the stored version is still `expected` (0: no record yet). Returns
    /// the new version, or `None` when another writer came first (read again and reapply).
    async fn save_ai_record(
        &self,
        conversation: ConversationId,
        channel_id: &str,
        expected: i64,
        record: &AiRecord,
        at: UnixMillis,
    ) -> Result<Option<i64>, StoreError>;

    /// The counters summed per channel, by channel id.
    async fn ai_stats(&self) -> Result<Vec<AiChannelStats>, StoreError>;

    /// The records written last (newest first, then by conversation id, descending), at most
    /// `limit`, of one channel or of all.
    async fn recent_ai_records(
        &self,
        channel_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredAi>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::AiSettings;

    fn policy(mode: AiMode) -> AiPolicy {
        AiPolicy::from_settings(&AiSettings {
            mode,
            ..AiSettings::default()
        })
    }

    const NOW: UnixMillis = UnixMillis(1_750_000_000_000);

    fn reply(text: &str) -> TurnResult<'_> {
        TurnResult {
            analysis: None,
            reply: Some(text),
            prompt_tokens: 10,
            completion_tokens: 5,
            failed_calls: 0,
        }
    }

    #[test]
    fn the_vacancy_and_the_auto_response_join_the_history_once() {
        let mut record = AiRecord::default();
        record.vacancy_answered("Ищем Rust-разработчика", "Здравствуйте, Анна!", NOW);
        record.vacancy_answered("Ищем Rust-разработчика", "Здравствуйте, Анна!", NOW);
        let authors: Vec<_> = record.history.iter().map(|entry| entry.author).collect();
        assert_eq!(authors, [Author::Vacancy, Author::AutoResponse]);
        // Nothing is kept for an empty text.
        let mut empty = AiRecord::default();
        empty.vacancy_answered(" ", "Здравствуйте", NOW);
        assert_eq!(empty.history.len(), 1);
        // A long conversation drops its oldest messages, never the vacancy.
        let policy = policy(AiMode::Manual);
        for id in 0..(MAX_HISTORY as i32 + 10) {
            record.take_contact_message(id, "Ещё вопрос", &policy, NOW);
        }
        assert_eq!(record.history.len(), MAX_HISTORY);
        assert_eq!(record.history[0].author, Author::Vacancy);
        assert_eq!(record.history[1].author, Author::Contact);
    }

    #[test]
    fn a_replayed_step_changes_nothing_twice() {
        let policy = policy(AiMode::Suggest);
        let mut record = AiRecord::default();
        let Some(ContactDecision::Generate(turn)) =
            record.take_contact_message(5, "Здравствуйте", &policy, NOW)
        else {
            panic!("a turn starts");
        };
        assert_eq!(
            record.take_contact_message(5, "Здравствуйте", &policy, NOW),
            None
        );
        assert_eq!(record.history.len(), 1);
        let (first, _) = record.decide(turn.number, reply("Добрый день"), &policy, NOW);
        let (again, _) = record.decide(turn.number, reply("Другое"), &policy, NOW);
        assert_eq!(first, again);
        assert_eq!(
            first,
            TurnDecision::Suggest {
                text: "Добрый день".into()
            }
        );
        assert_eq!(record.counters.suggestions, 1);
        assert_eq!(record.counters.prompt_tokens, 10);
        assert!(record.reply_sent(turn.number, "Добрый день", NOW));
        assert!(!record.reply_sent(turn.number, "Добрый день", NOW));
        assert_eq!(record.counters.replies_sent, 1);
        assert_eq!(record.suggestion, None);
        assert_eq!(record.history.len(), 2);
    }

    #[test]
    fn auto_sends_and_an_operator_hands_over_dropping_the_suggestion() {
        let mut record = AiRecord::default();
        let auto = policy(AiMode::Auto);
        let Some(ContactDecision::Generate(turn)) =
            record.take_contact_message(1, "Вопрос", &auto, NOW)
        else {
            panic!("a turn starts");
        };
        let (decision, _) = record.decide(turn.number, reply("Ответ"), &auto, NOW);
        assert_eq!(
            decision,
            TurnDecision::Send {
                text: "Ответ".into()
            }
        );
        assert_eq!(record.suggestion, None);
        let suggest = policy(AiMode::Suggest);
        let Some(ContactDecision::Generate(turn)) =
            record.take_contact_message(2, "Ещё", &suggest, NOW)
        else {
            panic!("a turn starts");
        };
        record.decide(turn.number, reply("Подсказка"), &suggest, NOW);
        assert!(record.suggestion_posted(turn.number, 77));
        record.operator_wrote("Я отвечу сам", NOW);
        assert_eq!(record.suggestion, None);
        assert_eq!(
            record.take_contact_message(3, "Ок", &suggest, NOW),
            Some(ContactDecision::Skip(super::super::SkipReason::HandedOver))
        );
    }

    #[test]
    fn a_failed_turn_counts_an_error_and_frees_the_conversation() {
        let policy = policy(AiMode::Auto);
        let mut record = AiRecord::default();
        let Some(ContactDecision::Generate(turn)) =
            record.take_contact_message(1, "?", &policy, NOW)
        else {
            panic!("a turn starts");
        };
        let (decision, next) = record.decide(
            turn.number,
            TurnResult {
                analysis: None,
                reply: None,
                prompt_tokens: 0,
                completion_tokens: 0,
                failed_calls: 1,
            },
            &policy,
            NOW,
        );
        assert_eq!((decision, next), (TurnDecision::Failed, None));
        assert_eq!(record.counters.errors, 1);
        assert_eq!(record.state.in_flight, None);
    }

    #[test]
    fn the_record_round_trips_through_json() {
        let policy = policy(AiMode::Suggest);
        let mut record = AiRecord::default();
        record.take_contact_message(1, "a", &policy, NOW);
        let text = serde_json::to_string(&record).unwrap();
        assert_eq!(serde_json::from_str::<AiRecord>(&text).unwrap(), record);
    }
}
