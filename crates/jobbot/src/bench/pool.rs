//! `jobbot bench pool`: the agent pool under twice its safe load, on the simulator, on paused
//! time.
//!
//! Each (agents, policy) run gets a fresh [`SimWorld`] with the default parameters and its own
//! current-thread runtime with paused time, so an hour of traffic takes seconds and no run can
//! disturb another. The safe rate is the simulator's sustained `messages.sendMessage` rate (the
//! one that never triggers a flood wait), jobbot's pacing is configured from that same figure as
//! a user would configure it from the seed's "20 a minute", and messages arrive evenly spaced at
//! twice the pool's safe capacity.
//!
//! The workload isolates the send limit: every message goes to one of a few recipients (no more
//! than the resolve burst, so each agent resolves each of them once and then hits its cache) who
//! have every agent in their contacts (so no message is a cold DM and no `PEER_FLOOD` budget is
//! spent). Only deliveries completed inside the window count; what is still queued or retrying
//! when the window closes is reported as `queued_at_end`, neither delivered nor dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use jobbot_core::ai::AiSettings;
use jobbot_core::config::{Agent, Channel, Config, Filters, HumanDelay, Pacing};
use jobbot_core::ids::{ChatId, PhoneNumber, SessionName, Username};
use jobbot_core::store::{
    NewOutboxMessage, OutboxKind, Recipient, SenderSelection, Store, UnixMillis,
};
use jobbot_core::telegram::{
    AccountConnector, ConnectOptions, MessageContent, PeerRef, RandomId, TelegramAccount,
    TelegramError,
};
use jobbot_engine::{Delivery, Engine, EngineClock, EngineSettings};
use jobbot_sim::{NewUser, SimConnector, SimParams, SimWorld};
use serde::Serialize;
use tokio::time::Instant;

/// Offered load as a multiple of the pool's safe capacity.
pub const OVERLOAD_FACTOR: u32 = 2;
/// The output channel whose pool the benchmark loads.
const CHANNEL_ID: &str = "bench";
/// Seeds the engine's random choices, so a run is reproducible.
const ENGINE_SEED: u64 = 0x00be_4c00;

/// The scheduling policy under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// The seed's `AgentPool`: the agent with the smallest `flood_wait_until` among those not in
    /// a flood wait, three attempts, `2^attempt` s sleeps when none is available, then dropped.
    Seed,
    /// jobbot's engine: per-agent pacing, least-busy of two random candidates, exact waits, a
    /// durable queue.
    Jobbot,
}

impl Policy {
    pub const ALL: [Self; 2] = [Self::Seed, Self::Jobbot];

    pub fn name(self) -> &'static str {
        match self {
            Self::Seed => "seed",
            Self::Jobbot => "jobbot",
        }
    }
}

/// What the messages are and how they arrive, stated in the output with the results.
#[derive(Debug, Clone, Serialize)]
pub struct Workload {
    pub description: String,
    pub minutes: u32,
    /// The simulator's sustained send rate per account that triggers no flood wait.
    pub safe_rate_per_agent_per_min: u32,
    pub overload_factor: u32,
    pub arrivals: &'static str,
    pub recipients: u32,
    /// jobbot's per-agent pacing, configured from the safe rate.
    pub jobbot_pacing: Pacing,
}

/// One (policy, agents) run.
#[derive(Debug, Clone, Serialize)]
pub struct PoolResult {
    pub policy: Policy,
    pub agents: u32,
    /// `agents` × the safe rate.
    pub limit_per_min: f64,
    /// Deliveries completed within the window, per minute of the window.
    pub delivered_per_min: f64,
    /// `delivered_per_min / limit_per_min`.
    pub ratio: f64,
    /// Every FloodWait the simulator answered any of the pool's accounts.
    pub flood_waits: u64,
    /// Messages given up within the window (the seed after its last attempt; jobbot when a
    /// message fails for good or expires).
    pub dropped: u64,
    /// Arrival to delivery, over the messages delivered within the window; `null` if none was.
    pub p50_wait_s: Option<f64>,
    pub p99_wait_s: Option<f64>,
    pub offered: u64,
    pub delivered: u64,
    /// Neither delivered nor dropped when the window closed (queued, or mid-retry for the seed).
    pub queued_at_end: u64,
    /// Real time the run took.
    pub wall_clock_s: f64,
}

