//! `jobbot bench pool` (version 2): the agent pool against accounts whose true limits jobbot does
//! not know, on the simulator, on paused time.
//!
//! Telegram publishes no limits and they differ per account, so each run draws a world: every
//! account gets its own `messages.sendMessage` rate, burst, first wait and escalation, and its own
//! daily budget of first messages, from [`AccountLimitSpread`] with the world's seed (`--seed`,
//! `--limit-median`, `--limit-spread`). jobbot is **not** told these: its configured pacing stays
//! the default ceiling (20/min, burst 3, 40 first messages a day) unless the scenario sets another
//! ceiling (`sweep`). Only the benchmark reads the true limits, to state the capacity a row is
//! measured against.
//!
//! Each (scenario, policy) run gets a fresh world with the same draws and its own current-thread
//! runtime with paused time, so hours of traffic take seconds and no run disturbs another.
//! Messages arrive evenly spaced. Only deliveries completed inside the window count; what is still
//! queued or retrying when the window closes is `queued_at_end`, neither delivered nor dropped.
//!
//! Scenarios:
//! - `steady`: messages to a few warm recipients (every agent is in their contacts, so
//!   `sendMessage` is the only binding limit), offered at twice the pool's true capacity.
//! - `sweep`: `steady` with 10 agents and jobbot's ceiling at a multiple of the median true limit.
//! - `cold`: every message to a new recruiter (resolveUsername + a first message), offered at 1.5×
//!   the pool's drawn daily budgets of first messages, for 24 simulated hours by default.
//! - `churn`: `steady` with 20 agents shared by 3 channels (every agent in each channel's pool:
//!   one account, one set of limits, whatever the channel), messages spread over the channels
//!   in turn. 10 % of the agents die (banned: `USER_DEACTIVATED_BAN`) at random moments, and every
//!   agent loses its connection at random moments (Poisson, one drop per agent-hour on average;
//!   the simulator restores it after its `reconnect_delay_ms`). The capacity counts each agent's
//!   true limit for the part of the window it was alive. The deaths and drops are drawn from the
//!   world's seed, the same for every policy.
//! - `burst`: 10 agents, a quiet load (a fifth of the true capacity) with a 2-minute spike at 5×
//!   the capacity every half hour (the first after 10 minutes). No policy can deliver more than
//!   is offered, so `ratio` is bounded by the load (about 0.5); what matters is how long the
//!   messages of a spike wait (`p50_wait_s`, `p99_wait_s`) and that nothing is left queued.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use jobbot_core::ai::AiSettings;
use jobbot_core::config::{Agent, Channel, Config, Filters, HumanDelay, Pacing};
use jobbot_core::ids::{ChatId, PhoneNumber, SessionName, Username};
use jobbot_core::scheduling::SchedulerSettings;
use jobbot_core::store::{
    NewOutboxMessage, OutboxKind, Recipient, SenderSelection, Store, UnixMillis,
};
use jobbot_core::telegram::{
    AccountConnector, ConnectOptions, MessageContent, PeerRef, RandomId, TelegramAccount,
    TelegramError,
};
use jobbot_engine::{Delivery, Engine, EngineClock, EngineSettings};
use jobbot_sim::{AccountLimitSpread, NewUser, SimConnector, SimParams, SimWorld};
use serde::Serialize;
use tokio::time::Instant;

/// The output channel whose pool the benchmark loads.
const CHANNEL_ID: &str = "bench";
/// Seeds the engine's random choices, so a run is reproducible.
const ENGINE_SEED: u64 = 0x00be_4c00;
/// Warm recipients: no more than one account may resolve back to back, so resolving never limits.
const WARM_RECIPIENTS: u32 = 5;
/// Telethon's default `flood_sleep_threshold`: its client sleeps through shorter waits itself.
const TELETHON_FLOOD_SLEEP_THRESHOLD_SECONDS: u32 = 60;
/// `churn`: output channels sharing the agents.
const CHURN_CHANNELS: u32 = 3;
/// `churn`: the share of the agents that die during the window (at least one).
const CHURN_DEATH_SHARE: f64 = 0.10;
/// `churn`: connection drops per agent-hour (a Poisson process per agent).
const CHURN_DROPS_PER_AGENT_HOUR: f64 = 1.0;
/// Mixed into the world's seed for the churn plan, so it does not repeat the world's own draws.
const CHURN_SEED_SALT: u64 = 0xc4_7a11;
/// `burst`: the quiet load and the spikes' load, as multiples of the pool's true capacity.
const BURST_QUIET_LOAD: f64 = 0.2;
const BURST_SPIKE_LOAD: f64 = 5.0;
/// `burst`: how long a spike lasts, how often one starts, and when the first does.
const BURST_SPIKE: Duration = Duration::from_secs(2 * 60);
const BURST_PERIOD: Duration = Duration::from_secs(30 * 60);
const BURST_FIRST_SPIKE: Duration = Duration::from_secs(10 * 60);

/// The scheduling policy under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// The seed's `AgentPool`: the agent with the smallest `flood_wait_until` among those not in
    /// a flood wait, three attempts, `2^attempt` s sleeps when none is available, then dropped.
    Seed,
    /// The seed as it actually ran: Telethon sleeps through any flood wait of up to 60 s inside
    /// the call (`flood_sleep_threshold=60`), and only longer ones reach the pool.
    SeedTelethon,
    /// jobbot's engine pacing at the configured rate, learning nothing (before issue #12).
    JobbotFixed,
    /// jobbot's engine with adaptive per-account limits.
    Jobbot,
}

impl Policy {
    pub const ALL: [Self; 4] = [
        Self::Seed,
        Self::SeedTelethon,
        Self::JobbotFixed,
        Self::Jobbot,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Seed => "seed",
            Self::SeedTelethon => "seed-telethon",
            Self::JobbotFixed => "jobbot-fixed",
            Self::Jobbot => "jobbot",
        }
    }

    /// The policy called `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|policy| policy.name() == name)
    }
}

/// The drawn world: the simulator's defaults with per-account limits from this spread.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WorldSpec {
    pub seed: u64,
    /// Median true `sendMessage` limit per account, per minute.
    pub limit_median: f64,
    /// Log-normal sigma of the true limits.
    pub limit_spread: f64,
}

