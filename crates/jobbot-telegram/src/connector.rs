//! [`GrammersConnector`]: opens session files as connected accounts or logins.
//!
//! Every open goes the same way: take the session's lock (refused with `SessionBusy` before any
//! network), build one `SenderPool` on it with a retry policy that never sleeps on flood waits,
//! and spawn its runner. Nothing dials until the first request; the authorization probe is that
//! request.

use std::collections::HashMap;
use std::fmt;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use grammers_client::client::ClientConfiguration;
use grammers_client::{Client, InvocationError, tl};
use grammers_mtsender::{
    ConnectionParams, RetryContext, RetryPolicy, SenderPool, SenderPoolHandle,
};
use grammers_session::updates::UpdatesLike;
use jobbot_core::ids::SessionName;
use jobbot_core::store::SessionVault;
use jobbot_core::telegram::{
    AccountConnector, AuthorizationStatus, ConnectError, ConnectOptions, DeadReason, LoginBackend,
    Me, TelegramAccount, TelegramError,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::account::GrammersAccount;
use crate::convert::me_from_user;
use crate::errors::map_invocation_error;
use crate::login::GrammersLogin;
use crate::session_store::{InvalidSessionKey, SessionKey, SessionStore, SessionStoreError};
use crate::updates::Holds;

/// What the connector needs: where sessions live and the application's credentials
/// (my.telegram.org). `api_hash` and the session key are secrets: `Debug` hides them.
#[derive(Clone)]
pub struct GrammersConfig {
    pub sessions_dir: PathBuf,
    pub api_id: i32,
    pub api_hash: String,
    pub session_key: Option<SessionKey>,
    /// Sessions kept in a database instead of `sessions_dir` (a node on PostgreSQL).
    pub vault: Option<VaultSessions>,
    /// Telegram's production servers, or its test servers (`JOBBOT_TELEGRAM_SERVERS=test`).
    pub servers: TelegramServers,
}

/// Which Telegram new sessions log in to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TelegramServers {
    #[default]
    Production,
    /// Telegram's test data centres (core.telegram.org/api/auth, "Test accounts"): test phone
    /// numbers `99966XYYYY` (X the DC, 1 to 3) log in with the code X repeated five times, and
    /// nothing there touches a real account. A session that logged in keeps its servers.
    Test,
}

/// Sessions kept in a [`SessionVault`], always sealed: built only with a key.
#[derive(Clone)]
pub struct VaultSessions {
    vault: Arc<dyn SessionVault>,
    key: SessionKey,
}

impl fmt::Debug for VaultSessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultSessions")
            .field("vault", &self.vault)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl VaultSessions {
    /// Refuses a vault without a key, naming the variable to set: sessions in a database are
    /// sealed at rest, always.
    pub fn new(vault: Arc<dyn SessionVault>, key: Option<SessionKey>) -> Result<Self, ConfigError> {
        let key = key.ok_or(ConfigError::KeyRequired {
            variable: crate::session_store::SESSION_KEY_VARIABLE,
        })?;
        Ok(Self { vault, key })
    }

    pub fn vault(&self) -> &Arc<dyn SessionVault> {
        &self.vault
    }

    pub fn key(&self) -> &SessionKey {
        &self.key
    }
}

