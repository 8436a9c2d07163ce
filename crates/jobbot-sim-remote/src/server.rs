//! `jobbot sim serve`: one simulated Telegram ([`SimWorld`]) on real time, served to any number
//! of jobbot processes over JSON-RPC on WebSockets, and kept on disk.
//!
//! Each WebSocket connection is one client. It gets its own [`Connection`] (the RPC context),
//! which holds the accounts and logins it opened; when the connection closes, for whatever reason
//! (a clean exit, a killed process, a lost peer noticed by the WebSocket pings), every one of them
//! is dropped, which closes their connections in the world and releases their session locks. The
//! world's session lock is therefore one holder per session across all processes.
//!
//! The state file (`--state`) holds the world ([`SimWorld::save_state`]) and its scenario (the
//! demo's or scripted world's layout and progress). It is written atomically (a temporary file in
//! the same directory, fsync, rename, fsync of the directory) every `save_interval`, on
//! `admin_save`, and on shutdown, and loaded at start when it exists.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use jobbot_core::ids::{ChatId, PhoneNumber, SessionName, Username};
use jobbot_core::telegram::{
    AccountConnector, AuthorizationStatus, ChatAccess, Checkpoint, CodeOutcome, ConnectError,
    ConnectOptions, JoinTarget, LoginBackend, LoginError, Me, MediaFile, MessageAuthor,
    MessageContent, NewChatKind, Peer, PeerRef, QrOutcome, RandomId, SentCode, SentMessage,
    TelegramAccount, TelegramError, TopicId,
};
use jobbot_sim::admin::{Admin, AdminError, TopicView};
use jobbot_sim::scenario::{DemoWorld, Scripted};
use jobbot_sim::{
    AccountCounters, AccountLimitDraw, ConnectionEntry, MessageRecord, NewUser, SimConnector,
    SimMedia, SimParams, SimWorld,
};
use jsonrpsee::core::{RpcResult, SubscriptionResult};
use jsonrpsee::server::{
    PendingSubscriptionSink, PingConfig, RpcModule, ServerConfig, ServerHandle, StopHandle,
    serve_with_graceful_shutdown, stop_channel,
};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::rpc::{AccountHandle, AdminRpcServer, LoginHandle, ScriptedProgress, TelegramRpcServer};

/// Which world a new state file starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorldKind {
    /// Nothing: tests build what they need through the admin interface.
    Empty,
    /// `jobbot demo`'s world and its random activity, on real time.
    Demo,
    /// The demo's layout with the scripted, restart-safe activity (the crash suite's traffic).
    Scripted,
}

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub listen: SocketAddr,
    pub state_file: PathBuf,
    pub world: WorldKind,
    pub seed: u64,
    /// The world's parameters for a new state file (a saved world keeps its own). `None`: the
    /// simulator's defaults with `seed`, starting at the current date.
    pub params: Option<SimParams>,
    /// Time between two steps of the demo's or the scripted activity.
    pub pace: Duration,
    /// Vacancies the scripted activity posts in all.
    pub posts: u32,
    pub save_interval: Duration,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("could not read the state file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the state file {path} is not a saved world: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("could not write the state file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// What the state file holds besides the world.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Scenario {
    #[default]
    Empty,
    Demo {
        layout: DemoWorld,
        seed: u64,
    },
    Scripted {
        scripted: Scripted,
    },
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    world: serde_json::Value,
    #[serde(default)]
    scenario: Scenario,
}

/// What every connection shares.
struct Shared {
    world: SimWorld,
    admin: Admin,
    connector: SimConnector,
    /// Locked while a scenario step runs and while the world is snapshotted, so a saved world and
    /// its scenario's progress always agree.
    scenario: Mutex<Scenario>,
    state_file: PathBuf,
    /// One writer of the state file at a time, in snapshot order.
    /// One writer of the state file at a time. The guard moves into the writing thread, so a
    /// save whose task is aborted (the periodic save, at shutdown) still holds it until its
    /// write has finished: the last save cannot race an earlier one on the temporary file.
    saving: Arc<tokio::sync::Mutex<()>>,
}

impl Shared {
    fn scenario(&self) -> MutexGuard<'_, Scenario> {
        self.scenario
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn save(&self) -> Result<(), ServerError> {
        let one_writer = Arc::clone(&self.saving).lock_owned().await;
        let bytes = {
            let scenario = self.scenario();
            let state = StateFile {
                world: self.world.save_state(),
                scenario: scenario.clone(),
            };
            serde_json::to_vec(&state).expect("the state serialises")
        };
        let path = self.state_file.clone();
        tokio::task::spawn_blocking(move || {
            let written = write_atomically(&path, &bytes);
            drop(one_writer);
            written
        })
        .await
        .expect("the writing thread does not panic")
        .map_err(|source| ServerError::Write {
            path: self.state_file.clone(),
            source,
        })
    }
}

