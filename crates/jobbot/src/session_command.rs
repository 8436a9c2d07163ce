//! `jobbot session import|show|push|pull`, and the automatic import of the original system's
//! session files (Telethon's, or Pyrogram's) on first use.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use jobbot_core::ids::SessionName;
use jobbot_core::store::SessionVault;
use jobbot_store::legacy_files::read_legacy_session;
use jobbot_store::telethon::is_sqlite;
use jobbot_telegram::SessionKey;
use jobbot_telegram::legacy::{self, BACKUP_SUFFIX};

use crate::cli::DataDir;

fn session_key(data_dir: &DataDir) -> anyhow::Result<Option<SessionKey>> {
    match data_dir.variables()(jobbot_telegram::session_store::SESSION_KEY_VARIABLE) {
        Some(value) if !value.trim().is_empty() => Ok(Some(SessionKey::from_hex(&value)?)),
        _ => Ok(None),
    }
}

fn parse_name(name: &str) -> anyhow::Result<SessionName> {
    SessionName::parse(name).map_err(|error| anyhow::anyhow!("NAME: {error}"))
}

/// `jobbot session import FILE --name NAME`.
pub async fn import(data_dir: &DataDir, file: &Path, name: &str) -> anyhow::Result<ExitCode> {
    let name = parse_name(name)?;
    let (format, legacy) = read_legacy_session(file).await?;
    let summary = legacy::import(&data_dir.sessions(), &name, session_key(data_dir)?, &legacy)
        .await
        .with_context(|| format!("could not import {}", file.display()))?;
    println!(
        "Imported the {format} session {} as session {name} ({}); {} is left as it was.",
        file.display(),
        show(&summary),
        file.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `jobbot session import --string --name NAME`: a Telethon or Pyrogram string session from
/// standard input (piped: all of it, line breaks ignored; typed or pasted at a terminal: one
/// line, not echoed, as it holds the account's key).
pub async fn import_string(data_dir: &DataDir, name: &str) -> anyhow::Result<ExitCode> {
    use std::io::{IsTerminal as _, Read as _};
    let name = parse_name(name)?;
    let line = if std::io::stdin().is_terminal() {
        rpassword::prompt_password("Session string (not shown): ")
    } else {
        let mut all = String::new();
        std::io::stdin().read_to_string(&mut all).map(|_| all)
    }
    .context("could not read the session string from standard input")?;
    anyhow::ensure!(
        !line.trim().is_empty(),
        "no session string on standard input (pipe it in: jobbot session import --string --name NAME < FILE)"
    );
    let legacy = jobbot_core::legacy_session::parse_session_string(&line)?;
    let summary = legacy::import(&data_dir.sessions(), &name, session_key(data_dir)?, &legacy)
        .await
        .context("could not import the session string")?;
    println!(
        "Imported the session string as session {name} ({}).",
        show(&summary)
    );
    Ok(ExitCode::SUCCESS)
}

/// `jobbot session show NAME`.
pub async fn show_session(data_dir: &DataDir, name: &str) -> anyhow::Result<ExitCode> {
    let name = parse_name(name)?;
    let sessions = data_dir.sessions();
    let key = session_key(data_dir)?;
    import_legacy_sessions(&sessions, key.clone(), bot_session_base64(data_dir)).await;
    if !sessions.join(name.file_name()).exists() {
        anyhow::bail!("there is no session {name} in {}", sessions.display());
    }
    let summary = legacy::describe(&sessions, &name, key)?;
    println!("session {name}: {}", show(&summary));
    Ok(ExitCode::SUCCESS)
}

/// One line about a session: DC, address, user if known, auth key id. Never the key.
pub fn show(summary: &jobbot_telegram::SessionSummary) -> String {
    let user = summary.user_id.map_or_else(
        || "user not known yet".to_owned(),
        |id| format!("user {id}"),
    );
    let key = summary.auth_key_id.map_or_else(
        || "no auth key".to_owned(),
        |id| format!("auth key id {id}"),
    );
    format!(
        "DC {}{}, {user}, {key}, {}, {} peers cached",
        summary.home_dc,
        summary
            .address
            .as_deref()
            .map(|address| format!(" ({address})"))
            .unwrap_or_default(),
        if summary.logged_in {
            "logged in"
        } else {
            "not logged in"
        },
        summary.peers
    )
}

/// The original system's Railway deployments keep the main account's Telethon session file in
/// this variable, base64-encoded (its `start_railway.sh` restores it at every start).
pub const BOT_SESSION_BASE64: &str = "BOT_SESSION_BASE64";

/// `BOT_SESSION_BASE64` from the environment or DATA_DIR/.env, if set.
pub fn bot_session_base64(data_dir: &DataDir) -> Option<String> {
    data_dir.variables()(BOT_SESSION_BASE64).filter(|value| !value.trim().is_empty())
}

/// Puts the main account's session from `BOT_SESSION_BASE64` where an automatic import finds
/// it: written as the kept original (`bot_session.session.telethon`), from which the import
/// below makes jobbot's session. Only when the main account has no session yet (neither file
/// exists): the variable is a way in, never a replacement. The value is the account's key:
/// never logged, nor is any part of it.
fn restore_from_variable(sessions: &Path, encoded: &str) -> anyhow::Result<bool> {
    use base64::Engine as _;
    let name = SessionName::main();
    let target = sessions.join(name.file_name());
    let backup = legacy::backup_path(sessions, &name);
    if target.exists() || backup.exists() {
        return Ok(false);
    }
    let compact: String = encoded.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(&compact))
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(&compact))
        .map_err(|_| anyhow::anyhow!("{BOT_SESSION_BASE64} is not base64"))?;
    anyhow::ensure!(
        is_sqlite(&bytes),
        "{BOT_SESSION_BASE64} does not hold a Telethon or Pyrogram session file (SQLite)"
    );
    std::fs::create_dir_all(sessions)
        .with_context(|| format!("could not create {}", sessions.display()))?;
    write_private(&backup, &bytes)?;
    Ok(true)
}