impl fmt::Debug for GrammersConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrammersConfig")
            .field("sessions_dir", &self.sessions_dir)
            .field("api_id", &self.api_id)
            .field("api_hash", &"<redacted>")
            .field("vault", &self.vault)
            .field(
                "session_key",
                &self.session_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {variable} is not set (get it from https://my.telegram.org)")]
    Missing { variable: &'static str },
    #[error("environment variable {variable} is invalid: {reason}")]
    Invalid {
        variable: &'static str,
        reason: String,
    },
    #[error(
        "environment variable {variable} is not set: with a database, sessions are kept there \
         sealed with it (64 hex characters, e.g. from `openssl rand -hex 32`; the same on every node)"
    )]
    KeyRequired { variable: &'static str },
}

impl GrammersConfig {
    pub const API_ID_VARIABLE: &'static str = "API_ID";
    pub const API_HASH_VARIABLE: &'static str = "API_HASH";
    pub const SERVERS_VARIABLE: &'static str = "JOBBOT_TELEGRAM_SERVERS";

    /// Reads `API_ID`, `API_HASH` and the optional `JOBBOT_SESSION_KEY`.
    pub fn from_env(sessions_dir: impl Into<PathBuf>) -> Result<Self, ConfigError> {
        Self::from_lookup(sessions_dir, |variable| std::env::var(variable).ok())
    }

    /// [`Self::from_env`] over any variable source (tests pass a map).
    pub fn from_lookup(
        sessions_dir: impl Into<PathBuf>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let read = |variable: &'static str| {
            lookup(variable)
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
                .ok_or(ConfigError::Missing { variable })
        };
        let api_id_text = read(Self::API_ID_VARIABLE)?;
        let api_id =
            api_id_text
                .parse::<i32>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or(ConfigError::Invalid {
                    variable: Self::API_ID_VARIABLE,
                    reason: "must be a positive integer".into(),
                })?;
        let api_hash = read(Self::API_HASH_VARIABLE)?;
        if api_hash.len() != 32 || !api_hash.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ConfigError::Invalid {
                variable: Self::API_HASH_VARIABLE,
                reason: "must be 32 hex characters".into(),
            });
        }
        let session_key = match lookup(crate::session_store::SESSION_KEY_VARIABLE) {
            Some(text) if !text.trim().is_empty() => {
                Some(SessionKey::from_hex(&text).map_err(|InvalidSessionKey| {
                    ConfigError::Invalid {
                        variable: crate::session_store::SESSION_KEY_VARIABLE,
                        reason: "must be 64 hex characters (32 bytes)".into(),
                    }
                })?)
            }
            _ => None,
        };
        let servers = match lookup(Self::SERVERS_VARIABLE)
            .map(|value| value.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("" | "production") => TelegramServers::Production,
            Some("test") => TelegramServers::Test,
            Some(_) => {
                return Err(ConfigError::Invalid {
                    variable: Self::SERVERS_VARIABLE,
                    reason: "must be production or test".into(),
                });
            }
        };
        Ok(Self {
            sessions_dir: sessions_dir.into(),
            api_id,
            api_hash,
            session_key,
            vault: None,
            servers,
        })
    }
}

/// Never sleeps on a 420: the scheduler owns cooldowns, so every FLOOD_WAIT / SLOWMODE_WAIT
/// reaches it. An I/O error is retried once at once, on a new connection: Telegram may drop a
/// connection at any moment, and a retried send is safe because it repeats its `random_id`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SurfaceFloodWaits;

impl RetryPolicy for SurfaceFloodWaits {
    fn should_retry(&self, context: &RetryContext) -> ControlFlow<(), Duration> {
        match context.error {
            InvocationError::Io(_) if context.fail_count.get() == 1 => {
                ControlFlow::Continue(Duration::ZERO)
            }
            _ => ControlFlow::Break(()),
        }
    }
}

/// The real back-end's [`AccountConnector`].
#[derive(Debug, Clone)]
pub struct GrammersConnector {
    config: Arc<GrammersConfig>,
    /// Each session's channels whose catch-up waits, kept across its connections.
    holds: Arc<Mutex<HashMap<SessionName, Holds>>>,
}

/// One running sender pool on one locked session.
pub(crate) struct Connection {
    pub store: Arc<SessionStore>,
    pub client: Client,
    pub handle: SenderPoolHandle,
    pub updates: mpsc::Receiver<UpdatesLike>,
    pub runner: JoinHandle<()>,
}

