//! `jobbot bench cluster` (#16 item 6): the same pool of agents run by 1, 2 and 3 `jobbot run`
//! nodes on one PostgreSQL database against one `jobbot sim serve`, each node count on a fresh
//! world and a fresh database. Vacancies arrive above the pool's true capacity; the benchmark
//! reports what the agents delivered over a measured window against what the world's limits
//! allowed in it, the store's transactions per message, and the cluster's promises (no session
//! connected twice, nothing lost, nothing sent twice).
//!
//! The simulator in its own process runs on real time (its flood limits are per minute of the
//! wall clock), so the world's limits are chosen for a run of minutes: each agent's
//! `sendMessage` limit is drawn log-normal around a low median (1 a minute by default), and
//! every other limit (resolving usernames, creating topics, first messages a day, the main
//! account's posts) is set out of the way, so the pool's sends are the one bottleneck and its
//! true capacity is the sum of the drawn rates. jobbot is told each agent's limit (per-agent
//! pacing): what is measured is what spreading the pool over nodes costs, not how fast jobbot
//! learns a limit (`jobbot bench pool` measures that).
//!
//! A vacancy makes each agent send twice: the auto-response to its author and the post in the
//! author's CRM topic (topic posts are `sendMessage` too). The offered load counts both.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use jobbot::cluster::{connected_once, lease_holders, unix_now};
use jobbot::processes::{ChildProcess, jobbot_run_command, start_sim_serve};
use jobbot_core::ids::{ChatId, SessionName};
use jobbot_core::store::{OutboxStatus, Store};
use jobbot_core::workflow::{AutoResponse, AutoResponseStep, Workflow};
use jobbot_sim::{AccountLimitDraw, AccountLimitSpread, NewUser, RateLimitParams, SimParams};
use jobbot_sim_remote::RemoteConnector;
use jobbot_sim_remote::client::RpcClient;
use jobbot_sim_remote::rpc::AdminRpcClient;
use jobbot_store::{ConfigStore, PostgresStore, ScratchDatabase};
use serde::Serialize;

use super::write_json;

/// The output channel's id in the configuration the benchmark writes.
const CHANNEL: &str = "bench_cluster";
/// In every auto-response: how the checks find them.
const AUTO_RESPONSE_MARK: &str = "Saw your vacancy";
/// `sendMessage` calls per vacancy by the pool: the auto-response and the topic post.
const SENDS_PER_VACANCY: f64 = 2.0;

/// What `bench cluster` runs.
#[derive(Debug, Clone)]
pub struct ClusterBenchPlan {
    /// Seeds the world: the agents' drawn limits, the call latencies.
    pub seed: u64,
    /// Node counts, each run on a fresh world and database.
    pub nodes: Vec<u32>,
    pub agents: u32,
    /// Median true `sendMessage` limit per agent, per minute.
    pub limit_median: f64,
    /// Log-normal sigma of the agents' limits.
    pub limit_spread: f64,
    /// Offered sends as a multiple of the pool's true capacity.
    pub load: f64,
    /// Load before the window opens: the pool's buckets drain and a backlog builds.
    pub warmup: Duration,
    /// The measured window.
    pub window: Duration,
    /// `JOBBOT_LEASE_SECONDS` of the nodes.
    pub lease_seconds: u32,
    /// How long the backlog may take to drain after the window before what is left counts as
    /// lost.
    pub settle: Duration,
    /// The PostgreSQL server (a database of the benchmark's own is created there and dropped).
    pub database_url: String,
    /// The `jobbot` executable the nodes and the simulator run.
    pub program: PathBuf,
}

impl ClusterBenchPlan {
    pub fn new(program: PathBuf, database_url: String) -> Self {
        Self {
            seed: SimParams::default().seed,
            nodes: vec![1, 2, 3],
            agents: 300,
            limit_median: 2.0,
            limit_spread: 0.25,
            load: 1.5,
            warmup: Duration::from_secs(20),
            window: Duration::from_secs(90),
            lease_seconds: 10,
            settle: Duration::from_secs(30),
            database_url,
            program,
        }
    }

