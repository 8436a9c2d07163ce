//! The kill -9 suite (#13, item 10): real `jobbot run` processes against a real `jobbot sim serve`
//! with the scripted world (sources posting vacancies, recruiters replying to the auto-responses,
//! an operator answering in the CRM topics), stopped at seeded random moments during that traffic
//! and started again each time; then everything is checked from the simulator's record (and,
//! for how an auto-response ended, from jobbot's store):
//!
//! - every matching vacancy is notified exactly once in each output channel it matches, and in
//!   no other;
//! - every vacancy's author gets the channel's auto-response at most once, and at least once
//!   unless its outbox message ended failed or expired (typed) or its workflow ended without
//!   one (typed);
//! - every recruiter reply is relayed into the contact's topic exactly once;
//! - every operator answer reaches the contact exactly once;
//! - no session was ever connected from two processes at once.
//!
//! One run is stopped with SIGKILL (`KILLS` times), one with SIGTERM (each stop must be a clean
//! exit). `JOBBOT_CRASH_SEED` picks the world's vacancies and the stop moments (default
//! [`DEFAULT_SEED`]); jobbot's log (`RUST_LOG`, by default `info`) is always written, to the run's
//! temporary directory or, with `JOBBOT_CRASH_LOG=FILE`, to `FILE.kill` and `FILE.term`; when a
//! run fails (a process that does not exit, a world that does not settle) its last lines are
//! printed with the failure, so a failure in CI can be read without running it again. The test prints one line,
//! `crash suite: seed=S kills=K checked=M lost=L duplicated=D`, and fails unless L and D are 0.
//!
//! The stop moments are seeded delays after each start; everything else waits on state (the
//! simulator's record through its admin interface, the store), with deadlines.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{jobbot_run, sim_serve};
use jobbot_core::ids::ChatId;
use jobbot_core::store::{OutboxStatus, Store};
use jobbot_core::workflow::{AutoResponseEnd, AutoResponseStep, Workflow};
use jobbot_sim::scenario::DemoWorld;
use jobbot_sim::{MessageRecord, RateLimitParams, SimParams};
use jobbot_sim_remote::RemoteConnector;
use jobbot_sim_remote::client::RpcClient;
use jobbot_sim_remote::rpc::AdminRpcClient;
use jobbot_store::SqliteStore;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DEFAULT_SEED: u64 = 1;
/// SIGKILLs in the kill run.
const KILLS: u32 = 30;
/// SIGTERMs in the term run.
const TERMS: u32 = 6;
/// Vacancies the scripted world posts, one every `PACE_MS`: about as long as the stops take, so
/// they fall into traffic.
const POSTS: u32 = 40;
const PACE_MS: u64 = 600;
/// A process lives this long (a seeded draw) before it is stopped.
const LIFETIME_MS: std::ops::Range<u64> = 200..3_000;
/// How long the last process gets to finish everything that is due.
const SETTLE: Duration = Duration::from_secs(240);

/// The marks the checks find things by (`jobbot_sim::scenario` and the demo's configuration).
const AUTO_RESPONSE_MARK: &str = "Увидел вашу вакансию";
const RELAYED_MARK: &str = "👤";
const ANSWER_MARK: &str = "[answer ";
const CRM_CHANNEL: &str = "channel_python";

fn seed() -> u64 {
    match std::env::var("JOBBOT_CRASH_SEED") {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| {
            panic!("JOBBOT_CRASH_SEED: {text:?} is not a whole number (a seed)")
        }),
        Err(_) => DEFAULT_SEED,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Kill,
    Term,
}

impl Stop {
    fn signal(self) -> &'static str {
        match self {
            Self::Kill => "KILL",
            Self::Term => "TERM",
        }
    }
}

/// What the checks found.
#[derive(Debug, Default)]
struct Tally {
    checked: u64,
    lost: u64,
    duplicated: u64,
    problems: Vec<String>,
    /// Things found that happened, by kind: a run without traffic of every kind proves nothing.
    seen: BTreeMap<&'static str, u64>,
}

