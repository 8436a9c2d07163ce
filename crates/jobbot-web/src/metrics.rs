//! `/metrics`: Prometheus metrics through `prometheus-client`, one registry for the process.
//!
//! - Counters are incremented where the thing happens, by the component that does it: the
//!   engine's families ([`jobbot_engine::EngineMetrics`]: messages finished, sent per agent,
//!   flood waits) and the web's own ([`WebMetrics`]: connections, refusals, authentication
//!   failures). Nothing is counted from the engine's lossy event feed.
//! - Gauges of durable or current state ([`StateGauges`]: outbox messages by status from the
//!   store, each agent's link state, sends in the last hour and learned limits from the engine's
//!   status) are read when `/metrics` is scraped.
//!
//! The registry is built by whoever starts the web ([`crate::WebSettings::registry`], prefix
//! `jobbot`) so that other components register their families in it first; the web adds the
//! engine's and its own. Adding a metric is a field in its component's struct, one `register`
//! line, and an increment at its source (or a `set` in [`StateGauges::refresh`] for a gauge
//! read from state).

use std::sync::atomic::AtomicU64;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use jobbot_engine::metrics::CallLabels;

use crate::AppState;
use crate::error::ApiError;

/// The content type of the OpenMetrics text format `prometheus-client` writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How a request tried to authenticate.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct MethodLabels {
    /// `password` (the admin login) or `bearer` (an API token).
    pub method: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct AgentStateLabels {
    pub session: String,
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ChannelLabels {
    pub channel: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SessionLabels {
    pub session: String,
}

/// What the web server counts, where it happens.
#[derive(Debug, Default)]
pub struct WebMetrics {
    pub connections_open: Gauge,
    /// Connections refused with 503 because the server was at its connection cap.
    pub connections_refused: Counter,
    pub websockets_open: Gauge,
    pub websockets_refused: Counter,
    /// Failed admin logins and unknown bearer tokens.
    pub auth_failures: Family<MethodLabels, Counter>,
    /// Attempts refused with 429 because their client had failed too often.
    pub auth_limited: Family<MethodLabels, Counter>,
}

impl WebMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "http_connections_open",
            "HTTP connections being served",
            self.connections_open.clone(),
        );
        registry.register(
            "http_connections_refused",
            "Connections refused at the connection cap",
            self.connections_refused.clone(),
        );
        registry.register(
            "websockets_open",
            "Live WebSockets open",
            self.websockets_open.clone(),
        );
        registry.register(
            "websockets_refused",
            "WebSockets refused at their cap",
            self.websockets_refused.clone(),
        );
        registry.register(
            "auth_failures",
            "Failed admin logins and unknown API tokens",
            self.auth_failures.clone(),
        );
        registry.register(
            "auth_limited",
            "Authentication attempts refused because the client failed too often",
            self.auth_limited.clone(),
        );
    }

    pub(crate) fn auth_failure(&self, method: &str) {
        self.auth_failures
            .get_or_create(&MethodLabels {
                method: method.to_owned(),
            })
            .inc();
    }

    pub(crate) fn auth_limit(&self, method: &str) {
        self.auth_limited
            .get_or_create(&MethodLabels {
                method: method.to_owned(),
            })
            .inc();
    }
}

/// Gauges set from state when `/metrics` is scraped.
#[derive(Debug, Default)]
pub struct StateGauges {
    /// Outbox messages by status, all time (from the store).
    outbox_messages: Family<StatusLabels, Gauge>,
    /// 1 for the link state each agent is in (from the engine's status).
    agent_state: Family<AgentStateLabels, Gauge>,
    /// Messages each agent sent in the last hour (the scheduler's view).
    agent_sent_last_hour: Family<SessionLabels, Gauge>,
    /// The sendMessage rate each agent is paced at, as learned (messages per minute).
    agent_learned_messages_per_minute: Family<SessionLabels, Gauge<f64, AtomicU64>>,
    /// The daily budget of first messages each agent keeps to, as learned.
    agent_learned_first_messages_per_day: Family<SessionLabels, Gauge>,
    /// Every class of call's learned rate per agent (calls per minute).
    agent_learned_calls_per_minute: Family<CallLabels, Gauge<f64, AtomicU64>>,
    /// Every class of call's ceiling per agent (calls per minute).
    agent_call_ceiling_per_minute: Family<CallLabels, Gauge<f64, AtomicU64>>,
    /// The AI per channel, all time (from the conversations' AI records).
    ai_suggestions: Family<ChannelLabels, Gauge>,
    ai_replies_sent: Family<ChannelLabels, Gauge>,
    ai_prompt_tokens: Family<ChannelLabels, Gauge>,
    ai_completion_tokens: Family<ChannelLabels, Gauge>,
    ai_errors: Family<ChannelLabels, Gauge>,
}

