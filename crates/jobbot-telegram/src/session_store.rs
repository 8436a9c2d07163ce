//! grammers' `Session` on jobbot's own storage: one JSON file per session, optionally encrypted,
//! owned under an exclusive lock; or, on a node that keeps its data in PostgreSQL, the same
//! bytes, always sealed, in the database's [`SessionVault`].
//!
//! Why not grammers' `SqliteSession`: it is built on libsql, whose bundled SQLite fails to link
//! next to sqlx's SQLite in one binary. A session is small (a few auth keys, the update state and
//! a peer cache), so the whole state lives in memory and a snapshot is written atomically (temp
//! file, fsync, rename) whenever something that matters changes.
//!
//! Invariants:
//! - At most one [`SessionStore`] per session file exists at a time, across processes and within
//!   one: [`SessionStore::open`] takes an exclusive `flock` on `{name}.session.lock` and fails with
//!   [`SessionStoreError::Busy`] otherwise. Telegram invalidates an auth key used from two
//!   connections at once (`AUTH_KEY_DUPLICATED`), so a second owner is refused before it connects.
//! - The file is never copied; it is written with mode 0600 and replaced atomically.
//! - With a key, the file is ChaCha20-Poly1305 sealed; a wrong key or a modified file is an error,
//!   never garbage. In a vault a key is required ([`SessionStore::open_in_vault`] takes one, not
//!   an option), so the database never holds an auth key in the clear.
//! - In a vault there is no file lock: who may use a session across nodes is decided by the
//!   session's lease, and within the process by the engine's one owner per session.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::net::{SocketAddrV4, SocketAddrV6};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use grammers_session::types::{
    ChannelKind, ChannelState, DcOption, PeerAuth, PeerId, PeerInfo, UpdateState, UpdatesState,
};
use grammers_session::{BoxFuture, Session, SessionData};
use jobbot_core::ids::{ChatId, SessionName, Username};
use jobbot_core::legacy_session::{AuthKey, AuthKeyId};
use jobbot_core::peer_cache::UsernameCache;
use jobbot_core::store::{SessionVault, UnixMillis};
use jobbot_core::telegram::Peer;
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// The environment variable holding the optional at-rest key (64 hex characters).
pub const SESSION_KEY_VARIABLE: &str = "JOBBOT_SESSION_KEY";

/// File format marker and version, also bound into the AEAD so a sealed body cannot be moved
/// into a file claiming another format.
const FORMAT: &str = "jobbot-session";
const FORMAT_VERSION: u32 = 1;
const ASSOCIATED_DATA: &[u8] = b"jobbot-session/1";

/// Peer-cache changes are frequent (every response carries users and chats) and cheap to lose
/// (access hashes can be fetched again), so they are written in batches rather than one by one.
const UNSAVED_PEER_CHANGES_BEFORE_WRITE: usize = 64;

/// A 32-byte key for sealing session files at rest.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKey([u8; 32]);

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{SESSION_KEY_VARIABLE} must be exactly 64 hex characters (32 bytes)")]
pub struct InvalidSessionKey;

impl SessionKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Parses 64 hex characters. The error never repeats the input: it is a secret.
    pub fn from_hex(text: &str) -> Result<Self, InvalidSessionKey> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut bytes).map_err(|_| InvalidSessionKey)?;
        Ok(Self(bytes))
    }

    /// Reads [`SESSION_KEY_VARIABLE`]; unset or empty means "no encryption".
    pub fn from_env() -> Result<Option<Self>, InvalidSessionKey> {
        match std::env::var(SESSION_KEY_VARIABLE) {
            Ok(value) if !value.trim().is_empty() => Self::from_hex(&value).map(Some),
            Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(InvalidSessionKey),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionStoreError {
    #[error("session {session} is already held by another owner")]
    Busy { session: SessionName },
    #[error("could not {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{path} is encrypted; set {SESSION_KEY_VARIABLE} to the key it was written with")]
    KeyRequired { path: PathBuf },
    #[error(
        "cannot decrypt {path}: {SESSION_KEY_VARIABLE} is not the key it was written with, or the file was modified"
    )]
    Decrypt { path: PathBuf },
    #[error("{path} is not a readable jobbot session file: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("session {session} is closed")]
    Closed { session: SessionName },
    /// The database holding the sessions failed (the message names the operation, never a key).
    #[error("could not {action} session {session} in the database: {source}")]
    Vault {
        action: &'static str,
        session: SessionName,
        source: jobbot_core::store::StoreError,
    },
    #[error("session state lock is poisoned")]
    Poisoned,
}

/// A session's state, kept in memory and written to `{dir}/{name}.session` or to a vault.
pub struct SessionStore {
    name: SessionName,
    /// The file, or for a vault a description used in messages (`database:NAME`).
    path: PathBuf,
    /// `Some` for a session kept in a database instead of a file.
    vault: Option<Arc<dyn SessionVault>>,
    key: Option<SessionKey>,
    state: Mutex<SessionState>,
    /// Serialises writers so that files land in generation order.
    write_order: tokio::sync::Mutex<()>,
    written_generation: AtomicU64,
    /// The open, `flock`ed lock file; `None` once closed, and for a vault. Dropping it releases
    /// the lock.
    lock_file: Mutex<Option<File>>,
}

struct SessionState {
    data: SessionData,
    /// Set once a login succeeded. A 401 `AUTH_KEY_UNREGISTERED` then means the account was
    /// logged out or killed elsewhere (dead), and without it that the session never logged in.
    logged_in: bool,
    /// Bumped on every change; the file holds `written_generation`.
    generation: u64,
    unsaved_peer_changes: usize,
    closed: bool,
    /// Resolved usernames with this session's access hashes (see [`jobbot_core::peer_cache`]):
    /// kept in the file so a restart does not repeat `contacts.resolveUsername`.
    usernames: UsernameCache,
    /// Per channel, the last message id up to which everything was handled, saved with the
    /// update position (see [`jobbot_core::catch_up`]).
    channel_marks: BTreeMap<i64, i32>,
}

