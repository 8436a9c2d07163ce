//! A CRM conversation's AI (#17 item 6): its phase, who answers, the history the model sees and
//! the pending suggestion (`GET /api/conversations/{id}/ai`); the operator's two actions on it:
//! send the suggestion (`POST …/ai/send`, what "+" in the topic does) and give a handed-over
//! conversation back to the AI (`POST …/ai/release`).

use axum::Json;
use axum::extract::{Path, State};
use jobbot_core::ai::{AiControl, AiStore};
use jobbot_core::store::ConversationId;
use jobbot_engine::{CrmHandle, SuggestionSent};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiError, ErrorBody};

/// One message of the history.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryView {
    /// `contact`, `ai`, `operator`, `auto_response` or `vacancy`.
    pub author: String,
    pub text: String,
    pub at_unix_ms: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SuggestionView {
    pub turn: u64,
    pub text: String,
    pub at_unix_ms: i64,
    /// Its post in the topic, once delivered.
    pub message_id: Option<i32>,
}

/// `GET /api/conversations/{id}/ai`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationAi {
    pub success: bool,
    pub conversation: i64,
    pub channel_id: String,
    /// `discovery`, `engagement`, `call_ready`, `call_pending` or `call_declined`.
    pub phase: String,
    /// `active` (the AI answers in the channel's mode), `handed_over` (an operator answers)
    /// or `opted_out` (the contact asked not to be written to).
    pub control: String,
    pub total_messages: u32,
    pub reply_in_flight: bool,
    pub suggestion: Option<SuggestionView>,
    pub history: Vec<HistoryView>,
    pub suggestions: u64,
    pub replies_sent: u64,
}

/// What an action did.
#[derive(Debug, Serialize, ToSchema)]
pub struct AiActionOutcome {
    pub success: bool,
    /// Whether anything changed (a suggestion queued, a conversation released).
    pub changed: bool,
}

fn parse_id(text: &str) -> Result<ConversationId, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .map(ConversationId)
        .ok_or_else(|| ApiError::invalid("id", "a conversation id is a positive integer"))
}

fn crm(state: &AppState) -> Result<(&CrmHandle, std::sync::Arc<dyn AiStore>), ApiError> {
    let crm = state
        .inner
        .ai
        .get()
        .ok_or(ApiError::Unavailable("this process runs no CRM"))?;
    let store = crm.ai_store().ok_or(ApiError::Unavailable(
        "this process runs no AI conversations",
    ))?;
    Ok((crm, store))
}

/// A conversation's AI: phase, who answers, history, pending suggestion, counters.
#[utoipa::path(get, path = "/api/conversations/{id}/ai", tag = "conversations",
    params(("id" = i64, Path, minimum = 1, maximum = 9223372036854775807_i64, description = "The conversation's id (a positive integer)")),
    responses((status = 200, body = ConversationAi), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn conversation_ai(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ConversationAi>, ApiError> {
    let id = parse_id(&id)?;
    let (_, store) = crm(&state)?;
    let stored = store
        .ai_record(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("conversation #{} has no AI record", id.0)))?;
    let record = stored.record;
    Ok(Json(ConversationAi {
        success: true,
        conversation: id.0,
        channel_id: stored.channel_id,
        phase: record.state.phase.as_str().to_owned(),
        control: match record.state.control {
            AiControl::Active => "active",
            AiControl::HandedOver { .. } => "handed_over",
            AiControl::OptedOut { .. } => "opted_out",
        }
        .to_owned(),
        total_messages: record.state.total_messages,
        reply_in_flight: record.state.in_flight.is_some(),
        suggestion: record.suggestion.map(|suggestion| SuggestionView {
            turn: suggestion.turn,
            text: suggestion.text,
            at_unix_ms: suggestion.at.0,
            message_id: suggestion.message_id,
        }),
        history: record
            .history
            .into_iter()
            .map(|entry| HistoryView {
                author: serde_json::to_value(entry.author)
                    .ok()
                    .and_then(|value| value.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                text: entry.text,
                at_unix_ms: entry.at.0,
            })
            .collect(),
        suggestions: record.counters.suggestions,
        replies_sent: record.counters.replies_sent,
    }))
}

/// Sends the pending suggestion to the contact by the conversation's agent (once per
/// suggestion, however often asked).
#[utoipa::path(post, path = "/api/conversations/{id}/ai/send", tag = "conversations",
    params(("id" = i64, Path, minimum = 1, maximum = 9223372036854775807_i64, description = "The conversation's id (a positive integer)")),
    responses((status = 200, body = AiActionOutcome), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn send_suggestion(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<AiActionOutcome>, ApiError> {
    let id = parse_id(&id)?;
    let (crm, _) = crm(&state)?;
    match crm.send_suggestion(id).await.map_err(ApiError::internal)? {
        SuggestionSent::Queued => {
            tracing::info!(target: "web", conversation = id.0, "AI suggestion sent by an operator");
            Ok(Json(AiActionOutcome {
                success: true,
                changed: true,
            }))
        }
        SuggestionSent::NonePending => Err(ApiError::StateConflict(format!(
            "conversation #{} has no pending AI suggestion",
            id.0
        ))),
        SuggestionSent::NoConversation => Err(ApiError::NotFound(format!(
            "conversation #{} does not exist or its contact cannot be addressed",
            id.0
        ))),
    }
}

/// Gives a conversation an operator took over (or a contact opted out of) back to the AI.
#[utoipa::path(post, path = "/api/conversations/{id}/ai/release", tag = "conversations",
    params(("id" = i64, Path, minimum = 1, maximum = 9223372036854775807_i64, description = "The conversation's id (a positive integer)")),
    responses((status = 200, body = AiActionOutcome), (status = 422, body = ErrorBody)))]
pub async fn release(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<AiActionOutcome>, ApiError> {
    let id = parse_id(&id)?;
    let (crm, _) = crm(&state)?;
    let changed = crm.release_ai(id).await.map_err(ApiError::internal)?;
    if changed {
        tracing::info!(target: "web", conversation = id.0, "conversation released to the AI");
    }
    Ok(Json(AiActionOutcome {
        success: true,
        changed,
    }))
}
