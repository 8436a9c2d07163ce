//! The scheduling policy of an agent pool: which agent sends a message, when, and what to do
//! with each outcome. Pure and time-injected: every decision is a function of the table's state,
//! the request, `now` and a random source passed in, so paused-time tests and benchmarks can
//! drive hours of traffic in milliseconds. The async pool that sends is built on top of it.
//!
//! # Use
//!
//! ```
//! use jobbot_core::config::Pacing;
//! use jobbot_core::ids::SessionName;
//! use jobbot_core::scheduling::{AgentScheduler, ConnectionState, Decision, Millis, OutcomeAction, Request, SendOutcome, SchedulerSettings};
//! use rand::SeedableRng;
//!
//! let mut rng = rand::rngs::StdRng::seed_from_u64(7);
//! let mut scheduler = AgentScheduler::new(SchedulerSettings::default());
//! let agent = scheduler.add_agent(SessionName::parse("agent_1").unwrap(), Pacing::default());
//! scheduler.set_connection_state(agent, ConnectionState::Ready);
//!
//! let now = Millis(0);
//! let request = Request::first_contact();
//! match scheduler.pick(&request, now, &mut rng) {
//!     // `Send` holds a reservation: report exactly one outcome for it.
//!     Decision::Send(chosen) => {
//!         let action = scheduler.on_outcome(chosen, &request, SendOutcome::Sent, now);
//!         assert_eq!(action, OutcomeAction::Done);
//!     }
//!     Decision::WaitUntil { at, .. } => { /* sleep until `at`, then pick again */ }
//!     Decision::WaitForStateChange { .. } => { /* pick again when an agent connects */ }
//!     Decision::NoAgent(reason) => panic!("{reason}"),
//! }
//! ```
//!
//! # Policy
//!
//! * **Candidates** for a request are the agents that are `Ready` (connected and authorised),
//!   outside any FloodWait, conforming to their pacing limiter ([`Gcra`], ~20/min with a small
//!   burst by default, per agent), and, for a first contact, outside a `PEER_FLOOD` pause and
//!   under the rolling 24 h cold-DM cap.
//! * **Choice** is the less busy of two random candidates (power of two choices), comparing
//!   in-flight sends, then pacing headroom, then sends in the last minute; a full tie is a coin
//!   flip. There is never a fixed first agent: the closest peer's "primary first" rule piled all
//!   load on one account until it got a 14.8 h FloodWait (tg_content_factory #495/#496).
//!   Mitzenmacher (*How Useful Is Old Information?*, TPDS 2000) shows that always taking the
//!   apparently least-loaded server herds when load figures are stale, as in-flight counts are
//!   between a pick and its outcome, while the better of two random choices stays near optimal;
//!   Envoy's `least_request` default is the same P2C. It also costs O(1) per pick (below).
//! * **Sticky conversations**: a request with `sticky_agent` only ever goes to that agent, and
//!   waits for it. The contact knows only that account; moving the conversation silently would
//!   have a stranger continue it. If the sticky agent is dead or paused the answer is
//!   [`Decision::NoAgent`] with a reason the operator can act on, never a silent switch.
//! * **Waiting** is exact: when nothing can send now, [`Decision::WaitUntil`] carries the earliest
//!   instant some agent can (the minimum over agents of the maximum of its FloodWait end, its
//!   pacing instant, and for first contacts its PeerFlood end and cold-cap reset), and a pick at
//!   that instant returns `Send`. No blind exponential backoff.
//! * **Outcomes** ([`AgentScheduler::on_outcome`]) apply the failover rules and return an
//!   [`OutcomeAction`] for the pool; see its variants.
//!
//! # Cost of a pick
//!
//! The table keeps an index of `Ready` agents (O(1) insert and remove) and, per agent, a cached
//! pair of instants from which its time-based limits allow a send (`SendableAt`, 16 bytes).
//! A pick samples the ready index uniformly, rejecting agents that cannot send now, until it has
//! two distinct candidates or has made [`SchedulerSettings::sampling_attempts`] draws. When a
//! fraction `p` of ready agents can send, that takes `2 / p` draws on average, so the common case
//! (most agents have a permit) is O(1) whatever the pool size: about 0.4–2 µs per pick and
//! outcome at 10,000 agents in a release build on the shared 2-core box. Only when candidates are
//! rare (`p` well under `2 / sampling_attempts`) or absent does it fall back to one scan of the
//! cached instants, which also yields the exact earliest instant to wait for: about 10–30 µs at
//! 10,000 agents. That is the saturated case, where the pool sleeps until the returned instant
//! anyway; if the benchmark shows it matters, a min-heap of cached instants (lazily re-keyed)
//! makes it O(log n).
//!
//! # Time
//!
//! [`Millis`] is milliseconds since an epoch the caller chooses (e.g. the pool's start
//! `tokio::time::Instant`). Nothing here reads a clock.

