//! The remote back-end of the Telegram port: [`RemoteConnector`] opens sessions of a simulator
//! running in another process (`jobbot sim serve`), as [`RemoteAccount`]s and
//! [`RemoteLogin`]s that call it over one WebSocket per connector.
//!
//! A mechanical mapping: every port method is one RPC whose answer is already the port's
//! `Result`; only a broken transport is turned into the port's `Network` error. The connector
//! reconnects lazily: after the simulator restarts, the next `connect` opens a new WebSocket
//! (the accounts of the old one report `ConnectionLost`, then their stream ends and their calls
//! fail with `Network`, which is what makes their owners reconnect).
//!
//! Dropping an account or a login releases its session on the server in the background; the
//! next `connect`, `check_authorization` or `begin_login` of that session from this connector
//! waits for that release first, so "drop, then connect again" behaves as in process.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use jobbot_core::ids::{ChatId, PhoneNumber, SessionName, Username};
use jobbot_core::telegram::{
    AccountConnector, AccountEvent, AuthorizationStatus, ChatAccess, Checkpoint, CodeOutcome,
    ConnectError, ConnectOptions, JoinTarget, LoginBackend, LoginError, Me, MediaFile,
    MessageAuthor, MessageContent, NewChatKind, Peer, PeerRef, QrOutcome, RandomId, SentCode,
    SentMessage, TelegramAccount, TelegramError, TopicId,
};
use jsonrpsee::async_client::{Client, ClientBuilder};
use jsonrpsee::client_transport::ws::{Url, WsTransportClientBuilder};
use jsonrpsee::core::client::{Subscription, SubscriptionCloseReason};
use jsonrpsee::core::middleware::RpcServiceBuilder;
use tokio::sync::{mpsc, watch};

use crate::rpc::{AccountHandle, AdminRpcClient, LoginHandle, TelegramRpcClient};

/// The jsonrpsee client, without its request logger: a login's code and 2FA password travel as
/// parameters and must not reach a trace log.
pub type RpcClient = Client<jsonrpsee::async_client::RpcService>;

/// Events an account keeps for its owner before dropping new ones (as the world's own
/// `event_buffer` does for a reader that does not keep up).
const EVENT_BUFFER: usize = 1_024;

/// A `sim://host:port` address that names no simulator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{given:?} is not a simulator address: expected sim://HOST:PORT (e.g. sim://127.0.0.1:7100)"
)]
pub struct InvalidSimUrl {
    pub given: String,
}

/// Parses `sim://127.0.0.1:PORT` (what `jobbot sim serve` prints).
pub fn parse_sim_url(url: &str) -> Result<SocketAddr, InvalidSimUrl> {
    url.strip_prefix("sim://")
        .map(|rest| rest.trim_end_matches('/'))
        .and_then(|address| address.parse().ok())
        .ok_or_else(|| InvalidSimUrl {
            given: url.to_owned(),
        })
}

/// Opens sessions of a remote simulator. Cheap to clone; clones share one WebSocket.
#[derive(Clone)]
pub struct RemoteConnector {
    inner: Arc<Inner>,
}

struct Inner {
    url: Url,
    client: tokio::sync::Mutex<Option<Arc<RpcClient>>>,
    next_handle: AtomicU64,
    releases: Releases,
}

impl RemoteConnector {
    pub fn new(address: SocketAddr) -> Self {
        let url = Url::parse(&format!("ws://{address}")).expect("a socket address makes a URL");
        Self {
            inner: Arc::new(Inner {
                url,
                client: tokio::sync::Mutex::new(None),
                next_handle: AtomicU64::new(1),
                releases: Releases::default(),
            }),
        }
    }

    /// `sim://HOST:PORT`.
    pub fn from_url(url: &str) -> Result<Self, InvalidSimUrl> {
        parse_sim_url(url).map(Self::new)
    }

