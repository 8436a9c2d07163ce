//! What the tests that run real processes share: a child process that is killed when dropped,
//! `jobbot sim serve` on a free port, `jobbot run` against it, and waiting on state.

#![allow(dead_code)] // each test file uses its own part

pub mod record;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// A `jobbot` child process, killed when dropped.
pub struct Process {
    pub child: Child,
}

impl Process {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends a signal (`TERM` or `KILL`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} {}", self.pid());
    }

    /// Waits (bounded) for the process to exit, returning its status.
    pub fn wait_exit(&mut self) -> ExitStatus {
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("process {} did not exit within 30 s", self.pid());
    }

    /// [`Process::wait_exit`] without blocking the runtime's thread.
    pub async fn exited(&mut self, within: Duration) -> ExitStatus {
        let give_up = tokio::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < give_up,
                "process {} did not exit within {within:?}",
                self.pid()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `jobbot sim serve` with `args` on a free port and reads its address from stdout.
pub fn sim_serve(state: &Path, args: &[&str]) -> (Process, SocketAddr) {
    let (server, address) =
        jobbot::processes::start_sim_serve(Path::new(env!("CARGO_BIN_EXE_jobbot")), state, args)
            .expect("jobbot sim serve starts");
    (
        Process {
            child: server.into_child(),
        },
        address,
    )
}

/// `jobbot --data-dir DATA run --telegram sim://ADDRESS` (its web on a free port), to spawn.
pub fn jobbot_run_command(data: &Path, address: SocketAddr) -> Command {
    jobbot::processes::jobbot_run_command(Path::new(env!("CARGO_BIN_EXE_jobbot")), data, address)
}

/// Starts [`jobbot_run_command`], its log (`RUST_LOG`, when set) appended to `log` when given.
pub fn jobbot_run(data: &Path, address: SocketAddr, log: Option<&Path>) -> Process {
    let mut command = jobbot_run_command(data, address);
    match log {
        Some(file) => command.stderr(append(file)),
        None => command.env_remove("RUST_LOG").stderr(Stdio::null()),
    };
    Process {
        child: command.spawn().expect("jobbot run starts"),
    }
}

/// `file` opened for appending (created if missing).
pub fn append(file: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .expect("the log file opens")
}

/// Waits until the process `pid` holds the lock of the data directory `data` (`jobbot run`
/// writes itself into it once it holds it).
pub async fn holds_data_dir(data: &Path, pid: i32) {
    let lock = data.join("data").join("jobbot.lock");
    wait_until(
        "jobbot run takes the data directory's lock",
        Duration::from_secs(60),
        || async {
            std::fs::read_to_string(&lock)
                .ok()
                .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                .is_some_and(|holder| holder["pid"] == serde_json::json!(pid))
        },
    )
    .await;
}

/// Polls `check` (on state) every 50 ms until it holds, failing after `deadline`.
pub async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut check: F)
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

/// Runs `sql` with `psql` on `url` (installed with `pg_isready`, which `.ci/test` requires),
/// failing the test loudly, saying what it needs, if it cannot.
pub fn psql(url: &str, sql: &str) {
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
pub struct TestSchema {
    base: String,
    pub name: String,
}

impl TestSchema {
    pub fn create(base: &str, name: String) -> Self {
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
