//! The CRM workflow: the auto-response to a vacancy's author, one forum topic per contact in the
//! channel's CRM group, and the two-way relay between the contact's private chat with *their*
//! agent and that topic.
//!
//! Every step that must follow another is a stored workflow (`jobbot_core::workflow`), advanced
//! by pure transitions and executed here; the executor resumes every unfinished workflow at start,
//! so a crash between two steps (the auto-response delivered, its conversation not yet open) loses
//! nothing. Taking an update in (a contact's message, an operator's answer) writes what must
//! follow before the next update is taken, so the account's update position is saved only past
//! updates on record.
//!
//! Invariants, each the fix of a bug of the original system (`original-system.md` §2b, §2c):
//! - One auto-response per (channel, contact), ever: the outbox's idempotency key is
//!   `auto_response:<channel>:<contact id>`, so a repost, a restart or two racing triggers cannot
//!   send a second one. An optional cross-channel cooldown spares a recruiter five messages from
//!   five channels.
//! - One auto-response per vacancy, whatever number of channels it matches (the original's
//!   `contacted_users`): an answer is queued only when it is its turn among the others on record
//!   (`AutoResponse::queue_turn`); one that failed leaves the turn to the next channel. An answer
//!   to the same person's other vacancy in the same group waits for its conversation, so the
//!   conversation's agent writes.
//! - Only people get it: the contact is resolved through one of the channel's agents first, and
//!   a bot, a channel or a group is skipped before anything is queued.
//! - A conversation's agent is the account that delivered the auto-response, persisted with the
//!   conversation; replies from the topic always go out through it, across restarts.
//! - One topic per (group, contact): the store's `open_conversation` returns the existing
//!   conversation, topics are created under a per-conversation lock, and the creating account's
//!   `random_id` is on record before the call, so a retry after a crash returns the same topic.
//!   A topic an admin deleted is recreated on the next post (known by the typed
//!   `TopicDeleted`, never by an error's text).
//! - A contact who answers before their conversation is on record (the auto-response just went
//!   out) is not dropped: their message waits for the conversation.
//! - Nothing jobbot posts is relayed back: group messages from any of jobbot's own accounts and
//!   messages whose ids are on record as jobbot's posts are ignored. No text-prefix matching.
//! - Every send goes through the outbox (paced, durable, failed over); human-like delays are the
//!   outbox's `not_before`, never a sleep that holds anything up.
//! - AI conversations (`crm_ai.rs`) are stored records and `AiTurn` workflows: a suggestion is
//!   posted into the topic and never relayed; an operator's message hands the conversation over.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use jobbot_core::cluster::NodeId;
use jobbot_core::config::{Channel, Config};
use jobbot_core::contacts::{Candidate, CandidateTarget, crm_target};
use jobbot_core::ids::{ChatId, SessionName};
use jobbot_core::notification::{MAX_MESSAGE_UTF16, fit_message, fit_to_utf16, utf16_len};
use jobbot_core::scheduling::CallClass;
use jobbot_core::store::{
    Conversation, ConversationId, Delivery, NewConversation, NewOutboxMessage, NewWorkflow,
    OutboxId, OutboxKind, OutboxStatus, Recipient, RelayDirection, RelayRecord, SenderSelection,
    Store, StoreError, UnixMillis, WorkflowId, WorkflowRecord,
};
use jobbot_core::telegram::{
    AccountEvent, IncomingMessage, JoinTarget, MAX_CAPTION_UTF16, MediaFile, MediaKind,
    MessageAuthor, MessageContent, Peer, PeerKind, PeerRef, RandomId, Sender, SentMessage,
    TelegramError, TopicId,
};
use jobbot_core::template::{TemplateValues, parse_template};
use jobbot_core::workflow::{
    AnswerMessage, AutoResponse, AutoResponseStep, ContactRef, Effect, Event, MediaToContact,
    MediaToContactStep, OtherAnswer, PostKind, QueueTurn, RelayStep, RelayToTopic, SkipReason,
    VacancyRef, Workflow, WorkflowSettings,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

/// What an existing conversation's agent already has of a contact: its own reference to them, and
/// the message it found them through.
type KnownContact = (Option<PeerRef>, Option<MessageAuthor>);

use crate::dispatcher::LinkStates;
use crate::engine::{Engine, EngineError};
use crate::owner::LinkState;
use crate::router::TelegramEvents;
use crate::supervisor::ShutdownSignal;
use crate::vacancy::Vacancy;

/// The idempotency key of `channel`'s auto-response to `contact`: one per (channel, contact), ever.
fn auto_response_key(channel: &str, contact: ChatId) -> String {
    format!("auto_response:{channel}:{}", contact.get())
}

#[path = "crm_ai.rs"]
mod ai;
pub use ai::{AiParts, SEND_SUGGESTION, SuggestionSent};

/// The seam for automatic replies in a conversation (AI replies come later). Called after a
/// contact's message was relayed into the topic; a reply it returns is sent to the contact by the
/// conversation's agent and mirrored into the topic.
#[async_trait]
pub trait AutoReplier: Send + Sync {
    async fn reply(
        &self,
        conversation: &Conversation,
        incoming: &IncomingMessage,
    ) -> Option<MessageContent>;
}

/// The default: operators answer; nothing replies by itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAutoReplies;

#[async_trait]
impl AutoReplier for NoAutoReplies {
    async fn reply(&self, _: &Conversation, _: &IncomingMessage) -> Option<MessageContent> {
        None
    }
}

/// How long a join into a CRM group waits for the agent's join limiter.
const JOIN_WAIT: Duration = Duration::from_secs(15 * 60);
/// Joins to CRM groups that have not happened (refused for now: a flood wait, a network error,
/// a long wait for the join limiter) are tried again this often, not only when the agent
/// reconnects or the configuration changes: an agent outside its CRM group cannot post in it.
const JOIN_RETRY: Duration = Duration::from_secs(30 * 60);

/// With several nodes: how often the executor looks for unfinished workflows whose node is
/// gone.
const CLUSTER_WORKFLOW_POLL: Duration = Duration::from_secs(5);

/// What the CRM needs besides its ports.
#[derive(Debug, Clone)]
pub struct CrmSettings {
    /// No auto-response to a contact who got one from any channel within this long (`None`: each
    /// channel writes once regardless of the others).
    pub cross_channel_cooldown: Option<Duration>,
    /// When no agent can resolve a contact now (none connected, all in a flood wait), try again
    /// after this long …
    pub resolve_retry: Duration,
    /// … until this long after the vacancy arrived.
    pub resolve_give_up: Duration,
    /// How long a contact's message waits for their conversation to open.
    pub await_conversation: Duration,
    /// When no account can create a topic now, try again after this long.
    pub topic_retry: Duration,
    /// A workflow whose step failed (the store, the engine) is tried again after this long.
    pub failed_step_retry: Duration,
    /// Seed of the human-like delays and of topic creation ids.
    pub seed: u64,
    /// With several nodes on one database: this node's name. A workflow's steps then run only
    /// on the node that claimed it (`Store::claim_workflow`), and the workflows of nodes gone
    /// are looked for every `CLUSTER_WORKFLOW_POLL`. `None` on a node of its own.
    pub node: Option<NodeId>,
}

impl Default for CrmSettings {
    fn default() -> Self {
        let workflows = WorkflowSettings::default();
        Self {
            cross_channel_cooldown: None,
            resolve_retry: workflows.resolve_retry,
            resolve_give_up: Duration::from_secs(24 * 3600),
            await_conversation: workflows.await_conversation,
            topic_retry: workflows.topic_retry,
            failed_step_retry: Duration::from_secs(30),
            seed: rand::random(),
            node: None,
        }
    }
}

impl CrmSettings {
    fn workflows(&self) -> WorkflowSettings {
        WorkflowSettings {
            resolve_retry: self.resolve_retry,
            topic_retry: self.topic_retry,
            await_conversation: self.await_conversation,
            ..WorkflowSettings::default()
        }
    }
}

/// Everything [`Crm::new`] takes.
pub struct CrmParts {
    pub engine: Engine,
    /// The same configuration snapshots the engine follows.
    pub config: watch::Receiver<Arc<Config>>,
    /// The CRM's share of the engine's Telegram events (`router::fan_out`).
    pub telegram: TelegramEvents,
    pub replier: Arc<dyn AutoReplier>,
    /// AI conversations (`None`: operators answer alone).
    pub ai: Option<AiParts>,
    pub settings: CrmSettings,
}

/// The CRM. [`Crm::run_intake`] takes updates in, [`Crm::run_workflows`] executes the stored
/// workflows; each may be run again after a failure and goes on where the last run stopped.
#[derive(Clone)]
pub struct Crm {
    shared: Arc<Shared>,
}

/// What monitoring hands vacancies to.
#[derive(Clone)]
pub struct CrmHandle {
    shared: Arc<Shared>,
}

/// Why a CRM run or a workflow step stopped.
#[derive(Debug, thiserror::Error)]
pub enum CrmError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Shared {
    engine: Engine,
    store: Arc<dyn Store>,
    config: watch::Receiver<Arc<Config>>,
    replier: Arc<dyn AutoReplier>,
    ai: Option<AiParts>,
    settings: CrmSettings,
    workflows: WorkflowSettings,
    events: tokio::sync::Mutex<TelegramEvents>,
    /// Workflows to look at now (new, or due to retry). Unbounded: one message per started
    /// workflow, drained by the executor.
    wake: mpsc::UnboundedSender<WorkflowId>,
    wakes: tokio::sync::Mutex<mpsc::UnboundedReceiver<WorkflowId>>,
    /// Woken when a conversation opens (early answers look for it then).
    conversation_opened: Notify,
    rng: Mutex<StdRng>,
    /// Serialises topic creation per conversation, so racing workflows create one topic.
    topic_locks: Mutex<HashMap<ConversationId, Arc<tokio::sync::Mutex<()>>>>,
    /// Telegram user ids of jobbot's own accounts, as they connected.
    own_users: Mutex<HashSet<ChatId>>,
    /// (agent, invite hash) joins done in this process.
    joined: Mutex<HashSet<(SessionName, String)>>,
    /// Joins Telegram refused for good (an invalid invite, too many channels): not retried by
    /// the periodic retry, only at the agent's next connection or a configuration change.
    join_refused: Mutex<HashSet<(SessionName, String)>>,
    joins: Mutex<JoinSet<()>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicked task must not wedge the whole workflow.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A CRM started outside supervision (tests, tools): both runs in tasks of their own.
pub struct RunningCrm {
    crm: Crm,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<Result<(), CrmError>>>,
}

impl RunningCrm {
    pub fn crm(&self) -> &Crm {
        &self.crm
    }

    /// Stops both runs. What is queued stays in the outbox; what is unfinished stays stored.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        for task in self.tasks {
            let _ = task.await;
        }
        self.crm.shared.abort_joins().await;
    }
}