impl Connection {
    /// Stops the pool and releases the session lock once the runner no longer uses the session.
    pub async fn shut_down(
        store: &SessionStore,
        handle: &SenderPoolHandle,
        runner: JoinHandle<()>,
    ) {
        handle.quit();
        if let Err(error) = runner.await {
            tracing::warn!(target: "telegram", session = %store.name(), %error, "sender pool task failed");
        }
        if let Err(error) = store.close().await {
            tracing::warn!(target: "telegram", session = %store.name(), %error, "could not save the session");
        }
    }

    async fn close(self) {
        Self::shut_down(&self.store, &self.handle, self.runner).await;
    }
}

/// The connection's parameters. Every field is set here on purpose: `ConnectionParams::default()`
/// runs `lsb_release` (through `os_info`) on each call, and that child process inherits, between
/// its fork and exec, the open session lock files of every other account: for that moment a
/// released session still looks busy. It also costs a process per connection.
pub(crate) fn connection_params(proxy: Option<String>) -> ConnectionParams {
    ConnectionParams {
        device_model: "jobbot".into(),
        system_version: std::env::consts::OS.into(),
        app_version: env!("CARGO_PKG_VERSION").into(),
        system_lang_code: "en".into(),
        lang_code: "en".into(),
        // May carry a proxy password: it goes to grammers only, never to a log line.
        proxy_url: proxy,
        use_ipv6: false,
        retry_policy: Box::new(SurfaceFloodWaits),
        // Updates beyond the buffer are dropped by grammers; an account in many busy chats
        // needs more than its default of 100.
        updates_channel_capacity: std::num::NonZeroUsize::new(1024).expect("non-zero"),
        __non_exhaustive: (),
    }
}

impl GrammersConnector {
    pub fn new(config: GrammersConfig) -> Self {
        Self {
            config: Arc::new(config),
            holds: Arc::default(),
        }
    }

    pub fn config(&self) -> &GrammersConfig {
        &self.config
    }

    async fn open_store(&self, session: &SessionName) -> Result<Arc<SessionStore>, ConnectError> {
        let opened = match &self.config.vault {
            Some(sessions) => {
                SessionStore::open_in_vault(sessions.vault.clone(), session, sessions.key.clone())
                    .await
            }
            None => SessionStore::open(
                &self.config.sessions_dir,
                session,
                self.config.session_key.clone(),
            ),
        };
        let store = opened.map_err(|error| storage_error(session, error))?;
        if self.config.servers == TelegramServers::Test {
            store
                .use_test_servers()
                .await
                .map_err(|error| storage_error(session, error))?;
        }
        Ok(Arc::new(store))
    }

    fn start(&self, store: Arc<SessionStore>, options: &ConnectOptions) -> Connection {
        let params = connection_params(options.proxy.clone());
        let SenderPool {
            runner,
            handle,
            updates,
        } = SenderPool::with_configuration(Arc::clone(&store), self.config.api_id, params);
        let thin_handle = handle.thin.clone();
        // Caching every peer seen keeps access hashes for channels and groups this account is
        // in, which `post_to_chat` and update gaps need.
        let client = Client::with_configuration(
            handle,
            ClientConfiguration {
                auto_cache_peers: true,
            },
        );
        let runner = tokio::spawn(runner.run());
        Connection {
            store,
            client,
            handle: thin_handle,
            updates,
            runner,
        }
    }

    /// Opens the session and asks Telegram what it thinks of it. The connection is returned only
    /// for an authorized session; otherwise it is already closed.
    async fn open_and_probe(
        &self,
        session: &SessionName,
        options: &ConnectOptions,
    ) -> Result<(AuthorizationStatus, Option<Connection>), ConnectError> {
        let store = self.open_store(session).await?;
        if !store.is_logged_in() && !store.has_home_auth_key() {
            // Never connected and never logged in: nothing to ask Telegram, and asking would only
            // create an auth key for nobody.
            store
                .close()
                .await
                .map_err(|error| storage_error(session, error))?;
            return Ok((AuthorizationStatus::NotLoggedIn, None));
        }
        let connection = self.start(store, options);
        let status = probe_authorization(&connection.client, &connection.store).await;
        match status {
            Ok(AuthorizationStatus::Authorized(me)) => {
                if !connection.store.is_logged_in() {
                    // Authorized but never marked (e.g. the flag was lost): record it now so a
                    // later 401 is reported as dead rather than as "never logged in".
                    connection
                        .store
                        .mark_logged_in()
                        .await
                        .map_err(|error| storage_error(session, error))?;
                }
                Ok((AuthorizationStatus::Authorized(me), Some(connection)))
            }
            other => {
                connection.close().await;
                other.map(|status| (status, None))
            }
        }
    }
}