    fn spread(&self) -> AccountLimitSpread {
        AccountLimitSpread {
            send_median_per_minute: self.limit_median,
            send_spread: self.limit_spread,
            burst_range: (1, 1),
            first_wait_range: (2, 8),
            violation_memory_range: (60, 120),
            budget_median: 100_000.0,
            budget_spread: 0.0,
        }
    }

    /// The world's parameters: the agents' sends drawn from [`ClusterBenchPlan::spread`], every
    /// other limit (and the main account's sends, which use the world's figures) out of the way.
    fn params(&self) -> SimParams {
        let generous = |per_minute: u32| RateLimitParams {
            per_minute,
            burst: 100,
            first_wait_seconds: 1,
            max_wait_seconds: 4,
            violation_memory_seconds: 60,
        };
        let defaults = SimParams::default();
        SimParams {
            seed: self.seed,
            start_unix_time: unix_now().0 / 1000,
            send_messages: generous(6_000),
            resolve_username: generous(600),
            create_forum_topic: generous(600),
            cold_dm_daily_budget: 100_000,
            account_limits: Some(self.spread()),
            ..defaults
        }
    }
}

/// The JSON written by `bench cluster --json FILE`.
#[derive(Debug, Serialize)]
pub struct ClusterBenchReport {
    pub seed: u64,
    pub world: String,
    /// What `store_round_trips_per_message` counts.
    pub counted: String,
    pub results: Vec<ClusterResult>,
}

/// One node count.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterResult {
    pub nodes: u32,
    pub agents: u32,
    /// `delivered_per_min / true_capacity_per_min` over the window.
    pub ratio: f64,
    /// Connections the simulator saw opened while their session had another one open.
    pub duplicate_connections: u64,
    /// Vacancies whose notification or auto-response never happened, is not queued, and did not
    /// end typed.
    pub lost: u64,
    /// Notifications or auto-responses that happened more than once.
    pub sent_twice: u64,
    /// Messages still queued when the settling time ran out: the backlog of a load above
    /// capacity, neither lost nor delivered.
    pub queued_at_end: u64,
    /// Workflows still running when the settling time ran out (each a step that could not be
    /// taken, e.g. a CRM topic its node cannot create: they are not counted in `lost`, which
    /// covers notifications and auto-responses).
    pub unfinished_workflows: u64,
    /// The database's transactions in the window per message the agents sent in it.
    pub store_round_trips_per_message: f64,
    pub true_capacity_per_min: f64,
    pub offered_per_min: f64,
    pub delivered_per_min: f64,
    pub window_s: f64,
    pub vacancies: u32,
    pub store_transactions: u64,
    pub flood_waits: u64,
    /// Leases taken over by another node during the window (each moves an agent, which
    /// reconnects): none once the leases are spread, unless a node failed to renew in time.
    pub leases_moved: u64,
    pub wall_clock_s: f64,
}

