//! Wiring shared by `jobbot run` (real Telegram) and `jobbot demo` (the simulator): the config
//! store feeding the engine live, monitoring, the CRM, and the web server, all in one runtime.
//! `main` stays thin; this is the one place that knows how the parts fit.

use std::sync::Arc;

use anyhow::Context;
use jobbot_core::config::Config;
use jobbot_core::store::Store;
use jobbot_core::telegram::AccountConnector;
use jobbot_engine::{
    Crm, CrmParts, CrmSettings, Engine, EngineClock, EngineSettings, NoAutoReplies, router,
};
use jobbot_engine::{Monitor, MonitorHandle, MonitorParts, MonitorSettings};
use jobbot_store::{ConfigStore, ConfigWatch};
use jobbot_web::{AppState, WebSettings};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub struct AppParts {
    pub connector: Arc<dyn AccountConnector>,
    pub store: Arc<dyn Store>,
    pub config: ConfigStore,
    pub settings: EngineSettings,
    pub monitor: MonitorSettings,
    pub crm: CrmSettings,
    pub clock: EngineClock,
    /// The web server's listener and settings; `None` runs without the web interface.
    pub web: Option<(TcpListener, WebSettings)>,
}

pub struct RunningApp {
    pub engine: Engine,
    monitor: MonitorHandle,
    crm: Crm,
    web: Option<(oneshot::Sender<()>, JoinHandle<std::io::Result<()>>)>,
    _config_watch: ConfigWatch,
    tasks: Vec<JoinHandle<()>>,
}

/// Extra authenticated web routes built once the engine runs (`jobbot demo`'s simulator
/// controls).
pub type ExtraRoutes = Box<dyn FnOnce(&Engine) -> jobbot_web::axum::Router + Send>;

pub async fn start(parts: AppParts) -> anyhow::Result<RunningApp> {
    start_with(parts, None).await
}

/// [`start`], with `extra` web routes beside the API (behind the same authentication).
pub async fn start_with(parts: AppParts, extra: Option<ExtraRoutes>) -> anyhow::Result<RunningApp> {
    let config_watch = parts
        .config
        .watch()
        .context("could not watch the configuration file")?;
    let followed = follow_config(&parts.config);
    let store = Arc::clone(&parts.store);
    let engine = Engine::start(
        parts.settings,
        Arc::clone(&parts.connector),
        parts.store,
        followed.receiver.clone(),
        parts.clock,
    )
    .await
    .context("could not start the engine")?;

    let telegram = engine
        .take_telegram_events()
        .expect("a fresh engine has its event stream");
    let (monitor_events, monitor_rx) = mpsc::unbounded_channel();
    let (crm_events, crm_rx) = mpsc::unbounded_channel();
    let fan_out = router::fan_out(telegram, vec![monitor_events, crm_events]);
    let (vacancies, vacancy_rx) = mpsc::unbounded_channel();
    let monitor = Monitor::spawn(MonitorParts {
        engine: engine.clone(),
        store,
        config: followed.receiver.clone(),
        events: monitor_rx,
        vacancies: Some(vacancies),
        reports: None,
        settings: parts.monitor,
    });
    let crm = Crm::start(CrmParts {
        engine: engine.clone(),
        config: followed.receiver,
        vacancies: vacancy_rx,
        telegram: crm_rx,
        replier: Arc::new(NoAutoReplies),
        settings: parts.crm,
    });
    let web = parts.web.map(|(listener, settings)| {
        let state = AppState::new(
            engine.clone(),
            parts.config.clone(),
            settings,
            parts.connector,
        );
        let extra = extra.map(|build| build(&engine));
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(jobbot_web::serve_with(listener, state, extra, async move {
            let _ = stopped.await;
        }));
        (stop, server)
    });
    Ok(RunningApp {
        engine,
        monitor,
        crm,
        web,
        _config_watch: config_watch,
        tasks: vec![followed.task, fan_out],
    })
}

impl RunningApp {
    /// Stops everything in order (web, CRM, monitoring, engine); pending messages stay in the
    /// store for the next start.
    pub async fn shutdown(self) {
        if let Some((stop, server)) = self.web {
            let _ = stop.send(());
            if let Ok(Err(error)) = server.await {
                tracing::warn!(%error, "the web server stopped with an error");
            }
        }
        self.crm.shutdown().await;
        self.monitor.stop().await;
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