impl Tally {
    /// Something that must have happened exactly `count == 1` times.
    fn once(&mut self, kind: &'static str, count: usize, what: impl FnOnce() -> String) {
        self.checked += 1;
        if count > 0 {
            *self.seen.entry(kind).or_default() += 1;
        }
        match count {
            1 => {}
            0 => self.lose(what()),
            _ => self.duplicate(format!("{count}× {}", what())),
        }
    }

    /// Something that may have happened once, never more.
    fn at_most_once(&mut self, count: usize, what: impl FnOnce() -> String) {
        self.checked += 1;
        if count > 1 {
            self.duplicate(format!("{count}× {}", what()));
        }
    }

    /// Something that must not have happened at all.
    fn never(&mut self, count: usize, what: impl FnOnce() -> String) {
        self.checked += 1;
        if count > 0 {
            self.duplicate(format!("{count}× (unexpected) {}", what()));
        }
    }

    fn lose(&mut self, what: String) {
        self.lost += 1;
        self.problems.push(format!("lost: {what}"));
    }

    fn duplicate(&mut self, what: String) {
        self.duplicated += 1;
        self.problems.push(format!("duplicated: {what}"));
    }

    fn add(&mut self, other: Tally) {
        self.checked += other.checked;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.problems.extend(other.problems);
        for (kind, count) in other.seen {
            *self.seen.entry(kind).or_default() += count;
        }
    }
}