impl fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionStore")
            .field("name", &self.name)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SessionStore {
    /// Locks and loads `{dir}/{name}.session` (an absent file is a fresh session). Fails with
    /// [`SessionStoreError::Busy`] if anyone else holds the session; nothing is read then.
    pub fn open(
        dir: &Path,
        name: &SessionName,
        key: Option<SessionKey>,
    ) -> Result<Self, SessionStoreError> {
        let lock_file = lock_session(dir, name)?;
        let path = dir.join(name.file_name());
        let snapshot = match fs::read(&path) {
            Ok(bytes) => Some(decode_file(&path, &bytes, key.as_ref())?),
            Err(error) if error.kind() == io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(SessionStoreError::Io {
                    action: "read",
                    path,
                    source,
                });
            }
        };
        let (data, logged_in, extra) = match snapshot {
            Some(snapshot) => snapshot.into_session_data(&path)?,
            None => (SessionData::default(), false, JobbotState::default()),
        };
        let store = Self::locked(name, path, key, Some(lock_file), data, logged_in);
        store.restore(extra);
        Ok(store)
    }

    /// Loads session `name` from `vault` (an absent one is a fresh session), sealed with `key`.
    /// The caller must hold the session's lease: the vault locks nothing.
    pub async fn open_in_vault(
        vault: Arc<dyn SessionVault>,
        name: &SessionName,
        key: SessionKey,
    ) -> Result<Self, SessionStoreError> {
        let path = vault_description(name);
        let bytes = vault
            .load_session(name)
            .await
            .map_err(|source| SessionStoreError::Vault {
                action: "load",
                session: name.clone(),
                source,
            })?;
        let (data, logged_in, extra) = match bytes {
            Some(bytes) => decode_file(&path, &bytes, Some(&key))?.into_session_data(&path)?,
            None => (SessionData::default(), false, JobbotState::default()),
        };
        let mut store = Self::locked(name, path, Some(key), None, data, logged_in);
        store.restore(extra);
        store.vault = Some(vault);
        Ok(store)
    }

    /// Locks `{dir}/{name}.session` and replaces whatever the file holds (nothing is read) with
    /// `data`, logged in, written before this returns. For taking over a session logged in
    /// elsewhere (an imported Telethon session): the caller has moved the original away first.
    pub async fn create_logged_in(
        dir: &Path,
        name: &SessionName,
        key: Option<SessionKey>,
        data: SessionData,
        usernames: UsernameCache,
    ) -> Result<Self, SessionStoreError> {
        let lock_file = lock_session(dir, name)?;
        let path = dir.join(name.file_name());
        let store = Self::locked(name, path, key, Some(lock_file), data, true);
        store.change(|state| state.usernames = usernames)?;
        store.persist().await?;
        Ok(store)
    }

    /// Puts back what jobbot keeps beside grammers' data (the username cache, channel marks).
    fn restore(&self, extra: JobbotState) {
        if let Ok(mut state) = self.state.lock() {
            state.usernames = extra.usernames;
            state.channel_marks = extra.channel_marks;
        }
    }

    fn locked(
        name: &SessionName,
        path: PathBuf,
        key: Option<SessionKey>,
        lock_file: Option<File>,
        data: SessionData,
        logged_in: bool,
    ) -> Self {
        Self {
            name: name.clone(),
            path,
            vault: None,
            key,
            state: Mutex::new(SessionState {
                data,
                logged_in,
                generation: 0,
                unsaved_peer_changes: 0,
                closed: false,
                usernames: UsernameCache::default(),
                channel_marks: BTreeMap::new(),
            }),
            write_order: tokio::sync::Mutex::new(()),
            written_generation: AtomicU64::new(0),
            lock_file: Mutex::new(lock_file),
        }
    }

    /// What `jobbot session show` prints: never the key itself.
    pub fn summary(&self) -> Result<SessionSummary, SessionStoreError> {
        let state = self.state()?;
        let data = &state.data;
        let home = data.dc_options.get(&data.home_dc);
        let user_id = data.peer_infos.values().find_map(|info| match info {
            PeerInfo::User {
                id,
                is_self: Some(true),
                ..
            } => Some(*id),
            _ => None,
        });
        Ok(SessionSummary {
            logged_in: state.logged_in,
            home_dc: data.home_dc,
            address: home.map(|dc| dc.ipv4.to_string()),
            auth_key_id: home.and_then(|dc| dc.auth_key).map(|key| AuthKey(key).id()),
            user_id,
            peers: data.peer_infos.len(),
            pts: data.updates_state.pts,
        })
    }
}

/// A session as `jobbot session show` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSummary {
    pub logged_in: bool,
    pub home_dc: i32,
    pub address: Option<String>,
    /// The home DC's key, by its MTProto id.
    pub auth_key_id: Option<AuthKeyId>,
    /// The account's own user id, once a connection has seen it.
    pub user_id: Option<i64>,
    /// Peers in the cache.
    pub peers: usize,
    /// The saved update position.
    pub pts: i32,
}

/// Takes the exclusive lock of `{dir}/{name}.session` ([`SessionStoreError::Busy`] if anyone
/// holds it).
fn lock_session(dir: &Path, name: &SessionName) -> Result<File, SessionStoreError> {
    create_private_dir(dir)?;
    let lock_path = dir.join(format!("{}.lock", name.file_name()));
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| SessionStoreError::Io {
            action: "open lock file",
            path: lock_path.clone(),
            source,
        })?;
    match lock_file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(SessionStoreError::Busy {
                session: name.clone(),
            });
        }
        Err(TryLockError::Error(source)) => {
            return Err(SessionStoreError::Io {
                action: "lock",
                path: lock_path,
                source,
            });
        }
    }
    Ok(lock_file)
}

