//! The engine's public face: start it with a connector, a store and a stream of configuration
//! snapshots; enqueue messages; read status; subscribe to events; shut it down.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jobbot_core::config::{Config, Pacing};
use jobbot_core::ids::{SessionName, mask_phone};
use jobbot_core::scheduling::{AgentScheduler, CallClass, CallDecision, SchedulerSettings};
use jobbot_core::store::{Delivery, NewOutboxMessage, OutboxId, Store, StoreError};
use jobbot_core::telegram::{AccountConnector, ConnectOptions, TelegramAccount};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::calls::{CallPermit, CallWait};
use crate::clock::EngineClock;
use crate::dispatcher::{
    AgentView, Command, Dispatcher, DispatcherParts, LinkStates, PoolView, Topology,
};
use crate::events::EngineEvent;
use crate::metrics::EngineMetrics;
use crate::owner::{ConnectedAccounts, OwnerContext, OwnerSettings};
use crate::pool::AgentPool;
use crate::router::{CommitGate, TelegramEvents};

/// What the engine needs besides its ports.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// The main account's session (notifications); `None` runs agents only.
    pub main_session: Option<SessionName>,
    pub main_pacing: Pacing,
    pub scheduler: SchedulerSettings,
    pub owner: OwnerSettings,
    /// How long a message may wait for an agent before it ends as expired.
    pub message_ttl: Duration,
    /// Seed of the scheduler's random choices (ties between equally busy agents).
    pub seed: u64,
    /// Where the engine counts what it does (register it to serve it on `/metrics`).
    pub metrics: Arc<EngineMetrics>,
    /// Several nodes share the sessions: no owner starts until [`Engine::set_leased`] says this
    /// node holds the session's lease (`jobbot_engine::lease`). `false` on a node of its own.
    pub leases_required: bool,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            main_session: Some(SessionName::main()),
            main_pacing: Pacing::default(),
            scheduler: SchedulerSettings::default(),
            owner: OwnerSettings::default(),
            message_ttl: Duration::from_secs(24 * 3600),
            seed: rand::random(),
            metrics: Arc::default(),
            leases_required: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the engine has stopped")]
    Stopped,
}

/// A message in the outbox; await [`OutboxTicket::delivery`] for how it ended.
#[derive(Debug)]
pub struct OutboxTicket {
    pub id: OutboxId,
    /// `false` when the idempotency key was taken and this is the earlier message.
    pub new: bool,
    delivery: oneshot::Receiver<Delivery>,
}

impl OutboxTicket {
    /// Waits until the message is sent, failed for good, or expired.
    pub async fn delivery(self) -> Result<Delivery, EngineError> {
        self.delivery.await.map_err(|_| EngineError::Stopped)
    }
}

/// The running engine. Cheap to clone; every clone talks to the same dispatcher task.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    commands: mpsc::UnboundedSender<Command>,
    events: broadcast::Sender<EngineEvent>,
    links: watch::Receiver<LinkStates>,
    store: Arc<dyn Store>,
    clock: EngineClock,
    settings: EngineSettings,
    accounts: ConnectedAccounts,
    telegram_events: std::sync::Mutex<Option<TelegramEvents>>,
    /// Watches the dispatcher task and reports its end in `ended`.
    dispatcher: std::sync::Mutex<Option<JoinHandle<()>>>,
    /// Follows the configuration.
    follower: std::sync::Mutex<Option<JoinHandle<()>>>,
    /// `Some` once the dispatcher task ended, with why (it ends only at shutdown otherwise).
    ended: watch::Receiver<Option<DispatcherEnd>>,
}

/// How the dispatcher task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DispatcherEnd {
    /// At [`Engine::shutdown`].
    ShutDown,
    /// It panicked or was aborted: the engine no longer works.
    Failed(String),
}