    /// The WebSocket client, connecting (again) if there is none or it was lost. The admin
    /// interface is called on it too (`AdminRpcClient`).
    pub async fn client(&self) -> Result<Arc<RpcClient>, String> {
        let mut current = self.inner.client.lock().await;
        if let Some(client) = &*current
            && client.is_connected()
        {
            return Ok(Arc::clone(client));
        }
        let (sender, receiver) = WsTransportClientBuilder::default()
            .max_request_size(crate::server::MAX_MESSAGE_BYTES)
            .max_response_size(crate::server::MAX_MESSAGE_BYTES)
            .build(self.inner.url.clone())
            .await
            .map_err(|error| {
                format!("cannot reach the simulator at {}: {error}", self.inner.url)
            })?;
        let client = Arc::new(
            ClientBuilder::default()
                .set_rpc_middleware(RpcServiceBuilder::new())
                .request_timeout(Duration::from_secs(120))
                // A simulator that vanished without closing the socket is noticed (as the
                // server notices such a client): its accounts report the loss.
                .enable_ws_ping(
                    jsonrpsee::async_client::PingConfig::new()
                        .ping_interval(Duration::from_secs(5))
                        .inactive_limit(Duration::from_secs(20)),
                )
                .build_with_tokio(sender, receiver),
        );
        *current = Some(Arc::clone(&client));
        Ok(client)
    }

    fn next_handle(&self) -> u64 {
        self.inner.next_handle.fetch_add(1, Ordering::Relaxed)
    }

    /// A second connection of `session` that bypasses the session lock, as a copied session file
    /// would (the admin interface's test hook for `AUTH_KEY_DUPLICATED`).
    pub async fn duplicate_connect(
        &self,
        session: &SessionName,
    ) -> Result<Arc<dyn TelegramAccount>, String> {
        let client = self.client().await?;
        let handle = AccountHandle(self.next_handle());
        let mut release = self.release(&client, Handle::Account(handle), session);
        let refused = client
            .duplicate_connect(session.clone(), handle)
            .await
            .map_err(|error| error.to_string())?;
        if let Err(refused) = refused {
            release.defuse();
            return Err(refused.to_string());
        }
        self.open_account(client, handle, release)
            .await
            .map_err(|error| error.to_string())
    }

    fn release(&self, client: &Arc<RpcClient>, handle: Handle, session: &SessionName) -> Release {
        Release {
            armed: Some((
                Arc::clone(client),
                handle,
                session.clone(),
                self.inner.releases.clone(),
            )),
        }
    }

    /// Subscribes to the account's events and wraps it; `release` ends it if that fails.
    async fn open_account(
        &self,
        client: Arc<RpcClient>,
        handle: AccountHandle,
        release: Release,
    ) -> Result<Arc<dyn TelegramAccount>, ConnectError> {
        let subscription = client
            .events(handle)
            .await
            .map_err(|error| connect_network(error.to_string()))?;
        let (events, receiver) = mpsc::channel(EVENT_BUFFER);
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(forward_events(subscription, events, stopped));
        Ok(Arc::new(RemoteAccount {
            client,
            handle,
            events: Mutex::new(Some(receiver)),
            stop,
            release: Mutex::new(release),
        }))
    }
}

/// Copies the server's event subscription into the account's local stream. When the WebSocket
/// is lost the stream gets `ConnectionLost` and ends; when the account ends, it just ends.
async fn forward_events(
    mut subscription: Subscription<AccountEvent>,
    events: mpsc::Sender<AccountEvent>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut dropped = 0u64;
    loop {
        let next = tokio::select! {
            next = subscription.next() => next,
            _ = stopped.wait_for(|stopped| *stopped) => return,
        };
        match next {
            Some(Ok(event)) => match events.try_send(event) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    dropped += 1;
                    tracing::warn!(target: "telegram", dropped, "an account's events are not read; dropping");
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            },
            Some(Err(error)) => {
                tracing::warn!(target: "telegram", %error, "an event from the simulator did not parse");
            }
            None => {
                if matches!(
                    subscription.close_reason(),
                    Some(SubscriptionCloseReason::ConnectionClosed)
                ) {
                    let _ = events.try_send(AccountEvent::ConnectionLost);
                }
                return;
            }
        }
    }
}