impl Default for WorldSpec {
    fn default() -> Self {
        let spread = AccountLimitSpread::default();
        Self {
            seed: SimParams::default().seed,
            limit_median: spread.send_median_per_minute,
            limit_spread: spread.send_spread,
        }
    }
}

impl WorldSpec {
    pub fn params(&self) -> SimParams {
        SimParams {
            seed: self.seed,
            account_limits: Some(AccountLimitSpread {
                send_median_per_minute: self.limit_median,
                send_spread: self.limit_spread,
                ..AccountLimitSpread::default()
            }),
            ..SimParams::default()
        }
    }
}

/// What a run offers and how jobbot is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    Steady,
    Sweep,
    Cold,
    Churn,
    Burst,
}

impl Scenario {
    pub const ALL: [Self; 5] = [
        Self::Steady,
        Self::Sweep,
        Self::Cold,
        Self::Churn,
        Self::Burst,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Steady => "steady",
            Self::Sweep => "sweep",
            Self::Cold => "cold",
            Self::Churn => "churn",
            Self::Burst => "burst",
        }
    }

    /// The scenario called `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|scenario| scenario.name() == name)
    }

    /// How many output channels share the pool's agents.
    fn channels(self) -> u32 {
        match self {
            Self::Churn => CHURN_CHANNELS,
            _ => 1,
        }
    }
}

/// One run's shape.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RunSpec {
    pub scenario: Scenario,
    pub agents: u32,
    pub minutes: u32,
    /// jobbot's configured `messages_per_minute` (its ceiling and first guess).
    pub ceiling_per_min: u32,
}

/// One (scenario, policy) row.
#[derive(Debug, Clone, Serialize)]
pub struct PoolResult {
    pub scenario: Scenario,
    pub policy: Policy,
    pub agents: u32,
    pub ceiling_per_min: u32,
    pub minutes: u32,
    /// The sum of the agents' true limits of the binding kind: `sendMessage` per minute, or for
    /// `cold` the daily budgets of first messages per minute.
    pub true_capacity_per_min: f64,
    pub offered_per_min: f64,
    /// Deliveries completed within the window, per minute of the window.
    pub delivered_per_min: f64,
    /// `delivered_per_min / true_capacity_per_min`.
    pub ratio: f64,
    /// The highest `ratio` a policy that keeps to jobbot's configured ceilings can reach: the
    /// true capacity with each account's limit cut to the ceiling (`messages_per_minute`, or
    /// for `cold` `cold_dms_per_day`), over the true capacity. Below 1 where some accounts could
    /// do more than the operator allows ("a ceiling below the truth delivers its own share").
    pub ceiling_share: f64,
    /// FloodWaits that started a new wait (violations), not the answers repeating a running one.
    pub flood_waits: u64,
    pub flood_waits_per_agent_hour: f64,
    /// Over the hours after the first (`null` for a run of an hour or less).
    pub flood_waits_per_agent_hour_after_first: Option<f64>,
    /// `PEER_FLOOD` answers.
    pub peer_floods: u64,
    /// FloodWait answers (violations and repeats) by method, and the resolves made: where the
    /// flood waits of a row come from.
    pub send_flood_answers: u64,
    pub resolve_flood_answers: u64,
    pub other_flood_answers: u64,
    pub resolves: u64,
    /// Given up within the window (the seed after its last attempt; jobbot when a message fails
    /// for good).
    pub dropped: u64,
    /// Ended by jobbot's time to live (24 h) within the window.
    pub expired: u64,
    /// Neither delivered nor ended when the window closed (queued, or mid-retry for the seed).
    pub queued_at_end: u64,
    /// Messages that reached their recipient more than once (extra copies).
    pub sent_twice: u64,
    /// Arrival to delivery, over the messages delivered within the window; `null` if none was.
    pub p50_wait_s: Option<f64>,
    pub p99_wait_s: Option<f64>,
    /// Per output channel (`churn` has 3 sharing the agents; the seed's pools act as one and
    /// report one): messages delivered and their p99 wait, to see whether the channels get equal
    /// shares of the agents they share.
    pub channels: Vec<ChannelResult>,
    pub offered: u64,
    pub delivered: u64,
    /// Real time the run took.
    pub wall_clock_s: f64,
}

/// jobbot's configured pacing for a run: the default but for the ceiling.
pub fn jobbot_pacing(ceiling_per_min: u32) -> Pacing {
    Pacing {
        messages_per_minute: ceiling_per_min.max(1),
        ..Pacing::default()
    }
}

/// One output channel's share of a run's deliveries.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelResult {
    pub delivered: u64,
    pub p50_wait_s: Option<f64>,
    pub p99_wait_s: Option<f64>,
}

/// Runs one policy on a fresh world drawn from `world`, on a fresh paused-time runtime.
pub fn run(world: &WorldSpec, spec: RunSpec, policy: Policy) -> anyhow::Result<PoolResult> {
    anyhow::ensure!(spec.agents > 0, "the pool needs at least one agent");
    anyhow::ensure!(spec.minutes > 0, "the window must last at least a minute");
    let started = std::time::Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .context("could not start the benchmark's runtime")?;
    let params = world.params();
    let mut result = runtime.block_on(async move {
        let setup = Setup::new(params, spec);
        let tally = match policy {
            Policy::Seed | Policy::SeedTelethon => run_seed(&setup, policy).await?,
            Policy::JobbotFixed | Policy::Jobbot => run_jobbot(&setup, policy).await?,
        };
        Ok::<_, anyhow::Error>(summarise(policy, &setup, tally))
    })?;
    // Dropping the runtime cancels whatever was still queued or retrying.
    drop(runtime);
    result.wall_clock_s = started.elapsed().as_secs_f64();
    Ok(result)
}