impl SessionStore {
    pub fn name(&self) -> &SessionName {
        &self.name
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a login ever succeeded on this session.
    pub fn is_logged_in(&self) -> bool {
        self.state().map(|state| state.logged_in).unwrap_or(false)
    }

    /// Whether the home DC has a permanent auth key (a session that never connected has none).
    pub fn has_home_auth_key(&self) -> bool {
        self.state()
            .map(|state| {
                state
                    .data
                    .dc_options
                    .get(&state.data.home_dc)
                    .is_some_and(|dc| dc.auth_key.is_some())
            })
            .unwrap_or(false)
    }

    /// Records a successful login and writes it out.
    pub async fn mark_logged_in(&self) -> Result<(), SessionStoreError> {
        self.change(|state| state.logged_in = true)?;
        self.persist().await
    }

    /// Writes everything not yet written, peer cache included.
    pub async fn flush(&self) -> Result<(), SessionStoreError> {
        self.persist().await
    }

    /// Flushes and releases the lock. Later writes fail with [`SessionStoreError::Closed`], so a
    /// late writer cannot touch a file another owner may already hold.
    pub async fn close(&self) -> Result<(), SessionStoreError> {
        let result = self.persist().await;
        if let Ok(mut state) = self.state.lock() {
            state.closed = true;
        }
        if let Ok(mut lock_file) = self.lock_file.lock() {
            lock_file.take();
        }
        result
    }

    /// The peer `username` resolved to, when that is recent enough to use
    /// ([`UsernameCache::fresh`]); `now` in Unix seconds.
    pub fn cached_username(&self, username: &Username, now: i64) -> Option<Peer> {
        let state = self.state().ok()?;
        state.usernames.fresh(username, now).cloned()
    }

    /// Records a resolve and writes it out at once: the next start must not repeat it.
    pub async fn remember_username(
        &self,
        username: &Username,
        peer: Peer,
        now: i64,
    ) -> Result<(), SessionStoreError> {
        self.change(|state| state.usernames.insert(username, peer, now))?;
        self.persist().await
    }

    /// The usernames this session ever resolved to `chat` (fresh or not).
    pub fn usernames_of(&self, chat: ChatId) -> Vec<Username> {
        self.state()
            .map(|state| state.usernames.usernames_of(chat).cloned().collect())
            .unwrap_or_default()
    }

    /// The channel marks saved with the update position.
    pub fn channel_marks(&self) -> BTreeMap<i64, i32> {
        self.state()
            .map(|state| state.channel_marks.clone())
            .unwrap_or_default()
    }

    /// Saves a committed position: the update state and the channel marks, in one write.
    pub async fn save_position(
        &self,
        position: UpdatesState,
        marks: BTreeMap<i64, i32>,
    ) -> Result<(), SessionStoreError> {
        self.change(|state| {
            state.data.updates_state = position;
            state.channel_marks = marks;
        })?;
        self.persist().await
    }

    /// Points a session that never logged in at Telegram's test servers ([`TEST_DC_OPTIONS`],
    /// home DC 2), where test accounts (`99966XYYYY`) log in without risking a real one. A
    /// logged-in session keeps the servers it logged in on. Returns whether anything changed.
    pub async fn use_test_servers(&self) -> Result<bool, SessionStoreError> {
        let mut changed = false;
        self.change(|state| {
            if state.logged_in {
                return;
            }
            for option in test_dc_options() {
                if state.data.dc_options.get(&option.id) != Some(&option) {
                    state.data.dc_options.insert(option.id, option);
                    changed = true;
                }
            }
            if state.data.home_dc != TEST_HOME_DC {
                state.data.home_dc = TEST_HOME_DC;
                changed = true;
            }
        })?;
        if changed {
            self.persist().await?;
        }
        Ok(changed)
    }

    /// Whether a resolve said `id` is a bot.
    pub fn resolved_as_bot(&self, id: ChatId) -> bool {
        self.state().is_ok_and(|state| state.usernames.is_bot(id))
    }

    fn state(&self) -> Result<MutexGuard<'_, SessionState>, SessionStoreError> {
        self.state.lock().map_err(|_| SessionStoreError::Poisoned)
    }

    fn change(&self, apply: impl FnOnce(&mut SessionState)) -> Result<(), SessionStoreError> {
        let mut state = self.state()?;
        if state.closed {
            return Err(SessionStoreError::Closed {
                session: self.name.clone(),
            });
        }
        apply(&mut state);
        state.generation += 1;
        Ok(())
    }

    async fn persist(&self) -> Result<(), SessionStoreError> {
        let _ordered = self.write_order.lock().await;
        let (generation, bytes) = {
            let mut state = self.state()?;
            if state.generation <= self.written_generation.load(Ordering::Acquire) {
                return Ok(());
            }
            if state.closed {
                return Err(SessionStoreError::Closed {
                    session: self.name.clone(),
                });
            }
            state.unsaved_peer_changes = 0;
            (state.generation, encode_file(&state, self.key.as_ref())?)
        };
        match &self.vault {
            Some(vault) => vault
                .save_session(&self.name, &bytes, now_millis())
                .await
                .map_err(|source| SessionStoreError::Vault {
                    action: "save",
                    session: self.name.clone(),
                    source,
                })?,
            None => {
                let path = self.path.clone();
                tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
                    .await
                    .map_err(|join| SessionStoreError::Io {
                        action: "write",
                        path: self.path.clone(),
                        source: io::Error::other(join.to_string()),
                    })??;
            }
        }
        self.written_generation.store(generation, Ordering::Release);
        Ok(())
    }

    fn insert_peer(state: &mut SessionState, peer: PeerInfo) -> bool {
        match state.data.peer_infos.get_mut(&peer.id()) {
            Some(existing) => {
                let before = existing.clone();
                existing.extend_info(&peer);
                *existing != before
            }
            None => {
                state.data.peer_infos.insert(peer.id(), peer);
                true
            }
        }
    }

    async fn cache_peers_and_maybe_persist(
        &self,
        peers: Vec<PeerInfo>,
    ) -> Result<(), SessionStoreError> {
        let must_write = {
            let mut state = self.state()?;
            if state.closed {
                return Err(SessionStoreError::Closed {
                    session: self.name.clone(),
                });
            }
            let mut changed = 0;
            let mut self_changed = false;
            for peer in peers {
                let is_self = matches!(
                    peer,
                    PeerInfo::User {
                        is_self: Some(true),
                        ..
                    }
                );
                if Self::insert_peer(&mut state, peer) {
                    changed += 1;
                    self_changed |= is_self;
                }
            }
            if changed > 0 {
                state.generation += 1;
                state.unsaved_peer_changes += changed;
            }
            // The self user marks the session as signed in for the update receiver: write
            // it at once.
            self_changed || state.unsaved_peer_changes >= UNSAVED_PEER_CHANGES_BEFORE_WRITE
        };
        if must_write {
            self.persist().await
        } else {
            Ok(())
        }
    }
}

impl Drop for SessionStore {
    fn drop(&mut self) {
        // Best effort: the owner should have called `close`; a dropped store still saves what it
        // has (peer cache, update state) before the lock file closes and releases the lock.
        let Ok(state) = self.state.get_mut() else {
            return;
        };
        if state.closed || state.generation <= *self.written_generation.get_mut() {
            return;
        }
        let encoded = encode_file(state, self.key.as_ref());
        if let Some(vault) = self.vault.clone() {
            // `Drop` cannot await: the save goes on the runtime, if there still is one.
            match (encoded, tokio::runtime::Handle::try_current()) {
                (Ok(bytes), Ok(runtime)) => {
                    let name = self.name.clone();
                    runtime.spawn(async move {
                        if let Err(error) = vault.save_session(&name, &bytes, now_millis()).await {
                            tracing::warn!(target: "telegram", session = %name, %error, "could not save the session on drop");
                        }
                    });
                }
                (Err(error), _) => {
                    tracing::warn!(target: "telegram", session = %self.name, %error, "could not save the session on drop");
                }
                (Ok(_), Err(_)) => {
                    tracing::warn!(target: "telegram", session = %self.name, "could not save the session on drop: no runtime");
                }
            }
            return;
        }
        let result = encoded.and_then(|bytes| write_atomically(&self.path, &bytes));
        if let Err(error) = result {
            tracing::warn!(target: "telegram", session = %self.name, %error, "could not save the session on drop");
        }
    }
}

