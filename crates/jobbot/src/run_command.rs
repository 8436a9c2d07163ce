//! `jobbot run`: the main job against real Telegram.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use jobbot_core::cluster::{LeaseTimings, NodeId};
use jobbot_core::ids::SessionName;
use jobbot_core::store::Store;
use jobbot_core::telegram::{AccountConnector, AuthorizationStatus, ConnectError, ConnectOptions};
use jobbot_engine::{EngineClock, EngineSettings};
use jobbot_store::{ConfigStore, PostgresStore, SqliteStore};
use jobbot_telegram::{GrammersConfig, GrammersConnector, VaultSessions};

use std::net::SocketAddr;

use jobbot_engine::{CrmSettings, MonitorSettings};
use jobbot_web::AuthSettings;
use tokio::net::TcpListener;

use crate::app;
use crate::cli::DataDir;
use crate::data_lock::DataDirLock;
use jobbot_engine::supervisor::SupervisorSettings;

/// The web interface's credentials: `JOBBOT_ADMIN_PASSWORD` (environment or `.env`), else the
/// password generated on the first start and kept in `DATA_DIR/data/admin_password` (mode 0600),
/// printed that once. `JOBBOT_API_TOKEN` adds a token for scripts. Secrets that are too short
/// stop the start.
pub fn web_access(data_dir: &DataDir, address: SocketAddr) -> anyhow::Result<AuthSettings> {
    let variables = data_dir.variables();
    let token = variables("JOBBOT_API_TOKEN");
    let password = match variables("JOBBOT_ADMIN_PASSWORD").filter(|p| !p.is_empty()) {
        Some(password) => password,
        None => stored_or_new_password(&data_dir.data().join("admin_password"), address)?,
    };
    Ok(AuthSettings::new(&password, token.as_deref())?)
}

fn stored_or_new_password(file: &std::path::Path, address: SocketAddr) -> anyhow::Result<String> {
    if let Ok(stored) = std::fs::read_to_string(file) {
        let stored = stored.trim().to_owned();
        if !stored.is_empty() {
            eprintln!(
                "Web interface: http://{address} (admin password in {})",
                file.display()
            );
            return Ok(stored);
        }
    }
    use rand::Rng;
    let password: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(20)
        .map(char::from)
        .collect();
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("could not create {}", parent.display()))?;
    }
    write_private(file, &password)
        .with_context(|| format!("could not write {}", file.display()))?;
    // The password itself is never printed: a service's terminal output usually ends up in a
    // journal or log collector. It is read from the owner-only file.
    eprintln!(
        "Web interface: http://{address}\n  admin password generated now, kept in {} (readable by its owner only)\n  set JOBBOT_ADMIN_PASSWORD to choose your own",
        file.display()
    );
    Ok(password)
}

/// Creates `file` (it must not exist) readable and writable by its owner only.
pub(crate) fn write_private(file: &std::path::Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(file)?.write_all(content.as_bytes())
}

/// The operational store `jobbot run` keeps its records in.
enum OperationalStore {
    /// `DATA_DIR/data/jobbot.sqlite`, the default.
    Sqlite(SqliteStore),
    /// `--database-url` / `DATABASE_URL`.
    Postgres(PostgresStore),
}

/// The database URL: the flag, else `DATABASE_URL` from the environment or `DATA_DIR/.env`.
fn database_url(data_dir: &DataDir, flag: Option<String>) -> Option<String> {
    flag.or_else(|| data_dir.variables()("DATABASE_URL"))
        .filter(|url| !url.trim().is_empty())
}

/// The database the nodes share, for the commands that need one.
pub async fn connect_database(
    data_dir: &DataDir,
    flag: Option<String>,
) -> anyhow::Result<PostgresStore> {
    let url = database_url(data_dir, flag)
        .context("no database: give --database-url postgres://… or set DATABASE_URL")?;
    PostgresStore::connect(&url)
        .await
        .context("could not open the database (--database-url / DATABASE_URL)")
}

