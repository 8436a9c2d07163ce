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
//! use jobbot_core::scheduling::{AgentScheduler, ConnectionState, Decision, Millis, OutcomeAction, PoolId, Request, SendOutcome, SchedulerSettings};
//! use rand::SeedableRng;
//!
//! let mut rng = rand::rngs::StdRng::seed_from_u64(7);
//! let mut scheduler = AgentScheduler::new(SchedulerSettings::default());
//! let now = Millis(0);
//! let session = SessionName::parse("agent_1").unwrap();
//! let agent = scheduler.add_agent(session.clone(), Pacing::default(), now);
//! assert_eq!(scheduler.agent_key(&session), Some(agent));
//! scheduler.set_connection_state(agent, ConnectionState::Ready);
//! // One pool per channel (and one for the main account); an agent may be in several.
//! let channel = PoolId(1);
//! scheduler.set_pool(channel, &[agent]).unwrap();
//!
//! let request = Request::first_contact();
//! match scheduler.pick(channel, &request, now, &mut rng) {
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
//! # Pools
//!
//! One [`AgentScheduler`] holds every agent account of the process, and each account has one
//! state (pacing limiter, FloodWait, PeerFlood pause, cold-DM window, in-flight count) however
//! many channels it serves: two channels sharing an account together get the account's rate,
//! not twice it. A pool ([`PoolId`], [`AgentScheduler::set_pool`]) is the subset of agents a
//! channel may use; the main account that posts notifications is a pool of one. A pick is made
//! for a pool and chooses only among its members. Pools and agents change at runtime:
//! [`AgentScheduler::add_agent`] is idempotent per session, [`AgentScheduler::remove_agent`]
//! takes an agent out of every pool while its in-flight sends still report their outcomes.
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
//! Each pool keeps an index of its `Ready` members (O(1) insert and remove per pool, and an agent
//! is in few pools) and the table keeps, per agent, a cached pair of instants from which its
//! time-based limits allow a send (`SendableAt`, 32 bytes). A pick samples the pool's ready
//! index uniformly, rejecting agents that cannot send now, until it has
//! two distinct candidates or has made [`SchedulerSettings::sampling_attempts`] draws. When a
//! fraction `p` of ready agents can send, that takes `2 / p` draws on average, so the common case
//! (most agents have a permit) is O(1) whatever the pool size: about 0.4–2 µs per pick and
//! outcome at 10,000 agents in a release build on the shared 2-core box. Only when candidates are
//! rare (`p` well under `2 / sampling_attempts`) or absent does it fall back to one scan of the
//! pool's cached instants, which also yields the exact earliest instant to wait for: about
//! 10–30 µs at 10,000 agents. That is the saturated case, where the pool sleeps until the returned instant
//! anyway; if the benchmark shows it matters, a min-heap of cached instants (lazily re-keyed)
//! makes it O(log n).
//!
//! # Time
//!
//! [`Millis`] is milliseconds since an epoch the caller chooses (e.g. the pool's start
//! `tokio::time::Instant`). Nothing here reads a clock.

mod adaptive;
mod calls;
mod counters;
mod fair;
mod gcra;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::config::Pacing;
use crate::ids::SessionName;
use crate::telegram::{DeadReason, TelegramError};

pub use adaptive::{AdaptiveBudget, AdaptiveRate, CallClass, Change, LearnedLimits, RateCeiling};
pub use calls::{CallDecision, CallStatus, LearnedCalls, default_call_ceiling};
use calls::{CallLimiter, OTHER_CLASSES, other_index};
use counters::{ColdDmWindow, RecentSends};
pub use fair::RoundRobin;
pub use gcra::Gcra;

/// One limiter per class other than sends, pacing at the learned rates.
fn call_limiters(learned: &LearnedCalls, now: Millis) -> [CallLimiter; 4] {
    OTHER_CLASSES.map(|class| match learned.get(class) {
        Some(rate) => CallLimiter::new(rate),
        None => CallLimiter::new(&AdaptiveRate::new(
            default_call_ceiling(class).unwrap_or(RateCeiling::per_minute(1, 1)),
            now,
        )),
    })
}

/// The configured pacing as the ceiling and starting guess of the learned send rate.
fn send_ceiling(pacing: Pacing) -> RateCeiling {
    RateCeiling::per_minute(pacing.messages_per_minute, pacing.burst)
}

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

    /// `ms` milliseconds later (saturating).
    pub fn after(self, ms: u64) -> Self {
        Self(self.0.saturating_add(ms))
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
    /// The recipient is known by username only: the send resolves it first, and a failure of
    /// that step is reported as [`SendOutcome::ResolveFailed`] and belongs to the resolve class.
    /// A first message to a stranger is a resolve Telegram answers, so it also needs a
    /// [`CallClass::ResolveUsername`] permit ([`Request::takes_resolve_permit`]); a known
    /// contact's username is usually answered from the account's own cache (the port's
    /// contract), so it needs none, but it waits out a flood wait on resolves (a cache miss
    /// would only repeat it).
    #[serde(default)]
    pub resolves: bool,
    /// The recipient is found through a message of theirs (`users.getUsers`), which no cache
    /// answers: every such send is a lookup Telegram sees, so it takes a resolve permit whatever
    /// its kind (a reply in a conversation too).
    #[serde(default)]
    pub looks_up: bool,
}

impl Request {
    pub fn new(kind: SendKind) -> Self {
        Self {
            kind,
            sticky_agent: None,
            avoid_agent: None,
            resolves: false,
            looks_up: false,
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
            resolves: false,
            looks_up: false,
        }
    }

    /// The same request for a recipient known by username only (see [`Request::resolves`]).
    pub fn resolving(self, resolves: bool) -> Self {
        Self { resolves, ..self }
    }

    /// The same request for a recipient found through their message (see
    /// [`Request::looks_up`]); it resolves too.
    pub fn looking_up(self, looks_up: bool) -> Self {
        Self {
            looks_up,
            resolves: self.resolves || looks_up,
            ..self
        }
    }

