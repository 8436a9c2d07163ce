//! Opening sessions of the simulated world: the port's [`AccountConnector`].
//!
//! The connector models jobbot's exclusive session lock: a session has at most one holder (a
//! connection, an authorization check or a login), and a second one is refused with
//! `SessionBusy` before anything reaches Telegram. [`SimWorld::duplicate_connect`] bypasses the
//! lock on purpose, like a session file copied to another host.

use std::sync::Arc;

use async_trait::async_trait;
use jobbot_core::ids::{ChatId, SessionName};
use jobbot_core::telegram::{
    AccountConnector, AuthorizationStatus, ConnectError, ConnectOptions, DeadReason, LoginBackend,
    TelegramAccount,
};

use crate::account::SimAccount;
use crate::login::SimLoginBackend;
use crate::world::{ConnectionId, SessionRecord, SimWorld, WorldState};

/// The simulator's connector. Cheap to clone.
#[derive(Clone)]
pub struct SimConnector {
    world: SimWorld,
    /// Who connects through this connector, written into the connection history.
    client: Option<Arc<str>>,
}

impl SimConnector {
    pub fn new(world: SimWorld) -> Self {
        Self {
            world,
            client: None,
        }
    }

    /// The same connector, naming `client` in the history of every connection it opens (the
    /// simulator's server names the process and address behind each remote connection).
    pub fn for_client(&self, client: &str) -> Self {
        Self {
            world: self.world.clone(),
            client: Some(client.into()),
        }
    }

    pub fn world(&self) -> &SimWorld {
        &self.world
    }
}

/// Where a session stands, before connecting.
pub(crate) enum SessionStatus {
    Authorized(ChatId),
    NotLoggedIn,
    Dead(DeadReason),
}

/// Releases a session lock when dropped, unless handed on (so a cancelled `connect` cannot leave
/// a session locked forever).
pub(crate) struct SessionLock {
    world: SimWorld,
    session: SessionName,
    holder: Option<ConnectionId>,
}

impl SessionLock {
    fn take(world: &SimWorld, session: &SessionName) -> Result<Self, ConnectError> {
        let holder = world.with(|state| {
            let id = state.next_handle();
            let record = state
                .sessions
                .entry(session.clone())
                .or_insert_with(SessionRecord::empty);
            if record.lock.is_some() {
                return Err(ConnectError::SessionBusy {
                    session: session.clone(),
                });
            }
            record.lock = Some(id);
            Ok(id)
        })?;
        Ok(Self {
            world: world.clone(),
            session: session.clone(),
            holder: Some(holder),
        })
    }

    pub(crate) fn id(&self) -> ConnectionId {
        self.holder.expect("held until dropped or handed on")
    }

    /// The lock now belongs to a connection with the same id, which releases it on close.
    fn hand_on(mut self) -> ConnectionId {
        self.holder.take().expect("held")
    }
}

impl Drop for SessionLock {
    fn drop(&mut self) {
        if let Some(holder) = self.holder {
            self.world.with(|state| {
                if let Some(record) = state.sessions.get_mut(&self.session)
                    && record.lock == Some(holder)
                {
                    record.lock = None;
                }
            });
        }
    }
}

impl SessionRecord {
    pub(crate) fn empty() -> Self {
        Self {
            user: None,
            dead: None,
            lock: None,
            live_connections: Default::default(),
            saved_position: None,
            known_peers: Some(Default::default()),
            usernames: Default::default(),
            channel_marks: Default::default(),
        }
    }
}

impl WorldState {
    pub(crate) fn session_status(&self, session: &SessionName) -> SessionStatus {
        let Some(record) = self.sessions.get(session) else {
            return SessionStatus::NotLoggedIn;
        };
        let Some(user) = record.user else {
            return SessionStatus::NotLoggedIn;
        };
        if let Some(reason) = record.dead.or(self.user(user).dead) {
            return SessionStatus::Dead(reason);
        }
        SessionStatus::Authorized(user)
    }
}

impl SimWorld {
    /// Test hook: opens a second connection of `session` without the session lock, as a copied
    /// session file on another host would. The next call on either connection burns the key
    /// (`AUTH_KEY_DUPLICATED`). Panics if the session is not logged in.
    pub fn duplicate_connect(&self, session: &SessionName) -> Arc<dyn TelegramAccount> {
        let (id, events) = self.with(|state| {
            let user = state
                .sessions
                .get(session)
                .and_then(|record| record.user)
                .unwrap_or_else(|| panic!("session {session} is not logged in"));
            let id = state.next_handle();
            let events = state.open_connection(id, session, user);
            (id, events)
        });
        self.schedule_deferred(id);
        Arc::new(SimAccount::new(self.clone(), id, events))
    }
}

#[async_trait]
impl AccountConnector for SimConnector {
    async fn connect(
        &self,
        session: &SessionName,
        _options: &ConnectOptions,
    ) -> Result<Arc<dyn TelegramAccount>, ConnectError> {
        let lock = SessionLock::take(&self.world, session)?;
        tokio::time::sleep(self.world.call_latency()).await;
        let opened = self
            .world
            .with(|state| match state.session_status(session) {
                SessionStatus::NotLoggedIn => Err(ConnectError::NotLoggedIn {
                    session: session.clone(),
                }),
                SessionStatus::Dead(reason) => Err(ConnectError::Dead {
                    session: session.clone(),
                    reason,
                }),
                SessionStatus::Authorized(user) => {
                    let events = state.open_connection(lock.id(), session, user);
                    if let Some(client) = &self.client {
                        state.history.set_client(lock.id(), client);
                    }
                    Ok(events)
                }
            })?;
        let id = lock.hand_on();
        self.world.schedule_deferred(id);
        Ok(Arc::new(SimAccount::new(self.world.clone(), id, opened)))
    }

    async fn check_authorization(
        &self,
        session: &SessionName,
        _options: &ConnectOptions,
    ) -> Result<AuthorizationStatus, ConnectError> {
        let _lock = SessionLock::take(&self.world, session)?;
        tokio::time::sleep(self.world.call_latency()).await;
        Ok(self
            .world
            .with(|state| match state.session_status(session) {
                SessionStatus::NotLoggedIn => AuthorizationStatus::NotLoggedIn,
                SessionStatus::Dead(reason) => AuthorizationStatus::Dead(reason),
                SessionStatus::Authorized(user) => {
                    AuthorizationStatus::Authorized(state.me_of(user))
                }
            }))
    }

    async fn begin_login(
        &self,
        session: &SessionName,
        _options: &ConnectOptions,
    ) -> Result<Box<dyn LoginBackend>, ConnectError> {
        let lock = SessionLock::take(&self.world, session)?;
        tokio::time::sleep(self.world.call_latency()).await;
        Ok(Box::new(SimLoginBackend::new(
            self.world.clone(),
            session.clone(),
            lock,
        )))
    }
}