impl Crm {
    /// The CRM over `parts`; unfinished workflows are resumed by [`Crm::run_workflows`].
    pub async fn new(parts: CrmParts) -> Result<Self, CrmError> {
        let (wake, wakes) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            store: parts.engine.store(),
            engine: parts.engine,
            config: parts.config,
            replier: parts.replier,
            ai: parts.ai,
            workflows: parts.settings.workflows(),
            rng: Mutex::new(StdRng::seed_from_u64(parts.settings.seed)),
            settings: parts.settings,
            events: tokio::sync::Mutex::new(parts.telegram),
            wake,
            wakes: tokio::sync::Mutex::new(wakes),
            conversation_opened: Notify::new(),
            topic_locks: Mutex::new(HashMap::new()),
            own_users: Mutex::new(HashSet::new()),
            joined: Mutex::new(HashSet::new()),
            join_refused: Mutex::new(HashSet::new()),
            joins: Mutex::new(JoinSet::new()),
        });
        Ok(Self { shared })
    }

    /// [`Crm::new`], with both runs in tasks of their own until [`RunningCrm::shutdown`].
    pub async fn start(parts: CrmParts) -> Result<RunningCrm, CrmError> {
        let crm = Self::new(parts).await?;
        let (stop, signal) = watch::channel(false);
        let tasks = vec![
            {
                let (crm, signal) = (crm.clone(), ShutdownSignal::from_watch(signal.clone()));
                tokio::spawn(async move { crm.run_workflows(signal).await })
            },
            {
                let (crm, signal) = (crm.clone(), ShutdownSignal::from_watch(signal));
                tokio::spawn(async move { crm.run_intake(signal).await })
            },
        ];
        Ok(RunningCrm { crm, stop, tasks })
    }

    pub fn handle(&self) -> CrmHandle {
        CrmHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Starts the auto-response workflows of a vacancy (what monitoring's intake does in its own
    /// transaction), for tools and tests.
    pub async fn submit_vacancy(&self, vacancy: &Vacancy) -> Result<Vec<WorkflowId>, CrmError> {
        let config = self.shared.config();
        let now = self.shared.now();
        let reference = VacancyRef {
            source: vacancy.source,
            source_username: vacancy.source_username.clone(),
            message_id: vacancy.message_id,
            source_title: vacancy.source_title.clone(),
            link: vacancy.link.clone(),
            text: vacancy.text.clone(),
        };
        let mut started = Vec::new();
        for channel in &vacancy.channels {
            let handle = self.handle();
            for workflow in
                handle.auto_responses(&config, channel, &reference, &vacancy.candidates, now)
            {
                started.push(self.shared.store.start_workflow(&workflow).await?.0);
            }
        }
        self.handle().wake(&started);
        Ok(started)
    }

    /// Takes Telegram updates in until `shutdown` (after the update being handled) or the end of
    /// the stream, and joins agents to their CRM groups. An error means an update could not be
    /// put on record; it is not skipped (no update position past it is saved).
    pub async fn run_intake(&self, mut shutdown: ShutdownSignal) -> Result<(), CrmError> {
        let shared = &self.shared;
        let mut events = shared.events.lock().await;
        events.recover();
        let mut config = shared.config.clone();
        let mut links = shared.engine.link_states();
        let mut ready = shared.ready_agents(&mut links);
        shared.spawn_join(None);
        let mut rejoin =
            tokio::time::interval_at(tokio::time::Instant::now() + JOIN_RETRY, JOIN_RETRY);
        rejoin.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut config_open, mut links_open) = (true, true);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.requested() => return Ok(()),
                _ = rejoin.tick() => shared.spawn_rejoin(),
                event = events.recv() => match event {
                    Some((session, event)) => shared.on_telegram(session, event).await?,
                    None => return Ok(()),
                },
                changed = config.changed(), if config_open => match changed {
                    Ok(()) => {
                        lock(&shared.join_refused).clear();
                        shared.spawn_join(None);
                    }
                    Err(_) => config_open = false,
                },
                changed = links.changed(), if links_open => match changed {
                    Ok(()) => {
                        let now_ready = shared.ready_agents(&mut links);
                        for session in now_ready.difference(&ready) {
                            shared.spawn_join(Some(session.clone()));
                        }
                        ready = now_ready;
                    }
                    Err(_) => links_open = false,
                },
            }
        }
    }

    /// Executes every unfinished workflow, and each new one as it is started, until `shutdown`.
    /// A workflow whose step fails is tried again later from its stored state.
    pub async fn run_workflows(&self, mut shutdown: ShutdownSignal) -> Result<(), CrmError> {
        let shared = &self.shared;
        let mut wakes = shared.wakes.lock().await;
        let mut running = Running::default();
        for record in shared.store.active_workflows().await? {
            running.start(shared, record);
        }
        // With several nodes: the workflows another node claimed and left (it died) are taken
        // over; each task claims its workflow before every step.
        let mut poll = tokio::time::interval(CLUSTER_WORKFLOW_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let result = loop {
            tokio::select! {
                biased;
                _ = shutdown.requested() => break Ok(()),
                _ = poll.tick(), if shared.settings.node.is_some() => {
                    match shared.store.active_workflows().await {
                        Ok(records) => {
                            for record in records {
                                running.start(shared, record);
                            }
                        }
                        Err(error) => {
                            tracing::warn!(target: "crm", %error, "could not look for workflows other nodes left");
                        }
                    }
                }
                Some(id) = wakes.recv() => {
                    if running.active.contains(&id) {
                        continue;
                    }
                    match shared.store.workflow(id).await {
                        Ok(Some(record)) => running.start(shared, record),
                        Ok(None) => {}
                        Err(error) => break Err(error.into()),
                    }
                }
                Some(done) = running.tasks.join_next_with_id() => {
                    let (task, failure) = match done {
                        Ok((task, Ok(()))) => (task, None),
                        Ok((task, Err(error))) => (task, Some(error.to_string())),
                        Err(error) => (error.id(), Some(format!("panicked: {error}"))),
                    };
                    let Some(id) = running.ids.remove(&task) else { continue };
                    running.active.remove(&id);
                    if let Some(failure) = failure {
                        tracing::error!(target: "crm", workflow = id.0, %failure, "a workflow step failed; it is tried again later");
                        shared.wake_later(id);
                    }
                }
            }
        };
        // Unfinished workflows stay stored, at the step they were at.
        running.tasks.shutdown().await;
        result
    }
}

/// The workflows being executed, one task each.
#[derive(Default)]
struct Running {
    tasks: JoinSet<Result<(), CrmError>>,
    ids: HashMap<tokio::task::Id, WorkflowId>,
    active: HashSet<WorkflowId>,
}

impl Running {
    fn start(&mut self, shared: &Arc<Shared>, record: WorkflowRecord) {
        if record.state.is_finished() || !self.active.insert(record.id) {
            return;
        }
        let shared = Arc::clone(shared);
        let task = self
            .tasks
            .spawn(async move { shared.drive(record.id, record.state).await });
        self.ids.insert(task.id(), record.id);
    }
}

impl CrmHandle {
    /// The configuration the CRM follows.
    pub fn config(&self) -> Arc<Config> {
        self.shared.config()
    }

    /// The auto-response workflows a notified vacancy starts in `channel_id`: one when the
    /// channel answers with CRM and the vacancy names someone to write to (by username, or its
    /// author by the message).
    pub fn auto_responses(
        &self,
        config: &Config,
        channel_id: &str,
        vacancy: &VacancyRef,
        candidates: &[Candidate],
        now: UnixMillis,
    ) -> Vec<NewWorkflow> {
        let Some(channel) = config.channel(channel_id) else {
            return Vec::new();
        };
        if !answers(channel) {
            return Vec::new();
        }
        let Some(candidate) = crm_target(candidates) else {
            return Vec::new();
        };
        let contact = match &candidate.target {
            CandidateTarget::Username(username) => ContactRef::Username(username.clone()),
            CandidateTarget::Sender {
                username: Some(username),
                ..
            } => ContactRef::Username(username.clone()),
            // A person with no username is reached through the message they posted.
            CandidateTarget::Sender { id, username: None } => ContactRef::Author(MessageAuthor {
                chat: vacancy.source,
                chat_username: vacancy.source_username.clone(),
                message_id: vacancy.message_id,
                user: *id,
            }),
        };
        vec![NewWorkflow {
            key: AutoResponse::key(channel_id, vacancy.source, vacancy.message_id),
            state: Workflow::AutoResponse(AutoResponse::new(
                channel_id.to_owned(),
                vacancy.clone(),
                contact,
                now,
                self.shared.settings.resolve_give_up,
            )),
            created_at: now,
        }]
    }

    /// Sends the conversation's pending AI suggestion to the contact (the web's send button;
    /// the topic's "+" does the same).
    pub async fn send_suggestion(&self, id: ConversationId) -> Result<SuggestionSent, CrmError> {
        match self.shared.store.conversation(id).await? {
            Some(conversation) => self.shared.send_suggestion(&conversation).await,
            None => Ok(SuggestionSent::NoConversation),
        }
    }

    /// Gives a handed-over conversation back to the AI; `false` when it was not handed over
    /// (or there is no such conversation, or no AI).
    pub async fn release_ai(&self, id: ConversationId) -> Result<bool, CrmError> {
        match self.shared.store.conversation(id).await? {
            Some(conversation) => self.shared.release_ai(&conversation).await,
            None => Ok(false),
        }
    }

    /// The conversations' AI records, when the CRM runs AI conversations.
    pub fn ai_store(&self) -> Option<Arc<dyn jobbot_core::ai::AiStore>> {
        self.shared.ai.as_ref().map(|ai| Arc::clone(&ai.store))
    }

