//! The `jobbot` command: parses the command line, sets up logging, and hands off to the library
//! crates. It holds no logic of its own beyond wiring.

mod app;
mod bench;
mod bench_filters;
mod cli;
mod config_command;
mod data_lock;
mod demo;
mod doctor_command;
mod inspect;
mod login_command;
mod run_command;
mod session_command;
mod sim_command;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: could not start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, filtered by `RUST_LOG` (default `info`). Components log under short
/// targets (`agent_pool`, `config_store`, `telegram`, …) so `RUST_LOG=agent_pool=debug` works as
/// it did in the original system.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