/// Whether a variable has a value (blank counts as none), as the AI's keys are read: the
/// environment, then `DATA_DIR/.env`. For the Doctor's key checks.
pub fn variables_set(data_dir: &DataDir) -> jobbot_web::Variables {
    let variables = data_dir.variables();
    Arc::new(move |name: &str| variables(name).is_some_and(|value| !value.trim().is_empty()))
}

/// The CRM's AI conversations: records and knowledge in the operational store, keys (`${NAME}`
/// in `llm_providers`) from the environment, then `DATA_DIR/.env`.
pub fn ai_parts(
    records: Arc<dyn jobbot_core::ai::AiStore>,
    knowledge: Arc<dyn jobbot_core::ai::knowledge::KnowledgeIndex>,
    data_dir: &DataDir,
) -> anyhow::Result<jobbot_engine::AiParts> {
    let variables = data_dir.variables();
    let client = jobbot_ai::LlmClient::new(
        jobbot_ai::ClientSettings::default(),
        Arc::new(move |name: &str| variables(name)),
    )
    .context("could not build the AI's HTTP client")?;
    Ok(jobbot_engine::AiParts {
        store: records,
        client: Arc::new(client),
        knowledge: Some(knowledge),
        knowledge_root: Some(data_dir.root().to_path_buf()),
    })
}

impl OperationalStore {
    /// PostgreSQL when a database URL is given (the flag, else `DATABASE_URL` from the
    /// environment or `DATA_DIR/.env`), else SQLite in the data directory.
    async fn open(data_dir: &DataDir, database_url: Option<String>) -> anyhow::Result<Self> {
        let Some(url) = self::database_url(data_dir, database_url) else {
            let store = SqliteStore::open(data_dir.data())
                .await
                .context("could not open the database")?;
            return Ok(Self::Sqlite(store));
        };
        let store = PostgresStore::connect(&url)
            .await
            .context("could not open the database (--database-url / DATABASE_URL)")?;
        tracing::info!("operational store: {}", store.database());
        Ok(Self::Postgres(store))
    }

    /// The CRM's AI conversations over this store.
    fn ai_parts(&self, data_dir: &DataDir) -> anyhow::Result<jobbot_engine::AiParts> {
        match self {
            Self::Sqlite(store) => {
                ai_parts(Arc::new(store.clone()), Arc::new(store.clone()), data_dir)
            }
            Self::Postgres(store) => {
                ai_parts(Arc::new(store.clone()), Arc::new(store.clone()), data_dir)
            }
        }
    }

    fn shared(&self) -> Arc<dyn Store> {
        match self {
            Self::Sqlite(store) => Arc::new(store.clone()),
            Self::Postgres(store) => Arc::new(store.clone()),
        }
    }

    async fn close(&self) {
        match self {
            Self::Sqlite(store) => store.close().await,
            Self::Postgres(store) => store.close().await,
        }
    }
}

