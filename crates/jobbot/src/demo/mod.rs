//! `jobbot demo`: the whole system on the Telegram simulator, with the web interface, so a
//! newcomer sees it work without owning a Telegram account.
//!
//! Everything lives under `DATA_DIR/demo/` (its own configuration file and database, rebuilt on
//! every start), so the demo never touches a real configuration. The rebuild happens only under
//! the demo's lock (`DATA_DIR/demo.lock`, outside the directory it wipes): a second demo on the
//! same data directory is refused and never wipes the first one's files.

mod controls;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use jobbot_engine::{CrmSettings, EngineClock, EngineSettings, MonitorSettings, OwnerSettings};
use jobbot_sim::SimConnector;
use jobbot_store::{ConfigStore, SqliteStore};
use jobbot_web::AuthSettings;
use tokio::net::TcpListener;

use crate::app;
use crate::cli::DataDir;
use crate::data_lock::DataDirLock;
use jobbot_engine::supervisor::SupervisorSettings;

pub use jobbot_sim::scenario::DemoWorld;

pub struct DemoOptions {
    pub web: crate::cli::WebArgs,
    /// Time between two vacancies posted in the sources.
    pub pace: Duration,
    pub seed: u64,
}

/// The demo's built-in provider's name in `llm_providers`.
const SCRIPTED_PROVIDER: &str = "jobbot_scripted";

pub async fn run(data_dir: &DataDir, options: DemoOptions) -> anyhow::Result<ExitCode> {
    let root = data_dir.demo();
    let _lock = DataDirLock::acquire(&root.with_extension("lock"), "demo")?;
    if root.exists() {
        std::fs::remove_dir_all(&root)
            .with_context(|| format!("could not clear {}", root.display()))?;
    }
    let demo_dir = DataDir::new(&root);
    let world = DemoWorld::build(options.seed);
    let config_file = demo_dir.config_file();
    std::fs::create_dir_all(config_file.parent().expect("configs/ has a parent"))?;
    // Readable by its owner only, like every configuration file jobbot writes.
    let variables = data_dir.variables();
    // The AI's model: the built-in scripted one over the OpenAI-compatible HTTP interface, or
    // groq when its key is set (`GROQ_API_KEY` in the environment or the data directory's .env).
    let scripted = match variables("GROQ_API_KEY") {
        Some(_) => None,
        None => Some(
            jobbot_ai::ProviderServer::on_loopback(Arc::new(jobbot_ai::ScriptedModel))
                .await
                .context("could not start the built-in scripted AI provider")?,
        ),
    };
    let mut config_json = world.config_json();
    config_json["output_channels"][0]["ai_config"] = serde_json::json!({"mode": "suggest"});
    if let Some(server) = &scripted {
        config_json["llm_providers"] = serde_json::json!({
            SCRIPTED_PROVIDER: {
                "base_url": server.base_url(),
                "default_model": jobbot_ai::ScriptedModel::MODEL
            }
        });
        config_json["output_channels"][0]["ai_config"]["llm_provider"] =
            serde_json::json!(SCRIPTED_PROVIDER);
        config_json["output_channels"][0]["ai_config"]["llm_model"] =
            serde_json::json!(jobbot_ai::ScriptedModel::MODEL);
    }
    crate::run_command::write_private(&config_file, &format!("{config_json:#}\n"))
        .with_context(|| format!("could not write {}", config_file.display()))?;
    let config = ConfigStore::open(&config_file)
        .await
        .context("the demo configuration loads")?;
    let store = SqliteStore::open(demo_dir.data())
        .await
        .context("could not open the demo database")?;
    let sqlite = store.clone();
    let listen = options.web.listen_address()?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("could not listen on {listen}"))?;
    let address = listener.local_addr()?;
    let (auth, generated) = AuthSettings::or_generated(
        variables("JOBBOT_ADMIN_PASSWORD").as_deref(),
        variables("JOBBOT_API_TOKEN").as_deref(),
    )?;
    let mut web = options.web.settings(auth, address);
    web.variables = crate::run_command::variables_set(data_dir);
    let controls_world = world.world.clone();
    let controls_agents = world
        .agents
        .iter()
        .map(|(session, _, account)| (session.clone(), *account))
        .collect();
    let crm_group = world.crm_group;
    let extra: app::ExtraRoutes = Box::new(move |engine| {
        controls::routes(controls::DemoControls {
            world: controls_world,
            engine: engine.clone(),
            agents: controls_agents,
            channel_id: "channel_python".to_owned(),
            crm_group,
        })
    });
    let running = app::start_with(
        app::AppParts {
            connector: Arc::new(SimConnector::new(world.world.clone())),
            store: Arc::new(store),
            config,
            settings: EngineSettings {
                owner: OwnerSettings {
                    health_interval: Duration::from_secs(60),
                    ..OwnerSettings::default()
                },
                ..EngineSettings::default()
            },
            monitor: MonitorSettings::default(),
            crm: CrmSettings {
                seed: options.seed,
                ..CrmSettings::default()
            },
            supervisor: SupervisorSettings::default(),
            clock: EngineClock::start(),
            web: Some((listener, web)),
            cluster: None,
            ai: Some(crate::run_command::ai_parts(
                Arc::new(sqlite.clone()),
                Arc::new(sqlite.clone()),
                data_dir,
            )?),
        },
        Some(extra),
    )
    .await?;
    println!(
        "jobbot demo: a simulated Telegram with 3 sources, 2 output channels and a CRM channel with 3 agents"
    );
    println!("  web interface: http://{address}");
    match generated {
        Some(password) => println!("  admin password (generated for this run): {}", password.0),
        None => println!("  admin password: the one in JOBBOT_ADMIN_PASSWORD"),
    }
    println!("  API: curl -H 'Authorization: Bearer $JOBBOT_API_TOKEN' http://{address}/api/stats");
    println!(
        "  demo control: POST /api/demo/flood-wait {{\"session\": \"agent_demo_1\", \"seconds\": 60}} gives an agent a flood wait now"
    );
    println!(
        "  files: {} (rebuilt on every start); Ctrl-C to stop",
        root.display()
    );
    let activity = {
        let pace = options.pace;
        let seed = options.seed;
        tokio::spawn(async move { world.run_activity(pace, seed).await })
    };
    let stopped = running
        .run_until(crate::run_command::shutdown_signal())
        .await;
    activity.abort();
    running.shutdown().await;
    sqlite.close().await;
    Ok(crate::run_command::exit_code(&stopped))
}
