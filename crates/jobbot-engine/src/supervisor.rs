//! Supervision of the process's background tasks (monitoring, the CRM, the web server …).
//!
//! A task that fails — returns an error, panics, or ends while nobody asked it to — is logged,
//! counted and started again after a back-off that doubles up to a ceiling. A task that keeps
//! failing (more than [`SupervisorSettings::max_failures`] times within
//! [`SupervisorSettings::failure_window`]) is not restarted again: the supervisor reports it as
//! fatal ([`Supervisor::fatal`]), and the process shuts down in order and exits non-zero rather
//! than run with a part missing. A task that cannot be restarted in place (the engine's
//! dispatcher) is [`watched`](Supervisor::watch): its first failure is fatal.
//!
//! Every task's state is published in a `watch` ([`Supervisor::status`]) for the status API, and
//! counted where it changes ([`SupervisorMetrics`]) for `/metrics`.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::clock::EngineClock;

/// How the supervisor restarts tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupervisorSettings {
    /// The wait before the first restart; it doubles with each failure in a row …
    pub first_backoff: Duration,
    /// … up to this.
    pub max_backoff: Duration,
    /// More failures than this within `failure_window` make the task fatal.
    pub max_failures: u32,
    pub failure_window: Duration,
}

impl Default for SupervisorSettings {
    fn default() -> Self {
        Self {
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            max_failures: 5,
            failure_window: Duration::from_secs(600),
        }
    }
}

/// A supervised task, as the status API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskStatus {
    pub name: &'static str,
    #[serde(flatten)]
    pub state: TaskState,
    /// Restarts since the process started.
    pub restarts: u64,
    /// The last failure, if any.
    pub last_failure: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum TaskState {
    Running,
    /// Failed; starts again at this instant.
    Restarting {
        at_unix_ms: i64,
    },
    /// Ended at shutdown.
    Stopped,
    /// Failed too often: the process is shutting down.
    Failed,
}

/// A supervised task's label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TaskLabels {
    pub task: String,
}

/// What the supervisor counts, as tasks change state.
#[derive(Debug, Default)]
pub struct SupervisorMetrics {
    /// 1 while a task runs, 0 while it waits to restart, after it failed, or once stopped.
    pub up: Family<TaskLabels, Gauge>,
    /// Restarts of a task after a failure.
    pub restarts: Family<TaskLabels, Counter>,
}

impl SupervisorMetrics {
    /// Registers the families under the registry's prefix (`jobbot_task_up`,
    /// `jobbot_task_restarts_total` in the binary).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "task_up",
            "1 while a supervised background task runs, 0 while it restarts or after it failed",
            self.up.clone(),
        );
        registry.register(
            "task_restarts",
            "Restarts of a supervised background task after a failure, since start",
            self.restarts.clone(),
        );
    }

    fn labels(name: &str) -> TaskLabels {
        TaskLabels {
            task: name.to_owned(),
        }
    }
}

/// Why the process must stop.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {task} task failed {failures} times (last: {last}); stopping")]
pub struct Fatal {
    pub task: &'static str,
    pub failures: u32,
    pub last: String,
}

/// What a supervised task gets: whether shutdown was asked for.
#[derive(Debug, Clone)]
pub struct ShutdownSignal {
    receiver: watch::Receiver<bool>,
}

impl ShutdownSignal {
    /// Resolves once shutdown is asked for (at once if it was).
    pub async fn requested(&mut self) {
        let _ = self.receiver.wait_for(|stop| *stop).await;
    }

    pub fn is_requested(&self) -> bool {
        *self.receiver.borrow()
    }

    /// A signal that fires when `receiver` turns `true`, for a task run outside supervision.
    pub fn from_watch(receiver: watch::Receiver<bool>) -> Self {
        Self { receiver }
    }
}

/// The supervisor. Cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

struct Inner {
    settings: SupervisorSettings,
    clock: EngineClock,
    status: watch::Sender<Vec<TaskStatus>>,
    fatal: watch::Sender<Option<Fatal>>,
    tasks: Mutex<Vec<Entry>>,
    metrics: Arc<SupervisorMetrics>,
}

/// A supervised task: its own stop signal and its supervising loop.
struct Entry {
    name: &'static str,
    stop: watch::Sender<bool>,
    handle: Option<JoinHandle<()>>,
}

impl Supervisor {
    pub fn new(settings: SupervisorSettings, clock: EngineClock) -> Self {
        Self {
            inner: Arc::new(Inner {
                settings,
                clock,
                status: watch::channel(Vec::new()).0,
                fatal: watch::channel(None).0,
                tasks: Mutex::new(Vec::new()),
                metrics: Arc::default(),
            }),
        }
    }