/// Writes `bytes` readable by the owner only (a session file holds the account's key).
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("could not create {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("could not write {}", path.display()))
}

/// Takes over every Telethon or Pyrogram session in `sessions` (the original system's files at
/// `{name}.session`): each becomes a jobbot session with the same key, the original kept as
/// `{name}.session.telethon`. Also finishes an import cut short after the original was moved.
/// A file that cannot be imported is reported and left as it is; the others go on. First, the
/// main account's session from `bot_session_base64` (see [`BOT_SESSION_BASE64`]) when it has
/// none.
pub async fn import_legacy_sessions(
    sessions: &Path,
    key: Option<SessionKey>,
    bot_session_base64: Option<String>,
) {
    if let Some(encoded) = bot_session_base64 {
        match restore_from_variable(sessions, &encoded) {
            Ok(true) => {
                tracing::info!(target: "telegram", "the main account's session was taken from {BOT_SESSION_BASE64}");
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(target: "telegram", "could not take the main account's session from {BOT_SESSION_BASE64}: {error:#}");
            }
        }
    }
    let Ok(entries) = std::fs::read_dir(sessions) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(file_name) = path.file_name().and_then(|name| name.to_str()) else {
            continue;
        };
        let (stem, from_backup) = if let Some(stem) = file_name
            .strip_suffix(BACKUP_SUFFIX)
            .and_then(|rest| rest.strip_suffix(".session"))
        {
            (stem, true)
        } else if let Some(stem) = file_name.strip_suffix(".session") {
            (stem, false)
        } else {
            continue;
        };
        let Ok(name) = SessionName::parse(stem) else {
            continue;
        };
        let target = sessions.join(name.file_name());
        if from_backup && target.exists() {
            continue; // imported already; the backup stays
        }
        if !from_backup && !std::fs::read(&path).is_ok_and(|bytes| is_sqlite(&bytes)) {
            continue; // jobbot's own
        }
        let result = async {
            let (_, legacy) = read_legacy_session(&path).await?;
            let summary = if from_backup {
                legacy::import_from_backup(sessions, &name, key.clone(), &legacy).await?
            } else {
                legacy::import_in_place(sessions, &name, key.clone(), &legacy).await?
            };
            anyhow::Ok(summary)
        }
        .await;
        match result {
            Ok(summary) => {
                tracing::info!(target: "telegram", session = %name, "imported the original system's session ({}); the original is kept as {}{BACKUP_SUFFIX}", show(&summary), name.file_name());
            }
            Err(error) => {
                tracing::warn!(target: "telegram", session = %name, "could not import the original system's session: {error:#}");
            }
        }
    }
}