    /// Has the executor look at these workflows now (they were started elsewhere).
    pub fn wake(&self, ids: &[WorkflowId]) {
        for id in ids {
            // The executor is gone only at shutdown; a restart finds the workflow anyway.
            let _ = self.shared.wake.send(*id);
        }
    }
}

/// Whether a channel answers vacancies' authors through its CRM.
fn answers(channel: &Channel) -> bool {
    channel.enabled
        && channel.crm_enabled
        && channel.auto_response_enabled
        && channel.crm_group_id.is_some()
}

impl Shared {
    fn config(&self) -> Arc<Config> {
        self.config.borrow().clone()
    }

    fn now(&self) -> UnixMillis {
        self.engine.clock().now_unix()
    }

    fn wake_later(self: &Arc<Self>, id: WorkflowId) {
        let (wake, delay) = (self.wake.clone(), self.settings.failed_step_retry);
        self.spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = wake.send(id);
        });
    }

    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut joins = lock(&self.joins);
        while joins.try_join_next().is_some() {}
        joins.spawn(task);
    }

    async fn abort_joins(&self) {
        let mut joins = std::mem::take(&mut *lock(&self.joins));
        joins.abort_all();
        while joins.join_next().await.is_some() {}
    }

    fn spawn_join(self: &Arc<Self>, only: Option<SessionName>) {
        if let Some(session) = &only {
            // Its next connection tries again what was refused for good.
            lock(&self.join_refused).retain(|(agent, _)| agent != session);
        }
        self.spawn(Arc::clone(self).join_crm_groups(only));
    }

    /// The periodic retry: the joins that have not happened, but those refused for good.
    fn spawn_rejoin(self: &Arc<Self>) {
        self.spawn(Arc::clone(self).join_crm_groups(None));
    }

    /// Whether an unfinished auto-response to `contact` is past resolving and has no
    /// conversation yet: a private message from them is then an early answer, kept until the
    /// conversation opens. Read from the store, not from the executor's memory: after a restart
    /// the intake may take a caught-up answer before the executor has resumed its workflow, and a
    /// workflow whose step failed waits, not running, for its retry.
    async fn awaits_conversation(&self, contact: ChatId) -> Result<bool, CrmError> {
        Ok(self
            .store
            .active_workflows()
            .await?
            .iter()
            .any(|record| match &record.state {
                Workflow::AutoResponse(workflow) => workflow.contact_id() == Some(contact),
                Workflow::RelayToTopic(_) | Workflow::MediaToContact(_) | Workflow::AiTurn(_) => {
                    false
                }
            }))
    }

    /// The agents ready now; their users are remembered as jobbot's own.
    fn ready_agents(&self, links: &mut watch::Receiver<LinkStates>) -> HashSet<SessionName> {
        let links = links.borrow_and_update();
        let mut own = lock(&self.own_users);
        links
            .iter()
            .filter_map(|(session, state)| match state {
                LinkState::Ready { me } => {
                    own.insert(me.user_id);
                    Some(session.clone())
                }
                _ => None,
            })
            .collect()
    }

    // ----- The executor -----

    /// Runs one workflow to its end or until a step fails, saving each new state before its
    /// effect is performed.
    async fn drive(self: Arc<Self>, id: WorkflowId, mut state: Workflow) -> Result<(), CrmError> {
        loop {
            let effect = state.effect(self.now());
            if effect == Effect::Finished {
                return Ok(());
            }
            if let Some(node) = &self.settings.node {
                if !self.store.claim_workflow(id, node, self.now()).await? {
                    // Another live node executes it.
                    return Ok(());
                }
                // Another node may have moved it on before this node claimed it.
                match self.store.workflow(id).await? {
                    Some(record) if record.state != state => {
                        state = record.state;
                        continue;
                    }
                    Some(_) => {}
                    None => return Ok(()),
                }
                // A step only the holder of an account can perform goes to that account's node.
                if let Some(holder) = self.held_elsewhere(&state, &effect, node).await? {
                    if self.store.hand_over_workflow(id, node, &holder).await? {
                        tracing::debug!(target: "crm", workflow = id.0, %holder, "its step needs an account another node holds; handed over");
                    }
                    return Ok(());
                }
            }
            let event = self.perform(id, &state, effect).await?;
            let opened = matches!(event, Event::Opened { .. });
            let now = self.now();
            let next = state.clone().on(event, now, &self.workflows);
            if next == state {
                continue;
            }
            self.store.save_workflow(id, &next, now).await?;
            if opened {
                // Once on record with its next step: a reply waiting for the conversation finds
                // it, an auto-response waiting for this one sees it past `Open`.
                self.conversation_opened.notify_waiters();
            }
            state = next;
        }
    }

    /// With several nodes: the node holding the lease of an account `effect` must use (one of
    /// the channel's agents resolving the contact, the conversation's agent creating its topic,
    /// the agent re-fetching a file), when none of them is connected here and another live node
    /// holds one. Such a step cannot be
    /// performed here: the claimant would wait for a permit it never gets while the holder's
    /// node sees the workflow claimed.
    async fn held_elsewhere(
        &self,
        state: &Workflow,
        effect: &Effect,
        node: &NodeId,
    ) -> Result<Option<NodeId>, CrmError> {
        // The accounts that can perform the step; any one of them connected here will do.
        let accounts = match effect {
            Effect::Resolve => match state {
                Workflow::AutoResponse(workflow) => self
                    .answering_channel(&workflow.channel_id)
                    .map(|channel| {
                        channel
                            .agents
                            .iter()
                            .map(|agent| agent.session_name.clone())
                            .collect()
                    })
                    .unwrap_or_default(),
                _ => Vec::new(),
            },
            Effect::EnsureTopic { conversation, .. } => {
                match self.store.conversation(*conversation).await? {
                    Some(conversation) => vec![conversation.agent],
                    None => Vec::new(),
                }
            }
            Effect::RefetchFile { agent, .. } => vec![agent.clone()],
            // The delivering agent looks an author without a username up again itself.
            Effect::OpenConversation {
                agent, resolver, ..
            } if agent != resolver
                && matches!(
                    state,
                    Workflow::AutoResponse(AutoResponse {
                        contact: ContactRef::Author(_),
                        ..
                    })
                ) =>
            {
                vec![agent.clone()]
            }
            _ => Vec::new(),
        };
        if accounts.is_empty()
            || accounts
                .iter()
                .any(|account| self.engine.account(account).is_some())
        {
            return Ok(None);
        }
        let now = self.now();
        let leases = self.store.session_leases().await?;
        Ok(accounts.iter().find_map(|account| {
            leases
                .iter()
                .find(|lease| &lease.session == account)
                .and_then(|lease| lease.holder_at(now).cloned())
                .filter(|holder| holder != node)
        }))
    }

    async fn perform(
        self: &Arc<Self>,
        id: WorkflowId,
        state: &Workflow,
        effect: Effect,
    ) -> Result<Event, CrmError> {
        Ok(match effect {
            Effect::Finished => Event::Woke,
            Effect::SleepUntil(at) => {
                let clock = self.engine.clock();
                let deadline = clock.instant(clock.from_unix(at));
                // A reply waiting for its conversation, or an auto-response for another one
                // to the same person: a conversation opening wakes it early.
                let awaits_conversation = matches!(
                    state,
                    Workflow::RelayToTopic(RelayToTopic {
                        step: RelayStep::AwaitConversation { .. },
                        ..
                    }) | Workflow::AutoResponse(AutoResponse {
                        step: AutoResponseStep::Queue { .. },
                        ..
                    })
                );
                if awaits_conversation {
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => {}
                        _ = self.conversation_opened.notified() => {}
                    }
                } else {
                    tokio::time::sleep_until(deadline).await;
                }
                Event::Woke
            }
            Effect::Resolve => {
                let Workflow::AutoResponse(workflow) = state else {
                    return Ok(Event::Woke);
                };
                match self.answering_channel(&workflow.channel_id) {
                    Some(channel) => self.resolve(&channel, &workflow.contact).await,
                    None => Event::Skipped {
                        reason: SkipReason::ChannelOff,
                    },
                }
            }
            Effect::QueueAutoResponse { peer, resolver } => {
                let Workflow::AutoResponse(workflow) = state else {
                    return Ok(Event::Woke);
                };
                self.queue_auto_response(id, workflow, &resolver, &peer)
                    .await?
            }
            Effect::AwaitOutbox(outbox) => {
                Event::Delivered(self.engine.await_delivery(outbox).await?)
            }
            Effect::OpenConversation {
                agent,
                resolver,
                peer,
            } => {
                let Workflow::AutoResponse(workflow) = state else {
                    return Ok(Event::Woke);
                };
                self.open_conversation(workflow, agent, &resolver, &peer)
                    .await?
            }
            Effect::EnsureTopic {
                conversation,
                stale,
            } => self.ensure_topic(conversation, stale).await?,
            Effect::QueuePost {
                conversation,
                post,
                topic,
                replaced,
                by_main,
            } => {
                self.queue_post(state, conversation, &post, topic, replaced, by_main)
                    .await?
            }
            Effect::RecordPost {
                conversation,
                post,
                outbox,
                message,
            } => {
                self.record_post(state, conversation, &post, outbox, message)
                    .await?
            }
            Effect::FindConversations => {
                let Workflow::RelayToTopic(relay) = state else {
                    return Ok(Event::Woke);
                };
                let conversations = self
                    .store
                    .conversations_with_contact(&relay.agent, relay.message.chat)
                    .await?
                    .into_iter()
                    .map(|conversation| conversation.id)
                    .collect();
                Event::ConversationsFound { conversations }
            }
            Effect::Fork { conversations } => {
                let Workflow::RelayToTopic(relay) = state else {
                    return Ok(Event::Woke);
                };
                let now = self.now();
                let mut started = Vec::new();
                for conversation in conversations {
                    let (id, _) = self
                        .store
                        .start_workflow(&NewWorkflow {
                            key: RelayToTopic::key(conversation, relay.message.message_id),
                            state: Workflow::RelayToTopic(RelayToTopic::into_conversation(
                                relay.agent.clone(),
                                relay.message.clone(),
                                conversation,
                            )),
                            created_at: now,
                        })
                        .await?;
                    started.push(id);
                }
                for id in started {
                    let _ = self.wake.send(id);
                }
                Event::Forked
            }
            Effect::QueueToContact { conversation } => {
                let Workflow::MediaToContact(relay) = state else {
                    return Ok(Event::Woke);
                };
                self.queue_media_to_contact(conversation, relay).await?
            }
            Effect::AutoReply { conversation } => {
                let Workflow::RelayToTopic(relay) = state else {
                    return Ok(Event::Woke);
                };
                self.ai_on_contact(conversation, &relay.message).await?;
                self.auto_reply(conversation, &relay.message).await?;
                Event::Replied
            }
            Effect::RefetchFile {
                agent,
                chat,
                message_id,
            } => Event::FileRefetched {
                file: self
                    .refetch_file(&agent, chat, message_id)
                    .await
                    .map(Box::new),
            },
            Effect::AiGenerate { conversation, turn } => {
                self.ai_generate(conversation, turn).await?
            }
            Effect::AiQueueReply { conversation, turn } => {
                self.ai_queue_reply(state, conversation, turn).await?
            }
            Effect::AiRecordSent { conversation, turn } => {
                self.ai_record_sent(state, conversation, turn).await?
            }
        })
    }

    /// The channel, if it still answers vacancies' authors with CRM.
    fn answering_channel(&self, channel_id: &str) -> Option<Channel> {
        self.config()
            .channel(channel_id)
            .filter(|channel| answers(channel))
            .cloned()
    }

    // ----- Auto-responses -----

    /// Resolves a contact through the agent a first contact would go to now, or failing that
    /// through any connected agent of the channel whose resolve limiter allows it (resolving is
    /// limited apart from sending, so an agent waiting out a send flood may still resolve). Each
    /// call is made with a permit of the agent's scheduler; when none allows one within
    /// `resolve_retry`, the workflow tries again later.
    ///
    /// A vacancy's author without a username is found through their message, which only an agent
    /// that can see the group finds: one refused the group (a private one it is not in) leaves the
    /// contact to the next agent, and when every agent was refused, nobody can reach them.
    async fn resolve(&self, channel: &Channel, contact: &ContactRef) -> Event {
        let chosen = self
            .engine
            .pool(&channel.id)
            .get_available_agent()
            .await
            .ok()
            .flatten();
        let mut order: Vec<SessionName> = chosen.into_iter().collect();
        for agent in &channel.agents {
            if !order.contains(&agent.session_name) {
                order.push(agent.session_name.clone());
            }
        }
        // Refused the group by an agent, and whether another could not try for now (it may see it).
        let (mut refused, mut deferred) = (None, false);
        while let Some(permit) = self
            .engine
            .call_permit(
                &order,
                CallClass::ResolveUsername,
                Some(self.settings.resolve_retry),
            )
            .await
        {
            let agent = permit.session().clone();
            // Tried once per step: an account-level failure moves on to the next agent.
            order.retain(|other| other != &agent);
            let result = match contact {
                ContactRef::Username(username) => permit.account().resolve_username(username).await,
                ContactRef::Author(author) => permit.account().resolve_message_author(author).await,
            };
            permit.report(&result);
            match result {
                Ok(peer) => {
                    if peer.kind != PeerKind::User {
                        tracing::info!(target: "crm", channel = %channel.id, contact = %contact, kind = ?peer.kind, "no auto-response: the contact is not a person");
                    }
                    return Event::Resolved { agent, peer };
                }
                Err(error) if error.is_account_level() => {
                    tracing::debug!(target: "crm", agent = %agent, %error, "could not resolve through this agent");
                    deferred = true;
                }
                Err(error @ TelegramError::ChatForbidden { .. })
                    if matches!(contact, ContactRef::Author(_)) =>
                {
                    tracing::debug!(target: "crm", agent = %agent, %error, "this agent cannot see the vacancy's group");
                    refused = Some(error);
                }
                Err(error) => {
                    tracing::info!(target: "crm", channel = %channel.id, contact = %contact, %error, "no auto-response: the contact cannot be reached");
                    return Event::Unreachable { error };
                }
            }
        }
        match refused {
            Some(error) if order.is_empty() && !deferred => {
                tracing::info!(target: "crm", channel = %channel.id, contact = %contact, %error, "no auto-response: no agent of the channel can see the vacancy's group");
                Event::Unreachable { error }
            }
            _ => Event::NoResolverNow,
        }
    }

    async fn queue_auto_response(
        &self,
        id: WorkflowId,
        workflow: &AutoResponse,
        resolver: &SessionName,
        peer: &Peer,
    ) -> Result<Event, CrmError> {
        let skipped = |reason| Ok(Event::Skipped { reason });
        let Some(channel) = self.answering_channel(&workflow.channel_id) else {
            return skipped(SkipReason::ChannelOff);
        };
        let group = channel
            .crm_group_id
            .expect("answering channels have a CRM group");
        let contact = peer.id();
        let key = auto_response_key(&channel.id, contact);
        // The channel's message to this contact, if it exists (a repeat of this step after a
        // crash, or an answer to an earlier vacancy): go on with it. Only a new one is subject to
        // the cooldown, which that very message would otherwise trip.
        if let Some(existing) = self.store.outbox_by_key(&key).await? {
            return Ok(Event::Queued {
                outbox: existing.id,
            });
        }
        match self.queue_turn(id, workflow, &channel, contact).await? {
            QueueTurn::Go => {}
            QueueTurn::Wait => {
                tracing::debug!(target: "crm", channel = %channel.id, contact = %workflow.contact, "the auto-response waits for another one to the same person");
                return Ok(Event::AnotherAnswersFirst);
            }
            QueueTurn::Skip(reason) => {
                tracing::info!(target: "crm", channel = %channel.id, contact = %workflow.contact, %reason, "no auto-response");
                return skipped(reason);
            }
        }
        if let Some(cooldown) = self.settings.cross_channel_cooldown
            && let Some(last) = self.store.last_auto_response_to(contact).await?
            && self.now().0 < last.plus(cooldown).0
        {
            tracing::info!(target: "crm", channel = %channel.id, contact = %workflow.contact, "no auto-response: the contact got one from another channel recently");
            return skipped(SkipReason::Cooldown);
        }
        // A contact who already talks to one of this channel's agents in this group hears from
        // that agent again, not from a stranger.
        let existing = self.store.conversation_by_contact(group, contact).await?;
        let sticky = existing.as_ref().map(|c| c.agent.clone()).filter(|agent| {
            channel
                .agents
                .iter()
                .any(|member| &member.session_name == agent)
        });
        let first_contact = sticky.is_none();
        // That agent's own reference to them, when it has one: better than finding them again;
        // else the message it found them through, which it can see (the new vacancy's may be in
        // a group it is not in).
        let known = existing
            .as_ref()
            .filter(|_| !first_contact)
            .map(|conversation| {
                (
                    conversation.contact_peer,
                    conversation.contact_author.clone(),
                )
            });
        // A private group's message is seen by its members only: the agent that found its
        // author there writes to them.
        let sticky = sticky.or_else(|| match &workflow.contact {
            ContactRef::Author(author) if author.chat_username.is_none() => Some(resolver.clone()),
            ContactRef::Author(_) | ContactRef::Username(_) => None,
        });
        let Ok(template) = parse_template(&channel.auto_response_template) else {
            // Validation rejects such a configuration; this is a belt to its braces.
            tracing::error!(target: "crm", channel = %channel.id, "the auto-response template does not parse");
            return skipped(SkipReason::TemplateInvalid);
        };
        let text = template.render(&TemplateValues {
            first_name: &peer.name,
            channel_name: &channel.name,
            source_title: &workflow.vacancy.source_title,
            vacancy_link: &workflow.vacancy.link,
        });
        let ticket = self
            .engine
            .enqueue(NewOutboxMessage {
                idempotency_key: Some(key),
                ..self.auto_response_message(
                    &channel,
                    workflow,
                    peer,
                    (sticky, known),
                    first_contact,
                    text,
                )
            })
            .await?;
        Ok(Event::Queued { outbox: ticket.id })
    }

    /// Whether `workflow` (stored as `id`, answering in `channel`) may queue its answer to
    /// `contact` now: weighed against every unfinished auto-response, and every other channel's
    /// answer to the same vacancy, on record (the store, not this executor's memory: another
    /// node, or a workflow not running now, counts the same). One vacancy's answers are started
    /// together (one intake transaction), so the earlier one is on record before the later one
    /// looks; each saves its `Queue` step before it looks.
    async fn queue_turn(
        &self,
        id: WorkflowId,
        workflow: &AutoResponse,
        channel: &Channel,
        contact: ChatId,
    ) -> Result<QueueTurn, CrmError> {
        let config = self.config();
        let mut records = self.store.active_workflows().await?;
        // Every configured channel's, answering or not: one switched off since it answered still
        // answered this vacancy.
        for other in config
            .channels
            .iter()
            .filter(|other| other.id != channel.id)
        {
            let key = AutoResponse::key(
                &other.id,
                workflow.vacancy.source,
                workflow.vacancy.message_id,
            );
            if let Some(record) = self.store.workflow_by_key(&key).await?
                && !records.iter().any(|known| known.id == record.id)
            {
                records.push(record);
            }
        }
        let cooldown = self.settings.cross_channel_cooldown.is_some();
        let mut others = Vec::new();
        for record in &records {
            let Workflow::AutoResponse(other) = &record.state else {
                continue;
            };
            let same_vacancy = other.vacancy.source == workflow.vacancy.source
                && other.vacancy.message_id == workflow.vacancy.message_id;
            if record.id == id || !(same_vacancy || other.contact_id() == Some(contact)) {
                continue;
            }
            let message = match self
                .store
                .outbox_by_key(&auto_response_key(&other.channel_id, contact))
                .await?
            {
                None => AnswerMessage::None,
                Some(message) if message.message.created_at < record.created_at => {
                    AnswerMessage::Earlier
                }
                Some(message) => match message.status {
                    OutboxStatus::Pending => AnswerMessage::Pending,
                    OutboxStatus::Sent => AnswerMessage::Sent,
                    OutboxStatus::Failed | OutboxStatus::Expired => AnswerMessage::Ended,
                },
            };
            others.push(OtherAnswer {
                id: record.id,
                workflow: other,
                message,
                holds_contact: cooldown
                    || config
                        .channel(&other.channel_id)
                        .is_some_and(|other| other.crm_group_id == channel.crm_group_id),
            });
        }
        Ok(workflow.queue_turn(id, contact, others))
    }

    fn auto_response_message(
        &self,
        channel: &Channel,
        workflow: &AutoResponse,
        peer: &Peer,
        (sticky, known): (Option<SessionName>, Option<KnownContact>),
        first_contact: bool,
        text: String,
    ) -> NewOutboxMessage {
        let now = self.now();
        NewOutboxMessage {
            channel_id: channel.id.clone(),
            kind: OutboxKind::AutoResponse,
            first_contact,
            sender: SenderSelection::ChannelAgents { sticky },
            // Whichever agent sends finds the person itself, as the resolver did.
            recipient: match (&peer.username, &workflow.contact, known) {
                (Some(username), ..) | (None, ContactRef::Username(username), _) => {
                    Recipient::Username {
                        username: username.clone(),
                    }
                }
                (None, ContactRef::Author(_), Some((Some(peer), _))) => Recipient::KnownPeer {
                    peer,
                    username: None,
                },
                (None, ContactRef::Author(_), Some((None, Some(author)))) => {
                    Recipient::Author { author }
                }
                (None, ContactRef::Author(author), Some((None, None)) | None) => {
                    Recipient::Author {
                        author: author.clone(),
                    }
                }
            },
            content: MessageContent::plain(fit_message(&text)),
            idempotency_key: None,
            created_at: now,
            not_before: self.human_delay(channel, now),
            expires_at: UnixMillis(0),
        }
    }

    /// For an author who has no username, delivered to by an agent other than the one that
    /// resolved them: that agent's own reference, found again through the vacancy's message (its
    /// send has just done so), so an operator's answer can reach the contact before they write.
    /// `None` when it cannot be had now (the contact's first message will leave it).
    async fn delivering_agents_reference(
        &self,
        agent: &SessionName,
        contact: &ContactRef,
    ) -> Option<PeerRef> {
        let ContactRef::Author(author) = contact else {
            return None;
        };
        let permit = self
            .engine
            .call_permit(
                std::slice::from_ref(agent),
                CallClass::ResolveUsername,
                Some(self.settings.resolve_retry),
            )
            .await?;
        let result = permit.account().resolve_message_author(author).await;
        permit.report(&result);
        match result {
            Ok(found) => Some(found.peer),
            Err(error) => {
                tracing::warn!(target: "crm", %agent, contact = %contact, %error, "the delivering agent could not find the contact again; answers wait for the contact's message");
                None
            }
        }
    }

    async fn open_conversation(
        &self,
        workflow: &AutoResponse,
        agent: SessionName,
        resolver: &SessionName,
        peer: &Peer,
    ) -> Result<Event, CrmError> {
        let config = self.config();
        let Some(group) = config
            .channel(&workflow.channel_id)
            .and_then(|channel| channel.crm_group_id)
        else {
            return Ok(Event::Skipped {
                reason: SkipReason::ChannelOff,
            });
        };
        // The access hash is the resolving agent's own: keep it only for that agent.
        let contact_peer = if &agent == resolver {
            Some(peer.peer)
        } else {
            self.delivering_agents_reference(&agent, &workflow.contact)
                .await
        };
        let now = self.now();
        self.store
            .record_auto_response(&workflow.channel_id, peer.id(), now)
            .await?;
        let (conversation, _) = self
            .store
            .open_conversation(&NewConversation {
                channel_id: workflow.channel_id.clone(),
                group,
                contact: peer.id(),
                contact_username: peer
                    .username
                    .clone()
                    .or_else(|| workflow.contact.username().cloned()),
                contact_name: peer.full_name(),
                contact_peer,
                // Without a username, the message is how the agent finds them again until it
                // holds a reference of its own.
                contact_author: match &workflow.contact {
                    ContactRef::Author(author) if peer.username.is_none() => Some(author.clone()),
                    ContactRef::Author(_) | ContactRef::Username(_) => None,
                },
                agent: agent.clone(),
                created_at: now,
            })
            .await?;
        if let (Some(ai), AutoResponseStep::Open { outbox, .. }) = (&self.ai, &workflow.step) {
            // The vacancy and the auto-response begin the history the AI sees (once each, so
            // a replay after a crash adds nothing).
            let answer = self
                .store
                .outbox_message(*outbox)
                .await?
                .map(|message| message.message.content.text)
                .unwrap_or_default();
            self.update_ai(ai.store.as_ref(), &conversation, |record| {
                record.vacancy_answered(&workflow.vacancy.text, &answer, now)
            })
            .await?;
        }
        tracing::info!(target: "crm", channel = %workflow.channel_id, contact = %workflow.contact, agent = %agent, "✅ автоответ отправлен");
        Ok(Event::Opened {
            conversation: conversation.id,
        })
    }

    /// The instant a human-like message may go out: now plus the channel's random delay, or
    /// `None` (at once, no typing) with `instant_response`.
    fn human_delay(&self, channel: &Channel, now: UnixMillis) -> Option<UnixMillis> {
        if channel.instant_response {
            return None;
        }
        let delay = &channel.human_delay;
        let seconds = lock(&self.rng).random_range(delay.min_seconds..=delay.max_seconds);
        Some(now.plus_seconds(u64::from(seconds)))
    }

    // ----- Topics -----

    /// The conversation's topic, created if it has none or if `stale` (a topic found deleted) is
    /// still the one on record. Each creator's `random_id` is on record before its call, so a
    /// retry after a crash returns the topic created then instead of a second one.
    async fn ensure_topic(
        &self,
        id: ConversationId,
        stale: Option<TopicId>,
    ) -> Result<Event, CrmError> {
        let topic_lock = Arc::clone(lock(&self.topic_locks).entry(id).or_default());
        let _guard = topic_lock.lock().await;
        let Some(conversation) = self.store.conversation(id).await? else {
            return Ok(Event::NoConversation);
        };
        if let Some(topic) = conversation.topic
            && Some(topic) != stale
        {
            return Ok(Event::TopicReady { topic });
        }
        if conversation.topic.is_some() {
            self.store.set_conversation_topic(id, None).await?;
        }
        let title = topic_title(&conversation);
        // The conversation's agent creates the topic; the main account (usually the group's
        // admin) when the agent may not.
        let creators = std::iter::once(conversation.agent.clone())
            .chain(self.engine.main_session().cloned())
            .collect::<Vec<_>>();
        for creator in creators {
            // Paced by the creator's scheduler. One that cannot create it within `topic_retry`
            // (not connected yet, in a flood wait) is waited for — the workflow tries again —
            // never replaced by the next: its earlier call may have created the topic without the
            // answer being recorded (a stop or crash mid-call), and only a repeat by the same
            // account with the same `random_id` finds that topic instead of creating a second
            // one (Telegram deduplicates `random_id` per sender).
            let Some(permit) = self
                .engine
                .call_permit(
                    std::slice::from_ref(&creator),
                    CallClass::CreateForumTopic,
                    Some(self.settings.topic_retry),
                )
                .await
            else {
                return Ok(Event::NoTopicNow);
            };
            // Not from the seeded generator (a restart would repeat it); the store keeps it.
            let proposed = RandomId(rand::random());
            let random_id = self
                .store
                .begin_topic_creation(id, stale, &creator, proposed)
                .await?;
            let created = permit
                .account()
                .create_forum_topic(conversation.group, &title, random_id)
                .await;
            permit.report(&created);
            match created {
                Ok(topic) => {
                    self.store.set_conversation_topic(id, Some(topic)).await?;
                    tracing::info!(target: "crm", group = %conversation.group, topic = topic.0, by = %creator, "📂 тема создана: {title}");
                    return Ok(Event::TopicReady { topic });
                }
                // Being created by an earlier call with this id: ask again later, with it.
                Err(TelegramError::RandomIdDuplicate) => return Ok(Event::NoTopicNow),
                // The answer was lost: the topic may exist. Only this account may ask again.
                Err(error @ TelegramError::Network { .. }) => {
                    tracing::warn!(target: "crm", group = %conversation.group, by = %creator, %error, "a topic creation's answer was lost; the same account asks again");
                    return Ok(Event::NoTopicNow);
                }
                // Refused (no right to create topics, a flood wait …): nothing was created, the
                // next account may.
                Err(error) => {
                    tracing::warn!(target: "crm", group = %conversation.group, by = %creator, %error, "could not create a topic");
                }
            }
        }
        Ok(Event::NoTopicNow)
    }

    /// Queues a post into the conversation's topic (sticky to the conversation's agent).
    async fn queue_post(
        &self,
        state: &Workflow,
        id: ConversationId,
        post: &PostKind,
        topic: TopicId,
        replaced: bool,
        by_main: bool,
    ) -> Result<Event, CrmError> {
        let Some(conversation) = self.store.conversation(id).await? else {
            return Ok(Event::NoConversation);
        };
        // The account that sends the post: the conversation's agent, or for a contact's file the
        // agent that received it (only its file reference is valid).
        let mut sender = conversation.agent.clone();
        let (key, content) = match (post, state) {
            (
                PostKind::Info,
                Workflow::AutoResponse(AutoResponse {
                    channel_id,
                    vacancy,
                    step: AutoResponseStep::Post { agent, .. },
                    ..
                }),
            ) => {
                let channel_name = self
                    .config()
                    .channel(channel_id)
                    .map_or_else(|| channel_id.clone(), |channel| channel.name.clone());
                (
                    format!(
                        "crm_info:{}:{}:{}",
                        id.0,
                        vacancy.source.get(),
                        vacancy.message_id
                    ),
                    info_post(&conversation, &channel_name, vacancy, agent),
                )
            }
            (
                PostKind::Mirror,
                Workflow::AutoResponse(AutoResponse {
                    step: AutoResponseStep::Post { agent, outbox, .. },
                    ..
                }),
            ) => {
                let text = self
                    .store
                    .outbox_message(*outbox)
                    .await?
                    .map(|message| message.message.content.text)
                    .unwrap_or_default();
                (
                    format!("crm_mirror:{}:{}", id.0, outbox.0),
                    MessageContent::plain(fit_message(&format!("🤖 Агент ({agent}):\n\n{text}"))),
                )
            }
            (PostKind::ContactMessage, Workflow::RelayToTopic(relay)) => (
                refetched_key(
                    RelayToTopic::key(id, relay.message.message_id),
                    relay.file_refetched,
                ),
                match &relay.message.file {
                    // The file's reference is the receiving agent's own: the main account cannot
                    // send it, so its post says why the file is not there.
                    Some(_) if by_main => MessageContent::plain(fit_message(&format!(
                        "{}\n\n⚠️ Файл не скопирован в тему: агент {} не состоит в CRM-группе",
                        contact_label(&relay.message).unwrap_or_default(),
                        relay.agent
                    ))),
                    Some(file) => {
                        sender = relay.agent.clone();
                        MessageContent::with_media(file.clone(), contact_caption(&relay.message))
                    }
                    None => {
                        MessageContent::plain(contact_label(&relay.message).unwrap_or_default())
                    }
                },
            ),
            (
                PostKind::MediaNote,
                Workflow::RelayToTopic(RelayToTopic {
                    message,
                    step: RelayStep::Note { delivery, .. },
                    ..
                }),
            ) => (
                format!("relay_note:{}:{}", id.0, message.message_id),
                MessageContent::plain(fit_message(&format!(
                    "{}\n\n⚠️ Файл не скопирован в тему: {}",
                    contact_label(message).unwrap_or_default(),
                    delivery_reason(delivery)
                ))),
            ),
            (
                PostKind::DeliveryNote,
                Workflow::MediaToContact(MediaToContact {
                    message,
                    step: MediaToContactStep::Note { delivery, .. },
                    ..
                }),
            ) => (
                format!(
                    "media_note:{}:{}:{}",
                    id.0,
                    message.chat.get(),
                    message.message_id
                ),
                MessageContent::plain(fit_message(&format!(
                    "⚠️ Файл не доставлен контакту ({}): {}",
                    message.media.map_or("[media]", media_label),
                    delivery_reason(delivery)
                ))),
            ),
            (PostKind::AiSuggestion, Workflow::AiTurn(turn)) => ai::ai_post(id, turn, true),
            (PostKind::AiMirror, Workflow::AiTurn(turn)) => ai::ai_post(id, turn, false),
            // A post that does not belong to its workflow: nothing to post.
            _ => return Ok(Event::NoConversation),
        };
        // A post into a recreated topic needs its own key; so does the main account's try after
        // the agent's was refused (that row has ended).
        let key = if replaced {
            format!("{key}:{}", topic.0)
        } else {
            key
        };
        let key = if by_main { format!("{key}:main") } else { key };
        let mut message = topic_post(&conversation, topic, content, key, self.now());
        message.sender = if by_main {
            tracing::info!(target: "crm", conversation = id.0, agent = %sender, "the agent may not post in the CRM group; the main account posts instead");
            SenderSelection::MainAccount
        } else {
            SenderSelection::ChannelAgents {
                sticky: Some(sender),
            }
        };
        let ticket = self.engine.enqueue(message).await?;
        Ok(Event::Queued { outbox: ticket.id })
    }

    /// Remembers a delivered post as jobbot's own and as a relay record (both idempotent).
    async fn record_post(
        &self,
        state: &Workflow,
        id: ConversationId,
        post: &PostKind,
        outbox: OutboxId,
        message: Option<SentMessage>,
    ) -> Result<Event, CrmError> {
        let Some(conversation) = self.store.conversation(id).await? else {
            return Ok(Event::NoConversation);
        };
        if let Some(message) = message {
            self.store
                .record_own_post(conversation.group, message.message_id, Some(id))
                .await?;
            if let (PostKind::AiSuggestion, Workflow::AiTurn(turn)) = (post, state) {
                self.ai_suggestion_posted(&conversation, turn.turn, message.message_id)
                    .await?;
            }
        }
        let (direction, source) = match (post, state) {
            (PostKind::ContactMessage | PostKind::MediaNote, Workflow::RelayToTopic(relay)) => (
                RelayDirection::ContactToTopic,
                Some((relay.message.chat, relay.message.message_id)),
            ),
            _ => (RelayDirection::Service, None),
        };
        let now = self.now();
        self.store
            .record_relay(&RelayRecord {
                conversation: id,
                direction,
                source,
                outbox: Some(outbox),
                at: now,
            })
            .await?;
        self.store.touch_conversation(id, now).await?;
        Ok(Event::Recorded)
    }

    /// Asks the automatic replier about a relayed message and queues its answer (to the contact,
    /// by the conversation's agent) with a mirror in the topic. Both are keyed by the message, so
    /// a repeat queues nothing new.
    async fn auto_reply(
        &self,
        id: ConversationId,
        incoming: &IncomingMessage,
    ) -> Result<(), CrmError> {
        let Some(conversation) = self.store.conversation(id).await? else {
            return Ok(());
        };
        let Some(reply) = self.replier.reply(&conversation, incoming).await else {
            return Ok(());
        };
        self.send_to_contact(
            &conversation,
            reply.clone(),
            format!("auto_reply:{}:{}", id.0, incoming.message_id),
            None,
        )
        .await?;
        if let Some(topic) = conversation.topic {
            self.engine
                .enqueue(topic_post(
                    &conversation,
                    topic,
                    MessageContent::plain(fit_message(&format!("🤖 Автоответ:\n\n{}", reply.text))),
                    format!("auto_reply_mirror:{}:{}", id.0, incoming.message_id),
                    self.now(),
                ))
                .await?;
        }
        Ok(())
    }

    // ----- Taking updates in -----

    /// Handles one update durably: what must follow it is on record when this returns.
    async fn on_telegram(
        self: &Arc<Self>,
        session: SessionName,
        event: AccountEvent,
    ) -> Result<(), CrmError> {
        let AccountEvent::NewMessage(message) = event else {
            return Ok(());
        };
        if message.is_service || message.outgoing {
            return Ok(());
        }
        if message.is_private() {
            self.on_private_message(session, message).await
        } else if message.topic_id.is_some() && self.is_crm_group(message.chat) {
            self.on_topic_message(session, message).await
        } else {
            Ok(())
        }
    }

    fn is_crm_group(&self, chat: ChatId) -> bool {
        self.config()
            .enabled_channels()
            .any(|channel| channel.crm_enabled && channel.crm_group_id == Some(chat))
    }

    /// A contact wrote to an agent: into the topic of each of their conversations with it, or,
    /// when their auto-response has no conversation yet, once it opens.
    async fn on_private_message(
        self: &Arc<Self>,
        session: SessionName,
        message: IncomingMessage,
    ) -> Result<(), CrmError> {
        let Some(sender) = &message.sender else {
            return Ok(());
        };
        if sender.kind != PeerKind::User || self.is_own_user(sender.id).await {
            return Ok(());
        }
        if contact_label(&message).is_none() {
            return Ok(());
        }
        let now = self.now();
        // Asked before the conversations: an auto-response finishes only after its conversation
        // is stored, so one of the two answers sees it.
        let awaiting = self.awaits_conversation(message.chat).await?;
        let conversations = self
            .store
            .conversations_with_contact(&session, message.chat)
            .await?;
        // Their own reference, as this agent received it: the agent can answer them by it even
        // without their username (the conversation may have had only the username).
        if let Some(peer) = sender.peer.filter(|peer| peer.id == message.chat) {
            for conversation in &conversations {
                if conversation.contact_peer.is_none() {
                    self.store
                        .remember_contact_peer(conversation.id, peer)
                        .await?;
                }
            }
        }
        let mut started = Vec::new();
        for conversation in &conversations {
            let (id, _) = self
                .store
                .start_workflow(&NewWorkflow {
                    key: RelayToTopic::key(conversation.id, message.message_id),
                    state: Workflow::RelayToTopic(RelayToTopic::into_conversation(
                        session.clone(),
                        message.clone(),
                        conversation.id,
                    )),
                    created_at: now,
                })
                .await?;
            started.push(id);
        }
        if conversations.is_empty() && awaiting {
            let (id, _) = self
                .store
                .start_workflow(&NewWorkflow {
                    key: RelayToTopic::awaiting_key(&session, message.chat, message.message_id),
                    state: Workflow::RelayToTopic(RelayToTopic::awaiting_conversation(
                        session.clone(),
                        message.clone(),
                        now,
                        &self.workflows,
                    )),
                    created_at: now,
                })
                .await?;
            started.push(id);
        }
        for id in started {
            let _ = self.wake.send(id);
        }
        Ok(())
    }

    /// An operator wrote in a topic: to the contact, by the conversation's agent. Queued before
    /// the next update is taken; the key makes the several accounts that see one group message
    /// queue it once.
    async fn on_topic_message(
        self: &Arc<Self>,
        session: SessionName,
        message: IncomingMessage,
    ) -> Result<(), CrmError> {
        let (group, Some(topic)) = (message.chat, message.topic_id) else {
            return Ok(());
        };
        // Anonymous admins post as the group itself: no person to relay for.
        let Some(sender) = &message.sender else {
            return Ok(());
        };
        if sender.kind != PeerKind::User
            || self.is_own_user(sender.id).await
            || self.store.is_own_post(group, message.message_id).await?
        {
            return Ok(());
        }
        let Some(conversation) = self.store.conversation_by_topic(group, topic).await? else {
            return Ok(());
        };
        if sender.id == conversation.contact {
            return Ok(());
        }
        // An operator's message hands the conversation over (or, as "+", sends the pending AI
        // suggestion instead of being relayed).
        if self.ai_on_operator(&conversation, &message.text).await? {
            return Ok(());
        }
        if message.file.is_some() {
            // A file goes out by the conversation's agent, from its own copy of the message: the
            // file reference of any other account's copy is refused (FILE_REFERENCE_EXPIRED).
            if session != conversation.agent {
                // An agent outside the CRM group has no copy: the main account, which sees
                // every message of the group, tells the operator, and the caption still goes.
                if self.engine.main_session() == Some(&session)
                    && self.outside_group(&conversation.agent, group).await
                {
                    self.file_not_relayable(&conversation, topic, &message)
                        .await?;
                }
                return Ok(());
            }
            let (id, _) = self
                .store
                .start_workflow(&NewWorkflow {
                    key: MediaToContact::key(group, message.message_id),
                    state: Workflow::MediaToContact(MediaToContact::new(
                        session,
                        conversation.id,
                        message,
                    )),
                    created_at: self.now(),
                })
                .await?;
            let _ = self.wake.send(id);
            return Ok(());
        }
        if message.text.trim().is_empty() {
            if let Some(media) = message.media {
                tracing::info!(target: "crm", conversation = conversation.id.0, media = media_label(media), "media without a file (a poll, a location, …) are not relayed");
            }
            return Ok(());
        }
        self.relay_text_to_contact(&conversation, &message).await
    }

    /// An operator's text (or a file's caption) from a topic, to the contact, once per message.
    async fn relay_text_to_contact(
        &self,
        conversation: &Conversation,
        message: &IncomingMessage,
    ) -> Result<(), CrmError> {
        let (group, id) = (message.chat, message.message_id);
        self.send_to_contact(
            conversation,
            MessageContent::plain(fit_message(&message.text)),
            format!("relay_to_contact:{}:{id}", group.get()),
            Some((group, id)),
        )
        .await?;
        Ok(())
    }

    /// Whether `agent` is known to be outside `group` (asked of Telegram: `ChatForbidden`, or not
    /// a member). An agent that is not connected, or cannot be asked now, is taken to be in it:
    /// if it is, its catch-up brings it the message.
    async fn outside_group(&self, agent: &SessionName, group: ChatId) -> bool {
        let Some(account) = self.engine.account(agent) else {
            return false;
        };
        match account.chat_access(group).await {
            Ok(access) => !access.member,
            // Telegram's own word that the private group is closed to it; a chat merely missing
            // from the session's cache (`CHAT_NOT_KNOWN_TO_ACCOUNT`) says nothing.
            Err(TelegramError::ChatForbidden { code }) if code == "CHANNEL_PRIVATE" => true,
            Err(error) => {
                tracing::debug!(target: "crm", %agent, %group, %error, "could not tell whether the agent is in the CRM group");
                false
            }
        }
    }

    /// An operator's file the conversation's agent cannot see (it is outside the CRM group): a
    /// note in the topic by the main account says so, and the caption goes to the contact as
    /// text. Each at most once (keys), queued before the next update is taken.
    async fn file_not_relayable(
        &self,
        conversation: &Conversation,
        topic: TopicId,
        message: &IncomingMessage,
    ) -> Result<(), CrmError> {
        let (group, id) = (message.chat, message.message_id);
        let note = MessageContent::plain(fit_message(&format!(
            "⚠️ Файл не доставлен контакту ({}): агент {} не состоит в CRM-группе и не видит файлов темы",
            message.media.map_or("[media]", media_label),
            conversation.agent
        )));
        let mut post = topic_post(
            conversation,
            topic,
            note,
            format!("media_outside_group:{}:{id}", group.get()),
            self.now(),
        );
        post.sender = SenderSelection::MainAccount;
        self.engine.enqueue(post).await?;
        if !message.text.trim().is_empty() {
            self.relay_text_to_contact(conversation, message).await?;
        }
        Ok(())
    }

    /// Queues an operator's file to the contact (see [`MediaToContact`]): by the conversation's
    /// agent, which received the message the file reference belongs to.
    async fn queue_media_to_contact(
        &self,
        id: ConversationId,
        relay: &MediaToContact,
    ) -> Result<Event, CrmError> {
        let Some(conversation) = self.store.conversation(id).await? else {
            return Ok(Event::NoConversation);
        };
        let Some(file) = relay.message.file.clone() else {
            return Ok(Event::NoConversation);
        };
        let caption = fit_to_utf16(&relay.message.text, MAX_CAPTION_UTF16);
        let queued = self
            .send_to_contact(
                &conversation,
                MessageContent::with_media(file, caption),
                refetched_key(
                    format!(
                        "relay_to_contact:{}:{}",
                        relay.message.chat.get(),
                        relay.message.message_id
                    ),
                    relay.file_refetched,
                ),
                Some((relay.message.chat, relay.message.message_id)),
            )
            .await?;
        Ok(match queued {
            Some(outbox) => Event::Queued { outbox },
            None => Event::NoConversation,
        })
    }

    /// The file of `chat`'s message `message_id` as `agent` fetches it again, with a fresh
    /// reference (core.telegram.org/api/file_reference); `None` when the message is gone, has no
    /// file, or the agent cannot fetch it now (the relay then leaves its note).
    async fn refetch_file(
        &self,
        agent: &SessionName,
        chat: ChatId,
        message_id: i32,
    ) -> Option<MediaFile> {
        // Not a rate-limited class of its own (no permit): one light read per expired file.
        let Some(account) = self.engine.account(agent) else {
            tracing::warn!(target: "crm", %agent, %chat, message_id, "a file's reference expired and its agent is not connected to fetch it again");
            return None;
        };
        match account.refetch_file(chat, message_id).await {
            Ok(Some(file)) => {
                tracing::info!(target: "crm", %agent, %chat, message_id, "a file's reference expired; fetched the message again for a fresh one");
                Some(file)
            }
            Ok(None) => {
                tracing::info!(target: "crm", %agent, %chat, message_id, "a file's reference expired and its message is gone");
                None
            }
            Err(error) => {
                tracing::warn!(target: "crm", %agent, %chat, message_id, %error, "a file's reference expired and its message could not be fetched again");
                None
            }
        }
    }

    /// Queues a message to the contact by the conversation's agent, after the channel's
    /// human-like delay, and records the relay. `None` when the contact cannot be addressed.
    async fn send_to_contact(
        &self,
        conversation: &Conversation,
        content: MessageContent,
        key: String,
        source: Option<(ChatId, i32)>,
    ) -> Result<Option<OutboxId>, CrmError> {
        let now = self.now();
        let not_before = self
            .config()
            .channel(&conversation.channel_id)
            .and_then(|channel| self.human_delay(channel, now));
        let Some(outbox) = self
            .enqueue_to_contact(conversation, content, key, not_before)
            .await?
        else {
            return Ok(None);
        };
        if source.is_some() {
            self.store
                .record_relay(&RelayRecord {
                    conversation: conversation.id,
                    direction: RelayDirection::TopicToContact,
                    source,
                    outbox: Some(outbox),
                    at: now,
                })
                .await?;
        }
        self.store.touch_conversation(conversation.id, now).await?;
        Ok(Some(outbox))
    }

    /// Queues a message to the contact by the conversation's agent, at most once per `key`;
    /// `None` when the agent cannot address the contact.
    async fn enqueue_to_contact(
        &self,
        conversation: &Conversation,
        content: MessageContent,
        key: String,
        not_before: Option<UnixMillis>,
    ) -> Result<Option<OutboxId>, CrmError> {
        let recipient = match (&conversation.contact_peer, &conversation.contact_username) {
            (Some(peer), username) => Recipient::KnownPeer {
                peer: *peer,
                username: username.clone(),
            },
            (None, Some(username)) => Recipient::Username {
                username: username.clone(),
            },
            // The agent finds them through their message, as it did for the first answer.
            (None, None) if let Some(author) = &conversation.contact_author => Recipient::Author {
                author: author.clone(),
            },
            (None, None) => {
                tracing::warn!(target: "crm", conversation = conversation.id.0, "the contact cannot be addressed by this agent");
                return Ok(None);
            }
        };
        let now = self.now();
        let ticket = self
            .engine
            .enqueue(NewOutboxMessage {
                channel_id: conversation.channel_id.clone(),
                kind: OutboxKind::RelayToContact,
                sender: SenderSelection::ChannelAgents {
                    sticky: Some(conversation.agent.clone()),
                },
                recipient,
                content,
                first_contact: false,
                idempotency_key: Some(key),
                created_at: now,
                not_before,
                expires_at: UnixMillis(0),
            })
            .await?;
        Ok(Some(ticket.id))
    }

    /// Whether `user` is one of jobbot's accounts. Answered from the accounts already known
    /// when it is one of them, without a look at the engine or the store: every post of an
    /// agent in a CRM group reaches every agent in the group, and with a read of the store per
    /// copy (several nodes) the cluster benchmark saw a third of all the store's statements go
    /// to this check. A user not known yet (a contact, an operator, an account that connected
    /// since) is looked up afresh.
    async fn is_own_user(&self, user: ChatId) -> bool {
        lock(&self.own_users).contains(&user) || self.own_user_ids().await.contains(&user)
    }

    /// The user ids of jobbot's accounts: every account that is connected now, and every one
    /// seen connected since the CRM started; with several nodes, also every account any node
    /// has connected (`Store::account_users`).
    async fn own_user_ids(&self) -> HashSet<ChatId> {
        if self.settings.node.is_some() {
            match self.store.account_users().await {
                Ok(users) => lock(&self.own_users).extend(users),
                Err(error) => {
                    tracing::warn!(target: "crm", %error, "could not read the other nodes' accounts");
                }
            }
        }
        if let Ok(agents) = self.engine.agents().await {
            let mut own = lock(&self.own_users);
            for agent in agents {
                if let LinkState::Ready { me } = agent.link {
                    own.insert(me.user_id);
                }
            }
        }
        lock(&self.own_users).clone()
    }

    // ----- Joining CRM groups -----

    /// Joins agents to their channels' CRM groups by invite link (all connected agents, or one
    /// that just connected; every [`JOIN_RETRY`] those not in yet). Joining twice is harmless;
    /// each join is done once per process.
    async fn join_crm_groups(self: Arc<Self>, only: Option<SessionName>) {
        let config = self.config();
        let wanted: Vec<(SessionName, String)> = config
            .enabled_channels()
            .filter(|channel| channel.crm_enabled)
            .filter_map(|channel| channel.crm_invite_hash.as_ref().map(|hash| (channel, hash)))
            .flat_map(|(channel, hash)| {
                channel
                    .agents
                    .iter()
                    .map(move |agent| (agent.session_name.clone(), hash.clone()))
            })
            .filter(|(agent, _)| only.as_ref().is_none_or(|only| only == agent))
            .collect();
        for (agent, hash) in wanted {
            let pair = (agent.clone(), hash.clone());
            if lock(&self.joined).contains(&pair) || lock(&self.join_refused).contains(&pair) {
                continue;
            }
            // An owner lists its account before it announces it ready. The join waits for the
            // agent's join limiter, but not behind a long flood wait on joins: a join left out
            // is tried again when the agent next connects, the configuration changes, or at the
            // next `JOIN_RETRY`.
            let Some(permit) = self
                .engine
                .call_permit(
                    std::slice::from_ref(&agent),
                    CallClass::JoinChannel,
                    Some(JOIN_WAIT),
                )
                .await
            else {
                continue;
            };
            let joined = permit
                .account()
                .join_chat(&JoinTarget::InviteHash(hash.clone()))
                .await;
            permit.report(&joined);
            match joined {
                Ok(group) => {
                    tracing::info!(target: "crm", agent = %agent, group = %group.id(), "агент в CRM-группе");
                    lock(&self.joined).insert((agent, hash));
                }
                Err(error) => {
                    tracing::warn!(target: "crm", agent = %agent, %error, "could not join the CRM group");
                    // Typed: a refusal that no later try changes (an invalid invite, too many
                    // channels) waits for the agent's next connection or a configuration change.
                    if !error.is_account_level() {
                        lock(&self.join_refused).insert((agent, hash));
                    }
                }
            }
        }
    }
}