    /// Whether a pick takes a [`CallClass::ResolveUsername`] permit too: a first message to a
    /// username (see [`Request::resolves`]), and any send to a person found through their
    /// message ([`Request::looks_up`]).
    pub fn takes_resolve_permit(&self) -> bool {
        self.resolves && (self.kind == SendKind::FirstContact || self.looks_up)
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
    /// The key was never issued, or its agent was removed from the configuration
    /// ([`AgentScheduler::remove_agent`]).
    #[error("the conversation's agent ({agent}) is no longer configured")]
    UnknownAgent { agent: AgentKey },
    /// The agent exists but the pool the request was made for does not contain it (the
    /// conversation belongs to another channel, or the channel's agent list was edited).
    #[error("the conversation's agent ({agent}) is not in {pool}")]
    StickyAgentNotInPool { agent: AgentKey, pool: PoolId },
    /// [`AgentScheduler::set_pool`] was never called for this pool, or it was removed.
    #[error("{pool} does not exist")]
    UnknownPool { pool: PoolId },
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
    /// The username the send had to resolve first could not be resolved: the message was not
    /// sent, and the error belongs to [`CallClass::ResolveUsername`] (a flood wait lowers the
    /// resolve rate, never the send rate).
    ResolveFailed(TelegramError),
    /// The pool dropped the send before calling Telegram (shutdown, cancelled message). The
    /// permit stays taken: it is not worth un-spending a few seconds of pacing.
    NotAttempted,
}

impl<T> From<Result<T, TelegramError>> for SendOutcome {
    fn from(result: Result<T, TelegramError>) -> Self {
        match result {
            // The send was already on its way: delivered, as far as pacing is concerned.
            Ok(_) | Err(TelegramError::RandomIdDuplicate) => Self::Sent,
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
    /// The conversation's agent was removed from the configuration while this send was in flight
    /// and it would have had to retry on that agent.
    #[error(
        "the conversation's agent was removed from the configuration; the conversation cannot move to another account"
    )]
    StickyAgentRemoved,
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
    /// Learn each account's limits from outcomes (the `adaptive` module). `false` paces at
    /// the configured rate whatever Telegram answers: the policy before issue #12, kept for the
    /// benchmark's `jobbot-fixed` and for tests of the cooldown mechanics alone.
    pub learn_limits: bool,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        Self {
            flood_wait_margin_percent: 10,
            flood_wait_margin_fixed: Duration::from_secs(1),
            sampling_attempts: 16,
            learn_limits: true,
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
    /// The first messages that went through in the last 24 h, stamped with their answers: what
    /// Telegram counted, for the budget learned from a `PEER_FLOOD` (`cold_dms` counts attempts).
    /// The daily cap holds in both windows: Telegram counts a message when it handles the call,
    /// after the pick, so a slot is free only 24 h after the answer (at the latest moment it
    /// can have been counted), not 24 h after the pick.
    first_messages_through: ColdDmWindow,
    recent_sends: RecentSends,
    last_error: Option<LastError>,
    /// The rate and first-message budget learned from outcomes (see the `adaptive` module); `gcra` paces
    /// at `learned.send_message`, and the cold-DM cap is `learned.first_messages`.
    learned: LearnedLimits,
    /// Picks made at pace (see `pick`) whose outcome is still due: their clean outcomes are
    /// evidence about the learned rate.
    at_pace_in_flight: u32,
    /// The limiters of the other classes of call, indexed as `calls::OTHER_CLASSES`; each paces
    /// at its rate in `learned.calls`.
    calls: [CallLimiter; 4],
}

impl AgentState {
    fn new(session: SessionName, pacing: Pacing, now: Millis) -> Self {
        let learned = LearnedLimits {
            send_message: AdaptiveRate::new(send_ceiling(pacing), now),
            first_messages: AdaptiveBudget::new(pacing.cold_dms_per_day, now),
            calls: LearnedCalls::new(now),
            stored_at_unix_ms: None,
        };
        let calls = call_limiters(&learned.calls, now);
        Self {
            session,
            pacing,
            connection: ConnectionState::Connecting,
            in_flight: 0,
            gcra: Gcra::with_interval_ms(
                learned.send_message.emission_interval_ms(),
                learned.send_message.burst(),
            ),
            flood_wait_until: Millis::ZERO,
            peer_flood_until: Millis::ZERO,
            cold_dms: ColdDmWindow::default(),
            first_messages_through: ColdDmWindow::default(),
            recent_sends: RecentSends::new(),
            last_error: None,
            learned,
            at_pace_in_flight: 0,
            calls,
        }
    }

    /// What this account has learned so far (stored by the engine, shown on the status page).
    pub fn learned(&self) -> &LearnedLimits {
        &self.learned
    }

    /// The first-message cap in force: the learned budget, never above the configured one.
    fn cold_dm_cap(&self) -> u32 {
        self.learned.first_messages.per_day()
    }

    /// Re-paces the limiter at the learned rate, keeping the tokens already used.
    fn repace(&mut self, now: Millis) {
        let rate = &self.learned.send_message;
        self.gcra = self
            .gcra
            .with_interval(rate.emission_interval_ms(), rate.burst(), now);
        self.cold_dms.truncate(self.cold_dm_cap());
    }

