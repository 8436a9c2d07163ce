//! Wiring shared by `jobbot run` (real Telegram) and `jobbot demo` (the simulator): the config
//! store feeding the engine live, monitoring, the CRM, and the web server, all in one runtime,
//! each background part supervised. `main` stays thin; this is the one place that knows how the
//! parts fit, and in which order they stop.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use jobbot_core::cluster::{LeaseTimings, NodeId};
use jobbot_core::config::Config;
use jobbot_core::ids::SessionName;
use jobbot_core::store::Store;
use jobbot_core::telegram::AccountConnector;
use jobbot_engine::lease::{LeaseKeeper, run_lease_keeper};
use jobbot_engine::supervisor::{Fatal, ShutdownSignal, Supervisor, SupervisorSettings};
use jobbot_engine::{
    Crm, CrmParts, CrmSettings, DispatcherEnd, Engine, EngineClock, EngineSettings, NoAutoReplies,
    router,
};
use jobbot_engine::{Monitor, MonitorParts, MonitorSettings};
use jobbot_store::{ClusterFeed, ConfigStore, ConfigWatch};
use jobbot_web::{AppState, WebSettings};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long an orderly shutdown waits for every account's update position to be saved.
const FLUSH_POSITIONS_WITHIN: Duration = Duration::from_secs(10);

pub struct AppParts {
    pub connector: Arc<dyn AccountConnector>,
    pub store: Arc<dyn Store>,
    pub config: ConfigStore,
    pub settings: EngineSettings,
    pub monitor: MonitorSettings,
    pub crm: CrmSettings,
    pub supervisor: SupervisorSettings,
    pub clock: EngineClock,
    /// The web server's listener and settings; `None` runs without the web interface.
    pub web: Option<(TcpListener, WebSettings)>,
    /// With several nodes on one database: this node's name and the lease clock. Sessions are
    /// then used only under their lease (`jobbot_engine::lease`); `None` on a node of its own.
    pub cluster: Option<ClusterSettings>,
    /// AI conversations in the CRM (`None`: operators answer alone).
    pub ai: Option<jobbot_engine::AiParts>,
}

pub struct ClusterSettings {
    pub node: NodeId,
    pub timings: LeaseTimings,
    /// The live view across nodes (PostgreSQL's `NOTIFY`): this node's display events go to
    /// the others, theirs reach this node's live page. `None`: this node's events only.
    pub feed: Option<ClusterFeed>,
}

/// The running lease keeper: stopped after the engine, then the node leaves the cluster.
struct RunningKeeper {
    stop: tokio::sync::oneshot::Sender<()>,
    task: JoinHandle<LeaseKeeper>,
    wanted: JoinHandle<()>,
}

pub struct RunningApp {
    pub engine: Engine,
    supervisor: Supervisor,
    _config_watch: ConfigWatch,
    follower: JoinHandle<()>,
    fan_out: JoinHandle<()>,
    keeper: Option<RunningKeeper>,
}

/// Why the app stopped running.
#[derive(Debug)]
pub enum Stopped {
    /// Ctrl-C, SIGTERM, or the caller's own reason.
    Asked,
    /// A part failed for good: the process must exit non-zero.
    Failed(Fatal),
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
    let mut settings = parts.settings;
    settings.leases_required = parts.cluster.is_some();
    let main_session = settings.main_session.clone();
    let mut crm_settings = parts.crm;
    crm_settings.node = parts.cluster.as_ref().map(|cluster| cluster.node.clone());
    let engine = Engine::start(
        settings,
        Arc::clone(&parts.connector),
        parts.store,
        followed.receiver.clone(),
        parts.clock,
    )
    .await
    .context("could not start the engine")?;
    let mut cluster = parts.cluster;
    let feed = cluster.as_mut().and_then(|cluster| cluster.feed.take());
    let keeper = cluster.map(|cluster| {
        start_keeper(
            cluster,
            &engine,
            Arc::clone(&store),
            parts.clock,
            followed.receiver.clone(),
            main_session,
        )
    });
    let supervisor = Supervisor::new(parts.supervisor, parts.clock);
    {
        let engine = engine.clone();
        supervisor.watch("dispatcher", async move {
            match engine.ended().await {
                DispatcherEnd::ShutDown => Ok(()),
                DispatcherEnd::Failed(why) => Err(why),
            }
        });
    }