/// `telegram`: `None` for real Telegram, or `sim://HOST:PORT` for `jobbot sim serve`.
/// `database_url`: see [`OperationalStore::open`].
pub async fn run(
    data_dir: &DataDir,
    web: &crate::cli::WebArgs,
    telegram: Option<&str>,
    database_url: Option<String>,
) -> anyhow::Result<ExitCode> {
    // First of all, so a stop asked for while starting is an orderly one.
    let stop = ShutdownSignal::install();
    // Before anything is opened: one process per data directory.
    let _lock = DataDirLock::acquire(&data_dir.data().join(DataDirLock::FILE_NAME), "run")?;
    let listen = web.listen_address()?;
    let store = OperationalStore::open(data_dir, database_url).await?;
    let connector: Arc<dyn AccountConnector> = match telegram {
        Some(url) => {
            let connector =
                jobbot_sim_remote::RemoteConnector::from_url(url).context("--telegram")?;
            tracing::info!("Telegram: the simulator at {url}");
            Arc::new(connector)
        }
        None => {
            let mut config =
                GrammersConfig::from_lookup(data_dir.sessions(), data_dir.variables())?;
            match &store {
                OperationalStore::Postgres(database) => {
                    // The sessions are the database's, sealed: the key is required.
                    config.vault = Some(VaultSessions::new(
                        Arc::new(database.clone()),
                        config.session_key.clone(),
                    )?);
                }
                OperationalStore::Sqlite(_) => {
                    // The original system's session files become jobbot's before anything
                    // opens them.
                    crate::session_command::import_legacy_sessions(
                        &config.sessions_dir,
                        config.session_key.clone(),
                        crate::session_command::bot_session_base64(data_dir),
                    )
                    .await;
                }
            }
            Arc::new(GrammersConnector::new(config))
        }
    };
    let cluster = match &store {
        // Several nodes may share the database: sessions are used only under their lease, so
        // not even the start's check of the main account opens one outside it.
        OperationalStore::Postgres(database) => {
            let node = node_name(data_dir)?;
            Some(app::ClusterSettings {
                feed: Some(
                    jobbot_store::ClusterFeed::new(database, node.clone())
                        .await
                        .context("could not set up the live view across nodes")?,
                ),
                node,
                timings: lease_timings(data_dir)?,
            })
        }
        OperationalStore::Sqlite(_) => {
            check_main_session(&*connector).await?;
            None
        }
    };
    let config = match &store {
        OperationalStore::Postgres(database) => ConfigStore::open_in_database(database)
            .await
            .context("could not load the configuration from the database")?,
        OperationalStore::Sqlite(_) => {
            let config_file = data_dir.config_file();
            ConfigStore::open(&config_file)
                .await
                .with_context(|| format!("could not load {}", config_file.display()))?
        }
    };
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("could not listen on {listen}"))?;
    let address = listener.local_addr()?;
    let auth = web_access(data_dir, address)?;
    let mut web = web.settings(auth, address);
    // A real Telegram got this far only with API_ID / API_HASH read and valid.
    web.api_credentials = match telegram {
        Some(_) => jobbot_engine::doctor::ApiCredentials::NotNeeded,
        None => jobbot_engine::doctor::ApiCredentials::Present,
    };
    web.variables = variables_set(data_dir);
    let running = app::start(app::AppParts {
        connector,
        store: store.shared(),
        config,
        settings: EngineSettings::default(),
        monitor: monitor_settings(data_dir)?,
        crm: CrmSettings::default(),
        supervisor: SupervisorSettings::default(),
        clock: EngineClock::start(),
        web: Some((listener, web)),
        cluster,
        ai: Some(store.ai_parts(data_dir)?),
    })
    .await?;
    tracing::info!("🚀 jobbot запущен; Ctrl-C для остановки");
    let stopped = running.run_until(stop.received()).await;
    tracing::info!("остановка…");
    running.shutdown().await;
    store.close().await;
    Ok(exit_code(&stopped))
}

/// `JOBBOT_LEASE_SECONDS`: how long a session lease lasts without renewal (default 30): a dead
/// node's sessions move after at most this long. Renewals come every sixth of it, and a holder
/// stops a third of it before expiry (for clock drift and a send in flight). Every node of a
/// cluster should use the same value.
fn lease_timings(data_dir: &DataDir) -> anyhow::Result<LeaseTimings> {
    let Some(text) = data_dir.variables()("JOBBOT_LEASE_SECONDS") else {
        return Ok(LeaseTimings::default());
    };
    let seconds: u64 = text
        .trim()
        .parse()
        .ok()
        .filter(|seconds| (3..=3_600).contains(seconds))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "JOBBOT_LEASE_SECONDS: {text:?} is not a whole number of seconds from 3 to 3600"
            )
        })?;
    let lease_time = std::time::Duration::from_secs(seconds);
    Ok(LeaseTimings {
        lease_time,
        renew_every: lease_time / 6,
        drift_margin: lease_time / 3,
        node_time: lease_time,
    }
    .check()?)
}