    /// Feeds a delivered send to the learners.
    fn learn_clean(&mut self, kind: SendKind, now: Millis) -> Change {
        let at_pace = self.at_pace_in_flight > 0;
        self.at_pace_in_flight = self.at_pace_in_flight.saturating_sub(1);
        let mut change =
            self.learned
                .send_message
                .on_clean(send_ceiling(self.pacing), at_pace, now);
        if kind == SendKind::FirstContact
            && self
                .learned
                .first_messages
                .on_clean(self.pacing.cold_dms_per_day, now)
                == Change::Changed
        {
            change = Change::Changed;
        }
        if change == Change::Changed {
            self.repace(now);
        }
        change
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
    fn ready_at(&self, request: &Request, now: Millis) -> Result<(), (Millis, WaitReason)> {
        let kind = request.kind;
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
            let cap = self.cold_dm_cap();
            if let Some(at) = self
                .cold_dms
                .blocked_until(now, cap)
                .max(self.first_messages_through.blocked_until(now, cap))
            {
                consider(at, WaitReason::ColdDmDailyCap);
            }
        }
        if request.resolves {
            let resolve = self.limiter(CallClass::ResolveUsername);
            consider(resolve.flood_wait_until, WaitReason::FloodWait);
            if request.takes_resolve_permit()
                && let Err(at) = resolve.gcra.check(now)
            {
                consider(at, WaitReason::Pacing);
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
            .max(self.cold_dms.fits_from(self.cold_dm_cap()))
            .max(self.first_messages_through.fits_from(self.cold_dm_cap()));
        SendableAt {
            any,
            first_contact,
            resolve: self.limiter(CallClass::ResolveUsername).allowed_from(),
            resolve_flood: self.limiter(CallClass::ResolveUsername).flood_wait_until,
        }
    }

    /// The limiter of a class other than sends (sends use `gcra` and `flood_wait_until`).
    fn limiter(&self, class: CallClass) -> &CallLimiter {
        &self.calls[other_index(class).unwrap_or(0)]
    }

    fn limiter_mut(&mut self, class: CallClass) -> &mut CallLimiter {
        &mut self.calls[other_index(class).unwrap_or(0)]
    }

    /// When a call of `class` is allowed: `Ok(())` now, or the instant and the limit.
    fn call_ready_at(&self, class: CallClass, now: Millis) -> Result<(), (Millis, WaitReason)> {
        let (flood_wait_until, gcra) = match class {
            CallClass::SendMessage => (self.flood_wait_until, &self.gcra),
            other => {
                let limiter = self.limiter(other);
                (limiter.flood_wait_until, &limiter.gcra)
            }
        };
        let paced = gcra.check(now).err();
        match (flood_wait_until > now, paced) {
            (true, Some(at)) if at > flood_wait_until => Err((at, WaitReason::Pacing)),
            (true, _) => Err((flood_wait_until, WaitReason::FloodWait)),
            (false, Some(at)) => Err((at, WaitReason::Pacing)),
            (false, None) => Ok(()),
        }
    }

    /// Feeds a clean call of a class other than sends to its learner.
    fn learn_call_clean(&mut self, class: CallClass, now: Millis) -> Change {
        let (Some(ceiling), Some(index)) = (default_call_ceiling(class), other_index(class)) else {
            return Change::Unchanged;
        };
        let at_pace = self.calls[index].settle();
        let Some(rate) = self.learned.calls.rate_mut(class, now) else {
            return Change::Unchanged;
        };
        let change = rate.on_clean(ceiling, at_pace, now);
        if change == Change::Changed {
            let rate = *rate;
            self.calls[index].repace(&rate, now);
        }
        change
    }

    /// A FloodWait of `seconds` answered a call of a class other than sends: that class's rate
    /// learns from it (when `learn`) and waits it out; the send limiter is untouched.
    fn call_flood_wait(
        &mut self,
        class: CallClass,
        seconds: u32,
        learn: bool,
        end: Millis,
        now: Millis,
    ) -> Change {
        let (Some(ceiling), Some(index)) = (default_call_ceiling(class), other_index(class)) else {
            return Change::Unchanged;
        };
        let limiter = &mut self.calls[index];
        let violation = limiter.flood_wait_until <= now;
        limiter.flood_wait_until = limiter.flood_wait_until.max(end);
        let Some(rate) = self.learned.calls.rate_mut(class, now) else {
            return Change::Unchanged;
        };
        if !learn {
            return Change::Unchanged;
        }
        let change = rate.on_flood_wait(ceiling, seconds, violation, now);
        if change == Change::Changed {
            let rate = *rate;
            self.calls[index].repace(&rate, now);
        }
        change
    }

    /// Every class's learned rate, sends first.
    fn call_statuses(&self, now: Millis) -> Vec<CallStatus> {
        let send = &self.learned.send_message;
        let mut statuses = vec![CallStatus {
            class: CallClass::SendMessage,
            learned_milli_per_minute: send.milli_per_minute(),
            ceiling_milli_per_minute: send_ceiling(self.pacing).milli_per_minute,
            learned_burst: send.burst(),
            flood_wait_until: (self.flood_wait_until > now).then_some(self.flood_wait_until),
        }];
        for (index, class) in OTHER_CLASSES.into_iter().enumerate() {
            let (Some(rate), Some(ceiling)) =
                (self.learned.calls.get(class), default_call_ceiling(class))
            else {
                continue;
            };
            let until = self.calls[index].flood_wait_until;
            statuses.push(CallStatus {
                class,
                learned_milli_per_minute: rate.milli_per_minute(),
                ceiling_milli_per_minute: ceiling.milli_per_minute,
                learned_burst: rate.burst(),
                flood_wait_until: (until > now).then_some(until),
            });
        }
        statuses
    }

    fn status(&self, agent: AgentKey, now: Millis) -> AgentStatus {
        AgentStatus {
            agent,
            session: self.session.clone(),
            state: self.connection,
            in_flight: self.in_flight,
            flood_wait_until: (self.flood_wait_until > now).then_some(self.flood_wait_until),
            peer_flood_until: (self.peer_flood_until > now).then_some(self.peer_flood_until),
            pacing_headroom: self.gcra.headroom(now),
            cold_dms_last_day: self.cold_dms.count(now),
            cold_dms_per_day: self.cold_dm_cap(),
            sent_last_minute: self.recent_sends.last_minute(now),
            sent_last_hour: self.recent_sends.last_hour(now),
            sent_last_day: self.recent_sends.last_day(now),
            last_error: self.last_error.clone(),
            learned_milli_per_minute: self.learned.send_message.milli_per_minute(),
            learned_burst: self.learned.send_message.burst(),
            ceiling_milli_per_minute: send_ceiling(self.pacing).milli_per_minute,
            calls: self.call_statuses(now),
        }
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
/// agent in a compact array so that a scan over 10,000 agents reads 320 KB of these instead of
/// every agent's whole state. Every limit is a fixed instant (GCRA earliest, FloodWait end,
/// PeerFlood end, the cold-DM window's next free slot), so the cache only changes when the agent
/// sends or an outcome or an edit changes a limit, and `refresh_sendable_at` runs at each.
/// Invariant: `sendable_at[k] == agents[k].sendable_at()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SendableAt {
    any: Millis,
    first_contact: Millis,
    /// When the resolve a first message to a username makes is allowed (pacing, flood wait).
    resolve: Millis,
    /// When a flood wait on resolves ends (a send to a known contact's username waits for it).
    resolve_flood: Millis,
}

impl SendableAt {
    fn for_request(self, request: &Request) -> Millis {
        let send = if request.kind == SendKind::FirstContact {
            self.first_contact
        } else {
            self.any
        };
        if request.takes_resolve_permit() {
            send.max(self.resolve)
        } else if request.resolves {
            send.max(self.resolve_flood)
        } else {
            send
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
    /// The `sendMessage` rate the agent is paced at now, learned from outcomes (thousandths of a
    /// message per minute; never above the configured `messages_per_minute`).
    pub learned_milli_per_minute: u32,
    /// The burst allowed now (1 right after a flood wait).
    pub learned_burst: u32,
    /// The configured `messages_per_minute` (thousandths): the ceiling the learned rate grows
    /// back to.
    pub ceiling_milli_per_minute: u32,
    /// Every class of call's learned rate, ceiling and flood wait, sends first.
    pub calls: Vec<CallStatus>,
}

/// A set of agents a request may be sent through: one channel's agent list, or the main account
/// alone. Chosen by the caller (the engine numbers its channels); only compared and hashed here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PoolId(pub u32);

impl fmt::Display for PoolId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pool #{}", self.0)
    }
}

/// A snapshot of one pool for the web status page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolStatus {
    pub pool: PoolId,
    /// Members of the pool, whatever their state.
    pub total: u32,
    /// Members that could send a first contact at `now` (ready, outside every cooldown, pacing
    /// permit and cold-DM slot available): the pool's capacity for new vacancies right now.
    pub available_now: u32,
    /// The members, in the order given to [`AgentScheduler::set_pool`].
    pub agents: Vec<AgentStatus>,
}

/// Why [`AgentScheduler::set_pool`] refused a membership list. Nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("{agent} is not configured (never added, or removed)")]
    UnknownAgent { agent: AgentKey },
}

/// One pool: its members and, among them, the `Ready` ones.
#[derive(Debug, Clone, Default)]
struct Pool {
    /// Every member, in the caller's order, without duplicates. Scanned only to explain why
    /// nothing can send and for the status page.
    members: Vec<AgentKey>,
    /// The `Ready` members, in no particular order, for O(1) uniform sampling.
    /// Invariant: `ready[p] == k` iff `k`'s membership of this pool has `ready_position == Some(p)`.
    ready: Vec<AgentKey>,
}

/// An agent's place in one pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Membership {
    pool: PoolId,
    ready_position: Option<u32>,
}

/// The scheduler's bookkeeping for one agent key, beside its [`AgentState`].
#[derive(Debug, Clone, Default)]
struct AgentLinks {
    /// The pools that contain the agent; an agent is in few pools (the channels it serves), so
    /// the linear searches over this list are O(1) in practice.
    memberships: Vec<Membership>,
    /// Removed from the configuration: in no pool, invisible to lookups and status, but its state
    /// is kept so late outcomes are absorbed and a re-added session gets its cooldowns back.
    retired: bool,
}

/// The scheduling state of every agent account, and the pools that share them. See the module
/// documentation.
///
/// There is one table for the whole process, not one per channel: an account that serves several
/// channels has one pacing limiter, one FloodWait and one cold-DM window, so the channels
/// together cannot exceed what the account may send.
#[derive(Debug, Clone)]
pub struct AgentScheduler {
    settings: SchedulerSettings,
    /// Indexed by agent key. Keys are never removed from here (see [`Self::remove_agent`]).
    agents: Vec<AgentState>,
    /// Indexed by agent key.
    links: Vec<AgentLinks>,
    /// Indexed by agent key; see [`SendableAt`].
    sendable_at: Vec<SendableAt>,
    /// Every session ever added, retired or not, so a re-added session gets its old key back.
    keys_by_session: HashMap<SessionName, AgentKey>,
    pools: HashMap<PoolId, Pool>,
    active_agents: usize,
    /// Agents whose learned limits changed since [`Self::take_learning_changes`].
    learning_changed: Vec<AgentKey>,
}

impl AgentScheduler {
    pub fn new(settings: SchedulerSettings) -> Self {
        Self {
            settings,
            agents: Vec::new(),
            links: Vec::new(),
            sendable_at: Vec::new(),
            keys_by_session: HashMap::new(),
            pools: HashMap::new(),
            active_agents: 0,
            learning_changed: Vec::new(),
        }
    }