    let telegram = engine
        .take_telegram_events()
        .expect("a fresh engine has its event stream");
    let (fan_out, mut consumers) = router::fan_out(telegram, 2);
    let crm_events = consumers.pop().expect("two consumers");
    let monitor_events = consumers.pop().expect("two consumers");
    let crm = Crm::new(CrmParts {
        engine: engine.clone(),
        config: followed.receiver.clone(),
        telegram: crm_events,
        replier: Arc::new(NoAutoReplies),
        ai: parts.ai,
        settings: crm_settings,
    })
    .await
    .context("could not start the CRM")?;
    let crm_handle = crm.handle();
    let monitor = Monitor::new(MonitorParts {
        engine: engine.clone(),
        store,
        config: followed.receiver,
        events: monitor_events,
        crm: Some(crm.handle()),
        reports: None,
        settings: parts.monitor,
    });
    supervisor.spawn("monitor", move |signal| {
        let monitor = monitor.clone();
        async move { monitor.run(signal).await }
    });
    {
        let crm = crm.clone();
        supervisor.spawn("crm_intake", move |signal| {
            let crm = crm.clone();
            async move { crm.run_intake(signal).await }
        });
    }
    {
        let crm = crm.clone();
        supervisor.spawn("ai_knowledge", move |signal| {
            let crm = crm.clone();
            async move { crm.run_knowledge(signal).await }
        });
    }
    supervisor.spawn("crm_workflows", move |signal| {
        let crm = crm.clone();
        async move { crm.run_workflows(signal).await }
    });
    if let Some(feed) = &feed {
        let (engine, feed) = (engine.clone(), feed.clone());
        supervisor.spawn("cluster_feed", move |signal| {
            share_live_events(engine.clone(), feed.clone(), signal)
        });
    }
    if let Some((listener, mut settings)) = parts.web {
        supervisor.metrics().register(&mut settings.registry);
        let state = AppState::new(
            engine.clone(),
            parts.config.clone(),
            settings,
            parts.connector,
        );
        state.set_tasks(supervisor.status());
        state.set_crm(crm_handle);
        if let Some(feed) = &feed {
            state.set_cluster_events(feed.heard());
        }
        let extra = extra.map(|build| build(&engine));
        // The listener outlives a failed server: each run serves a clone of it.
        let listener = listener
            .into_std()
            .context("could not keep the web listener")?;
        supervisor.spawn("web", move |mut signal: ShutdownSignal| {
            let (state, extra) = (state.clone(), extra.clone());
            let listener = listener.try_clone().and_then(TcpListener::from_std);
            async move {
                let listener = listener?;
                jobbot_web::serve_with(listener, state, extra, async move {
                    signal.requested().await;
                })
                .await
            }
        });
    }
    Ok(RunningApp {
        engine,
        supervisor,
        _config_watch: config_watch,
        follower: followed.task,
        fan_out,
        keeper,
    })
}