    /// Runs `task` until shutdown, starting it again (with back-off) whenever it fails. `task`
    /// makes one run; it should return `Ok(())` once its shutdown signal fires.
    pub fn spawn<F, Fut, E>(&self, name: &'static str, mut task: F)
    where
        F: FnMut(ShutdownSignal) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let (index, stop) = self.register(name);
        let inner = Arc::clone(&self.inner);
        let handle = tokio::spawn(async move {
            let mut failures: VecDeque<Instant> = VecDeque::new();
            let mut backoff = inner.settings.first_backoff;
            loop {
                inner.update(index, |status| status.state = TaskState::Running);
                let signal = ShutdownSignal {
                    receiver: stop.clone(),
                };
                let run = tokio::spawn(task(signal));
                let failure = match run.await {
                    Ok(Ok(())) if *stop.borrow() => None,
                    Ok(Ok(())) => Some("it ended by itself".to_owned()),
                    Ok(Err(error)) => Some(error.to_string()),
                    Err(error) if error.is_panic() => {
                        Some(format!("panicked: {}", panic_text(error)))
                    }
                    Err(error) => Some(error.to_string()),
                };
                let Some(failure) = failure else {
                    inner.update(index, |status| status.state = TaskState::Stopped);
                    return;
                };
                let now = Instant::now();
                failures.push_back(now);
                while failures
                    .front()
                    .is_some_and(|at| now.duration_since(*at) > inner.settings.failure_window)
                {
                    failures.pop_front();
                }
                let count = u32::try_from(failures.len()).unwrap_or(u32::MAX);
                tracing::error!(task = name, failures = count, %failure, "a background task failed");
                if count > inner.settings.max_failures {
                    inner.give_up(index, name, count, failure);
                    return;
                }
                let restart_at = inner.clock.now_unix().plus(backoff);
                inner.update(index, |status| {
                    status.state = TaskState::Restarting {
                        at_unix_ms: restart_at.0,
                    };
                    status.restarts += 1;
                    status.last_failure = Some(failure);
                });
                inner
                    .metrics
                    .restarts
                    .get_or_create(&SupervisorMetrics::labels(name))
                    .inc();
                let mut shutdown = stop.clone();
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.wait_for(|stop| *stop) => {
                        inner.update(index, |status| status.state = TaskState::Stopped);
                        return;
                    }
                }
                backoff = (backoff * 2).min(inner.settings.max_backoff);
            }
        });
        self.inner.keep(index, handle);
    }

    /// Watches a task that cannot be restarted in place: its end (with `Err`) before shutdown is
    /// fatal at once.
    pub fn watch<Fut>(&self, name: &'static str, task: Fut)
    where
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let (index, _) = self.register(name);
        let inner = Arc::clone(&self.inner);
        inner.update(index, |status| status.state = TaskState::Running);
        let handle = tokio::spawn(async move {
            match task.await {
                Ok(()) => inner.update(index, |status| status.state = TaskState::Stopped),
                Err(failure) => {
                    tracing::error!(task = name, %failure, "a background task that cannot restart failed");
                    inner.give_up(index, name, 1, failure);
                }
            }
        });
        self.inner.keep(index, handle);
    }

    /// The counters and gauges of the tasks, to register for `/metrics`.
    pub fn metrics(&self) -> Arc<SupervisorMetrics> {
        Arc::clone(&self.inner.metrics)
    }

    /// Every task's state, always the latest.
    pub fn status(&self) -> watch::Receiver<Vec<TaskStatus>> {
        self.inner.status.subscribe()
    }

    /// Resolves when a task failed too often (never, while all is well).
    pub async fn fatal(&self) -> Fatal {
        let mut fatal = self.inner.fatal.subscribe();
        match fatal.wait_for(Option::is_some).await {
            Ok(fatal) => fatal.clone().expect("waited for Some"),
            Err(_) => std::future::pending().await,
        }
    }

    /// Asks the named tasks to stop and waits until they have, for a shutdown in order (a task
    /// not named keeps running).
    pub async fn stop(&self, names: &[&str]) {
        let handles: Vec<JoinHandle<()>> = self
            .inner
            .tasks
            .lock()
            .map(|mut tasks| {
                tasks
                    .iter_mut()
                    .filter(|entry| names.contains(&entry.name))
                    .filter_map(|entry| {
                        entry.stop.send_replace(true);
                        entry.handle.take()
                    })
                    .collect()
            })
            .unwrap_or_default();
        for handle in handles {
            let _ = handle.await;
        }
    }

    /// Asks every task to stop and waits until they have.
    pub async fn shutdown(&self) {
        let names: Vec<&'static str> = self
            .inner
            .tasks
            .lock()
            .map(|tasks| tasks.iter().map(|entry| entry.name).collect())
            .unwrap_or_default();
        self.stop(&names).await;
    }

    fn register(&self, name: &'static str) -> (usize, watch::Receiver<bool>) {
        let mut index = 0;
        self.inner.status.send_modify(|tasks| {
            index = tasks.len();
            tasks.push(TaskStatus {
                name,
                state: TaskState::Running,
                restarts: 0,
                last_failure: None,
            });
        });
        // Both families list every task from the start, at 1 and 0.
        let labels = SupervisorMetrics::labels(name);
        self.inner.metrics.up.get_or_create(&labels).set(1);
        let _ = self.inner.metrics.restarts.get_or_create(&labels);
        let (stop, receiver) = watch::channel(false);
        if let Ok(mut tasks) = self.inner.tasks.lock() {
            tasks.push(Entry {
                name,
                stop,
                handle: None,
            });
        }
        (index, receiver)
    }
}