    pub fn settings(&self) -> &SchedulerSettings {
        &self.settings
    }

    /// Adds the agent for `session`, or returns the key it already has.
    ///
    /// * New session: a new key, `Connecting`, in no pool.
    /// * Session already present: its key, with `pacing` applied as by [`Self::set_pacing`];
    ///   connection state, cooldowns and pools are untouched (this is how a second channel that
    ///   lists the same account gets the shared key).
    /// * Session removed earlier ([`Self::remove_agent`]): the *same* key comes back, with its
    ///   FloodWait, PeerFlood, pacing and cold-DM history kept (Telegram still remembers them for
    ///   that account), `Connecting`, in no pool. Reusing the key is safe because it names the
    ///   same account: a late outcome of a send from before the removal updates the right state.
    pub fn add_agent(&mut self, session: SessionName, pacing: Pacing, now: Millis) -> AgentKey {
        if let Some(&key) = self.keys_by_session.get(&session) {
            let links = &mut self.links[key.0 as usize];
            if links.retired {
                links.retired = false;
                self.active_agents += 1;
                self.agents[key.0 as usize].connection = ConnectionState::Connecting;
            }
            self.set_pacing(key, pacing, now);
            return key;
        }
        let key = AgentKey(u32::try_from(self.agents.len()).expect("fewer than 2^32 agents"));
        let state = AgentState::new(session.clone(), pacing, now);
        self.sendable_at.push(state.sendable_at());
        self.agents.push(state);
        self.links.push(AgentLinks::default());
        self.keys_by_session.insert(session, key);
        self.active_agents += 1;
        key
    }

    /// The key of a configured (not removed) session.
    pub fn agent_key(&self, session: &SessionName) -> Option<AgentKey> {
        self.keys_by_session
            .get(session)
            .copied()
            .filter(|key| self.is_active(*key))
    }

    /// Takes an agent out of the configuration: it leaves every pool, so no pick returns it and
    /// sticky requests for it answer [`NoAgentReason::UnknownAgent`]. Returns `false` if it was
    /// not configured.
    ///
    /// Sends already reserved on it may still report their outcome to [`Self::on_outcome`]: its
    /// in-flight count and cooldowns are updated as usual, and an action that would retry on this
    /// agent becomes [`OutcomeAction::RetryOtherAgent`] for a load-balanced request, or
    /// [`FailureReason::StickyAgentRemoved`] for a conversation bound to it. Cost: O(size of its
    /// pools), a configuration change.
    pub fn remove_agent(&mut self, agent: AgentKey) -> bool {
        if !self.is_active(agent) {
            return false;
        }
        self.remove_ready(agent);
        let memberships = std::mem::take(&mut self.links[agent.0 as usize].memberships);
        for membership in memberships {
            if let Some(pool) = self.pools.get_mut(&membership.pool) {
                pool.members.retain(|&member| member != agent);
            }
        }
        self.links[agent.0 as usize].retired = true;
        self.active_agents -= 1;
        true
    }

    /// Creates `pool`, or replaces its membership. Duplicates in `members` count once; an empty
    /// list is a valid pool whose picks answer [`NoAgentReason::EmptyPool`]. Fails, changing
    /// nothing, if a member is not a configured agent. Cost: O(old + new members).
    pub fn set_pool(&mut self, pool: PoolId, members: &[AgentKey]) -> Result<(), PoolError> {
        if let Some(&agent) = members.iter().find(|&&agent| !self.is_active(agent)) {
            return Err(PoolError::UnknownAgent { agent });
        }
        self.remove_pool(pool);
        let mut entry = Pool::default();
        for &agent in members {
            let links = &mut self.links[agent.0 as usize];
            if links.memberships.iter().any(|m| m.pool == pool) {
                continue;
            }
            let ready_position =
                (self.agents[agent.0 as usize].connection == ConnectionState::Ready).then(|| {
                    entry.ready.push(agent);
                    (entry.ready.len() - 1) as u32
                });
            links.memberships.push(Membership {
                pool,
                ready_position,
            });
            entry.members.push(agent);
        }
        self.pools.insert(pool, entry);
        Ok(())
    }

