//! `jobbot sim serve`, the simulator in its own process: the port's contract suite through the
//! remote back-end, and the session lock and the world across killed clients and a restarted
//! server. Real processes on real time: every wait is on state (the simulator's record, polled
//! through its admin interface) with a generous deadline, never a sleep followed by an assertion.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use jobbot_core::ids::SessionName;
use jobbot_core::telegram::{AccountConnector, ConnectError, ConnectOptions};
use jobbot_sim::contract::{self, CheckOutcome};
use jobbot_sim_remote::RemoteConnector;
use jobbot_sim_remote::fixture::{contract_params, remote_fixture};
use jobbot_sim_remote::rpc::AdminRpcClient;
use jobbot_store::PostgresStore;

/// A `jobbot` child process, killed when dropped.
struct Process {
    child: Child,
}

impl Process {
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends a signal (`TERM` or `KILL`).
    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} {}", self.pid());
    }

    /// Waits (bounded) for the process to exit, returning its status.
    fn wait_exit(&mut self) -> std::process::ExitStatus {
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("process {} did not exit within 30 s", self.pid());
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `jobbot sim serve` with `args` on a free port and reads its address from stdout.
fn sim_serve(state: &Path, args: &[&str]) -> (Process, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_jobbot"))
        .args(["sim", "serve", "--listen", "127.0.0.1:0", "--state"])
        .arg(state)
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("jobbot sim serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("the address line");
    let address = jobbot_sim_remote::parse_sim_url(line.trim())
        .unwrap_or_else(|error| panic!("first stdout line {line:?}: {error}"));
    (Process { child }, address)
}

fn write_params(dir: &Path) -> PathBuf {
    let file = dir.join("params.json");
    std::fs::write(&file, serde_json::to_string(&contract_params()).unwrap()).unwrap();
    file
}

/// Polls `check` (on state) every 50 ms until it holds, failing after `deadline`.
async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let give_up = tokio::time::Instant::now() + deadline;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < give_up,
            "not within {deadline:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ----- The contract suite through the remote back-end -----

/// One test per contract check, each against its own `jobbot sim serve` with fast parameters.
macro_rules! remote_contract_checks {
    ($($check:ident),+ $(,)?) => {
        mod remote_contract {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let dir = tempfile::tempdir().unwrap();
                    let params = write_params(dir.path());
                    let (_server, address) = sim_serve(
                        &dir.path().join("state.json"),
                        &["--params", params.to_str().unwrap()],
                    );
                    let fixture = remote_fixture(RemoteConnector::new(address));
                    match contract::$check(&fixture).await {
                        Ok(CheckOutcome::Passed) => {}
                        Ok(CheckOutcome::Skipped(why)) => panic!("skipped against the remote simulator: {why}"),
                        Err(failure) => panic!("{failure}"),
                    }
                }
            )+
        }
    };
}

jobbot_sim::contract_checks!(remote_contract_checks);

// ----- Processes that die, a server that restarts -----

/// `jobbot run --telegram sim://…` against the scripted world: it connects its sessions through
/// the simulator and posts notifications. Killed with SIGKILL, its sessions are released (the
/// server notices the closed connection); another client then holds them. The server, stopped
/// with SIGTERM and started again on the same state file, has the same world, the connection
/// history included, and no session was ever connected twice at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_client_releases_its_sessions_and_the_world_survives_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("sim-state.json");
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("configs")).unwrap();
    let config = data.join("configs").join("channels_config.json");
    let (mut server, address) = sim_serve(
        &state,
        &[
            "--world",
            "scripted",
            "--seed",
            "5",
            "--pace-ms",
            "200",
            "--posts",
            "8",
            "--save-interval-ms",
            "200",
            "--write-config",
            config.to_str().unwrap(),
        ],
    );
    let connector = RemoteConnector::new(address);
    let admin = connector.client().await.unwrap();
    let layout = admin
        .scenario_layout()
        .await
        .unwrap()
        .expect("a scripted world");
    let main = SessionName::main();
    let agent = SessionName::parse(&layout.agents[0].0).unwrap();

    let client = Process {
        child: Command::new(env!("CARGO_BIN_EXE_jobbot"))
            .arg("--data-dir")
            .arg(&data)
            .args(["run", "--listen", "127.0.0.1:0", "--telegram"])
            .arg(format!("sim://{address}"))
            .env_remove("RUST_LOG")
            .env("JOBBOT_ADMIN_PASSWORD", "not-used-by-this-test")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("jobbot run starts"),
    };
    wait_until(
        "jobbot run holds its main session and an agent's, and notifies a vacancy",
        Duration::from_secs(60),
        || async {
            let held = admin.open_connections(main.clone()).await.unwrap() == 1
                && admin.open_connections(agent.clone()).await.unwrap() == 1;
            let notified = admin
                .chat_messages(layout.python_channel)
                .await
                .unwrap()
                .unwrap()
                .len()
                + admin
                    .chat_messages(layout.design_channel)
                    .await
                    .unwrap()
                    .unwrap()
                    .len();
            held && notified > 0
        },
    )
    .await;
    // Held by jobbot run: nobody else may have it.
    match connector.connect(&agent, &ConnectOptions::default()).await {
        Err(ConnectError::SessionBusy { .. }) => {}
        other => panic!("a second holder of a held session: {:?}", other.err()),
    }

    client.signal("KILL");
    drop(client);
    wait_until(
        "the killed client's sessions are released",
        Duration::from_secs(30),
        || async {
            admin.open_connections(main.clone()).await.unwrap() == 0
                && admin.open_connections(agent.clone()).await.unwrap() == 0
        },
    )
    .await;
    let taken_over = connector
        .connect(&agent, &ConnectOptions::default())
        .await
        .expect("a released session connects");
    taken_over.get_me().await.expect("and works");
    drop(taken_over);

    admin.save().await.unwrap().unwrap();
    let sources_before: Vec<_> = {
        let mut all = Vec::new();
        for (_, source) in &layout.sources {
            all.push(admin.chat_messages(*source).await.unwrap().unwrap());
        }
        all
    };
    let history_before = admin.connection_history().await.unwrap();
    assert!(history_before.len() >= 3, "{history_before:#?}");
    assert_eq!(admin.duplicate_connections().await.unwrap(), 0);

    server.signal("TERM");
    assert!(server.wait_exit().success(), "a clean stop on SIGTERM");
    drop(server);
    let (_server, address) = sim_serve(&state, &["--pace-ms", "200"]);
    let admin = RemoteConnector::new(address).client().await.unwrap();
    let history = admin.connection_history().await.unwrap();
    assert_eq!(
        history[..history_before.len()]
            .iter()
            .map(|entry| (entry.id, &entry.session))
            .collect::<Vec<_>>(),
        history_before
            .iter()
            .map(|entry| (entry.id, &entry.session))
            .collect::<Vec<_>>(),
        "the connection history survives"
    );
    assert!(history.iter().all(|entry| entry.closed_at_ms.is_some()));
    for ((_, source), before) in layout.sources.iter().zip(&sources_before) {
        let after = admin.chat_messages(*source).await.unwrap().unwrap();
        assert_eq!(
            &after[..before.len()],
            &before[..],
            "the sources' posts survive"
        );
    }
    // The scripted activity goes on where it stopped, to its end.
    wait_until(
        "the scripted world posts its last vacancy",
        Duration::from_secs(30),
        || async {
            let progress = admin.scripted_progress().await.unwrap().unwrap();
            progress.posted == progress.posts
        },
    )
    .await;
    assert_eq!(admin.duplicate_connections().await.unwrap(), 0);
}