/// A running server. [`RunningServer::shutdown`] saves the world one last time.
pub struct RunningServer {
    address: SocketAddr,
    shared: Arc<Shared>,
    stop: ServerHandle,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// Loads the state file (or builds the chosen world and saves it at once), binds, and starts
    /// serving, saving every `save_interval` and running the scenario's activity.
    pub async fn start(options: ServerOptions) -> Result<Self, ServerError> {
        let (world, scenario) = load_or_build(&options)?;
        let shared = Arc::new(Shared {
            admin: Admin::new(world.clone()),
            connector: SimConnector::new(world.clone()),
            world,
            scenario: Mutex::new(scenario),
            state_file: options.state_file.clone(),
            saving: Arc::new(tokio::sync::Mutex::new(())),
        });
        shared.save().await?;
        let listener =
            TcpListener::bind(options.listen)
                .await
                .map_err(|source| ServerError::Listen {
                    address: options.listen,
                    source,
                })?;
        let address = listener
            .local_addr()
            .map_err(|source| ServerError::Listen {
                address: options.listen,
                source,
            })?;
        let (stop_handle, stop) = stop_channel();
        let mut tasks = vec![tokio::spawn(accept(
            listener,
            Arc::clone(&shared),
            stop_handle.clone(),
        ))];
        tasks.push(tokio::spawn(save_periodically(
            Arc::clone(&shared),
            options.save_interval,
        )));
        if let Some(activity) = activity(&shared, options.pace) {
            tasks.push(activity);
        }
        tracing::info!(target: "sim", %address, state = %options.state_file.display(), "simulated Telegram serving");
        Ok(Self {
            address,
            shared,
            stop,
            tasks,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn world(&self) -> &SimWorld {
        &self.shared.world
    }

    /// The `channels_config.json` matching the demo or scripted world (`None` for an empty one).
    pub fn scenario_config(&self) -> Option<serde_json::Value> {
        scenario_layout(&self.shared.scenario()).map(|layout| layout.config_json())
    }

    /// Stops accepting and serving, stops the activity, and writes the state file.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        let _ = self.stop.stop();
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
        self.shared.save().await
    }
}

fn load_or_build(options: &ServerOptions) -> Result<(SimWorld, Scenario), ServerError> {
    match std::fs::read(&options.state_file) {
        Ok(bytes) => {
            let corrupt = |message: String| ServerError::Corrupt {
                path: options.state_file.clone(),
                message,
            };
            let state: StateFile =
                serde_json::from_slice(&bytes).map_err(|error| corrupt(error.to_string()))?;
            let world =
                SimWorld::load_state(state.world).map_err(|error| corrupt(error.to_string()))?;
            let scenario = match state.scenario {
                Scenario::Demo { layout, seed } => Scenario::Demo {
                    layout: layout.attach(world.clone()),
                    seed,
                },
                Scenario::Scripted { mut scripted } => {
                    scripted.layout = scripted.layout.attach(world.clone());
                    Scenario::Scripted { scripted }
                }
                Scenario::Empty => Scenario::Empty,
            };
            tracing::info!(target: "sim", path = %options.state_file.display(), "loaded the saved world");
            Ok((world, scenario))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let params = options
                .params
                .clone()
                .unwrap_or_else(|| DemoWorld::params(options.seed));
            let world = SimWorld::new(params);
            let scenario = match options.world {
                WorldKind::Empty => Scenario::Empty,
                WorldKind::Demo => Scenario::Demo {
                    layout: DemoWorld::build_in(world.clone()),
                    seed: options.seed,
                },
                WorldKind::Scripted => Scenario::Scripted {
                    scripted: Scripted::new(
                        DemoWorld::build_in(world.clone()),
                        options.seed,
                        options.posts,
                    ),
                },
            };
            Ok((world, scenario))
        }
        Err(source) => Err(ServerError::Read {
            path: options.state_file.clone(),
            source,
        }),
    }
}

fn activity(shared: &Arc<Shared>, pace: Duration) -> Option<JoinHandle<()>> {
    let pace = pace.max(Duration::from_millis(10));
    match &*shared.scenario() {
        Scenario::Empty => None,
        Scenario::Demo { layout, seed } => {
            let layout = layout.clone();
            let seed = *seed;
            Some(tokio::spawn(async move {
                layout.run_activity(pace, seed).await
            }))
        }
        Scenario::Scripted { .. } => {
            let shared = Arc::clone(shared);
            Some(tokio::spawn(async move {
                let mut interval = tokio::time::interval(pace);
                loop {
                    interval.tick().await;
                    if let Scenario::Scripted { scripted } = &mut *shared.scenario() {
                        let report = scripted.step();
                        tracing::debug!(target: "sim", ?report, "scripted step");
                    }
                }
            }))
        }
    }
}

fn scenario_layout(scenario: &Scenario) -> Option<&DemoWorld> {
    match scenario {
        Scenario::Empty => None,
        Scenario::Demo { layout, .. } => Some(layout),
        Scenario::Scripted { scripted } => Some(&scripted.layout),
    }
}

async fn save_periodically(shared: Arc<Shared>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(10)));
    ticks.tick().await;
    loop {
        ticks.tick().await;
        if let Err(error) = shared.save().await {
            tracing::error!(target: "sim", %error, "could not save the world");
        }
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one: a
/// temporary file beside it, fsync, rename over, fsync of the directory. Mode 0600 (the world
/// holds its test accounts' 2FA passwords).
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let name = path.file_name().map_or_else(
        || "state".into(),
        |name| name.to_string_lossy().into_owned(),
    );
    let temporary = directory.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)?;
    #[cfg(unix)]
    std::fs::File::open(directory)?.sync_all()?;
    Ok(())
}