/// A post into a conversation's topic by the conversation's agent, at most once per `key`.
fn topic_post(
    conversation: &Conversation,
    topic: TopicId,
    content: MessageContent,
    key: String,
    now: UnixMillis,
) -> NewOutboxMessage {
    NewOutboxMessage {
        channel_id: conversation.channel_id.clone(),
        kind: OutboxKind::TopicPost,
        sender: SenderSelection::ChannelAgents {
            sticky: Some(conversation.agent.clone()),
        },
        recipient: Recipient::Topic {
            group: conversation.group,
            topic,
        },
        content,
        first_contact: false,
        idempotency_key: Some(key),
        created_at: now,
        not_before: None,
        expires_at: UnixMillis(0),
    }
}

/// `Name (@username)`, as Telegram allows a topic title (≤ 128 characters), cut at 128 UTF-16
/// units: never more characters than that, and never inside a surrogate pair.
fn topic_title(conversation: &Conversation) -> String {
    let name = if conversation.contact_name.trim().is_empty() {
        format!("User {}", conversation.contact.get())
    } else {
        conversation.contact_name.clone()
    };
    let title = match &conversation.contact_username {
        Some(username) => format!("{name} ({})", username.with_at()),
        None => name,
    };
    fit_to_utf16(&title, 128)
}