/// This node's name among the nodes sharing the database: `JOBBOT_NODE`, else the host's name
/// and the process id (unique while the process lives; a restarted node is a new node, whose
/// predecessor's leases expire).
fn node_name(data_dir: &DataDir) -> anyhow::Result<NodeId> {
    if let Some(name) = data_dir.variables()("JOBBOT_NODE").filter(|name| !name.trim().is_empty()) {
        return NodeId::parse(name.trim()).map_err(|error| anyhow::anyhow!("JOBBOT_NODE: {error}"));
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .take(40)
        .collect();
    let host = if host.is_empty() {
        "node".to_owned()
    } else {
        host
    };
    NodeId::parse(&format!("{host}-{}", std::process::id()))
        .map_err(|error| anyhow::anyhow!("the node's name: {error}"))
}

/// 0 after an asked-for stop; 1 when a part failed for good (so a service manager restarts it).
pub fn exit_code(stopped: &app::Stopped) -> ExitCode {
    match stopped {
        app::Stopped::Asked => ExitCode::SUCCESS,
        app::Stopped::Failed(fatal) => {
            eprintln!("error: {fatal}");
            ExitCode::FAILURE
        }
    }
}

/// `MAX_MESSAGE_AGE_HOURS` (the original's variable) from the environment or `.env`.
fn monitor_settings(data_dir: &DataDir) -> anyhow::Result<MonitorSettings> {
    let mut settings = MonitorSettings::default();
    if let Some(hours) = data_dir.variables()("MAX_MESSAGE_AGE_HOURS") {
        settings.max_age_hours = hours.trim().parse().map_err(|_| {
            anyhow::anyhow!("MAX_MESSAGE_AGE_HOURS: {hours:?} is not a whole number of hours")
        })?;
    }
    Ok(settings)
}

/// How long a busy main session is asked again at start before giving up.
const BUSY_MAIN_SESSION_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// Says how the main account stands. Without a usable one jobbot still starts and waits (its
/// owner retries the session), so the first login can be done in the web interface; a session
/// held by another process is refused.
///
/// A busy session is asked again for a little while: after a crash, the previous process's
/// connection may still be registered until the other side notices it is gone.
async fn check_main_session(connector: &dyn AccountConnector) -> anyhow::Result<()> {
    let main = SessionName::main();
    let waiting = |why: String| {
        let advice = format!(
            "{why}: log in the main account in the web interface (Logins) or with `jobbot login {main} --phone +…`; jobbot waits for it"
        );
        tracing::warn!("{advice}");
        eprintln!("{advice}");
    };
    let mut wait = std::time::Duration::from_millis(100);
    let give_up = tokio::time::Instant::now() + BUSY_MAIN_SESSION_PATIENCE;
    let checked = loop {
        let checked = connector
            .check_authorization(&main, &ConnectOptions::default())
            .await;
        match checked {
            Err(ConnectError::SessionBusy { .. })
                if tokio::time::Instant::now() + wait < give_up =>
            {
                tracing::warn!("the main session is busy; asking again in {wait:?}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_secs(5));
            }
            checked => break checked,
        }
    };
    match checked {
        Ok(AuthorizationStatus::Authorized(me)) => {
            tracing::info!("основной аккаунт: {} (id {})", me.first_name, me.user_id);
            Ok(())
        }
        Ok(AuthorizationStatus::NotLoggedIn) => {
            waiting(format!(
                "the main account is not logged in (sessions/{})",
                main.file_name()
            ));
            Ok(())
        }
        Ok(AuthorizationStatus::Dead(reason)) => {
            waiting(format!(
                "the main account's session can no longer be used ({reason})"
            ));
            Ok(())
        }
        Err(error @ ConnectError::SessionBusy { .. }) => {
            bail!("{error} (is another `jobbot run` using this data directory?)")
        }
        Err(error) => Err(error).context("could not check the main account"),
    }
}

/// Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    ShutdownSignal::install().received().await
}

/// Ctrl-C or SIGTERM, listened for from the moment it is installed: a stop asked for while the
/// process is still starting is kept, and honoured in order once it has started (without it,
/// the signal's default action would end the process mid-start).
pub struct ShutdownSignal {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignal {
    pub fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Self {
                interrupt: signal(SignalKind::interrupt()).ok(),
                terminate: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    pub async fn received(mut self) {
        #[cfg(unix)]
        {
            async fn next(signal: &mut Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                () = next(&mut self.interrupt) => {},
                () = next(&mut self.terminate) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
