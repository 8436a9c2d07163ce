//! The command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config_command;

#[derive(Debug, Parser)]
#[command(
    name = "jobbot",
    version,
    about = "Telegram job channels: watch sources, post vacancies, answer authors through agent pools"
)]
pub struct Cli {
    /// The directory holding `configs/`, `sessions/` and `data/`.
    #[arg(long, global = true, default_value = ".", env = "JOBBOT_DATA_DIR")]
    pub data_dir: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check or migrate the channel configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load and validate a configuration file; list every problem with its path.
    /// Exits 0 when it is valid, 1 when it is not.
    Check {
        /// The file to check (default: DATA_DIR/configs/channels_config.json).
        file: Option<PathBuf>,
    },
    /// Rewrite a configuration file in the current format (old single-agent channels get an
    /// `agents` list), keeping a backup of the original next to it.
    Migrate {
        /// The file to migrate (default: DATA_DIR/configs/channels_config.json).
        file: Option<PathBuf>,
    },
}

/// Where things live under the data directory (the original system's layout).
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn config_file(&self) -> PathBuf {
        self.root.join("configs").join("channels_config.json")
    }

    #[allow(dead_code)] // used by the commands that open sessions
    pub fn sessions(&self) -> PathBuf {
        self.root.join("sessions")
    }

    #[allow(dead_code)] // used by the commands that open the store
    pub fn data(&self) -> PathBuf {
        self.root.join("data")
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let data_dir = DataDir::new(cli.data_dir);
    match cli.command {
        Command::Config(ConfigCommand::Check { file }) => {
            config_command::check(&file.unwrap_or_else(|| data_dir.config_file()))
        }
        Command::Config(ConfigCommand::Migrate { file }) => {
            config_command::migrate(&file.unwrap_or_else(|| data_dir.config_file())).await
        }
    }
}