/// The first post of a conversation's topic, one per vacancy: who, from where, through whom.
fn info_post(
    conversation: &Conversation,
    channel_name: &str,
    vacancy: &VacancyRef,
    agent: &SessionName,
) -> MessageContent {
    // Each field of the header is bounded, so the header always fits and the vacancy's text
    // takes what is left of Telegram's 4,096 UTF-16 units.
    const MAX_FIELD: usize = 256;
    let who = match &conversation.contact_username {
        Some(username) => format!("{} ({})", conversation.contact_name, username.with_at()),
        None => conversation.contact_name.clone(),
    };
    let header = format!(
        "📌 Новый контакт: {}\n\n📍 Канал вакансии: {}\n🔗 Ссылка: {}\n📤 Канал: {}\n🤖 Агент: {agent}\n\n",
        fit_to_utf16(&who, MAX_FIELD),
        fit_to_utf16(&vacancy.source_title, MAX_FIELD),
        fit_to_utf16(&vacancy.link, MAX_FIELD),
        fit_to_utf16(channel_name, MAX_FIELD),
    );
    let room = MAX_MESSAGE_UTF16.saturating_sub(utf16_len(&header));
    MessageContent::plain(format!("{header}{}", fit_to_utf16(&vacancy.text, room)))
}

/// A contact's message as it appears in the topic, or `None` when there is nothing to show.
fn contact_label(message: &IncomingMessage) -> Option<String> {
    let who = sender_name(message.sender.as_ref()?);
    let media = message.media.map(|media| match message.file.as_deref() {
        Some(MediaFile {
            file_name: Some(name),
            ..
        }) => format!("{} {name}", media_label(media)),
        _ => media_label(media).to_owned(),
    });
    let body = match (media, message.text.trim().is_empty()) {
        (None, true) => return None,
        (None, false) => message.text.clone(),
        (Some(media), true) => media,
        (Some(media), false) => format!("{media}\n{}", message.text),
    };
    Some(fit_message(&format!("👤 {who}:\n\n{body}")))
}

