//! `/api/stats`: configuration totals, and what happened, from where it is known for certain.
//!
//! Durable figures (outbox counts, messages by kind and status, sent per agent per hour and day,
//! recorded agent events) come from the store. The totals since start (flood waits, PEER_FLOOD)
//! are the engine's counters, incremented where Telegram answered ([`jobbot_engine::EngineMetrics`]).
//! Nothing here is counted from the engine's lossy event feed.

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::extract::State;
use jobbot_core::store::{OutboxKind, OutboxStatus, UnixMillis};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::ApiError;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FinishedCount {
    pub kind: String,
    pub status: String,
    pub count: u64,
}

/// `/api/stats`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    pub success: bool,
    pub revision: String,
    pub total_channels: usize,
    pub enabled_channels: usize,
    /// Distinct sources over every channel.
    pub total_input_sources: usize,
    /// Distinct agent sessions over every channel.
    pub total_agents: usize,
    pub crm_enabled_channels: usize,
    pub channels_breakdown: Vec<ChannelBreakdown>,
    /// Outbox messages by status, from the store (all time).
    pub outbox: OutboxCountsView,
    /// Notifications and auto-responses sent, all time (from the store).
    pub notifications_sent: u64,
    pub auto_responses_sent: u64,
    /// Messages by kind and final status, all time (from the store).
    pub by_kind_and_status: Vec<FinishedCount>,
    /// Sent per agent per hour over the last 7 days (from the store), oldest first.
    pub sent_per_agent_hour: Vec<AgentHour>,
    /// Sent per agent per day over the last 7 days.
    pub sent_per_agent_day: Vec<AgentHour>,
    /// Agent events recorded over the last 7 days, newest first: flood waits (`seconds`),
    /// `PEER_FLOOD` limits, deaths (`reason`) and reconnects, each with `agent`, `kind` and `at`.
    #[schema(value_type = Vec<Object>)]
    pub flood_events: Vec<serde_json::Value>,
    /// The process's background tasks: `name`, `state` (`running`, `restarting`, `stopped`,
    /// `failed`), `restarts` and the last failure.
    #[schema(value_type = Vec<Object>)]
    pub tasks: Vec<jobbot_engine::supervisor::TaskStatus>,
    /// Flood waits Telegram gave any account since this process started.
    pub flood_waits_total: u64,
    /// PEER_FLOOD limits since this process started.
    pub peer_floods_total: u64,
    /// AI suggestions posted for operators, all time (from the conversations' AI records).
    pub ai_suggestions: u64,
    /// AI replies that reached contacts (`auto`, or a suggestion an operator sent), all time.
    pub ai_replies_sent: u64,
    /// The AI per channel: conversations, suggestions, replies sent, tokens and failed calls.
    pub ai_channels: Vec<AiChannelView>,
}

/// One channel's AI, all time.
#[derive(Debug, Serialize, ToSchema)]
pub struct AiChannelView {
    pub channel_id: String,
    pub conversations: u64,
    pub suggestions: u64,
    pub replies_sent: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Model calls that failed after every retry and fallback.
    pub errors: u64,
}

/// The AI's counters per channel (none when the process runs no AI).
pub(crate) async fn ai_channels(state: &AppState) -> Result<Vec<AiChannelView>, ApiError> {
    let Some(store) = state.ai_store() else {
        return Ok(Vec::new());
    };
    Ok(store
        .ai_stats()
        .await?
        .into_iter()
        .map(|stats| AiChannelView {
            channel_id: stats.channel_id,
            conversations: stats.conversations,
            suggestions: stats.counters.suggestions,
            replies_sent: stats.counters.replies_sent,
            prompt_tokens: stats.counters.prompt_tokens,
            completion_tokens: stats.counters.completion_tokens,
            errors: stats.counters.errors,
        })
        .collect())
}