/// With several nodes: announces this node's display events (what its live page shows) to the
/// other nodes, and hears theirs, until shutdown. An announcement that fails is logged and
/// dropped: the live view is best effort, and the pages' reads of the API make it whole.
async fn share_live_events(
    engine: Engine,
    feed: ClusterFeed,
    mut signal: ShutdownSignal,
) -> Result<(), std::convert::Infallible> {
    let mut events = engine.subscribe();
    let listening = feed.clone().listen(async move { signal.requested().await });
    tokio::pin!(listening);
    loop {
        tokio::select! {
            () = &mut listening => return Ok(()),
            event = events.recv() => match event {
                Ok(event) => {
                    let Some(shown) = jobbot_web::live_event(&event) else { continue };
                    if let Err(error) = feed.publish(shown).await {
                        tracing::warn!(target: "cluster", %error, "could not announce a live event to the other nodes");
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
            },
        }
    }
}

/// Every session the configuration wants connected: the main account's and the agents'.
fn wanted_sessions(config: &Config, main: Option<&SessionName>) -> Vec<SessionName> {
    let mut sessions: Vec<SessionName> = config.agent_accounts().into_keys().collect();
    sessions.extend(main.cloned());
    sessions.sort();
    sessions.dedup();
    sessions
}

fn start_keeper(
    cluster: ClusterSettings,
    engine: &Engine,
    store: Arc<dyn Store>,
    clock: EngineClock,
    mut config: watch::Receiver<Arc<Config>>,
    main: Option<SessionName>,
) -> RunningKeeper {
    tracing::info!(target: "cluster", node = %cluster.node, "sessions are used under leases shared with the other nodes");
    let (wanted_tx, wanted_rx) =
        watch::channel(wanted_sessions(&config.borrow_and_update(), main.as_ref()));
    let wanted = tokio::spawn(async move {
        while config.changed().await.is_ok() {
            let sessions = wanted_sessions(&config.borrow_and_update(), main.as_ref());
            wanted_tx.send_if_modified(|current| {
                let changed = *current != sessions;
                *current = sessions;
                changed
            });
        }
    });
    let keeper = LeaseKeeper::new(store, cluster.node, cluster.timings);
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(run_lease_keeper(
        keeper,
        engine.clone(),
        clock,
        wanted_rx,
        async move {
            let _ = stopped.await;
        },
    ));
    RunningKeeper { stop, task, wanted }
}

impl RunningApp {
    /// Runs until `asked` resolves or a part fails for good.
    pub async fn run_until(&self, asked: impl std::future::Future<Output = ()>) -> Stopped {
        tokio::select! {
            () = asked => Stopped::Asked,
            fatal = self.supervisor.fatal() => {
                tracing::error!(%fatal, "stopping: a part of jobbot failed for good");
                Stopped::Failed(fatal)
            }
        }
    }

    /// Stops everything in order, so that nothing is lost and little is redone:
    /// 1. the web server (no new operator actions);
    /// 2. sending: no new send starts, and sends handed to an account but not begun (queued
    ///    behind another, or still "typing…") come back unsent, so the accounts are free for
    ///    the steps below and the stop takes about one call, not a queue of human-like delays;
    /// 3. the update positions, saved once monitoring and the CRM have taken in every update
    ///    delivered so far (the next start then replays almost nothing);
    /// 4. taking updates in, after the one being handled;
    /// 5. the CRM's workflows (each stays stored at its step);
    /// 6. the engine: the sends in flight come back and are recorded, then every account
    ///    disconnects and releases its session.
    /// 7. with several nodes, the lease keeper; then the node leaves the cluster, freeing its
    ///    leases at once (nothing uses the sessions any more).
    ///
    /// Pending messages and unfinished workflows stay in the store for the next start.
    pub async fn shutdown(self) {
        self.supervisor.stop(&["web"]).await;
        self.engine.stop_sending();
        match self.engine.flush_positions(FLUSH_POSITIONS_WITHIN).await {
            Ok(saved) => tracing::info!(saved, "update positions saved"),
            Err(error) => tracing::warn!(%error, "could not save the update positions"),
        }
        self.supervisor
            .stop(&["monitor", "crm_intake", "ai_knowledge"])
            .await;
        self.supervisor.stop(&["crm_workflows"]).await;
        self.engine.shutdown().await;
        if let Some(keeper) = self.keeper {
            let _ = keeper.stop.send(());
            keeper.wanted.abort();
            match keeper.task.await {
                Ok(mut keeper) => match keeper.leave().await {
                    Ok(()) => tracing::info!(target: "cluster", "left the cluster; leases freed"),
                    Err(error) => {
                        tracing::warn!(target: "cluster", %error, "could not leave the cluster; the leases expire by themselves")
                    }
                },
                Err(error) => tracing::error!(target: "cluster", %error, "the lease keeper failed"),
            }
        }
        self.supervisor.shutdown().await;
        for task in [self.follower, self.fan_out] {
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