fn transport<T, E>(
    answer: Result<Result<T, E>, jsonrpsee::core::client::Error>,
    network: impl FnOnce(String) -> E,
) -> Result<T, E> {
    answer.unwrap_or_else(|error| Err(network(error.to_string())))
}

fn telegram_network(message: String) -> TelegramError {
    TelegramError::Network { message }
}

fn connect_network(message: String) -> ConnectError {
    ConnectError::Network { message }
}

fn login_network(message: String) -> LoginError {
    LoginError::Network { message }
}

#[async_trait]
impl AccountConnector for RemoteConnector {
    async fn connect(
        &self,
        session: &SessionName,
        _options: &ConnectOptions,
    ) -> Result<Arc<dyn TelegramAccount>, ConnectError> {
        self.inner.releases.wait(session).await;
        let client = self.client().await.map_err(connect_network)?;
        let handle = AccountHandle(self.next_handle());
        // Armed before asking: if this future is dropped half-way, the account is ended anyway.
        let mut release = self.release(&client, Handle::Account(handle), session);
        match client.connect(session.clone(), handle).await {
            Ok(Ok(())) => self.open_account(client, handle, release).await,
            Ok(Err(refused)) => {
                release.defuse();
                Err(refused)
            }
            Err(error) => Err(connect_network(error.to_string())),
        }
    }

    async fn check_authorization(
        &self,
        session: &SessionName,
        _options: &ConnectOptions,
    ) -> Result<AuthorizationStatus, ConnectError> {
        self.inner.releases.wait(session).await;
        let client = self.client().await.map_err(connect_network)?;
        transport(
            client.check_authorization(session.clone()).await,
            connect_network,
        )
    }

    async fn begin_login(
        &self,
        session: &SessionName,
        _options: &ConnectOptions,
    ) -> Result<Box<dyn LoginBackend>, ConnectError> {
        self.inner.releases.wait(session).await;
        let client = self.client().await.map_err(connect_network)?;
        let handle = LoginHandle(self.next_handle());
        let mut release = self.release(&client, Handle::Login(handle), session);
        match client.begin_login(session.clone(), handle).await {
            Ok(Ok(())) => Ok(Box::new(RemoteLogin {
                client,
                handle,
                _release: release,
            })),
            Ok(Err(refused)) => {
                release.defuse();
                Err(refused)
            }
            Err(error) => Err(connect_network(error.to_string())),
        }
    }
}

/// One connection of one session on the remote simulator.
pub struct RemoteAccount {
    client: Arc<RpcClient>,
    handle: AccountHandle,
    events: Mutex<Option<mpsc::Receiver<AccountEvent>>>,
    stop: watch::Sender<bool>,
    /// Ends the account on the server when this is dropped.
    release: Mutex<Release>,
}

impl Drop for RemoteAccount {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

#[async_trait]
impl TelegramAccount for RemoteAccount {
    async fn get_me(&self) -> Result<Me, TelegramError> {
        transport(self.client.get_me(self.handle).await, telegram_network)
    }

    async fn resolve_username(&self, username: &Username) -> Result<Peer, TelegramError> {
        transport(
            self.client
                .resolve_username(self.handle, username.clone())
                .await,
            telegram_network,
        )
    }

    async fn resolve_message_author(&self, author: &MessageAuthor) -> Result<Peer, TelegramError> {
        transport(
            self.client
                .resolve_message_author(self.handle, author.clone())
                .await,
            telegram_network,
        )
    }

    async fn send_direct(
        &self,
        to: PeerRef,
        content: &MessageContent,
        random_id: RandomId,
    ) -> Result<SentMessage, TelegramError> {
        transport(
            self.client
                .send_direct(self.handle, to, content.clone(), random_id)
                .await,
            telegram_network,
        )
    }