mod counters;
mod gcra;

#[cfg(test)]
mod tests;

use std::fmt;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::config::Pacing;
use crate::ids::SessionName;
use crate::telegram::{DeadReason, TelegramError};

use counters::{ColdDmWindow, RecentSends};
pub use gcra::Gcra;

/// An instant, in milliseconds since an epoch the caller chooses.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Millis(pub u64);

impl Millis {
    pub const ZERO: Self = Self(0);
    /// "Never": a cold-DM cap of zero, for example. Compares after every real instant.
    pub const NEVER: Self = Self(u64::MAX);

    /// Truncates to whole milliseconds. The pool converts back with [`Millis::as_duration`], and
    /// `from_duration(as_duration(m)) == m`, so waking at a returned instant sees that instant.
    pub fn from_duration(since_epoch: Duration) -> Self {
        Self(u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn as_duration(self) -> Duration {
        Duration::from_millis(self.0)
    }

    pub fn saturating_add(self, duration: Duration) -> Self {
        Self(
            self.0
                .saturating_add(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)),
        )
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ms", self.0)
    }
}

/// An agent's handle in one [`AgentScheduler`]: its index, stable for the table's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AgentKey(pub u32);

impl fmt::Display for AgentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "agent #{}", self.0)
    }
}

/// Whether an agent's session is usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum ConnectionState {
    /// Opening its session; will become `Ready` or fail.
    Connecting,
    /// Connected and authorised: the only state that can send.
    Ready,
    /// The connection dropped; the pool reconnects it.
    Disconnected,
    /// Telegram refuses the session until a new login.
    Dead { reason: DeadReason },
    /// Taken out of rotation by the operator.
    Paused,
}

/// What kind of message a request sends; it decides which limits apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendKind {
    /// A first message to a stranger (a vacancy's author): pacing, the cold-DM cap and
    /// `PEER_FLOOD` pauses all apply.
    FirstContact,
    /// A message to someone who wrote to us, or in a conversation they answered: pacing only.
    Reply,
    /// A post to a channel or group: pacing only.
    ChannelPost,
}

/// One message waiting for an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub kind: SendKind,
    /// The conversation's agent: the request goes there or nowhere.
    pub sticky_agent: Option<AgentKey>,
    /// An agent not to choose for a load-balanced request: the one that just failed it in a way
    /// its cooldowns do not already exclude (see [`OutcomeAction::RetryOtherAgent`]).
    pub avoid_agent: Option<AgentKey>,
}

impl Request {
    pub fn new(kind: SendKind) -> Self {
        Self {
            kind,
            sticky_agent: None,
            avoid_agent: None,
        }
    }

    /// A cold DM, load-balanced over the pool.
    pub fn first_contact() -> Self {
        Self::new(SendKind::FirstContact)
    }

    /// A message in an existing conversation, bound to its agent.
    pub fn in_conversation(kind: SendKind, agent: AgentKey) -> Self {
        Self {
            kind,
            sticky_agent: Some(agent),
            avoid_agent: None,
        }
    }

    /// The same request, to be retried away from `agent` (the pool applies this on
    /// [`OutcomeAction::RetryOtherAgent`]).
    pub fn avoiding(self, agent: AgentKey) -> Self {
        Self {
            avoid_agent: Some(agent),
            ..self
        }
    }
}

/// The answer of [`AgentScheduler::pick`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "decision")]
pub enum Decision {
    /// Send through this agent now. The pacing permit (and the cold-DM slot, for a first
    /// contact) is already taken and the agent's in-flight count raised: report exactly one
    /// [`SendOutcome`] for it, `NotAttempted` if the pool gives up before sending.
    Send(AgentKey),
    /// No agent can send now; one can at exactly `at` (if nothing else takes it first).
    WaitUntil { at: Millis, reason: WaitReason },
    /// No agent can send and no instant is known: the only possible agents are connecting or
    /// reconnecting. Pick again when an agent's connection state changes.
    WaitForStateChange { reason: StateChangeReason },
    /// No agent can take this request until the operator acts.
    NoAgent(NoAgentReason),
}

