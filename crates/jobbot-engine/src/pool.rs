//! The seed's per-channel `AgentPool` surface over the engine's global agent registry:
//! initialise, get an available agent, send a message, status, disconnect all. The agents
//! themselves belong to the registry (one owner per account, shared by every channel listing it);
//! a pool is the channel's view of them.

use jobbot_core::ids::SessionName;
use jobbot_core::store::{NewOutboxMessage, OutboxKind, Recipient, SenderSelection, UnixMillis};
use jobbot_core::telegram::MessageContent;

use crate::dispatcher::PoolView;
use crate::engine::{Engine, EngineError, OutboxTicket};

/// What to send through a channel's pool.
#[derive(Debug, Clone)]
pub struct PoolMessage {
    pub kind: OutboxKind,
    pub recipient: Recipient,
    pub content: MessageContent,
    pub first_contact: bool,
    /// The conversation's agent, for a message in an existing conversation.
    pub sticky: Option<SessionName>,
    pub idempotency_key: Option<String>,
    pub not_before: Option<UnixMillis>,
}

#[derive(Clone)]
pub struct AgentPool {
    engine: Engine,
    channel_id: String,
}

impl AgentPool {
    pub(crate) fn new(engine: Engine, channel_id: String) -> Self {
        Self { engine, channel_id }
    }

    pub fn channel_id(&self) -> &str {
        &self.channel_id
    }

    /// Waits until at least one of the channel's agents is connected; `false` if the channel has
    /// no pool (unknown, disabled) or no agent connects within `timeout`.
    pub async fn initialize(&self, timeout: std::time::Duration) -> bool {
        let Ok(Some(status)) = self.get_status().await else {
            return false;
        };
        let members: Vec<SessionName> = status.agents.into_iter().map(|a| a.session).collect();
        let ready = self.engine.wait_for_links(|links| {
            members
                .iter()
                .any(|member| links.get(member).is_some_and(|link| link.is_ready()))
        });
        matches!(tokio::time::timeout(timeout, ready).await, Ok(Ok(_)))
    }

    /// The agent a first contact would go to right now, if any (the seed's
    /// `get_available_agent`). Informational: `send_message` decides at send time.
    pub async fn get_available_agent(&self) -> Result<Option<SessionName>, EngineError> {
        self.engine.peek_agent(&self.channel_id).await
    }

    /// Queues a message durably and returns its ticket (the seed's `send_message` returned only
    /// after trying to send and dropped the message after three failures; here it returns once the
    /// message is safe, and the ticket tells how it ended).
    pub async fn send_message(&self, message: PoolMessage) -> Result<OutboxTicket, EngineError> {
        let now = self.engine.clock().now_unix();
        self.engine
            .enqueue(NewOutboxMessage {
                channel_id: self.channel_id.clone(),
                kind: message.kind,
                sender: SenderSelection::ChannelAgents {
                    sticky: message.sticky,
                },
                recipient: message.recipient,
                content: message.content,
                first_contact: message.first_contact,
                idempotency_key: message.idempotency_key,
                created_at: now,
                not_before: message.not_before,
                expires_at: UnixMillis(0),
            })
            .await
    }

    /// `total_agents`, `available_agents` and per agent: state, flood wait until, pacing headroom,
    /// sent in the last minute / hour / day, last error.
    pub async fn get_status(&self) -> Result<Option<PoolView>, EngineError> {
        self.engine.pool_status(&self.channel_id).await
    }

    /// Disconnects every agent of this channel (the seed's `disconnect_all`). An agent is one
    /// account shared by every channel that lists it, so this pauses it everywhere until
    /// [`AgentPool::reconnect_all`] (or the engine restarts). Its queued messages are kept.
    pub async fn disconnect_all(&self) -> Result<(), EngineError> {
        let sessions = self.sessions().await?;
        self.engine.pause_agents(sessions).await.map(|_| ())
    }

    pub async fn reconnect_all(&self) -> Result<(), EngineError> {
        let sessions = self.sessions().await?;
        self.engine.resume_agents(sessions).await.map(|_| ())
    }

    async fn sessions(&self) -> Result<Vec<SessionName>, EngineError> {
        Ok(self
            .get_status()
            .await?
            .map(|status| {
                status
                    .agents
                    .into_iter()
                    .map(|agent| agent.session)
                    .collect()
            })
            .unwrap_or_default())
    }
}