impl Engine {
    /// Starts the dispatcher, resumes what the store has pending, and follows the configuration.
    pub async fn start(
        settings: EngineSettings,
        connector: Arc<dyn AccountConnector>,
        store: Arc<dyn Store>,
        mut config: watch::Receiver<Arc<Config>>,
        clock: EngineClock,
    ) -> Result<Self, EngineError> {
        let (events, _) = broadcast::channel(4096);
        let (states_tx, states_rx) = mpsc::unbounded_channel();
        let (telegram_tx, telegram_rx) = mpsc::unbounded_channel();
        let gate = Arc::new(CommitGate::default());
        let accounts = ConnectedAccounts::default();
        let (links_tx, links) = watch::channel(LinkStates::new());
        let (stop_sends, stop_sends_rx) = watch::channel(false);
        let owner_context = {
            let events = events.clone();
            let owner = settings.owner;
            let accounts = Arc::clone(&accounts);
            let gate = Arc::clone(&gate);
            Arc::new(move || OwnerContext {
                connector: Arc::clone(&connector),
                options: ConnectOptions::default(),
                events: events.clone(),
                states: states_tx.clone(),
                telegram: telegram_tx.clone(),
                gate: Arc::clone(&gate),
                accounts: Arc::clone(&accounts),
                settings: owner,
                stop_sends: stop_sends_rx.clone(),
            })
        };
        // The operator's pauses come back before any owner starts: a paused agent never
        // connects, not even for a moment after a restart.
        let paused = store.paused_agents().await?.into_iter().collect();
        // What earlier runs learned about each account's limits, so a restart does not re-learn
        // them by flooding the accounts again.
        let learned = store.learned_limits().await?.into_iter().collect();
        let mut dispatcher = Dispatcher::new(DispatcherParts {
            clock,
            store: Arc::clone(&store),
            scheduler: AgentScheduler::new(settings.scheduler),
            seed: settings.seed,
            events: events.clone(),
            metrics: Arc::clone(&settings.metrics),
            owner_context,
            states_rx,
            links: links_tx,
            paused,
            leased: settings.leases_required.then(Default::default),
            learned,
            stop_sends,
        });
        let (commands, command_rx) = mpsc::unbounded_channel();
        let initial = config.borrow_and_update().clone();
        // The topology first: what resumes is queued for the agents and pools configured now.
        dispatcher.reconfigure(topology(&initial, &settings));
        log_pools(&initial);
        dispatcher.resume(store.pending_outbox().await?).await;
        let (ended_tx, ended) = watch::channel(None);
        let dispatcher_task = {
            let run = tokio::spawn(dispatcher.run(command_rx));
            tokio::spawn(async move {
                let end = match run.await {
                    Ok(()) => DispatcherEnd::ShutDown,
                    Err(error) => DispatcherEnd::Failed(error.to_string()),
                };
                if let DispatcherEnd::Failed(why) = &end {
                    tracing::error!(target: "agent_pool", %why, "the dispatcher stopped");
                }
                ended_tx.send_replace(Some(end));
            })
        };
        let follow = {
            let commands = commands.clone();
            let settings = settings.clone();
            tokio::spawn(async move {
                while config.changed().await.is_ok() {
                    let snapshot = config.borrow_and_update().clone();
                    log_pools(&snapshot);
                    if commands
                        .send(Command::Reconfigure(topology(&snapshot, &settings)))
                        .is_err()
                    {
                        break;
                    }
                }
            })
        };
        Ok(Self {
            inner: Arc::new(Inner {
                commands,
                events,
                links,
                store,
                clock,
                settings,
                accounts,
                telegram_events: std::sync::Mutex::new(Some(TelegramEvents::new(
                    telegram_rx,
                    gate,
                ))),
                dispatcher: std::sync::Mutex::new(Some(dispatcher_task)),
                follower: std::sync::Mutex::new(Some(follow)),
                ended,
            }),
        })
    }

    /// The seed's per-channel pool surface for one output channel.
    pub fn pool(&self, channel_id: &str) -> AgentPool {
        AgentPool::new(self.clone(), channel_id.to_owned())
    }

    /// The message with the engine's time to live when it names none (`expires_at` 0), for
    /// messages written to the store by another path than [`Engine::enqueue`].
    pub fn with_ttl(&self, mut message: NewOutboxMessage) -> NewOutboxMessage {
        if message.expires_at.0 == 0 {
            message.expires_at = message.created_at.plus(self.inner.settings.message_ttl);
        }
        message
    }