/// Which limit the earliest agent is waiting on (the last of its limits to expire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitReason {
    Pacing,
    FloodWait,
    PeerFlood,
    ColdDmDailyCap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum StateChangeReason {
    #[error("the conversation's agent is not connected yet")]
    StickyAgentNotConnected,
    #[error("every agent that could send is connecting or reconnecting")]
    AgentsNotConnected,
}

/// Why no agent will take a request without the operator's help.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum NoAgentReason {
    #[error("the pool has no agents")]
    EmptyPool,
    #[error("every agent is dead or paused ({dead} dead, {paused} paused)")]
    AllUnavailable { dead: u32, paused: u32 },
    #[error("no agent may write first to strangers (every usable agent has a cold-DM cap of 0)")]
    NoAgentMayWriteFirst,
    #[error("no agent other than {avoided} can take it")]
    OnlyTheAvoidedAgent { avoided: AgentKey },
    /// The contact knows only this account, so the conversation cannot move to another agent
    /// without the contact noticing a stranger took over; log the agent in again to continue.
    #[error(
        "the conversation's agent ({agent}) is dead: {dead_reason}; log it in again to continue the conversation"
    )]
    StickyAgentDead {
        agent: AgentKey,
        dead_reason: DeadReason,
    },
    #[error("the conversation's agent ({agent}) is paused; resume it to continue the conversation")]
    StickyAgentPaused { agent: AgentKey },
    #[error("the conversation's agent ({agent}) is no longer in this pool")]
    UnknownAgent { agent: AgentKey },
    #[error(
        "the conversation's agent ({agent}) may not write first to strangers (cold-DM cap of 0)"
    )]
    StickyAgentMayNotWriteFirst { agent: AgentKey },
}

/// What happened to a send the scheduler chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    Sent,
    Failed(TelegramError),
    /// The pool dropped the send before calling Telegram (shutdown, cancelled message). The
    /// permit stays taken: it is not worth un-spending a few seconds of pacing.
    NotAttempted,
}

impl<T> From<Result<T, TelegramError>> for SendOutcome {
    fn from(result: Result<T, TelegramError>) -> Self {
        match result {
            Ok(_) => Self::Sent,
            Err(error) => Self::Failed(error),
        }
    }
}

/// What the pool does next with the message, after [`AgentScheduler::on_outcome`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum OutcomeAction {
    /// Delivered (or abandoned by the pool): nothing more to do.
    Done,
    /// Pick again at once, with `request.avoiding(agent)`. Telegram rejected the send before
    /// delivering it (FloodWait, PeerFlood, a dead session), so another account cannot produce a
    /// duplicate. The failed agent is also excluded by its new cooldown where it has one.
    RetryOtherAgent,
    /// A sticky conversation whose agent must cool down: pick again at `at` (the conversation
    /// cannot move to another account).
    RetrySameAgentAfter { at: Millis },
    /// The connection dropped mid-send: Telegram may or may not have delivered it. Retry on the
    /// *same* agent with the *same* `random_id` once it reconnects: MTProto deduplicates by
    /// `random_id` per account, while a retry on another account could message the person twice.
    /// The pool re-picks with `sticky_agent` set to this agent, which answers
    /// [`Decision::WaitForStateChange`] until it is `Ready` again.
    RetrySameAgentAfterReconnect,
    /// Slow mode in that chat: only this chat waits; the agent is not cooled down.
    RetryChatAfter { at: Millis },
    /// The recipient cannot be reached by any account (privacy settings, no such username, not
    /// a person). Not the agent's fault: its state is unchanged, and no other agent is tried.
    FailRecipient { error: TelegramError },
    /// Give up on the message, for a reason the operator should see.
    FailPermanently { reason: FailureReason },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum FailureReason {
    #[error(
        "the conversation's agent is dead ({dead_reason}); the conversation cannot move to another account"
    )]
    StickyAgentDead { dead_reason: DeadReason },
    #[error("this agent may not write in that chat: {error}")]
    ChatForbidden { error: TelegramError },
    /// An error the policy has no rule for; not retried blindly, so a recipient-level failure
    /// cannot burn every agent. The outbox may re-queue it by hand.
    #[error("unclassified Telegram error: {error}")]
    Unclassified { error: TelegramError },
}