    /// Deletes a pool; its agents stay configured (and in their other pools). Returns `false` if
    /// it did not exist.
    pub fn remove_pool(&mut self, pool: PoolId) -> bool {
        let Some(entry) = self.pools.remove(&pool) else {
            return false;
        };
        for agent in entry.members {
            let memberships = &mut self.links[agent.0 as usize].memberships;
            if let Some(index) = memberships.iter().position(|m| m.pool == pool) {
                memberships.swap_remove(index);
            }
        }
        true
    }

    /// A pool's members in the order given to [`Self::set_pool`], or `None` if it does not exist.
    pub fn pool_members(&self, pool: PoolId) -> Option<&[AgentKey]> {
        self.pools.get(&pool).map(|entry| entry.members.as_slice())
    }

    /// The pools, in no particular order.
    pub fn pools(&self) -> impl Iterator<Item = PoolId> + '_ {
        self.pools.keys().copied()
    }

    /// Configured (not removed) agents.
    pub fn len(&self) -> usize {
        self.active_agents
    }

    pub fn is_empty(&self) -> bool {
        self.active_agents == 0
    }

    /// A configured agent's state; `None` for a removed or unknown key.
    pub fn agent(&self, agent: AgentKey) -> Option<&AgentState> {
        self.is_active(agent)
            .then(|| &self.agents[agent.0 as usize])
    }

    /// Configured agents, in key order.
    pub fn agents(&self) -> impl Iterator<Item = (AgentKey, &AgentState)> {
        self.agents
            .iter()
            .zip(&self.links)
            .enumerate()
            .filter(|(_, (_, links))| !links.retired)
            .map(|(index, (state, _))| (AgentKey(index as u32), state))
    }

    /// Records a connection change reported by the agent's owner task (connected, dropped,
    /// paused or resumed by the operator, found dead at login). Updates the ready index of every
    /// pool that contains the agent, O(its pools).
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
        entry.learned.send_message.set_ceiling(send_ceiling(pacing));
        entry
            .learned
            .first_messages
            .set_ceiling(pacing.cold_dms_per_day);
        entry.repace(now);
        self.refresh_sendable_at(agent);
    }

    /// Puts back what an earlier run learned about `agent` (within today's configured ceilings),
    /// so a restart does not re-learn the account's limits by flooding it again.
    /// `now_unix_ms` is `now` on the wall clock: the learners' deadlines (a remembered flood's
    /// end, the budget's next growth) go on from where the stored copy left them.
    pub fn restore_learned(
        &mut self,
        agent: AgentKey,
        learned: LearnedLimits,
        now: Millis,
        now_unix_ms: i64,
    ) {
        let Some(entry) = self.agents.get_mut(agent.0 as usize) else {
            return;
        };
        let since_stored = learned.since_stored_ms(now_unix_ms);
        entry.learned = LearnedLimits {
            send_message: learned.send_message.restored(
                send_ceiling(entry.pacing),
                now,
                since_stored,
            ),
            first_messages: learned.first_messages.restored(
                entry.pacing.cold_dms_per_day,
                now,
                since_stored,
            ),
            calls: learned.calls.restored(now, since_stored),
            stored_at_unix_ms: None,
        };
        for (index, class) in OTHER_CLASSES.into_iter().enumerate() {
            if let Some(rate) = entry.learned.calls.get(class).copied() {
                entry.calls[index].repace(&rate, now);
            }
        }
        entry.repace(now);
        self.refresh_sendable_at(agent);
    }

    /// The agents whose learned limits changed since the last call, with what they learned:
    /// the engine stores these.
    pub fn take_learning_changes(&mut self) -> Vec<(SessionName, LearnedLimits)> {
        let mut changed = std::mem::take(&mut self.learning_changed);
        changed.sort_unstable();
        changed.dedup();
        changed
            .into_iter()
            .filter_map(|key| {
                let state = self.agents.get(key.0 as usize)?;
                Some((state.session.clone(), state.learned))
            })
            .collect()
    }

    /// Clears a FloodWait or PeerFlood pause by hand (the status page's "clear" button).
    pub fn clear_cooldowns(&mut self, agent: AgentKey) {
        if let Some(entry) = self.agents.get_mut(agent.0 as usize) {
            entry.flood_wait_until = Millis::ZERO;
            entry.peer_flood_until = Millis::ZERO;
            for limiter in &mut entry.calls {
                limiter.flood_wait_until = Millis::ZERO;
            }
        }
        self.refresh_sendable_at(agent);
    }

    /// Chooses an agent of `pool` for `request` at `now` and, on [`Decision::Send`], reserves it
    /// (pacing permit, cold-DM slot, in-flight count) so that concurrent picks, from this pool or
    /// any other that shares the agent, see it as used.
    ///
    /// Only members of `pool` are considered. A sticky request whose agent is not a member
    /// answers [`NoAgentReason::StickyAgentNotInPool`] (or [`NoAgentReason::UnknownAgent`] if
    /// the agent was removed); an unknown pool answers [`NoAgentReason::UnknownPool`].
    ///
    /// The permit and the cold-DM slot stay spent whatever the outcome of a send that reached
    /// `messages.sendMessage`: counting attempts rather than deliveries is the safe side of an
    /// anti-spam budget whose exact accounting Telegram does not publish. The cold-DM slot of a
    /// first message that never got that far (its resolve failed, or it was not attempted) is
    /// given back: it started no chat.
    pub fn pick<R: Rng + ?Sized>(
        &mut self,
        pool: PoolId,
        request: &Request,
        now: Millis,
        rng: &mut R,
    ) -> Decision {
        let decision = self.choose(pool, request, now, rng);
        if let Decision::Send(agent) = decision {
            let kind = request.kind;
            let entry = &mut self.agents[agent.0 as usize];
            // At pace: picked within one interval of the first instant the limiter allowed, so
            // the account is sending as fast as it is paced (a busy agent), not idling.
            if now.0 < entry.gcra.earliest().0 + entry.gcra.emission_interval_ms() {
                entry.at_pace_in_flight += 1;
            }
            entry.gcra.take(now);
            entry.in_flight += 1;
            if kind == SendKind::FirstContact {
                let cap = entry.cold_dm_cap();
                entry.cold_dms.record(now, cap);
            }
            if request.takes_resolve_permit() {
                entry.limiter_mut(CallClass::ResolveUsername).take(now);
            }
            self.refresh_sendable_at(agent);
        }
        decision
    }

