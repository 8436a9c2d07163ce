//! Wiring shared by `jobbot run` (real Telegram) and `jobbot demo` (the simulator): the config
//! store feeding the engine live, and the engine's consumers. `main` stays thin; this is the one
//! place that knows how the parts fit.

use std::sync::Arc;

use anyhow::Context;
use jobbot_core::config::Config;
use jobbot_core::store::Store;
use jobbot_core::telegram::AccountConnector;
use jobbot_engine::{Engine, EngineClock, EngineSettings};
use jobbot_store::{ConfigStore, ConfigWatch};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct AppParts {
    pub connector: Arc<dyn AccountConnector>,
    pub store: Arc<dyn Store>,
    pub config: ConfigStore,
    pub settings: EngineSettings,
    pub clock: EngineClock,
}

pub struct RunningApp {
    pub engine: Engine,
    _config_watch: ConfigWatch,
    tasks: Vec<JoinHandle<()>>,
}

pub async fn start(parts: AppParts) -> anyhow::Result<RunningApp> {
    let config_watch = parts
        .config
        .watch()
        .context("could not watch the configuration file")?;
    let config = follow_config(&parts.config);
    let engine = Engine::start(
        parts.settings,
        parts.connector,
        parts.store,
        config.receiver,
        parts.clock,
    )
    .await
    .context("could not start the engine")?;
    Ok(RunningApp {
        engine,
        _config_watch: config_watch,
        tasks: vec![config.task],
    })
}

impl RunningApp {
    /// Stops everything; pending messages stay in the store for the next start.
    pub async fn shutdown(self) {
        self.engine.shutdown().await;
        for task in self.tasks {
            task.abort();
            let _ = task.await;
        }
    }
}

struct FollowedConfig {
    receiver: watch::Receiver<Arc<Config>>,
    task: JoinHandle<()>,
}

/// The engine runs on typed configurations; the store publishes whole snapshots. Each new
/// validated snapshot is handed on as it arrives (an invalid file never gets here: the store
/// keeps the last good one).
fn follow_config(store: &ConfigStore) -> FollowedConfig {
    let mut snapshots = store.subscribe();
    let (sender, receiver) = watch::channel(Arc::new(snapshots.borrow_and_update().config.clone()));
    let task = tokio::spawn(async move {
        while snapshots.changed().await.is_ok() {
            let config = Arc::new(snapshots.borrow_and_update().config.clone());
            if sender.send(config).is_err() {
                break;
            }
        }
    });
    FollowedConfig { receiver, task }
}
