//! One owner task per Telegram session: the only code that holds the account.
//!
//! The owner connects (with back-off), keeps the account's event stream drained into the engine's
//! broadcast, checks health periodically with `get_me`, executes the sends the dispatcher hands
//! it, and reports every change of its link state to the dispatcher. One task per session is the
//! fix for the original system's "database is locked" and `AUTH_KEY_DUPLICATED` troubles: nothing
//! else in the process ever opens the session.
//!
//! Owners of one session never overlap: an owner started after another was stopped (a pause and
//! a resume, an agent removed and added again) first waits until its predecessors have
//! disconnected and released the session. Each owner has a generation, and the dispatcher applies
//! only the reports of the session's current owner, so a late report of a stopped owner can never
//! overwrite the state of its successor.

use std::sync::Arc;
use std::time::Duration;

use jobbot_core::ids::SessionName;
use jobbot_core::store::Recipient;
use jobbot_core::telegram::{
    AccountConnector, AccountEvent, Checkpoint, ConnectError, ConnectOptions, DeadReason, Me,
    MessageContent, PeerKind, PeerRef, RandomId, SentMessage, TelegramAccount, TelegramError,
};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::events::EngineEvent;
use crate::router::{CheckpointAck, CommitGate, Routed};

/// How an owner's link to Telegram stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum LinkState {
    Connecting,
    Ready {
        me: Me,
    },
    /// Not connected now; the owner retries by itself.
    Disconnected {
        reason: String,
    },
    /// The session has no login yet (`jobbot login` it); retried periodically.
    NotLoggedIn,
    /// Telegram refuses the session (banned, deactivated, logged out elsewhere, key revoked): a
    /// new login is needed. The owner stops trying: each attempt would only be refused again
    /// (and log an error); a login through the web or a resume starts a new owner.
    Dead {
        reason: DeadReason,
    },
    /// Paused by an operator: disconnected, its session released, until resumed.
    Paused,
    /// Several nodes share the pool and this one does not hold the session's lease: another
    /// node uses it (or will, once the lease is free).
    ElsewhereInCluster,
    Stopped,
}

impl LinkState {
    pub fn is_ready(&self) -> bool {
        matches!(self, Self::Ready { .. })
    }
}

/// Timings of an owner. Defaults suit production; tests shorten nothing (they run on paused time).
#[derive(Debug, Clone, Copy)]
pub struct OwnerSettings {
    /// How often a connected account is checked with `get_me`.
    pub health_interval: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// How long to wait before trying a session that is not logged in (or whose storage failed)
    /// again. A dead session is not tried again at all (see [`LinkState::Dead`]).
    pub idle_retry: Duration,
    /// How often the account's update position is checkpointed (and saved once every event
    /// before it was handled): at most about this much of the stream is delivered again after a
    /// crash.
    pub checkpoint_interval: Duration,
}

impl Default for OwnerSettings {
    fn default() -> Self {
        Self {
            health_interval: Duration::from_secs(300),
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(120),
            idle_retry: Duration::from_secs(600),
            checkpoint_interval: Duration::from_secs(10),
        }
    }
}

/// A send the dispatcher asks an owner to make.
#[derive(Debug, Clone)]
pub struct SendJob {
    pub recipient: Recipient,
    pub content: MessageContent,
    pub random_id: RandomId,
    /// Show "typing…" for this long before sending (human-like replies).
    pub typing: Option<Duration>,
}

/// Why a send came back without a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SendFailure {
    /// The account never made the call (not connected, stopping): nothing reached Telegram.
    NotAttempted,
    /// The call was made and failed (or its answer was lost: then it may have been delivered).
    Telegram(TelegramError),
    /// The username the send had to resolve first could not be resolved (a flood wait on
    /// `contacts.resolveUsername` among others): the message was not sent, and the error is the
    /// resolve's, not the send's, for the scheduler.
    Resolve(TelegramError),
}

impl SendFailure {
    /// The Telegram error, whichever step gave it.
    pub(crate) fn telegram(&self) -> Option<&TelegramError> {
        match self {
            Self::NotAttempted => None,
            Self::Telegram(error) | Self::Resolve(error) => Some(error),
        }
    }
}

pub(crate) enum OwnerCommand {
    Send {
        job: SendJob,
        reply: oneshot::Sender<Result<SentMessage, SendFailure>>,
    },
    /// Checkpoint the update position now and answer once that checkpoint is saved (`false`
    /// when the account is not connected to checkpoint anything).
    Flush { reply: oneshot::Sender<bool> },
}