// ----- The operational store in PostgreSQL -----

/// The PostgreSQL server of the store tests (`JOBBOT_TEST_DATABASE_URL`, checked by `.ci/test`).
fn test_database_url() -> String {
    std::env::var("JOBBOT_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Runs SQL with `psql` (installed with `pg_isready`, which `.ci/test` requires), failing loudly.
fn psql(url: &str, sql: &str) {
    let output = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .expect("psql runs (Debian: postgresql-client)");
    assert!(
        output.status.success(),
        "this test needs PostgreSQL at {url} (JOBBOT_TEST_DATABASE_URL): {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A schema of the test's own, dropped when the test ends, failed or not (declared before what
/// uses it, so it is dropped after them).
struct TestSchema {
    base: String,
    name: String,
}

impl TestSchema {
    fn create(base: &str, name: String) -> Self {
        psql(
            base,
            &format!("DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"),
        );
        Self {
            base: base.to_owned(),
            name,
        }
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let sql = format!(
            "SET lock_timeout = '20s'; DROP SCHEMA IF EXISTS {} CASCADE",
            self.name
        );
        if std::thread::panicking() {
            // Best effort: the test's own failure is the one to report.
            let _ = Command::new("psql")
                .args([self.base.as_str(), "-q", "-c", sql.as_str()])
                .output();
        } else {
            psql(&self.base, &sql);
        }
    }
}

/// `DATABASE_URL=postgres://…` puts `jobbot run`'s records in PostgreSQL (here in a schema of
/// its own, named by the URL's `options[search_path]`): the notifications it sends are on record
/// there, and no SQLite file is created in the data directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobbot_run_keeps_its_records_in_postgresql_when_given_a_database_url() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("sim-state.json");
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("configs")).unwrap();
    let config = data.join("configs").join("channels_config.json");
    let (_server, address) = sim_serve(
        &state,
        &[
            "--world",
            "scripted",
            "--seed",
            "5",
            // Posting goes on long after `jobbot run` connects (a session new to the world
            // sees only what is posted after it connects).
            "--pace-ms",
            "500",
            "--posts",
            "200",
            "--write-config",
            config.to_str().unwrap(),
        ],
    );
    let base = test_database_url();
    let schema = TestSchema::create(&base, format!("jobbot_cli_test_{}", std::process::id()));
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}options[search_path]={}", schema.name);
    // The test's own view of the store; its migrations are the ones `jobbot run` finds applied.
    let store = PostgresStore::connect(&url).await.unwrap();

    let mut client = Process {
        child: Command::new(env!("CARGO_BIN_EXE_jobbot"))
            .arg("--data-dir")
            .arg(&data)
            .args(["run", "--listen", "127.0.0.1:0", "--telegram"])
            .arg(format!("sim://{address}"))
            .env_remove("RUST_LOG")
            .env("DATABASE_URL", &url)
            .env("JOBBOT_ADMIN_PASSWORD", "not-used-by-this-test")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("jobbot run starts"),
    };
    let admin = RemoteConnector::new(address).client().await.unwrap();
    wait_until(
        "jobbot run holds its main session",
        Duration::from_secs(60),
        || async { admin.open_connections(SessionName::main()).await.unwrap() == 1 },
    )
    .await;
    wait_until(
        "jobbot run records a sent notification in PostgreSQL",
        Duration::from_secs(60),
        || async {
            use jobbot_core::store::Store as _;
            store.outbox_counts().await.unwrap().sent > 0
        },
    )
    .await;
    use jobbot_core::store::Store as _;
    assert!(
        !store
            .vacancies(&Default::default())
            .await
            .unwrap()
            .is_empty()
    );
    client.signal("TERM");
    assert!(client.wait_exit().success(), "a clean stop on SIGTERM");
    assert!(
        !data.join("data").join("jobbot.sqlite").exists(),
        "no SQLite store beside PostgreSQL"
    );
    store.close().await;
}