pub fn workload(minutes: u32, params: &SimParams) -> Workload {
    let recipients = recipient_count(params);
    Workload {
        description: format!(
            "direct messages addressed by @username to {recipients} recipients who have every \
             agent in their contacts (no cold DMs; each agent resolves each recipient once, within \
             the resolve burst), so the only binding limit is messages.sendMessage"
        ),
        minutes,
        safe_rate_per_agent_per_min: params.send_messages.per_minute,
        overload_factor: OVERLOAD_FACTOR,
        arrivals: "evenly spaced",
        recipients,
        jobbot_pacing: jobbot_pacing(params),
    }
}

/// Runs one policy with `agents` agents for `minutes` simulated minutes on a fresh world and a
/// fresh paused-time runtime.
pub fn run(policy: Policy, agents: u32, minutes: u32) -> anyhow::Result<PoolResult> {
    anyhow::ensure!(agents > 0, "the pool needs at least one agent");
    anyhow::ensure!(minutes > 0, "the window must last at least a minute");
    let started = std::time::Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .context("could not start the benchmark's runtime")?;
    let mut result = runtime.block_on(async move {
        let setup = Setup::new(SimParams::default(), agents);
        let window = Duration::from_secs(u64::from(minutes) * 60);
        let tally = match policy {
            Policy::Seed => run_seed(&setup, window).await?,
            Policy::Jobbot => run_jobbot(&setup, window).await?,
        };
        let flood_waits = setup
            .accounts
            .iter()
            .map(|account| setup.world.counters(*account).flood_waits())
            .sum();
        Ok::<_, anyhow::Error>(summarise(policy, &setup, minutes, tally, flood_waits))
    })?;
    // Dropping the runtime cancels whatever was still queued or retrying.
    drop(runtime);
    result.wall_clock_s = started.elapsed().as_secs_f64();
    Ok(result)
}

fn jobbot_pacing(params: &SimParams) -> Pacing {
    Pacing {
        messages_per_minute: params.send_messages.per_minute,
        // A small burst under the simulator's, so the latency jitter of back-to-back sends can
        // never empty its bucket.
        burst: 3.min(params.send_messages.burst),
        ..Pacing::default()
    }
}

/// No more recipients than one account may resolve back to back, so resolving never limits.
fn recipient_count(params: &SimParams) -> u32 {
    params.resolve_username.burst.clamp(1, 5)
}

/// The world every run starts from: `agents` logged-in accounts and the recipients.
struct Setup {
    world: SimWorld,
    sessions: Vec<SessionName>,
    phones: Vec<PhoneNumber>,
    accounts: Vec<ChatId>,
    recipients: Vec<Username>,
    /// Messages per minute offered: `OVERLOAD_FACTOR` × agents × safe rate.
    offered_per_minute: u64,
    safe_rate: u32,
}

impl Setup {
    fn new(params: SimParams, agents: u32) -> Self {
        let safe_rate = params.send_messages.per_minute;
        let recipients = recipient_count(&params);
        let world = SimWorld::new(params);
        let mut sessions = Vec::new();
        let mut phones = Vec::new();
        let mut accounts = Vec::new();
        for index in 1..=agents {
            let session = format!("agent_{index:05}");
            let phone = format!("+1555{index:07}");
            accounts.push(world.create_account(
                &session,
                NewUser::named(&format!("Agent {index}")).phone(&phone),
            ));
            sessions.push(SessionName::parse(&session).expect("a valid session name"));
            phones.push(PhoneNumber::parse(&phone).expect("a valid phone number"));
        }
        let recipients = (1..=recipients)
            .map(|index| {
                let username = format!("bench_recipient_{index}");
                let recipient = world
                    .create_user(NewUser::named(&format!("Recipient {index}")).username(&username));
                for account in &accounts {
                    // The recipient saved the agent's number: the agent is not a stranger.
                    world.add_contact(recipient, *account);
                }
                Username::parse(&username).expect("a valid username")
            })
            .collect();
        Self {
            world,
            sessions,
            phones,
            accounts,
            recipients,
            offered_per_minute: u64::from(OVERLOAD_FACTOR)
                * u64::from(agents)
                * u64::from(safe_rate),
            safe_rate,
        }
    }

    fn offered(&self, window: Duration) -> u64 {
        self.offered_per_minute * window.as_secs() / 60
    }

