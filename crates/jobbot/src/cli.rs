//! The command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use jobbot_web::{AuthSettings, TrustedProxies, WebSettings};

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
    /// Run jobbot against real Telegram: monitor the sources, post vacancies, answer authors
    /// through the agent pools. Needs API_ID / API_HASH; without a logged-in main account it
    /// starts and waits for one (log it in on the web interface's Logins page or with
    /// `jobbot login bot_session --phone +…`).
    Run {
        #[command(flatten)]
        web: WebArgs,
        /// Use a simulated Telegram run by `jobbot sim serve` instead of real Telegram:
        /// `sim://127.0.0.1:PORT` (no API_ID / API_HASH or session files needed then).
        #[arg(long, value_name = "sim://HOST:PORT")]
        telegram: Option<String>,
        /// Put the node on PostgreSQL, shared with the other nodes: the operational store
        /// (outbox, vacancies, CRM records, workflows, pauses, statistics, the web's sessions
        /// and API tokens), the configuration (`jobbot config import` puts a file there; a
        /// change on one node is live on every node at once) and the Telegram sessions (`jobbot
        /// session push`; sealed with JOBBOT_SESSION_KEY, which is then required):
        /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`. Default: DATABASE_URL from the
        /// environment or DATA_DIR/.env.
        #[arg(long, value_name = "postgres://…")]
        database_url: Option<String>,
    },
    /// The Telegram simulator as its own process.
    #[command(subcommand)]
    Sim(SimCommand),
    /// Run the whole system on a simulated Telegram (no account needed), with the web interface.
    /// Uses DATA_DIR/demo/, rebuilt on every start.
    Demo {
        #[command(flatten)]
        web: WebArgs,
        /// Milliseconds between two vacancies posted in the simulated sources.
        #[arg(long, default_value_t = 3000)]
        pace_ms: u64,
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Log a Telegram account in and save its session as DATA_DIR/sessions/SESSION.session:
    /// phone, then the code Telegram sends, then the two-step verification password if any.
    /// Needs API_ID and API_HASH (from my.telegram.org) in the environment or DATA_DIR/.env.
    Login {
        /// The session name: `bot_session` for the main account, or an agent's session_name.
        session: String,
        /// The account's phone number in international format (asked for when omitted).
        #[arg(long, conflicts_with = "qr")]
        phone: Option<String>,
        /// Log in by scanning a QR code (shown here, renewed as Telegram rotates it) with the
        /// Telegram app of the account: Settings → Devices → Link Desktop Device.
        #[arg(long)]
        qr: bool,
    },
    /// Check the setup and say how to fix what is wrong: API_ID / API_HASH, every session
    /// (logged in, accepted by Telegram), the main account reading every source and posting to
    /// every output channel, each CRM group a forum whose agents are members that can create
    /// topics, each agent's proxy reachable. Nothing is changed. Exits 0 when nothing is wrong,
    /// 1 when something is. (While `jobbot run` holds the sessions, use the web interface's
    /// Doctor page instead.)
    Doctor {
        /// Check against the simulator run by `jobbot sim serve` (`sim://HOST:PORT`) instead
        /// of real Telegram.
        #[arg(long, value_name = "sim://HOST:PORT")]
        telegram: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show what routing would do with one message read from stdin, as JSON: the channels it
    /// matches and the keywords that decided each, why every other channel did not take it, the
    /// contacts in it and whom the CRM would write to. Works without a configuration (then only
    /// contacts are shown).
    Inspect {
        /// The source channel the message came from (`@name`, a t.me link or an id): only the
        /// channels listing it are considered, and its own username is never the CRM target.
        #[arg(long)]
        source: Option<String>,
        /// The configuration (default: DATA_DIR/configs/channels_config.json when it exists).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Benchmarks on the Telegram simulator and of the scheduling policy (no network).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Session files: import the original system's (Telethon or Pyrogram) sessions, show one.
    #[command(subcommand)]
    Session(SessionCommand),
}

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Import a Telethon session file (the original system's `sessions/NAME.session`, SQLite
    /// schema version 7) or a Pyrogram one (schema versions 2-7) as
    /// DATA_DIR/sessions/NAME.session, so the account needs no new login. FILE is only read.
    /// (Such files already in DATA_DIR/sessions are imported automatically on first use, the
    /// original kept as NAME.session.telethon.) With --string instead of FILE: a Telethon
    /// StringSession or a Pyrogram session string, read from standard input (never an
    /// argument: it holds the account's key).
    Import {
        #[arg(required_unless_present = "string", conflicts_with = "string")]
        file: Option<PathBuf>,
        /// Read a string session from standard input instead of a file.
        #[arg(long)]
        string: bool,
        /// The session name to save it as (an agent's session_name, or bot_session).
        #[arg(long)]
        name: String,
    },
    /// Show a session: its data center, the user if known, and the auth key's id (the key's
    /// fingerprint as MTProto defines it; never the key).
    Show { name: String },
    /// Copy session files (DATA_DIR/sessions/NAME.session) into the database the nodes share,
    /// sealed with JOBBOT_SESSION_KEY (required). A session in use is refused. The files are
    /// left as they are: stop using them (remove them) once the nodes run on the database, as
    /// one key used from two places is destroyed by Telegram.
    Push {
        /// The sessions to copy (default: every session file).
        names: Vec<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Copy sessions from the database into DATA_DIR/sessions, sealed with JOBBOT_SESSION_KEY
    /// (required). The same warning as for push applies the other way.
    Pull {
        /// The sessions to copy (default: every session in the database).
        names: Vec<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// Where and how the web interface is served.
#[derive(Debug, Clone, clap::Args)]
pub struct WebArgs {
    /// Where the web interface listens [default: 127.0.0.1:8080, or 0.0.0.0:$PORT when the
    /// platform sets PORT].
    #[arg(long, env = "JOBBOT_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// The reverse proxies in front of jobbot (addresses or CIDR ranges, comma-separated). Only
    /// requests from them are judged by X-Forwarded-For (the client's address, for the login
    /// limits) and X-Forwarded-Proto (`https` makes the session cookie `Secure`).
    #[arg(long, env = "JOBBOT_TRUSTED_PROXY", value_parser = parse_trusted_proxies)]
    pub trusted_proxy: Option<TrustedProxies>,
}

impl WebArgs {
    /// `--listen` / `JOBBOT_LISTEN`, else every interface on `$PORT` (what container
    /// platforms ask for), else the loopback default.
    pub fn listen_address(&self) -> anyhow::Result<SocketAddr> {
        if let Some(listen) = self.listen {
            return Ok(listen);
        }
        match std::env::var("PORT") {
            Ok(port) => {
                let port: u16 = port
                    .trim()
                    .parse()
                    .map_err(|_| anyhow::anyhow!("PORT: {port:?} is not a port number"))?;
                Ok(SocketAddr::from(([0, 0, 0, 0], port)))
            }
            Err(_) => Ok(SocketAddr::from(([127, 0, 0, 1], 8080))),
        }
    }

    /// The web settings these arguments give, with `auth`; warns when the server is reachable
    /// beyond this machine and no proxy is trusted (then every client is judged by its socket
    /// address, and cookies are never marked `Secure`).
    pub fn settings(&self, auth: AuthSettings, listening: SocketAddr) -> WebSettings {
        let trusted = self.trusted_proxy.clone().unwrap_or_default();
        if !jobbot_web::client::is_loopback(listening.ip()) && trusted.is_empty() {
            tracing::warn!(
                target: "web",
                address = %listening,
                "the web interface listens beyond this machine without --trusted-proxy: put it behind a TLS reverse proxy and name it with --trusted-proxy (README: Running behind a reverse proxy)"
            );
        }
        let mut settings = WebSettings::new(auth);
        settings.trusted_proxies = trusted;
        settings
    }
}

fn parse_trusted_proxies(text: &str) -> Result<TrustedProxies, String> {
    TrustedProxies::parse(text)
}

#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Run a simulated Telegram that jobbot processes use with `--telegram sim://HOST:PORT`,
    /// on real time, keeping its world in the state file (loaded at start when it exists, saved
    /// periodically and on Ctrl-C or SIGTERM). Prints `sim://HOST:PORT` on one stdout line once
    /// it listens.
    Serve {
        /// Where to listen (port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:7100")]
        listen: std::net::SocketAddr,
        /// The world's state file.
        #[arg(long)]
        state: PathBuf,
        /// Seeds a new world and its activity.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// The world a new state file starts with: `empty` (built through the admin interface),
        /// `demo` (jobbot demo's world and activity) or `scripted` (the demo's world with a
        /// fixed, seeded, restart-safe activity: vacancies, recruiter replies, operator answers).
        #[arg(long, value_enum, default_value_t = SimWorldArg::Empty)]
        world: SimWorldArg,
        /// Milliseconds between two steps of the demo's or the scripted activity.
        #[arg(long, default_value_t = 1000)]
        pace_ms: u64,
        /// How many vacancies the scripted activity posts.
        #[arg(long, default_value_t = 100)]
        posts: u32,
        /// The simulator's parameters for a new world, as JSON (`SimParams`; missing fields take
        /// their defaults).
        #[arg(long)]
        params: Option<PathBuf>,
        /// Milliseconds between two saves of the state file.
        #[arg(long, default_value_t = 1000)]
        save_interval_ms: u64,
        /// Write the `channels_config.json` matching the demo or scripted world to this file.
        #[arg(long)]
        write_config: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SimWorldArg {
    Empty,
    Demo,
    Scripted,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// The seed's agent pool against jobbot's on accounts with drawn, unknown limits, on paused
    /// time (scenarios steady, sweep, cold, churn, burst; policies seed, seed-telethon,
    /// jobbot-fixed, jobbot).
    Pool {
        /// Also write the results as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Seeds the drawn world (per-account limits, latency).
        #[arg(long, default_value_t = jobbot_sim::SimParams::default().seed)]
        seed: u64,
        /// Median true sendMessage limit per account, per minute.
        #[arg(long, default_value_t = jobbot_sim::AccountLimitSpread::default().send_median_per_minute)]
        limit_median: f64,
        /// Log-normal sigma of the true limits.
        #[arg(long, default_value_t = jobbot_sim::AccountLimitSpread::default().send_spread)]
        limit_spread: f64,
        /// Scenarios to run, comma-separated.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "steady,sweep,cold,churn,burst"
        )]
        scenarios: Vec<String>,
        /// Policies to run, comma-separated.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "seed,seed-telethon,jobbot-fixed,jobbot"
        )]
        policies: Vec<String>,
        /// `steady`: pool sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "3,10,100")]
        agents: Vec<u32>,
        /// `steady`: simulated minutes per run.
        #[arg(long, default_value_t = 360)]
        minutes: u32,
        /// `sweep`: simulated minutes per run.
        #[arg(long, default_value_t = 180)]
        sweep_minutes: u32,
        /// `cold`: simulated minutes per run (a day by default, as issue #12 asks; 2880 adds a
        /// second day, where the first-message budget learned on the first one pays).
        #[arg(long, default_value_t = 1_440)]
        cold_minutes: u32,
        /// `churn`: simulated minutes per run.
        #[arg(long, default_value_t = 180)]
        churn_minutes: u32,
        /// Runs at a time, each on its own thread (default: the number of CPUs).
        #[arg(long)]
        jobs: Option<usize>,
        /// `burst`: simulated minutes per run.
        #[arg(long, default_value_t = 180)]
        burst_minutes: u32,
    },
    /// The keyword filters against the original per-channel substring loop.
    Filters(crate::bench_filters::FiltersBenchArgs),
    /// What SQLite commits that are on disk when they return (jobbot's setting) cost against
    /// ones a power cut may lose, on the file system of DIRECTORY (default: the temp directory).
    Store {
        #[arg(long, default_value_t = 1_000)]
        messages: u32,
        #[arg(long)]
        directory: Option<PathBuf>,
    },
    /// One pool of agents run by 1, 2 and 3 `jobbot run` nodes on one PostgreSQL database
    /// against `jobbot sim serve` (real time, a few minutes): delivered / true capacity per node
    /// count, store round trips per message, duplicate connections, lost and sent twice.
    Cluster {
        /// Also write the results as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Seeds the world (the agents' drawn limits, latencies).
        #[arg(long, default_value_t = jobbot_sim::SimParams::default().seed)]
        seed: u64,
        /// Node counts, comma-separated, each on a fresh world and database.
        #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
        nodes: Vec<u32>,
        #[arg(long, default_value_t = 300)]
        agents: u32,
        /// Median true sendMessage limit per agent, per minute.
        #[arg(long, default_value_t = 2.0)]
        limit_median: f64,
        /// Log-normal sigma of the agents' limits.
        #[arg(long, default_value_t = 0.25)]
        limit_spread: f64,
        /// Offered sends as a multiple of the pool's true capacity.
        #[arg(long, default_value_t = 1.5)]
        load: f64,
        /// Seconds of load before the measured window.
        #[arg(long, default_value_t = 20)]
        warmup_seconds: u64,
        /// Seconds of the measured window.
        #[arg(long, default_value_t = 90)]
        window_seconds: u64,
        /// The nodes' session leases (JOBBOT_LEASE_SECONDS).
        #[arg(long, default_value_t = 10)]
        lease_seconds: u32,
        /// Seconds the backlog may take to drain after the window; what is still pending then
        /// is reported as queued, workflows still running as unfinished.
        #[arg(long, default_value_t = 30)]
        settle_seconds: u64,
        /// The PostgreSQL server; a database of the benchmark's own is created there and
        /// dropped at the end.
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
        database_url: String,
    },
    /// The cost of one scheduling pick in a large pool, against a naive full scan.
    Pick {
        #[arg(long, default_value_t = 10_000)]
        agents: u32,
        /// Picks per policy, split into batches.
        #[arg(long, default_value_t = 1_000_000)]
        iterations: u64,
    },
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
    /// Copy a configuration file into the database the nodes share (`jobbot run
    /// --database-url`), replacing what is there; every running node loads it at once. The
    /// file is validated first and left as it is.
    Import {
        /// The file to import (default: DATA_DIR/configs/channels_config.json).
        file: Option<PathBuf>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Copy the database's configuration into a file (written atomically, mode 0600).
    Export {
        /// The file to write (default: DATA_DIR/configs/channels_config.json).
        file: Option<PathBuf>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// The database the nodes share.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`. Default: DATABASE_URL from the
    /// environment or DATA_DIR/.env.
    #[arg(long, value_name = "postgres://…")]
    pub database_url: Option<String>,
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

    /// The directory itself (`ai_config.knowledge_files` are relative to it).
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }

    pub fn config_file(&self) -> PathBuf {
        self.root.join("configs").join("channels_config.json")
    }

    pub fn sessions(&self) -> PathBuf {
        self.root.join("sessions")
    }

    #[allow(dead_code)] // used by the commands that open the store
    pub fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    /// Where `jobbot demo` keeps its own files.
    pub fn demo(&self) -> PathBuf {
        self.root.join("demo")
    }

    /// Reads a variable from the environment, else from `DATA_DIR/.env` (`KEY=value` lines,
    /// `#` comments, optional quotes). The environment wins, as with dotenv.
    pub fn variables(&self) -> impl Fn(&str) -> Option<String> + use<> {
        let file = std::fs::read_to_string(self.root.join(".env")).unwrap_or_default();
        let from_file: Vec<(String, String)> = file
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .filter_map(|line| line.strip_prefix("export ").unwrap_or(line).split_once('='))
            .map(|(key, value)| (key.trim().to_owned(), unquote(value.trim()).to_owned()))
            .collect();
        move |name: &str| {
            std::env::var(name).ok().or_else(|| {
                from_file
                    .iter()
                    .rev()
                    .find(|(key, _)| key == name)
                    .map(|(_, value)| value.clone())
            })
        }
    }
}

fn unquote(value: &str) -> &str {
    for quote in ['"', '\''] {
        if let Some(inner) = value
            .strip_prefix(quote)
            .and_then(|v| v.strip_suffix(quote))
        {
            return inner;
        }
    }
    value
}

async fn login(
    data_dir: &DataDir,
    session: &str,
    phone: Option<String>,
    qr: bool,
) -> anyhow::Result<ExitCode> {
    use crate::login_command::{LoginMethod, LoginOutcome, TerminalPrompter};
    let session = jobbot_core::ids::SessionName::parse(session)
        .map_err(|error| anyhow::anyhow!("SESSION: {error}"))?;
    let config =
        jobbot_telegram::GrammersConfig::from_lookup(data_dir.sessions(), data_dir.variables())?;
    crate::session_command::import_legacy_sessions(
        &config.sessions_dir,
        config.session_key.clone(),
        crate::session_command::bot_session_base64(data_dir),
    )
    .await;
    let connector = jobbot_telegram::GrammersConnector::new(config);
    let options = login_options(data_dir, &session);
    let outcome = crate::login_command::login(
        &connector,
        &session,
        &options,
        if qr {
            LoginMethod::Qr
        } else {
            LoginMethod::Code { phone }
        },
        &mut TerminalPrompter,
        &mut std::io::stdout(),
    )
    .await?;
    let path = data_dir.sessions().join(session.file_name());
    match outcome {
        LoginOutcome::SignedIn(me) => {
            println!(
                "Signed in as {}; the session is saved as {}",
                describe(&me),
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        LoginOutcome::AlreadyAuthorized(me) => {
            println!(
                "{} is already logged in as {}",
                path.display(),
                describe(&me)
            );
            Ok(ExitCode::SUCCESS)
        }
        LoginOutcome::Cancelled => {
            println!("Login cancelled; nothing was saved.");
            Ok(ExitCode::FAILURE)
        }
        LoginOutcome::MustWait { seconds } => {
            println!(
                "Telegram asks to wait {seconds} s before the next login attempt; try again later."
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The agent's proxy from the configuration, so it logs in through the address it will work
/// from (Telegram sees a login from one IP and then work from another otherwise). None for the
/// main account, an agent without one, or no readable configuration.
fn login_options(
    data_dir: &DataDir,
    session: &jobbot_core::ids::SessionName,
) -> jobbot_core::telegram::ConnectOptions {
    let proxy = std::fs::read_to_string(data_dir.config_file())
        .ok()
        .and_then(|text| jobbot_core::config::load(&text).ok())
        .and_then(|loaded| {
            loaded
                .config
                .channels
                .iter()
                .flat_map(|channel| &channel.agents)
                .find(|agent| &agent.session_name == session)
                .and_then(|agent| agent.proxy.clone())
        });
    if let Some(proxy) = &proxy {
        println!(
            "Logging in through the agent's proxy {}",
            jobbot_core::config::mask_proxy(proxy)
        );
    }
    jobbot_core::telegram::ConnectOptions { proxy }
}

fn describe(me: &jobbot_core::telegram::Me) -> String {
    match &me.username {
        Some(username) => format!("{} ({username})", me.first_name),
        None => me.first_name.clone(),
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
        Command::Config(ConfigCommand::Import { file, database }) => {
            let file = file.unwrap_or_else(|| data_dir.config_file());
            config_command::import(&file, &data_dir, database.database_url).await
        }
        Command::Config(ConfigCommand::Export { file, database }) => {
            let file = file.unwrap_or_else(|| data_dir.config_file());
            config_command::export(&file, &data_dir, database.database_url).await
        }
        Command::Login { session, phone, qr } => login(&data_dir, &session, phone, qr).await,
        Command::Demo { web, pace_ms, seed } => {
            let options = crate::demo::DemoOptions {
                web,
                pace: std::time::Duration::from_millis(pace_ms.max(50)),
                seed,
            };
            crate::demo::run(&data_dir, options).await
        }
        Command::Run {
            web,
            telegram,
            database_url,
        } => crate::run_command::run(&data_dir, &web, telegram.as_deref(), database_url).await,
        Command::Sim(SimCommand::Serve {
            listen,
            state,
            seed,
            world,
            pace_ms,
            posts,
            params,
            save_interval_ms,
            write_config,
        }) => {
            let options = jobbot_sim_remote::ServerOptions {
                listen,
                state_file: state,
                world: match world {
                    SimWorldArg::Empty => jobbot_sim_remote::WorldKind::Empty,
                    SimWorldArg::Demo => jobbot_sim_remote::WorldKind::Demo,
                    SimWorldArg::Scripted => jobbot_sim_remote::WorldKind::Scripted,
                },
                seed,
                params: params
                    .map(|file| crate::sim_command::read_params(&file, seed))
                    .transpose()?,
                pace: std::time::Duration::from_millis(pace_ms),
                posts,
                save_interval: std::time::Duration::from_millis(save_interval_ms),
            };
            crate::sim_command::serve(options, write_config.as_deref()).await
        }
        Command::Bench(command) => {
            // The benchmarks build their own (paused-time) runtimes, which cannot be started
            // from inside this one's worker threads.
            tokio::task::spawn_blocking(move || bench(command))
                .await
                .context("the benchmark thread panicked")?
        }
        Command::Session(SessionCommand::Import { file, string, name }) => match file {
            Some(file) if !string => crate::session_command::import(&data_dir, &file, &name).await,
            _ => crate::session_command::import_string(&data_dir, &name).await,
        },
        Command::Session(SessionCommand::Show { name }) => {
            crate::session_command::show_session(&data_dir, &name).await
        }
        Command::Doctor { telegram, json } => {
            crate::doctor_command::doctor(&data_dir, telegram.as_deref(), json).await
        }
        Command::Session(SessionCommand::Push { names, database }) => {
            crate::session_command::push(&data_dir, &names, database.database_url).await
        }
        Command::Session(SessionCommand::Pull { names, database }) => {
            crate::session_command::pull(&data_dir, &names, database.database_url).await
        }
        Command::Inspect { source, config } => {
            crate::inspect::run(&data_dir.config_file(), config, source.as_deref())
        }
    }
}

fn bench(command: BenchCommand) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match command {
        BenchCommand::Pool {
            json,
            seed,
            limit_median,
            limit_spread,
            scenarios,
            policies,
            agents,
            minutes,
            sweep_minutes,
            cold_minutes,
            churn_minutes,
            burst_minutes,
            jobs,
        } => {
            anyhow::ensure!(
                limit_median.is_finite() && limit_median >= 1.0,
                "--limit-median must be at least 1 (messages per minute), got {limit_median}"
            );
            anyhow::ensure!(
                limit_spread.is_finite() && (0.0..=2.0).contains(&limit_spread),
                "--limit-spread must be between 0 and 2, got {limit_spread}"
            );
            let scenarios = scenarios
                .iter()
                .map(|name| {
                    crate::bench::Scenario::parse(name).ok_or_else(|| {
                        anyhow::anyhow!(
                            "--scenarios: unknown scenario {name:?} (known: steady, sweep, cold, churn, burst)"
                        )
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let policies = policies
                .iter()
                .map(|name| {
                    crate::bench::Policy::parse(name).ok_or_else(|| {
                        anyhow::anyhow!(
                            "--policies: unknown policy {name:?} (known: seed, seed-telethon, jobbot-fixed, jobbot)"
                        )
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let plan = crate::bench::PoolBenchPlan {
                world: crate::bench::WorldSpec {
                    seed,
                    limit_median,
                    limit_spread,
                },
                scenarios,
                steady_agents: agents,
                steady_minutes: minutes,
                sweep_minutes,
                cold_minutes,
                churn_minutes,
                burst_minutes,
                policies,
                jobs: jobs.unwrap_or(crate::bench::PoolBenchPlan::default().jobs),
                ..crate::bench::PoolBenchPlan::default()
            };
            crate::bench::run_pool(&plan, json.as_deref(), &mut out)?;
        }
        BenchCommand::Pick { agents, iterations } => {
            crate::bench::run_pick(agents, iterations, &mut out)?;
        }
        BenchCommand::Store {
            messages,
            directory,
        } => {
            crate::bench::store::run(messages, directory.as_deref(), &mut out)?;
        }
        BenchCommand::Cluster {
            json,
            seed,
            nodes,
            agents,
            limit_median,
            limit_spread,
            load,
            warmup_seconds,
            window_seconds,
            lease_seconds,
            settle_seconds,
            database_url,
        } => {
            anyhow::ensure!(
                limit_median.is_finite() && limit_median >= 1.0,
                "--limit-median must be at least 1 (messages per minute), got {limit_median}"
            );
            anyhow::ensure!(
                load.is_finite() && load > 0.0,
                "--load must be above 0, got {load}"
            );
            anyhow::ensure!(
                !nodes.is_empty() && nodes.iter().all(|&count| count >= 1) && agents >= 1,
                "--nodes and --agents must be at least 1"
            );
            let program = std::env::current_exe()
                .context("could not find the jobbot executable to start the nodes")?;
            let plan = crate::bench::ClusterBenchPlan {
                seed,
                nodes,
                agents,
                limit_median,
                limit_spread,
                load,
                warmup: std::time::Duration::from_secs(warmup_seconds),
                window: std::time::Duration::from_secs(window_seconds.max(1)),
                lease_seconds,
                settle: std::time::Duration::from_secs(settle_seconds),
                ..crate::bench::ClusterBenchPlan::new(program, database_url)
            };
            // Real time: the simulator runs on the wall clock in its own process.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("could not start a runtime")?;
            runtime.block_on(crate::bench::run_cluster(&plan, json.as_deref(), &mut out))?;
        }
        BenchCommand::Filters(args) => {
            drop(out);
            return crate::bench_filters::run_filters_bench(args);
        }
    }
    Ok(ExitCode::SUCCESS)
}