// ----- Connections -----

/// The largest JSON-RPC message either side accepts: a long crash-suite run's record of one chat
/// or of every connection can pass jsonrpsee's default of 10 MB.
pub(crate) const MAX_MESSAGE_BYTES: u32 = 256 * 1024 * 1024;

async fn accept(listener: TcpListener, shared: Arc<Shared>, stop: StopHandle) {
    // WebSocket only (a client is a session), with pings so a peer that vanished without closing
    // its socket is noticed and its sessions are released.
    let config = ServerConfig::builder()
        .ws_only()
        .max_request_body_size(MAX_MESSAGE_BYTES)
        .max_response_body_size(MAX_MESSAGE_BYTES)
        .enable_ws_ping(
            PingConfig::new()
                .ping_interval(Duration::from_secs(5))
                .inactive_limit(Duration::from_secs(20)),
        )
        .build();
    loop {
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(target: "sim", %error, "accept failed");
                    continue;
                }
            },
            () = stop.clone().shutdown() => return,
        };
        let connection = Connection::new(Arc::clone(&shared), peer);
        let mut methods = RpcModule::new(());
        methods
            .merge(TelegramRpcServer::into_rpc(connection.clone()))
            .and_then(|()| methods.merge(AdminRpcServer::into_rpc(connection.clone())))
            .expect("the two interfaces have distinct namespaces");
        let mut service = jsonrpsee::server::Server::builder()
            .set_config(config.clone())
            .to_service_builder()
            .build(methods, stop.clone());
        let closed = service.on_session_closed();
        tokio::spawn(async move {
            closed.await;
            connection.close_all();
        });
        let stopped = stop.clone().shutdown();
        tokio::spawn(async move {
            if let Err(error) = serve_with_graceful_shutdown(socket, service, stopped).await {
                tracing::debug!(target: "sim", %peer, %error, "connection ended");
            }
        });
    }
}

/// One client: the RPC context of one WebSocket connection.
#[derive(Clone)]
struct Connection {
    shared: Arc<Shared>,
    connector: SimConnector,
    peer: SocketAddr,
    handles: Arc<Mutex<Handles>>,
}

#[derive(Default)]
struct Handles {
    closed: bool,
    accounts: HashMap<u64, Arc<dyn TelegramAccount>>,
    logins: HashMap<u64, Arc<tokio::sync::Mutex<Box<dyn LoginBackend>>>>,
    /// Handles being opened, each with a flag set once it is kept or dropped.
    opening: HashMap<u64, tokio::sync::watch::Receiver<bool>>,
    /// Handles ended before they were opened (the client gave up on the call).
    ended_early: HashSet<u64>,
}

impl Handles {
    /// Whether a handle about to be kept was given up meanwhile (it must be dropped then).
    fn given_up(&mut self, handle: u64) -> bool {
        self.closed
            || self.ended_early.remove(&handle)
            || self.accounts.contains_key(&handle)
            || self.logins.contains_key(&handle)
    }
}

fn closed_connection() -> TelegramError {
    TelegramError::Network {
        message: "the connection is closed".to_owned(),
    }
}

fn no_login() -> LoginError {
    LoginError::Network {
        message: "this login has ended".to_owned(),
    }
}

impl Connection {
    fn new(shared: Arc<Shared>, peer: SocketAddr) -> Self {
        Self {
            connector: shared.connector.for_client(&format!("client {peer}")),
            shared,
            peer,
            handles: Arc::default(),
        }
    }