    fn config(&self) -> Config {
        let pacing = jobbot_pacing(&self.world.params());
        Config {
            channels: vec![Channel {
                id: CHANNEL_ID.into(),
                name: "Benchmark".into(),
                telegram_id: ChatId::channel(1_000_000_001).expect("a channel id"),
                enabled: true,
                sources: Vec::new(),
                filters: Filters::default(),
                crm_enabled: true,
                crm_group_id: ChatId::channel(1_000_000_002),
                agents: self
                    .sessions
                    .iter()
                    .zip(&self.phones)
                    .map(|(session, phone)| Agent {
                        phone: Some(phone.clone()),
                        session_name: session.clone(),
                        proxy: None,
                        pacing,
                    })
                    .collect(),
                auto_response_enabled: true,
                auto_response_template: "Hello! Tell me more about the vacancy?".into(),
                instant_response: true,
                human_delay: HumanDelay::default(),
                crm_invite_hash: None,
                ai: AiSettings {
                    enabled: false,
                    ..AiSettings::default()
                },
            }],
            llm_providers: Default::default(),
            skipped_agents: Vec::new(),
        }
    }
}

/// What happened to the offered messages, as seen when the window closed.
#[derive(Debug, Default)]
struct Tally {
    offered: u64,
    waits: Vec<Duration>,
    dropped: u64,
}

type SharedTally = Arc<Mutex<Tally>>;

fn record(tally: &SharedTally, outcome: Option<Duration>) {
    let mut tally = tally.lock().unwrap_or_else(|p| p.into_inner());
    match outcome {
        Some(wait) => tally.waits.push(wait),
        None => tally.dropped += 1,
    }
}

fn take_tally(tally: &SharedTally, offered: u64) -> Tally {
    let mut tally = std::mem::take(&mut *tally.lock().unwrap_or_else(|p| p.into_inner()));
    tally.offered = offered;
    tally
}

