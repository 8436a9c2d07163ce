//! The outbox dispatcher: one task that owns the scheduling table, the agent owners and the
//! queue of pending outbox messages, and turns the policy's decisions into sends.
//!
//! Every message is in the store before it is sent (`Store::enqueue`), and every attempt is
//! recorded with its agent and `random_id` before the call (`Store::begin_attempt`), so a crash
//! at any point resumes from the store without losing or double-sending. What each outcome means
//! for the message is decided by the pure rules of `jobbot_core::outbox` and stored typed; this
//! task keeps the queues and turns those decisions into sends. Waiting is exact: the task sleeps
//! until the earliest instant the policy names (a pacing permit, a flood wait's end, a delayed
//! message's time, a TTL), or until something changes.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use jobbot_core::cluster::{AttemptClaim, ClaimRefusal, FencingToken, NodeId};
use jobbot_core::config::Pacing;
use jobbot_core::ids::SessionName;
use jobbot_core::outbox::{Retry, Verdict, in_doubt_stuck, judge_attempt};
use jobbot_core::scheduling::{
    AgentKey, AgentScheduler, AgentStatus, CallClass, CallDecision, ConnectionState, Decision,
    LearnedLimits, Millis, NoAgentReason, PoolId, Request, RoundRobin, SendKind, SendOutcome,
    StateChangeReason, WaitReason,
};
use jobbot_core::store::{
    AccountGone, AgentEvent, AgentEventRecord, Delivery, Holdup, InDoubt, OutboxEnd, OutboxId,
    OutboxMessage, OutboxStatus, Recipient, SenderSelection, Store, Unavailable,
};
use jobbot_core::telegram::{RandomId, SentMessage, TelegramError};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::clock::EngineClock;
use crate::events::EngineEvent;
use crate::metrics::EngineMetrics;
use crate::owner::{
    LinkReport, LinkState, OwnerCommand, OwnerContext, OwnerHandle, SendFailure, SendJob,
    spawn_owner,
};

/// Every configured account's link state, as the dispatcher holds it. Published through a
/// `watch` channel: a reader always gets the latest map, never a stream it could fall behind on.
pub type LinkStates = BTreeMap<SessionName, LinkState>;

/// The pool of the main account (notifications).
pub(crate) const MAIN_POOL: PoolId = PoolId(0);

/// How long shutdown waits for the sends already handed to an account to come back, so their
/// outcomes are recorded (a send that does not come back in time stays in doubt, and the next
/// start repeats it on the same account with the same `random_id`).
const SHUTDOWN_SEND_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// With several nodes: how often the dispatcher reads the store for messages other nodes queued,
/// took or ended (each node queues only what it enqueued itself).
const CLUSTER_OUTBOX_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// The desired set of agents and pools, from a configuration snapshot.
#[derive(Debug, Clone, Default)]
pub(crate) struct Topology {
    /// Every account with its pacing and connection options.
    pub accounts: BTreeMap<SessionName, (Pacing, jobbot_core::telegram::ConnectOptions)>,
    /// Each channel's agents, in configuration order.
    pub channels: BTreeMap<String, Vec<SessionName>>,
    pub main_account: Option<SessionName>,
}

pub(crate) enum Command {
    /// A message in the store, to send unless it has ended, and to report to the waiter (if any)
    /// when it ends (at once if it has).
    Enqueued(OutboxId, Option<oneshot::Sender<Delivery>>),
    Reconfigure(Topology),
    AgentsStatus(oneshot::Sender<Vec<AgentView>>),
    PoolStatus(String, oneshot::Sender<Option<PoolView>>),
    /// Which agent a first contact of this channel would go to now, without reserving it.
    PeekAgent(String, oneshot::Sender<Option<SessionName>>),
    /// Pauses (disconnects, releasing the session) or resumes agents, recording it in the store
    /// first; returns the sessions that are configured (unknown names are ignored).
    SetPaused(
        Vec<SessionName>,
        bool,
        oneshot::Sender<Result<Vec<SessionName>, jobbot_core::store::StoreError>>,
    ),
    /// Asks every connected account to checkpoint its update position now; each answer comes
    /// once that checkpoint is saved.
    FlushPositions(oneshot::Sender<Vec<oneshot::Receiver<bool>>>),
    /// Reserves a rate-limited call other than a send on an account (see
    /// `AgentScheduler::reserve_call`); a `Go` must be followed by one `CallOutcome`.
    ReserveCall {
        session: SessionName,
        class: CallClass,
        reply: oneshot::Sender<CallDecision>,
    },
    /// How a reserved call went: its class learns from it.
    CallOutcome {
        session: SessionName,
        class: CallClass,
        outcome: SendOutcome,
        /// When the permit was asked for, and when the call came back.
        taken: Millis,
        returned: Millis,
    },
    /// The sessions whose lease this node holds now: owners start for those gained and stop
    /// for those lost (answered once the lost ones' owners are told to stop).
    SetLeased(
        NodeId,
        HashMap<SessionName, FencingToken>,
        oneshot::Sender<()>,
    ),
    /// Start no send any more, and have the accounts hand back the sends they have not begun
    /// (the first step of an orderly stop; see [`Dispatcher::stop_sending`]).
    StopSending,
    Shutdown(oneshot::Sender<()>),
}

enum Internal {
    Outcome {
        id: OutboxId,
        agent: AgentKey,
        result: Result<SentMessage, SendFailure>,
        /// When the send's permit was taken, and when its answer came back (stamped where it
        /// arrived, not when this task got to it): Telegram counted the call in between.
        taken: Millis,
        returned: Millis,
    },
}

/// An agent as the status API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AgentView {
    pub session: SessionName,
    pub link: LinkState,
    pub channels: Vec<String>,
    #[serde(flatten)]
    pub scheduling: AgentStatus,
    /// Wall-clock forms of the scheduler's instants.
    pub flood_wait_until_unix_ms: Option<i64>,
    pub peer_flood_until_unix_ms: Option<i64>,
}

/// A channel's pool as `get_status()` shows it (the seed's shape).
#[derive(Debug, Clone, serde::Serialize)]
pub struct PoolView {
    pub channel_id: String,
    pub total_agents: usize,
    pub available_agents: usize,
    pub agents: Vec<AgentView>,
}

/// Which queue a message waits in: messages in one queue are interchangeable for the policy, so
/// when the head cannot go, none behind it can, and the dispatcher stops looking (no O(n) scan).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct QueueKey {
    pool: PoolId,
    sticky: Option<AgentKey>,
    first_contact: bool,
    chat_post: bool,
    /// The recipient is a username the agent resolves first (it needs a resolve permit too).
    resolves: bool,
    /// The recipient is found through their message: a resolve permit for every send.
    looks_up: bool,
}

struct Queued {
    message: OutboxMessage,
    request: Request,
    queue: QueueKey,
    /// An attempt that may have been delivered: the message stays on that agent (with that
    /// `random_id`) until Telegram refuses it, delivers it, or the account is gone.
    in_doubt: Option<InDoubt>,
    /// The doubt before the attempt in flight, restored if the attempt is never made.
    doubt_before_attempt: Option<InDoubt>,
    /// Noted in the store already, so a parked message is not rewritten on every pass.
    last_noted: Option<Holdup>,
}

