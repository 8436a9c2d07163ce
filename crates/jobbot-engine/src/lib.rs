//! The async shell of jobbot: one owner task per Telegram account, the global agent registry and
//! per-channel pools over it, the durable outbox dispatcher, the executor of the stored CRM
//! workflows, the supervisor of the background tasks, health checks, and the events the web's
//! live view follows. Ports (`AccountConnector`, `Store`) and configuration snapshots are
//! injected; nothing here names grammers, sqlx or a file.

mod calls;
mod clock;
mod crm;
mod dispatcher;
pub mod doctor;
mod engine;
mod events;
pub mod lease;
pub mod metrics;
mod monitor;
mod owner;
mod pool;
pub mod router;
mod setup;
pub mod supervisor;
mod vacancy;

pub use calls::{CallPermit, CallWait};
pub use clock::EngineClock;
pub use crm::{
    AiParts, AutoReplier, Crm, CrmError, CrmHandle, CrmParts, CrmSettings, NoAutoReplies,
    RunningCrm, SEND_SUGGESTION, SuggestionSent,
};
pub use dispatcher::{AgentView, LinkStates, PoolView};
pub use engine::{DispatcherEnd, Engine, EngineError, EngineSettings, OutboxTicket};
pub use events::EngineEvent;
pub use jobbot_core::store::Delivery;
pub use metrics::EngineMetrics;
pub use monitor::{
    MessageOutcome, Monitor, MonitorError, MonitorEvent, MonitorHandle, MonitorParts,
    MonitorSettings,
};
pub use owner::{ConnectedAccounts, LinkState, OwnerSettings, SendJob};
pub use pool::{AgentPool, PoolMessage};
pub use setup::{
    AgentJoin, AgentSetup, LeftChat, Rollback, SetupError, SetupRequest, SetupResult, SetupStep,
};
pub use vacancy::Vacancy;