fn summarise(
    policy: Policy,
    setup: &Setup,
    minutes: u32,
    mut tally: Tally,
    flood_waits: u64,
) -> PoolResult {
    let agents = setup.accounts.len() as u32;
    let limit_per_min = f64::from(agents) * f64::from(setup.safe_rate);
    let delivered = tally.waits.len() as u64;
    let delivered_per_min = delivered as f64 / f64::from(minutes);
    tally.waits.sort_unstable();
    PoolResult {
        policy,
        agents,
        limit_per_min,
        delivered_per_min,
        ratio: delivered_per_min / limit_per_min,
        flood_waits,
        dropped: tally.dropped,
        p50_wait_s: percentile(&tally.waits, 50),
        p99_wait_s: percentile(&tally.waits, 99),
        offered: tally.offered,
        delivered,
        queued_at_end: tally.offered - delivered - tally.dropped,
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

// ----- jobbot -----

async fn run_jobbot(setup: &Setup, window: Duration) -> anyhow::Result<Tally> {
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
    let end = start + window;
    let offered = setup.offered(window);
    let arrivals = {
        let engine = engine.clone();
        let tally = Arc::clone(&tally);
        let recipients: Vec<Username> = setup.recipients.clone();
        let plan = ArrivalPlan::of(setup, start);
        tokio::spawn(async move {
            for index in 0..offered {
                let arrived = plan.at(index);
                tokio::time::sleep_until(arrived).await;
                let ticket = engine
                    .enqueue(NewOutboxMessage {
                        channel_id: CHANNEL_ID.into(),
                        kind: OutboxKind::Other,
                        sender: SenderSelection::ChannelAgents { sticky: None },
                        recipient: Recipient::Username {
                            username: recipients[(index % recipients.len() as u64) as usize]
                                .clone(),
                        },
                        content: message_text(index),
                        first_contact: false,
                        idempotency_key: None,
                        created_at: engine.clock().now_unix(),
                        not_before: None,
                        expires_at: UnixMillis(0),
                    })
                    .await?;
                let tally = Arc::clone(&tally);
                tokio::spawn(async move {
                    let delivered = matches!(ticket.delivery().await, Ok(Delivery::Sent { .. }));
                    record(&tally, delivered.then(|| arrived.elapsed()));
                });
            }
            Ok::<_, anyhow::Error>(())
        })
    };
    tokio::time::sleep_until(end).await;
    if arrivals.is_finished() {
        arrivals
            .await
            .context("the arrival task panicked")?
            .context("could not enqueue a message")?;
    }
    Ok(take_tally(&tally, offered))
}

/// When each message of a run arrives: evenly spaced, each instant computed from the start so
/// that rounding does not drift over an hour.
#[derive(Clone, Copy)]
struct ArrivalPlan {
    start: Instant,
    per_minute: u64,
}

impl ArrivalPlan {
    fn of(setup: &Setup, start: Instant) -> Self {
        Self {
            start,
            per_minute: setup.offered_per_minute,
        }
    }

    fn at(&self, index: u64) -> Instant {
        self.start + Duration::from_nanos(index * 60_000_000_000 / self.per_minute)
    }
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
struct SeedPool {
    accounts: Vec<Arc<dyn TelegramAccount>>,
    agents: Mutex<Vec<SeedAgent>>,
    next_random_id: AtomicI64,
}

#[derive(Default)]
struct SeedAgent {
    /// `FloodWaitTracker.flood_wait_until`; kept after it passes, as the seed keeps it.
    flood_wait_until: Option<Instant>,
    /// Telethon's entity cache: a username is resolved once per account.
    resolved: HashMap<Username, PeerRef>,
}

impl SeedPool {
    async fn connect(setup: &Setup) -> anyhow::Result<Self> {
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
            None => account.resolve_username(username).await.map(|peer| {
                self.with_agent(agent, |state| {
                    state.resolved.insert(username.clone(), peer.peer)
                });
                peer.peer
            }),
        };
        let random_id = RandomId(self.next_random_id.fetch_add(1, Ordering::Relaxed));
        let result = match peer {
            Ok(peer) => account
                .send_direct(peer, content, random_id)
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

async fn run_seed(setup: &Setup, window: Duration) -> anyhow::Result<Tally> {
    let pool = Arc::new(SeedPool::connect(setup).await?);
    let tally = SharedTally::default();
    let start = Instant::now();
    let offered = setup.offered(window);
    let plan = ArrivalPlan::of(setup, start);
    let recipients = setup.recipients.clone();
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
                    record(&tally, delivered.then(|| arrived.elapsed()));
                });
            }
        })
    };
    tokio::time::sleep_until(start + window).await;
    arrivals.abort();
    Ok(take_tally(&tally, offered))
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
    fn arrivals_are_evenly_spaced_at_twice_the_safe_capacity() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let setup = Setup::new(SimParams::default(), 3);
            assert_eq!(setup.offered_per_minute, 120);
            assert_eq!(setup.offered(Duration::from_secs(120)), 240);
            let start = Instant::now();
            let plan = ArrivalPlan::of(&setup, start);
            assert_eq!(plan.at(0), start);
            assert_eq!(plan.at(1) - start, Duration::from_millis(500));
            assert_eq!(plan.at(240) - start, Duration::from_secs(120));
        });
    }

    /// Structural checks on short runs: both policies report, jobbot never floods nor drops, and
    /// every offered message is delivered, dropped or still pending. No timing is asserted.
    #[test]
    fn short_runs_of_both_policies_account_for_every_message() {
        for agents in [1, 3] {
            let seed = run(Policy::Seed, agents, 3).unwrap();
            let jobbot = run(Policy::Jobbot, agents, 3).unwrap();
            for result in [&seed, &jobbot] {
                assert_eq!(result.agents, agents);
                assert_eq!(result.offered, u64::from(agents) * 20 * 2 * 3, "{result:?}");
                assert_eq!(
                    result.delivered + result.dropped + result.queued_at_end,
                    result.offered,
                    "{result:?}"
                );
                assert!(result.delivered > 0, "{result:?}");
                assert_eq!(result.limit_per_min, f64::from(agents) * 20.0);
            }
            assert_eq!(seed.policy, Policy::Seed);
            assert_eq!(jobbot.policy, Policy::Jobbot);
            assert_eq!(jobbot.flood_waits, 0, "{jobbot:?}");
            assert_eq!(jobbot.dropped, 0, "{jobbot:?}");
            assert!(
                jobbot.delivered as f64 <= jobbot.limit_per_min * 3.0 + f64::from(agents) * 3.0,
                "jobbot cannot beat its own pacing: {jobbot:?}"
            );
            assert!(
                seed.flood_waits > 0,
                "twice the safe load floods the seed: {seed:?}"
            );
        }
    }
}
