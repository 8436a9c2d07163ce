//! What the engine tells the rest of the process (the web's live view, the monitor, the CRM).

use jobbot_core::ids::SessionName;
use jobbot_core::store::{OutboxId, OutboxKind, OutboxStatus};
use jobbot_core::telegram::AccountEvent;
use serde::Serialize;

use crate::owner::LinkState;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum EngineEvent {
    /// An agent's link to Telegram changed.
    AgentState {
        session: SessionName,
        state: LinkState,
    },
    /// Telegram gave an agent a flood wait; it cools down and its messages go elsewhere.
    FloodWait { session: SessionName, seconds: u32 },
    /// Telegram limited an agent's first messages to strangers (`PEER_FLOOD`).
    PeerFlood { session: SessionName },
    /// Something reached one of the accounts.
    Telegram {
        session: SessionName,
        event: AccountEvent,
    },
    /// An outbox message ended (sent, failed or expired).
    OutboxFinished {
        id: OutboxId,
        channel_id: String,
        kind: OutboxKind,
        status: OutboxStatus,
        agent: Option<SessionName>,
    },
}
