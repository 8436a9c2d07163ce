//! AI conversations with vacancy authors, the pure part: typed settings parsed from the
//! configuration's raw `ai_config`, `llm_providers` and `prompts`; the conversation state machine
//! (phases, counters, hand-over, opt-out, one reply in flight, a daily cap); the analysis step's
//! tolerant parsing; prompt assembly with built-in defaults; knowledge chunking and search terms.
//!
//! Nothing here talks to a model: `jobbot-ai` sends what these functions build and hands the
//! answers back. Nothing here logs either, and [`ChatMessage`]'s `Debug` shows a message's role
//! and length, never its text, so a prompt cannot leak into a log by formatting a value.

pub mod analysis;
pub mod conversation;
pub mod knowledge;
pub mod prompt;
pub mod record;
pub mod safety;
pub mod settings;

pub use analysis::{Analysis, AnalysisError, parse_analysis};
pub use conversation::{
    AiControl, AiConversation, AiPolicy, ContactDecision, DiscardReason, Phase, ReplyDecision,
    SkipReason, Turn,
};
pub use prompt::{Author, ChatMessage, ChatRole, HistoryEntry, Prompts};
pub use record::{
    AiChannelStats, AiCounters, AiRecord, AiStore, Decided, StoredAi, Suggestion, TurnDecision,
    TurnResult,
};
pub use settings::{
    AiEdit, AiMode, AiSettings, ApiKey, ApiKeySource, LlmProviders, ModelChoice, Provider,
};