/// The engine's handle on an owner. Dropping it stops the owner, which disconnects and releases
/// the session.
pub(crate) struct OwnerHandle {
    pub commands: mpsc::Sender<OwnerCommand>,
    pub task: JoinHandle<()>,
    pub generation: u64,
}

/// A link-state change of one owner, for the dispatcher.
#[derive(Debug)]
pub(crate) struct LinkReport {
    pub session: SessionName,
    /// The reporting owner's generation: reports of owners that were since replaced are stale.
    pub generation: u64,
    pub state: LinkState,
}

pub(crate) struct OwnerContext {
    pub connector: Arc<dyn AccountConnector>,
    pub options: ConnectOptions,
    pub events: broadcast::Sender<EngineEvent>,
    /// Link-state changes for the dispatcher (which must see every one, so not the lossy
    /// broadcast). The dispatcher is the one that publishes them: it drops stale ones first.
    pub states: mpsc::UnboundedSender<LinkReport>,
    /// Everything that reaches an account, losslessly, for the one consumer that routes it
    /// (monitoring, CRM). The broadcast above may drop events for slow web clients; this may not.
    pub telegram: mpsc::UnboundedSender<Routed>,
    /// Closed when a consumer lost an event: checkpoints are then never committed.
    pub gate: Arc<CommitGate>,
    /// Connected accounts, for the rate-limited calls that are not sends (resolving a source,
    /// joining a chat, creating a topic), which callers make with a permit of the account's
    /// scheduler (`Engine::call_permit`). The owner inserts its account when ready and removes it
    /// on leave.
    pub accounts: ConnectedAccounts,
    pub settings: OwnerSettings,
    /// `true` once the engine stops sending: a send not begun yet is handed back
    /// ([`SendFailure::NotAttempted`]) instead of being made.
    pub stop_sends: watch::Receiver<bool>,
}

/// The accounts that are connected now, by session.
pub type ConnectedAccounts =
    Arc<std::sync::RwLock<std::collections::HashMap<SessionName, Arc<dyn TelegramAccount>>>>;

/// Starts the owner of `session`. It connects only once every task in `predecessors` (earlier
/// owners of the same session, stopped) has ended, so two owners never hold the session at once.
pub(crate) fn spawn_owner(
    session: SessionName,
    context: OwnerContext,
    generation: u64,
    predecessors: Vec<JoinHandle<()>>,
) -> OwnerHandle {
    let (commands, receiver) = mpsc::channel(64);
    let (commits, commit_queue) = mpsc::unbounded_channel();
    let owner = Owner {
        session,
        context,
        commands: receiver,
        generation,
        commits,
        commit_queue,
        connection: 0,
        flush: None,
    };
    OwnerHandle {
        commands,
        task: tokio::spawn(owner.run(predecessors)),
        generation,
    }
}

struct Owner {
    session: SessionName,
    context: OwnerContext,
    commands: mpsc::Receiver<OwnerCommand>,
    generation: u64,
    /// Checkpoints every consumer has passed, tagged with the connection that delivered them:
    /// a checkpoint is meaningful only to its own connection. Unbounded: one per checkpoint
    /// interval at most, drained by this task.
    commits: mpsc::UnboundedSender<(u64, Checkpoint)>,
    commit_queue: mpsc::UnboundedReceiver<(u64, Checkpoint)>,
    /// Counts connections, to tell their checkpoints apart.
    connection: u64,
    flush: Option<Flush>,
}

/// A flush in progress: the checkpoint it asked for, then its commit.
struct Flush {
    reply: oneshot::Sender<bool>,
    /// Checkpoints still to come before the flush's own (earlier requests come first).
    checkpoints_ahead: u32,
    checkpoint: Option<Checkpoint>,
}

/// Why a connected session loop ended.
enum Ended {
    Stop,
    Reconnect { reason: String },
    Dead { reason: DeadReason },
}