/// The world every run starts from: `agents` logged-in accounts with drawn limits, the
/// recipients, when messages arrive and (for `churn`) when agents die or lose their connection.
struct Setup {
    spec: RunSpec,
    world: SimWorld,
    sessions: Vec<SessionName>,
    phones: Vec<PhoneNumber>,
    accounts: Vec<ChatId>,
    recipients: Vec<(ChatId, Username)>,
    /// The output channels whose pools share every agent.
    channels: Vec<String>,
    arrivals: Arrivals,
    churn: Vec<ChurnEvent>,
    true_capacity_per_min: f64,
    /// See [`PoolResult::ceiling_share`].
    ceiling_share: f64,
    offered_per_min: f64,
}

impl Setup {
    fn new(params: SimParams, spec: RunSpec) -> Self {
        let seed = params.seed;
        let world = SimWorld::new(params);
        let mut sessions = Vec::new();
        let mut phones = Vec::new();
        let mut accounts = Vec::new();
        for index in 1..=spec.agents {
            let session = format!("agent_{index:05}");
            let phone = format!("+1555{index:07}");
            accounts.push(world.create_account(
                &session,
                NewUser::named(&format!("Agent {index}")).phone(&phone),
            ));
            sessions.push(SessionName::parse(&session).expect("a valid session name"));
            phones.push(PhoneNumber::parse(&phone).expect("a valid phone number"));
        }
        let window = Duration::from_secs(u64::from(spec.minutes) * 60);
        let limits: Vec<_> = accounts.iter().map(|a| world.account_limits(*a)).collect();
        let send_limits: Vec<f64> = limits
            .iter()
            .map(|l| f64::from(l.send_messages.per_minute))
            .collect();
        let churn = if spec.scenario == Scenario::Churn {
            churn_plan(seed, accounts.len(), window)
        } else {
            Vec::new()
        };
        let (true_capacity_per_min, arrivals) = match spec.scenario {
            Scenario::Steady | Scenario::Sweep => {
                let capacity: f64 = send_limits.iter().sum();
                (capacity, Arrivals::even(2.0 * capacity, window))
            }
            Scenario::Churn => {
                // Offered at twice the capacity the pool starts with; measured against what its
                // agents could deliver while they were alive.
                let capacity = send_limits
                    .iter()
                    .enumerate()
                    .map(|(agent, limit)| limit * alive_share(&churn, agent, window))
                    .sum();
                (
                    capacity,
                    Arrivals::even(2.0 * send_limits.iter().sum::<f64>(), window),
                )
            }
            Scenario::Burst => {
                let capacity: f64 = send_limits.iter().sum();
                (capacity, Arrivals::spikes(capacity, window))
            }
            Scenario::Cold => {
                let per_day: f64 = limits
                    .iter()
                    .map(|l| f64::from(l.cold_dm_daily_budget))
                    .sum();
                let capacity = per_day / 1_440.0;
                (capacity, Arrivals::even(1.5 * capacity, window))
            }
        };
        let pacing = jobbot_pacing(spec.ceiling_per_min);
        let (truth, allowed): (Vec<f64>, Vec<f64>) = if spec.scenario == Scenario::Cold {
            limits
                .iter()
                .map(|l| {
                    let budget = f64::from(l.cold_dm_daily_budget);
                    (budget, budget.min(f64::from(pacing.cold_dms_per_day)))
                })
                .unzip()
        } else {
            send_limits
                .iter()
                .enumerate()
                .map(|(agent, limit)| {
                    let alive = alive_share(&churn, agent, window);
                    (
                        limit * alive,
                        limit.min(f64::from(pacing.messages_per_minute)) * alive,
                    )
                })
                .unzip()
        };
        let ceiling_share = allowed.iter().sum::<f64>() / truth.iter().sum::<f64>();
        let offered_per_min = arrivals.count() as f64 / f64::from(spec.minutes);
        let recipients = if spec.scenario == Scenario::Cold {
            // A new recruiter per message: nobody has any agent in their contacts.
            (1..=arrivals.count())
                .map(|index| {
                    let username = format!("recruiter_{index}");
                    let id = world.create_user(
                        NewUser::named(&format!("Recruiter {index}")).username(&username),
                    );
                    (id, Username::parse(&username).expect("a valid username"))
                })
                .collect()
        } else {
            (1..=WARM_RECIPIENTS)
                .map(|index| {
                    let username = format!("bench_recipient_{index}");
                    let id = world.create_user(
                        NewUser::named(&format!("Recipient {index}")).username(&username),
                    );
                    for account in &accounts {
                        // The recipient saved the agent's number: the agent is not a stranger.
                        world.add_contact(id, *account);
                    }
                    (id, Username::parse(&username).expect("a valid username"))
                })
                .collect()
        };
        let channels = (1..=spec.scenario.channels())
            .map(|index| {
                if index == 1 {
                    CHANNEL_ID.to_owned()
                } else {
                    format!("{CHANNEL_ID}_{index}")
                }
            })
            .collect();
        Self {
            spec,
            world,
            sessions,
            phones,
            accounts,
            recipients,
            channels,
            arrivals,
            churn,
            true_capacity_per_min,
            ceiling_share,
            offered_per_min,
        }
    }

    fn offered(&self) -> u64 {
        self.arrivals.count()
    }

    fn window(&self) -> Duration {
        Duration::from_secs(u64::from(self.spec.minutes) * 60)
    }

    fn recipient(&self, index: u64) -> &Username {
        &self.recipients[(index % self.recipients.len() as u64) as usize].1
    }

    /// The channel message `index` is for: the channels take turns.
    fn channel(&self, index: u64) -> &str {
        &self.channels[(index % self.channels.len() as u64) as usize]
    }

    fn cold(&self) -> bool {
        self.spec.scenario == Scenario::Cold
    }

    /// Flood-wait violations of the whole pool so far.
    fn flood_violations(&self) -> u64 {
        self.accounts
            .iter()
            .map(|account| self.world.counters(*account).flood_violations)
            .sum()
    }

    /// Kills and disconnects agents as the churn plan says, from `start`.
    fn spawn_churn(&self, start: Instant) -> tokio::task::JoinHandle<()> {
        let world = self.world.clone();
        let accounts = self.accounts.clone();
        let sessions = self.sessions.clone();
        let plan = self.churn.clone();
        tokio::spawn(async move {
            for event in plan {
                tokio::time::sleep_until(start + event.at).await;
                match event.action {
                    ChurnAction::Dies => world.ban(accounts[event.agent]),
                    ChurnAction::Drops => world.drop_connection(&sessions[event.agent]),
                }
            }
        })
    }