    async fn send_typing(&self, to: PeerRef) -> Result<(), TelegramError> {
        transport(
            self.client.send_typing(self.handle, to).await,
            telegram_network,
        )
    }

    async fn post_to_chat(
        &self,
        chat: ChatId,
        content: &MessageContent,
        random_id: RandomId,
    ) -> Result<SentMessage, TelegramError> {
        transport(
            self.client
                .post_to_chat(self.handle, chat, content.clone(), random_id)
                .await,
            telegram_network,
        )
    }

    async fn create_forum_topic(
        &self,
        group: ChatId,
        title: &str,
        random_id: RandomId,
    ) -> Result<TopicId, TelegramError> {
        transport(
            self.client
                .create_forum_topic(self.handle, group, title.to_owned(), random_id)
                .await,
            telegram_network,
        )
    }

    async fn post_to_topic(
        &self,
        group: ChatId,
        topic: TopicId,
        content: &MessageContent,
        random_id: RandomId,
    ) -> Result<SentMessage, TelegramError> {
        transport(
            self.client
                .post_to_topic(self.handle, group, topic, content.clone(), random_id)
                .await,
            telegram_network,
        )
    }

    async fn join_chat(&self, target: &JoinTarget) -> Result<Peer, TelegramError> {
        transport(
            self.client.join_chat(self.handle, target.clone()).await,
            telegram_network,
        )
    }

    async fn refetch_file(
        &self,
        chat: ChatId,
        message_id: i32,
    ) -> Result<Option<MediaFile>, TelegramError> {
        transport(
            self.client
                .refetch_file(self.handle, chat, message_id)
                .await,
            telegram_network,
        )
    }

    async fn chat_access(&self, chat: ChatId) -> Result<ChatAccess, TelegramError> {
        transport(
            self.client.chat_access(self.handle, chat).await,
            telegram_network,
        )
    }

    async fn create_channel(
        &self,
        kind: NewChatKind,
        title: &str,
        about: &str,
    ) -> Result<Peer, TelegramError> {
        transport(
            // `AdminRpcClient` has a `create_channel` of its own (a world's channel).
            TelegramRpcClient::create_channel(
                &*self.client,
                self.handle,
                kind,
                title.to_owned(),
                about.to_owned(),
            )
            .await,
            telegram_network,
        )
    }

    async fn export_invite_link(&self, chat: ChatId) -> Result<String, TelegramError> {
        transport(
            self.client.export_invite_link(self.handle, chat).await,
            telegram_network,
        )
    }

    async fn invite_to_channel(
        &self,
        chat: ChatId,
        users: &[PeerRef],
    ) -> Result<Vec<ChatId>, TelegramError> {
        transport(
            self.client
                .invite_to_channel(self.handle, chat, users.to_vec())
                .await,
            telegram_network,
        )
    }

    async fn allow_members_to_create_topics(&self, group: ChatId) -> Result<(), TelegramError> {
        transport(
            self.client
                .allow_members_to_create_topics(self.handle, group)
                .await,
            telegram_network,
        )
    }

    async fn delete_channel(&self, chat: ChatId) -> Result<(), TelegramError> {
        transport(
            self.client.delete_channel(self.handle, chat).await,
            telegram_network,
        )
    }