impl Owner {
    async fn run(mut self, predecessors: Vec<JoinHandle<()>>) {
        if !self.await_predecessors(predecessors).await {
            self.publish(LinkState::Stopped);
            return;
        }
        let mut backoff = self.context.settings.reconnect_min;
        loop {
            self.publish(LinkState::Connecting);
            let wait = match self
                .context
                .connector
                .connect(&self.session, &self.context.options)
                .await
            {
                Ok(account) => {
                    backoff = self.context.settings.reconnect_min;
                    let ended = self.serve(account.clone()).await;
                    account.disconnect().await;
                    match ended {
                        Ended::Stop => break,
                        Ended::Reconnect { reason } => {
                            self.publish(LinkState::Disconnected { reason });
                            Some(backoff)
                        }
                        Ended::Dead { reason } => {
                            tracing::error!(target: "agent_pool", session = %self.session, %reason,
                                "❌ Агент {} отключён: {reason}; нужен новый вход", self.session);
                            self.publish(LinkState::Dead { reason });
                            None
                        }
                    }
                }
                Err(ConnectError::Network { message }) => {
                    tracing::warn!(target: "agent_pool", session = %self.session, %message, "❌ Ошибка подключения агента");
                    self.publish(LinkState::Disconnected { reason: message });
                    let wait = backoff;
                    backoff = (backoff * 2).min(self.context.settings.reconnect_max);
                    Some(wait)
                }
                Err(ConnectError::NotLoggedIn { .. }) => {
                    tracing::warn!(target: "agent_pool", session = %self.session,
                        "агент {} не авторизован: `jobbot login {}`", self.session, self.session);
                    self.publish(LinkState::NotLoggedIn);
                    Some(self.context.settings.idle_retry)
                }
                Err(ConnectError::Dead { reason, .. }) => {
                    tracing::error!(target: "agent_pool", session = %self.session, %reason,
                        "❌ Сессия агента {} недействительна: {reason}; нужен новый вход", self.session);
                    self.publish(LinkState::Dead { reason });
                    None
                }
                // Held by someone else: after a crash, usually the previous process, whose
                // connection the other side releases as soon as it notices it is gone. Retried
                // with the connection's back-off, not the idle retry.
                Err(error @ ConnectError::SessionBusy { .. }) => {
                    tracing::warn!(target: "agent_pool", session = %self.session, %error, "❌ Ошибка подключения агента");
                    self.publish(LinkState::Disconnected {
                        reason: error.to_string(),
                    });
                    let wait = backoff;
                    backoff = (backoff * 2).min(self.context.settings.reconnect_max);
                    Some(wait)
                }
                Err(error @ ConnectError::Storage { .. }) => {
                    tracing::error!(target: "agent_pool", session = %self.session, %error, "❌ Ошибка подключения агента");
                    self.publish(LinkState::Disconnected {
                        reason: error.to_string(),
                    });
                    Some(self.context.settings.idle_retry)
                }
            };
            // `None`: a dead session is not tried again; the owner waits to be stopped.
            if !self.wait_refusing_sends(wait).await {
                break;
            }
        }
        self.publish(LinkState::Stopped);
    }

    /// Waits until the earlier owners of this session have released it, refusing sends
    /// meanwhile. Returns `false` when this owner was stopped before it could start.
    async fn await_predecessors(&mut self, predecessors: Vec<JoinHandle<()>>) -> bool {
        for mut predecessor in predecessors {
            loop {
                tokio::select! {
                    _ = &mut predecessor => break,
                    command = self.commands.recv() => match command {
                        None => return false,
                        Some(OwnerCommand::Send { reply, .. }) => {
                            let _ = reply.send(Err(SendFailure::NotAttempted));
                        }
                        Some(OwnerCommand::Flush { reply }) => {
                            let _ = reply.send(false);
                        }
                    },
                }
            }
        }
        true
    }

    /// Serves a connected account until it must reconnect or stop.
    async fn serve(&mut self, account: Arc<dyn TelegramAccount>) -> Ended {
        if self.commands.is_closed() {
            return Ended::Stop; // stopped while connecting: never announce a stopped owner ready
        }
        let me = match account.get_me().await {
            Ok(me) => me,
            Err(TelegramError::AccountDead { reason }) => return Ended::Dead { reason },
            Err(error) => {
                return Ended::Reconnect {
                    reason: error.to_string(),
                };
            }
        };
        // Listed before it is announced: whoever sees the agent ready finds its account.
        if let Ok(mut accounts) = self.context.accounts.write() {
            accounts.insert(self.session.clone(), Arc::clone(&account));
        }
        self.publish(LinkState::Ready { me: me.clone() });
        let ended = self.serve_ready(&account, &me).await;
        if let Ok(mut accounts) = self.context.accounts.write() {
            accounts.remove(&self.session);
        }
        ended
    }