    /// Sleeps through the window from `start`, noting the violations at the end of its first
    /// hour.
    async fn wait_window(&self, start: Instant) -> u64 {
        let hour = Duration::from_secs(3_600);
        if self.window() <= hour {
            tokio::time::sleep_until(start + self.window()).await;
            return 0;
        }
        tokio::time::sleep_until(start + hour).await;
        let first_hour = self.flood_violations();
        tokio::time::sleep_until(start + self.window()).await;
        first_hour
    }

    /// Extra copies received: each message's text is unique, so a text seen twice in one
    /// recipient's box is one message sent twice.
    fn sent_twice(&self) -> u64 {
        let mut extra = 0;
        for (recipient, _) in &self.recipients {
            let mut seen: HashMap<String, u64> = HashMap::new();
            for message in self.world.private_messages(*recipient) {
                if message.sender != Some(*recipient) {
                    *seen.entry(message.text).or_default() += 1;
                }
            }
            extra += seen.values().map(|count| count - 1).sum::<u64>();
        }
        extra
    }

    fn config(&self) -> Config {
        let pacing = jobbot_pacing(self.spec.ceiling_per_min);
        let agents: Vec<Agent> = self
            .sessions
            .iter()
            .zip(&self.phones)
            .map(|(session, phone)| Agent {
                phone: Some(phone.clone()),
                session_name: session.clone(),
                proxy: None,
                pacing,
            })
            .collect();
        Config {
            channels: self
                .channels
                .iter()
                .zip(0i64..)
                .map(|(id, index)| Channel {
                    id: id.clone(),
                    name: format!("Benchmark {}", index + 1),
                    telegram_id: ChatId::channel(1_000_000_001 + 2 * index).expect("a channel id"),
                    enabled: true,
                    sources: Vec::new(),
                    filters: Filters::default(),
                    crm_enabled: true,
                    crm_group_id: ChatId::channel(1_000_000_002 + 2 * index),
                    agents: agents.clone(),
                    auto_response_enabled: true,
                    auto_response_template: "Hello! Tell me more about the vacancy?".into(),
                    instant_response: true,
                    human_delay: HumanDelay::default(),
                    crm_invite_hash: None,
                    ai: AiSettings {
                        enabled: false,
                        ..AiSettings::default()
                    },
                })
                .collect(),
            llm_providers: Default::default(),
            skipped_agents: Vec::new(),
        }
    }
}

/// When the messages of a run arrive, as offsets from its start.
#[derive(Debug, Clone)]
enum Arrivals {
    /// `count` messages evenly spaced at `per_minute`; each offset is computed from the start so
    /// that rounding does not drift over hours.
    Even { per_minute: f64, count: u64 },
    /// Listed offsets, in order.
    Listed(Arc<[Duration]>),
}

impl Arrivals {
    /// Evenly spaced at `per_minute` over `window`.
    fn even(per_minute: f64, window: Duration) -> Self {
        Self::Even {
            per_minute,
            count: (per_minute * window.as_secs_f64() / 60.0).floor() as u64,
        }
    }

    /// `burst`: a quiet stream at [`BURST_QUIET_LOAD`] × `capacity_per_min` over the whole
    /// window, and during each spike another stream that brings the load to
    /// [`BURST_SPIKE_LOAD`] × the capacity.
    fn spikes(capacity_per_min: f64, window: Duration) -> Self {
        let quiet = BURST_QUIET_LOAD * capacity_per_min;
        let extra = (BURST_SPIKE_LOAD - BURST_QUIET_LOAD) * capacity_per_min;
        let mut offsets = evenly_spaced(quiet, Duration::ZERO, window);
        let mut spike = BURST_FIRST_SPIKE;
        while spike < window {
            offsets.extend(evenly_spaced(
                extra,
                spike,
                (spike + BURST_SPIKE).min(window),
            ));
            spike += BURST_PERIOD;
        }
        offsets.sort_unstable();
        Self::Listed(offsets.into())
    }

    fn count(&self) -> u64 {
        match self {
            Self::Even { count, .. } => *count,
            Self::Listed(offsets) => offsets.len() as u64,
        }
    }

    fn offset(&self, index: u64) -> Duration {
        match self {
            Self::Even { per_minute, .. } => {
                Duration::from_secs_f64(index as f64 * 60.0 / per_minute)
            }
            Self::Listed(offsets) => offsets[index as usize],
        }
    }
}

/// Instants at `per_minute` from `from` (included) to `to` (excluded).
fn evenly_spaced(per_minute: f64, from: Duration, to: Duration) -> Vec<Duration> {
    if per_minute <= 0.0 {
        return Vec::new();
    }
    (0u64..)
        .map(|index| from + Duration::from_secs_f64(index as f64 * 60.0 / per_minute))
        .take_while(|at| *at < to)
        .collect()
}

/// Something that happens to an agent during a `churn` run.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ChurnEvent {
    at: Duration,
    agent: usize,
    action: ChurnAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChurnAction {
    /// The account is banned (`USER_DEACTIVATED_BAN` on every call from then on).
    Dies,
    /// Its connection drops (calls fail with a network error until the simulator restores it).
    Drops,
}

/// The churn of a run, drawn from the world's seed and in time order: [`CHURN_DEATH_SHARE`] of
/// the agents die at uniformly random moments of the window, and each agent's connection drops
/// at the moments of a Poisson process ([`CHURN_DROPS_PER_AGENT_HOUR`]) until it dies.
fn churn_plan(seed: u64, agents: usize, window: Duration) -> Vec<ChurnEvent> {
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ CHURN_SEED_SALT);
    let deaths = ((agents as f64 * CHURN_DEATH_SHARE).round() as usize).clamp(1, agents);
    let mut order: Vec<usize> = (0..agents).collect();
    order.shuffle(&mut rng);
    let mut death_at = vec![window; agents];
    let mut events = Vec::new();
    for &agent in &order[..deaths] {
        let at = window.mul_f64(rng.random_range(0.0..1.0));
        death_at[agent] = at;
        events.push(ChurnEvent {
            at,
            agent,
            action: ChurnAction::Dies,
        });
    }
    let mean_gap_s = 3_600.0 / CHURN_DROPS_PER_AGENT_HOUR;
    for (agent, &dies) in death_at.iter().enumerate() {
        let mut at = Duration::ZERO;
        loop {
            let uniform: f64 = rng.random_range(f64::EPSILON..1.0);
            at += Duration::from_secs_f64(-uniform.ln() * mean_gap_s);
            if at >= dies {
                break;
            }
            events.push(ChurnEvent {
                at,
                agent,
                action: ChurnAction::Drops,
            });
        }
    }
    events.sort_by_key(|event| (event.at, event.agent));
    events
}