    /// Reserves a call of `class` other than a send on `agent` (resolving a username, joining a
    /// channel, creating a forum topic): the permit of that class's limiter is taken on
    /// [`CallDecision::Go`], and exactly one outcome must follow ([`Self::on_call_outcome`],
    /// `NotAttempted` if the call is not made). Sends go through [`Self::pick`]; for
    /// [`CallClass::SendMessage`] this answers from the send limiter without reserving anything.
    pub fn reserve_call(&mut self, agent: AgentKey, class: CallClass, now: Millis) -> CallDecision {
        let Some(entry) = self
            .is_active(agent)
            .then(|| &mut self.agents[agent.0 as usize])
        else {
            return CallDecision::NotReady;
        };
        if entry.connection != ConnectionState::Ready {
            return CallDecision::NotReady;
        }
        if let Err((at, reason)) = entry.call_ready_at(class, now) {
            return CallDecision::WaitUntil { at, reason };
        }
        if class != CallClass::SendMessage {
            entry.limiter_mut(class).take(now);
            self.refresh_sendable_at(agent);
        }
        CallDecision::Go
    }

    /// The call a permit of `class` was taken for on `agent` at `taken` (by [`Self::pick`] or
    /// [`Self::reserve_call`]) came back at `returned`: the permit counts as taken then (see
    /// [`Gcra::count_later`]). Telegram counts a call when it reaches it, at an instant between
    /// the two that jobbot cannot see, so the only instant that keeps the next permit
    /// conforming at Telegram's bucket whatever the delays were is the latest. Call it for a
    /// call that was made (or may have been), before its outcome; never for one not attempted.
    pub fn call_returned(
        &mut self,
        agent: AgentKey,
        class: CallClass,
        taken: Millis,
        returned: Millis,
    ) {
        let Some(entry) = self.agents.get_mut(agent.0 as usize) else {
            return;
        };
        let delay = returned.0.saturating_sub(taken.0);
        match class {
            CallClass::SendMessage => entry.gcra.count_later(delay),
            other => entry.limiter_mut(other).gcra.count_later(delay),
        }
        self.refresh_sendable_at(agent);
    }

    /// `agent` was used by another process until `now` (this node just took its lease over, or
    /// the process just started): Telegram may have counted calls of it a moment ago that this
    /// scheduler never saw, so the limiters of the calls an account makes all the time — sends,
    /// resolves, topic creation — start empty (see [`Gcra::assume_empty`]). Joins and channel
    /// creation keep their burst: a join is made once per chat, when the account connects (or,
    /// for one that has not happened, at the CRM's half-hourly retry), so the last holder's
    /// joins are rarely a moment ago; held back for a whole
    /// interval (100 s at the default 0.6 a minute), a restarted agent stayed out of its CRM
    /// groups while its conversations went on (topics it could not create, posts it could not
    /// make). The learned rates stay: they are stored and shared.
    pub fn used_elsewhere_until(&mut self, agent: AgentKey, now: Millis) {
        let Some(entry) = self.agents.get_mut(agent.0 as usize) else {
            return;
        };
        entry.gcra.assume_empty(now);
        for (class, limiter) in calls::OTHER_CLASSES.into_iter().zip(&mut entry.calls) {
            if !matches!(class, CallClass::JoinChannel | CallClass::CreateChannel) {
                limiter.gcra.assume_empty(now);
            }
        }
        self.refresh_sendable_at(agent);
    }

    /// The outcome of a call [`Self::reserve_call`] allowed. A FloodWait is the class's own: it
    /// lowers that class's learned rate and stops only that class's calls for the wait; a clean
    /// call is evidence for it. Other errors leave the limiter as it is (they are the caller's to
    /// judge: a missing username is no sign of pace).
    pub fn on_call_outcome(
        &mut self,
        agent: AgentKey,
        class: CallClass,
        outcome: &SendOutcome,
        now: Millis,
    ) {
        if class == CallClass::SendMessage {
            return;
        }
        let settings = self.settings;
        let learn = settings.learn_limits;
        let Some(entry) = self.agents.get_mut(agent.0 as usize) else {
            return;
        };
        let change = match outcome {
            SendOutcome::Sent => {
                if learn {
                    entry.learn_call_clean(class, now)
                } else {
                    entry.limiter_mut(class).settle();
                    Change::Unchanged
                }
            }
            SendOutcome::Failed(TelegramError::FloodWait { seconds })
            | SendOutcome::ResolveFailed(TelegramError::FloodWait { seconds }) => {
                entry.limiter_mut(class).settle();
                let end = settings.flood_wait_end(now, *seconds);
                entry.call_flood_wait(class, *seconds, learn, end, now)
            }
            SendOutcome::NotAttempted => {
                let limiter = entry.limiter_mut(class);
                limiter.settle();
                limiter.gcra.give_back();
                Change::Unchanged
            }
            SendOutcome::Failed(_) | SendOutcome::ResolveFailed(_) => {
                entry.limiter_mut(class).settle();
                Change::Unchanged
            }
        };
        if let SendOutcome::Failed(error @ TelegramError::FloodWait { .. })
        | SendOutcome::ResolveFailed(error @ TelegramError::FloodWait { .. }) = outcome
        {
            entry.last_error = Some(LastError {
                at: now,
                error: error.clone(),
            });
        }
        if change == Change::Changed {
            self.learning_changed.push(agent);
        }
        self.refresh_sendable_at(agent);
    }

    /// Applies the failover rules to the outcome of a send `pick` gave to `agent`, and says what
    /// the pool does with the message next.
    ///
    /// If `agent` was removed since the pick ([`Self::remove_agent`]), its state is updated as
    /// usual, but a retry on it is impossible: [`OutcomeAction::RetrySameAgentAfter`] and
    /// [`OutcomeAction::RetrySameAgentAfterReconnect`] become [`OutcomeAction::RetryOtherAgent`]
    /// for a load-balanced request (after a dropped connection that risks a duplicate message;
    /// the account is gone, so it is that or losing the message) and
    /// [`FailureReason::StickyAgentRemoved`] for a conversation bound to it.
    pub fn on_outcome(
        &mut self,
        agent: AgentKey,
        request: &Request,
        outcome: SendOutcome,
        now: Millis,
    ) -> OutcomeAction {
        let action = self.apply_outcome(agent, request, outcome, now);
        let removed = self
            .links
            .get(agent.0 as usize)
            .is_some_and(|links| links.retired);
        if !removed {
            return action;
        }
        match action {
            OutcomeAction::RetrySameAgentAfter { .. }
            | OutcomeAction::RetrySameAgentAfterReconnect => {
                if request.sticky_agent.is_some() {
                    OutcomeAction::FailPermanently {
                        reason: FailureReason::StickyAgentRemoved,
                    }
                } else {
                    OutcomeAction::RetryOtherAgent
                }
            }
            other => other,
        }
    }