/// Runs every node count of `plan`, printing the world, a row per node count as it finishes,
/// and the ratio of each to the first's; writes the JSON report to `json` if given.
pub async fn run(
    plan: &ClusterBenchPlan,
    json: Option<&Path>,
    out: &mut impl Write,
) -> anyhow::Result<ClusterBenchReport> {
    let world = describe(plan);
    let counted =
        "store round trips: transactions committed or rolled back in the benchmark's own \
         database during the window (pg_stat_database xact_commit + xact_rollback, every \
         node's: leases, heartbeats, outbox polls, claims, workflows, notifications), divided \
         by the sendMessage calls the agents completed in it"
            .to_owned();
    writeln!(out, "{world}")?;
    writeln!(out, "{counted}")?;
    writeln!(out)?;
    writeln!(out, "{}", table_header())?;
    let base = std::env::temp_dir().join(format!("jobbot-bench-cluster-{}", std::process::id()));
    let mut results: Vec<ClusterResult> = Vec::new();
    for &nodes in &plan.nodes {
        let directory = base.join(format!("nodes-{nodes}"));
        std::fs::create_dir_all(&directory)
            .with_context(|| format!("could not create {}", directory.display()))?;
        let database = ScratchDatabase::create(
            &plan.database_url,
            &format!("jobbot_bench_cluster_{}_{nodes}", std::process::id()),
        )
        .await
        .context("could not create the benchmark's database")?;
        let started = Instant::now();
        let measured = measure(plan, nodes, &directory, &database).await;
        // Dropped whatever happened; the run's own error is the one to report.
        let dropped = database.drop_database().await;
        let mut result = measured.with_context(|| {
            format!(
                "the run with {nodes} node(s) (node logs in {})",
                directory.display()
            )
        })?;
        dropped.context("could not drop the benchmark's database")?;
        let _ = std::fs::remove_dir_all(&directory);
        result.wall_clock_s = started.elapsed().as_secs_f64();
        let baseline = results.first().map_or(result.ratio, |first| first.ratio);
        writeln!(out, "{}", table_row(&result, baseline))?;
        out.flush()?;
        results.push(result);
    }
    let _ = std::fs::remove_dir(&base);
    let report = ClusterBenchReport {
        seed: plan.seed,
        world,
        counted,
        results,
    };
    if let Some(path) = json {
        write_json(&report, path, out)?;
    }
    Ok(report)
}

/// The world as the benchmark built it in the simulator.
struct BenchWorld {
    admin: Arc<RpcClient>,
    source: ChatId,
    output: ChatId,
    crm_group: ChatId,
    agents: Vec<(SessionName, ChatId, AccountLimitDraw)>,
    /// One author per vacancy, so each vacancy asks for a first message of its own.
    recruiters: Vec<(String, ChatId)>,
}

/// A vacancy posted in the source.
struct Posted {
    message_id: i32,
    tag: String,
    recruiter: ChatId,
}