    /// Stores a message durably, then queues it. Returns once it is in the store.
    pub async fn enqueue(&self, message: NewOutboxMessage) -> Result<OutboxTicket, EngineError> {
        let message = self.with_ttl(message);
        let enqueued = self.inner.store.enqueue(message).await?;
        let id = enqueued.id();
        let (reply, delivery) = oneshot::channel();
        self.send(Command::Enqueued(id, Some(reply)))?;
        Ok(OutboxTicket {
            id,
            new: matches!(enqueued, jobbot_core::store::Enqueued::New(_)),
            delivery,
        })
    }

    /// Hands messages already in the store (written in a transaction of their own, such as
    /// monitoring's intake) to the dispatcher. A restart finds them anyway; this sends them now.
    pub async fn admit_stored(&self, ids: &[OutboxId]) -> Result<(), EngineError> {
        for id in ids {
            self.send(Command::Enqueued(*id, None))?;
        }
        Ok(())
    }

    /// Waits for a message enqueued earlier (by id) to end.
    pub async fn await_delivery(&self, id: OutboxId) -> Result<Delivery, EngineError> {
        let (reply, delivery) = oneshot::channel();
        self.send(Command::Enqueued(id, Some(reply)))?;
        delivery.await.map_err(|_| EngineError::Stopped)
    }

    pub async fn agents(&self) -> Result<Vec<AgentView>, EngineError> {
        self.ask(Command::AgentsStatus).await
    }

    pub async fn pool_status(&self, channel_id: &str) -> Result<Option<PoolView>, EngineError> {
        self.ask(|reply| Command::PoolStatus(channel_id.to_owned(), reply))
            .await
    }

    pub(crate) async fn peek_agent(
        &self,
        channel_id: &str,
    ) -> Result<Option<SessionName>, EngineError> {
        self.ask(|reply| Command::PeekAgent(channel_id.to_owned(), reply))
            .await
    }

    /// Pauses agents: each disconnects and releases its session, and its messages wait (sticky
    /// ones) or go to other agents. Returns the sessions that are configured.
    /// The pause is on record before it applies, and lasts until [`Engine::resume_agents`],
    /// across configuration changes and restarts.
    pub async fn pause_agents(
        &self,
        sessions: Vec<SessionName>,
    ) -> Result<Vec<SessionName>, EngineError> {
        Ok(self
            .ask(|reply| Command::SetPaused(sessions, true, reply))
            .await??)
    }

    /// The sessions whose lease this node holds now (with [`EngineSettings::leases_required`]):
    /// their owners start, the others' stop. Returns once the stops are ordered.
    pub async fn set_leased(
        &self,
        node: jobbot_core::cluster::NodeId,
        sessions: HashMap<SessionName, jobbot_core::cluster::FencingToken>,
    ) -> Result<(), EngineError> {
        self.ask(|reply| Command::SetLeased(node, sessions, reply))
            .await
    }

    pub async fn resume_agents(
        &self,
        sessions: Vec<SessionName>,
    ) -> Result<Vec<SessionName>, EngineError> {
        Ok(self
            .ask(|reply| Command::SetPaused(sessions, false, reply))
            .await??)
    }

    /// Checkpoints every connected account's update position and waits (at most `within`) until
    /// each is saved, which needs every consumer of the event stream to have handled what came
    /// before. Returns how many accounts saved one. For an orderly shutdown: the next start then
    /// replays (almost) nothing.
    pub async fn flush_positions(&self, within: Duration) -> Result<usize, EngineError> {
        let answers = self.ask(Command::FlushPositions).await?;
        let mut saved = 0;
        let deadline = tokio::time::Instant::now() + within;
        for answer in answers {
            if let Ok(Ok(true)) = tokio::time::timeout_at(deadline, answer).await {
                saved += 1;
            }
        }
        Ok(saved)
    }