/// One run: a world, a data directory, `stops` processes stopped with `stop`, a last one that
/// finishes the work, the checks.
async fn crash_run(seed: u64, stop: Stop, stops: u32) -> Tally {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("configs")).unwrap();
    let config_file = data.join("configs").join("channels_config.json");
    let log = match std::env::var_os("JOBBOT_CRASH_LOG") {
        Some(file) => {
            let mut file = PathBuf::from(file);
            file.as_mut_os_string()
                .push(format!(".{}", stop.signal().to_lowercase()));
            let _ = std::fs::remove_file(&file);
            file
        }
        None => dir.path().join("jobbot.log"),
    };
    let params = dir.path().join("params.json");
    std::fs::write(&params, serde_json::to_string(&world_params(seed)).unwrap()).unwrap();
    let (mut server, address) = sim_serve(
        &dir.path().join("sim-state.json"),
        &[
            "--params",
            params.to_str().unwrap(),
            "--world",
            "scripted",
            "--seed",
            &seed.to_string(),
            "--pace-ms",
            &PACE_MS.to_string(),
            "--posts",
            &POSTS.to_string(),
            "--write-config",
            config_file.to_str().unwrap(),
        ],
    );
    let admin = RemoteConnector::new(address).client().await.unwrap();
    let layout = admin
        .scenario_layout()
        .await
        .unwrap()
        .expect("a scripted world");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_file).unwrap()).unwrap();

    // The stops, at seeded moments after each start.
    let mut moments = StdRng::seed_from_u64(seed ^ stop_salt(stop));
    for number in 1..=stops {
        let mut process = jobbot_run(&data, address, Some(&log));
        if stop == Stop::Term {
            // A SIGTERM before the process listens for it ends it by the signal's default
            // action: the moment counts from when it holds the data directory (it listens
            // before it takes the lock). SIGKILL needs no such wait.
            common::holds_data_dir(&data, process.pid()).await;
        }
        tokio::time::sleep(Duration::from_millis(moments.random_range(LIFETIME_MS))).await;
        process.signal(stop.signal());
        let status =
            exited_or_report(&mut process, &log, &format!("stop {number} ({stop:?})")).await;
        if stop == Stop::Term {
            assert!(
                status.success(),
                "stop {number} of {stops} (SIGTERM): not a clean exit: {status}"
            );
        }
    }

    // The last process: until nothing is due, nothing is pending and nothing is missing.
    let mut last = jobbot_run(&data, address, Some(&log));
    let store = open_store(&data).await;
    let give_up = tokio::time::Instant::now() + SETTLE;
    loop {
        match settled(&admin, &store, &layout, &config).await {
            Ok(()) => break,
            Err(outstanding) if tokio::time::Instant::now() > give_up => {
                eprintln!("{stop:?} run: not settled within {SETTLE:?}: {outstanding}");
                // What the scheduler had learned: a rate or budget it can no longer send at.
                for (agent, learned) in store.learned_limits().await.unwrap_or_default() {
                    eprintln!("learned limits of {agent}: {learned:?}");
                }
                eprintln!("{}", log_tail(&log));
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    last.signal("TERM");
    let status = exited_or_report(&mut last, &log, "the last process").await;
    assert!(status.success(), "the last process's SIGTERM: {status}");

    let mut tally = check(&admin, &store, &layout, &config).await;
    tally.checked += 1;
    let overlaps = admin.duplicate_connections().await.unwrap();
    if overlaps > 0 {
        tally.duplicate(format!(
            "{overlaps} connection(s) opened while their session had another one open"
        ));
    }
    for kind in [
        "notification",
        "auto-response",
        "relayed reply",
        "operator answer",
    ] {
        assert!(
            tally.seen.contains_key(kind),
            "{stop:?} run: no {kind} happened at all, so none was checked: {:?}",
            tally.seen
        );
    }
    store.close().await;
    server.signal("TERM");
    server.exited(Duration::from_secs(30)).await;
    if !tally.problems.is_empty() {
        tally
            .problems
            .insert(0, format!("{stop:?} run (seed {seed}):"));
    }
    tally
}

/// The scripted world's parameters with Telegram's limits scaled to the suite's minutes: the
/// same kinds of answers (flood waits that double, `PEER_FLOOD` for the young agent), with waits
/// of seconds instead of minutes, so the last process can finish within [`SETTLE`]. The limits
/// themselves are tested elsewhere (the simulator's contract suite, the engine's tests).
fn world_params(seed: u64) -> SimParams {
    let defaults = DemoWorld::params(seed);
    let scaled =
        |limit: RateLimitParams, per_minute: u32, first_wait_seconds: u32| RateLimitParams {
            per_minute,
            burst: limit.burst * 2,
            first_wait_seconds,
            max_wait_seconds: first_wait_seconds * 4,
            violation_memory_seconds: 60,
        };
    SimParams {
        send_messages: scaled(defaults.send_messages, 60, 3),
        resolve_username: scaled(defaults.resolve_username, 30, 5),
        create_forum_topic: scaled(defaults.create_forum_topic, 30, 3),
        ..defaults
    }
}

/// How long a stopped process gets to exit.
const EXIT_WITHIN: Duration = Duration::from_secs(60);

/// Waits (bounded) for a stopped process to exit; if it does not, fails with what it was doing:
/// its threads' states and the end of its log.
async fn exited_or_report(
    process: &mut common::Process,
    log: &Path,
    what: &str,
) -> std::process::ExitStatus {
    let give_up = tokio::time::Instant::now() + EXIT_WITHIN;
    loop {
        if let Some(status) = process.child.try_wait().expect("try_wait") {
            return status;
        }
        if tokio::time::Instant::now() > give_up {
            let threads = thread_states(process.pid());
            panic!(
                "{what}: process {} did not exit within {EXIT_WITHIN:?}\nits threads: {threads}\n{}",
                process.pid(),
                log_tail(log)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Each thread of `pid` with its scheduler state and kernel wait channel (Linux `/proc`).
fn thread_states(pid: i32) -> String {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return "(no /proc entry)".to_owned();
    };
    let mut lines = Vec::new();
    for task in tasks.flatten() {
        let path = task.path();
        let read = |name: &str| {
            std::fs::read_to_string(path.join(name))
                .map(|text| text.trim().to_owned())
                .unwrap_or_default()
        };
        // `stat`: "tid (comm) state …"; the state follows the closing parenthesis.
        let stat = read("stat");
        let state = stat
            .rsplit_once(") ")
            .map(|(name, rest)| format!("{}) {}", name, rest.split(' ').next().unwrap_or("?")))
            .unwrap_or(stat);
        lines.push(format!("{state} wchan={}", read("wchan")));
    }
    lines.join("; ")
}

/// The last lines of jobbot's log, to read a failure by.
fn log_tail(log: &Path) -> String {
    const LINES: usize = 80;
    let text = strip_colours(&std::fs::read_to_string(log).unwrap_or_default());
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(LINES);
    format!(
        "--- the last {} lines of jobbot's log ({}) ---\n{}",
        lines.len() - from,
        log.display(),
        lines[from..].join("\n")
    )
}

/// `text` without ANSI colour sequences (`ESC [ … m`).
fn strip_colours(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

fn stop_salt(stop: Stop) -> u64 {
    match stop {
        Stop::Kill => 0x6b69_6c6c,
        Stop::Term => 0x7465_726d,
    }
}

async fn open_store(data: &Path) -> SqliteStore {
    // The database exists once a process has started; the last one is starting now.
    let data = data.join("data");
    common::wait_until(
        "jobbot's database exists",
        Duration::from_secs(60),
        || async { data.join(SqliteStore::FILE_NAME).exists() },
    )
    .await;
    SqliteStore::open(&data).await.expect("the store opens")
}

/// Whether the world waits for nothing: the scripted activity has nothing left to do, jobbot
/// has no workflow running and no message pending, and the checks miss nothing. Otherwise, what
/// is outstanding.
async fn settled(
    admin: &RpcClient,
    store: &SqliteStore,
    layout: &DemoWorld,
    config: &serde_json::Value,
) -> Result<(), String> {
    let progress = admin.scripted_progress().await.unwrap().unwrap();
    let due = progress.due;
    if due.vacancies + due.replies + due.answers > 0 {
        return Err(format!("the scripted world has this due: {due:?}"));
    }
    let active = store
        .active_workflows()
        .await
        .map_err(|error| error.to_string())?;
    if !active.is_empty() {
        let keys: Vec<_> = active.iter().map(|workflow| &workflow.key).collect();
        return Err(format!("workflows running: {keys:?}"));
    }
    let pending = store
        .pending_outbox()
        .await
        .map_err(|error| error.to_string())?;
    if !pending.is_empty() {
        let keys: Vec<_> = pending
            .iter()
            .map(|message| {
                (
                    message.id,
                    &message.message.idempotency_key,
                    &message.holdup,
                )
            })
            .collect();
        return Err(format!("messages pending: {keys:?}"));
    }
    let missing = check(admin, store, layout, config).await;
    if missing.lost > 0 {
        return Err(format!("missing: {:?}", missing.problems));
    }
    Ok(())
}

/// A channel's filters and sources, as the configuration has them.
struct ChannelRule {
    id: String,
    output: ChatId,
    sources: Vec<String>,
    include: Vec<String>,
    exclude: Vec<String>,
}

impl ChannelRule {
    fn all(config: &serde_json::Value) -> Vec<Self> {
        let strings = |value: &serde_json::Value| -> Vec<String> {
            value
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|item| item.as_str().map(str::to_lowercase))
                .collect()
        };
        config["output_channels"]
            .as_array()
            .expect("output_channels")
            .iter()
            .map(|channel| {
                assert_eq!(
                    channel["filters"]["require_all_includes"],
                    serde_json::json!(false)
                );
                Self {
                    id: channel["id"].as_str().unwrap().to_owned(),
                    output: ChatId::from_bot_api(channel["telegram_id"].as_i64().unwrap()).unwrap(),
                    sources: strings(&channel["input_sources"])
                        .iter()
                        .map(|source| {
                            source
                                .trim_start_matches("https://t.me/")
                                .trim_start_matches('@')
                                .to_owned()
                        })
                        .collect(),
                    include: strings(&channel["filters"]["include_keywords"]),
                    exclude: strings(&channel["filters"]["exclude_keywords"]),
                }
            })
            .collect()
    }

    /// The original's rule, on its own: case-insensitive substrings, any exclude rejects, any
    /// include accepts.
    fn matches(&self, source: &str, text: &str) -> bool {
        let text = text.to_lowercase();
        self.sources.iter().any(|name| name == source)
            && !self.exclude.iter().any(|keyword| text.contains(keyword))
            && self.include.iter().any(|keyword| text.contains(keyword))
    }
}

/// A vacancy the scripted world posted.
struct Posted {
    source: ChatId,
    source_name: String,
    message: MessageRecord,
    /// `#<reference>`, unique per vacancy.
    tag: String,
}

/// `#<digits>` at the end of a scripted vacancy.
fn reference_tag(text: &str) -> Option<String> {
    let tag = text.rsplit('#').next()?;
    (!tag.is_empty() && tag.chars().all(|c| c.is_ascii_digit())).then(|| format!("#{tag}"))
}

/// Whether `text` holds `tag` as a whole token (`#1001` is not in `#10012`).
fn has_tag(text: &str, tag: &str) -> bool {
    text.match_indices(tag).any(|(at, _)| {
        !text[at + tag.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })
}

/// How many private messages `contact` received from any of `agents` containing `mark`.
async fn received_from_agents(
    admin: &RpcClient,
    contact: ChatId,
    agents: &[ChatId],
    mark: &str,
) -> usize {
    let mut received = 0;
    for agent in agents {
        received += admin
            .received_from(contact, *agent)
            .await
            .unwrap()
            .unwrap()
            .iter()
            .filter(|message| message.text.contains(mark))
            .count();
    }
    received
}

/// Everything the suite promises, checked from the record.
async fn check(
    admin: &RpcClient,
    store: &SqliteStore,
    layout: &DemoWorld,
    config: &serde_json::Value,
) -> Tally {
    let mut tally = Tally::default();
    let rules = ChannelRule::all(config);
    let mut posted = Vec::new();
    for (name, source) in &layout.sources {
        for message in admin.chat_messages(*source).await.unwrap().unwrap() {
            if message.is_service {
                continue;
            }
            let tag = reference_tag(&message.text).expect("a scripted vacancy ends with its tag");
            posted.push(Posted {
                source: *source,
                source_name: name.clone(),
                message,
                tag,
            });
        }
    }

    // Notifications: exactly once in each channel a vacancy matches, never in another.
    for rule in &rules {
        let notifications = admin.chat_messages(rule.output).await.unwrap().unwrap();
        for vacancy in &posted {
            let count = notifications
                .iter()
                .filter(|message| has_tag(&message.text, &vacancy.tag))
                .count();
            let what = || format!("notification of {} in {}", vacancy.tag, rule.id);
            if rule.matches(&vacancy.source_name, &vacancy.message.text) {
                tally.once("notification", count, what);
            } else {
                tally.never(count, what);
            }
        }
    }

    // Auto-responses: one workflow per matching vacancy, finished; per contact at most one
    // message, and one unless it ended typed without delivery.
    let crm_rule = rules
        .iter()
        .find(|rule| rule.id == CRM_CHANNEL)
        .expect("the CRM channel");
    let agents: Vec<ChatId> = layout.agents.iter().map(|(_, _, id)| *id).collect();
    let mut delivered_by_contact: BTreeMap<String, bool> = BTreeMap::new();
    for vacancy in posted
        .iter()
        .filter(|vacancy| crm_rule.matches(&vacancy.source_name, &vacancy.message.text))
    {
        let key = jobbot_core::workflow::AutoResponse::key(
            CRM_CHANNEL,
            vacancy.source,
            vacancy.message.message_id,
        );
        let Some(record) = store.workflow_by_key(&key).await.unwrap() else {
            tally.lose(format!("auto-response workflow {key}"));
            continue;
        };
        let Workflow::AutoResponse(workflow) = record.state else {
            panic!("{key} is not an auto-response workflow");
        };
        let contact = workflow.contact.as_str().to_lowercase();
        tally.checked += 1;
        match &workflow.step {
            AutoResponseStep::Finished { end } => {
                let delivered = matches!(end, AutoResponseEnd::Completed { .. });
                *delivered_by_contact.entry(contact).or_default() |= delivered;
            }
            step => tally.lose(format!("auto-response workflow {key} stuck at {step:?}")),
        }
    }
    for (username, recruiter) in &layout.recruiters {
        let received = received_from_agents(admin, *recruiter, &agents, AUTO_RESPONSE_MARK).await;
        let what = || format!("auto-response to @{username}");
        let outbox = store
            .outbox_by_key(&format!("auto_response:{CRM_CHANNEL}:{}", recruiter.get()))
            .await
            .unwrap();
        match (
            outbox.map(|message| message.status),
            delivered_by_contact.get(username),
        ) {
            // Sent (Telegram answered): exactly once in the record.
            (Some(OutboxStatus::Sent), _) => tally.once("auto-response", received, what),
            // Ended failed or expired, typed (`OutboxEnd`): it may have gone out before the
            // answer was lost, never twice.
            (Some(OutboxStatus::Failed | OutboxStatus::Expired), _) => {
                tally.at_most_once(received, what)
            }
            (Some(OutboxStatus::Pending), _) => tally.lose(format!("{} still pending", what())),
            // Never queued: every workflow for the contact ended typed before that.
            (None, Some(false) | None) => tally.never(received, what),
            (None, Some(true)) => tally.lose(format!("{}: completed without a message", what())),
        }
    }

    // The CRM: each contact's topic, recruiter replies in it, operator answers to the contact.
    let topics = admin.topics(layout.crm_group).await.unwrap().unwrap();
    let group_messages = admin
        .chat_messages(layout.crm_group)
        .await
        .unwrap()
        .unwrap();
    let topic_of = |username: &str| {
        let suffix = format!("(@{username})");
        topics
            .iter()
            .filter(|topic| !topic.deleted && topic.title.to_lowercase().ends_with(&suffix))
            .map(|topic| topic.id)
            .collect::<Vec<_>>()
    };
    for (username, recruiter) in &layout.recruiters {
        let own_topics = topic_of(username);
        tally.at_most_once(own_topics.len(), || format!("topic of @{username}"));
        for agent in &agents {
            let replies = admin
                .received_from(*agent, *recruiter)
                .await
                .unwrap()
                .unwrap();
            for reply in replies {
                let relayed: Vec<&MessageRecord> = group_messages
                    .iter()
                    .filter(|message| {
                        message.text.starts_with(RELAYED_MARK) && message.text.contains(&reply.text)
                    })
                    .collect();
                let in_topic = relayed
                    .iter()
                    .filter(|message| {
                        message
                            .topic
                            .is_some_and(|topic| own_topics.contains(&topic))
                    })
                    .count();
                let what = || format!("reply of @{username} ({:?}) in its topic", reply.text);
                if in_topic == 0 && !relayed.is_empty() {
                    tally.checked += 1;
                    tally.lose(format!("{} (relayed elsewhere)", what()));
                } else {
                    tally.once("relayed reply", relayed.len(), what);
                }
            }
        }
    }
    for answer in group_messages
        .iter()
        .filter(|message| message.author == Some(layout.operator))
    {
        let (Some(topic), Some(at)) = (answer.topic, answer.text.find(ANSWER_MARK)) else {
            continue;
        };
        let tag = &answer.text[at..];
        let contact = topics
            .iter()
            .find(|view| view.id == topic)
            .and_then(|view| view.title.rsplit("(@").next())
            .map(|rest| rest.trim_end_matches(')').to_lowercase());
        let Some((username, recruiter)) = contact.and_then(|contact| {
            layout
                .recruiters
                .iter()
                .find(|(username, _)| *username == contact)
        }) else {
            panic!("an operator answer {tag:?} in topic {topic:?} of nobody known");
        };
        let received = received_from_agents(admin, *recruiter, &agents, tag).await;
        tally.once("operator answer", received, || {
            format!("operator answer {tag} to @{username}")
        });
    }
    tally
}

/// The suite: the SIGKILL run and the SIGTERM run side by side (each its own world and data
/// directory), one line for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_suite_kill_and_term_lose_and_duplicate_nothing() {
    let seed = seed();
    let (killed, terminated) = tokio::join!(
        crash_run(seed, Stop::Kill, KILLS),
        crash_run(seed, Stop::Term, TERMS)
    );
    let mut tally = killed;
    tally.add(terminated);
    // Past the test harness's capture: the line shows in every run of the suite.
    writeln!(
        std::io::stdout().lock(),
        "crash suite: seed={seed} kills={KILLS} checked={} lost={} duplicated={}",
        tally.checked,
        tally.lost,
        tally.duplicated
    )
    .unwrap();
    assert!(
        tally.lost == 0 && tally.duplicated == 0,
        "{}",
        tally.problems.join("\n")
    );
}
