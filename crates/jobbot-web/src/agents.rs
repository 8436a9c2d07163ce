//! Agent accounts across channels, and pausing or resuming them.
//!
//! Pausing is an operation on the running engine, not a configuration change: a paused agent
//! disconnects and releases its session (so it can be logged in again, for example) until it is
//! resumed or the process restarts.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use jobbot_core::ids::SessionName;
use jobbot_engine::LinkState;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::AppState;
use crate::constraints::{self, Checks};
use crate::error::{ApiError, ErrorBody, Problem, Reason};
use crate::json::ApiJson;

/// An agent account: its configuration and, while the engine runs it, its live state.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentSummary {
    pub session_name: String,
    /// As configured (the first channel's entry when channels disagree).
    pub phone: Option<String>,
    /// The channels that list it, enabled or not.
    pub channels: Vec<String>,
    /// The engine's view: link state, flood wait, pacing headroom, sent in the last minute /
    /// hour / day, last error. `null` when the engine does not run it (only disabled channels
    /// list it).
    #[schema(value_type = Option<Object>)]
    pub live: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentsList {
    pub success: bool,
    pub agents: Vec<AgentSummary>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionsRequest {
    /// At least one session name.
    #[schema(schema_with = crate::constraints::session_names_schema)]
    pub sessions: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionsOutcome {
    pub success: bool,
    /// The sessions the engine runs, now paused (or resumed).
    pub affected: Vec<String>,
    /// Sessions the engine does not run (not configured, or only in disabled channels).
    pub unknown: Vec<String>,
}

/// Every agent with its channels and live state.
#[utoipa::path(get, path = "/api/agents", tag = "agents",
    responses((status = 200, body = AgentsList)))]
pub async fn list_agents(State(state): State<AppState>) -> Result<Json<AgentsList>, ApiError> {
    let snapshot = state.inner.config.snapshot();
    let mut agents: BTreeMap<String, AgentSummary> = BTreeMap::new();
    for channel in &snapshot.document.output_channels {
        for agent in &channel.agents {
            let summary =
                agents
                    .entry(agent.session_name.clone())
                    .or_insert_with(|| AgentSummary {
                        session_name: agent.session_name.clone(),
                        // `None` is "phone missing" (the original wizard's `"phone": ""`).
                        phone: Some(agent.phone.clone()).filter(|phone| !phone.is_empty()),
                        channels: Vec::new(),
                        live: None,
                    });
            summary.channels.push(channel.id.clone());
        }
    }
    for view in state.inner.engine.agents().await? {
        let name = view.session.as_str().to_owned();
        let live = serde_json::to_value(&view).map_err(ApiError::internal)?;
        agents
            .entry(name.clone())
            .or_insert_with(|| AgentSummary {
                session_name: name,
                phone: None,
                channels: Vec::new(),
                live: None,
            })
            .live = Some(live);
    }
    Ok(Json(AgentsList {
        success: true,
        agents: agents.into_values().collect(),
    }))
}

/// Pauses agents: each disconnects and releases its session; its queued messages wait or go to
/// other agents.
#[utoipa::path(post, path = "/api/agents/pause", tag = "agents", request_body = SessionsRequest,
    responses((status = 200, body = SessionsOutcome), (status = 422, body = ErrorBody)))]
pub async fn pause_agents(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<SessionsRequest>,
) -> Result<Json<SessionsOutcome>, ApiError> {
    let sessions = parse_sessions(&body.sessions)?;
    let affected = state.inner.engine.pause_agents(sessions.clone()).await?;
    tracing::info!(target: "web", count = affected.len(), "agents paused through the API");
    Ok(Json(outcome(sessions, affected)))
}

/// Resumes paused agents.
#[utoipa::path(post, path = "/api/agents/resume", tag = "agents", request_body = SessionsRequest,
    responses((status = 200, body = SessionsOutcome), (status = 422, body = ErrorBody)))]
pub async fn resume_agents(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<SessionsRequest>,
) -> Result<Json<SessionsOutcome>, ApiError> {
    let sessions = parse_sessions(&body.sessions)?;
    let affected = state.inner.engine.resume_agents(sessions.clone()).await?;
    tracing::info!(target: "web", count = affected.len(), "agents resumed through the API");
    Ok(Json(outcome(sessions, affected)))
}

fn parse_sessions(sessions: &[String]) -> Result<Vec<SessionName>, ApiError> {
    let mut checks = Checks::new();
    if sessions.is_empty() {
        checks.add(Problem::because("sessions", Reason::Required));
    }
    checks.each("sessions", sessions, constraints::SESSION_NAME);
    checks.finish()?;
    Ok(sessions
        .iter()
        .filter_map(|session| SessionName::parse(session).ok())
        .collect())
}

fn outcome(requested: Vec<SessionName>, affected: Vec<SessionName>) -> SessionsOutcome {
    SessionsOutcome {
        success: true,
        unknown: requested
            .iter()
            .filter(|session| !affected.contains(session))
            .map(|session| session.as_str().to_owned())
            .collect(),
        affected: affected
            .iter()
            .map(|session| session.as_str().to_owned())
            .collect(),
    }
}

/// The name of a link state (`ready`, `paused`, …), as its JSON `state` field says it.
pub(crate) fn link_state_name(link: &LinkState) -> &'static str {
    match link {
        LinkState::Connecting => "connecting",
        LinkState::Ready { .. } => "ready",
        LinkState::Disconnected { .. } => "disconnected",
        LinkState::NotLoggedIn => "not_logged_in",
        LinkState::Dead { .. } => "dead",
        LinkState::Paused => "paused",
        LinkState::ElsewhereInCluster => "elsewhere_in_cluster",
        LinkState::Stopped => "stopped",
    }
}
