//! One turn of a conversation: the analysis step (when the channel uses it), the system prompt
//! for the phase it leads to, the relevant facts, and the reply. The turn reads a snapshot of the
//! conversation's state and history and changes nothing: the caller applies what it returns to
//! the stored state (`AiConversation::on_analysis`, `on_reply`), in the store's transaction, so
//! an operator's message that arrived meanwhile is not overwritten by a stale copy.

use jobbot_core::ai::prompt::{analysis_messages, reply_messages, system_prompt};
use jobbot_core::ai::{
    AiConversation, AiPolicy, AiSettings, Analysis, AnalysisError, HistoryEntry, LlmProviders,
    ModelChoice, parse_analysis,
};

use crate::client::{ChatRequest, Completion, LlmClient};
use crate::error::ChainError;
use crate::wire::Usage;

/// The analysis step's sampling: it should classify, not invent.
pub const ANALYSIS_TEMPERATURE: f32 = 0.0;
pub const ANALYSIS_MAX_TOKENS: u32 = 400;

/// What a turn needs.
pub struct TurnInput<'a> {
    pub settings: &'a AiSettings,
    pub providers: &'a LlmProviders,
    /// The state when the turn started (its `in_flight` is this turn).
    pub state: &'a AiConversation,
    pub turn: u64,
    /// Oldest first, ending with the contact's newest message.
    pub history: &'a [HistoryEntry],
    /// Relevant facts from the channel's knowledge files.
    pub facts: &'a [String],
}

/// What a turn produced.
#[derive(Debug)]
pub struct TurnOutcome {
    /// `None` when the channel does not analyse, or no provider answered the analysis.
    pub analysis: Option<Result<Analysis, AnalysisError>>,
    pub analysis_call: Option<Result<Completion, ChainError>>,
    pub reply: Result<Completion, ChainError>,
}

impl TurnOutcome {
    /// Tokens of both calls.
    pub fn usage(&self) -> Usage {
        [self.analysis_call.as_ref(), Some(&self.reply)]
            .into_iter()
            .flatten()
            .filter_map(|call| call.as_ref().ok())
            .fold(Usage::default(), |sum, call| Usage {
                prompt_tokens: sum.prompt_tokens + call.usage.prompt_tokens,
                completion_tokens: sum.completion_tokens + call.usage.completion_tokens,
                total_tokens: sum.total_tokens + call.usage.total_tokens,
            })
    }
}

/// Runs one turn.
pub async fn run_turn(client: &LlmClient, input: TurnInput<'_>) -> TurnOutcome {
    let chain: Vec<ModelChoice> = input.settings.chain().cloned().collect();
    let (analysis, analysis_call) = if input.settings.use_state_analyzer {
        let call = client
            .complete(
                input.providers,
                &chain,
                &ChatRequest {
                    messages: analysis_messages(input.state, input.history),
                    temperature: ANALYSIS_TEMPERATURE,
                    max_tokens: ANALYSIS_MAX_TOKENS,
                },
            )
            .await;
        let analysis = call
            .as_ref()
            .ok()
            .map(|completion| parse_analysis(&completion.text));
        (analysis, Some(call))
    } else {
        (None, None)
    };
    // The phase the reply is written for: the state as the analysis will leave it.
    let mut preview = input.state.clone();
    if let Some(result) = &analysis {
        preview.on_analysis(
            input.turn,
            result.as_ref(),
            &AiPolicy::from_settings(input.settings),
        );
    }
    let system = system_prompt(
        &input.settings.prompts,
        &preview,
        analysis.as_ref().and_then(|result| result.as_ref().ok()),
    );
    let messages = reply_messages(
        system,
        input.history,
        input.settings.context_window_messages as usize,
        input.facts,
    );
    let reply = client
        .complete(
            input.providers,
            &chain,
            &ChatRequest {
                messages,
                temperature: input.settings.temperature,
                max_tokens: input.settings.max_tokens,
            },
        )
        .await;
    TurnOutcome {
        analysis,
        analysis_call,
        reply,
    }
}