/// Telegram's test data centres: id, IPv4 and IPv6 address, port 443 (my.telegram.org lists DC 2's
/// as "Test configuration"; DC 1 and 3 as TDLib's test options have them). The server key for
/// them is the test key grammers knows.
pub const TEST_DC_OPTIONS: [(i32, [u8; 4], [u16; 8]); 3] = [
    (
        1,
        [149, 154, 175, 10],
        [0x2001, 0xb28, 0xf23d, 0xf001, 0, 0, 0, 0xe],
    ),
    (
        2,
        [149, 154, 167, 40],
        [0x2001, 0x67c, 0x4e8, 0xf002, 0, 0, 0, 0xe],
    ),
    (
        3,
        [149, 154, 175, 117],
        [0x2001, 0xb28, 0xf23d, 0xf003, 0, 0, 0, 0xe],
    ),
];
/// The test servers' first DC, where a login starts.
const TEST_HOME_DC: i32 = 2;

fn test_dc_options() -> impl Iterator<Item = DcOption> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
    TEST_DC_OPTIONS
        .into_iter()
        .map(|(id, [a, b, c, d], v6)| DcOption {
            id,
            ipv4: SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), 443),
            ipv6: SocketAddrV6::new(
                Ipv6Addr::new(v6[0], v6[1], v6[2], v6[3], v6[4], v6[5], v6[6], v6[7]),
                443,
                0,
                0,
            ),
            auth_key: None,
        })
}

impl Session for SessionStore {
    type Error = SessionStoreError;

    fn home_dc_id(&self) -> Result<i32, SessionStoreError> {
        Ok(self.state()?.data.home_dc)
    }

    fn set_home_dc_id(&self, dc_id: i32) -> BoxFuture<'_, Result<(), SessionStoreError>> {
        Box::pin(async move {
            self.change(|state| state.data.home_dc = dc_id)?;
            self.persist().await
        })
    }

    fn dc_option(&self, dc_id: i32) -> Result<Option<DcOption>, SessionStoreError> {
        Ok(self.state()?.data.dc_options.get(&dc_id).cloned())
    }

    fn set_dc_option(&self, dc_option: &DcOption) -> BoxFuture<'_, Result<(), SessionStoreError>> {
        let dc_option = dc_option.clone();
        Box::pin(async move {
            self.change(|state| {
                state.data.dc_options.insert(dc_option.id, dc_option);
            })?;
            self.persist().await
        })
    }

    fn peer(&self, peer: PeerId) -> BoxFuture<'_, Result<Option<PeerInfo>, SessionStoreError>> {
        Box::pin(async move {
            let state = self.state()?;
            // `PeerId::self_user()` is a sentinel, not a real id: grammers asks for it to learn
            // whether the session is signed in (and whether as a bot), as the SQLite storage does.
            if peer == PeerId::self_user() {
                return Ok(state
                    .data
                    .peer_infos
                    .values()
                    .find(|info| {
                        matches!(
                            info,
                            PeerInfo::User {
                                is_self: Some(true),
                                ..
                            }
                        )
                    })
                    .cloned());
            }
            Ok(state.data.peer_infos.get(&peer).cloned())
        })
    }

    fn cache_peer(&self, peer: PeerInfo) -> BoxFuture<'_, Result<(), SessionStoreError>> {
        Box::pin(self.cache_peers_and_maybe_persist(vec![peer]))
    }

    fn cache_peers(&self, peers: Vec<PeerInfo>) -> BoxFuture<'_, Result<(), SessionStoreError>> {
        Box::pin(self.cache_peers_and_maybe_persist(peers))
    }

    fn updates_state(&self) -> BoxFuture<'_, Result<UpdatesState, SessionStoreError>> {
        Box::pin(async move { Ok(self.state()?.data.updates_state.clone()) })
    }

    fn set_update_state(
        &self,
        update: UpdateState,
    ) -> BoxFuture<'_, Result<(), SessionStoreError>> {
        Box::pin(async move {
            self.change(|state| {
                let updates = &mut state.data.updates_state;
                match update {
                    UpdateState::All(all) => *updates = all,
                    UpdateState::Primary { pts, date, seq } => {
                        updates.pts = pts;
                        updates.date = date;
                        updates.seq = seq;
                    }
                    UpdateState::Secondary { qts } => updates.qts = qts,
                    UpdateState::Channel { id, pts } => {
                        updates.channels.retain(|channel| channel.id != id);
                        updates.channels.push(ChannelState { id, pts });
                    }
                }
            })?;
            self.persist().await
        })
    }
}

// ---- file format ----

#[derive(Serialize, Deserialize)]
struct FileEnvelope {
    format: String,
    version: u32,
    #[serde(flatten)]
    body: FileBody,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "encryption", rename_all = "snake_case")]
enum FileBody {
    None { session: SessionSnapshot },
    Chacha20poly1305 { nonce: String, ciphertext: String },
}

/// What is persisted. grammers' types carry no serde (that feature pulls in serde_with), so
/// these mirror them field by field.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct SessionSnapshot {
    logged_in: bool,
    home_dc: i32,
    dc_options: Vec<StoredDcOption>,
    updates: StoredUpdates,
    peers: Vec<StoredPeer>,
    /// Resolved usernames; absent from files written before it existed.
    #[serde(default)]
    usernames: UsernameCache,
    /// Channel marks (see [`jobbot_core::catch_up`]); absent from older files. A list: the
    /// envelope's `flatten` cannot read maps with integer keys.
    #[serde(default)]
    channel_marks: Vec<StoredMark>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct StoredMark {
    channel: i64,
    message: i32,
}

/// What jobbot keeps in the session file beyond grammers' session data.
#[derive(Default)]
struct JobbotState {
    usernames: UsernameCache,
    channel_marks: BTreeMap<i64, i32>,
}

#[derive(PartialEq, Serialize, Deserialize)]
struct StoredDcOption {
    id: i32,
    ipv4: SocketAddrV4,
    ipv6: SocketAddrV6,
    /// Hex; the account's credential, hence the file mode and the optional encryption (and a
    /// `Debug` that does not show it).
    auth_key: Option<String>,
}

