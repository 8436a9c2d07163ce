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

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::record::{Tally, check, settled, world_params};
use common::{jobbot_run, sim_serve};
use jobbot_core::store::Store;
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
    let (admin, layout, config) = common::record::scripted_world(address, &config_file).await;

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