/// The share of the window `agent` was alive.
fn alive_share(plan: &[ChurnEvent], agent: usize, window: Duration) -> f64 {
    plan.iter()
        .find(|event| event.agent == agent && event.action == ChurnAction::Dies)
        .map_or(1.0, |event| event.at.as_secs_f64() / window.as_secs_f64())
}

/// What happened to the offered messages, as seen when the window closed.
#[derive(Debug, Default)]
struct Tally {
    offered: u64,
    waits: Vec<Duration>,
    /// The waits of each output channel's delivered messages (`churn` has several).
    channel_waits: HashMap<usize, Vec<Duration>>,
    dropped: u64,
    expired: u64,
    first_hour_flood_waits: u64,
}

type SharedTally = Arc<Mutex<Tally>>;

#[derive(Debug, Clone, Copy)]
enum End {
    /// The wait, and the index of the output channel the message was for.
    Delivered(Duration, usize),
    Dropped,
    Expired,
}

fn record(tally: &SharedTally, end: End) {
    let mut tally = tally.lock().unwrap_or_else(|p| p.into_inner());
    match end {
        End::Delivered(wait, channel) => {
            tally.waits.push(wait);
            tally.channel_waits.entry(channel).or_default().push(wait);
        }
        End::Dropped => tally.dropped += 1,
        End::Expired => tally.expired += 1,
    }
}

fn take_tally(tally: &SharedTally, offered: u64, first_hour_flood_waits: u64) -> Tally {
    let mut tally = std::mem::take(&mut *tally.lock().unwrap_or_else(|p| p.into_inner()));
    tally.offered = offered;
    tally.first_hour_flood_waits = first_hour_flood_waits;
    tally
}

fn summarise(policy: Policy, setup: &Setup, mut tally: Tally) -> PoolResult {
    let spec = setup.spec;
    let agents = setup.accounts.len() as u32;
    let delivered = tally.waits.len() as u64;
    let delivered_per_min = delivered as f64 / f64::from(spec.minutes);
    let flood_waits = setup.flood_violations();
    let peer_floods = setup
        .accounts
        .iter()
        .map(|account| setup.world.counters(*account).peer_floods)
        .sum();
    let counters: Vec<_> = setup
        .accounts
        .iter()
        .map(|account| setup.world.counters(*account))
        .collect();
    let hours = f64::from(spec.minutes) / 60.0;
    let agent_hours = f64::from(agents) * hours;
    tally.waits.sort_unstable();
    let mut channels: Vec<(usize, Vec<Duration>)> = std::mem::take(&mut tally.channel_waits)
        .into_iter()
        .collect();
    channels.sort_unstable_by_key(|(channel, _)| *channel);
    let channels = channels
        .into_iter()
        .map(|(_, mut waits)| {
            waits.sort_unstable();
            ChannelResult {
                delivered: waits.len() as u64,
                p50_wait_s: percentile(&waits, 50),
                p99_wait_s: percentile(&waits, 99),
            }
        })
        .collect();
    PoolResult {
        scenario: spec.scenario,
        policy,
        agents,
        ceiling_per_min: spec.ceiling_per_min,
        minutes: spec.minutes,
        true_capacity_per_min: setup.true_capacity_per_min,
        offered_per_min: setup.offered_per_min,
        delivered_per_min,
        ratio: delivered_per_min / setup.true_capacity_per_min,
        ceiling_share: setup.ceiling_share,
        flood_waits,
        flood_waits_per_agent_hour: flood_waits as f64 / agent_hours,
        flood_waits_per_agent_hour_after_first: (hours > 1.0).then(|| {
            (flood_waits - tally.first_hour_flood_waits) as f64
                / (f64::from(agents) * (hours - 1.0))
        }),
        peer_floods,
        send_flood_answers: counters.iter().map(|c| c.send_flood_waits).sum(),
        resolve_flood_answers: counters.iter().map(|c| c.resolve_flood_waits).sum(),
        other_flood_answers: counters.iter().map(|c| c.other_flood_waits).sum(),
        resolves: counters.iter().map(|c| c.resolves).sum(),
        dropped: tally.dropped,
        expired: tally.expired,
        queued_at_end: tally.offered - delivered - tally.dropped - tally.expired,
        sent_twice: setup.sent_twice(),
        p50_wait_s: percentile(&tally.waits, 50),
        p99_wait_s: percentile(&tally.waits, 99),
        channels,
        offered: tally.offered,
        delivered,
        wall_clock_s: 0.0,
    }
}

/// Nearest-rank percentile of sorted durations, in seconds.
fn percentile(sorted: &[Duration], percent: u64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (sorted.len() as u64 * percent).div_ceil(100).max(1);
    Some(sorted[rank as usize - 1].as_secs_f64())
}

fn message_text(index: u64) -> MessageContent {
    MessageContent::plain(format!("Hello! Your vacancy interested me ({index})."))
}

/// When each message of a run arrives, from its start.
#[derive(Clone)]
struct ArrivalPlan {
    start: Instant,
    arrivals: Arrivals,
}

impl ArrivalPlan {
    fn of(setup: &Setup, start: Instant) -> Self {
        Self {
            start,
            arrivals: setup.arrivals.clone(),
        }
    }

    fn at(&self, index: u64) -> Instant {
        self.start + self.arrivals.offset(index)
    }
}

// ----- jobbot -----