pub(crate) struct Dispatcher {
    clock: EngineClock,
    store: Arc<dyn Store>,
    scheduler: AgentScheduler,
    rng: StdRng,
    owner_context: Arc<dyn Fn() -> OwnerContext + Send + Sync>,
    owners: HashMap<SessionName, OwnerHandle>,
    /// Stopped owners whose tasks may still be disconnecting: the session's next owner waits for
    /// them, and shutdown awaits them, so a session is never held twice.
    retired: HashMap<SessionName, Vec<JoinHandle<()>>>,
    next_generation: u64,
    links: watch::Sender<LinkStates>,
    /// Paused by an operator. A pause outlives configuration changes: a paused session gets no
    /// owner until it is resumed, whatever the configuration says.
    paused: HashSet<SessionName>,
    /// With several nodes: the sessions whose lease this node holds (with the lease's fencing
    /// token), the only ones it may own. `None` on a node of its own, which may own every
    /// session.
    leased: Option<HashMap<SessionName, FencingToken>>,
    /// This node's name, once the lease keeper has spoken.
    lease_node: Option<NodeId>,
    /// With several nodes: when the store is next read for other nodes' messages.
    next_poll: Millis,
    /// With several nodes: messages another node claimed, not queued here again before the
    /// claim's end.
    claimed_elsewhere: HashMap<OutboxId, Millis>,
    /// Learned limits from the store not yet given to the scheduler: each is restored when its
    /// account is first configured.
    stored_learning: HashMap<SessionName, LearnedLimits>,
    topology: Topology,
    pools: HashMap<String, PoolId>,
    next_pool: u32,
    messages: HashMap<OutboxId, Queued>,
    queues: BTreeMap<QueueKey, VecDeque<OutboxId>>,
    /// Queues that cannot send before an instant (pacing, flood waits).
    blocked_until: HashMap<QueueKey, Millis>,
    /// Queues that wait for an agent to change state.
    parked: HashSet<QueueKey>,
    /// Whose turn it is among the queues (fair share of agents that channels share).
    turn: RoundRobin<QueueKey>,
    delayed: BinaryHeap<Reverse<(Millis, OutboxId, bool)>>,
    expiries: BinaryHeap<Reverse<(Millis, OutboxId)>>,
    /// Messages handed to an account, with the `random_id` of the attempt.
    in_flight: HashMap<OutboxId, RandomId>,
    /// Set by [`Dispatcher::stop_sending`]: no new send starts.
    stopping: bool,
    /// Tells the owners the same, so they hand back the sends they have not begun.
    stop_sends: watch::Sender<bool>,
    /// Messages bound to an agent that is no longer configured (a conversation's, or the agent
    /// of a doubtful attempt): in no queue, settled by `settle_orphans`.
    orphans: HashSet<OutboxId>,
    waiters: HashMap<OutboxId, Vec<oneshot::Sender<Delivery>>>,
    events: broadcast::Sender<EngineEvent>,
    /// Counted here, where messages end and Telegram pushes back (never from `events`).
    metrics: Arc<EngineMetrics>,
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
    states_rx: mpsc::UnboundedReceiver<LinkReport>,
    /// Pools already reported as fully in FloodWait (logged once per episode).
    flood_logged: HashSet<PoolId>,
}

pub(crate) struct DispatcherParts {
    pub clock: EngineClock,
    pub store: Arc<dyn Store>,
    pub scheduler: AgentScheduler,
    pub seed: u64,
    pub events: broadcast::Sender<EngineEvent>,
    pub metrics: Arc<EngineMetrics>,
    pub owner_context: Arc<dyn Fn() -> OwnerContext + Send + Sync>,
    pub states_rx: mpsc::UnboundedReceiver<LinkReport>,
    pub links: watch::Sender<LinkStates>,
    /// The operator's pauses, as the store kept them.
    pub paused: HashSet<SessionName>,
    /// `Some` (empty at start) when sessions are used only under a lease.
    pub leased: Option<HashMap<SessionName, FencingToken>>,
    /// The learned limits, as the store kept them.
    pub learned: HashMap<SessionName, LearnedLimits>,
    /// What the owners' [`OwnerContext::stop_sends`] watches.
    pub stop_sends: watch::Sender<bool>,
}

impl Dispatcher {
    pub fn new(parts: DispatcherParts) -> Self {
        let (internal_tx, internal_rx) = mpsc::unbounded_channel();
        Self {
            clock: parts.clock,
            store: parts.store,
            scheduler: parts.scheduler,
            rng: StdRng::seed_from_u64(parts.seed),
            owner_context: parts.owner_context,
            owners: HashMap::new(),
            retired: HashMap::new(),
            next_generation: 0,
            links: parts.links,
            paused: parts.paused,
            leased: parts.leased,
            lease_node: None,
            next_poll: Millis::ZERO,
            claimed_elsewhere: HashMap::new(),
            stored_learning: parts.learned,
            topology: Topology::default(),
            pools: HashMap::new(),
            next_pool: 1,
            messages: HashMap::new(),
            queues: BTreeMap::new(),
            blocked_until: HashMap::new(),
            parked: HashSet::new(),
            turn: RoundRobin::new(),
            delayed: BinaryHeap::new(),
            expiries: BinaryHeap::new(),
            in_flight: HashMap::new(),
            stopping: false,
            stop_sends: parts.stop_sends,
            orphans: HashSet::new(),
            waiters: HashMap::new(),
            events: parts.events,
            metrics: parts.metrics,
            internal_tx,
            internal_rx,
            states_rx: parts.states_rx,
            flood_logged: HashSet::new(),
        }
    }

    /// Loads what a previous run left pending.
    pub async fn resume(&mut self, pending: Vec<OutboxMessage>) {
        if !pending.is_empty() {
            tracing::info!(target: "agent_pool", count = pending.len(), "📬 {} сообщений в очереди после перезапуска", pending.len());
        }
        for message in pending {
            self.admit(message);
        }
    }