    async fn serve_ready(&mut self, account: &Arc<dyn TelegramAccount>, me: &Me) -> Ended {
        self.connection += 1;
        let connection = self.connection;
        let mut requested: u32 = 0;
        let mut events = account.take_events();
        let mut health = tokio::time::interval(self.context.settings.health_interval);
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        health.tick().await; // the first tick is immediate; get_me just ran
        let mut checkpoints = tokio::time::interval(self.context.settings.checkpoint_interval);
        checkpoints.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        checkpoints.tick().await;
        // The account's stream said the connection dropped, and nothing has shown it back yet.
        let mut link_lost = false;
        let ended = loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    None => break Ended::Stop,
                    Some(OwnerCommand::Send { job, reply }) => {
                        let result = execute(&**account, job, self.context.stop_sends.clone()).await;
                        let ended = match result.as_ref().err().and_then(SendFailure::telegram) {
                            Some(TelegramError::AccountDead { reason }) => Some(Ended::Dead { reason: *reason }),
                            Some(TelegramError::Network { message }) => Some(Ended::Reconnect { reason: message.clone() }),
                            _ => None,
                        };
                        let _ = reply.send(result);
                        if let Some(ended) = ended {
                            break ended;
                        }
                    }
                    Some(OwnerCommand::Flush { reply }) => {
                        if let Some(earlier) = self.flush.take() {
                            let _ = earlier.reply.send(false);
                        }
                        account.request_checkpoint();
                        requested += 1;
                        self.flush = Some(Flush { reply, checkpoints_ahead: requested, checkpoint: None });
                    }
                },
                Some((from, checkpoint)) = self.commit_queue.recv() => {
                    if from != connection {
                        continue; // an earlier connection's: meaningless to this one
                    }
                    if let Err(error) = account.commit_checkpoint(checkpoint).await {
                        tracing::warn!(target: "telegram", session = %self.session, %error, "could not save the update position");
                    }
                    if self.flush.as_ref().is_some_and(|flush| flush.checkpoint.is_some_and(|flushed| flushed.0 <= checkpoint.0))
                        && let Some(flush) = self.flush.take()
                    {
                        let _ = flush.reply.send(true);
                    }
                },
                event = next_event(&mut events) => match event {
                    Some(event) => {
                        let ack = match &event {
                            AccountEvent::ConnectionLost => {
                                link_lost = true;
                                self.publish(LinkState::Disconnected { reason: "connection lost; reconnecting".into() });
                                None
                            }
                            AccountEvent::ConnectionRestored => {
                                if std::mem::take(&mut link_lost) {
                                    self.publish(LinkState::Ready { me: me.clone() });
                                }
                                None
                            }
                            AccountEvent::Checkpoint(checkpoint) => {
                                requested = requested.saturating_sub(1);
                                if let Some(flush) = &mut self.flush {
                                    flush.checkpoints_ahead = flush.checkpoints_ahead.saturating_sub(1);
                                    if flush.checkpoints_ahead == 0 && flush.checkpoint.is_none() {
                                        flush.checkpoint = Some(*checkpoint);
                                    }
                                }
                                let (commits, checkpoint) = (self.commits.clone(), *checkpoint);
                                Some(CheckpointAck::new(1, Arc::clone(&self.context.gate), move || {
                                    let _ = commits.send((connection, checkpoint));
                                }))
                            }
                            _ => None,
                        };
                        let is_checkpoint = ack.is_some();
                        let _ = self.context.telegram.send(Routed { session: self.session.clone(), event: event.clone(), ack });
                        if !is_checkpoint {
                            let _ = self.context.events.send(EngineEvent::Telegram { session: self.session.clone(), event });
                        }
                    }
                    // The stream ended: the connection behind it is gone (a remote back-end's
                    // socket closed). Reconnect now rather than at the next send or health check.
                    None => break Ended::Reconnect { reason: "the update stream ended".into() },
                },
                _ = checkpoints.tick() => {
                    account.request_checkpoint();
                    requested += 1;
                },
                _ = health.tick() => match account.get_me().await {
                    // A call that works is the connection back, whether or not the stream has
                    // said so yet (a quiet account may get no update for hours).
                    Ok(_) => {
                        if std::mem::take(&mut link_lost) {
                            tracing::info!(target: "agent_pool", session = %self.session, "health check passed; connection restored");
                            self.publish(LinkState::Ready { me: me.clone() });
                        }
                    }
                    Err(TelegramError::AccountDead { reason }) => break Ended::Dead { reason },
                    Err(error) => {
                        tracing::warn!(target: "agent_pool", session = %self.session, %error, "health check failed; reconnecting");
                        break Ended::Reconnect { reason: error.to_string() };
                    }
                },
            }
        };
        // This connection's checkpoints can no longer be committed.
        if let Some(flush) = self.flush.take() {
            let _ = flush.reply.send(false);
        }
        ended
    }

    /// Waits `duration`, answering any send that arrives meanwhile with a network error (the
    /// dispatcher only sends to ready agents, but a send may cross a state change). Returns
    /// `false` when the owner must stop.
    async fn wait_refusing_sends(&mut self, duration: Option<Duration>) -> bool {
        let deadline = duration.map(|duration| tokio::time::Instant::now() + duration);
        loop {
            tokio::select! {
                _ = async {
                    match deadline {
                        Some(deadline) => tokio::time::sleep_until(deadline).await,
                        None => std::future::pending().await,
                    }
                } => return true,
                command = self.commands.recv() => match command {
                    None => return false,
                    Some(OwnerCommand::Send { reply, .. }) => {
                        let _ = reply.send(Err(SendFailure::NotAttempted));
                    }
                    Some(OwnerCommand::Flush { reply }) => {
                        let _ = reply.send(false);
                    }
                },
            }
        }
    }

    fn publish(&self, state: LinkState) {
        let _ = self.context.states.send(LinkReport {
            session: self.session.clone(),
            generation: self.generation,
            state,
        });
    }
}