impl fmt::Debug for StoredDcOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredDcOption")
            .field("id", &self.id)
            .field("ipv4", &self.ipv4)
            .field("ipv6", &self.ipv6)
            .field("auth_key", &self.auth_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct StoredUpdates {
    pts: i32,
    qts: i32,
    date: i32,
    seq: i32,
    channels: Vec<StoredChannelState>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct StoredChannelState {
    id: i64,
    pts: i32,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum StoredPeer {
    User {
        id: i64,
        access_hash: Option<i64>,
        bot: Option<bool>,
        is_self: Option<bool>,
    },
    Chat {
        id: i64,
    },
    Channel {
        id: i64,
        access_hash: Option<i64>,
        channel_kind: Option<StoredChannelKind>,
    },
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StoredChannelKind {
    Broadcast,
    Megagroup,
    Gigagroup,
    Community,
}

impl SessionSnapshot {
    fn from_state(state: &SessionState) -> Self {
        let data = &state.data;
        let mut dc_options: Vec<StoredDcOption> = data
            .dc_options
            .values()
            .map(|dc| StoredDcOption {
                id: dc.id,
                ipv4: dc.ipv4,
                ipv6: dc.ipv6,
                auth_key: dc.auth_key.map(hex::encode),
            })
            .collect();
        dc_options.sort_by_key(|dc| dc.id);
        let mut peers: Vec<StoredPeer> = data
            .peer_infos
            .values()
            .map(StoredPeer::from_info)
            .collect();
        peers.sort_by_key(StoredPeer::sort_key);
        let updates = &data.updates_state;
        Self {
            logged_in: state.logged_in,
            home_dc: data.home_dc,
            dc_options,
            updates: StoredUpdates {
                pts: updates.pts,
                qts: updates.qts,
                date: updates.date,
                seq: updates.seq,
                channels: updates
                    .channels
                    .iter()
                    .map(|c| StoredChannelState {
                        id: c.id,
                        pts: c.pts,
                    })
                    .collect(),
            },
            peers,
            usernames: state.usernames.clone(),
            channel_marks: state
                .channel_marks
                .iter()
                .map(|(channel, message)| StoredMark {
                    channel: *channel,
                    message: *message,
                })
                .collect(),
        }
    }

    fn into_session_data(
        self,
        path: &Path,
    ) -> Result<(SessionData, bool, JobbotState), SessionStoreError> {
        let mut data = SessionData {
            home_dc: self.home_dc,
            ..SessionData::default()
        };
        for dc in self.dc_options {
            let auth_key = match dc.auth_key {
                None => None,
                Some(text) => {
                    let mut key = [0u8; 256];
                    hex::decode_to_slice(&text, &mut key).map_err(|_| {
                        SessionStoreError::Corrupt {
                            path: path.to_owned(),
                            reason: format!(
                                "the auth key of DC {} is not 256 hex-encoded bytes",
                                dc.id
                            ),
                        }
                    })?;
                    Some(key)
                }
            };
            data.dc_options.insert(
                dc.id,
                DcOption {
                    id: dc.id,
                    ipv4: dc.ipv4,
                    ipv6: dc.ipv6,
                    auth_key,
                },
            );
        }
        data.peer_infos = self
            .peers
            .into_iter()
            .map(StoredPeer::into_info)
            .map(|info| (info.id(), info))
            .collect();
        data.updates_state = UpdatesState {
            pts: self.updates.pts,
            qts: self.updates.qts,
            date: self.updates.date,
            seq: self.updates.seq,
            channels: self
                .updates
                .channels
                .into_iter()
                .map(|c| ChannelState {
                    id: c.id,
                    pts: c.pts,
                })
                .collect(),
        };
        Ok((
            data,
            self.logged_in,
            JobbotState {
                usernames: self.usernames,
                channel_marks: self
                    .channel_marks
                    .into_iter()
                    .map(|mark| (mark.channel, mark.message))
                    .collect(),
            },
        ))
    }
}

impl StoredPeer {
    fn from_info(info: &PeerInfo) -> Self {
        match *info {
            PeerInfo::User {
                id,
                auth,
                bot,
                is_self,
            } => Self::User {
                id,
                access_hash: auth.map(PeerAuth::hash),
                bot,
                is_self,
            },
            PeerInfo::Chat { id } => Self::Chat { id },
            PeerInfo::Channel { id, auth, kind } => Self::Channel {
                id,
                access_hash: auth.map(PeerAuth::hash),
                channel_kind: kind.map(|kind| match kind {
                    ChannelKind::Broadcast => StoredChannelKind::Broadcast,
                    ChannelKind::Megagroup => StoredChannelKind::Megagroup,
                    ChannelKind::Gigagroup => StoredChannelKind::Gigagroup,
                    ChannelKind::Community => StoredChannelKind::Community,
                }),
            },
        }
    }

    fn into_info(self) -> PeerInfo {
        match self {
            Self::User {
                id,
                access_hash,
                bot,
                is_self,
            } => PeerInfo::User {
                id,
                auth: access_hash.map(PeerAuth::from_hash),
                bot,
                is_self,
            },
            Self::Chat { id } => PeerInfo::Chat { id },
            Self::Channel {
                id,
                access_hash,
                channel_kind,
            } => PeerInfo::Channel {
                id,
                auth: access_hash.map(PeerAuth::from_hash),
                kind: channel_kind.map(|kind| match kind {
                    StoredChannelKind::Broadcast => ChannelKind::Broadcast,
                    StoredChannelKind::Megagroup => ChannelKind::Megagroup,
                    StoredChannelKind::Gigagroup => ChannelKind::Gigagroup,
                    StoredChannelKind::Community => ChannelKind::Community,
                }),
            },
        }
    }

    /// A stable order so that the same state always produces the same file.
    fn sort_key(&self) -> (u8, i64) {
        match self {
            Self::User { id, .. } => (0, *id),
            Self::Chat { id } => (1, *id),
            Self::Channel { id, .. } => (2, *id),
        }
    }
}

fn encode_file(
    state: &SessionState,
    key: Option<&SessionKey>,
) -> Result<Vec<u8>, SessionStoreError> {
    let snapshot = SessionSnapshot::from_state(state);
    let body = match key {
        None => FileBody::None { session: snapshot },
        Some(key) => {
            let plaintext =
                serde_json::to_vec(&snapshot).expect("a session snapshot always serialises");
            let mut nonce = [0u8; 12];
            rand::rng().fill_bytes(&mut nonce);
            let cipher = ChaCha20Poly1305::new(Key::from_slice(&key.0));
            let ciphertext = cipher
                .encrypt(
                    Nonce::from_slice(&nonce),
                    Payload {
                        msg: &plaintext,
                        aad: ASSOCIATED_DATA,
                    },
                )
                .expect("ChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
            FileBody::Chacha20poly1305 {
                nonce: hex::encode(nonce),
                ciphertext: hex::encode(ciphertext),
            }
        }
    };
    let envelope = FileEnvelope {
        format: FORMAT.to_owned(),
        version: FORMAT_VERSION,
        body,
    };
    Ok(serde_json::to_vec_pretty(&envelope).expect("a session file always serialises"))
}

fn decode_file(
    path: &Path,
    bytes: &[u8],
    key: Option<&SessionKey>,
) -> Result<SessionSnapshot, SessionStoreError> {
    let corrupt = |reason: String| SessionStoreError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let envelope: FileEnvelope =
        serde_json::from_slice(bytes).map_err(|error| corrupt(error.to_string()))?;
    if envelope.format != FORMAT || envelope.version != FORMAT_VERSION {
        return Err(corrupt(format!(
            "format {} version {} is not {FORMAT} {FORMAT_VERSION}",
            envelope.format, envelope.version
        )));
    }
    match envelope.body {
        // A plain file read with a key set is accepted and sealed on the next write: that is how
        // encryption is switched on for existing sessions.
        FileBody::None { session } => Ok(session),
        FileBody::Chacha20poly1305 { nonce, ciphertext } => {
            let Some(key) = key else {
                return Err(SessionStoreError::KeyRequired {
                    path: path.to_owned(),
                });
            };
            let mut nonce_bytes = [0u8; 12];
            hex::decode_to_slice(&nonce, &mut nonce_bytes)
                .map_err(|_| corrupt("the nonce is not 12 hex bytes".into()))?;
            let ciphertext = hex::decode(&ciphertext)
                .map_err(|_| corrupt("the ciphertext is not hex".into()))?;
            let cipher = ChaCha20Poly1305::new(Key::from_slice(&key.0));
            let plaintext = cipher
                .decrypt(
                    Nonce::from_slice(&nonce_bytes),
                    Payload {
                        msg: &ciphertext,
                        aad: ASSOCIATED_DATA,
                    },
                )
                .map_err(|_| SessionStoreError::Decrypt {
                    path: path.to_owned(),
                })?;
            serde_json::from_slice(&plaintext).map_err(|error| corrupt(error.to_string()))
        }
    }
}

/// How messages name a session kept in a vault (errors hold a path).
fn vault_description(name: &SessionName) -> PathBuf {
    PathBuf::from(format!("database:{name}"))
}

fn now_millis() -> UnixMillis {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    UnixMillis(i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX))
}

/// Session bytes (a file's or a vault's) sealed again with `key`: a plain session is sealed, a
/// sealed one is opened with `key` and sealed with a fresh nonce. For moving sessions between
/// files and a database (`jobbot session push|pull`); `name` only names the session in errors.
pub fn reseal(name: &str, bytes: &[u8], key: &SessionKey) -> Result<Vec<u8>, SessionStoreError> {
    let path = PathBuf::from(name);
    let snapshot = decode_file(&path, bytes, Some(key))?;
    // What jobbot keeps beside grammers' data (the username cache, channel marks) moves too.
    let (data, logged_in, extra) = snapshot.into_session_data(&path)?;
    let state = SessionState {
        data,
        logged_in,
        generation: 0,
        unsaved_peer_changes: 0,
        closed: false,
        usernames: extra.usernames,
        channel_marks: extra.channel_marks,
    };
    encode_file(&state, Some(key))
}

/// Writes session bytes to `{dir}/{name}.session` the way the store does (mode 0600, atomic),
/// under the session's lock: [`SessionStoreError::Busy`] while anyone uses it.
pub fn write_session_file(
    dir: &Path,
    name: &SessionName,
    bytes: &[u8],
) -> Result<(), SessionStoreError> {
    let _lock = lock_session(dir, name)?;
    write_atomically(&dir.join(name.file_name()), bytes)
}

/// Reads `{dir}/{name}.session` under the session's lock ([`SessionStoreError::Busy`] while
/// anyone uses it); `None` when there is no such file.
pub fn read_session_file(
    dir: &Path,
    name: &SessionName,
) -> Result<Option<Vec<u8>>, SessionStoreError> {
    let _lock = lock_session(dir, name)?;
    let path = dir.join(name.file_name());
    match fs::read(&path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SessionStoreError::Io {
            action: "read",
            path,
            source,
        }),
    }
}

fn create_private_dir(dir: &Path) -> Result<(), SessionStoreError> {
    let io_error = |source| SessionStoreError::Io {
        action: "create directory",
        path: dir.to_owned(),
        source,
    };
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(io_error)
}

/// Temp file (mode 0600), fsync, rename over the old file, fsync the directory: a crash leaves
/// either the old file or the new one, never a torn one.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), SessionStoreError> {
    let io_error = |action, source| SessionStoreError::Io {
        action,
        path: path.to_owned(),
        source,
    };
    let temp_path = path.with_extension("session.tmp");
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&temp_path)
        .map_err(|e| io_error("create temporary file for", e))?;
    #[cfg(unix)]
    {
        // `mode` applies only when the file is created; a stale temp file keeps its old mode.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(|e| io_error("set permissions of", e))?;
    }
    file.write_all(bytes).map_err(|e| io_error("write", e))?;
    file.sync_all().map_err(|e| io_error("fsync", e))?;
    drop(file);
    fs::rename(&temp_path, path).map_err(|e| io_error("replace", e))?;
    if let Some(parent) = path.parent()
        && let Ok(directory) = File::open(parent)
    {
        // Makes the rename itself durable; failure here leaves a correct file, so it is not fatal.
        let _ = directory.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> SessionName {
        SessionName::parse(text).unwrap()
    }

    fn sample_dc(id: i32, key_byte: u8) -> DcOption {
        DcOption {
            id,
            ipv4: "127.0.0.1:1".parse().unwrap(),
            ipv6: "[::1]:1".parse().unwrap(),
            auth_key: Some([key_byte; 256]),
        }
    }

    /// A session that never logged in is pointed at Telegram's test servers; one that logged
    /// in keeps the servers it logged in on.
    #[tokio::test]
    async fn a_new_session_can_use_the_test_servers_and_a_logged_in_one_keeps_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::open(dir.path(), &name("agent_test"), None).unwrap();
        let production = store.dc_option(2).unwrap().unwrap();
        assert!(store.use_test_servers().await.unwrap());
        assert!(!store.use_test_servers().await.unwrap(), "once");
        assert_eq!(store.home_dc_id().unwrap(), 2);
        let test = store.dc_option(2).unwrap().unwrap();
        assert_ne!(test.ipv4, production.ipv4);
        assert_eq!(test.ipv4.to_string(), "149.154.167.40:443");
        drop(store);
        // Kept in the file.
        let reopened = SessionStore::open(dir.path(), &name("agent_test"), None).unwrap();
        assert_eq!(
            reopened.dc_option(2).unwrap().unwrap().ipv4.to_string(),
            "149.154.167.40:443"
        );
        drop(reopened);

        let other = SessionStore::open(dir.path(), &name("agent_real"), None).unwrap();
        other.mark_logged_in().await.unwrap();
        assert!(!other.use_test_servers().await.unwrap());
        assert_eq!(other.dc_option(2).unwrap().unwrap().ipv4, production.ipv4);
    }

    #[test]
    fn debug_of_a_stored_dc_option_hides_its_auth_key() {
        let stored = StoredDcOption {
            id: 4,
            ipv4: "127.0.0.1:1".parse().unwrap(),
            ipv6: "[::1]:1".parse().unwrap(),
            auth_key: Some(hex::encode([0xab; 256])),
        };
        let shown = format!("{stored:?}");
        assert!(!shown.contains("abab"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        let options = jobbot_core::telegram::ConnectOptions {
            proxy: Some("socks5://user:hunter2@127.0.0.1:1080".into()),
        };
        let shown = format!("{options:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("user:***@"),
            "{shown}"
        );
    }

    async fn fill(store: &SessionStore) {
        store.set_home_dc_id(4).await.unwrap();
        store.set_dc_option(&sample_dc(4, 7)).await.unwrap();
        store
            .cache_peers(vec![
                PeerInfo::User {
                    id: 42,
                    auth: Some(PeerAuth::from_hash(-5)),
                    bot: Some(false),
                    is_self: Some(true),
                },
                PeerInfo::Channel {
                    id: 777,
                    auth: Some(PeerAuth::from_hash(99)),
                    kind: Some(ChannelKind::Megagroup),
                },
                PeerInfo::Chat { id: 12 },
            ])
            .await
            .unwrap();
        store
            .set_update_state(UpdateState::All(UpdatesState {
                pts: 10,
                qts: 2,
                date: 1_700_000_000,
                seq: 3,
                channels: vec![ChannelState { id: 777, pts: 55 }],
            }))
            .await
            .unwrap();
        store
            .set_update_state(UpdateState::Channel { id: 777, pts: 56 })
            .await
            .unwrap();
        store.mark_logged_in().await.unwrap();
    }

    async fn assert_filled(store: &SessionStore) {
        assert!(store.is_logged_in());
        assert!(store.has_home_auth_key());
        assert_eq!(store.home_dc_id().unwrap(), 4);
        assert_eq!(store.dc_option(4).unwrap(), Some(sample_dc(4, 7)));
        // The built-in DC list survives alongside the custom option.
        assert!(store.dc_option(1).unwrap().is_some());
        let me = store.peer(PeerId::self_user()).await.unwrap().unwrap();
        assert_eq!(me.id(), PeerId::user(42).unwrap());
        let channel = store
            .peer_ref(PeerId::channel(777).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(channel.auth.hash(), 99);
        assert_eq!(
            store.peer(PeerId::chat(12).unwrap()).await.unwrap(),
            Some(PeerInfo::Chat { id: 12 })
        );
        let updates = store.updates_state().await.unwrap();
        assert_eq!(
            (updates.pts, updates.qts, updates.date, updates.seq),
            (10, 2, 1_700_000_000, 3)
        );
        assert_eq!(updates.channels, vec![ChannelState { id: 777, pts: 56 }]);
    }

    #[tokio::test]
    async fn a_session_in_a_vault_round_trips_sealed_and_moves_to_a_file_and_back() {
        let vault: Arc<jobbot_store::MemoryStore> = Arc::new(jobbot_store::MemoryStore::new());
        let key = SessionKey::from_bytes([9; 32]);
        let session = name("agent_1");
        let store = SessionStore::open_in_vault(vault.clone(), &session, key.clone())
            .await
            .unwrap();
        fill(&store).await;
        store.close().await.unwrap();

        let sealed = vault.load_session(&session).await.unwrap().unwrap();
        let text = String::from_utf8_lossy(&sealed);
        assert!(text.contains("chacha20poly1305"), "{text}");
        assert!(
            !text.contains(&hex::encode([7u8; 16])),
            "the auth key is in the clear"
        );
        let reopened = SessionStore::open_in_vault(vault.clone(), &session, key.clone())
            .await
            .unwrap();
        assert_filled(&reopened).await;
        drop(reopened);

        // Another key cannot open it.
        let wrong =
            SessionStore::open_in_vault(vault.clone(), &session, SessionKey::from_bytes([8; 32]))
                .await;
        assert!(
            matches!(wrong, Err(SessionStoreError::Decrypt { .. })),
            "{wrong:?}"
        );

        // Pulled into a file and pushed back (sealed again with a fresh nonce), it is the same.
        let dir = tempfile::tempdir().unwrap();
        write_session_file(
            dir.path(),
            &session,
            &reseal("agent_1", &sealed, &key).unwrap(),
        )
        .unwrap();
        let from_file = SessionStore::open(dir.path(), &session, Some(key.clone())).unwrap();
        assert_filled(&from_file).await;
        let busy = read_session_file(dir.path(), &session);
        assert!(
            matches!(busy, Err(SessionStoreError::Busy { .. })),
            "{busy:?}"
        );
        from_file.close().await.unwrap();
        let file_bytes = read_session_file(dir.path(), &session).unwrap().unwrap();
        let pushed = reseal("agent_1", &file_bytes, &key).unwrap();
        assert_ne!(pushed, sealed, "a fresh nonce each time");
        vault
            .save_session(&session, &pushed, UnixMillis(1))
            .await
            .unwrap();
        let reopened = SessionStore::open_in_vault(vault, &session, key)
            .await
            .unwrap();
        assert_filled(&reopened).await;
    }

    #[tokio::test]
    async fn session_round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::open(dir.path(), &name("agent_1"), None).unwrap();
        assert!(!store.is_logged_in());
        assert!(!store.has_home_auth_key());
        fill(&store).await;
        store.close().await.unwrap();
        drop(store);

        let reopened = SessionStore::open(dir.path(), &name("agent_1"), None).unwrap();
        assert_filled(&reopened).await;
    }

    /// Resolved usernames survive a restart, so it repeats no `contacts.resolveUsername`; past
    /// their age they are no longer used, but still name the chat for the fallbacks.
    #[tokio::test]
    async fn resolved_usernames_and_channel_marks_are_kept_in_the_file() {
        use jobbot_core::peer_cache::USERNAME_MAX_AGE_SECS;
        use jobbot_core::telegram::{PeerKind, PeerRef};
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::open(dir.path(), &name("agent_1"), None).unwrap();
        let chat = ChatId::channel(777).unwrap();
        let username = Username::parse("jobs_channel").unwrap();
        let peer = Peer {
            peer: PeerRef {
                id: chat,
                access_hash: 99,
            },
            kind: PeerKind::Channel,
            username: Some(username.clone()),
            name: "Jobs".into(),
            last_name: None,
        };
        store
            .remember_username(&username, peer.clone(), 1_000)
            .await
            .unwrap();
        let position = UpdatesState {
            pts: 5,
            channels: vec![ChannelState { id: 777, pts: 9 }],
            ..UpdatesState::default()
        };
        store
            .save_position(position.clone(), BTreeMap::from([(777, 42)]))
            .await
            .unwrap();
        store.close().await.unwrap();
        drop(store);

        let reopened = SessionStore::open(dir.path(), &name("agent_1"), None).unwrap();
        assert_eq!(reopened.cached_username(&username, 1_500), Some(peer));
        assert_eq!(
            reopened.cached_username(&username, 1_001 + USERNAME_MAX_AGE_SECS),
            None,
            "too old to use"
        );
        assert_eq!(reopened.usernames_of(chat), vec![username]);
        // The channel marks are saved with the position, in the same write.
        assert_eq!(reopened.updates_state().await.unwrap(), position);
        assert_eq!(reopened.channel_marks(), BTreeMap::from([(777, 42)]));
        assert!(!reopened.resolved_as_bot(chat));
    }

    #[tokio::test]
    async fn dropped_store_saves_batched_peer_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::open(dir.path(), &name("agent_1"), None).unwrap();
        store.cache_peer(PeerInfo::Chat { id: 5 }).await.unwrap();
        drop(store);
        let reopened = SessionStore::open(dir.path(), &name("agent_1"), None).unwrap();
        assert_eq!(
            reopened.peer(PeerId::chat(5).unwrap()).await.unwrap(),
            Some(PeerInfo::Chat { id: 5 })
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn session_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::open(dir.path(), &name("agent_1"), None).unwrap();
        fill(&store).await;
        let mode = fs::metadata(store.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = fs::read_to_string(store.path()).unwrap();
        assert!(text.contains("\"encryption\": \"none\""));
    }

    #[tokio::test]
    async fn encrypted_session_round_trips_and_hides_the_auth_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = SessionKey::from_bytes([3; 32]);
        let store = SessionStore::open(dir.path(), &name("agent_1"), Some(key.clone())).unwrap();
        fill(&store).await;
        store.close().await.unwrap();
        let path = store.path().to_owned();
        drop(store);

        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("chacha20poly1305"));
        assert!(
            !text.contains(&hex::encode([7u8; 16])),
            "the auth key must not appear in clear"
        );

        let reopened = SessionStore::open(dir.path(), &name("agent_1"), Some(key)).unwrap();
        assert_filled(&reopened).await;
    }

    #[tokio::test]
    async fn wrong_key_missing_key_and_tampering_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::open(
            dir.path(),
            &name("agent_1"),
            Some(SessionKey::from_bytes([3; 32])),
        )
        .unwrap();
        fill(&store).await;
        store.close().await.unwrap();
        let path = store.path().to_owned();
        drop(store);

        let wrong = SessionStore::open(
            dir.path(),
            &name("agent_1"),
            Some(SessionKey::from_bytes([4; 32])),
        );
        assert!(
            matches!(wrong, Err(SessionStoreError::Decrypt { .. })),
            "{wrong:?}"
        );
        let missing = SessionStore::open(dir.path(), &name("agent_1"), None);
        assert!(
            matches!(missing, Err(SessionStoreError::KeyRequired { .. })),
            "{missing:?}"
        );

        // Flip one hex digit of the ciphertext.
        let mut envelope: serde_json::Value =
            serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        let ciphertext = envelope["ciphertext"].as_str().unwrap().to_owned();
        let flipped = if ciphertext.starts_with('0') {
            "1"
        } else {
            "0"
        };
        envelope["ciphertext"] =
            serde_json::Value::String(format!("{flipped}{}", &ciphertext[1..]));
        fs::write(&path, serde_json::to_vec(&envelope).unwrap()).unwrap();
        let tampered = SessionStore::open(
            dir.path(),
            &name("agent_1"),
            Some(SessionKey::from_bytes([3; 32])),
        );
        assert!(
            matches!(tampered, Err(SessionStoreError::Decrypt { .. })),
            "{tampered:?}"
        );
    }

    #[tokio::test]
    async fn plain_session_is_sealed_once_a_key_is_set() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::open(dir.path(), &name("agent_1"), None).unwrap();
        fill(&store).await;
        store.close().await.unwrap();
        drop(store);

        let key = SessionKey::from_bytes([9; 32]);
        let store = SessionStore::open(dir.path(), &name("agent_1"), Some(key.clone())).unwrap();
        store.set_home_dc_id(4).await.unwrap(); // any change rewrites the file
        store.close().await.unwrap();
        drop(store);
        assert!(matches!(
            SessionStore::open(dir.path(), &name("agent_1"), None),
            Err(SessionStoreError::KeyRequired { .. })
        ));
        assert_filled(&SessionStore::open(dir.path(), &name("agent_1"), Some(key)).unwrap()).await;
    }

    #[test]
    fn garbage_file_is_reported_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("agent_1.session"), b"SQLite format 3\0").unwrap();
        let result = SessionStore::open(dir.path(), &name("agent_1"), None);
        assert!(
            matches!(result, Err(SessionStoreError::Corrupt { .. })),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn second_owner_is_refused_until_the_first_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let first = SessionStore::open(dir.path(), &name("agent_1"), None).unwrap();
        let second = SessionStore::open(dir.path(), &name("agent_1"), None);
        assert!(
            matches!(second, Err(SessionStoreError::Busy { .. })),
            "{second:?}"
        );
        // Another session in the same directory is independent.
        SessionStore::open(dir.path(), &name("agent_2"), None).unwrap();

        drop(first);
        let third = SessionStore::open(dir.path(), &name("agent_1"), None).unwrap();
        third.close().await.unwrap();
        // `close` releases the lock even while the store object is still alive.
        SessionStore::open(dir.path(), &name("agent_1"), None).unwrap();
        assert!(matches!(
            third.set_home_dc_id(3).await,
            Err(SessionStoreError::Closed { .. })
        ));
    }

    #[test]
    fn session_keys_parse_from_hex_only() {
        assert_eq!(
            SessionKey::from_hex(&"ab".repeat(32)).unwrap(),
            SessionKey::from_bytes([0xab; 32])
        );
        for bad in ["", "abc", &"zz".repeat(32), &"ab".repeat(33)] {
            assert_eq!(SessionKey::from_hex(bad), Err(InvalidSessionKey), "{bad}");
        }
        assert_eq!(
            format!("{:?}", SessionKey::from_bytes([1; 32])),
            "SessionKey(<redacted>)"
        );
    }
}