    pub async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        loop {
            let now = self.clock.now();
            if self.leased.is_some() && now >= self.next_poll {
                self.poll_store(now).await;
                self.next_poll = now.saturating_add(CLUSTER_OUTBOX_POLL);
            }
            self.release_delayed(now);
            self.expire(now).await;
            self.settle_orphans().await;
            self.dispatch(now).await;
            let wake = self.next_wake();
            tokio::select! {
                biased;
                Some(internal) = self.internal_rx.recv() => self.handle_internal(internal).await,
                Some(report) = self.states_rx.recv() => self.on_link_report(report).await,
                command = commands.recv() => match command {
                    None => break,
                    Some(Command::Shutdown(done)) => {
                        self.shutdown().await;
                        let _ = done.send(());
                        return;
                    }
                    Some(command) => self.handle_command(command).await,
                },
                _ = sleep_until_opt(wake.map(|at| self.clock.instant(at))) => {}
            }
        }
        self.shutdown().await;
    }

    /// Stops starting sends, waits (a bounded time) for the sends already handed to accounts so
    /// their outcomes are recorded, then stops every owner (each disconnects and releases its
    /// session) and waits until they have.
    async fn shutdown(&mut self) {
        self.stop_sending();
        let deadline = tokio::time::Instant::now() + SHUTDOWN_SEND_GRACE;
        while !self.in_flight.is_empty() {
            tokio::select! {
                Some(internal) = self.internal_rx.recv() => self.handle_internal(internal).await,
                Some(report) = self.states_rx.recv() => self.on_link_report(report).await,
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(target: "agent_pool", count = self.in_flight.len(), "sends still in flight at shutdown stay in doubt; the next start repeats them on the same accounts");
                    break;
                }
            }
        }
        let sessions: Vec<SessionName> = self.owners.keys().cloned().collect();
        for session in &sessions {
            self.retire_owner(session);
        }
        for (_, tasks) in self.retired.drain() {
            for task in tasks {
                let _ = task.await;
            }
        }
    }

    /// No new send starts, and every owner answers a send it has not begun (one queued behind
    /// another, or still showing "typing…") with [`SendFailure::NotAttempted`]: nothing of it
    /// reached Telegram, so it stays pending for the next start. Only calls already made are
    /// waited for, so a stop takes about one call, not a queue of human-like delays (a service
    /// manager kills a process that takes too long to stop, e.g. systemd after 90 s).
    fn stop_sending(&mut self) {
        self.stopping = true;
        self.stop_sends.send_replace(true);
    }

    fn next_wake(&self) -> Option<Millis> {
        let blocked = self
            .blocked_until
            .iter()
            .filter(|(key, _)| self.queues.get(key).is_some_and(|queue| !queue.is_empty()))
            .map(|(_, at)| *at)
            .min();
        [
            blocked,
            self.delayed.peek().map(|Reverse((at, ..))| *at),
            self.expiries.peek().map(|Reverse((at, _))| *at),
            self.leased.is_some().then_some(self.next_poll),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    async fn handle_command(&mut self, command: Command) {
        match command {
            Command::Enqueued(id, waiter) => {
                if let Some(waiter) = waiter {
                    self.waiters.entry(id).or_default().push(waiter);
                }
                if !self.messages.contains_key(&id) && !self.in_flight.contains_key(&id) {
                    // Read here, by the queue's one owner, never earlier by the caller: a copy
                    // read before this command was queued may be pending while the message has
                    // since been sent and let go, and queueing it again would strand its waiters.
                    match self.store.outbox_message(id).await {
                        Ok(Some(message)) if message.status.is_final() => {
                            self.notify_final(&message);
                        }
                        Ok(Some(message)) => self.admit(message),
                        // Dropping the waiters tells the callers the engine cannot say.
                        Ok(None) => {
                            self.waiters.remove(&id);
                        }
                        Err(error) => {
                            self.waiters.remove(&id);
                            tracing::error!(target: "agent_pool", %error, id = %id, "could not read a message to admit; a restart admits it");
                        }
                    }
                }
            }
            Command::FlushPositions(reply) => {
                let answers = self
                    .owners
                    .values()
                    .filter_map(|owner| {
                        let (answer, receiver) = oneshot::channel();
                        owner
                            .commands
                            .try_send(OwnerCommand::Flush { reply: answer })
                            .ok()
                            .map(|()| receiver)
                    })
                    .collect();
                let _ = reply.send(answers);
            }
            Command::Reconfigure(topology) => self.reconfigure(topology),
            Command::StopSending => self.stop_sending(),
            Command::ReserveCall {
                session,
                class,
                reply,
            } => {
                let decision = match self.scheduler.agent_key(&session) {
                    Some(agent) => self.scheduler.reserve_call(agent, class, self.clock.now()),
                    None => CallDecision::NotReady,
                };
                let _ = reply.send(decision);
            }
            Command::CallOutcome {
                session,
                class,
                outcome,
                taken,
                returned,
            } => {
                // The key of a removed session still names its state: a late outcome updates it.
                if let Some(agent) = self.scheduler.agent_key(&session) {
                    // A send's permit is taken by `pick` only: `reserve_call` took none for it.
                    if class != CallClass::SendMessage && outcome != SendOutcome::NotAttempted {
                        self.scheduler.call_returned(agent, class, taken, returned);
                    }
                    self.scheduler
                        .on_call_outcome(agent, class, &outcome, self.clock.now());
                }
                if let SendOutcome::Failed(error) = &outcome {
                    self.report_refusal(&session, error, class).await;
                }
                self.save_learning().await;
            }
            Command::AgentsStatus(reply) => {
                let _ = reply.send(self.agent_views(None));
            }
            Command::PoolStatus(channel, reply) => {
                let now = self.clock.now();
                let view = self
                    .pools
                    .get(&channel)
                    .and_then(|pool| self.scheduler.pool_status(*pool, now))
                    .map(|status| {
                        let agents = self.agent_views(Some(&channel));
                        PoolView {
                            channel_id: channel.clone(),
                            total_agents: agents.len(),
                            available_agents: status.available_now as usize,
                            agents,
                        }
                    });
                let _ = reply.send(view);
            }
            Command::PeekAgent(channel, reply) => {
                // Informational (the seed's `get_available_agent`): the least busy member that
                // could send a first contact now, without reserving anything.
                let now = self.clock.now();
                let agent = self
                    .pools
                    .get(&channel)
                    .and_then(|pool| self.scheduler.pool_status(*pool, now))
                    .and_then(|status| {
                        status
                            .agents
                            .into_iter()
                            .filter(|agent| {
                                agent.state == ConnectionState::Ready
                                    && agent.flood_wait_until.is_none()
                                    && agent.peer_flood_until.is_none()
                                    && agent.pacing_headroom > 0
                                    && agent.cold_dms_last_day < agent.cold_dms_per_day
                            })
                            .min_by_key(|agent| {
                                (agent.in_flight, std::cmp::Reverse(agent.pacing_headroom))
                            })
                            .map(|agent| agent.session)
                    });
                let _ = reply.send(agent);
            }
            Command::SetPaused(sessions, pause, reply) => {
                let known: Vec<SessionName> = sessions
                    .into_iter()
                    .filter(|session| self.topology.accounts.contains_key(session))
                    .collect();
                // On record first: a pause that is not stored would end with the next restart.
                let now = self.clock.now_unix();
                for session in &known {
                    if let Err(error) = self.store.set_agent_paused(session, pause, now).await {
                        let _ = reply.send(Err(error));
                        return;
                    }
                }
                for session in &known {
                    if pause {
                        self.pause(session);
                    } else if self.paused.remove(session) {
                        tracing::info!(target: "agent_pool", session = %session, "▶️ агент {session} возобновлён");
                        if let Some(agent) = self.scheduler.agent_key(session) {
                            self.scheduler
                                .set_connection_state(agent, ConnectionState::Connecting);
                        }
                        self.start_owner(session);
                    }
                }
                let _ = reply.send(Ok(known));
            }
            Command::SetLeased(node, leased, reply) => {
                self.lease_node = Some(node);
                self.set_leased(leased);
                let _ = reply.send(());
            }
            Command::Shutdown(_) => unreachable!("handled in run"),
        }
    }

    /// Puts a pending message in its queue (or among the delayed ones). A message in doubt
    /// stays with the agent of its doubtful attempt.
    fn admit(&mut self, message: OutboxMessage) {
        let now = self.clock.now();
        let expires = self.clock.from_unix(message.message.expires_at);
        let id = message.id;
        let in_doubt = message.in_doubt.clone();
        let (request, queue) = self.request_for(&message, in_doubt.as_ref());
        let not_before = message
            .message
            .not_before
            .map(|at| self.clock.from_unix(at));
        self.expiries.push(Reverse((expires, id)));
        self.messages.insert(
            id,
            Queued {
                message,
                request,
                queue,
                in_doubt,
                doubt_before_attempt: None,
                last_noted: None,
            },
        );
        if self.orphan_agent(id).is_some() {
            self.orphans.insert(id);
            return;
        }
        match not_before {
            Some(at) if at > now => self.delayed.push(Reverse((at, id, false))),
            _ => self.push_queue(id, false),
        }
    }

    /// With several nodes: queues the pending messages this node does not have yet (enqueued
    /// by another node, or handed back by one), and lets go of the ones another node has ended,
    /// telling their waiters.
    async fn poll_store(&mut self, now: Millis) {
        let pending = match self.store.pending_outbox().await {
            Ok(pending) => pending,
            Err(error) => {
                tracing::warn!(target: "agent_pool", %error, "could not read the outbox for other nodes' messages");
                return;
            }
        };
        self.claimed_elsewhere.retain(|_, until| *until > now);
        let still_pending: HashSet<OutboxId> = pending.iter().map(|message| message.id).collect();
        for message in pending {
            let id = message.id;
            if !self.messages.contains_key(&id)
                && !self.in_flight.contains_key(&id)
                && !self.claimed_elsewhere.contains_key(&id)
            {
                self.admit(message);
            }
        }
        let gone: HashSet<OutboxId> = self
            .messages
            .keys()
            .chain(self.waiters.keys())
            .filter(|id| !still_pending.contains(id) && !self.in_flight.contains_key(id))
            .copied()
            .collect();
        for id in gone {
            match self.store.outbox_message(id).await {
                Ok(Some(message)) if message.status.is_final() => {
                    self.messages.remove(&id);
                    self.orphans.remove(&id);
                    self.notify_final(&message);
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(target: "agent_pool", %error, id = %id, "could not read a message another node may have ended");
                }
            }
        }
    }

    /// The agent a message is bound to (its conversation's, or its doubtful attempt's), when
    /// that agent is no longer configured.
    fn orphan_agent(&self, id: OutboxId) -> Option<SessionName> {
        let queued = self.messages.get(&id)?;
        let bound = queued
            .in_doubt
            .as_ref()
            .map(|doubt| doubt.agent.clone())
            .or_else(|| match &queued.message.message.sender {
                SenderSelection::ChannelAgents { sticky } => sticky.clone(),
                SenderSelection::MainAccount => None,
            })?;
        self.scheduler.agent_key(&bound).is_none().then_some(bound)
    }

    /// Messages whose agent was removed: one in doubt ends, saying so (moving it could deliver
    /// it twice); a conversation's waits, saying why, until its agent is configured again or it
    /// expires.
    async fn settle_orphans(&mut self) {
        if self.orphans.is_empty() {
            return;
        }
        let mut orphans: Vec<OutboxId> = self.orphans.iter().copied().collect();
        orphans.sort();
        for id in orphans {
            let Some(agent) = self.orphan_agent(id) else {
                self.orphans.remove(&id);
                continue;
            };
            let in_doubt = self
                .messages
                .get(&id)
                .and_then(|queued| queued.in_doubt.clone());
            let unavailable = Unavailable::StickyAgentRemoved { agent };
            match in_doubt.and_then(|doubt| in_doubt_stuck(&doubt, &unavailable)) {
                Some(end) => {
                    self.orphans.remove(&id);
                    if let Some(queued) = self.messages.remove(&id) {
                        tracing::warn!(target: "agent_pool", id = %id, %end, "⚠️ сообщение, возможно, доставлено аккаунтом, которого больше нет");
                        self.finish(queued.message, None, end).await;
                    }
                }
                None => {
                    self.note(
                        id,
                        Holdup::Waiting {
                            reason: unavailable,
                        },
                    )
                    .await;
                }
            }
        }
    }

    fn request_for(
        &self,
        message: &OutboxMessage,
        in_doubt: Option<&InDoubt>,
    ) -> (Request, QueueKey) {
        let chat_post = matches!(
            message.message.recipient,
            Recipient::Chat { .. } | Recipient::Topic { .. }
        );
        let kind = if chat_post {
            SendKind::ChannelPost
        } else if message.message.first_contact {
            SendKind::FirstContact
        } else {
            SendKind::Reply
        };
        let (pool, sticky_session) = match &message.message.sender {
            SenderSelection::MainAccount => (MAIN_POOL, self.topology.main_account.clone()),
            SenderSelection::ChannelAgents { sticky } => {
                let pool = self
                    .pools
                    .get(&message.message.channel_id)
                    .copied()
                    .unwrap_or(PoolId(u32::MAX));
                let sticky = sticky
                    .clone()
                    .or_else(|| in_doubt.map(|doubt| doubt.agent.clone()));
                (pool, sticky)
            }
        };
        let sticky = match &message.message.sender {
            SenderSelection::MainAccount => None,
            SenderSelection::ChannelAgents { .. } => {
                sticky_session.and_then(|s| self.scheduler.agent_key(&s))
            }
        };
        // The agent resolves a username first: for a first message that takes a resolve permit
        // (see `Request::resolves`).
        let resolves = matches!(
            message.message.recipient,
            Recipient::Username { .. } | Recipient::Author { .. }
        );
        let request = match sticky {
            Some(agent) => Request::in_conversation(kind, agent),
            None => Request::new(kind),
        }
        .resolving(resolves)
        .looking_up(matches!(
            message.message.recipient,
            Recipient::Author { .. }
        ));
        let queue = QueueKey {
            pool,
            sticky,
            first_contact: kind == SendKind::FirstContact,
            chat_post,
            resolves,
            looks_up: request.looks_up,
        };
        (request, queue)
    }

    fn push_queue(&mut self, id: OutboxId, front: bool) {
        let Some(queued) = self.messages.get(&id) else {
            return;
        };
        let queue = self.queues.entry(queued.queue).or_default();
        if front {
            queue.push_front(id)
        } else {
            queue.push_back(id)
        }
    }

    fn release_delayed(&mut self, now: Millis) {
        while let Some(Reverse((at, id, front))) = self.delayed.peek().copied() {
            if at > now {
                break;
            }
            self.delayed.pop();
            if self.messages.contains_key(&id) {
                self.push_queue(id, front);
            }
        }
    }

    async fn expire(&mut self, now: Millis) {
        while let Some(Reverse((at, id))) = self.expiries.peek().copied() {
            if at > now {
                break;
            }
            self.expiries.pop();
            if self.in_flight.contains_key(&id) {
                continue; // the attempt decides; a delivered message is not expired
            }
            let Some(queued) = self.messages.remove(&id) else {
                continue;
            };
            // Its id stays in its queue; `serve_one` drops ids with no message (removing it
            // here would cost a scan of the queue per expired message).
            let end = OutboxEnd::Expired {
                last_holdup: queued
                    .last_noted
                    .clone()
                    .or_else(|| queued.message.holdup.clone()),
            };
            tracing::warn!(target: "agent_pool", id = %id, channel = %queued.message.message.channel_id, %end, "⌛ сообщение истекло");
            self.finish(queued.message, None, end).await;
        }
    }

    /// Offers the agents' permits to the queues that can use them, one message per queue in turn
    /// (round robin, kept across passes: see `RoundRobin`), until every queue is blocked, parked
    /// or empty. Queues of different channels share agents; serving each queue until it blocks,
    /// in key order, gave every freed permit to the first channel.
    async fn dispatch(&mut self, now: Millis) {
        if self.stopping {
            return;
        }
        let mut keys: Vec<QueueKey> = self
            .queues
            .iter()
            .filter(|(key, queue)| {
                !queue.is_empty()
                    && !self.parked.contains(key)
                    && self.blocked_until.get(key).is_none_or(|at| *at <= now)
            })
            .map(|(key, _)| *key)
            .collect();
        self.turn.order(&mut keys);
        while !keys.is_empty() {
            let mut open = Vec::with_capacity(keys.len());
            for key in keys {
                self.blocked_until.remove(&key);
                if self.serve_one(key, now).await {
                    self.turn.served(key);
                    open.push(key);
                }
            }
            keys = open;
        }
    }

    /// Sends the first message of `key`'s queue that can go, if any: `true` when one was handed
    /// to an agent (the queue may send more), `false` when the queue is empty, blocked until an
    /// instant, or parked until an agent changes state.
    async fn serve_one(&mut self, key: QueueKey, now: Millis) -> bool {
        while let Some(&id) = self.queues.get(&key).and_then(VecDeque::front) {
            let Some(queued) = self.messages.get(&id) else {
                self.queues.get_mut(&key).map(VecDeque::pop_front);
                continue;
            };
            let request = queued.request;
            match self.scheduler.pick(key.pool, &request, now, &mut self.rng) {
                Decision::Send(agent) => {
                    self.flood_logged.remove(&key.pool);
                    self.queues.get_mut(&key).map(VecDeque::pop_front);
                    self.start_send(id, agent, now).await;
                    // A send the store refused to record blocks its queue for a while: not
                    // served again in this pass (its agent's permit went back, so the pick
                    // would choose it again at once, and again, without end).
                    return self.blocked_until.get(&key).is_none_or(|at| *at <= now);
                }
                Decision::WaitUntil { at, reason } => {
                    if reason == WaitReason::FloodWait && self.flood_logged.insert(key.pool) {
                        tracing::warn!(target: "agent_pool", channel = %self.channel_of(key.pool), "⚠️ Все агенты недоступны (FloodWait)");
                    }
                    self.blocked_until.insert(key, at);
                    return false;
                }
                Decision::WaitForStateChange { reason } => {
                    let holdup = Holdup::Waiting {
                        reason: self.waiting_reason(reason, &request),
                    };
                    self.note(id, holdup).await;
                    self.parked.insert(key);
                    return false;
                }
                Decision::NoAgent(reason) => {
                    let unavailable = self.unavailable(&reason, id);
                    let stuck = self
                        .messages
                        .get(&id)
                        .and_then(|queued| queued.in_doubt.as_ref())
                        .and_then(|doubt| in_doubt_stuck(doubt, &unavailable));
                    if let Some(end) = stuck {
                        // The account that may have sent it is gone: never moved elsewhere, it
                        // ends in a state that says so, for the operator.
                        self.queues.get_mut(&key).map(VecDeque::pop_front);
                        if let Some(queued) = self.messages.remove(&id) {
                            tracing::warn!(target: "agent_pool", id = %id, %end, "⚠️ сообщение, возможно, доставлено аккаунтом, которого больше нет");
                            self.finish(queued.message, None, end).await;
                        }
                        continue;
                    }
                    self.note(
                        id,
                        Holdup::Waiting {
                            reason: unavailable,
                        },
                    )
                    .await;
                    self.parked.insert(key);
                    return false;
                }
            }
        }
        false
    }

    /// The scheduler's reason to wait, with agents named by session.
    fn waiting_reason(&self, reason: StateChangeReason, request: &Request) -> Unavailable {
        match (
            reason,
            request
                .sticky_agent
                .and_then(|agent| self.session_of(agent)),
        ) {
            (StateChangeReason::StickyAgentNotConnected, Some(agent)) => {
                Unavailable::StickyAgentNotConnected { agent }
            }
            _ => Unavailable::AgentsNotConnected,
        }
    }

    /// The scheduler's reason why no agent can take message `id`, with agents named by session.
    /// A key that is no longer in the table names the message's own sticky agent.
    fn unavailable(&self, reason: &NoAgentReason, id: OutboxId) -> Unavailable {
        let sticky = || {
            self.messages.get(&id).and_then(|queued| {
                queued
                    .in_doubt
                    .as_ref()
                    .map(|doubt| doubt.agent.clone())
                    .or_else(|| match &queued.message.message.sender {
                        SenderSelection::ChannelAgents { sticky } => sticky.clone(),
                        SenderSelection::MainAccount => self.topology.main_account.clone(),
                    })
            })
        };
        let named = |agent: AgentKey| self.session_of(agent).or_else(sticky);
        let or_waiting = |agent: Option<SessionName>, make: fn(SessionName) -> Unavailable| {
            agent.map_or(Unavailable::AgentsNotConnected, make)
        };
        match reason {
            NoAgentReason::EmptyPool => Unavailable::EmptyPool,
            NoAgentReason::AllUnavailable { dead, paused } => Unavailable::AllUnavailable {
                dead: *dead,
                paused: *paused,
            },
            NoAgentReason::NoAgentMayWriteFirst => Unavailable::NoAgentMayWriteFirst,
            NoAgentReason::OnlyTheAvoidedAgent { avoided } => {
                or_waiting(named(*avoided), |agent| Unavailable::OnlyTheAvoidedAgent {
                    agent,
                })
            }
            NoAgentReason::StickyAgentDead { agent, dead_reason } => match named(*agent) {
                Some(agent) => Unavailable::StickyAgentDead {
                    agent,
                    dead_reason: *dead_reason,
                },
                None => Unavailable::AgentsNotConnected,
            },
            NoAgentReason::StickyAgentPaused { agent } => or_waiting(named(*agent), |agent| {
                Unavailable::StickyAgentPaused { agent }
            }),
            NoAgentReason::UnknownAgent { .. } => {
                or_waiting(sticky(), |agent| Unavailable::StickyAgentRemoved { agent })
            }
            NoAgentReason::StickyAgentNotInPool { agent, .. } => {
                or_waiting(named(*agent), |agent| Unavailable::StickyAgentNotInPool {
                    agent,
                })
            }
            NoAgentReason::UnknownPool { .. } => Unavailable::NoSuchChannel,
            NoAgentReason::StickyAgentMayNotWriteFirst { agent } => {
                or_waiting(named(*agent), |agent| {
                    Unavailable::StickyAgentMayNotWriteFirst { agent }
                })
            }
        }
    }

    fn session_of(&self, agent: AgentKey) -> Option<SessionName> {
        self.scheduler
            .agent(agent)
            .map(|state| state.session().clone())
    }

    /// Notes what holds a message up, once per change (for the status page and its expiry). A
    /// refusal by the agent of a doubtful attempt settles the doubt (the store does the same).
    async fn note(&mut self, id: OutboxId, holdup: Holdup) {
        let Some(queued) = self.messages.get_mut(&id) else {
            return;
        };
        // A wait is noted once per change; a refusal or a doubt is about the attempt just made,
        // and settles (or sets) its doubt, so it is always written.
        if matches!(holdup, Holdup::Waiting { .. }) && queued.last_noted.as_ref() == Some(&holdup) {
            return;
        }
        if let Holdup::Refused { agent, .. } | Holdup::NotAttempted { agent } = &holdup
            && queued
                .in_doubt
                .as_ref()
                .is_some_and(|doubt| &doubt.agent == agent)
        {
            queued.in_doubt = None;
        }
        queued.last_noted = Some(holdup.clone());
        if let Err(error) = self
            .store
            .note_holdup(id, &holdup, self.clock.now_unix())
            .await
        {
            tracing::error!(target: "agent_pool", %error, "could not note what holds a message up");
        }
    }

    /// Records the attempt before the send: on a node of its own, `Store::begin_attempt`; with
    /// several nodes, `Store::claim_attempt`, which also checks in the same transaction that
    /// this node still holds `session`'s lease with the token it was taken with (a node paused
    /// past its lease's expiry finds another holder there) and takes the message for this node
    /// (another node may hold it). `Ok(Err)`: not this node's to send.
    async fn record_attempt(
        &self,
        id: OutboxId,
        session: &SessionName,
        proposed: RandomId,
    ) -> Result<Result<RandomId, ClaimRefusal>, jobbot_core::store::StoreError> {
        let at = self.clock.now_unix();
        let Some(leased) = &self.leased else {
            return Ok(Ok(self
                .store
                .begin_attempt(id, session, proposed, at)
                .await?));
        };
        let (Some(node), Some(token)) = (&self.lease_node, leased.get(session)) else {
            return Ok(Err(ClaimRefusal::LeaseNotHeld));
        };
        Ok(
            match self
                .store
                .claim_attempt(id, session, node, *token, proposed, at)
                .await?
            {
                AttemptClaim::Taken(random_id) => Ok(random_id),
                AttemptClaim::Refused(refusal) => Err(refusal),
            },
        )
    }

    /// Sends message `id` with `agent`, whose permit `pick` took at `taken` (the pass's instant,
    /// which a long pass leaves behind the clock: the permit counts from then).
    async fn start_send(&mut self, id: OutboxId, agent: AgentKey, taken: Millis) {
        let Some(queued) = self.messages.get(&id) else {
            return;
        };
        let session = self
            .scheduler
            .agent(agent)
            .map(|a| a.session().clone())
            .expect("picked agents exist");
        // From the OS, not the seeded generator: a restart with the same seed would repeat the
        // same ids, and Telegram would take a new message for a repeat of an old one. The id
        // need not be reproducible: the store keeps the one given.
        let proposed = RandomId(rand::random());
        let attempt = self.record_attempt(id, &session, proposed).await;
        let refusal = match attempt {
            Ok(Ok(random_id)) => Ok(random_id),
            // Another node has it, or it ended: let it go here; the next read of the store
            // queues it again if it comes back (not before another node's claim runs out).
            Ok(Err(
                refusal @ (ClaimRefusal::ClaimedElsewhere { .. }
                | ClaimRefusal::InDoubtOn { .. }
                | ClaimRefusal::NotPending),
            )) => {
                tracing::debug!(target: "agent_pool", id = %id, %refusal, "another node has the message");
                let request = queued.request;
                self.scheduler.on_outcome(
                    agent,
                    &request,
                    SendOutcome::NotAttempted,
                    self.clock.now(),
                );
                if let ClaimRefusal::ClaimedElsewhere { until, .. } = refusal {
                    self.claimed_elsewhere
                        .insert(id, self.clock.from_unix(until));
                }
                self.messages.remove(&id);
                return;
            }
            Ok(Err(ClaimRefusal::LeaseNotHeld)) => Err(format!(
                "{session}: this node does not hold the session's lease (moved or expired)"
            )),
            Err(error) => Err(error.to_string()),
        };
        let random_id = match refusal {
            Ok(random_id) => random_id,
            Err(error) => {
                // Without the attempt on record a crash could double-send, and without the
                // lease another node may be using the account: do not send.
                tracing::error!(target: "agent_pool", %error, id = %id, "could not record an attempt; the message stays queued");
                let request = queued.request;
                self.scheduler.on_outcome(
                    agent,
                    &request,
                    SendOutcome::NotAttempted,
                    self.clock.now(),
                );
                let key = queued.queue;
                self.push_queue(id, true);
                self.blocked_until.insert(
                    key,
                    self.clock
                        .now()
                        .saturating_add(std::time::Duration::from_secs(5)),
                );
                return;
            }
        };
        if let Some(queued) = self.messages.get_mut(&id) {
            queued.doubt_before_attempt = queued.in_doubt.replace(InDoubt {
                agent: session.clone(),
                random_id,
            });
        }
        let Some(queued) = self.messages.get(&id) else {
            return;
        };
        let job = SendJob {
            recipient: queued.message.message.recipient.clone(),
            content: queued.message.message.content.clone(),
            random_id,
            typing: typing_for(&queued.message.message),
        };
        self.in_flight.insert(id, random_id);
        let commands = self
            .owners
            .get(&session)
            .map(|owner| owner.commands.clone());
        let internal = self.internal_tx.clone();
        let clock = self.clock;
        tokio::spawn(async move {
            let result = match commands {
                None => Err(SendFailure::NotAttempted),
                Some(commands) => {
                    let (reply, response) = oneshot::channel();
                    if commands
                        .send(OwnerCommand::Send { job, reply })
                        .await
                        .is_err()
                    {
                        Err(SendFailure::NotAttempted)
                    } else {
                        // The owner took the send: without its answer, the call may have been
                        // made.
                        response.await.unwrap_or_else(|_| {
                            Err(SendFailure::Telegram(TelegramError::Network {
                                message: "the agent stopped during the send".into(),
                            }))
                        })
                    }
                }
            };
            let _ = internal.send(Internal::Outcome {
                id,
                agent,
                result,
                taken,
                returned: clock.now(),
            });
        });
    }

    async fn handle_internal(&mut self, internal: Internal) {
        let Internal::Outcome {
            id,
            agent,
            result,
            taken,
            returned,
        } = internal;
        // Whatever becomes of the message, the calls that were made count at their return.
        match &result {
            Err(SendFailure::NotAttempted) => {}
            Err(SendFailure::Resolve(_)) => {
                self.scheduler
                    .call_returned(agent, CallClass::ResolveUsername, taken, returned);
            }
            Ok(_) | Err(SendFailure::Telegram(_)) => {
                self.scheduler
                    .call_returned(agent, CallClass::SendMessage, taken, returned);
                let resolved = self
                    .messages
                    .get(&id)
                    .is_some_and(|queued| queued.request.takes_resolve_permit());
                if resolved {
                    self.scheduler.call_returned(
                        agent,
                        CallClass::ResolveUsername,
                        taken,
                        returned,
                    );
                }
            }
        }
        self.on_outcome(id, agent, result).await;
    }

    async fn on_outcome(
        &mut self,
        id: OutboxId,
        agent: AgentKey,
        result: Result<SentMessage, SendFailure>,
    ) {
        let random_id = self.in_flight.remove(&id);
        let now = self.clock.now();
        let agent_session = self.session_of(agent);
        let Some(queued) = self.messages.get_mut(&id) else {
            return;
        };
        // Which method failed: the resolve a send to a username makes first has limits of its own.
        let mut class = CallClass::SendMessage;
        let result = match result {
            Ok(sent) => Ok(sent),
            Err(SendFailure::Telegram(error)) => Err(error),
            Err(SendFailure::Resolve(error)) => {
                class = CallClass::ResolveUsername;
                Err(error)
            }
            Err(SendFailure::NotAttempted) => {
                // Nothing reached Telegram: the message is as it was before the attempt, and the
                // agent is not usable until its owner says it is connected again.
                let request = queued.request;
                let earlier = queued.doubt_before_attempt.take();
                queued.in_doubt = earlier.clone();
                self.scheduler
                    .on_outcome(agent, &request, SendOutcome::NotAttempted, now);
                self.scheduler
                    .set_connection_state(agent, ConnectionState::Disconnected);
                if earlier.is_none()
                    && let Some(session) = agent_session
                {
                    self.note(id, Holdup::NotAttempted { agent: session }).await;
                }
                self.push_queue(id, true);
                return;
            }
        };
        let Some(queued) = self.messages.get(&id) else {
            return;
        };
        let request = queued.request;
        let channel_id = queued.message.message.channel_id.clone();
        let Some(session) = self.session_of(agent) else {
            return;
        };
        let outcome = match (&result, class) {
            (Err(error), CallClass::ResolveUsername) => SendOutcome::ResolveFailed(error.clone()),
            _ => SendOutcome::from(result.clone()),
        };
        let action = self.scheduler.on_outcome(agent, &request, outcome, now);
        if let (Err(TelegramError::PeerInvalid), CallClass::SendMessage) = (&result, class)
            && let Recipient::KnownPeer {
                username: Some(username),
                ..
            } = &queued.message.message.recipient
        {
            // A peer saved by another session of this account (or before a new login) is not
            // this session's: the sender resolves the person's username itself, with a resolve
            // permit, before they are judged unreachable. Nothing was created (Telegram refused
            // the peer), so the same random id is reused. Not stored: after a restart the saved
            // peer is refused and replaced the same way.
            let username = username.clone();
            tracing::info!(target: "agent_pool", id = %id, agent = %session, "the saved peer is not this session's; resolving the username instead");
            self.save_learning().await;
            if let Some(queued) = self.messages.get_mut(&id) {
                queued.message.message.recipient = Recipient::Username { username };
                queued.in_doubt = None;
            }
            if let Some(message) = self.messages.get(&id).map(|queued| queued.message.clone()) {
                let (request, queue) = self.request_for(&message, None);
                if let Some(queued) = self.messages.get_mut(&id) {
                    queued.request = request;
                    queued.queue = queue;
                }
            }
            self.push_queue(id, true);
            return;
        }
        if let Err(error) = &result {
            self.report_refusal(&session, error, class).await;
        }
        self.save_learning().await;
        let gone = self.account_gone(&session, &channel_id);
        // `start_send` records the random id before the send; an outcome without one is a bug,
        // and the id only names the attempt for the operator.
        let random_id = random_id.unwrap_or(RandomId(0));
        match judge_attempt(&session, random_id, result, action, gone) {
            Verdict::Sent { message } => {
                let queued = self.messages.remove(&id).expect("checked above");
                self.finish_sent(queued.message, session, message).await;
            }
            Verdict::Retry { holdup, retry } => {
                self.note(id, holdup).await;
                match retry {
                    Retry::Now => self.push_queue(id, true),
                    Retry::At(at) => self.delayed.push(Reverse((at, id, true))),
                    Retry::SameAgentAfterReconnect => {
                        if let Some(queued) = self.messages.get_mut(&id) {
                            queued.request = Request::in_conversation(request.kind, agent)
                                .resolving(request.resolves)
                                .looking_up(request.looks_up);
                            queued.queue.sticky = Some(agent);
                            queued.in_doubt = Some(InDoubt {
                                agent: session.clone(),
                                random_id,
                            });
                        }
                        self.push_queue(id, true);
                    }
                }
            }
            Verdict::End(end) => {
                let queued = self.messages.remove(&id).expect("checked above");
                if matches!(end, OutboxEnd::Failed { .. }) {
                    tracing::warn!(target: "agent_pool", id = %id, %end, "❌ сообщение не может быть доставлено");
                }
                self.finish(queued.message, Some(session), end).await;
            }
        }
    }

    /// Whether `session` is gone for a message of `channel_id`: removed from the configuration,
    /// or no longer the main account or one of the channel's agents.
    fn account_gone(&self, session: &SessionName, channel_id: &str) -> Option<AccountGone> {
        if !self.topology.accounts.contains_key(session) {
            return Some(AccountGone::Removed);
        }
        let member = self
            .topology
            .channels
            .get(channel_id)
            .is_some_and(|members| members.contains(session));
        let main = self.topology.main_account.as_ref() == Some(session);
        (!member && !main).then_some(AccountGone::RemovedFromChannel)
    }

    /// Logs and records what a refusal says about the agent.
    /// Stores what the scheduler learned since the last call. A lost write costs only a little
    /// re-learning after a restart, so a store error is logged, not fatal.
    async fn save_learning(&mut self) {
        for (session, learned) in self.scheduler.take_learning_changes() {
            let now = self.clock.now();
            let at = self.clock.to_unix(now);
            let learned = learned.for_storage(now, at.0);
            if let Err(error) = self.store.save_learned_limits(&session, &learned, at).await {
                tracing::error!(target: "agent_pool", %error, session = %session, "could not store learned limits");
            }
        }
    }

    /// A flood wait on another method than `messages.sendMessage` is counted and logged, but
    /// is no agent-wide event: the account goes on sending.
    async fn report_refusal(
        &mut self,
        session: &SessionName,
        error: &TelegramError,
        class: CallClass,
    ) {
        if let TelegramError::FloodWait { seconds } = error {
            self.metrics.call_flood_wait(session, class);
            if class != CallClass::SendMessage {
                self.metrics.flood_wait(session);
                tracing::warn!(target: "agent_pool", session = %session, seconds, class = class.as_str(), "⏳ FloodWait {seconds} с у агента {session} ({})", class.as_str());
                return;
            }
        }
        let event = match error {
            TelegramError::FloodWait { seconds } => {
                self.metrics.flood_wait(session);
                tracing::warn!(target: "agent_pool", session = %session, seconds, "⏳ FloodWait {seconds} с у агента {session}; сообщение уходит другому агенту");
                let _ = self.events.send(EngineEvent::FloodWait {
                    session: session.clone(),
                    seconds: *seconds,
                });
                AgentEvent::FloodWait { seconds: *seconds }
            }
            TelegramError::PeerFlood => {
                self.metrics.peer_flood(session);
                tracing::warn!(target: "agent_pool", session = %session, "🚫 PeerFlood у агента {session}: первые сообщения приостановлены");
                let _ = self.events.send(EngineEvent::PeerFlood {
                    session: session.clone(),
                });
                AgentEvent::PeerFlood
            }
            _ => return,
        };
        self.record_agent_event(session, event).await;
    }

    async fn record_agent_event(&self, session: &SessionName, event: AgentEvent) {
        let record = AgentEventRecord {
            agent: session.clone(),
            event,
            at: self.clock.now_unix(),
        };
        if let Err(error) = self.store.record_agent_event(&record).await {
            tracing::error!(target: "agent_pool", %error, "could not record an agent event");
        }
    }

    async fn finish_sent(
        &mut self,
        message: OutboxMessage,
        agent: SessionName,
        sent: Option<SentMessage>,
    ) {
        let at = self.clock.now_unix();
        if let Err(error) = self.store.mark_sent(message.id, &agent, sent, at).await {
            tracing::error!(target: "agent_pool", %error, id = %message.id, "could not record a sent message");
        }
        tracing::debug!(target: "agent_pool", id = %message.id, agent = %agent, "✉️ отправлено");
        self.metrics
            .finished(message.message.kind, OutboxStatus::Sent, Some(&agent));
        let _ = self.events.send(EngineEvent::OutboxFinished {
            id: message.id,
            channel_id: message.message.channel_id.clone(),
            kind: message.message.kind,
            status: OutboxStatus::Sent,
            agent: Some(agent.clone()),
        });
        self.wake_waiters(
            message.id,
            Delivery::Sent {
                agent,
                message: sent,
            },
        );
    }

    /// Records how message `id` ended. With several nodes, only while no other node's claim
    /// holds it (its expiry here must not end a message another node is sending): `false` when
    /// another node holds it or has ended it, and it is let go here — the next read of the
    /// store tells its waiters how it ended, or queues it again once the claim has run out.
    async fn record_end(&mut self, id: OutboxId, end: &OutboxEnd) -> bool {
        let at = self.clock.now_unix();
        let recorded = match &self.lease_node {
            None => self.store.mark_ended(id, end, at).await.map(Ok),
            Some(node) => self.store.end_unclaimed(id, end, node, at).await,
        };
        match recorded {
            Ok(Ok(())) => true,
            Ok(Err(refusal)) => {
                tracing::debug!(target: "agent_pool", id = %id, %refusal, "another node decides how the message ends");
                if let ClaimRefusal::ClaimedElsewhere { until, .. } = refusal {
                    self.claimed_elsewhere
                        .insert(id, self.clock.from_unix(until));
                }
                self.messages.remove(&id);
                false
            }
            Err(error) => {
                tracing::error!(target: "agent_pool", %error, id = %id, "could not record how a message ended");
                true
            }
        }
    }

    async fn finish(&mut self, message: OutboxMessage, agent: Option<SessionName>, end: OutboxEnd) {
        if !self.record_end(message.id, &end).await {
            return;
        }
        self.metrics
            .finished(message.message.kind, end.status(), agent.as_ref());
        let _ = self.events.send(EngineEvent::OutboxFinished {
            id: message.id,
            channel_id: message.message.channel_id.clone(),
            kind: message.message.kind,
            status: end.status(),
            agent,
        });
        self.wake_waiters(message.id, Delivery::from(end));
    }

    fn notify_final(&mut self, message: &OutboxMessage) {
        if let Some(delivery) = message.delivery() {
            self.wake_waiters(message.id, delivery);
        }
    }

    fn wake_waiters(&mut self, id: OutboxId, delivery: Delivery) {
        for waiter in self.waiters.remove(&id).unwrap_or_default() {
            let _ = waiter.send(delivery.clone());
        }
    }

    /// Applies an owner's report, unless the owner was stopped since (paused, removed, replaced):
    /// then the report is stale and the session's state is what the dispatcher set.
    async fn on_link_report(&mut self, report: LinkReport) {
        let current = self
            .owners
            .get(&report.session)
            .is_some_and(|owner| owner.generation == report.generation);
        if current {
            self.on_link_state(report.session, report.state).await;
        }
    }

    async fn on_link_state(&mut self, session: SessionName, state: LinkState) {
        // With several nodes: the account's user is on record before it sends anything, so
        // every node's CRM knows its posts as jobbot's own (not an operator's answer).
        if let (Some(_), LinkState::Ready { me }) = (&self.leased, &state)
            && let Err(error) = self.store.remember_account_user(&session, me.user_id).await
        {
            tracing::warn!(target: "agent_pool", %error, %session, "could not record the account's user");
        }
        if let Some(agent) = self.scheduler.agent_key(&session) {
            let connection = match &state {
                LinkState::Ready { .. } => ConnectionState::Ready,
                LinkState::Connecting => ConnectionState::Connecting,
                LinkState::Dead { reason } => ConnectionState::Dead { reason: *reason },
                LinkState::Paused => ConnectionState::Paused,
                LinkState::Disconnected { .. }
                | LinkState::NotLoggedIn
                | LinkState::Stopped
                | LinkState::ElsewhereInCluster => ConnectionState::Disconnected,
            };
            self.scheduler.set_connection_state(agent, connection);
        }
        if state.is_ready() {
            // An agent came back: every waiting queue may move now.
            self.parked.clear();
            self.blocked_until.clear();
        } else if matches!(state, LinkState::Dead { .. }) {
            self.parked.clear();
        }
        let previous = self.links.borrow().get(&session).cloned();
        let event = match (&previous, &state) {
            (Some(LinkState::Dead { .. }), LinkState::Dead { .. }) => None,
            (_, LinkState::Dead { reason }) => Some(AgentEvent::Dead { reason: *reason }),
            (Some(LinkState::Disconnected { .. }), LinkState::Ready { .. }) => {
                Some(AgentEvent::Reconnected)
            }
            _ => None,
        };
        if let Some(event) = event {
            self.record_agent_event(&session, event).await;
        }
        self.set_link(session, state);
    }

    /// Records and publishes an agent's link state (the watch for readers of state, the event for
    /// the live feed).
    fn set_link(&mut self, session: SessionName, state: LinkState) {
        let changed = self.links.send_if_modified(|links| {
            if links.get(&session) == Some(&state) {
                return false;
            }
            links.insert(session.clone(), state.clone());
            true
        });
        if changed {
            let _ = self.events.send(EngineEvent::AgentState { session, state });
        }
    }

    /// Stops a session's owner: it disconnects and releases the session in the background, and
    /// the session's next owner waits for that.
    fn retire_owner(&mut self, session: &SessionName) {
        if let Some(owner) = self.owners.remove(session) {
            drop(owner.commands); // the owner disconnects and releases the session
            let tasks = self.retired.entry(session.clone()).or_default();
            tasks.retain(|task| !task.is_finished());
            tasks.push(owner.task);
        }
    }

    /// Applies a new configuration: owners start and stop, pools change membership. Pending
    /// messages stay queued; those of removed channels wait (and expire) rather than vanish.
    pub(crate) fn reconfigure(&mut self, topology: Topology) {
        let now = self.clock.now();
        let wanted: BTreeMap<SessionName, _> = topology.accounts.clone();
        let stale: Vec<SessionName> = self
            .owners
            .keys()
            .filter(|session| !wanted.contains_key(*session))
            .cloned()
            .collect();
        let removed: Vec<SessionName> = self
            .links
            .borrow()
            .keys()
            .filter(|session| !wanted.contains_key(*session))
            .cloned()
            .collect();
        for session in stale.iter().chain(&removed) {
            if self.owners.contains_key(session) {
                tracing::info!(target: "agent_pool", session = %session, "агент {session} удалён из конфигурации");
                self.retire_owner(session);
            }
            if let Some(agent) = self.scheduler.agent_key(session) {
                self.scheduler.remove_agent(agent);
            }
            if self
                .links
                .send_if_modified(|links| links.remove(session).is_some())
            {
                let _ = self.events.send(EngineEvent::AgentState {
                    session: session.clone(),
                    state: LinkState::Stopped,
                });
            }
        }
        let options_changed: Vec<SessionName> = wanted
            .iter()
            .filter(|(session, (_, options))| {
                self.topology
                    .accounts
                    .get(*session)
                    .is_some_and(|(_, old)| old != options)
            })
            .map(|(session, _)| session.clone())
            .collect();
        self.topology.accounts = wanted.clone();
        for (session, (pacing, _)) in &wanted {
            let new = self.scheduler.agent_key(session).is_none();
            let agent = self.scheduler.add_agent(session.clone(), *pacing, now);
            if let Some(learned) = self.stored_learning.remove(session) {
                self.scheduler
                    .restore_learned(agent, learned, now, self.clock.to_unix(now).0);
            }
            if new {
                // A session this process has not used yet (the process just started, or the
                // operator added it) may have been used a moment ago: by the run before a crash
                // or a restart, by another tool. Telegram counted those calls; this scheduler
                // never saw them, so its limiters start empty rather than with a full burst.
                self.scheduler.used_elsewhere_until(agent, now);
            }
            if self.paused.contains(session) {
                // A configuration change never undoes a pause.
                self.scheduler
                    .set_connection_state(agent, ConnectionState::Paused);
                self.set_link(session.clone(), LinkState::Paused);
            } else if !self.is_leased(session) {
                self.scheduler
                    .set_connection_state(agent, ConnectionState::Disconnected);
                self.set_link(session.clone(), LinkState::ElsewhereInCluster);
            } else if !self.owners.contains_key(session) {
                self.start_owner(session);
            } else if options_changed.contains(session) {
                // A new proxy: reconnect through it (the old owner releases the session first).
                tracing::info!(target: "agent_pool", session = %session, "агент {session}: новые параметры подключения");
                self.retire_owner(session);
                self.start_owner(session);
            }
        }
        let main: Vec<SessionName> = topology.main_account.iter().cloned().collect();
        self.set_pool(MAIN_POOL, &main);
        let removed: Vec<String> = self
            .pools
            .keys()
            .filter(|channel| !topology.channels.contains_key(*channel))
            .cloned()
            .collect();
        for channel in removed {
            if let Some(pool) = self.pools.remove(&channel) {
                self.scheduler.remove_pool(pool);
            }
        }
        for (channel, sessions) in &topology.channels {
            let pool = match self.pools.get(channel) {
                Some(pool) => *pool,
                None => {
                    let pool = PoolId(self.next_pool);
                    self.next_pool += 1;
                    self.pools.insert(channel.clone(), pool);
                    pool
                }
            };
            self.set_pool(pool, sessions);
        }
        self.topology = topology;
        // Requests name pools and agents by key: recompute every waiting message's queue.
        let ids: Vec<OutboxId> = self
            .messages
            .keys()
            .copied()
            .filter(|id| !self.in_flight.contains_key(id))
            .collect();
        self.queues.clear();
        self.parked.clear();
        self.blocked_until.clear();
        let delayed: HashSet<OutboxId> =
            self.delayed.iter().map(|Reverse((_, id, _))| *id).collect();
        let mut ordered = ids;
        ordered.sort();
        for id in ordered {
            let Some(mut queued) = self.messages.remove(&id) else {
                continue;
            };
            let (request, queue) = self.request_for(&queued.message, queued.in_doubt.as_ref());
            queued.request = request;
            queued.queue = queue;
            self.messages.insert(id, queued);
            if self.orphan_agent(id).is_some() {
                self.orphans.insert(id);
            } else if self.orphans.remove(&id) || !delayed.contains(&id) {
                self.push_queue(id, false);
            }
        }
    }

    /// Whether this node may use `session`: always on a node of its own, else while it holds
    /// the session's lease.
    fn is_leased(&self, session: &SessionName) -> bool {
        self.leased
            .as_ref()
            .is_none_or(|leased| leased.contains_key(session))
    }

    /// Stops the owners of sessions whose lease is gone (before the lease can expire: the keeper
    /// sends this a drift margin ahead) and starts those of sessions newly leased.
    fn set_leased(&mut self, leased: HashMap<SessionName, FencingToken>) {
        let before = self.leased.replace(leased);
        let configured: Vec<SessionName> = self.topology.accounts.keys().cloned().collect();
        for session in &configured {
            let was = before.as_ref().is_none_or(|set| set.contains_key(session));
            let is = self.is_leased(session);
            if was && !is {
                tracing::info!(target: "agent_pool", session = %session, "агент {session}: аренда сессии у другого узла");
                self.retire_owner(session);
                if let Some(agent) = self.scheduler.agent_key(session) {
                    self.scheduler
                        .set_connection_state(agent, ConnectionState::Disconnected);
                }
                if !self.paused.contains(session) {
                    self.set_link(session.clone(), LinkState::ElsewhereInCluster);
                }
            } else if is && !was && !self.paused.contains(session) {
                if let Some(agent) = self.scheduler.agent_key(session) {
                    self.scheduler
                        .set_connection_state(agent, ConnectionState::Connecting);
                    // Its last holder may have sent a moment ago.
                    self.scheduler.used_elsewhere_until(agent, self.clock.now());
                }
                self.start_owner(session);
            }
        }
    }

    fn pause(&mut self, session: &SessionName) {
        if !self.paused.insert(session.clone()) {
            return;
        }
        tracing::info!(target: "agent_pool", session = %session, "⏸️ агент {session} приостановлен");
        self.retire_owner(session);
        if let Some(agent) = self.scheduler.agent_key(session) {
            self.scheduler
                .set_connection_state(agent, ConnectionState::Paused);
        }
        self.set_link(session.clone(), LinkState::Paused);
    }

    /// Starts the owner of a configured, unpaused session that has none. It connects once the
    /// session's earlier owners (if any are still disconnecting) have released it.
    fn start_owner(&mut self, session: &SessionName) {
        if self.paused.contains(session)
            || !self.is_leased(session)
            || self.owners.contains_key(session)
        {
            return;
        }
        let Some((_, options)) = self.topology.accounts.get(session) else {
            return;
        };
        let mut context = (self.owner_context)();
        context.options = options.clone();
        let predecessors = self.retired.remove(session).unwrap_or_default();
        self.next_generation += 1;
        self.owners.insert(
            session.clone(),
            spawn_owner(session.clone(), context, self.next_generation, predecessors),
        );
        self.set_link(session.clone(), LinkState::Connecting);
    }

    fn set_pool(&mut self, pool: PoolId, sessions: &[SessionName]) {
        let members: Vec<AgentKey> = sessions
            .iter()
            .filter_map(|session| self.scheduler.agent_key(session))
            .collect();
        if let Err(error) = self.scheduler.set_pool(pool, &members) {
            tracing::error!(target: "agent_pool", %error, "could not set a pool's agents");
        }
    }

    fn channel_of(&self, pool: PoolId) -> String {
        if pool == MAIN_POOL {
            return "main account".into();
        }
        self.pools
            .iter()
            .find(|(_, p)| **p == pool)
            .map(|(c, _)| c.clone())
            .unwrap_or_default()
    }

    fn agent_views(&self, channel: Option<&str>) -> Vec<AgentView> {
        let now = self.clock.now();
        let sessions: Vec<SessionName> = match channel {
            Some(channel) => self
                .topology
                .channels
                .get(channel)
                .cloned()
                .unwrap_or_default(),
            None => self.topology.accounts.keys().cloned().collect(),
        };
        let statuses: HashMap<AgentKey, AgentStatus> = self
            .scheduler
            .status(now)
            .into_iter()
            .map(|status| (status.agent, status))
            .collect();
        sessions
            .into_iter()
            .filter_map(|session| {
                let agent = self.scheduler.agent_key(&session)?;
                let scheduling = statuses.get(&agent)?.clone();
                Some(AgentView {
                    channels: self
                        .topology
                        .channels
                        .iter()
                        .filter(|(_, members)| members.contains(&session))
                        .map(|(channel, _)| channel.clone())
                        .collect(),
                    link: self
                        .links
                        .borrow()
                        .get(&session)
                        .cloned()
                        .unwrap_or(LinkState::Stopped),
                    flood_wait_until_unix_ms: scheduling
                        .flood_wait_until
                        .map(|at| self.clock.to_unix(at).0),
                    peer_flood_until_unix_ms: scheduling
                        .peer_flood_until
                        .map(|at| self.clock.to_unix(at).0),
                    scheduling,
                    session,
                })
            })
            .collect()
    }
}

/// How long to show "typing…" before a message: only for a human-like message to a person
/// (an auto-response or a relayed reply that was given a delay, i.e. not `instant_response`),
/// sized to the text like a fast typist, and at most 5 s (about how long Telegram shows one
/// typing action). Derived here rather than stored with the message, so the store's types (and
/// both backends) stay as they are: the delay decides, and the delay is stored.
fn typing_for(message: &jobbot_core::store::NewOutboxMessage) -> Option<std::time::Duration> {
    use jobbot_core::store::OutboxKind;
    let human = matches!(
        message.kind,
        OutboxKind::AutoResponse | OutboxKind::RelayToContact
    ) && message.not_before.is_some();
    human.then(|| {
        let characters = message.content.text.chars().count() as u64;
        std::time::Duration::from_millis((characters * 40).clamp(1_000, 5_000))
    })
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