/// `Name Last (@username)`.
fn sender_name(sender: &Sender) -> String {
    let name = match &sender.last_name {
        Some(last) if !last.is_empty() => format!("{} {last}", sender.first_name),
        _ => sender.first_name.clone(),
    };
    match &sender.username {
        Some(username) => format!("{name} ({})", username.with_at()),
        None => name,
    }
}

/// The caption of a contact's file in the topic: who sent it and their caption, within
/// Telegram's caption limit.
fn contact_caption(message: &IncomingMessage) -> String {
    let who = message
        .sender
        .as_ref()
        .map_or_else(String::new, sender_name);
    let caption = if message.text.trim().is_empty() {
        format!("👤 {who}")
    } else {
        format!("👤 {who}:\n\n{}", message.text)
    };
    fit_to_utf16(&caption, MAX_CAPTION_UTF16)
}

/// Why a file did not go through, for the operator: Telegram's refusal in words.
fn delivery_reason(delivery: &Delivery) -> String {
    match delivery {
        Delivery::Sent { .. } => "отправлен".to_owned(),
        Delivery::Failed { failure } => failure.to_string(),
        Delivery::Expired { last_holdup } => match last_holdup {
            Some(holdup) => format!("не отправлен вовремя ({holdup:?})"),
            None => "не отправлен вовремя".to_owned(),
        },
    }
}