    fn apply_outcome(
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
        let learn = self.settings.learn_limits;
        // A first message whose resolve failed, or that was never attempted, reached no
        // `messages.sendMessage` and started no chat: its slot in the daily window is given back.
        // Kept, a resolve flood wait cost a first message of the day under a learned budget
        // that is exactly the account's (measured in `jobbot bench pool`'s `cold`, issue #12).
        if request.kind == SendKind::FirstContact
            && matches!(
                outcome,
                SendOutcome::ResolveFailed(_) | SendOutcome::NotAttempted
            )
        {
            entry.cold_dms.forget_newest();
            self.sendable_at[agent.0 as usize] = entry.sendable_at();
        }
        // The resolve a send to a username makes first went through unless that step failed.
        if request.takes_resolve_permit() && !matches!(outcome, SendOutcome::ResolveFailed(_)) {
            let resolved = !matches!(outcome, SendOutcome::NotAttempted);
            if learn && resolved {
                if entry.learn_call_clean(CallClass::ResolveUsername, now) == Change::Changed {
                    self.learning_changed.push(agent);
                }
            } else {
                entry.limiter_mut(CallClass::ResolveUsername).settle();
            }
            self.sendable_at[agent.0 as usize] = entry.sendable_at();
        }
        let error = match outcome {
            SendOutcome::Sent => {
                entry.recent_sends.record(now);
                if request.kind == SendKind::FirstContact {
                    entry
                        .first_messages_through
                        .record(now, entry.pacing.cold_dms_per_day);
                }
                if learn && entry.learn_clean(request.kind, now) == Change::Changed {
                    self.learning_changed.push(agent);
                }
                self.refresh_sendable_at(agent);
                return OutcomeAction::Done;
            }
            SendOutcome::NotAttempted => {
                // Nothing reached Telegram (another node had claimed the message, the account
                // was gone before the call): the permit goes back if it can be given back
                // exactly. Kept, every claim another node won cost the agent a whole pacing
                // interval, which the cluster benchmark saw as lost throughput per node added.
                entry.at_pace_in_flight = entry.at_pace_in_flight.saturating_sub(1);
                entry.gcra.give_back();
                if request.takes_resolve_permit() {
                    entry
                        .limiter_mut(CallClass::ResolveUsername)
                        .gcra
                        .give_back();
                }
                self.refresh_sendable_at(agent);
                return OutcomeAction::Done;
            }
            SendOutcome::Failed(error) => error,
            SendOutcome::ResolveFailed(error) => {
                if let TelegramError::FloodWait { seconds } = error {
                    // The send itself was never made: no evidence about the send rate, and no
                    // wait for the send limiter (Telegram limits each method on its own).
                    entry.at_pace_in_flight = entry.at_pace_in_flight.saturating_sub(1);
                    if request.takes_resolve_permit() {
                        entry.limiter_mut(CallClass::ResolveUsername).settle();
                    }
                    let end = self.settings.flood_wait_end(now, seconds);
                    if entry.call_flood_wait(CallClass::ResolveUsername, seconds, learn, end, now)
                        == Change::Changed
                    {
                        self.learning_changed.push(agent);
                    }
                    let at = entry.limiter(CallClass::ResolveUsername).flood_wait_until;
                    entry.last_error = Some(LastError { at: now, error });
                    self.refresh_sendable_at(agent);
                    return if sticky {
                        OutcomeAction::RetrySameAgentAfter { at }
                    } else {
                        OutcomeAction::RetryOtherAgent
                    };
                }
                // Any other answer means the same whichever step gave it (no such username,
                // not a person, a dead session, a lost connection): judged below.
                if request.takes_resolve_permit() {
                    entry.limiter_mut(CallClass::ResolveUsername).settle();
                }
                error
            }
        };
        if !matches!(error, TelegramError::RandomIdDuplicate) {
            entry.at_pace_in_flight = entry.at_pace_in_flight.saturating_sub(1);
        }
        let action = match &error {
            // Recipient-level failures say nothing about the agent: leave its state alone, and
            // do not try the other agents, which would fail the same way.
            TelegramError::PrivacyRestricted
            | TelegramError::UsernameNotFound
            | TelegramError::NotAUser
            | TelegramError::TopicDeleted
            | TelegramError::TopicClosed
            | TelegramError::PaymentRequired { .. }
            | TelegramError::PeerInvalid
            | TelegramError::RecipientDeactivated
            | TelegramError::MessageTooLong
            | TelegramError::MediaEmpty
            | TelegramError::FileReferenceExpired
            | TelegramError::MediaForbidden { .. }
            | TelegramError::UserInTooManyChannels
            | TelegramError::InvalidInvite => return OutcomeAction::FailRecipient { error },
            TelegramError::FloodWait { seconds } => {
                // Already waiting: this answers a call picked before the wait was known.
                let violation = entry.flood_wait_until <= now;
                if self.settings.learn_limits
                    && entry.learned.send_message.on_flood_wait(
                        send_ceiling(entry.pacing),
                        *seconds,
                        violation,
                        now,
                    ) == Change::Changed
                {
                    entry.repace(now);
                    self.learning_changed.push(agent);
                }
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
                let through = entry.first_messages_through.count(now);
                // Already paused: this answers a call picked before the refusal was known.
                let new_refusal = entry.peer_flood_until <= now;
                let pause = if self.settings.learn_limits {
                    if entry
                        .learned
                        .first_messages
                        .on_peer_flood(through, new_refusal, now)
                        == Change::Changed
                    {
                        entry.repace(now);
                        self.learning_changed.push(agent);
                    }
                    Duration::from_millis(
                        entry
                            .learned
                            .first_messages
                            .pause_ms(entry.pacing.peer_flood_pause_hours),
                    )
                } else {
                    Duration::from_secs(u64::from(entry.pacing.peer_flood_pause_hours) * 3600)
                };
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
            // Telegram failed inside and may have executed the send: only this account may
            // repeat it (same random_id). The connection is fine; the agent's pacing spaces the
            // repeats, since every attempt spends a permit.
            TelegramError::ServerError { .. } => OutcomeAction::RetrySameAgentAfterReconnect,
            // Not executed; this account's connection must move. Another account may send now.
            TelegramError::WrongDc { .. } => {
                if sticky {
                    OutcomeAction::RetrySameAgentAfter {
                        at: self.settings.flood_wait_end(now, 1),
                    }
                } else {
                    OutcomeAction::RetryOtherAgent
                }
            }
            // This account's own state refuses; another account may succeed. A conversation
            // cannot move, so it ends with the agent's reason.
            TelegramError::YouBlockedUser | TelegramError::TooManyChannels => {
                if sticky {
                    OutcomeAction::FailRecipient {
                        error: error.clone(),
                    }
                } else {
                    OutcomeAction::RetryOtherAgent
                }
            }
            TelegramError::SlowMode { seconds } => OutcomeAction::RetryChatAfter {
                at: now.saturating_add(Duration::from_secs(u64::from(*seconds))),
            },
            TelegramError::ChatForbidden { .. } | TelegramError::JoinRequestSent => {
                OutcomeAction::FailPermanently {
                    reason: FailureReason::ChatForbidden {
                        error: error.clone(),
                    },
                }
            }
            // An earlier attempt with this random_id is being delivered: the message went out.
            TelegramError::RandomIdDuplicate => {
                entry.recent_sends.record(now);
                if self.settings.learn_limits
                    && entry.learn_clean(request.kind, now) == Change::Changed
                {
                    self.learning_changed.push(agent);
                    self.refresh_sendable_at(agent);
                }
                return OutcomeAction::Done;
            }
            TelegramError::Other { .. } => OutcomeAction::FailPermanently {
                reason: FailureReason::Unclassified {
                    error: error.clone(),
                },
            },
        };
        self.agents[agent.0 as usize].last_error = Some(LastError { at: now, error });
        self.refresh_sendable_at(agent);
        action
    }

    /// Every configured agent's status at `now`, in key order.
    pub fn status(&self, now: Millis) -> Vec<AgentStatus> {
        self.agents()
            .map(|(key, state)| state.status(key, now))
            .collect()
    }

    /// A pool's status at `now`, or `None` if it does not exist.
    pub fn pool_status(&self, pool: PoolId, now: Millis) -> Option<PoolStatus> {
        let entry = self.pools.get(&pool)?;
        let available_now = entry
            .ready
            .iter()
            .filter(|agent| self.sendable_at[agent.0 as usize].first_contact <= now)
            .count();
        Some(PoolStatus {
            pool,
            total: entry.members.len() as u32,
            available_now: available_now as u32,
            agents: entry
                .members
                .iter()
                .map(|&agent| self.agents[agent.0 as usize].status(agent, now))
                .collect(),
        })
    }

    fn is_active(&self, agent: AgentKey) -> bool {
        self.links
            .get(agent.0 as usize)
            .is_some_and(|links| !links.retired)
    }

    fn is_member(&self, agent: AgentKey, pool: PoolId) -> bool {
        self.links[agent.0 as usize]
            .memberships
            .iter()
            .any(|m| m.pool == pool)
    }

    fn choose<R: Rng + ?Sized>(
        &self,
        pool: PoolId,
        request: &Request,
        now: Millis,
        rng: &mut R,
    ) -> Decision {
        let Some(entry) = self.pools.get(&pool) else {
            return Decision::NoAgent(NoAgentReason::UnknownPool { pool });
        };
        if let Some(agent) = request.sticky_agent {
            if !self.is_active(agent) {
                return Decision::NoAgent(NoAgentReason::UnknownAgent { agent });
            }
            if !self.is_member(agent, pool) {
                return Decision::NoAgent(NoAgentReason::StickyAgentNotInPool { agent, pool });
            }
            return self.choose_sticky(agent, request, now);
        }
        if entry.members.is_empty() {
            return Decision::NoAgent(NoAgentReason::EmptyPool);
        }
        if let Some(decision) = self.choose_by_sampling(&entry.ready, request, now, rng) {
            return decision;
        }
        self.choose_by_scan(entry, request, now, rng)
    }

    fn choose_sticky(&self, agent: AgentKey, request: &Request, now: Millis) -> Decision {
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
            ConnectionState::Ready => match state.ready_at(request, now) {
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
            && self.sendable_at[agent.0 as usize].for_request(request) <= now
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
        ready: &[AgentKey],
        request: &Request,
        now: Millis,
        rng: &mut R,
    ) -> Option<Decision> {
        if ready.len() < 2 {
            return None;
        }
        let mut first: Option<AgentKey> = None;
        for _ in 0..self.settings.sampling_attempts {
            let agent = ready[rng.random_range(0..ready.len())];
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

    /// The exhaustive path: every ready agent of the pool is looked at once. Chooses by P2C
    /// among all candidates if there are any, else computes the exact earliest instant.
    fn choose_by_scan<R: Rng + ?Sized>(
        &self,
        pool: &Pool,
        request: &Request,
        now: Millis,
        rng: &mut R,
    ) -> Decision {
        let mut candidates: Vec<AgentKey> = Vec::new();
        let mut earliest: Option<(Millis, AgentKey)> = None;
        for &agent in &pool.ready {
            if request.avoid_agent == Some(agent) {
                continue;
            }
            let at = self.sendable_at[agent.0 as usize].for_request(request);
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
            let reason = match self.agents[agent.0 as usize].ready_at(request, now) {
                Err((_, reason)) => reason,
                Ok(()) => WaitReason::Pacing,
            };
            return Decision::WaitUntil { at, reason };
        }
        self.explain_no_candidate(pool, request, earliest.is_some())
    }

    /// Nothing can send and no ready agent will at a known instant: say whether waiting for a
    /// connection helps, or why only the operator can.
    fn explain_no_candidate(
        &self,
        pool: &Pool,
        request: &Request,
        some_ready_agent_never_qualifies: bool,
    ) -> Decision {
        let (mut dead, mut paused, mut connecting) = (0u32, 0u32, 0u32);
        for &key in &pool.members {
            if request.avoid_agent == Some(key) {
                continue;
            }
            match self.agents[key.0 as usize].connection {
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

    /// Adds a `Ready` agent to the ready index of each of its pools (where it is not already).
    fn insert_ready(&mut self, agent: AgentKey) {
        let Some(links) = self.links.get_mut(agent.0 as usize) else {
            return;
        };
        for membership in &mut links.memberships {
            if membership.ready_position.is_some() {
                continue;
            }
            let Some(pool) = self.pools.get_mut(&membership.pool) else {
                continue;
            };
            membership.ready_position = Some(pool.ready.len() as u32);
            pool.ready.push(agent);
        }
    }

    /// Takes an agent out of the ready index of each of its pools: a swap-remove per pool, and
    /// the agent moved into the hole has its position in that pool updated.
    fn remove_ready(&mut self, agent: AgentKey) {
        let Some(count) = self
            .links
            .get(agent.0 as usize)
            .map(|links| links.memberships.len())
        else {
            return;
        };
        for index in 0..count {
            let membership = &mut self.links[agent.0 as usize].memberships[index];
            let pool_id = membership.pool;
            let Some(position) = membership.ready_position.take() else {
                continue;
            };
            let Some(pool) = self.pools.get_mut(&pool_id) else {
                continue;
            };
            pool.ready.swap_remove(position as usize);
            if let Some(&moved) = pool.ready.get(position as usize)
                && let Some(moved_membership) = self.links[moved.0 as usize]
                    .memberships
                    .iter_mut()
                    .find(|m| m.pool == pool_id)
            {
                moved_membership.ready_position = Some(position);
            }
        }
    }
}