/// One node count, from a fresh world to its checks. Every process it starts is killed when it
/// returns, whatever happened.
async fn measure(
    plan: &ClusterBenchPlan,
    nodes: u32,
    directory: &Path,
    database: &ScratchDatabase,
) -> anyhow::Result<ClusterResult> {
    let params_file = directory.join("params.json");
    std::fs::write(&params_file, serde_json::to_string(&plan.params())?)?;
    let seed = plan.seed.to_string();
    let (mut server, address) = start_sim_serve(
        &plan.program,
        &directory.join("sim-state.json"),
        &[
            "--params",
            params_file
                .to_str()
                .context("a UTF-8 temporary directory")?,
            "--seed",
            &seed,
            // Saving a world of hundreds of accounts every second would compete for the CPU.
            "--save-interval-ms",
            "600000",
        ],
    )?;
    let admin = RemoteConnector::new(address)
        .client()
        .await
        .map_err(|error| anyhow::anyhow!("could not reach jobbot sim serve: {error}"))?;
    let capacity_per_min: f64 = f64::from(plan.agents) * plan.limit_median;
    let vacancies_per_second = plan.load * capacity_per_min / SENDS_PER_VACANCY / 60.0;
    let vacancies =
        (vacancies_per_second * (plan.warmup + plan.window).as_secs_f64()).ceil() as u32;
    let world = BenchWorld::build(admin, plan.agents, vacancies).await?;
    // The true rate is the drawn limits', not the median's.
    let true_rate_per_min: f64 = world
        .agents
        .iter()
        .map(|(_, _, limits)| f64::from(limits.send_messages.per_minute))
        .sum();
    let bursts: f64 = world
        .agents
        .iter()
        .map(|(_, _, limits)| f64::from(limits.send_messages.burst))
        .sum();
    let vacancies_per_second = plan.load * true_rate_per_min / SENDS_PER_VACANCY / 60.0;

    let config_file = directory.join("channels_config.json");
    std::fs::write(&config_file, format!("{:#}\n", world.config_json()))?;
    let store = PostgresStore::connect(database.url()).await?;
    let file = ConfigStore::open(&config_file).await?;
    let shared = ConfigStore::open_in_database(&store).await?;
    shared
        .replace(
            &shared.snapshot().revision,
            file.snapshot().document.clone(),
        )
        .await
        .context("the benchmark's configuration is refused")?;

    let mut running: BTreeMap<String, ChildProcess> = BTreeMap::new();
    for index in 1..=nodes {
        let name = format!("node-{index}");
        let data = directory.join(&name);
        std::fs::create_dir_all(&data)?;
        let log = std::fs::File::create(directory.join(format!("{name}.log")))?;
        let child = jobbot_run_command(&plan.program, &data, address)
            .env("DATABASE_URL", database.url())
            .env("JOBBOT_NODE", &name)
            .env("JOBBOT_LEASE_SECONDS", plan.lease_seconds.to_string())
            .env("RUST_LOG", "warn")
            .stderr(log)
            .spawn()
            .context("could not start jobbot run")?;
        running.insert(name, ChildProcess::new(child));
    }
    let mut wanted: Vec<SessionName> = world.agents.iter().map(|(s, ..)| s.clone()).collect();
    wanted.push(SessionName::main());
    // Evenly: while leases still move between nodes, a moved agent reconnects (sends lost
    // meanwhile) and its new node paces it from nothing, which the window would count as the
    // cost of several nodes.
    let fair_share = wanted.len() / nodes as usize;
    wait_for(
        "every session held by a lease, spread evenly over every node, and connected once",
        Duration::from_secs(240),
        || async {
            let held = lease_holders(&store).await?;
            let mut per_node: BTreeMap<&String, usize> = BTreeMap::new();
            for holder in held.values() {
                *per_node.entry(holder).or_default() += 1;
            }
            Ok(held.len() == wanted.len()
                && per_node.len() == nodes as usize
                && per_node.values().all(|count| *count >= fair_share)
                && connected_once(&world.admin, &wanted).await?)
        },
    )
    .await?;

    // The load: vacancy i at `i / rate` after the start, from a task of its own so the
    // snapshots below do not delay it.
    let start = tokio::time::Instant::now();
    let poster = {
        let admin = Arc::clone(&world.admin);
        let source = world.source;
        let recruiters = world.recruiters.clone();
        tokio::spawn(async move {
            let mut posted = Vec::new();
            for (index, (username, recruiter)) in recruiters.into_iter().enumerate() {
                let at = start + Duration::from_secs_f64(index as f64 / vacancies_per_second);
                tokio::time::sleep_until(at).await;
                let tag = format!("#vac{index:06}");
                let text = format!(
                    "Senior Python developer (FastAPI, PostgreSQL), remote.\n\
                     Apply: @{username}\n\n#вакансия {tag}"
                );
                let message_id = admin.channel_post(source, text).await??;
                posted.push(Posted {
                    message_id,
                    tag,
                    recruiter,
                });
            }
            anyhow::Ok(posted)
        })
    };
    tokio::time::sleep_until(start + plan.warmup).await;
    let before = world.snapshot(database, &store).await?;
    tokio::time::sleep_until(start + plan.warmup + plan.window).await;
    let after = world.snapshot(database, &store).await?;
    let posted = poster.await.context("the posting task panicked")??;

    // Drain the backlog, then check everything that was posted.
    let settled = wait_for(
        "nothing pending and no workflow running",
        plan.settle,
        || async {
            Ok(store.pending_outbox().await?.is_empty()
                && store.active_workflows().await?.is_empty())
        },
    )
    .await;
    if let Err(error) = settled {
        eprintln!("{nodes} node(s): {error:#}: what is left is queued or unfinished");
    }
    let queued_at_end = store.pending_outbox().await?.len() as u64;
    let unfinished_workflows = store.active_workflows().await?.len() as u64;
    let (lost, sent_twice) = world.check(&store, &posted).await?;
    let duplicate_connections = world.admin.duplicate_connections().await?;

    for (name, mut node) in running {
        node.signal("TERM")?;
        let status = node.exited(Duration::from_secs(60)).await?;
        if !status.success() {
            eprintln!("{name}: not a clean stop on SIGTERM: {status}");
        }
    }
    store.close().await;
    server.signal("TERM")?;
    let _ = server.exited(Duration::from_secs(30)).await;

    let window_s = after.at.duration_since(before.at).as_secs_f64();
    let delivered = after.sent.saturating_sub(before.sent);
    let delivered_per_min = delivered as f64 * 60.0 / window_s;
    // What the world allowed in the window: each agent's rate over it, plus its burst (its
    // bucket may be full when the window opens).
    let true_capacity_per_min = true_rate_per_min + bursts * 60.0 / window_s;
    let store_transactions = after.transactions.saturating_sub(before.transactions);
    Ok(ClusterResult {
        nodes,
        agents: plan.agents,
        ratio: delivered_per_min / true_capacity_per_min,
        duplicate_connections,
        lost,
        sent_twice,
        unfinished_workflows,
        store_round_trips_per_message: store_transactions as f64 / delivered.max(1) as f64,
        true_capacity_per_min,
        offered_per_min: vacancies_per_second * 60.0 * SENDS_PER_VACANCY,
        queued_at_end,
        delivered_per_min,
        window_s,
        vacancies: posted.len() as u32,
        store_transactions,
        flood_waits: after.flood_waits.saturating_sub(before.flood_waits),
        leases_moved: after.lease_takes.saturating_sub(before.lease_takes),
        wall_clock_s: 0.0,
    })
}