fn storage_error(session: &SessionName, error: SessionStoreError) -> ConnectError {
    match error {
        SessionStoreError::Busy { session } => ConnectError::SessionBusy { session },
        other => ConnectError::Storage {
            session: session.clone(),
            message: other.to_string(),
        },
    }
}

/// `updates.getState` decides (grammers' `is_authorized` folds every 401 into `false`).
async fn probe_authorization(
    client: &Client,
    store: &SessionStore,
) -> Result<AuthorizationStatus, ConnectError> {
    let logged_in_before = store.is_logged_in();
    if let Err(error) = client.invoke(&tl::functions::updates::GetState {}).await {
        return authorization_after_error(&error, logged_in_before);
    }
    match get_me(client).await {
        Ok(me) => Ok(AuthorizationStatus::Authorized(me)),
        Err(TelegramError::AccountDead { reason }) => Ok(AuthorizationStatus::Dead(reason)),
        Err(error) => Err(ConnectError::Network {
            message: error.to_string(),
        }),
    }
}

/// What a failed `updates.getState` says about a session. `AUTH_KEY_UNREGISTERED` on a session
/// that never logged in is the normal state of a fresh key; after a login it means the
/// authorization was terminated (logged out from another device, or by Telegram).
pub fn authorization_after_error(
    error: &InvocationError,
    logged_in_before: bool,
) -> Result<AuthorizationStatus, ConnectError> {
    match map_invocation_error(error) {
        TelegramError::AccountDead {
            reason: DeadReason::Unregistered,
        } if !logged_in_before => Ok(AuthorizationStatus::NotLoggedIn),
        TelegramError::AccountDead { reason } => Ok(AuthorizationStatus::Dead(reason)),
        // Any other 401 (e.g. `SESSION_PASSWORD_NEEDED` from a login left half-way) before a
        // login is still "not logged in".
        _ if !logged_in_before && matches!(error, InvocationError::Rpc(rpc) if rpc.code == 401) => {
            Ok(AuthorizationStatus::NotLoggedIn)
        }
        other => Err(ConnectError::Network {
            message: other.to_string(),
        }),
    }
}

pub(crate) async fn get_me(client: &Client) -> Result<Me, TelegramError> {
    let users = client
        .invoke(&tl::functions::users::GetUsers {
            id: vec![tl::enums::InputUser::UserSelf],
        })
        .await
        .map_err(|error| map_invocation_error(&error))?;
    users
        .iter()
        .find_map(|user| match user {
            tl::enums::User::User(user) => me_from_user(user),
            tl::enums::User::Empty(_) => None,
        })
        .ok_or(TelegramError::Other {
            message: "users.getUsers returned no self user".into(),
        })
}

#[async_trait]
impl AccountConnector for GrammersConnector {
    async fn connect(
        &self,
        session: &SessionName,
        options: &ConnectOptions,
    ) -> Result<Arc<dyn TelegramAccount>, ConnectError> {
        match self.open_and_probe(session, options).await? {
            (AuthorizationStatus::Authorized(me), Some(connection)) => {
                tracing::info!(target: "telegram", session = %session, user_id = %me.user_id, "connected");
                let holds = self
                    .holds
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .entry(session.clone())
                    .or_default()
                    .clone();
                Ok(Arc::new(GrammersAccount::new(
                    session.clone(),
                    connection,
                    holds,
                )))
            }
            (AuthorizationStatus::Dead(reason), _) => Err(ConnectError::Dead {
                session: session.clone(),
                reason,
            }),
            _ => Err(ConnectError::NotLoggedIn {
                session: session.clone(),
            }),
        }
    }