async fn run_jobbot(setup: &Setup, policy: Policy) -> anyhow::Result<Tally> {
    let params = setup.world.params();
    // In memory: SQLite answers from sqlx's worker thread, and while a task waits for it the
    // paused clock would jump to the next timer.
    let store: Arc<dyn Store> = Arc::new(jobbot_store::MemoryStore::new());
    let connector: Arc<dyn AccountConnector> = Arc::new(SimConnector::new(setup.world.clone()));
    let (_config_sender, config) = tokio::sync::watch::channel(Arc::new(setup.config()));
    let clock = EngineClock::starting_at(UnixMillis(params.start_unix_time * 1000));
    let settings = EngineSettings {
        main_session: None,
        seed: ENGINE_SEED,
        scheduler: SchedulerSettings {
            learn_limits: policy == Policy::Jobbot,
            ..SchedulerSettings::default()
        },
        ..EngineSettings::default()
    };
    let engine = Engine::start(settings, connector, store, config, clock)
        .await
        .context("could not start the engine")?;
    // In `jobbot run` the router reads every account's updates (here: the echo of each sent
    // message); the engine buffers them without bound until someone does, so drain them.
    if let Some(mut updates) = engine.take_telegram_events() {
        tokio::spawn(async move { while updates.recv().await.is_some() {} });
    }
    wait_until_all_ready(&engine, setup.sessions.len()).await?;

    let tally = SharedTally::default();
    let start = Instant::now();
    let offered = setup.offered();
    let cold = setup.cold();
    let churn = setup.spawn_churn(start);
    let arrivals = {
        let engine = engine.clone();
        let tally = Arc::clone(&tally);
        let recipients: Vec<Username> = (0..setup.recipients.len() as u64)
            .map(|index| setup.recipient(index).clone())
            .collect();
        let channels: Vec<String> = (0..setup.channels.len() as u64)
            .map(|index| setup.channel(index).to_owned())
            .collect();
        let plan = ArrivalPlan::of(setup, start);
        tokio::spawn(async move {
            for index in 0..offered {
                let arrived = plan.at(index);
                tokio::time::sleep_until(arrived).await;
                let ticket = engine
                    .enqueue(NewOutboxMessage {
                        channel_id: channels[(index % channels.len() as u64) as usize].clone(),
                        kind: OutboxKind::Other,
                        sender: SenderSelection::ChannelAgents { sticky: None },
                        recipient: Recipient::Username {
                            username: recipients[(index % recipients.len() as u64) as usize]
                                .clone(),
                        },
                        content: message_text(index),
                        first_contact: cold,
                        idempotency_key: None,
                        created_at: engine.clock().now_unix(),
                        not_before: None,
                        expires_at: UnixMillis(0),
                    })
                    .await?;
                let tally = Arc::clone(&tally);
                let channel = (index % channels.len() as u64) as usize;
                tokio::spawn(async move {
                    let end = match ticket.delivery().await {
                        Ok(Delivery::Sent { .. }) => End::Delivered(arrived.elapsed(), channel),
                        Ok(Delivery::Expired { .. }) => End::Expired,
                        _ => End::Dropped,
                    };
                    record(&tally, end);
                });
            }
            Ok::<_, anyhow::Error>(())
        })
    };
    let first_hour = setup.wait_window(start).await;
    churn.abort();
    if arrivals.is_finished() {
        arrivals
            .await
            .context("the arrival task panicked")?
            .context("could not enqueue a message")?;
    }
    Ok(take_tally(&tally, offered, first_hour))
}

/// Waits until every agent's owner has connected, so the window measures sending, not start-up.
async fn wait_until_all_ready(engine: &Engine, agents: usize) -> anyhow::Result<()> {
    let mut events = engine.subscribe();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = engine
            .agents()
            .await?
            .iter()
            .filter(|agent| agent.link.is_ready())
            .count();
        if ready == agents {
            return Ok(());
        }
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(_) => {}
            Err(_) => anyhow::bail!("only {ready} of {agents} agents connected within a minute"),
        }
    }
}

// ----- The seed -----

/// The seed's `AgentPool` over the simulator's accounts, algorithm for algorithm
/// (`MULTI_AGENT_IMPLEMENTATION.md`, "Load Balancing Algorithm" and "Retry Logic";
/// `original-system.md` §2d).
///
/// For `churn`, the channels' pools act as one: the seed's global registry shares each
/// `AgentAccount` (with its `FloodWaitTracker`) between the channels that list it, and each
/// channel's pool runs the same selection over the same accounts. A banned account stays
/// "available": `AgentAccount.send_message` turns the error into `False`, and the health check
/// that would mark it disconnected is never scheduled; Telethon reconnects a dropped connection
/// by itself, and a call made meanwhile fails.
struct SeedPool {
    accounts: Vec<Arc<dyn TelegramAccount>>,
    agents: Mutex<Vec<SeedAgent>>,
    next_random_id: AtomicI64,
    /// Telethon's client sleeps through flood waits up to its threshold inside the call.
    telethon_sleeps: bool,
}

#[derive(Default)]
struct SeedAgent {
    /// `FloodWaitTracker.flood_wait_until`; kept after it passes, as the seed keeps it.
    flood_wait_until: Option<Instant>,
    /// Telethon's entity cache: a username is resolved once per account.
    resolved: HashMap<Username, PeerRef>,
}

impl SeedPool {
    async fn connect(setup: &Setup, telethon_sleeps: bool) -> anyhow::Result<Self> {
        let connector = SimConnector::new(setup.world.clone());
        let mut accounts = Vec::new();
        for session in &setup.sessions {
            let account = connector
                .connect(session, &ConnectOptions::default())
                .await
                .with_context(|| format!("could not connect {session}"))?;
            // Nobody reads the updates; dropping the stream lets the world discard them.
            drop(account.take_events());
            accounts.push(account);
        }
        Ok(Self {
            agents: Mutex::new(accounts.iter().map(|_| SeedAgent::default()).collect()),
            accounts,
            next_random_id: AtomicI64::new(1),
            telethon_sleeps,
        })
    }