/// Messages an agent sent in one hour (or day) starting at `start_unix_ms`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentHour {
    pub session: String,
    pub start_unix_ms: i64,
    pub sent: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelBreakdown {
    pub id: String,
    pub name: String,
    pub sources_count: usize,
    pub enabled: bool,
    pub crm_enabled: bool,
    pub agents_count: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OutboxCountsView {
    pub pending: u64,
    pub sent: u64,
    pub failed: u64,
    pub expired: u64,
}

/// Configuration totals, outbox counts, notifications and auto-responses sent, flood events, and
/// messages sent per agent per hour and day.
#[utoipa::path(get, path = "/api/stats", tag = "status",
    responses((status = 200, body = Stats)))]
pub async fn stats(State(state): State<AppState>) -> Result<Json<Stats>, ApiError> {
    let snapshot = state.inner.config.snapshot();
    let channels = &snapshot.document.output_channels;
    let sources: BTreeSet<&str> = channels
        .iter()
        .flat_map(|c| c.input_sources.iter().map(String::as_str))
        .collect();
    let agents: BTreeSet<&str> = channels
        .iter()
        .flat_map(|c| c.agents.iter().map(|a| a.session_name.as_str()))
        .collect();
    let store = state.inner.engine.store();
    let counts = store.outbox_counts().await?;
    let totals = store.outbox_stats(UnixMillis(0)).await?;
    let week_ago = UnixMillis(state.inner.engine.clock().now_unix().0 - 7 * DAY_MS);
    let flood_events = store
        .agent_events(week_ago, 500)
        .await?
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()
        .map_err(ApiError::internal)?;
    let sent_of = |wanted: OutboxKind| {
        totals
            .by_kind_and_status
            .iter()
            .filter(|(kind, status, _)| *kind == wanted && *status == OutboxStatus::Sent)
            .map(|(_, _, count)| count)
            .sum::<u64>()
    };
    let hours: Vec<AgentHour> = totals
        .sent_per_agent_hour
        .iter()
        .filter(|(_, hour, _)| *hour >= week_ago)
        .map(|(session, hour, sent)| AgentHour {
            session: session.as_str().to_owned(),
            start_unix_ms: hour.0,
            sent: *sent,
        })
        .collect();
    let mut days: BTreeMap<(i64, String), u64> = BTreeMap::new();
    for hour in &hours {
        let day = hour.start_unix_ms - hour.start_unix_ms.rem_euclid(DAY_MS);
        *days.entry((day, hour.session.clone())).or_default() += hour.sent;
    }
    let metrics = state.inner.engine.metrics();
    let ai_channels = ai_channels(&state).await?;
    Ok(Json(Stats {
        ai_suggestions: ai_channels.iter().map(|c| c.suggestions).sum(),
        ai_replies_sent: ai_channels.iter().map(|c| c.replies_sent).sum(),
        ai_channels,
        success: true,
        revision: snapshot.revision.to_string(),
        total_channels: channels.len(),
        enabled_channels: channels.iter().filter(|c| c.enabled).count(),
        total_input_sources: sources.len(),
        total_agents: agents.len(),
        crm_enabled_channels: channels.iter().filter(|c| c.crm_enabled).count(),
        channels_breakdown: channels
            .iter()
            .map(|c| ChannelBreakdown {
                id: c.id.clone(),
                name: c.name.clone(),
                sources_count: c.input_sources.len(),
                enabled: c.enabled,
                crm_enabled: c.crm_enabled,
                agents_count: c.agents.len(),
            })
            .collect(),
        outbox: OutboxCountsView {
            pending: counts.pending,
            sent: counts.sent,
            failed: counts.failed,
            expired: counts.expired,
        },
        notifications_sent: sent_of(OutboxKind::Notification),
        auto_responses_sent: sent_of(OutboxKind::AutoResponse),
        by_kind_and_status: totals
            .by_kind_and_status
            .iter()
            .map(|(kind, status, count)| FinishedCount {
                kind: kind.as_str().to_owned(),
                status: status.as_str().to_owned(),
                count: *count,
            })
            .collect(),
        sent_per_agent_hour: hours,
        sent_per_agent_day: days
            .into_iter()
            .map(|((day, session), sent)| AgentHour {
                session,
                start_unix_ms: day,
                sent,
            })
            .collect(),
        flood_events,
        flood_waits_total: metrics.flood_waits_total.get(),
        peer_floods_total: metrics.peer_floods_total.get(),
        tasks: state.tasks(),
    }))
}