/// Knobs of the policy itself (pacing is per agent, in [`Pacing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulerSettings {
    /// Extra FloodWait cooldown, as a percentage of the wait Telegram asked for...
    pub flood_wait_margin_percent: u32,
    /// ...plus this fixed amount. Telegram rounds the wait to whole seconds and counts from its
    /// own receipt of the request, and our clock and the network add their own skew; repeating
    /// the call even slightly early earns a new, often longer FloodWait (peers saw them escalate
    /// to 14.8 h). 10 % + 1 s covers the rounding for short waits and the drift for long ones.
    pub flood_wait_margin_fixed: Duration,
    /// Random draws over the ready agents before a pick falls back to a scan.
    pub sampling_attempts: u32,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        Self {
            flood_wait_margin_percent: 10,
            flood_wait_margin_fixed: Duration::from_secs(1),
            sampling_attempts: 16,
        }
    }
}

impl SchedulerSettings {
    /// When an agent told to wait `seconds` at `now` may send again.
    pub fn flood_wait_end(&self, now: Millis, seconds: u32) -> Millis {
        let asked = Duration::from_secs(u64::from(seconds));
        let proportional = asked * self.flood_wait_margin_percent / 100;
        now.saturating_add(asked + proportional + self.flood_wait_margin_fixed)
    }
}

/// The last failure of an agent, for the status page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    pub at: Millis,
    pub error: TelegramError,
}

/// One agent's scheduling state. Read it through [`AgentScheduler::agent`]; it changes only
/// through the scheduler, which keeps its ready index consistent.
#[derive(Debug, Clone)]
pub struct AgentState {
    session: SessionName,
    pacing: Pacing,
    connection: ConnectionState,
    in_flight: u32,
    gcra: Gcra,
    flood_wait_until: Millis,
    peer_flood_until: Millis,
    cold_dms: ColdDmWindow,
    recent_sends: RecentSends,
    last_error: Option<LastError>,
}

impl AgentState {
    fn new(session: SessionName, pacing: Pacing) -> Self {
        Self {
            session,
            pacing,
            connection: ConnectionState::Connecting,
            in_flight: 0,
            gcra: Gcra::new(pacing.messages_per_minute, pacing.burst),
            flood_wait_until: Millis::ZERO,
            peer_flood_until: Millis::ZERO,
            cold_dms: ColdDmWindow::default(),
            recent_sends: RecentSends::new(),
            last_error: None,
        }
    }

    pub fn session(&self) -> &SessionName {
        &self.session
    }
    pub fn pacing(&self) -> Pacing {
        self.pacing
    }
    pub fn connection(&self) -> ConnectionState {
        self.connection
    }
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }
    pub fn gcra(&self) -> &Gcra {
        &self.gcra
    }
    pub fn flood_wait_until(&self) -> Millis {
        self.flood_wait_until
    }
    pub fn peer_flood_until(&self) -> Millis {
        self.peer_flood_until
    }
    pub fn cold_dms_last_day(&self, now: Millis) -> u32 {
        self.cold_dms.count(now)
    }
    pub fn last_error(&self) -> Option<&LastError> {
        self.last_error.as_ref()
    }

    /// When this (ready) agent can next send a `kind` message: `Ok(())` now, or the exact instant
    /// and the limit that expires last. `Millis::NEVER` means never (a cold-DM cap of 0).
    fn ready_at(&self, kind: SendKind, now: Millis) -> Result<(), (Millis, WaitReason)> {
        let mut latest: Option<(Millis, WaitReason)> = None;
        let mut consider = |at: Millis, reason: WaitReason| {
            if at > now && latest.is_none_or(|(known, _)| at > known) {
                latest = Some((at, reason));
            }
        };
        consider(self.flood_wait_until, WaitReason::FloodWait);
        if let Err(at) = self.gcra.check(now) {
            consider(at, WaitReason::Pacing);
        }
        if kind == SendKind::FirstContact {
            consider(self.peer_flood_until, WaitReason::PeerFlood);
            if let Some(at) = self
                .cold_dms
                .blocked_until(now, self.pacing.cold_dms_per_day)
            {
                consider(at, WaitReason::ColdDmDailyCap);
            }
        }
        match latest {
            None => Ok(()),
            Some(wait) => Err(wait),
        }
    }

    /// The instants from which this agent's time-based limits allow a send (see [`SendableAt`]).
    fn sendable_at(&self) -> SendableAt {
        let any = self.flood_wait_until.max(self.gcra.earliest());
        let first_contact = any
            .max(self.peer_flood_until)
            .max(self.cold_dms.fits_from(self.pacing.cold_dms_per_day));
        SendableAt { any, first_contact }
    }

    /// The least-busy order: fewer in-flight sends, then more pacing headroom, then fewer sends
    /// in the last minute. Smaller is less busy.
    fn load(&self, now: Millis) -> (u32, std::cmp::Reverse<u32>, u32) {
        (
            self.in_flight,
            std::cmp::Reverse(self.gcra.headroom(now)),
            self.recent_sends.last_minute(now),
        )
    }
}

