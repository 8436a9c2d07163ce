//! The async shell of jobbot: one owner task per Telegram account, the global agent registry and
//! per-channel pools over it, the durable outbox dispatcher, health checks, and the events the
//! web's live view follows. Ports (`AccountConnector`, `Store`) and configuration snapshots are
//! injected; nothing here names grammers, sqlx or a file.

mod clock;
mod crm;
mod dispatcher;
mod engine;
mod events;
pub mod metrics;
mod monitor;
mod owner;
mod pool;
pub mod router;
mod vacancy;

pub use clock::EngineClock;
pub use crm::{AutoReplier, Crm, CrmParts, CrmSettings, NoAutoReplies};
pub use dispatcher::{AgentView, Delivery, LinkStates, PoolView};
pub use engine::{Engine, EngineError, EngineSettings, OutboxTicket};
pub use events::EngineEvent;
pub use metrics::EngineMetrics;
pub use monitor::{
    MessageOutcome, Monitor, MonitorEvent, MonitorHandle, MonitorParts, MonitorSettings,
};
pub use owner::{ConnectedAccounts, LinkState, OwnerSettings, SendJob};
pub use pool::{AgentPool, PoolMessage};
pub use vacancy::Vacancy;
