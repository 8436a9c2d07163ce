//! Child processes of `jobbot` itself: `jobbot sim serve` on a free port (its address read from
//! the one line it prints) and `jobbot run` against it. A [`ChildProcess`] is killed when
//! dropped, so neither a failed benchmark nor a failed test leaves one behind.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// Why a child process could not be started, signalled or waited for.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("could not start {what}: {source}")]
    Spawn {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("jobbot sim serve did not print its address: {0}")]
    NoAddress(String),
    #[error("could not send SIG{signal} to process {pid}: {detail}")]
    Signal {
        signal: &'static str,
        pid: u32,
        detail: String,
    },
    #[error("process {pid} did not exit within {within:?}")]
    NoExit { pid: u32, within: Duration },
    #[error("could not wait for process {pid}: {source}")]
    Wait {
        pid: u32,
        #[source]
        source: std::io::Error,
    },
}

/// A child process, killed (SIGKILL) and reaped when dropped unless it has exited.
#[derive(Debug)]
pub struct ChildProcess {
    /// `None` only once handed over by [`ChildProcess::into_child`].
    child: Option<Child>,
}

impl ChildProcess {
    pub fn new(child: Child) -> Self {
        Self { child: Some(child) }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends `signal` (`"TERM"`, `"KILL"`).
    pub fn signal(&self, signal: &'static str) -> Result<(), ProcessError> {
        let pid = self.pid();
        let output = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .output()
            .map_err(|source| ProcessError::Signal {
                signal,
                pid,
                detail: source.to_string(),
            })?;
        if output.status.success() {
            Ok(())
        } else {
            Err(ProcessError::Signal {
                signal,
                pid,
                detail: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            })
        }
    }

    /// Waits up to `within` for the process to exit, without blocking the runtime's thread.
    pub async fn exited(&mut self, within: Duration) -> Result<ExitStatus, ProcessError> {
        let pid = self.pid();
        let give_up = tokio::time::Instant::now() + within;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child
                    .try_wait()
                    .map_err(|source| ProcessError::Wait { pid, source })?
            {
                return Ok(status);
            }
            if tokio::time::Instant::now() >= give_up {
                return Err(ProcessError::NoExit { pid, within });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The process, no longer killed when this is dropped (its new owner answers for it).
    pub fn into_child(mut self) -> Child {
        self.child
            .take()
            .expect("a child process is handed over once")
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `PROGRAM sim serve` with `args` on a free port, keeping its world in `state`, and
/// reads the address it prints.
pub fn start_sim_serve(
    program: &Path,
    state: &Path,
    args: &[&str],
) -> Result<(ChildProcess, SocketAddr), ProcessError> {
    let mut child = Command::new(program)
        .args(["sim", "serve", "--listen", "127.0.0.1:0", "--state"])
        .arg(state)
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| ProcessError::Spawn {
            what: "jobbot sim serve",
            source,
        })?;
    let stdout = child.stdout.take();
    let server = ChildProcess::new(child);
    let mut line = String::new();
    if let Some(stdout) = stdout {
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|error| ProcessError::NoAddress(error.to_string()))?;
    }
    let address = jobbot_sim_remote::parse_sim_url(line.trim())
        .map_err(|error| ProcessError::NoAddress(format!("first line {line:?}: {error}")))?;
    Ok((server, address))
}

/// `PROGRAM --data-dir DATA run --telegram sim://ADDRESS`, its web on a free port and its stdout
/// discarded, for the caller to add its environment and spawn.
pub fn jobbot_run_command(program: &Path, data: &Path, address: SocketAddr) -> Command {
    let mut command = Command::new(program);
    command
        .arg("--data-dir")
        .arg(data)
        .args(["run", "--listen", "127.0.0.1:0", "--telegram"])
        .arg(format!("sim://{address}"))
        .env("JOBBOT_ADMIN_PASSWORD", "not-used-by-this-process")
        .stdout(Stdio::null());
    command
}