/// The first instant each kind of send is allowed by an agent's time-based limits, cached per
/// agent in a compact array so that a scan over 10,000 agents reads 160 KB of these instead of
/// every agent's whole state. Every limit is a fixed instant (GCRA earliest, FloodWait end,
/// PeerFlood end, the cold-DM window's next free slot), so the cache only changes when the agent
/// sends or an outcome or an edit changes a limit, and `refresh_sendable_at` runs at each.
/// Invariant: `sendable_at[k] == agents[k].sendable_at()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SendableAt {
    any: Millis,
    first_contact: Millis,
}

impl SendableAt {
    fn for_kind(self, kind: SendKind) -> Millis {
        if kind == SendKind::FirstContact {
            self.first_contact
        } else {
            self.any
        }
    }
}

/// A snapshot of one agent for the web status page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub agent: AgentKey,
    pub session: SessionName,
    pub state: ConnectionState,
    pub in_flight: u32,
    /// Set while a FloodWait (with margin) is running.
    pub flood_wait_until: Option<Millis>,
    /// Set while first contacts are paused after `PEER_FLOOD`.
    pub peer_flood_until: Option<Millis>,
    /// Sends available back to back right now, `0..=burst`.
    pub pacing_headroom: u32,
    pub cold_dms_last_day: u32,
    pub cold_dms_per_day: u32,
    /// Successful sends, each figure within one bucket (5 s, 5 min, 1 h) of exact.
    pub sent_last_minute: u32,
    pub sent_last_hour: u32,
    pub sent_last_day: u32,
    pub last_error: Option<LastError>,
}

/// The scheduling state of one pool's agents. See the module documentation.
#[derive(Debug, Clone)]
pub struct AgentScheduler {
    settings: SchedulerSettings,
    agents: Vec<AgentState>,
    /// The `Ready` agents, in no particular order, for O(1) uniform sampling.
    ready: Vec<AgentKey>,
    /// Each agent's position in `ready`, or `None`. Invariant: `ready[ready_position[k]] == k`.
    ready_position: Vec<Option<u32>>,
    /// Indexed by agent key; see [`SendableAt`].
    sendable_at: Vec<SendableAt>,
}

impl AgentScheduler {
    pub fn new(settings: SchedulerSettings) -> Self {
        Self {
            settings,
            agents: Vec::new(),
            ready: Vec::new(),
            ready_position: Vec::new(),
            sendable_at: Vec::new(),
        }
    }

    pub fn settings(&self) -> &SchedulerSettings {
        &self.settings
    }

    /// Adds an agent in the `Connecting` state.
    pub fn add_agent(&mut self, session: SessionName, pacing: Pacing) -> AgentKey {
        let key = AgentKey(u32::try_from(self.agents.len()).expect("fewer than 2^32 agents"));
        let state = AgentState::new(session, pacing);
        self.sendable_at.push(state.sendable_at());
        self.agents.push(state);
        self.ready_position.push(None);
        key
    }