    /// `get_available_agent`: among the agents not in a flood wait, the one with the smallest
    /// `flood_wait_until or 0`; Python's `min` keeps the first of equals, so never-waited agents
    /// go in list order.
    fn get_available_agent(&self, now: Instant) -> Option<usize> {
        let agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        agents
            .iter()
            .enumerate()
            .filter(|(_, agent)| agent.flood_wait_until.is_none_or(|until| now >= until))
            .min_by_key(|(_, agent)| agent.flood_wait_until)
            .map(|(index, _)| index)
    }

    /// `AgentPool.send_message(user, text, max_retries=3)`.
    async fn send_message(&self, username: &Username, content: &MessageContent) -> bool {
        for attempt in 0..3u32 {
            let Some(agent) = self.get_available_agent(Instant::now()) else {
                tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
                continue;
            };
            if self.agent_send_message(agent, username, content).await {
                return true;
            }
            // "Try next agent on failure": straight to the next attempt.
        }
        false
    }

    /// Telethon's `_call`: a FloodWait of up to the threshold is slept through and the request
    /// sent again; a longer one is raised to the caller.
    async fn telethon_sleeps_through<T, F, Fut>(&self, mut call: F) -> Result<T, TelegramError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, TelegramError>>,
    {
        loop {
            match call().await {
                Err(TelegramError::FloodWait { seconds })
                    if self.telethon_sleeps
                        && seconds <= TELETHON_FLOOD_SLEEP_THRESHOLD_SECONDS =>
                {
                    tokio::time::sleep(Duration::from_secs(u64::from(seconds))).await;
                }
                other => return other,
            }
        }
    }

    /// `AgentAccount.send_message("@user", text)`: `FloodWaitError` sets the agent's
    /// `flood_wait_until`; any failure returns `False`.
    async fn agent_send_message(
        &self,
        agent: usize,
        username: &Username,
        content: &MessageContent,
    ) -> bool {
        let account = &self.accounts[agent];
        let cached = self.with_agent(agent, |state| state.resolved.get(username).copied());
        let peer = match cached {
            Some(peer) => Ok(peer),
            None => self
                .telethon_sleeps_through(|| account.resolve_username(username))
                .await
                .map(|peer| {
                    self.with_agent(agent, |state| {
                        state.resolved.insert(username.clone(), peer.peer)
                    });
                    peer.peer
                }),
        };
        let random_id = RandomId(self.next_random_id.fetch_add(1, Ordering::Relaxed));
        let result = match peer {
            Ok(peer) => self
                .telethon_sleeps_through(|| account.send_direct(peer, content, random_id))
                .await
                .map(|_| ()),
            Err(error) => Err(error),
        };
        match result {
            Ok(()) => true,
            Err(TelegramError::FloodWait { seconds }) => {
                let until = Instant::now() + Duration::from_secs(u64::from(seconds));
                self.with_agent(agent, |state| state.flood_wait_until = Some(until));
                false
            }
            Err(_) => false,
        }
    }

    fn with_agent<R>(&self, agent: usize, f: impl FnOnce(&mut SeedAgent) -> R) -> R {
        let mut agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut agents[agent])
    }
}