/// The agents' counters and the database's transactions at one moment.
struct Snapshot {
    /// Midway through reading the agents' counters.
    at: Instant,
    sent: u64,
    flood_waits: u64,
    transactions: u64,
    /// The sum of the leases' fencing tokens: each take of a lease adds one.
    lease_takes: u64,
}

impl BenchWorld {
    async fn build(admin: Arc<RpcClient>, agents: u32, vacancies: u32) -> anyhow::Result<Self> {
        let main = admin
            .create_user(NewUser::named("Jobbot").phone("+79990000000"))
            .await??;
        admin.log_in_session(SessionName::main(), main).await??;
        let publisher = admin.create_user(NewUser::named("Publisher")).await??;
        let source = admin
            .create_channel(
                "@bench_jobs".to_owned(),
                Some("bench_jobs".to_owned()),
                vec![publisher],
            )
            .await??;
        admin.add_member(source, main).await??;
        let output = admin
            .create_channel("Bench output".to_owned(), None, vec![main])
            .await??;
        let crm_group = admin
            .create_group("Bench CRM".to_owned(), None, true, vec![main])
            .await??;
        let mut pool = Vec::new();
        for index in 0..agents {
            let session = SessionName::parse(&format!("agent_bench_{index}"))?;
            let user =
                NewUser::named(&format!("Agent {index}")).phone(&format!("+7998{:07}", index + 1));
            let id = admin.create_account(session.clone(), user).await??;
            admin.add_admin(crm_group, id).await??;
            let limits = admin.account_limits(id).await??;
            pool.push((session, id, limits));
        }
        let mut recruiters = Vec::new();
        for index in 0..vacancies {
            let username = format!("bench_recruiter_{index}");
            let id = admin
                .create_user(NewUser::named("Recruiter").username(&username))
                .await??;
            recruiters.push((username, id));
        }
        Ok(Self {
            admin,
            source,
            output,
            crm_group,
            agents: pool,
            recruiters,
        })
    }