async fn next_event(
    events: &mut Option<mpsc::Receiver<jobbot_core::telegram::AccountEvent>>,
) -> Option<jobbot_core::telegram::AccountEvent> {
    match events {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

/// Makes one send on this account. A username (or a message's author) is resolved by this account
/// itself (access hashes are per account) and must be a person: the original system sent its template to bots and
/// channels named in a post. The resolve's failure is told apart from the send's
/// ([`SendFailure::Resolve`]): they are different methods with limits of their own.
///
/// Once the engine stops sending (`stop`), a send not begun yet is handed back as
/// [`SendFailure::NotAttempted`]; so is one still showing "typing…", whose message has not been
/// sent. A call already made is always waited for.
async fn execute(
    account: &dyn TelegramAccount,
    job: SendJob,
    mut stop: watch::Receiver<bool>,
) -> Result<SentMessage, SendFailure> {
    if *stop.borrow_and_update() {
        return Err(SendFailure::NotAttempted);
    }
    let sent = match &job.recipient {
        Recipient::Chat { chat } => {
            account
                .post_to_chat(*chat, &job.content, job.random_id)
                .await
        }
        Recipient::Topic { group, topic } => {
            account
                .post_to_topic(*group, *topic, &job.content, job.random_id)
                .await
        }
        Recipient::KnownPeer { peer, .. } => {
            return send_to_person(account, *peer, &job, stop).await;
        }
        // Found by this account itself (by username, or through their message): its own hash.
        Recipient::Username { .. } | Recipient::Author { .. } => {
            let found = match &job.recipient {
                Recipient::Author { author } => account.resolve_message_author(author).await,
                Recipient::Username { username } => account.resolve_username(username).await,
                _ => unreachable!("matched above"),
            };
            let peer = found.map_err(SendFailure::Resolve)?;
            if peer.kind != PeerKind::User {
                return Err(SendFailure::Telegram(TelegramError::NotAUser));
            }
            return send_to_person(account, peer.peer, &job, stop).await;
        }
    };
    sent.map_err(SendFailure::Telegram)
}

async fn send_to_person(
    account: &dyn TelegramAccount,
    peer: PeerRef,
    job: &SendJob,
    mut stop: watch::Receiver<bool>,
) -> Result<SentMessage, SendFailure> {
    if let Some(typing) = job.typing {
        // Typing is cosmetic: a failure here must not cost the message.
        let _ = account.send_typing(peer).await;
        tokio::select! {
            () = tokio::time::sleep(typing) => {}
            // A stop (or an engine gone) while "typing…": the message itself was not sent.
            _ = stop.wait_for(|stopping| *stopping) => return Err(SendFailure::NotAttempted),
        }
    }
    account
        .send_direct(peer, &job.content, job.random_id)
        .await
        .map_err(SendFailure::Telegram)
}