    fn take_events(&self) -> Option<mpsc::Receiver<AccountEvent>> {
        self.events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    fn request_checkpoint(&self) {
        // The port's request is fire-and-forget; the marker comes back through the event
        // subscription, after every event the server delivered before it.
        let (client, handle) = (Arc::clone(&self.client), self.handle);
        tokio::spawn(async move {
            let _ = client.request_checkpoint(handle).await;
        });
    }

    async fn commit_checkpoint(&self, checkpoint: Checkpoint) -> Result<(), TelegramError> {
        transport(
            self.client.commit_checkpoint(self.handle, checkpoint).await,
            telegram_network,
        )
    }

    async fn disconnect(&self) {
        let _ = self.stop.send(true);
        let release = std::mem::take(
            &mut *self
                .release
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        release.now().await;
    }
}

/// A login on the remote simulator; dropping it ends the login and releases its session.
pub struct RemoteLogin {
    client: Arc<RpcClient>,
    handle: LoginHandle,
    _release: Release,
}

#[async_trait]
impl LoginBackend for RemoteLogin {
    async fn request_code(&mut self, phone: &PhoneNumber) -> Result<SentCode, LoginError> {
        transport(
            self.client.request_code(self.handle, phone.clone()).await,
            login_network,
        )
    }

    async fn resend_code(&mut self) -> Result<SentCode, LoginError> {
        transport(self.client.resend_code(self.handle).await, login_network)
    }

    async fn submit_code(&mut self, code: &str) -> Result<CodeOutcome, LoginError> {
        transport(
            self.client.submit_code(self.handle, code.to_owned()).await,
            login_network,
        )
    }

    async fn submit_password(&mut self, password: &str) -> Result<Me, LoginError> {
        transport(
            self.client
                .submit_password(self.handle, password.to_owned())
                .await,
            login_network,
        )
    }

    async fn export_login_token(&mut self) -> Result<QrOutcome, LoginError> {
        transport(
            self.client.export_login_token(self.handle).await,
            login_network,
        )
    }

    async fn wait_login_token(&mut self, timeout: std::time::Duration) -> Result<bool, LoginError> {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        transport(
            self.client.wait_login_token(self.handle, timeout_ms).await,
            login_network,
        )
    }
}

#[derive(Clone, Copy)]
enum Handle {
    Account(AccountHandle),
    Login(LoginHandle),
}

/// Ends an account or a login on the server when dropped (in the background, registered in
/// [`Releases`]) unless defused.
#[derive(Default)]
struct Release {
    armed: Option<(Arc<RpcClient>, Handle, SessionName, Releases)>,
}

impl Release {
    fn defuse(&mut self) {
        self.armed = None;
    }

    /// Ends it now, waiting for the server's answer.
    async fn now(mut self) {
        if let Some((client, handle, _, _)) = self.armed.take() {
            end(&client, handle).await;
        }
    }
}

async fn end(client: &RpcClient, handle: Handle) {
    // A lost connection has ended it already.
    let _ = match handle {
        Handle::Account(handle) => client.disconnect(handle).await,
        Handle::Login(handle) => client.end_login(handle).await,
    };
}

impl Drop for Release {
    fn drop(&mut self) {
        let Some((client, handle, session, releases)) = self.armed.take() else {
            return;
        };
        // Without a runtime nothing can be sent; the WebSocket's close will end it.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (done, finished) = watch::channel(false);
            releases.register(session, finished);
            runtime.spawn(async move {
                end(&client, handle).await;
                let _ = done.send(true);
            });
        }
    }
}

/// Releases in flight per session, so a new use of a session waits until this connector's
/// previous holder has really let go of it.
#[derive(Clone, Default)]
struct Releases(Arc<Mutex<HashMap<SessionName, Vec<watch::Receiver<bool>>>>>);

impl Releases {
    fn register(&self, session: SessionName, finished: watch::Receiver<bool>) {
        let mut pending = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let list = pending.entry(session).or_default();
        list.retain(|release| !*release.borrow());
        list.push(finished);
    }

    async fn wait(&self, session: &SessionName) {
        // Cloned, not taken: a waiter that is given up on leaves them for the next one.
        let waiting: Vec<watch::Receiver<bool>> = {
            let mut pending = self
                .0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let list = pending.entry(session.clone()).or_default();
            list.retain(|release| !*release.borrow());
            let waiting = list.clone();
            if list.is_empty() {
                pending.remove(session);
            }
            waiting
        };
        for mut release in waiting {
            // A dropped sender (the task ended) counts as done.
            let _ = release.wait_for(|done| *done).await;
        }
    }
}
