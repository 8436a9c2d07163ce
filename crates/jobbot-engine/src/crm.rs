//! The CRM workflow: the auto-response to a vacancy's author, one forum topic per contact in the
//! channel's CRM group, and the two-way relay between the contact's private chat with *their*
//! agent and that topic.
//!
//! Invariants, each the fix of a bug of the original system (`original-system.md` §2b, §2c):
//! - One auto-response per (channel, contact), ever: the outbox's idempotency key is
//!   `auto_response:<channel>:<contact id>`, so a repost, a restart or two racing triggers cannot
//!   send a second one. An optional cross-channel cooldown spares a recruiter five messages from
//!   five channels.
//! - Only people get it: the contact is resolved through the chosen agent first, and a bot, a
//!   channel or a group is skipped before anything is queued.
//! - A conversation's agent is the account that delivered the auto-response, persisted with the
//!   conversation; replies from the topic always go out through it, across restarts.
//! - One topic per (group, contact): the store's `open_conversation` returns the existing
//!   conversation, and topics are created under a per-conversation lock, so racing triggers
//!   create one topic. A topic an admin deleted is recreated on the next message.
//! - Nothing jobbot posts is relayed back: group messages from any of jobbot's own accounts and
//!   messages whose ids are on record as jobbot's posts are ignored. No text-prefix matching.
//! - Every send goes through the outbox (paced, durable, failed over); human-like delays are the
//!   outbox's `not_before`, never a sleep that holds anything up.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use jobbot_core::config::{Channel, Config};
use jobbot_core::contacts::{CandidateTarget, crm_target};
use jobbot_core::ids::{ChatId, SessionName, Username};
use jobbot_core::store::{
    Conversation, ConversationId, NewConversation, NewOutboxMessage, OutboxKind, Recipient,
    RelayDirection, RelayRecord, SenderSelection, Store, StoreError, UnixMillis,
};
use jobbot_core::telegram::{
    AccountEvent, IncomingMessage, JoinTarget, MediaKind, MessageContent, Peer, PeerKind, RandomId,
    SentMessage, TelegramError, TopicId,
};
use jobbot_core::template::{TemplateValues, parse_template};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::dispatcher::{Delivery, LinkStates};
use crate::engine::{Engine, EngineError};
use crate::owner::LinkState;
use crate::router::TelegramEvents;
use crate::vacancy::Vacancy;

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
    /// Seed of the human-like delays and of topic creation ids.
    pub seed: u64,
}

impl Default for CrmSettings {
    fn default() -> Self {
        Self {
            cross_channel_cooldown: None,
            resolve_retry: Duration::from_secs(60),
            resolve_give_up: Duration::from_secs(24 * 3600),
            seed: rand::random(),
        }
    }
}

/// Everything [`Crm::start`] takes.
pub struct CrmParts {
    pub engine: Engine,
    /// The same configuration snapshots the engine follows.
    pub config: watch::Receiver<Arc<Config>>,
    /// Matched vacancies from monitoring.
    pub vacancies: mpsc::UnboundedReceiver<Vacancy>,
    /// The CRM's share of the engine's Telegram events (`router::fan_out`).
    pub telegram: TelegramEvents,
    pub replier: Arc<dyn AutoReplier>,
    pub settings: CrmSettings,
}

/// The running CRM workflow.
pub struct Crm {
    run: JoinHandle<()>,
    shared: Arc<Shared>,
}

impl Crm {
    /// Starts following vacancies and Telegram events, and joins agents to their CRM groups.
    pub fn start(parts: CrmParts) -> Self {
        let shared = Arc::new(Shared {
            store: parts.engine.store(),
            links: Mutex::new(Some(parts.engine.link_states())),
            engine: parts.engine,
            config: parts.config,
            replier: parts.replier,
            rng: Mutex::new(StdRng::seed_from_u64(parts.settings.seed)),
            settings: parts.settings,
            topic_locks: Mutex::new(HashMap::new()),
            own_users: Mutex::new(HashSet::new()),
            joined: Mutex::new(HashSet::new()),
            tasks: Mutex::new(JoinSet::new()),
        });
        let run = tokio::spawn(Arc::clone(&shared).run(parts.vacancies, parts.telegram));
        Self { run, shared }
    }