    fn handles(&self) -> MutexGuard<'_, Handles> {
        self.handles
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The connection closed: every account and login it held ends, releasing its session.
    fn close_all(&self) {
        let (accounts, logins) = {
            let mut handles = self.handles();
            handles.closed = true;
            (
                std::mem::take(&mut handles.accounts),
                std::mem::take(&mut handles.logins),
            )
        };
        if !accounts.is_empty() || !logins.is_empty() {
            tracing::info!(target: "sim", peer = %self.peer, accounts = accounts.len(), logins = logins.len(),
                "client gone; its sessions are released");
        }
        drop((accounts, logins));
    }

    /// Opens what `handle` will name and keeps it with `keep`, unless the client ended the
    /// handle or went away meanwhile: then it is dropped (releasing its session) before anyone
    /// waiting in [`Connection::end`] goes on.
    async fn open<T>(
        &self,
        handle: u64,
        open: impl std::future::Future<Output = Result<T, ConnectError>>,
        keep: impl FnOnce(&mut Handles, T),
    ) -> Result<(), ConnectError> {
        let (done, finished) = tokio::sync::watch::channel(false);
        {
            let mut handles = self.handles();
            if handles.given_up(handle) || handles.opening.contains_key(&handle) {
                return Err(given_up());
            }
            handles.opening.insert(handle, finished);
        }
        let opened = open.await;
        let kept = {
            let mut handles = self.handles();
            handles.opening.remove(&handle);
            match opened {
                Ok(_) if handles.given_up(handle) => Err(given_up()),
                Ok(opened) => {
                    keep(&mut handles, opened);
                    Ok(())
                }
                Err(error) => Err(error),
            }
        };
        let _ = done.send(true);
        kept
    }

    /// Ends a handle: removes what it names, or, while it is still being opened, marks it to be
    /// dropped and waits until it has been; an unknown handle is remembered so that a late
    /// request to open it is refused.
    async fn end(&self, handle: u64) -> Option<Arc<dyn TelegramAccount>> {
        let waiting = {
            let mut handles = self.handles();
            if let Some(account) = handles.accounts.remove(&handle) {
                return Some(account);
            }
            if handles.logins.remove(&handle).is_some() {
                return None;
            }
            handles.ended_early.insert(handle);
            handles.opening.get(&handle).cloned()
        };
        if let Some(mut finished) = waiting {
            let _ = finished.wait_for(|done| *done).await;
        }
        None
    }

    fn account(&self, handle: AccountHandle) -> Result<Arc<dyn TelegramAccount>, TelegramError> {
        self.handles()
            .accounts
            .get(&handle.0)
            .cloned()
            .ok_or_else(closed_connection)
    }

    fn login(
        &self,
        handle: LoginHandle,
    ) -> Result<Arc<tokio::sync::Mutex<Box<dyn LoginBackend>>>, LoginError> {
        self.handles()
            .logins
            .get(&handle.0)
            .cloned()
            .ok_or_else(no_login)
    }
}

fn given_up() -> ConnectError {
    ConnectError::Network {
        message: "the client ended this connection before it was opened".to_owned(),
    }
}

#[async_trait]
impl TelegramRpcServer for Connection {
    async fn connect(
        &self,
        session: SessionName,
        handle: AccountHandle,
    ) -> RpcResult<Result<(), ConnectError>> {
        let options = ConnectOptions::default();
        Ok(self
            .open(
                handle.0,
                self.connector.connect(&session, &options),
                |handles, account| {
                    handles.accounts.insert(handle.0, account);
                },
            )
            .await)
    }

    async fn check_authorization(
        &self,
        session: SessionName,
    ) -> RpcResult<Result<AuthorizationStatus, ConnectError>> {
        Ok(self
            .connector
            .check_authorization(&session, &ConnectOptions::default())
            .await)
    }

    async fn begin_login(
        &self,
        session: SessionName,
        handle: LoginHandle,
    ) -> RpcResult<Result<(), ConnectError>> {
        let options = ConnectOptions::default();
        Ok(self
            .open(
                handle.0,
                self.connector.begin_login(&session, &options),
                |handles, login| {
                    handles
                        .logins
                        .insert(handle.0, Arc::new(tokio::sync::Mutex::new(login)));
                },
            )
            .await)
    }

