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
//! [`DEFAULT_SEED`]); `JOBBOT_CRASH_LOG=FILE` keeps jobbot's log (with `RUST_LOG`) in
//! `FILE.kill` and `FILE.term`. The test prints one line,
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
    let log = std::env::var_os("JOBBOT_CRASH_LOG").map(|file| {
        let mut file = PathBuf::from(file);
        file.as_mut_os_string()
            .push(format!(".{}", stop.signal().to_lowercase()));
        let _ = std::fs::remove_file(&file);
        file
    });
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
        let mut process = jobbot_run(&data, address, log.as_deref());
        if stop == Stop::Term {
            // A SIGTERM before the process listens for it ends it by the signal's default
            // action: the moment counts from when it holds the data directory (it listens
            // before it takes the lock). SIGKILL needs no such wait.
            common::holds_data_dir(&data, process.pid()).await;
        }
        tokio::time::sleep(Duration::from_millis(moments.random_range(LIFETIME_MS))).await;
        process.signal(stop.signal());
        let status = process.exited(Duration::from_secs(60)).await;
        if stop == Stop::Term {
            assert!(
                status.success(),
                "stop {number} of {stops} (SIGTERM): not a clean exit: {status}"
            );
        }
    }

    // The last process: until nothing is due, nothing is pending and nothing is missing.
    let mut last = jobbot_run(&data, address, log.as_deref());
    let store = open_store(&data).await;
    let give_up = tokio::time::Instant::now() + SETTLE;
    loop {
        match settled(&admin, &store, &layout, &config).await {
            Ok(()) => break,
            Err(outstanding) if tokio::time::Instant::now() > give_up => {
                eprintln!("{stop:?} run: not settled within {SETTLE:?}: {outstanding}");
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    last.signal("TERM");
    let status = last.exited(Duration::from_secs(60)).await;
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
