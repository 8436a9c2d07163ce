//! jobbot's AI shell: everything of the AI conversations that does I/O, around the pure core
//! (`jobbot_core::ai`).
//!
//! - [`LlmClient`] — the OpenAI-compatible chat client over the configured providers: timeouts,
//!   retries on 429/5xx with back-off that honours `Retry-After`, the channel's fallback chain,
//!   typed failures ([`LlmError`]), keys resolved late and never logged.
//! - [`ProviderServer`] — an OpenAI-compatible HTTP server for scripted models: the demo's
//!   built-in provider ([`ScriptedModel`]) and the tests' fault-injecting [`Script`].
//! - [`run_turn`] — one turn of a conversation: analysis, the phase's prompt, the reply; it reads
//!   a snapshot and returns what the caller applies to the stored state.
//! - [`knowledge`] — knowledge files from disk into the store's index, and the facts a message
//!   finds.
//!
//! Nothing here logs a prompt, an answer or a key: the core's message types show only roles and
//! lengths in `Debug`, and failures carry status codes and provider error codes, never bodies.

mod client;
mod error;
pub mod knowledge;
mod scripted;
mod server;
mod turn;
pub mod wire;

pub use client::{
    ChatRequest, ClientBuildError, ClientSettings, Completion, KeyLookup, LlmClient, RetryPolicy,
    process_environment, retry_after, without_reasoning,
};
pub use error::{ChainError, Failure, LlmError};
pub use scripted::{Script, ScriptFallback, ScriptedModel};
pub use server::{ProviderServer, ReceivedRequest, Reply, Responder, RetryAfter};
pub use turn::{ANALYSIS_MAX_TOKENS, ANALYSIS_TEMPERATURE, TurnInput, TurnOutcome, run_turn};
