//! The CRM conversations' AI (#17 item 6): the latest ones (`GET /api/conversations`); one
//! conversation's phase, who answers, the history the model sees and the pending suggestion
//! (`GET /api/conversations/{id}/ai`); the operator's two actions on it:
//! send the suggestion (`POST …/ai/send`, what "+" in the topic does) and give a handed-over
//! conversation back to the AI (`POST …/ai/release`).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use jobbot_core::ai::{AiControl, AiStore, StoredAi};
use jobbot_core::store::{Conversation, ConversationId};
use jobbot_engine::{CrmHandle, SuggestionSent};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::{ApiError, ErrorBody};

/// Who a conversation is with and which agent talks to them (absent when the conversation's
/// record is gone).
#[derive(Debug, Serialize, ToSchema)]
pub struct ContactView {
    pub name: String,
    /// Without `@`.
    pub username: Option<String>,
    /// The agent account (session name) that talks to the contact.
    pub agent: String,
    /// The conversation's topic in the CRM group, once created.
    pub topic: Option<i32>,
}

impl ContactView {
    fn of(conversation: &Conversation) -> Self {
        Self {
            name: conversation.contact_name.clone(),
            username: conversation
                .contact_username
                .as_ref()
                .map(|username| username.as_str().to_owned()),
            agent: conversation.agent.as_str().to_owned(),
            topic: conversation.topic.map(|topic| topic.0),
        }
    }
}

/// One conversation in the list.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationSummary {
    pub conversation: i64,
    pub channel_id: String,
    pub contact: Option<ContactView>,
    /// `discovery`, `engagement`, `call_ready`, `call_pending` or `call_declined`.
    pub phase: String,
    /// `active` (the AI answers in the channel's mode), `handed_over` (an operator answers)
    /// or `opted_out` (the contact asked not to be written to).
    pub control: String,
    pub total_messages: u32,
    /// A suggestion waits for an operator.
    pub suggestion_pending: bool,
    pub suggestions: u64,
    pub replies_sent: u64,
    pub updated_at_unix_ms: i64,
}

/// `GET /api/conversations`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationList {
    pub success: bool,
    pub conversations: Vec<ConversationSummary>,
}

/// Filters of the list, all optional.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConversationFilters {
    /// Only this output channel's conversations.
    #[param(value_type = String, required = false)]
    pub channel_id: Option<String>,
    /// 1 to 500; 50 when absent.
    #[param(value_type = u32, required = false, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
}

fn control_name(control: &AiControl) -> &'static str {
    match control {
        AiControl::Active => "active",
        AiControl::HandedOver { .. } => "handed_over",
        AiControl::OptedOut { .. } => "opted_out",
    }
}

/// The conversations whose AI changed last, newest first, with their contacts.
#[utoipa::path(get, path = "/api/conversations", tag = "conversations", params(ConversationFilters),
    responses((status = 200, body = ConversationList), (status = 422, body = ErrorBody)))]
pub async fn list_conversations(
    State(state): State<AppState>,
    filters: Result<Query<ConversationFilters>, QueryRejection>,
) -> Result<Json<ConversationList>, ApiError> {
    let Query(filters) = filters.map_err(crate::json::query_error)?;
    let mut problems = Vec::new();
    let limit = crate::vacancies::page_limit(&mut problems, filters.limit.as_deref());
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }
    let (_, ai) = crm(&state)?;
    let channel = filters.channel_id.filter(|id| !id.is_empty());
    let records = ai.recent_ai_records(channel.as_deref(), limit).await?;
    let store = state.inner.engine.store();
    let mut conversations = Vec::with_capacity(records.len());
    for stored in records {
        let contact = store.conversation(stored.conversation).await?;
        conversations.push(summary(stored, contact.as_ref()));
    }
    Ok(Json(ConversationList {
        success: true,
        conversations,
    }))
}

fn summary(stored: StoredAi, contact: Option<&Conversation>) -> ConversationSummary {
    let record = &stored.record;
    ConversationSummary {
        conversation: stored.conversation.0,
        channel_id: stored.channel_id,
        contact: contact.map(ContactView::of),
        phase: record.state.phase.as_str().to_owned(),
        control: control_name(&record.state.control).to_owned(),
        total_messages: record.state.total_messages,
        suggestion_pending: record.suggestion.is_some(),
        suggestions: record.counters.suggestions,
        replies_sent: record.counters.replies_sent,
        updated_at_unix_ms: stored.updated_at.0,
    }
}

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

/// `GET /api/conversations/{id}/ai`: what the list shows, and the rest.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationAi {
    pub success: bool,
    #[serde(flatten)]
    pub summary: ConversationSummary,
    pub reply_in_flight: bool,
    pub suggestion: Option<SuggestionView>,
    pub history: Vec<HistoryView>,
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
    let contact = state.inner.engine.store().conversation(id).await?;
    let record = stored.record.clone();
    Ok(Json(ConversationAi {
        success: true,
        summary: summary(stored, contact.as_ref()),
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