async fn run_seed(setup: &Setup, policy: Policy) -> anyhow::Result<Tally> {
    let pool = Arc::new(SeedPool::connect(setup, policy == Policy::SeedTelethon).await?);
    let tally = SharedTally::default();
    let start = Instant::now();
    let offered = setup.offered();
    let plan = ArrivalPlan::of(setup, start);
    let recipients: Vec<Username> = (0..setup.recipients.len() as u64)
        .map(|index| setup.recipient(index).clone())
        .collect();
    let churn = setup.spawn_churn(start);
    let arrivals = {
        let tally = Arc::clone(&tally);
        tokio::spawn(async move {
            for index in 0..offered {
                let arrived = plan.at(index);
                tokio::time::sleep_until(arrived).await;
                // The seed handled each vacancy in its own handler: one task per message.
                let pool = Arc::clone(&pool);
                let tally = Arc::clone(&tally);
                let username = recipients[(index % recipients.len() as u64) as usize].clone();
                tokio::spawn(async move {
                    let delivered = pool.send_message(&username, &message_text(index)).await;
                    let end = if delivered {
                        End::Delivered(arrived.elapsed(), 0)
                    } else {
                        End::Dropped
                    };
                    record(&tally, end);
                });
            }
        })
    };
    let first_hour = setup.wait_window(start).await;
    churn.abort();
    arrivals.abort();
    Ok(take_tally(&tally, offered, first_hour))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let check = |values: &[u64], percent: u64, expected: Option<f64>| {
            let sorted: Vec<Duration> = values.iter().map(|s| Duration::from_secs(*s)).collect();
            assert_eq!(
                percentile(&sorted, percent),
                expected,
                "{values:?} p{percent}"
            );
        };
        check(&[], 50, None);
        check(&[7], 50, Some(7.0));
        check(&[7], 99, Some(7.0));
        check(&[1, 2, 3, 4], 50, Some(2.0));
        check(&(1..=100).collect::<Vec<_>>(), 99, Some(99.0));
        check(&(1..=1000).collect::<Vec<_>>(), 99, Some(990.0));
    }

    #[test]
    fn the_offered_load_is_twice_the_drawn_true_capacity_and_jobbot_is_not_told_it() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let spec = RunSpec {
                scenario: Scenario::Steady,
                agents: 5,
                minutes: 10,
                ceiling_per_min: 20,
            };
            let setup = Setup::new(WorldSpec::default().params(), spec);
            let truth: u32 = setup
                .accounts
                .iter()
                .map(|a| setup.world.account_limits(*a).send_messages.per_minute)
                .sum();
            assert_eq!(setup.true_capacity_per_min, f64::from(truth));
            assert_eq!(setup.offered_per_min, 2.0 * f64::from(truth));
            for agent in &setup.config().channels[0].agents {
                assert_eq!(agent.pacing, Pacing::default());
            }
            let start = Instant::now();
            let plan = ArrivalPlan::of(&setup, start);
            assert_eq!(plan.at(0), start);
            assert_eq!(setup.offered(), u64::from(truth) * 2 * 10);
        });
    }

    /// Structural checks on short runs: every policy reports, jobbot never drops nor sends twice,
    /// and every offered message is delivered, ended or still pending. No timing is asserted.
    #[test]
    fn short_runs_of_every_policy_account_for_every_message() {
        let world = WorldSpec::default();
        let spec = RunSpec {
            scenario: Scenario::Steady,
            agents: 3,
            minutes: 3,
            ceiling_per_min: 20,
        };
        for policy in Policy::ALL {
            let result = run(&world, spec, policy).unwrap();
            assert_eq!(result.policy, policy);
            assert_eq!(result.agents, 3);
            assert_eq!(
                result.delivered + result.dropped + result.expired + result.queued_at_end,
                result.offered,
                "{result:?}"
            );
            assert!(result.delivered > 0, "{result:?}");
            assert_eq!(result.sent_twice, 0, "{result:?}");
            if matches!(policy, Policy::Jobbot | Policy::JobbotFixed) {
                assert_eq!(result.dropped, 0, "{result:?}");
            }
        }
    }

    #[test]
    fn churn_kills_a_tenth_of_the_agents_once_and_drops_only_live_connections() {
        let window = Duration::from_secs(3 * 3_600);
        let plan = churn_plan(7, 20, window);
        assert_eq!(plan, churn_plan(7, 20, window), "drawn from the seed");
        assert_ne!(
            plan,
            churn_plan(8, 20, window),
            "another seed, another plan"
        );
        let deaths: Vec<&ChurnEvent> = plan
            .iter()
            .filter(|event| event.action == ChurnAction::Dies)
            .collect();
        assert_eq!(deaths.len(), 2, "{plan:?}");
        assert_ne!(deaths[0].agent, deaths[1].agent);
        assert!(plan.windows(2).all(|pair| pair[0].at <= pair[1].at));
        assert!(plan.iter().all(|event| event.at < window));
        for death in &deaths {
            assert!(
                !plan.iter().any(|event| event.agent == death.agent
                    && event.action == ChurnAction::Drops
                    && event.at >= death.at),
                "a dead agent's connection does not drop: {plan:?}"
            );
            let share = alive_share(&plan, death.agent, window);
            assert_eq!(share, death.at.as_secs_f64() / window.as_secs_f64());
        }
        let drops = plan.len() - deaths.len();
        // About one drop per agent-hour: 60 expected; far outside that means a wrong rate.
        assert!((30..=90).contains(&drops), "{drops} drops");
        assert_eq!(
            churn_plan(7, 3, window)
                .iter()
                .filter(|e| e.action == ChurnAction::Dies)
                .count(),
            1
        );
    }

    #[test]
    fn bursts_are_five_times_the_capacity_for_two_minutes_every_half_hour() {
        let window = Duration::from_secs(3_600);
        let arrivals = Arrivals::spikes(60.0, window);
        let count = |from: u64, to: u64| {
            (0..arrivals.count())
                .map(|index| arrivals.offset(index))
                .filter(|at| *at >= Duration::from_secs(from) && *at < Duration::from_secs(to))
                .count()
        };
        // Quiet: 0.2 × 60 = 12 a minute; a spike: 5 × 60 = 300 a minute.
        assert_eq!(count(0, 600), 120);
        assert_eq!(count(600, 720), 600);
        assert_eq!(count(720, 2_400), 12 * 28);
        assert_eq!(count(2_400, 2_520), 600);
        assert_eq!(arrivals.count(), 12 * 60 + 2 * (600 - 24));
        assert!(
            (1..arrivals.count()).all(|index| arrivals.offset(index - 1) <= arrivals.offset(index))
        );
    }

    /// The structural checks for the scenarios with churn and spikes, on small worlds: every
    /// message is accounted for, an agent dies, jobbot neither drops nor sends twice, and the
    /// channels share the agents.
    #[test]
    fn short_churn_and_burst_runs_account_for_every_message() {
        let world = WorldSpec::default();
        for (scenario, minutes) in [(Scenario::Churn, 30), (Scenario::Burst, 15)] {
            let spec = RunSpec {
                scenario,
                agents: 4,
                minutes,
                ceiling_per_min: 20,
            };
            for policy in [Policy::Seed, Policy::Jobbot] {
                let result = run(&world, spec, policy).unwrap();
                assert_eq!(
                    result.delivered + result.dropped + result.expired + result.queued_at_end,
                    result.offered,
                    "{result:?}"
                );
                assert!(result.delivered > 0, "{result:?}");
                if policy == Policy::Jobbot {
                    assert_eq!(result.dropped, 0, "{result:?}");
                    assert_eq!(result.sent_twice, 0, "{result:?}");
                }
                if policy == Policy::Jobbot && scenario == Scenario::Churn {
                    // Offered at twice the capacity, the channels take turns for the agents
                    // they share: equal shares, not the first channel's arrivals first.
                    let shares: Vec<u64> = result.channels.iter().map(|c| c.delivered).collect();
                    assert_eq!(shares.len(), 3, "{result:?}");
                    let (most, least) = (shares.iter().max(), shares.iter().min());
                    let (most, least) = (most.copied().unwrap_or(0), least.copied().unwrap_or(0));
                    assert!(most - least <= most / 20 + 1, "{shares:?}");
                }
            }
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let spec = RunSpec {
                scenario: Scenario::Churn,
                agents: 4,
                minutes: 30,
                ceiling_per_min: 20,
            };
            let setup = Setup::new(world.params(), spec);
            let config = setup.config();
            assert_eq!(config.channels.len(), 3);
            for channel in &config.channels {
                assert_eq!(channel.agents, config.channels[0].agents);
            }
            let full: f64 = setup
                .accounts
                .iter()
                .map(|a| f64::from(setup.world.account_limits(*a).send_messages.per_minute))
                .sum();
            assert!(
                setup.true_capacity_per_min < full,
                "a dead agent's time is not capacity"
            );
            let start = Instant::now();
            setup.spawn_churn(start).await.unwrap();
            let connector = SimConnector::new(setup.world.clone());
            let mut dead = 0;
            for session in &setup.sessions {
                let alive = match connector.connect(session, &ConnectOptions::default()).await {
                    Ok(account) => account.get_me().await.is_ok(),
                    Err(_) => false,
                };
                dead += u32::from(!alive);
            }
            assert_eq!(dead, 1);
        });
    }
}