    /// Resolves when the dispatcher task ends, saying why. Only [`Engine::shutdown`] ends it in
    /// a working engine; anything else is a failure the process must not outlive.
    pub async fn ended(&self) -> DispatcherEnd {
        let mut ended = self.inner.ended.clone();
        let result = ended.wait_for(Option::is_some).await;
        match result {
            Ok(end) => end.clone().unwrap_or(DispatcherEnd::ShutDown),
            Err(_) => DispatcherEnd::Failed("the dispatcher's watch closed".to_owned()),
        }
    }

    /// A permit for one call of `class` on `session` now, or when one will be possible. Every
    /// rate-limited call other than a send (resolving a username, joining, creating a topic) is
    /// made with one, so the account's scheduler paces it and learns from its outcome.
    pub async fn try_call(
        &self,
        session: &SessionName,
        class: CallClass,
    ) -> Result<CallPermit, CallWait> {
        // Listed before its owner announces it ready, unlisted when it leaves.
        let Some(account) = self.account(session) else {
            return Err(CallWait::NotReady);
        };
        let taken = self.inner.clock.now();
        let decision = self
            .ask(|reply| Command::ReserveCall {
                session: session.clone(),
                class,
                reply,
            })
            .await
            .map_err(|_| CallWait::NotReady)?;
        match decision {
            CallDecision::Go => Ok(CallPermit::new(
                session.clone(),
                class,
                account,
                self.inner.commands.clone(),
                self.inner.clock,
                taken,
            )),
            CallDecision::WaitUntil { at, .. } => {
                Err(CallWait::Until(self.inner.clock.instant(at)))
            }
            CallDecision::NotReady => Err(CallWait::NotReady),
        }
    }

    /// A permit for a call of `class` on the first of `sessions` (in order of preference) whose
    /// limiter allows one, waiting for the earliest one if none does now, for at most `within`
    /// (`None`: as long as it takes). `None` when none of them is connected, or none allows a
    /// call within the bound.
    pub async fn call_permit(
        &self,
        sessions: &[SessionName],
        class: CallClass,
        within: Option<Duration>,
    ) -> Option<CallPermit> {
        let deadline = within.map(|within| tokio::time::Instant::now() + within);
        loop {
            let mut earliest: Option<tokio::time::Instant> = None;
            for session in sessions {
                match self.try_call(session, class).await {
                    Ok(permit) => return Some(permit),
                    Err(CallWait::Until(at)) => {
                        earliest = Some(earliest.map_or(at, |known| known.min(at)));
                    }
                    Err(CallWait::NotReady) => {}
                }
            }
            let at = earliest?;
            if deadline.is_some_and(|deadline| at > deadline) {
                return None;
            }
            tokio::time::sleep_until(at).await;
        }
    }

    /// A connected account. Its rate-limited calls are made with a permit
    /// ([`Engine::call_permit`]); sends go through [`Engine::enqueue`]. `None` while the session
    /// is not connected.
    pub fn account(&self, session: &SessionName) -> Option<Arc<dyn TelegramAccount>> {
        self.inner
            .accounts
            .read()
            .ok()
            .and_then(|accounts| accounts.get(session).cloned())
    }

    /// The main account's session, if the engine runs one.
    pub fn main_session(&self) -> Option<&SessionName> {
        self.inner.settings.main_session.as_ref()
    }

    /// Everything that reaches any account, in order and without loss, for the one task that
    /// routes it (monitoring, CRM; see [`crate::router::fan_out`]). The first call gets the
    /// stream; later calls get `None`.
    pub fn take_telegram_events(&self) -> Option<TelegramEvents> {
        self.inner
            .telegram_events
            .lock()
            .ok()
            .and_then(|mut events| events.take())
    }