    /// Stops the workflow and every task it started. What is queued stays in the outbox.
    pub async fn shutdown(self) {
        self.run.abort();
        let _ = self.run.await;
        let mut tasks = std::mem::take(&mut *lock(&self.shared.tasks));
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

struct Shared {
    engine: Engine,
    store: Arc<dyn Store>,
    config: watch::Receiver<Arc<Config>>,
    replier: Arc<dyn AutoReplier>,
    settings: CrmSettings,
    /// The accounts' link states (lossless): an agent that becomes ready joins its CRM groups.
    links: Mutex<Option<watch::Receiver<LinkStates>>>,
    rng: Mutex<StdRng>,
    /// Serialises topic creation per conversation, so racing triggers create one topic.
    topic_locks: Mutex<HashMap<ConversationId, Arc<tokio::sync::Mutex<()>>>>,
    /// Telegram user ids of jobbot's own accounts, as they connected.
    own_users: Mutex<HashSet<ChatId>>,
    /// (agent, invite hash) joins done in this process.
    joined: Mutex<HashSet<(SessionName, String)>>,
    tasks: Mutex<JoinSet<()>>,
}

/// Why a step of the workflow stopped early.
#[derive(Debug, thiserror::Error)]
enum CrmError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How resolving a contact went.
enum Resolution {
    Resolved {
        agent: SessionName,
        peer: Peer,
    },
    /// No such username, or a failure that every agent would get.
    Unreachable(TelegramError),
    /// No agent could try now (none connected, or each refused for its own reasons).
    NotNow,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicked task must not wedge the whole workflow.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    async fn run(
        self: Arc<Self>,
        mut vacancies: mpsc::UnboundedReceiver<Vacancy>,
        mut telegram: TelegramEvents,
    ) {
        let mut config = self.config.clone();
        let mut links = lock(&self.links).take().expect("run is called once");
        let mut ready = self.ready_agents(&mut links);
        self.spawn(Arc::clone(&self).join_crm_groups(None));
        let (mut vacancies_open, mut telegram_open, mut config_open, mut links_open) =
            (true, true, true, true);
        while vacancies_open || telegram_open {
            tokio::select! {
                vacancy = vacancies.recv(), if vacancies_open => match vacancy {
                    Some(vacancy) => self.on_vacancy(vacancy),
                    None => vacancies_open = false,
                },
                event = telegram.recv(), if telegram_open => match event {
                    Some((session, event)) => self.on_telegram(session, event).await,
                    None => telegram_open = false,
                },
                changed = config.changed(), if config_open => match changed {
                    Ok(()) => self.spawn(Arc::clone(&self).join_crm_groups(None)),
                    Err(_) => config_open = false,
                },
                changed = links.changed(), if links_open => match changed {
                    Ok(()) => {
                        let now_ready = self.ready_agents(&mut links);
                        for session in now_ready.difference(&ready) {
                            self.spawn(Arc::clone(&self).join_crm_groups(Some(session.clone())));
                        }
                        ready = now_ready;
                    }
                    Err(_) => links_open = false,
                },
            }
        }
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

    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut tasks = lock(&self.tasks);
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }

    fn config(&self) -> Arc<Config> {
        self.config.borrow().clone()
    }

    fn now(&self) -> UnixMillis {
        self.engine.clock().now_unix()
    }

    // ----- Auto-responses -----

    fn on_vacancy(self: &Arc<Self>, vacancy: Vacancy) {
        let config = self.config();
        let Some(candidate) = crm_target(&vacancy.candidates) else {
            return;
        };
        let username = match &candidate.target {
            CandidateTarget::Username(username) => username.clone(),
            CandidateTarget::Sender {
                username: Some(username),
                ..
            } => username.clone(),
            // An agent can address a person it never saw only by username.
            CandidateTarget::Sender { id, username: None } => {
                tracing::info!(target: "crm", contact = %id, "the vacancy's author has no username; no auto-response");
                return;
            }
        };
        let vacancy = Arc::new(vacancy);
        for channel_id in &vacancy.channels {
            let Some(channel) = config.channel(channel_id) else {
                continue;
            };
            if !(channel.enabled && channel.crm_enabled && channel.auto_response_enabled)
                || channel.crm_group_id.is_none()
            {
                continue;
            }
            let (this, channel, vacancy, username) = (
                Arc::clone(self),
                channel.clone(),
                Arc::clone(&vacancy),
                username.clone(),
            );
            self.spawn(async move {
                if let Err(error) = this.auto_respond(&channel, &vacancy, &username).await {
                    tracing::error!(target: "crm", %error, channel = %channel.id, "auto-response workflow failed");
                }
            });
        }
    }

    async fn auto_respond(
        self: &Arc<Self>,
        channel: &Channel,
        vacancy: &Vacancy,
        username: &Username,
    ) -> Result<(), CrmError> {
        let group = channel.crm_group_id.expect("checked by the caller");
        let give_up = tokio::time::Instant::now() + self.settings.resolve_give_up;
        let (resolver, peer) = loop {
            match self.resolve(channel, username).await {
                Resolution::Resolved { agent, peer } => break (agent, peer),
                Resolution::Unreachable(error) => {
                    tracing::info!(target: "crm", channel = %channel.id, contact = %username, %error, "no auto-response: the contact cannot be reached");
                    return Ok(());
                }
                Resolution::NotNow if tokio::time::Instant::now() >= give_up => {
                    tracing::warn!(target: "crm", channel = %channel.id, contact = %username, "no agent could resolve the contact in time; no auto-response");
                    return Ok(());
                }
                Resolution::NotNow => tokio::time::sleep(self.settings.resolve_retry).await,
            }
        };
        if peer.kind != PeerKind::User {
            tracing::info!(target: "crm", channel = %channel.id, contact = %username, kind = ?peer.kind, "no auto-response: the contact is not a person");
            return Ok(());
        }
        let contact = peer.id();
        let key = format!("auto_response:{}:{}", channel.id, contact.get());
        if let Some(cooldown) = self.settings.cross_channel_cooldown
            && let Some(last) = self.store.last_auto_response_to(contact).await?
            && self.now().0 < last.0.saturating_add(cooldown.as_millis() as i64)
        {
            tracing::info!(target: "crm", channel = %channel.id, contact = %username, "no auto-response: the contact got one from another channel recently");
            return Ok(());
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
        let Ok(template) = parse_template(&channel.auto_response_template) else {
            // Validation rejects such a configuration; this is a belt to its braces.
            tracing::error!(target: "crm", channel = %channel.id, "the auto-response template does not parse");
            return Ok(());
        };
        let text = template.render(&TemplateValues {
            first_name: &peer.name,
            channel_name: &channel.name,
            source_title: &vacancy.source_title,
            vacancy_link: &vacancy.link,
        });
        let now = self.now();
        let ticket = self
            .engine
            .enqueue(NewOutboxMessage {
                channel_id: channel.id.clone(),
                kind: OutboxKind::AutoResponse,
                first_contact: sticky.is_none(),
                sender: SenderSelection::ChannelAgents { sticky },
                recipient: Recipient::Username {
                    username: peer.username.clone().unwrap_or_else(|| username.clone()),
                },
                content: MessageContent::plain(text.clone()),
                idempotency_key: Some(key),
                created_at: now,
                not_before: self.human_delay(channel, now),
                expires_at: UnixMillis(0),
            })
            .await?;
        let outbox = ticket.id;
        let (agent, sent) = match ticket.delivery().await? {
            Delivery::Sent { agent, message } => (agent, message),
            Delivery::Failed { reason } | Delivery::Expired { reason } => {
                tracing::info!(target: "crm", channel = %channel.id, contact = %username, %reason, "the auto-response did not go out");
                return Ok(());
            }
        };
        self.store
            .record_auto_response(&channel.id, contact, self.now())
            .await?;
        let (conversation, _) = self
            .store
            .open_conversation(&NewConversation {
                channel_id: channel.id.clone(),
                group,
                contact: sent.chat,
                contact_username: peer.username.clone().or_else(|| Some(username.clone())),
                contact_name: peer.full_name(),
                // The access hash is the resolving agent's own: keep it only for that agent.
                contact_peer: (agent == resolver).then_some(peer.peer),
                agent: agent.clone(),
                created_at: self.now(),
            })
            .await?;
        tracing::info!(target: "crm", channel = %channel.id, contact = %username, agent = %agent, "✅ автоответ отправлен");
        let info = info_post(&conversation, channel, vacancy, &agent);
        self.post_into_topic(
            conversation.id,
            info,
            format!(
                "crm_info:{}:{}:{}",
                conversation.id.0,
                vacancy.source.get(),
                vacancy.message_id
            ),
            RelayDirection::Service,
            None,
        )
        .await?;
        self.post_into_topic(
            conversation.id,
            MessageContent::plain(format!("🤖 Агент ({agent}):\n\n{text}")),
            format!("crm_mirror:{}:{}", conversation.id.0, outbox.0),
            RelayDirection::Service,
            None,
        )
        .await?;
        Ok(())
    }

    /// Resolves a contact through the agent a first contact would go to now, or failing that
    /// through any connected agent of the channel (resolving is limited apart from sending, so
    /// an agent waiting out a send flood may still resolve).
    async fn resolve(&self, channel: &Channel, username: &Username) -> Resolution {
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
        for agent in order {
            let Some(account) = self.engine.account(&agent) else {
                continue;
            };
            match account.resolve_username(username).await {
                Ok(peer) => return Resolution::Resolved { agent, peer },
                Err(error) if error.is_account_level() => {
                    tracing::debug!(target: "crm", agent = %agent, %error, "could not resolve through this agent");
                }
                Err(error) => return Resolution::Unreachable(error),
            }
        }
        Resolution::NotNow
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
    /// still the one on record. `None` when no account could create it now.
    async fn ensure_topic(
        &self,
        id: ConversationId,
        stale: Option<TopicId>,
    ) -> Result<Option<(Conversation, TopicId)>, CrmError> {
        let topic_lock = Arc::clone(lock(&self.topic_locks).entry(id).or_default());
        let _guard = topic_lock.lock().await;
        let Some(conversation) = self.store.conversation(id).await? else {
            return Ok(None);
        };
        if let Some(topic) = conversation.topic
            && Some(topic) != stale
        {
            return Ok(Some((conversation, topic)));
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
            let Some(account) = self.engine.account(&creator) else {
                continue;
            };
            let random_id = RandomId(lock(&self.rng).random());
            match account
                .create_forum_topic(conversation.group, &title, random_id)
                .await
            {
                Ok(topic) => {
                    self.store.set_conversation_topic(id, Some(topic)).await?;
                    tracing::info!(target: "crm", group = %conversation.group, topic = topic.0, by = %creator, "📂 тема создана: {title}");
                    let mut conversation = conversation;
                    conversation.topic = Some(topic);
                    return Ok(Some((conversation, topic)));
                }
                Err(error) => {
                    tracing::warn!(target: "crm", group = %conversation.group, by = %creator, %error, "could not create a topic");
                }
            }
        }
        Ok(None)
    }

    /// Posts into the conversation's topic through the outbox (sticky to the conversation's
    /// agent), recreating the topic once if it was deleted, and records the post's id so it is
    /// never relayed back.
    async fn post_into_topic(
        &self,
        id: ConversationId,
        content: MessageContent,
        key: String,
        direction: RelayDirection,
        source: Option<(ChatId, i32)>,
    ) -> Result<Option<SentMessage>, CrmError> {
        let mut stale = None;
        for attempt in 0..2 {
            let Some((conversation, topic)) = self.ensure_topic(id, stale).await? else {
                tracing::warn!(target: "crm", conversation = id.0, "no topic to post into");
                return Ok(None);
            };
            let ticket = self
                .engine
                .enqueue(NewOutboxMessage {
                    channel_id: conversation.channel_id.clone(),
                    kind: OutboxKind::TopicPost,
                    sender: SenderSelection::ChannelAgents {
                        sticky: Some(conversation.agent.clone()),
                    },
                    recipient: Recipient::Topic {
                        group: conversation.group,
                        topic,
                    },
                    content: content.clone(),
                    first_contact: false,
                    // A repost into a recreated topic needs its own key.
                    idempotency_key: Some(if attempt == 0 {
                        key.clone()
                    } else {
                        format!("{key}:{}", topic.0)
                    }),
                    created_at: self.now(),
                    not_before: None,
                    expires_at: UnixMillis(0),
                })
                .await?;
            let outbox = ticket.id;
            match ticket.delivery().await? {
                Delivery::Sent { message, .. } => {
                    self.store
                        .record_own_post(conversation.group, message.message_id, Some(id))
                        .await?;
                    self.store
                        .record_relay(&RelayRecord {
                            conversation: id,
                            direction,
                            source,
                            outbox: Some(outbox),
                            at: self.now(),
                        })
                        .await?;
                    return Ok(Some(message));
                }
                // The dispatcher reports a failure as text; this compares with the port's own
                // rendering of the error, not with a phrase of ours.
                Delivery::Failed { reason }
                    if reason == TelegramError::TopicDeleted.to_string() =>
                {
                    tracing::info!(target: "crm", conversation = id.0, topic = topic.0, "the topic was deleted; recreating it");
                    stale = Some(topic);
                }
                Delivery::Failed { reason } | Delivery::Expired { reason } => {
                    tracing::warn!(target: "crm", conversation = id.0, %reason, "could not post into the topic");
                    return Ok(None);
                }
            }
        }
        Ok(None)
    }

    // ----- Relays -----

    async fn on_telegram(self: &Arc<Self>, session: SessionName, event: AccountEvent) {
        let AccountEvent::NewMessage(message) = event else {
            return;
        };
        if message.is_service || message.outgoing {
            return;
        }
        let result = if message.is_private() {
            self.on_private_message(session, message).await
        } else if message.topic_id.is_some() && self.is_crm_group(message.chat) {
            self.on_topic_message(message).await
        } else {
            Ok(())
        };
        if let Err(error) = result {
            tracing::error!(target: "crm", %error, "could not route a message");
        }
    }

    fn is_crm_group(&self, chat: ChatId) -> bool {
        self.config()
            .enabled_channels()
            .any(|channel| channel.crm_enabled && channel.crm_group_id == Some(chat))
    }

    /// A contact wrote to an agent: into the topic of each of their conversations with it.
    async fn on_private_message(
        self: &Arc<Self>,
        session: SessionName,
        message: IncomingMessage,
    ) -> Result<(), CrmError> {
        let Some(sender) = &message.sender else {
            return Ok(());
        };
        if sender.kind != PeerKind::User || self.own_user_ids().await.contains(&sender.id) {
            return Ok(());
        }
        let conversations = self
            .store
            .conversations_with_contact(&session, message.chat)
            .await?;
        for conversation in conversations {
            let (this, message) = (Arc::clone(self), message.clone());
            self.spawn(async move {
                if let Err(error) = this.relay_to_topic(conversation, message).await {
                    tracing::error!(target: "crm", %error, "could not relay a contact's message");
                }
            });
        }
        Ok(())
    }

    async fn relay_to_topic(
        &self,
        conversation: Conversation,
        message: IncomingMessage,
    ) -> Result<(), CrmError> {
        let Some(text) = contact_label(&message) else {
            return Ok(());
        };
        let posted = self
            .post_into_topic(
                conversation.id,
                MessageContent::plain(text),
                format!(
                    "relay_to_topic:{}:{}",
                    conversation.id.0, message.message_id
                ),
                RelayDirection::ContactToTopic,
                Some((message.chat, message.message_id)),
            )
            .await?;
        self.store
            .touch_conversation(conversation.id, self.now())
            .await?;
        if posted.is_some()
            && let Some(reply) = self.replier.reply(&conversation, &message).await
        {
            self.send_to_contact(
                &conversation,
                reply.clone(),
                format!("auto_reply:{}:{}", conversation.id.0, message.message_id),
                None,
            )
            .await?;
            self.post_into_topic(
                conversation.id,
                MessageContent::plain(format!("🤖 Автоответ:\n\n{}", reply.text)),
                format!(
                    "auto_reply_mirror:{}:{}",
                    conversation.id.0, message.message_id
                ),
                RelayDirection::Service,
                None,
            )
            .await?;
        }
        Ok(())
    }

    /// An operator wrote in a topic: to the contact, by the conversation's agent.
    async fn on_topic_message(self: &Arc<Self>, message: IncomingMessage) -> Result<(), CrmError> {
        let (group, Some(topic)) = (message.chat, message.topic_id) else {
            return Ok(());
        };
        // Anonymous admins post as the group itself: no person to relay for.
        let Some(sender) = &message.sender else {
            return Ok(());
        };
        if sender.kind != PeerKind::User
            || self.own_user_ids().await.contains(&sender.id)
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
        if message.text.trim().is_empty() {
            if let Some(media) = message.media {
                tracing::info!(target: "crm", conversation = conversation.id.0, media = media_label(media), "media from the topic are not relayed yet");
            }
            return Ok(());
        }
        let this = Arc::clone(self);
        self.spawn(async move {
            let result = this
                .send_to_contact(
                    &conversation,
                    MessageContent::plain(message.text.clone()),
                    format!("relay_to_contact:{}:{}", group.get(), message.message_id),
                    Some((group, message.message_id)),
                )
                .await;
            if let Err(error) = result {
                tracing::error!(target: "crm", %error, "could not relay an operator's reply");
            }
        });
        Ok(())
    }

    /// Sends to the contact by the conversation's agent, after the channel's human-like delay.
    /// The idempotency key makes the several accounts that see one group message send it once.
    async fn send_to_contact(
        &self,
        conversation: &Conversation,
        content: MessageContent,
        key: String,
        source: Option<(ChatId, i32)>,
    ) -> Result<(), CrmError> {
        let recipient = match (&conversation.contact_peer, &conversation.contact_username) {
            (Some(peer), _) => Recipient::KnownPeer { peer: *peer },
            (None, Some(username)) => Recipient::Username {
                username: username.clone(),
            },
            (None, None) => {
                tracing::warn!(target: "crm", conversation = conversation.id.0, "the contact cannot be addressed by this agent");
                return Ok(());
            }
        };
        let now = self.now();
        let not_before = self
            .config()
            .channel(&conversation.channel_id)
            .and_then(|channel| self.human_delay(channel, now));
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
        if !ticket.new {
            return Ok(());
        }
        let outbox = ticket.id;
        match ticket.delivery().await? {
            Delivery::Sent { .. } => {
                if source.is_some() {
                    self.store
                        .record_relay(&RelayRecord {
                            conversation: conversation.id,
                            direction: RelayDirection::TopicToContact,
                            source,
                            outbox: Some(outbox),
                            at: self.now(),
                        })
                        .await?;
                }
                self.store
                    .touch_conversation(conversation.id, self.now())
                    .await?;
            }
            Delivery::Failed { reason } | Delivery::Expired { reason } => {
                tracing::warn!(target: "crm", conversation = conversation.id.0, %reason, "a reply did not reach the contact");
            }
        }
        Ok(())
    }

    /// The user ids of jobbot's accounts: every account that is connected now, and every one
    /// seen connected since the CRM started.
    async fn own_user_ids(&self) -> HashSet<ChatId> {
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
    /// that just connected). Joining twice is harmless; each join is done once per process.
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
            if lock(&self.joined).contains(&(agent.clone(), hash.clone())) {
                continue;
            }
            // An owner lists its account before it announces it ready.
            let Some(account) = self.engine.account(&agent) else {
                continue;
            };
            match account
                .join_chat(&JoinTarget::InviteHash(hash.clone()))
                .await
            {
                Ok(group) => {
                    tracing::info!(target: "crm", agent = %agent, group = %group.id(), "агент в CRM-группе");
                    lock(&self.joined).insert((agent, hash));
                }
                Err(error) => {
                    tracing::warn!(target: "crm", agent = %agent, %error, "could not join the CRM group");
                }
            }
        }
    }
}

/// `Name (@username)`, as Telegram allows a topic title (≤ 128 characters).
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
    title.chars().take(128).collect()
}

/// The first post of a conversation's topic, one per vacancy: who, from where, through whom.
fn info_post(
    conversation: &Conversation,
    channel: &Channel,
    vacancy: &Vacancy,
    agent: &SessionName,
) -> MessageContent {
    const MAX_VACANCY_TEXT: usize = 3000; // Telegram allows 4096 characters in all
    let who = match &conversation.contact_username {
        Some(username) => format!("{} ({})", conversation.contact_name, username.with_at()),
        None => conversation.contact_name.clone(),
    };
    let mut text: String = vacancy.text.chars().take(MAX_VACANCY_TEXT).collect();
    if vacancy.text.chars().count() > MAX_VACANCY_TEXT {
        text.push('…');
    }
    MessageContent::plain(format!(
        "📌 Новый контакт: {who}\n\n📍 Канал вакансии: {}\n🔗 Ссылка: {}\n📤 Канал: {}\n🤖 Агент: {agent}\n\n{text}",
        vacancy.source_title, vacancy.link, channel.name
    ))
}

/// A contact's message as it appears in the topic, or `None` when there is nothing to show.
fn contact_label(message: &IncomingMessage) -> Option<String> {
    let sender = message.sender.as_ref()?;
    let name = match &sender.last_name {
        Some(last) if !last.is_empty() => format!("{} {last}", sender.first_name),
        _ => sender.first_name.clone(),
    };
    let who = match &sender.username {
        Some(username) => format!("{name} ({})", username.with_at()),
        None => name,
    };
    let body = match (message.media, message.text.trim().is_empty()) {
        (None, true) => return None,
        (None, false) => message.text.clone(),
        (Some(media), true) => media_label(media).to_owned(),
        (Some(media), false) => format!("{}\n{}", media_label(media), message.text),
    };
    Some(format!("👤 {who}:\n\n{body}"))
}

/// The port relays text; media are named so operators know something was not copied.
fn media_label(media: MediaKind) -> &'static str {
    match media {
        MediaKind::Photo => "[photo]",
        MediaKind::Video => "[video]",
        MediaKind::Document => "[document]",
        MediaKind::Voice => "[voice message]",
        MediaKind::Sticker => "[sticker]",
        MediaKind::Other => "[media]",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobbot_core::telegram::Sender;

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
                username: username.map(|u| Username::parse(u).unwrap()),
                first_name: "Anna".into(),
                last_name: Some("Smirnova".into()),
            }),
            text: text.into(),
            media,
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
}