impl Inner {
    fn update(&self, index: usize, change: impl FnOnce(&mut TaskStatus)) {
        self.status.send_modify(|tasks| {
            if let Some(status) = tasks.get_mut(index) {
                change(status);
                self.metrics
                    .up
                    .get_or_create(&SupervisorMetrics::labels(status.name))
                    .set(i64::from(status.state == TaskState::Running));
            }
        });
    }

    /// Marks a task failed for good and reports it as fatal (the first fatal failure is the one
    /// reported).
    fn give_up(&self, index: usize, task: &'static str, failures: u32, last: String) {
        self.update(index, |status| {
            status.state = TaskState::Failed;
            status.last_failure = Some(last.clone());
        });
        self.fatal.send_if_modified(|fatal| {
            if fatal.is_some() {
                return false;
            }
            *fatal = Some(Fatal {
                task,
                failures,
                last,
            });
            true
        });
    }

    fn keep(&self, index: usize, handle: JoinHandle<()>) {
        if let Ok(mut tasks) = self.tasks.lock()
            && let Some(entry) = tasks.get_mut(index)
        {
            entry.handle = Some(handle);
        }
    }
}

/// A panic's message, when it is text.
fn panic_text(error: tokio::task::JoinError) -> String {
    let payload = error.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn supervisor(max_failures: u32) -> Supervisor {
        Supervisor::new(
            SupervisorSettings {
                max_failures,
                ..SupervisorSettings::default()
            },
            EngineClock::starting_at(jobbot_core::store::UnixMillis(0)),
        )
    }

    /// A task that fails `failing` times (panicking, erroring, or ending by itself), then runs
    /// until shutdown.
    fn flaky(
        runs: Arc<AtomicU32>,
        failing: u32,
    ) -> impl FnMut(ShutdownSignal) -> futures_like::Run {
        move |mut signal| {
            let run = runs.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                match run {
                    run if run < failing && run % 3 == 0 => panic!("boom {run}"),
                    run if run < failing && run % 3 == 1 => Err(format!("error {run}")),
                    run if run < failing => Ok(()),
                    _ => {
                        signal.requested().await;
                        Ok(())
                    }
                }
            })
        }
    }

    mod futures_like {
        pub type Run =
            std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>;
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_task_restarts_with_back_off_and_is_counted() {
        let supervisor = supervisor(5);
        let runs = Arc::new(AtomicU32::new(0));
        supervisor.spawn("monitor", flaky(Arc::clone(&runs), 3));
        let mut status = supervisor.status();
        let started = Instant::now();
        let running = status
            .wait_for(|tasks| tasks[0].restarts == 3 && tasks[0].state == TaskState::Running)
            .await
            .unwrap()
            .clone();
        // 1 s, 2 s, 4 s of back-off before the fourth run.
        assert!(Instant::now() - started >= Duration::from_secs(7));
        assert_eq!(
            running[0].last_failure.as_deref(),
            Some("it ended by itself")
        );
        assert_eq!(runs.load(Ordering::SeqCst), 4);
        // Counted for `/metrics` where it happened.
        let metrics = supervisor.metrics();
        let labels = SupervisorMetrics::labels("monitor");
        assert_eq!(metrics.restarts.get_or_create(&labels).get(), 3);
        assert_eq!(metrics.up.get_or_create(&labels).get(), 1);
        supervisor.shutdown().await;
        assert_eq!(supervisor.status().borrow()[0].state, TaskState::Stopped);
        assert_eq!(metrics.up.get_or_create(&labels).get(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_keeps_failing_is_fatal() {
        let supervisor = supervisor(2);
        let runs = Arc::new(AtomicU32::new(0));
        supervisor.spawn("crm", flaky(Arc::clone(&runs), u32::MAX));
        let fatal = supervisor.fatal().await;
        assert_eq!((fatal.task, fatal.failures), ("crm", 3));
        assert_eq!(supervisor.status().borrow()[0].state, TaskState::Failed);
        supervisor.shutdown().await;
        assert_eq!(runs.load(Ordering::SeqCst), 3, "not restarted after that");
    }

    #[tokio::test(start_paused = true)]
    async fn a_watched_task_is_fatal_at_its_first_failure_and_fine_when_it_stops() {
        let supervisor = supervisor(5);
        supervisor.watch("dispatcher", async { Err("panicked".to_owned()) });
        supervisor.watch("other", async { Ok(()) });
        let fatal = supervisor.fatal().await;
        assert_eq!(fatal.task, "dispatcher");
        supervisor.shutdown().await;
        let status = supervisor.status().borrow().clone();
        assert_eq!(status[1].state, TaskState::Stopped);
    }
}