    async fn events(
        &self,
        pending: PendingSubscriptionSink,
        account: AccountHandle,
    ) -> SubscriptionResult {
        let events = match self.account(account) {
            Ok(account) => account.take_events(),
            Err(_) => None,
        };
        let Some(mut events) = events else {
            pending
                .reject(jsonrpsee::types::ErrorObject::owned(
                    1,
                    "no event stream for this account (unknown, or already taken)",
                    None::<()>,
                ))
                .await;
            return Ok(());
        };
        let sink = pending.accept().await?;
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => sink.send(jsonrpsee::core::to_json_raw_value(&event)?).await?,
                    None => return Ok(()),
                },
                () = sink.closed() => return Ok(()),
            }
        }
    }

    async fn get_me(&self, account: AccountHandle) -> RpcResult<Result<Me, TelegramError>> {
        Ok(match self.account(account) {
            Ok(account) => account.get_me().await,
            Err(error) => Err(error),
        })
    }

    async fn resolve_username(
        &self,
        account: AccountHandle,
        username: Username,
    ) -> RpcResult<Result<Peer, TelegramError>> {
        Ok(match self.account(account) {
            Ok(account) => account.resolve_username(&username).await,
            Err(error) => Err(error),
        })
    }

    async fn resolve_message_author(
        &self,
        account: AccountHandle,
        author: MessageAuthor,
    ) -> RpcResult<Result<Peer, TelegramError>> {
        Ok(match self.account(account) {
            Ok(account) => account.resolve_message_author(&author).await,
            Err(error) => Err(error),
        })
    }

    async fn send_direct(
        &self,
        account: AccountHandle,
        to: PeerRef,
        content: MessageContent,
        random_id: RandomId,
    ) -> RpcResult<Result<SentMessage, TelegramError>> {
        Ok(match self.account(account) {
            Ok(account) => account.send_direct(to, &content, random_id).await,
            Err(error) => Err(error),
        })
    }

    async fn send_typing(
        &self,
        account: AccountHandle,
        to: PeerRef,
    ) -> RpcResult<Result<(), TelegramError>> {
        Ok(match self.account(account) {
            Ok(account) => account.send_typing(to).await,
            Err(error) => Err(error),
        })
    }

    async fn post_to_chat(
        &self,
        account: AccountHandle,
        chat: ChatId,
        content: MessageContent,
        random_id: RandomId,
    ) -> RpcResult<Result<SentMessage, TelegramError>> {
        Ok(match self.account(account) {
            Ok(account) => account.post_to_chat(chat, &content, random_id).await,
            Err(error) => Err(error),
        })
    }

    async fn create_forum_topic(
        &self,
        account: AccountHandle,
        group: ChatId,
        title: String,
        random_id: RandomId,
    ) -> RpcResult<Result<TopicId, TelegramError>> {
        Ok(match self.account(account) {
            Ok(account) => account.create_forum_topic(group, &title, random_id).await,
            Err(error) => Err(error),
        })
    }

    async fn post_to_topic(
        &self,
        account: AccountHandle,
        group: ChatId,
        topic: TopicId,
        content: MessageContent,
        random_id: RandomId,
    ) -> RpcResult<Result<SentMessage, TelegramError>> {
        Ok(match self.account(account) {
            Ok(account) => {
                account
                    .post_to_topic(group, topic, &content, random_id)
                    .await
            }
            Err(error) => Err(error),
        })
    }

    async fn join_chat(
        &self,
        account: AccountHandle,
        target: JoinTarget,
    ) -> RpcResult<Result<Peer, TelegramError>> {
        Ok(match self.account(account) {
            Ok(account) => account.join_chat(&target).await,
            Err(error) => Err(error),
        })
    }

    async fn refetch_file(
        &self,
        account: AccountHandle,
        chat: ChatId,
        message_id: i32,
    ) -> RpcResult<Result<Option<MediaFile>, TelegramError>> {
        Ok(match self.account(account) {
            Ok(account) => account.refetch_file(chat, message_id).await,
            Err(error) => Err(error),
        })
    }

    async fn chat_access(
        &self,
        account: AccountHandle,
        chat: ChatId,
    ) -> RpcResult<Result<ChatAccess, TelegramError>> {
        Ok(match self.account(account) {
            Ok(account) => account.chat_access(chat).await,
            Err(error) => Err(error),
        })
    }

    async fn create_channel(
        &self,
        account: AccountHandle,
        kind: NewChatKind,
        title: String,
        about: String,
    ) -> RpcResult<Result<Peer, TelegramError>> {
        Ok(match self.account(account) {
            Ok(account) => account.create_channel(kind, &title, &about).await,
            Err(error) => Err(error),
        })
    }

    async fn export_invite_link(
        &self,
        account: AccountHandle,
        chat: ChatId,
    ) -> RpcResult<Result<String, TelegramError>> {
        Ok(match self.account(account) {
            Ok(account) => account.export_invite_link(chat).await,
            Err(error) => Err(error),
        })
    }

    async fn invite_to_channel(
        &self,
        account: AccountHandle,
        chat: ChatId,
        users: Vec<PeerRef>,
    ) -> RpcResult<Result<Vec<ChatId>, TelegramError>> {
        Ok(match self.account(account) {
            Ok(account) => account.invite_to_channel(chat, &users).await,
            Err(error) => Err(error),
        })
    }

    async fn allow_members_to_create_topics(
        &self,
        account: AccountHandle,
        group: ChatId,
    ) -> RpcResult<Result<(), TelegramError>> {
        Ok(match self.account(account) {
            Ok(account) => account.allow_members_to_create_topics(group).await,
            Err(error) => Err(error),
        })
    }

    async fn delete_channel(
        &self,
        account: AccountHandle,
        chat: ChatId,
    ) -> RpcResult<Result<(), TelegramError>> {
        Ok(match self.account(account) {
            Ok(account) => account.delete_channel(chat).await,
            Err(error) => Err(error),
        })
    }

    async fn request_checkpoint(&self, account: AccountHandle) -> RpcResult<()> {
        // An account that is gone has no stream to mark: nothing to do, as in process.
        if let Ok(account) = self.account(account) {
            account.request_checkpoint();
        }
        Ok(())
    }

    async fn commit_checkpoint(
        &self,
        account: AccountHandle,
        checkpoint: Checkpoint,
    ) -> RpcResult<Result<(), TelegramError>> {
        Ok(match self.account(account) {
            Ok(account) => account.commit_checkpoint(checkpoint).await,
            Err(error) => Err(error),
        })
    }

    async fn disconnect(&self, account: AccountHandle) -> RpcResult<()> {
        if let Some(account) = self.end(account.0).await {
            account.disconnect().await;
        }
        Ok(())
    }

    async fn request_code(
        &self,
        login: LoginHandle,
        phone: PhoneNumber,
    ) -> RpcResult<Result<SentCode, LoginError>> {
        Ok(match self.login(login) {
            Ok(login) => login.lock().await.request_code(&phone).await,
            Err(error) => Err(error),
        })
    }

    async fn resend_code(&self, login: LoginHandle) -> RpcResult<Result<SentCode, LoginError>> {
        Ok(match self.login(login) {
            Ok(login) => login.lock().await.resend_code().await,
            Err(error) => Err(error),
        })
    }

    async fn submit_code(
        &self,
        login: LoginHandle,
        code: String,
    ) -> RpcResult<Result<CodeOutcome, LoginError>> {
        Ok(match self.login(login) {
            Ok(login) => login.lock().await.submit_code(&code).await,
            Err(error) => Err(error),
        })
    }

    async fn submit_password(
        &self,
        login: LoginHandle,
        password: String,
    ) -> RpcResult<Result<Me, LoginError>> {
        Ok(match self.login(login) {
            Ok(login) => login.lock().await.submit_password(&password).await,
            Err(error) => Err(error),
        })
    }

    async fn export_login_token(
        &self,
        login: LoginHandle,
    ) -> RpcResult<Result<QrOutcome, LoginError>> {
        Ok(match self.login(login) {
            Ok(login) => login.lock().await.export_login_token().await,
            Err(error) => Err(error),
        })
    }

    async fn wait_login_token(
        &self,
        login: LoginHandle,
        timeout_ms: u64,
    ) -> RpcResult<Result<bool, LoginError>> {
        let timeout = std::time::Duration::from_millis(timeout_ms);
        Ok(match self.login(login) {
            Ok(login) => login.lock().await.wait_login_token(timeout).await,
            Err(error) => Err(error),
        })
    }

    async fn end_login(&self, login: LoginHandle) -> RpcResult<()> {
        self.end(login.0).await;
        Ok(())
    }
}