    /// One output channel answering every vacancy of the source through the pool, each agent
    /// paced at its true limit, no typing delay, no AI.
    fn config_json(&self) -> serde_json::Value {
        let agents: Vec<serde_json::Value> = self
            .agents
            .iter()
            .enumerate()
            .map(|(index, (session, _, limits))| {
                serde_json::json!({
                    "phone": format!("+7998{:07}", index + 1),
                    "session_name": session.as_str(),
                    "pacing": {
                        "messages_per_minute": limits.send_messages.per_minute,
                        "burst": limits.send_messages.burst,
                        "cold_dms_per_day": limits.cold_dm_daily_budget,
                    },
                })
            })
            .collect();
        serde_json::json!({
            "output_channels": [{
                "id": CHANNEL,
                "name": "Cluster bench",
                "telegram_id": self.output.get(),
                "enabled": true,
                "input_sources": ["@bench_jobs"],
                "filters": {"include_keywords": ["python"], "exclude_keywords": [], "require_all_includes": false},
                "crm_enabled": true,
                "crm_group_id": self.crm_group.get(),
                "agents": agents,
                "auto_response_enabled": true,
                "auto_response_template": format!("Hello {{first_name}}! {AUTO_RESPONSE_MARK} in «{{source_title}}»: could you tell me more?"),
                "ai_conversation_enabled": false,
                "human_delay": {"min_seconds": 0, "max_seconds": 0},
            }]
        })
    }

    async fn snapshot(
        &self,
        database: &ScratchDatabase,
        store: &PostgresStore,
    ) -> anyhow::Result<Snapshot> {
        let began = Instant::now();
        let (mut sent, mut flood_waits) = (0, 0);
        for (_, id, _) in &self.agents {
            let counters = self.admin.counters(*id).await??;
            // `sendMessage` calls only: a topic's creation is a message too, under a limit of
            // its own (out of the way here), so it is no share of the pool's send capacity.
            sent += counters.messages_sent - counters.topics_created;
            flood_waits += counters.send_flood_waits;
        }
        let at = began + began.elapsed() / 2;
        let transactions = database.transactions().await?;
        let lease_takes = store
            .session_leases()
            .await?
            .iter()
            .map(|lease| u64::try_from(lease.token.0).unwrap_or(0))
            .sum();
        Ok(Snapshot {
            at,
            sent,
            flood_waits,
            transactions,
            lease_takes,
        })
    }

    /// The crash suite's promises for this world, from the simulator's record (and, for how an
    /// auto-response ended, the store): each vacancy notified exactly once; its author
    /// auto-responded once when its outbox message is sent, at most once when it ended failed
    /// or expired, never when no message was queued (its workflow ended typed before). Returns
    /// `(lost, sent_twice)`.
    async fn check(&self, store: &PostgresStore, posted: &[Posted]) -> anyhow::Result<(u64, u64)> {
        let (mut lost, mut twice) = (0, 0);
        let notifications = self.admin.chat_messages(self.output).await??;
        let agents: BTreeSet<ChatId> = self.agents.iter().map(|(_, id, _)| *id).collect();
        for vacancy in posted {
            let notified = notifications
                .iter()
                .filter(|message| message.text.contains(&vacancy.tag))
                .count();
            if notified > 1 {
                twice += 1;
            } else if notified == 0 {
                // Still queued for the main account (the backlog) is not lost.
                let key = format!(
                    "notification:{CHANNEL}:{}:{}",
                    self.source, vacancy.message_id
                );
                let queued = store
                    .outbox_by_key(&key)
                    .await?
                    .is_some_and(|message| message.status == OutboxStatus::Pending);
                if !queued {
                    lost += 1;
                }
            }
            let received = self
                .admin
                .private_messages(vacancy.recruiter)
                .await??
                .iter()
                .filter(|message| {
                    message
                        .sender
                        .is_some_and(|sender| agents.contains(&sender))
                        && message.text.contains(AUTO_RESPONSE_MARK)
                })
                .count();
            let outbox = store
                .outbox_by_key(&format!(
                    "auto_response:{CHANNEL}:{}",
                    vacancy.recruiter.get()
                ))
                .await?;
            // How many auto-responses the outcome allows: (at least, at most).
            let allowed = match outbox.map(|message| message.status) {
                Some(OutboxStatus::Sent) => (1, 1),
                // It may have gone out before the answer was lost, never twice.
                Some(OutboxStatus::Failed | OutboxStatus::Expired) => (0, 1),
                // Still queued (the backlog): not lost, never sent twice.
                Some(OutboxStatus::Pending) => (0, 1),
                None => {
                    let key = AutoResponse::key(CHANNEL, self.source, vacancy.message_id);
                    let ended_typed = matches!(
                        store
                            .workflow_by_key(&key)
                            .await?
                            .map(|record| record.state),
                        Some(Workflow::AutoResponse(AutoResponse {
                            step: AutoResponseStep::Finished { .. },
                            ..
                        }))
                    );
                    // Never queued: allowed only when its workflow ended typed before that.
                    if ended_typed { (0, 0) } else { (1, 1) }
                }
            };
            if received > allowed.1 {
                twice += 1;
            } else if received < allowed.0 {
                lost += 1;
            }
        }
        Ok((lost, twice))
    }
}