/// The key sessions in a database are sealed with: required, and named when missing.
fn required_session_key(data_dir: &DataDir) -> anyhow::Result<SessionKey> {
    session_key(data_dir)?.ok_or_else(|| {
        anyhow::anyhow!(jobbot_telegram::ConfigError::KeyRequired {
            variable: jobbot_telegram::session_store::SESSION_KEY_VARIABLE,
        })
    })
}

/// The session files in `DATA_DIR/sessions` (`NAME.session`), in order.
fn session_files(data_dir: &DataDir) -> anyhow::Result<Vec<SessionName>> {
    let sessions = data_dir.sessions();
    let entries = match std::fs::read_dir(&sessions) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => {
            return Err(error).with_context(|| format!("could not list {}", sessions.display()));
        }
    };
    let mut names = Vec::new();
    for entry in entries {
        let file_name = entry
            .with_context(|| format!("could not list {}", sessions.display()))?
            .file_name();
        if let Some(name) = file_name
            .to_str()
            .and_then(|name| name.strip_suffix(".session"))
            && let Ok(name) = SessionName::parse(name)
        {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

fn parse_names(names: &[String]) -> anyhow::Result<Vec<SessionName>> {
    names.iter().map(|name| parse_name(name)).collect()
}

/// `jobbot session push [NAME…]`: session files into the database, sealed.
pub async fn push(
    data_dir: &DataDir,
    names: &[String],
    database_url: Option<String>,
) -> anyhow::Result<ExitCode> {
    let key = required_session_key(data_dir)?;
    let names = match parse_names(names)? {
        names if names.is_empty() => session_files(data_dir)?,
        names => names,
    };
    let database = crate::run_command::connect_database(data_dir, database_url).await?;
    let sessions = data_dir.sessions();
    let now = jobbot_core::store::UnixMillis(
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis(),
        )
        .unwrap_or(i64::MAX),
    );
    for name in &names {
        let bytes = jobbot_telegram::session_store::read_session_file(&sessions, name)?
            .with_context(|| format!("there is no session {name} in {}", sessions.display()))?;
        let sealed = jobbot_telegram::session_store::reseal(name.as_str(), &bytes, &key)?;
        database
            .save_session(name, &sealed, now)
            .await
            .with_context(|| format!("could not store session {name}"))?;
        println!("session {name}: pushed to {}", database.database());
    }
    database.close().await;
    Ok(ExitCode::SUCCESS)
}

/// `jobbot session pull [NAME…]`: sessions from the database into files, sealed.
pub async fn pull(
    data_dir: &DataDir,
    names: &[String],
    database_url: Option<String>,
) -> anyhow::Result<ExitCode> {
    let key = required_session_key(data_dir)?;
    let database = crate::run_command::connect_database(data_dir, database_url).await?;
    let names = match parse_names(names)? {
        names if names.is_empty() => database
            .session_names()
            .await
            .context("could not list the database's sessions")?,
        names => names,
    };
    let sessions = data_dir.sessions();
    for name in &names {
        let bytes = database
            .load_session(name)
            .await
            .with_context(|| format!("could not read session {name}"))?
            .with_context(|| format!("there is no session {name} in {}", database.database()))?;
        let sealed = jobbot_telegram::session_store::reseal(name.as_str(), &bytes, &key)?;
        jobbot_telegram::session_store::write_session_file(&sessions, name, &sealed)?;
        println!(
            "session {name}: pulled into {}",
            sessions.join(name.file_name()).display()
        );
    }
    database.close().await;
    Ok(ExitCode::SUCCESS)
}