#[async_trait]
impl AdminRpcServer for Connection {
    fn create_user(&self, user: NewUser) -> RpcResult<Result<ChatId, AdminError>> {
        Ok(self.shared.admin.create_user(&user))
    }

    fn create_account(
        &self,
        session: SessionName,
        user: NewUser,
    ) -> RpcResult<Result<ChatId, AdminError>> {
        Ok(self.shared.admin.create_account(&session, &user))
    }

    fn log_in_session(
        &self,
        session: SessionName,
        user: ChatId,
    ) -> RpcResult<Result<(), AdminError>> {
        Ok(self.shared.admin.log_in_session(&session, user))
    }

    fn create_bot(&self, username: String, name: String) -> RpcResult<Result<ChatId, AdminError>> {
        Ok(self.shared.admin.create_bot(&username, &name))
    }

    fn create_channel(
        &self,
        title: String,
        username: Option<String>,
        admins: Vec<ChatId>,
    ) -> RpcResult<Result<ChatId, AdminError>> {
        Ok(self
            .shared
            .admin
            .create_channel(&title, username.as_deref(), &admins))
    }

    fn create_group(
        &self,
        title: String,
        username: Option<String>,
        forum: bool,
        admins: Vec<ChatId>,
    ) -> RpcResult<Result<ChatId, AdminError>> {
        Ok(self
            .shared
            .admin
            .create_group(&title, username.as_deref(), forum, &admins))
    }

