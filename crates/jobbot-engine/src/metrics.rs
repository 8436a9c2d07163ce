//! What the engine counts, where it happens: each counter is incremented by the code that does
//! the thing (the dispatcher when a message ends, when Telegram answers with a flood wait), never
//! reconstructed from the lossy event feed. Durable figures (outbox by status, sent per agent
//! and hour) come from the store, not from here.
//!
//! The families are created with the engine ([`EngineSettings::metrics`]) and registered into the
//! process's Prometheus registry by whoever serves `/metrics` ([`EngineMetrics::register`]). A
//! new engine metric is a field here, one line in `register`, and an increment at its source.
//!
//! [`EngineSettings::metrics`]: crate::EngineSettings

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use jobbot_core::ids::SessionName;
use jobbot_core::scheduling::CallClass;
use jobbot_core::store::{OutboxKind, OutboxStatus};

/// An agent account's label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SessionLabels {
    pub session: String,
}

/// An account and a class of rate-limited call (`jobbot_core::scheduling::CallClass`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CallLabels {
    pub session: String,
    pub class: String,
}

/// A finished message's labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct FinishedLabels {
    pub kind: String,
    pub status: String,
}

/// The engine's counters since this process started.
#[derive(Debug, Default)]
pub struct EngineMetrics {
    /// Outbox messages that ended, by kind and final status.
    pub messages_finished: Family<FinishedLabels, Counter>,
    /// Messages each agent account sent.
    pub agent_sent: Family<SessionLabels, Counter>,
    /// Flood waits Telegram gave each account, every method.
    pub flood_waits: Family<SessionLabels, Counter>,
    /// Flood waits by account and class of call (sends, resolves, joins, topic creation).
    pub call_flood_waits: Family<CallLabels, Counter>,
    /// PEER_FLOOD limits Telegram gave each account.
    pub peer_floods: Family<SessionLabels, Counter>,
    /// Flood waits over every account (what `/api/stats` shows as since start).
    pub flood_waits_total: Counter,
    pub peer_floods_total: Counter,
}

impl EngineMetrics {
    /// Registers every family under the registry's prefix (`jobbot_` in the binary).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "outbox_finished",
            "Outbox messages that ended since start, by kind and status",
            self.messages_finished.clone(),
        );
        registry.register(
            "agent_sent",
            "Messages an agent account sent since start",
            self.agent_sent.clone(),
        );
        registry.register(
            "agent_flood_waits",
            "Flood waits Telegram gave an account since start",
            self.flood_waits.clone(),
        );
        registry.register(
            "agent_call_flood_waits",
            "Flood waits Telegram gave an account since start, by class of call",
            self.call_flood_waits.clone(),
        );
        registry.register(
            "agent_peer_floods",
            "PEER_FLOOD limits Telegram gave an account since start",
            self.peer_floods.clone(),
        );
        registry.register(
            "flood_waits",
            "Flood waits over every account since start",
            self.flood_waits_total.clone(),
        );
        registry.register(
            "peer_floods",
            "PEER_FLOOD limits over every account since start",
            self.peer_floods_total.clone(),
        );
    }

    pub(crate) fn finished(
        &self,
        kind: OutboxKind,
        status: OutboxStatus,
        agent: Option<&SessionName>,
    ) {
        self.messages_finished
            .get_or_create(&FinishedLabels {
                kind: kind.as_str().to_owned(),
                status: status.as_str().to_owned(),
            })
            .inc();
        if status == OutboxStatus::Sent
            && let Some(agent) = agent
        {
            self.agent_sent.get_or_create(&session(agent)).inc();
        }
    }

    pub(crate) fn flood_wait(&self, agent: &SessionName) {
        self.flood_waits.get_or_create(&session(agent)).inc();
        self.flood_waits_total.inc();
    }

    pub(crate) fn call_flood_wait(&self, agent: &SessionName, class: CallClass) {
        self.call_flood_waits
            .get_or_create(&CallLabels {
                session: agent.as_str().to_owned(),
                class: class.as_str().to_owned(),
            })
            .inc();
    }

    pub(crate) fn peer_flood(&self, agent: &SessionName) {
        self.peer_floods.get_or_create(&session(agent)).inc();
        self.peer_floods_total.inc();
    }
}

fn session(agent: &SessionName) -> SessionLabels {
    SessionLabels {
        session: agent.as_str().to_owned(),
    }
}
