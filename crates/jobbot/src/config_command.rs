//! `jobbot config check|migrate|import|export`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use jobbot_core::config::{self, Revision};
use jobbot_store::ConfigStore;

use crate::cli::DataDir;

/// Prints every problem with its path and exits 1, or a summary and exits 0.
pub fn check(file: &Path) -> anyhow::Result<ExitCode> {
    let bytes =
        std::fs::read(file).with_context(|| format!("could not read {}", file.display()))?;
    let text = String::from_utf8(bytes.clone())
        .map_err(|error| anyhow::anyhow!("{} is not UTF-8 text: {error}", file.display()))?;
    match config::load(&text) {
        Ok(loaded) => {
            let channels = &loaded.config.channels;
            println!(
                "{}: valid (revision {}): {} channels ({} enabled, {} with CRM), {} agent accounts",
                file.display(),
                Revision::of(&bytes),
                channels.len(),
                channels.iter().filter(|c| c.enabled).count(),
                channels.iter().filter(|c| c.crm_enabled).count(),
                loaded.config.agent_accounts().len(),
            );
            for note in &loaded.migrations {
                println!("note: {note}");
            }
            for problem in &loaded.config.skipped_agents {
                println!("agent left out: {problem}");
            }
            for channel in channels {
                for agent in channel.agents.iter().filter(|agent| agent.phone.is_none()) {
                    println!(
                        "note: {}: agent {} has no phone (phone missing); it is used once its session is logged in",
                        channel.id, agent.session_name
                    );
                }
            }
            if !loaded.migrations.is_empty() {
                println!(
                    "note: `jobbot config migrate` writes these changes to the file (keeping a backup)"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => {
            println!("{}: {} problem(s):", file.display(), problems.0.len());
            for problem in &problems.0 {
                println!("  {problem}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Rewrites the file with migrations applied, through the config store (atomic, with a backup).
pub async fn migrate(file: &Path) -> anyhow::Result<ExitCode> {
    let report = match jobbot_store::migrate_file(file).await {
        Ok(report) => report,
        Err(jobbot_store::StoreError::FileInvalid { problems, .. }) => {
            println!(
                "{}: not migrated; fix these problems first:",
                file.display()
            );
            for problem in &problems.0 {
                println!("  {problem}");
            }
            return Ok(ExitCode::FAILURE);
        }
        Err(error) => {
            return Err(error).with_context(|| format!("could not migrate {}", file.display()));
        }
    };
    for note in &report.migrations {
        println!("{note}");
    }
    match &report.backup {
        None => println!(
            "{}: already in the current format; nothing written",
            file.display()
        ),
        Some(backup) => println!(
            "{}: rewritten (revision {} -> {}); the original is kept as {}",
            file.display(),
            report.previous,
            report.current,
            backup.display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `jobbot config import`: the file's configuration becomes the database's, whatever was there.
/// It goes through the database's config store, so it is validated the same way and every
/// running node hears of it.
pub async fn import(
    file: &Path,
    data_dir: &DataDir,
    database_url: Option<String>,
) -> anyhow::Result<ExitCode> {
    let source = ConfigStore::open(file)
        .await
        .with_context(|| format!("could not load {}", file.display()))?;
    if source.path().is_some_and(|path| !path.exists()) {
        anyhow::bail!("there is no configuration file {}", file.display());
    }
    let database = crate::run_command::connect_database(data_dir, database_url).await?;
    let target = ConfigStore::open_in_database(&database)
        .await
        .context("could not load the database's configuration")?;
    copy(&source, &target).await?;
    database.close().await;
    Ok(ExitCode::SUCCESS)
}

/// `jobbot config export`: the database's configuration becomes the file's.
pub async fn export(
    file: &Path,
    data_dir: &DataDir,
    database_url: Option<String>,
) -> anyhow::Result<ExitCode> {
    let database = crate::run_command::connect_database(data_dir, database_url).await?;
    let source = ConfigStore::open_in_database(&database)
        .await
        .context("could not load the database's configuration")?;
    let target = ConfigStore::open(file)
        .await
        .with_context(|| format!("could not load {}", file.display()))?;
    copy(&source, &target).await?;
    database.close().await;
    Ok(ExitCode::SUCCESS)
}

/// Replaces `target`'s document with `source`'s, validated and revision-checked by `target`.
async fn copy(source: &ConfigStore, target: &ConfigStore) -> anyhow::Result<()> {
    let document = source.snapshot().document.clone();
    let before = target.snapshot().revision.clone();
    let after = target
        .replace(&before, document)
        .await
        .with_context(|| format!("could not write the configuration to {}", target.location()))?;
    println!(
        "{} -> {}: revision {before} -> {after}",
        source.location(),
        target.location()
    );
    Ok(())
}