/// The idempotency key of a file's second send, after its message was fetched again for a
/// fresh reference: the first key belongs to the message that failed.
fn refetched_key(key: String, refetched: bool) -> String {
    if refetched {
        format!("{key}:refetched")
    } else {
        key
    }
}

/// Media are named in labels: what a message without a file carried, or what a note is about.
fn media_label(media: MediaKind) -> &'static str {
    match media {
        MediaKind::Photo => "[photo]",
        MediaKind::Video => "[video]",
        MediaKind::VideoNote => "[video message]",
        MediaKind::Document => "[document]",
        MediaKind::Voice => "[voice message]",
        MediaKind::Sticker => "[sticker]",
        MediaKind::Other => "[media]",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incoming(text: &str, media: Option<MediaKind>, username: Option<&str>) -> IncomingMessage {
        IncomingMessage {
            chat: ChatId::user(5).unwrap(),
            chat_kind: PeerKind::User,
            chat_title: None,
            chat_username: None,
            message_id: 1,
            sender: Some(Sender {
                id: ChatId::user(5).unwrap(),
                kind: PeerKind::User,
                username: username.map(|u| jobbot_core::ids::Username::parse(u).unwrap()),
                first_name: "Anna".into(),
                last_name: Some("Smirnova".into()),
                peer: None,
            }),
            text: text.into(),
            media,
            file: None,
            date: 0,
            outgoing: false,
            is_service: false,
            topic_id: None,
        }
    }

    #[test]
    fn contact_labels() {
        let check = |message: IncomingMessage, expected: Option<&str>| {
            assert_eq!(contact_label(&message).as_deref(), expected)
        };
        check(
            incoming("Hello", None, Some("anna_hr")),
            Some("👤 Anna Smirnova (@anna_hr):\n\nHello"),
        );
        check(
            incoming("", Some(MediaKind::Photo), None),
            Some("👤 Anna Smirnova:\n\n[photo]"),
        );
        check(
            incoming("cv", Some(MediaKind::Document), None),
            Some("👤 Anna Smirnova:\n\n[document]\ncv"),
        );
        check(incoming("  ", None, None), None);
    }

    /// Whatever the names and texts, every post the CRM composes fits Telegram's 4,096 UTF-16
    /// units: emoji count 2 each, so texts of 4,096 characters are twice too long.
    #[test]
    fn crm_posts_are_bounded_in_utf16_units() {
        use jobbot_core::notification::MAX_MESSAGE_UTF16;
        use jobbot_core::store::{ConversationId, ConversationStatus, UnixMillis};
        use jobbot_core::workflow::VacancyRef;

        let huge = "😀".repeat(4_096);
        let label =
            contact_label(&incoming(&huge, Some(MediaKind::Photo), Some("anna_hr"))).unwrap();
        assert!(
            utf16_len(&label) <= MAX_MESSAGE_UTF16,
            "{}",
            utf16_len(&label)
        );
        assert!(label.starts_with("👤 Anna Smirnova (@anna_hr):"));
        let conversation = Conversation {
            id: ConversationId(1),
            channel_id: "c".into(),
            group: ChatId::parse_channel(-1_001_234_567_890).unwrap(),
            topic: None,
            contact: ChatId::user(5).unwrap(),
            contact_username: None,
            contact_name: huge.clone(),
            agent: SessionName::parse("agent_1").unwrap(),
            contact_peer: None,
            contact_author: None,
            status: ConversationStatus::Active,
            created_at: UnixMillis(0),
            last_message_at: UnixMillis(0),
        };
        let vacancy = VacancyRef {
            source: ChatId::parse_channel(-1_001_234_567_891).unwrap(),
            source_username: None,
            message_id: 1,
            source_title: huge.clone(),
            link: "https://t.me/jobs/1".into(),
            text: huge.clone(),
        };
        let post = info_post(&conversation, &huge, &vacancy, &conversation.agent);
        assert!(
            utf16_len(&post.text) <= MAX_MESSAGE_UTF16,
            "{}",
            utf16_len(&post.text)
        );
        assert!(
            post.text.contains("🔗 Ссылка: https://t.me/jobs/1"),
            "the header survives"
        );
        let title = topic_title(&conversation);
        assert!(utf16_len(&title) <= 128 && title.chars().count() <= 128);
        // Short texts are left whole.
        let short = VacancyRef {
            text: "Rust developer".into(),
            source_title: "Jobs".into(),
            ..vacancy
        };
        let conversation = Conversation {
            contact_name: "Anna".into(),
            ..conversation
        };
        assert!(
            info_post(&conversation, "Out", &short, &conversation.agent)
                .text
                .ends_with("\n\nRust developer")
        );
    }
}