    /// The live feed: every change as it happens. Lossy by design (a slow reader gets `Lagged`
    /// and misses events), so it is for showing changes, never for deciding on state: read state
    /// from [`Engine::link_states`], [`Engine::agents`] or the store.
    pub fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        self.inner.events.subscribe()
    }

    /// Every configured account's link state, always the latest (a `watch`: a reader that looks
    /// late sees the current map, never a backlog it could fall behind on).
    pub fn link_states(&self) -> watch::Receiver<LinkStates> {
        self.inner.links.clone()
    }

    /// Waits until the accounts' link states satisfy `condition` (checked now, then on every
    /// change), and returns them.
    pub async fn wait_for_links(
        &self,
        mut condition: impl FnMut(&LinkStates) -> bool,
    ) -> Result<LinkStates, EngineError> {
        let mut links = self.link_states();
        let links = links
            .wait_for(|links| condition(links))
            .await
            .map_err(|_| EngineError::Stopped)?;
        Ok(links.clone())
    }

    pub fn clock(&self) -> EngineClock {
        self.inner.clock
    }

    /// What the engine counted since it started.
    pub fn metrics(&self) -> Arc<EngineMetrics> {
        Arc::clone(&self.inner.settings.metrics)
    }

    pub fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.inner.store)
    }

    /// Stops every owner (each disconnects and releases its session) and the dispatcher.
    /// Pending messages stay in the store for the next start.
    /// The first step of an orderly stop: no new send starts, and the sends handed to accounts
    /// but not begun (queued behind another, or still showing "typing…") come back unsent and
    /// stay pending for the next start. Everything else keeps working (updates, checkpoints,
    /// enqueueing), so what follows in a stop is quick. [`Engine::shutdown`] does this too.
    pub fn stop_sending(&self) {
        let _ = self.send(Command::StopSending);
    }

    pub async fn shutdown(&self) {
        let (reply, done) = oneshot::channel();
        if self.inner.commands.send(Command::Shutdown(reply)).is_ok() {
            let _ = done.await;
        }
        let take = |slot: &std::sync::Mutex<Option<JoinHandle<()>>>| {
            slot.lock().ok().and_then(|mut task| task.take())
        };
        if let Some(follower) = take(&self.inner.follower) {
            // It only waits for configuration changes.
            follower.abort();
            let _ = follower.await;
        }
        if let Some(watcher) = take(&self.inner.dispatcher) {
            // It ends by itself once the dispatcher has.
            let _ = watcher.await;
        }
    }

    fn send(&self, command: Command) -> Result<(), EngineError> {
        self.inner
            .commands
            .send(command)
            .map_err(|_| EngineError::Stopped)
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, EngineError> {
        let (reply, answer) = oneshot::channel();
        self.send(command(reply))?;
        answer.await.map_err(|_| EngineError::Stopped)
    }
}

fn topology(config: &Config, settings: &EngineSettings) -> Topology {
    let mut accounts: std::collections::BTreeMap<SessionName, (Pacing, ConnectOptions)> = config
        .agent_accounts()
        .into_iter()
        .map(|(session, agent)| {
            (
                session,
                (agent.pacing, ConnectOptions { proxy: agent.proxy }),
            )
        })
        .collect();
    if let Some(main) = &settings.main_session {
        accounts.insert(
            main.clone(),
            (settings.main_pacing, ConnectOptions::default()),
        );
    }
    Topology {
        accounts,
        channels: config
            .enabled_channels()
            .map(|channel| {
                (
                    channel.id.clone(),
                    channel
                        .agents
                        .iter()
                        .map(|a| a.session_name.clone())
                        .collect(),
                )
            })
            .collect(),
        main_account: settings.main_session.clone(),
    }
}

/// The seed's start-up lines, phone numbers masked.
fn log_pools(config: &Config) {
    let crm: Vec<_> = config
        .enabled_channels()
        .filter(|channel| channel.crm_enabled)
        .collect();
    tracing::info!(target: "agent_pool", "📊 CRM инициализирован для {} каналов", crm.len());
    for channel in crm {
        tracing::info!(target: "agent_pool", "  ✅ Пул агентов для '{}' инициализирован ({} агентов)", channel.name, channel.agents.len());
        for agent in &channel.agents {
            tracing::debug!(target: "agent_pool", "    агент {} ({})", agent.session_name, agent.phone.as_ref().map_or_else(|| "phone missing".to_owned(), |phone| mask_phone(phone.as_str())));
        }
    }
}
