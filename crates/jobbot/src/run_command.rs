//! `jobbot run`: the main job against real Telegram.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use jobbot_core::ids::SessionName;
use jobbot_core::telegram::{AccountConnector, AuthorizationStatus, ConnectError, ConnectOptions};
use jobbot_engine::{EngineClock, EngineSettings};
use jobbot_store::{ConfigStore, SqliteStore};
use jobbot_telegram::{GrammersConfig, GrammersConnector};

use crate::app;
use crate::cli::DataDir;

pub async fn run(data_dir: &DataDir) -> anyhow::Result<ExitCode> {
    let config = GrammersConfig::from_lookup(data_dir.sessions(), data_dir.variables())?;
    let connector: Arc<dyn AccountConnector> = Arc::new(GrammersConnector::new(config));
    check_main_session(&*connector).await?;
    let config_file = data_dir.config_file();
    let config = ConfigStore::open(&config_file)
        .await
        .with_context(|| format!("could not load {}", config_file.display()))?;
    let store = SqliteStore::open(data_dir.data())
        .await
        .context("could not open the database")?;
    let running = app::start(app::AppParts {
        connector,
        store: Arc::new(store),
        config,
        settings: EngineSettings::default(),
        clock: EngineClock::start(),
    })
    .await?;
    tracing::info!("🚀 jobbot запущен; Ctrl-C для остановки");
    shutdown_signal().await;
    tracing::info!("остановка…");
    running.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Refuses to start without a usable main account, pointing at `jobbot login`.
async fn check_main_session(connector: &dyn AccountConnector) -> anyhow::Result<()> {
    let main = SessionName::main();
    match connector
        .check_authorization(&main, &ConnectOptions::default())
        .await
    {
        Ok(AuthorizationStatus::Authorized(me)) => {
            tracing::info!("основной аккаунт: {} (id {})", me.first_name, me.user_id);
            Ok(())
        }
        Ok(AuthorizationStatus::NotLoggedIn) => bail!(
            "the main account is not logged in (sessions/{}): run `jobbot login {} --phone +…` first",
            main.file_name(),
            main
        ),
        Ok(AuthorizationStatus::Dead(reason)) => bail!(
            "the main account's session can no longer be used ({reason}): run `jobbot login {main} --phone +…` again"
        ),
        Err(error @ ConnectError::SessionBusy { .. }) => {
            bail!("{error} (is another `jobbot run` using this data directory?)")
        }
        Err(error) => Err(error).context("could not check the main account"),
    }
}

/// Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
