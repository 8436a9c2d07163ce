//! `jobbot doctor`: checks the setup against Telegram (or `jobbot sim serve`) and prints a report
//! with the fix for every problem. It opens each session itself, so against a data directory a
//! running jobbot uses it reports those sessions as busy: the web interface's Doctor page runs
//! the same checks over the running process's connections.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use jobbot_core::doctor::{DoctorPlan, Skip};
use jobbot_core::ids::SessionName;
use jobbot_core::telegram::{AccountConnector, ConnectOptions, TelegramAccount};
use jobbot_engine::doctor::{
    ApiCredentials, ConnectorAccounts, DoctorAccounts, DoctorSettings, Unavailable, run_doctor,
};
use jobbot_telegram::{ConfigError, GrammersConfig, GrammersConnector};

use crate::cli::DataDir;

/// Runs the checks and prints the report (as JSON with `json`). Exit status 0 when nothing is
/// wrong, 1 when something is.
pub async fn doctor(
    data_dir: &DataDir,
    telegram: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let config_file = data_dir.config_file();
    let text = std::fs::read_to_string(&config_file)
        .with_context(|| format!("could not read {}", config_file.display()))?;
    let loaded = jobbot_core::config::load(&text).map_err(|problems| {
        anyhow::anyhow!(
            "{} is not valid (see `jobbot config check`): {}",
            config_file.display(),
            problems
        )
    })?;
    let plan = DoctorPlan::of(&loaded.config);
    let (credentials, accounts): (ApiCredentials, Box<dyn DoctorAccounts>) = match telegram {
        Some(url) => {
            let connector =
                jobbot_sim_remote::RemoteConnector::from_url(url).context("--telegram")?;
            (
                ApiCredentials::NotNeeded,
                Box::new(ConnectorAccounts::new(Arc::new(connector))),
            )
        }
        None => {
            let lookup = data_dir.variables();
            match GrammersConfig::from_lookup(data_dir.sessions(), &lookup) {
                Ok(config) => {
                    crate::session_command::import_legacy_sessions(
                        &config.sessions_dir,
                        config.session_key.clone(),
                        crate::session_command::bot_session_base64(data_dir),
                    )
                    .await;
                    let sessions = config.sessions_dir.clone();
                    let connector: Arc<dyn AccountConnector> =
                        Arc::new(GrammersConnector::new(config));
                    (
                        ApiCredentials::Present,
                        Box::new(ConnectorAccounts::new(connector).with_session_files(
                            move |session: &SessionName| {
                                sessions.join(session.file_name()).exists()
                            },
                        )),
                    )
                }
                Err(error) => (missing_credentials(&lookup, &error), Box::new(NoConnector)),
            }
        }
    };
    let is_set = crate::run_command::variables_set(data_dir);
    let report = run_doctor(
        &plan,
        &credentials,
        &*is_set,
        &*accounts,
        DoctorSettings::default(),
    )
    .await;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    Ok(if report.is_healthy() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The variables that are not set, or the one that is set but not valid.
fn missing_credentials(
    lookup: &impl Fn(&str) -> Option<String>,
    error: &ConfigError,
) -> ApiCredentials {
    let mut missing: Vec<String> = [
        GrammersConfig::API_ID_VARIABLE,
        GrammersConfig::API_HASH_VARIABLE,
    ]
    .into_iter()
    .filter(|variable| lookup(variable).is_none_or(|value| value.trim().is_empty()))
    .map(str::to_owned)
    .collect();
    if missing.is_empty() {
        missing.push(match error {
            ConfigError::Missing { variable }
            | ConfigError::Invalid { variable, .. }
            | ConfigError::KeyRequired { variable } => (*variable).to_owned(),
        });
    }
    ApiCredentials::Missing(missing)
}

/// Without API credentials nothing connects: every session is reported as not checked.
struct NoConnector;

#[async_trait]
impl DoctorAccounts for NoConnector {
    async fn account(
        &self,
        _session: &SessionName,
        _options: &ConnectOptions,
    ) -> Result<Arc<dyn TelegramAccount>, Unavailable> {
        Err(Unavailable::Skip(Skip::NoApiCredentials))
    }

    async fn release(&self) {}
}