    pub fn len(&self) -> usize {
        self.agents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    pub fn agent(&self, agent: AgentKey) -> Option<&AgentState> {
        self.agents.get(agent.0 as usize)
    }

    pub fn agents(&self) -> impl Iterator<Item = (AgentKey, &AgentState)> {
        self.agents
            .iter()
            .enumerate()
            .map(|(index, state)| (AgentKey(index as u32), state))
    }

    /// Records a connection change reported by the agent's owner task (connected, dropped,
    /// paused or resumed by the operator, found dead at login).
    pub fn set_connection_state(&mut self, agent: AgentKey, state: ConnectionState) {
        let Some(entry) = self.agents.get_mut(agent.0 as usize) else {
            return;
        };
        entry.connection = state;
        if state == ConnectionState::Ready {
            self.insert_ready(agent);
        } else {
            self.remove_ready(agent);
        }
    }

    /// Applies a pacing edit at runtime without granting a fresh burst.
    pub fn set_pacing(&mut self, agent: AgentKey, pacing: Pacing, now: Millis) {
        let Some(entry) = self.agents.get_mut(agent.0 as usize) else {
            return;
        };
        entry.pacing = pacing;
        entry.gcra = entry
            .gcra
            .with_rate(pacing.messages_per_minute, pacing.burst, now);
        entry.cold_dms.truncate(pacing.cold_dms_per_day);
        self.refresh_sendable_at(agent);
    }

    /// Clears a FloodWait or PeerFlood pause by hand (the status page's "clear" button).
    pub fn clear_cooldowns(&mut self, agent: AgentKey) {
        if let Some(entry) = self.agents.get_mut(agent.0 as usize) {
            entry.flood_wait_until = Millis::ZERO;
            entry.peer_flood_until = Millis::ZERO;
        }
        self.refresh_sendable_at(agent);
    }

    /// Chooses the agent for `request` at `now` and, on [`Decision::Send`], reserves it (pacing
    /// permit, cold-DM slot, in-flight count) so that concurrent picks see it as used.
    ///
    /// The permit and the cold-DM slot stay spent whatever the outcome: the attempt reached
    /// Telegram, and counting attempts rather than deliveries is the safe side of an anti-spam
    /// budget whose exact accounting Telegram does not publish.
    pub fn pick<R: Rng + ?Sized>(
        &mut self,
        request: &Request,
        now: Millis,
        rng: &mut R,
    ) -> Decision {
        let decision = self.choose(request, now, rng);
        if let Decision::Send(agent) = decision {
            let kind = request.kind;
            let entry = &mut self.agents[agent.0 as usize];
            entry.gcra.take(now);
            entry.in_flight += 1;
            if kind == SendKind::FirstContact {
                entry.cold_dms.record(now, entry.pacing.cold_dms_per_day);
            }
            self.refresh_sendable_at(agent);
        }
        decision
    }

    /// Applies the failover rules to the outcome of a send `pick` gave to `agent`, and says what
    /// the pool does with the message next.
    pub fn on_outcome(
        &mut self,
        agent: AgentKey,
        request: &Request,
        outcome: SendOutcome,
        now: Millis,
    ) -> OutcomeAction {
        let sticky = request.sticky_agent.is_some();
        let Some(entry) = self.agents.get_mut(agent.0 as usize) else {
            return OutcomeAction::FailPermanently {
                reason: FailureReason::Unclassified {
                    error: TelegramError::Other {
                        message: format!("{agent} is not in this pool"),
                    },
                },
            };
        };
        entry.in_flight = entry.in_flight.saturating_sub(1);
        let error = match outcome {
            SendOutcome::Sent => {
                entry.recent_sends.record(now);
                return OutcomeAction::Done;
            }
            SendOutcome::NotAttempted => return OutcomeAction::Done,
            SendOutcome::Failed(error) => error,
        };
        let action = match &error {
            // Recipient-level failures say nothing about the agent: leave its state alone, and
            // do not try the other agents, which would fail the same way.
            TelegramError::PrivacyRestricted
            | TelegramError::UsernameNotFound
            | TelegramError::NotAUser
            | TelegramError::TopicDeleted => return OutcomeAction::FailRecipient { error },
            TelegramError::FloodWait { seconds } => {
                let until = self.settings.flood_wait_end(now, *seconds);
                entry.flood_wait_until = entry.flood_wait_until.max(until);
                if sticky {
                    OutcomeAction::RetrySameAgentAfter {
                        at: entry.flood_wait_until,
                    }
                } else {
                    OutcomeAction::RetryOtherAgent
                }
            }
            TelegramError::PeerFlood => {
                let pause =
                    Duration::from_secs(u64::from(entry.pacing.peer_flood_pause_hours) * 3600);
                entry.peer_flood_until = entry.peer_flood_until.max(now.saturating_add(pause));
                if sticky {
                    OutcomeAction::RetrySameAgentAfter {
                        at: entry.peer_flood_until,
                    }
                } else {
                    OutcomeAction::RetryOtherAgent
                }
            }
            TelegramError::AccountDead { reason } => {
                let reason = *reason;
                self.set_connection_state(agent, ConnectionState::Dead { reason });
                if sticky {
                    OutcomeAction::FailPermanently {
                        reason: FailureReason::StickyAgentDead {
                            dead_reason: reason,
                        },
                    }
                } else {
                    OutcomeAction::RetryOtherAgent
                }
            }
            TelegramError::Network { .. } => {
                self.set_connection_state(agent, ConnectionState::Disconnected);
                OutcomeAction::RetrySameAgentAfterReconnect
            }
            TelegramError::SlowMode { seconds } => OutcomeAction::RetryChatAfter {
                at: now.saturating_add(Duration::from_secs(u64::from(*seconds))),
            },
            TelegramError::ChatForbidden { .. } => OutcomeAction::FailPermanently {
                reason: FailureReason::ChatForbidden {
                    error: error.clone(),
                },
            },
            TelegramError::InvalidInvite | TelegramError::Other { .. } => {
                OutcomeAction::FailPermanently {
                    reason: FailureReason::Unclassified {
                        error: error.clone(),
                    },
                }
            }
        };
        self.agents[agent.0 as usize].last_error = Some(LastError { at: now, error });
        self.refresh_sendable_at(agent);
        action
    }

    /// Every agent's status at `now`, in key order.
    pub fn status(&self, now: Millis) -> Vec<AgentStatus> {
        self.agents()
            .map(|(key, state)| AgentStatus {
                agent: key,
                session: state.session.clone(),
                state: state.connection,
                in_flight: state.in_flight,
                flood_wait_until: (state.flood_wait_until > now).then_some(state.flood_wait_until),
                peer_flood_until: (state.peer_flood_until > now).then_some(state.peer_flood_until),
                pacing_headroom: state.gcra.headroom(now),
                cold_dms_last_day: state.cold_dms.count(now),
                cold_dms_per_day: state.pacing.cold_dms_per_day,
                sent_last_minute: state.recent_sends.last_minute(now),
                sent_last_hour: state.recent_sends.last_hour(now),
                sent_last_day: state.recent_sends.last_day(now),
                last_error: state.last_error.clone(),
            })
            .collect()
    }

    fn choose<R: Rng + ?Sized>(&self, request: &Request, now: Millis, rng: &mut R) -> Decision {
        if let Some(agent) = request.sticky_agent {
            return self.choose_sticky(agent, request.kind, now);
        }
        if self.agents.is_empty() {
            return Decision::NoAgent(NoAgentReason::EmptyPool);
        }
        if let Some(decision) = self.choose_by_sampling(request, now, rng) {
            return decision;
        }
        self.choose_by_scan(request, now, rng)
    }

    fn choose_sticky(&self, agent: AgentKey, kind: SendKind, now: Millis) -> Decision {
        let Some(state) = self.agent(agent) else {
            return Decision::NoAgent(NoAgentReason::UnknownAgent { agent });
        };
        match state.connection {
            ConnectionState::Dead { reason } => Decision::NoAgent(NoAgentReason::StickyAgentDead {
                agent,
                dead_reason: reason,
            }),
            ConnectionState::Paused => {
                Decision::NoAgent(NoAgentReason::StickyAgentPaused { agent })
            }
            ConnectionState::Connecting | ConnectionState::Disconnected => {
                Decision::WaitForStateChange {
                    reason: StateChangeReason::StickyAgentNotConnected,
                }
            }
            ConnectionState::Ready => match state.ready_at(kind, now) {
                Ok(()) => Decision::Send(agent),
                Err((Millis::NEVER, _)) => {
                    Decision::NoAgent(NoAgentReason::StickyAgentMayNotWriteFirst { agent })
                }
                Err((at, reason)) => Decision::WaitUntil { at, reason },
            },
        }
    }

    fn is_candidate(&self, agent: AgentKey, request: &Request, now: Millis) -> bool {
        request.avoid_agent != Some(agent)
            && self.sendable_at[agent.0 as usize].for_kind(request.kind) <= now
    }

    fn refresh_sendable_at(&mut self, agent: AgentKey) {
        if let Some(state) = self.agents.get(agent.0 as usize) {
            self.sendable_at[agent.0 as usize] = state.sendable_at();
        }
    }

    /// The common case: two distinct candidates found by uniform draws over the ready index.
    /// `None` when the draws ran out; the scan then decides.
    fn choose_by_sampling<R: Rng + ?Sized>(
        &self,
        request: &Request,
        now: Millis,
        rng: &mut R,
    ) -> Option<Decision> {
        if self.ready.len() < 2 {
            return None;
        }
        let mut first: Option<AgentKey> = None;
        for _ in 0..self.settings.sampling_attempts {
            let agent = self.ready[rng.random_range(0..self.ready.len())];
            if first == Some(agent) || !self.is_candidate(agent, request, now) {
                continue;
            }
            match first {
                None => first = Some(agent),
                Some(other) => return Some(Decision::Send(self.less_busy(other, agent, now, rng))),
            }
        }
        None
    }

    /// The exhaustive path: every ready agent is looked at once. Chooses by P2C among all
    /// candidates if there are any, else computes the exact earliest instant.
    fn choose_by_scan<R: Rng + ?Sized>(
        &self,
        request: &Request,
        now: Millis,
        rng: &mut R,
    ) -> Decision {
        let mut candidates: Vec<AgentKey> = Vec::new();
        let mut earliest: Option<(Millis, AgentKey)> = None;
        for &agent in &self.ready {
            if request.avoid_agent == Some(agent) {
                continue;
            }
            let at = self.sendable_at[agent.0 as usize].for_kind(request.kind);
            if at <= now {
                candidates.push(agent);
            } else if earliest.is_none_or(|(known, _)| at < known) {
                earliest = Some((at, agent));
            }
        }
        match candidates.len() {
            0 => {}
            1 => return Decision::Send(candidates[0]),
            count => {
                let first = rng.random_range(0..count);
                let mut second = rng.random_range(0..count - 1);
                if second >= first {
                    second += 1;
                }
                return Decision::Send(self.less_busy(
                    candidates[first],
                    candidates[second],
                    now,
                    rng,
                ));
            }
        }
        if let Some((at, agent)) = earliest
            && at != Millis::NEVER
        {
            // The reason is worked out for the one agent that matters, not during the scan.
            let reason = match self.agents[agent.0 as usize].ready_at(request.kind, now) {
                Err((_, reason)) => reason,
                Ok(()) => WaitReason::Pacing,
            };
            return Decision::WaitUntil { at, reason };
        }
        self.explain_no_candidate(request, earliest.is_some())
    }

    /// Nothing can send and no ready agent will at a known instant: say whether waiting for a
    /// connection helps, or why only the operator can.
    fn explain_no_candidate(
        &self,
        request: &Request,
        some_ready_agent_never_qualifies: bool,
    ) -> Decision {
        let (mut dead, mut paused, mut connecting) = (0u32, 0u32, 0u32);
        for (key, state) in self.agents() {
            if request.avoid_agent == Some(key) {
                continue;
            }
            match state.connection {
                ConnectionState::Dead { .. } => dead += 1,
                ConnectionState::Paused => paused += 1,
                ConnectionState::Connecting | ConnectionState::Disconnected => connecting += 1,
                ConnectionState::Ready => {}
            }
        }
        if connecting > 0 {
            return Decision::WaitForStateChange {
                reason: StateChangeReason::AgentsNotConnected,
            };
        }
        if some_ready_agent_never_qualifies {
            return Decision::NoAgent(NoAgentReason::NoAgentMayWriteFirst);
        }
        match request.avoid_agent {
            Some(avoided) if dead + paused == 0 => {
                Decision::NoAgent(NoAgentReason::OnlyTheAvoidedAgent { avoided })
            }
            _ => Decision::NoAgent(NoAgentReason::AllUnavailable { dead, paused }),
        }
    }

    fn less_busy<R: Rng + ?Sized>(
        &self,
        first: AgentKey,
        second: AgentKey,
        now: Millis,
        rng: &mut R,
    ) -> AgentKey {
        let first_load = self.agents[first.0 as usize].load(now);
        let second_load = self.agents[second.0 as usize].load(now);
        match first_load.cmp(&second_load) {
            std::cmp::Ordering::Less => first,
            std::cmp::Ordering::Greater => second,
            std::cmp::Ordering::Equal => {
                if rng.random_bool(0.5) {
                    first
                } else {
                    second
                }
            }
        }
    }

    fn insert_ready(&mut self, agent: AgentKey) {
        let position = &mut self.ready_position[agent.0 as usize];
        if position.is_none() {
            *position = Some(self.ready.len() as u32);
            self.ready.push(agent);
        }
    }

    fn remove_ready(&mut self, agent: AgentKey) {
        let Some(position) = self.ready_position[agent.0 as usize].take() else {
            return;
        };
        self.ready.swap_remove(position as usize);
        if let Some(&moved) = self.ready.get(position as usize) {
            self.ready_position[moved.0 as usize] = Some(position);
        }
    }
}
