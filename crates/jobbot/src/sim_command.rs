//! `jobbot sim serve`: the Telegram simulator in its own process (crate `jobbot-sim-remote`).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use jobbot_sim::SimParams;
use jobbot_sim_remote::{RunningServer, ServerOptions};

/// `--params FILE`: `SimParams` as JSON, missing fields at their defaults; `--seed` wins over a
/// seed in the file.
pub fn read_params(file: &Path, seed: u64) -> anyhow::Result<SimParams> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("could not read {}", file.display()))?;
    let params: SimParams = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid simulator parameters", file.display()))?;
    Ok(SimParams { seed, ..params })
}

pub async fn serve(
    options: ServerOptions,
    write_config: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let state = options.state_file.clone();
    let server = RunningServer::start(options).await?;
    if let Some(file) = write_config {
        let config = server
            .scenario_config()
            .context("--write-config needs a demo or scripted world")?;
        std::fs::write(file, format!("{config:#}\n"))
            .with_context(|| format!("could not write {}", file.display()))?;
    }
    // The one line a script or test reads to find the server.
    let mut out = std::io::stdout().lock();
    writeln!(out, "sim://{}", server.address())?;
    out.flush()?;
    drop(out);
    eprintln!(
        "jobbot sim serve: world in {}; Ctrl-C or SIGTERM saves it and stops",
        state.display()
    );
    crate::run_command::shutdown_signal().await;
    server.shutdown().await?;
    Ok(ExitCode::SUCCESS)
}