    async fn check_authorization(
        &self,
        session: &SessionName,
        options: &ConnectOptions,
    ) -> Result<AuthorizationStatus, ConnectError> {
        let (status, connection) = self.open_and_probe(session, options).await?;
        if let Some(connection) = connection {
            connection.close().await;
        }
        Ok(status)
    }

    async fn begin_login(
        &self,
        session: &SessionName,
        options: &ConnectOptions,
    ) -> Result<Box<dyn LoginBackend>, ConnectError> {
        let store = self.open_store(session).await?;
        let connection = self.start(store, options);
        Ok(Box::new(GrammersLogin::new(
            session.clone(),
            self.config.api_id,
            self.config.api_hash.clone(),
            connection,
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io;
    use std::num::NonZeroU32;

    use grammers_mtsender::RpcError;

    use super::*;

    fn rpc(code: i32, name: &str) -> InvocationError {
        InvocationError::Rpc(RpcError {
            code,
            name: name.into(),
            value: None,
            caused_by: None,
        })
    }

    #[test]
    fn get_state_errors_tell_never_logged_in_from_dead() {
        let check = |error: InvocationError,
                     logged_in_before: bool,
                     expected: Result<AuthorizationStatus, ()>| {
            let actual = authorization_after_error(&error, logged_in_before).map_err(|_| ());
            assert_eq!(
                actual, expected,
                "{error:?} logged_in_before={logged_in_before}"
            );
        };
        check(
            rpc(401, "AUTH_KEY_UNREGISTERED"),
            false,
            Ok(AuthorizationStatus::NotLoggedIn),
        );
        check(
            rpc(401, "AUTH_KEY_UNREGISTERED"),
            true,
            Ok(AuthorizationStatus::Dead(DeadReason::Unregistered)),
        );
        check(
            rpc(401, "SESSION_PASSWORD_NEEDED"),
            false,
            Ok(AuthorizationStatus::NotLoggedIn),
        );
        check(
            rpc(401, "SESSION_REVOKED"),
            true,
            Ok(AuthorizationStatus::Dead(DeadReason::Revoked)),
        );
        check(
            rpc(401, "USER_DEACTIVATED_BAN"),
            false,
            Ok(AuthorizationStatus::Dead(DeadReason::Banned)),
        );
        check(
            rpc(406, "AUTH_KEY_DUPLICATED"),
            true,
            Ok(AuthorizationStatus::Dead(DeadReason::AuthKeyDuplicated)),
        );
        check(
            InvocationError::Io(io::Error::from(io::ErrorKind::ConnectionRefused)),
            true,
            Err(()),
        );
    }

    #[test]
    fn retry_policy_never_sleeps_on_flood_waits() {
        let check =
            |error: InvocationError, fail_count: u32, expected: ControlFlow<(), Duration>| {
                let context = RetryContext {
                    fail_count: NonZeroU32::new(fail_count).unwrap(),
                    slept_so_far: Duration::ZERO,
                    error,
                };
                assert_eq!(SurfaceFloodWaits.should_retry(&context), expected);
            };
        let flood = || {
            InvocationError::Rpc(RpcError {
                code: 420,
                name: "FLOOD_WAIT".into(),
                value: Some(3),
                caused_by: None,
            })
        };
        let io_error = || InvocationError::Io(io::Error::from(io::ErrorKind::ConnectionReset));
        check(flood(), 1, ControlFlow::Break(()));
        check(rpc(420, "SLOWMODE_WAIT"), 1, ControlFlow::Break(()));
        check(io_error(), 1, ControlFlow::Continue(Duration::ZERO));
        check(io_error(), 2, ControlFlow::Break(()));
    }

    #[test]
    fn test_servers_are_chosen_by_name_and_a_wrong_name_is_refused() {
        let servers = |value: Option<&str>| {
            GrammersConfig::from_lookup("sessions", |name| match name {
                "API_ID" => Some("12345".into()),
                "API_HASH" => Some("0123456789abcdef0123456789abcdef".into()),
                "JOBBOT_TELEGRAM_SERVERS" => value.map(str::to_owned),
                _ => None,
            })
            .map(|config| config.servers)
        };
        assert_eq!(servers(None), Ok(TelegramServers::Production));
        assert_eq!(servers(Some("production")), Ok(TelegramServers::Production));
        assert_eq!(servers(Some(" Test ")), Ok(TelegramServers::Test));
        assert_eq!(
            servers(Some("staging")),
            Err(ConfigError::Invalid {
                variable: "JOBBOT_TELEGRAM_SERVERS",
                reason: "must be production or test".into(),
            })
        );
    }

    #[test]
    fn config_reads_named_variables_and_names_the_bad_one() {
        let check = |variables: &[(&str, &str)], expected: Result<(i32, bool), ConfigError>| {
            let map: HashMap<String, String> = variables
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect();
            let actual = GrammersConfig::from_lookup("sessions", |name| map.get(name).cloned())
                .map(|config| (config.api_id, config.session_key.is_some()));
            assert_eq!(actual, expected, "{variables:?}");
        };
        let hash = "0123456789abcdef0123456789abcdef";
        let key = "ab".repeat(32);
        check(
            &[("API_ID", "12345"), ("API_HASH", hash)],
            Ok((12345, false)),
        );
        check(
            &[
                ("API_ID", "12345"),
                ("API_HASH", hash),
                ("JOBBOT_SESSION_KEY", &key),
            ],
            Ok((12345, true)),
        );
        check(
            &[("API_HASH", hash)],
            Err(ConfigError::Missing { variable: "API_ID" }),
        );
        check(
            &[("API_ID", "12345")],
            Err(ConfigError::Missing {
                variable: "API_HASH",
            }),
        );
        check(
            &[("API_ID", "abc"), ("API_HASH", hash)],
            Err(ConfigError::Invalid {
                variable: "API_ID",
                reason: "must be a positive integer".into(),
            }),
        );
        check(
            &[("API_ID", "12345"), ("API_HASH", "short")],
            Err(ConfigError::Invalid {
                variable: "API_HASH",
                reason: "must be 32 hex characters".into(),
            }),
        );
        check(
            &[
                ("API_ID", "12345"),
                ("API_HASH", hash),
                ("JOBBOT_SESSION_KEY", "00"),
            ],
            Err(ConfigError::Invalid {
                variable: "JOBBOT_SESSION_KEY",
                reason: "must be 64 hex characters (32 bytes)".into(),
            }),
        );
    }

    #[test]
    fn sessions_in_a_database_need_the_session_key_and_never_show_it() {
        let vault: Arc<dyn SessionVault> = Arc::new(jobbot_store::MemoryStore::new());
        let refused = VaultSessions::new(vault.clone(), None).unwrap_err();
        assert_eq!(
            refused,
            ConfigError::KeyRequired {
                variable: "JOBBOT_SESSION_KEY"
            }
        );
        assert!(
            refused.to_string().contains("JOBBOT_SESSION_KEY"),
            "{refused}"
        );
        let sessions = VaultSessions::new(vault, Some(SessionKey::from_bytes([0xab; 32]))).unwrap();
        let shown = format!("{sessions:?}");
        assert!(
            !shown.contains("ab, ab") && !shown.contains("abab"),
            "{shown}"
        );
    }

    #[test]
    fn config_debug_hides_secrets() {
        let config = GrammersConfig {
            sessions_dir: "sessions".into(),
            vault: None,
            api_id: 1,
            api_hash: "0123456789abcdef0123456789abcdef".into(),
            session_key: Some(SessionKey::from_bytes([1; 32])),
            servers: TelegramServers::Production,
        };
        let text = format!("{config:?}");
        assert!(!text.contains("0123456789abcdef"), "{text}");
        assert!(!text.contains("0101"), "{text}");
    }
}