impl StateGauges {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "outbox_messages",
            "Outbox messages by status (from the store)",
            self.outbox_messages.clone(),
        );
        registry.register(
            "agent_state",
            "1 for the link state each agent is in",
            self.agent_state.clone(),
        );
        registry.register(
            "agent_sent_last_hour",
            "Messages an agent sent in the last hour (the scheduler's view)",
            self.agent_sent_last_hour.clone(),
        );
        registry.register(
            "agent_learned_messages_per_minute",
            "The sendMessage rate an agent is paced at, learned from flood waits (never above the configured one)",
            self.agent_learned_messages_per_minute.clone(),
        );
        registry.register(
            "agent_learned_first_messages_per_day",
            "The daily budget of first messages an agent keeps to, learned from PEER_FLOOD",
            self.agent_learned_first_messages_per_day.clone(),
        );
        registry.register(
            "agent_learned_calls_per_minute",
            "The rate an agent's calls of each class (send_message, resolve_username, join_channel, create_forum_topic) are paced at, learned from flood waits",
            self.agent_learned_calls_per_minute.clone(),
        );
        registry.register(
            "agent_call_ceiling_per_minute",
            "The ceiling of each class of call's rate per agent: the configured pacing for sends, jobbot's conservative defaults for the others",
            self.agent_call_ceiling_per_minute.clone(),
        );
        for (name, help, family) in [
            (
                "ai_suggestions",
                "AI suggestions posted for operators per channel, all time",
                &self.ai_suggestions,
            ),
            (
                "ai_replies_sent",
                "AI replies that reached contacts per channel, all time",
                &self.ai_replies_sent,
            ),
            (
                "ai_prompt_tokens",
                "Prompt tokens the AI used per channel, all time",
                &self.ai_prompt_tokens,
            ),
            (
                "ai_completion_tokens",
                "Completion tokens the AI used per channel, all time",
                &self.ai_completion_tokens,
            ),
            (
                "ai_errors",
                "AI model calls that failed after every retry and fallback per channel, all time",
                &self.ai_errors,
            ),
        ] {
            registry.register(name, help, family.clone());
        }
    }

    /// Reads the store and the engine's status into the gauges. Agents that left the
    /// configuration leave the gauges too.
    async fn refresh(&self, state: &AppState) -> Result<(), ApiError> {
        let counts = state.inner.engine.store().outbox_counts().await?;
        let agents = state.inner.engine.agents().await?;
        for (status, value) in [
            ("pending", counts.pending),
            ("sent", counts.sent),
            ("failed", counts.failed),
            ("expired", counts.expired),
        ] {
            self.outbox_messages
                .get_or_create(&StatusLabels {
                    status: status.to_owned(),
                })
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        }
        self.agent_state.clear();
        self.agent_sent_last_hour.clear();
        self.agent_learned_messages_per_minute.clear();
        self.agent_learned_first_messages_per_day.clear();
        self.agent_learned_calls_per_minute.clear();
        self.agent_call_ceiling_per_minute.clear();
        for channel in crate::stats::ai_channels(state).await? {
            let labels = ChannelLabels {
                channel: channel.channel_id,
            };
            for (family, value) in [
                (&self.ai_suggestions, channel.suggestions),
                (&self.ai_replies_sent, channel.replies_sent),
                (&self.ai_prompt_tokens, channel.prompt_tokens),
                (&self.ai_completion_tokens, channel.completion_tokens),
                (&self.ai_errors, channel.errors),
            ] {
                family
                    .get_or_create(&labels)
                    .set(i64::try_from(value).unwrap_or(i64::MAX));
            }
        }
        for agent in &agents {
            for call in &agent.scheduling.calls {
                let labels = CallLabels {
                    session: agent.session.as_str().to_owned(),
                    class: call.class.as_str().to_owned(),
                };
                self.agent_learned_calls_per_minute
                    .get_or_create(&labels)
                    .set(f64::from(call.learned_milli_per_minute) / 1_000.0);
                self.agent_call_ceiling_per_minute
                    .get_or_create(&labels)
                    .set(f64::from(call.ceiling_milli_per_minute) / 1_000.0);
            }
            let labels = SessionLabels {
                session: agent.session.as_str().to_owned(),
            };
            self.agent_learned_messages_per_minute
                .get_or_create(&labels)
                .set(f64::from(agent.scheduling.learned_milli_per_minute) / 1_000.0);
            self.agent_learned_first_messages_per_day
                .get_or_create(&labels)
                .set(i64::from(agent.scheduling.cold_dms_per_day));
            let session = agent.session.as_str().to_owned();
            self.agent_state
                .get_or_create(&AgentStateLabels {
                    session: session.clone(),
                    state: crate::agents::link_state_name(&agent.link).to_owned(),
                })
                .set(1);
            self.agent_sent_last_hour
                .get_or_create(&SessionLabels { session })
                .set(i64::from(agent.scheduling.sent_last_hour));
        }
        Ok(())
    }
}

/// Prometheus metrics in the OpenMetrics text format: counters since start (messages finished
/// by kind and status, sent, flood waits and PEER_FLOOD per agent, connections and
/// authentication failures) and gauges of the current state (outbox by status, agent link
/// states, sent in the last hour).
#[utoipa::path(get, path = "/metrics", tag = "status",
    responses((status = 200, content_type = "application/openmetrics-text", body = String,
               description = "OpenMetrics text format 1.0.0")))]
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let metrics = &state.inner.metrics;
    // One scrape at a time: each clears and refills the state gauges.
    let _scrape = metrics.scrape.lock().await;
    metrics.gauges.refresh(&state).await?;
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &metrics.registry)
        .map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text))
}

/// The process's registry with the web's families, and what a scrape needs.
pub(crate) struct Metrics {
    pub registry: Registry,
    pub web: std::sync::Arc<WebMetrics>,
    gauges: StateGauges,
    scrape: tokio::sync::Mutex<()>,
}

impl Metrics {
    /// Registers the engine's and the web's families into `registry`.
    pub fn new(mut registry: Registry, engine: &jobbot_engine::EngineMetrics) -> Self {
        let web = std::sync::Arc::new(WebMetrics::default());
        let gauges = StateGauges::default();
        engine.register(&mut registry);
        web.register(&mut registry);
        gauges.register(&mut registry);
        Self {
            registry,
            web,
            gauges,
            scrape: tokio::sync::Mutex::new(()),
        }
    }
}