    fn add_member(&self, chat: ChatId, user: ChatId) -> RpcResult<Result<(), AdminError>> {
        Ok(self.shared.admin.add_member(chat, user))
    }

    fn add_admin(&self, chat: ChatId, user: ChatId) -> RpcResult<Result<(), AdminError>> {
        Ok(self.shared.admin.add_admin(chat, user))
    }

    fn add_contact(&self, owner: ChatId, contact: ChatId) -> RpcResult<Result<(), AdminError>> {
        Ok(self.shared.admin.add_contact(owner, contact))
    }

    fn set_cold_dm_budget(
        &self,
        account: ChatId,
        budget: u32,
    ) -> RpcResult<Result<(), AdminError>> {
        Ok(self.shared.admin.set_cold_dm_budget(account, budget))
    }

    fn impose_flood_wait(
        &self,
        account: ChatId,
        seconds: u32,
    ) -> RpcResult<Result<(), AdminError>> {
        Ok(self.shared.admin.impose_flood_wait(account, seconds))
    }

    fn flood_channel_catch_up(
        &self,
        account: ChatId,
        channel: ChatId,
        seconds: u32,
    ) -> RpcResult<Result<(), AdminError>> {
        Ok(self
            .shared
            .admin
            .flood_channel_catch_up(account, channel, seconds))
    }

    fn create_invite(&self, chat: ChatId) -> RpcResult<Result<String, AdminError>> {
        Ok(self.shared.admin.create_invite(chat))
    }

    fn revoke_invite(&self, hash: String) -> RpcResult<()> {
        self.shared.admin.revoke_invite(&hash);
        Ok(())
    }

    fn channel_post(&self, channel: ChatId, text: String) -> RpcResult<Result<i32, AdminError>> {
        Ok(self.shared.admin.channel_post(channel, &text))
    }

    fn group_post(
        &self,
        group: ChatId,
        author: ChatId,
        topic: Option<TopicId>,
        text: String,
    ) -> RpcResult<Result<i32, AdminError>> {
        Ok(self.shared.admin.group_post(group, author, topic, &text))
    }

    fn direct_message(
        &self,
        from: ChatId,
        to: ChatId,
        text: String,
    ) -> RpcResult<Result<i32, AdminError>> {
        Ok(self.shared.admin.send_direct(from, to, &text))
    }

    fn direct_media(
        &self,
        from: ChatId,
        to: ChatId,
        media: SimMedia,
        caption: String,
    ) -> RpcResult<Result<i32, AdminError>> {
        Ok(self
            .shared
            .admin
            .send_direct_media(from, to, media, &caption))
    }

    fn group_post_media(
        &self,
        group: ChatId,
        author: ChatId,
        topic: Option<TopicId>,
        media: SimMedia,
        caption: String,
    ) -> RpcResult<Result<i32, AdminError>> {
        Ok(self
            .shared
            .admin
            .group_post_media(group, author, topic, media, &caption))
    }

    fn create_topic(
        &self,
        group: ChatId,
        author: ChatId,
        title: String,
    ) -> RpcResult<Result<TopicId, AdminError>> {
        Ok(self.shared.admin.create_topic(group, author, &title))
    }

    fn delete_topic(&self, group: ChatId, topic: TopicId) -> RpcResult<Result<(), AdminError>> {
        Ok(self.shared.admin.delete_topic(group, topic))
    }

    fn edit_chat_message(
        &self,
        chat: ChatId,
        message_id: i32,
        text: String,
    ) -> RpcResult<Result<(), AdminError>> {
        Ok(self.shared.admin.edit_chat_message(chat, message_id, &text))
    }

    fn ban(&self, user: ChatId) -> RpcResult<Result<(), AdminError>> {
        Ok(self.shared.admin.ban(user))
    }

    fn freeze(&self, user: ChatId) -> RpcResult<Result<(), AdminError>> {
        Ok(self.shared.admin.freeze(user))
    }

    fn deactivate(&self, user: ChatId) -> RpcResult<Result<(), AdminError>> {
        Ok(self.shared.admin.deactivate(user))
    }

    fn revoke(&self, session: SessionName) -> RpcResult<Result<(), AdminError>> {
        Ok(self.shared.admin.revoke(&session))
    }

