//! Statistics for `/api/stats`, `/metrics` and the live view.
//!
//! Durable figures (outbox counts, messages by kind, sent per agent per hour, recorded flood
//! events) come from the store. Live counters are kept here, since this process started, by one task that follows the
//! engine's events and publishes every change to the live view. The engine's event broadcast may
//! drop events for a slow subscriber; the task then notes the loss in `events_lost`, so a reader
//! knows the counters are low.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use jobbot_core::store::{OutboxKind, OutboxStatus, UnixMillis};
use jobbot_engine::{Engine, EngineClock, EngineEvent};
use serde::Serialize;
use tokio::sync::{broadcast, watch};
use utoipa::ToSchema;

use crate::AppState;
use crate::error::ApiError;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// How many hourly buckets the usage history keeps per agent.
const HOURS_KEPT: i64 = 48;

/// The counters kept since start, as the live view and `/api/stats` show them.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct CountersView {
    /// Since when these counters run (Unix ms).
    pub since_unix_ms: i64,
    pub notifications_sent: u64,
    pub auto_responses_sent: u64,
    pub flood_waits_total: u64,
    pub peer_floods_total: u64,
    /// Engine events missed by the counting task (counters are that much low).
    pub events_lost: u64,
    /// Messages that ended, by `kind` and `status`.
    pub finished: Vec<FinishedCount>,
    pub per_agent: Vec<AgentCounters>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FinishedCount {
    pub kind: String,
    pub status: String,
    pub count: u64,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct AgentCounters {
    pub session: String,
    pub sent: u64,
    pub flood_waits: u64,
    pub peer_floods: u64,
    /// The last link state seen (`ready`, `paused`, `dead`, …).
    pub state: Option<String>,
    /// Sent per hour, oldest first: `(hour start in Unix ms, count)`, the last 48 hours.
    pub sent_per_hour: Vec<(i64, u64)>,
    /// Sent per day, oldest first: `(day start in Unix ms, count)`.
    pub sent_per_day: Vec<(i64, u64)>,
}

#[derive(Default)]
struct Tally {
    since: i64,
    finished: BTreeMap<(&'static str, &'static str), u64>,
    flood_waits: u64,
    peer_floods: u64,
    events_lost: u64,
    agents: BTreeMap<String, AgentTally>,
}

#[derive(Default)]
struct AgentTally {
    sent: u64,
    flood_waits: u64,
    peer_floods: u64,
    state: Option<String>,
    sent_per_hour: BTreeMap<i64, u64>,
}

/// The counting task's output: the latest view, for readers and the live view.
#[derive(Clone)]
pub struct Counters {
    latest: watch::Receiver<Arc<CountersView>>,
}

impl Counters {
    pub fn start(engine: &Engine) -> Self {
        let clock = engine.clock();
        let tally = Tally {
            since: clock.now_unix().0,
            ..Tally::default()
        };
        let (sender, latest) = watch::channel(Arc::new(tally.view()));
        let events = engine.subscribe();
        // The task ends when the engine's event channel closes.
        tokio::spawn(count(events, clock, Mutex::new(tally), sender));
        Self { latest }
    }

    pub fn view(&self) -> Arc<CountersView> {
        self.latest.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<CountersView>> {
        self.latest.clone()
    }
}

async fn count(
    mut events: broadcast::Receiver<EngineEvent>,
    clock: EngineClock,
    tally: Mutex<Tally>,
    sender: watch::Sender<Arc<CountersView>>,
) {
    loop {
        let changed = match events.recv().await {
            Ok(event) => {
                let mut tally = tally.lock().unwrap_or_else(|p| p.into_inner());
                let changed = tally.apply(&event, clock.now_unix());
                changed.then(|| tally.view())
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                let mut tally = tally.lock().unwrap_or_else(|p| p.into_inner());
                tally.events_lost += missed;
                Some(tally.view())
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if let Some(view) = changed {
            sender.send_replace(Arc::new(view));
        }
    }
}

impl Tally {
    /// Counts one event; `false` when it changes nothing shown.
    fn apply(&mut self, event: &EngineEvent, now: UnixMillis) -> bool {
        match event {
            EngineEvent::OutboxFinished {
                kind,
                status,
                agent,
                ..
            } => {
                *self
                    .finished
                    .entry((kind.as_str(), status.as_str()))
                    .or_default() += 1;
                if *status == OutboxStatus::Sent
                    && let Some(agent) = agent
                {
                    let tally = self.agents.entry(agent.as_str().to_owned()).or_default();
                    tally.sent += 1;
                    let hour = now.0 - now.0.rem_euclid(HOUR_MS);
                    *tally.sent_per_hour.entry(hour).or_default() += 1;
                    let oldest = hour - (HOURS_KEPT - 1) * HOUR_MS;
                    tally.sent_per_hour.retain(|start, _| *start >= oldest);
                }
                true
            }
            EngineEvent::FloodWait { session, .. } => {
                self.flood_waits += 1;
                self.agents
                    .entry(session.as_str().to_owned())
                    .or_default()
                    .flood_waits += 1;
                true
            }
            EngineEvent::PeerFlood { session } => {
                self.peer_floods += 1;
                self.agents
                    .entry(session.as_str().to_owned())
                    .or_default()
                    .peer_floods += 1;
                true
            }
            EngineEvent::AgentState { session, state } => {
                let name = serde_json::to_value(state).ok().and_then(|value| {
                    value
                        .get("state")
                        .and_then(|s| s.as_str().map(str::to_owned))
                });
                self.agents
                    .entry(session.as_str().to_owned())
                    .or_default()
                    .state = name;
                true
            }
            EngineEvent::Telegram { .. } => false,
        }
    }

    fn view(&self) -> CountersView {
        let sent_of = |kind: OutboxKind| {
            self.finished
                .get(&(kind.as_str(), OutboxStatus::Sent.as_str()))
                .copied()
                .unwrap_or(0)
        };
        CountersView {
            since_unix_ms: self.since,
            notifications_sent: sent_of(OutboxKind::Notification),
            auto_responses_sent: sent_of(OutboxKind::AutoResponse),
            flood_waits_total: self.flood_waits,
            peer_floods_total: self.peer_floods,
            events_lost: self.events_lost,
            finished: self
                .finished
                .iter()
                .map(|((kind, status), count)| FinishedCount {
                    kind: (*kind).to_owned(),
                    status: (*status).to_owned(),
                    count: *count,
                })
                .collect(),
            per_agent: self
                .agents
                .iter()
                .map(|(session, tally)| {
                    let mut per_day: BTreeMap<i64, u64> = BTreeMap::new();
                    for (hour, count) in &tally.sent_per_hour {
                        *per_day.entry(hour - hour.rem_euclid(DAY_MS)).or_default() += count;
                    }
                    AgentCounters {
                        session: session.clone(),
                        sent: tally.sent,
                        flood_waits: tally.flood_waits,
                        peer_floods: tally.peer_floods,
                        state: tally.state.clone(),
                        sent_per_hour: tally.sent_per_hour.iter().map(|(h, c)| (*h, *c)).collect(),
                        sent_per_day: per_day.into_iter().collect(),
                    }
                })
                .collect(),
        }
    }
}

/// `/api/stats`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
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
    /// Since this process started.
    pub flood_waits_total: u64,
    pub peer_floods_total: u64,
    /// Counters since start (live), with usage per agent over time.
    pub counters: CountersView,
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
    let counters = (*state.inner.counters.view()).clone();
    Ok(Json(Stats {
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
        flood_waits_total: counters.flood_waits_total,
        peer_floods_total: counters.peer_floods_total,
        counters,
        tasks: state.tasks(),
    }))
}

/// Prometheus text format: outbox messages by status, messages finished by kind and status,
/// per-agent sent counters and link-state gauges, flood waits.
#[utoipa::path(get, path = "/metrics", tag = "status",
    responses((status = 200, content_type = "text/plain", description = "Prometheus text exposition format 0.0.4")))]
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let counts = state.inner.engine.store().outbox_counts().await?;
    let agents = state.inner.engine.agents().await?;
    let counters = state.inner.counters.view();
    let mut text = String::new();
    family(
        &mut text,
        "jobbot_outbox_messages",
        "gauge",
        "Outbox messages by status (from the store).",
    );
    for (status, value) in [
        ("pending", counts.pending),
        ("sent", counts.sent),
        ("failed", counts.failed),
        ("expired", counts.expired),
    ] {
        let _ = writeln!(
            text,
            "jobbot_outbox_messages{{status=\"{status}\"}} {value}"
        );
    }
    let _ = writeln!(
        text,
        "# HELP jobbot_outbox_finished_total Messages that ended since start, by kind and status.\n# TYPE jobbot_outbox_finished_total counter"
    );
    for finished in &counters.finished {
        let _ = writeln!(
            text,
            "jobbot_outbox_finished_total{{kind=\"{}\",status=\"{}\"}} {}",
            finished.kind, finished.status, finished.count
        );
    }
    let _ = writeln!(
        text,
        "# HELP jobbot_flood_waits_total Flood waits Telegram gave any account since start.\n# TYPE jobbot_flood_waits_total counter\njobbot_flood_waits_total {}",
        counters.flood_waits_total
    );
    let _ = writeln!(
        text,
        "# HELP jobbot_peer_floods_total PEER_FLOOD limits since start.\n# TYPE jobbot_peer_floods_total counter\njobbot_peer_floods_total {}",
        counters.peer_floods_total
    );
    let _ = writeln!(
        text,
        "# HELP jobbot_agent_sent_total Messages an agent sent since start.\n# TYPE jobbot_agent_sent_total counter"
    );
    for agent in &counters.per_agent {
        let _ = writeln!(
            text,
            "jobbot_agent_sent_total{{session=\"{}\"}} {}",
            agent.session, agent.sent
        );
    }
    let _ = writeln!(
        text,
        "# HELP jobbot_agent_flood_waits_total Flood waits per agent since start.\n# TYPE jobbot_agent_flood_waits_total counter"
    );
    for agent in &counters.per_agent {
        let _ = writeln!(
            text,
            "jobbot_agent_flood_waits_total{{session=\"{}\"}} {}",
            agent.session, agent.flood_waits
        );
    }
    let _ = writeln!(
        text,
        "# HELP jobbot_agent_state 1 for the link state each agent is in.\n# TYPE jobbot_agent_state gauge"
    );
    for agent in &agents {
        let state = serde_json::to_value(&agent.link)
            .ok()
            .and_then(|v| v.get("state").and_then(|s| s.as_str().map(str::to_owned)))
            .unwrap_or_default();
        // Session names are letters, digits, '_' and '-': nothing to escape in a label.
        let _ = writeln!(
            text,
            "jobbot_agent_state{{session=\"{}\",state=\"{state}\"}} 1",
            agent.session
        );
    }
    let _ = writeln!(
        text,
        "# HELP jobbot_agent_sent_last_hour Messages an agent sent in the last hour (scheduler's view).\n# TYPE jobbot_agent_sent_last_hour gauge"
    );
    for agent in &agents {
        let _ = writeln!(
            text,
            "jobbot_agent_sent_last_hour{{session=\"{}\"}} {}",
            agent.session, agent.scheduling.sent_last_hour
        );
    }
    let tasks = state.tasks();
    family(
        &mut text,
        "jobbot_task_up",
        "gauge",
        "1 while a supervised background task runs, 0 while it restarts or after it failed.",
    );
    for task in &tasks {
        let up = u8::from(task.state == jobbot_engine::supervisor::TaskState::Running);
        let _ = writeln!(text, "jobbot_task_up{{task=\"{}\"}} {up}", task.name);
    }
    family(
        &mut text,
        "jobbot_task_restarts_total",
        "counter",
        "Restarts of a supervised background task after a failure, since start.",
    );
    for task in &tasks {
        let _ = writeln!(
            text,
            "jobbot_task_restarts_total{{task=\"{}\"}} {}",
            task.name, task.restarts
        );
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    ))
}

fn family(text: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
}