/// Polls `check` every 500 ms until it holds; an error after `deadline`.
async fn wait_for<F, Fut>(what: &str, deadline: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let give_up = tokio::time::Instant::now() + deadline;
    while !check().await? {
        anyhow::ensure!(
            tokio::time::Instant::now() < give_up,
            "not within {deadline:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

fn describe(plan: &ClusterBenchPlan) -> String {
    let spread = plan.spread();
    let params = plan.params();
    format!(
        "world (seed {:#x}): {} agents, each with its own sendMessage limit drawn log-normal \
         median {}/min sigma {} (rounded, at least 1), burst {}..={}, first flood wait {}..={} s \
         doubling; true capacity over the window: each agent's rate times the window plus its \
         burst; jobbot is told each agent's limit (per-agent pacing), no typing delay. Not \
         binding: the main account's sends {}/min, resolveUsername and createForumTopic {}/min \
         per account, {} first messages a day; latency {}+0..{} ms. Load: one vacancy per new \
         author at {}x the pool's true capacity (each vacancy: an auto-response and a post in \
         the author's CRM topic, both sendMessage by the agent); {} s of warm-up, then a {} s \
         window; leases of {} s. One jobbot sim serve on real time and one fresh PostgreSQL \
         database per node count.",
        plan.seed,
        plan.agents,
        spread.send_median_per_minute,
        spread.send_spread,
        spread.burst_range.0,
        spread.burst_range.1,
        spread.first_wait_range.0,
        spread.first_wait_range.1,
        params.send_messages.per_minute,
        params.resolve_username.per_minute,
        params.cold_dm_daily_budget,
        params.call_latency_ms,
        params.call_latency_jitter_ms,
        plan.load,
        plan.warmup.as_secs(),
        plan.window.as_secs(),
        plan.lease_seconds,
    )
}

fn table_header() -> String {
    format!(
        "{:>5} {:>6} {:>9} {:>9} {:>9} {:>6} {:>7} {:>9} {:>7} {:>6} {:>5} {:>5} {:>5} {:>6} {:>6} {:>6} {:>7}",
        "nodes",
        "agents",
        "true/min",
        "offer/min",
        "deliv/min",
        "ratio",
        "vs 1st",
        "trips/msg",
        "floods",
        "moved",
        "dup",
        "lost",
        "twice",
        "queued",
        "unfin.",
        "posted",
        "real s"
    )
}

fn table_row(result: &ClusterResult, baseline: f64) -> String {
    format!(
        "{:>5} {:>6} {:>9.1} {:>9.1} {:>9.1} {:>6.3} {:>7.3} {:>9.2} {:>7} {:>6} {:>5} {:>5} {:>5} {:>6} {:>6} {:>6} {:>7.1}",
        result.nodes,
        result.agents,
        result.true_capacity_per_min,
        result.offered_per_min,
        result.delivered_per_min,
        result.ratio,
        result.ratio / baseline,
        result.store_round_trips_per_message,
        result.flood_waits,
        result.leases_moved,
        result.duplicate_connections,
        result.lost,
        result.sent_twice,
        result.queued_at_end,
        result.unfinished_workflows,
        result.vacancies,
        result.wall_clock_s,
    )
}