    fn unregister(&self, session: SessionName) -> RpcResult<Result<(), AdminError>> {
        Ok(self.shared.admin.unregister(&session))
    }

    fn ban_phone(&self, phone: PhoneNumber) -> RpcResult<()> {
        self.shared.admin.ban_phone(&phone);
        Ok(())
    }

    fn mark_phone_invalid(&self, phone: PhoneNumber) -> RpcResult<()> {
        self.shared.admin.mark_phone_invalid(&phone);
        Ok(())
    }

    fn drop_connection(&self, session: SessionName) -> RpcResult<()> {
        self.shared.admin.drop_connection(&session);
        Ok(())
    }

    fn duplicate_connect(
        &self,
        session: SessionName,
        handle: AccountHandle,
    ) -> RpcResult<Result<(), AdminError>> {
        if self.shared.admin.user_of_session(&session).is_none() {
            return Ok(Err(AdminError::UnknownSession { session }));
        }
        let copy = self.shared.world.duplicate_connect(&session);
        let mut handles = self.handles();
        // Dropped (closed) if the client already gave up on it.
        if !handles.given_up(handle.0) {
            handles.accounts.insert(handle.0, copy);
        }
        Ok(Ok(()))
    }

    fn params(&self) -> RpcResult<SimParams> {
        Ok(self.shared.admin.params())
    }

    fn now_unix(&self) -> RpcResult<i64> {
        Ok(self.shared.admin.now_unix())
    }

    fn find_username(&self, username: String) -> RpcResult<Option<ChatId>> {
        Ok(self.shared.admin.find_username(&username))
    }

    fn user_of_session(&self, session: SessionName) -> RpcResult<Option<ChatId>> {
        Ok(self.shared.admin.user_of_session(&session))
    }

    fn last_login_code(&self, phone: PhoneNumber) -> RpcResult<Option<String>> {
        Ok(self.shared.admin.last_login_code(&phone))
    }

    fn accept_login_token(
        &self,
        phone: PhoneNumber,
        url: String,
    ) -> RpcResult<Result<(), AdminError>> {
        Ok(self.shared.admin.accept_login_token(&phone, &url))
    }

    fn chat_messages(&self, chat: ChatId) -> RpcResult<Result<Vec<MessageRecord>, AdminError>> {
        Ok(self.shared.admin.chat_messages(chat))
    }

    fn private_messages(&self, user: ChatId) -> RpcResult<Result<Vec<MessageRecord>, AdminError>> {
        Ok(self.shared.admin.private_messages(user))
    }

    fn conversation(
        &self,
        user: ChatId,
        other: ChatId,
    ) -> RpcResult<Result<Vec<MessageRecord>, AdminError>> {
        Ok(self.shared.admin.conversation(user, other))
    }

    fn received_from(
        &self,
        recipient: ChatId,
        sender: ChatId,
    ) -> RpcResult<Result<Vec<MessageRecord>, AdminError>> {
        Ok(self.shared.admin.received_from(recipient, sender))
    }

    fn topics(&self, group: ChatId) -> RpcResult<Result<Vec<TopicView>, AdminError>> {
        Ok(self.shared.admin.topics(group))
    }

    fn counters(&self, user: ChatId) -> RpcResult<Result<AccountCounters, AdminError>> {
        Ok(self.shared.admin.counters(user))
    }

    fn account_limits(&self, account: ChatId) -> RpcResult<Result<AccountLimitDraw, AdminError>> {
        Ok(self.shared.admin.account_limits(account))
    }

    fn open_connections(&self, session: SessionName) -> RpcResult<usize> {
        Ok(self.shared.admin.open_connections(&session))
    }

    fn connection_history(&self) -> RpcResult<Vec<ConnectionEntry>> {
        Ok(self.shared.admin.connection_history())
    }

    fn duplicate_connections(&self) -> RpcResult<u64> {
        Ok(self.shared.admin.duplicate_connections())
    }

    async fn save(&self) -> RpcResult<Result<(), String>> {
        Ok(self.shared.save().await.map_err(|error| error.to_string()))
    }

    fn scenario_layout(&self) -> RpcResult<Option<DemoWorld>> {
        Ok(scenario_layout(&self.shared.scenario()).cloned())
    }

    fn scenario_config(&self) -> RpcResult<Option<serde_json::Value>> {
        Ok(self.scenario_layout()?.map(|layout| layout.config_json()))
    }

    fn scripted_progress(&self) -> RpcResult<Option<ScriptedProgress>> {
        Ok(match &*self.shared.scenario() {
            Scenario::Scripted { scripted } => Some(ScriptedProgress {
                posted: scripted.posted,
                posts: scripted.posts,
                due: scripted.due(),
            }),
            _ => None,
        })
    }
}
