//! Monitoring: the main account's view of the source channels, turned into notifications.
//!
//! For each new message in a source (the original's `process_message`):
//! 1. routing: the enabled channels that list the message's chat, however the source was
//!    written (`@name`, a `t.me` link, `-100…`, a bare id; see [`routes`]);
//! 2. the pre-filters ([`pre_filter`]): text or caption of at least `min_text_chars`, not older
//!    than `max_age_hours`, not a service message, not our own;
//! 3. once per `(source, message id)`: a message on record is skipped, edits included;
//! 4. one pass of the filter engine decides every candidate channel;
//! 5. contacts and CRM candidates from the text and the poster;
//! 6. per matched channel, a repost claim on the normalised text's hash: the same vacancy from
//!    another source within `repost_window` is notified once per channel;
//! 7. a notification per claimed channel into the durable outbox, sent by the main account;
//! 8. the CRM's auto-response workflow per claimed channel with CRM (see [`crate::crm`]);
//! 9. the processed message on record, `relevant` or `not_relevant` (the original stored both;
//!    so do we: the web's history and statistics count what did not match too). Messages the
//!    pre-filters reject are not stored, as in the original: they are not vacancies.
//!
//! Steps 6–9 are one transaction ([`Store::take_in_vacancy`]): a crash leaves all of them on
//! record or none, so no claim exists without its notification and no processed message without
//! its CRM hand-over. The message is handled before the next update is taken, so the account's
//! update position is saved only past messages on record: a crash replays the rest, and the
//! processed record makes a replay change nothing.
//!
//! An edit of a message never processed (a post whose caption arrives by edit, a message too
//! short at first) is processed like a new one; the original ignored every edit.

mod resolver;
mod routes;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use jobbot_core::config::{Config, SourceRef};
use jobbot_core::contacts::{
    CandidateTarget, crm_target, extract_contacts_with_context, rank_crm_candidates,
};
use jobbot_core::filters::{PreFilterRejection, PreFilterSettings, pre_filter};
use jobbot_core::ids::{ChatId, ChatKind, Username};
use jobbot_core::notification::{Notification, format_notification, normalized_text_hash};
use jobbot_core::store::{
    ChannelIntake, Enqueued, IntakeOutcome, MatchedChannel, NewOutboxMessage, OutboxKind,
    ProcessedMessage, Recipient, SenderSelection, Store, StoreError, UnixMillis, VacancyContacts,
    VacancyIntake, VacancyStatus,
};
use jobbot_core::telegram::{AccountEvent, IncomingMessage};
use jobbot_core::workflow::VacancyRef;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::crm::CrmHandle;
use crate::engine::{Engine, EngineError};
use crate::router::TelegramEvents;
use crate::supervisor::ShutdownSignal;
use resolver::{Resolution, Resolver};
use routes::Routes;

/// Monitoring's limits; the defaults are the original's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorSettings {
    /// Minimum trimmed length of a text or caption, in characters.
    pub min_text_chars: usize,
    /// Older messages are history (the original's `MAX_MESSAGE_AGE_HOURS`).
    pub max_age_hours: u32,
    /// The same vacancy (same normalised text) from another source within this long is notified
    /// once per output channel.
    pub repost_window: Duration,
    /// Join sources given by username (and invite link) instead of expecting the main account to
    /// be a member already, as the original did.
    pub auto_join_public_sources: bool,
    /// How long to wait before asking again while the main account is not connected. The
    /// resolutions and joins themselves are paced by the main account's scheduler (its
    /// `ResolveUsername` and `JoinChannel` limiters), with every other call of those classes.
    pub resolve_interval: Duration,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        Self {
            min_text_chars: 50,
            max_age_hours: 24,
            repost_window: Duration::from_secs(24 * 3600),
            auto_join_public_sources: false,
            resolve_interval: Duration::from_secs(10),
        }
    }
}

/// What monitoring needs.
pub struct MonitorParts {
    pub engine: Engine,
    pub store: Arc<dyn Store>,
    pub config: watch::Receiver<Arc<Config>>,
    /// The engine's Telegram events (fanned out, [`crate::router::fan_out`]); only the main
    /// account's messages are looked at.
    pub events: TelegramEvents,
    /// The CRM, whose auto-response workflows start with the notifications; `None` runs
    /// without CRM.
    pub crm: Option<CrmHandle>,
    /// Where every report goes, in order and without loss (an unbounded channel: one consumer
    /// that must see each report, such as a test or an audit log); `None` reports nothing.
    pub reports: Option<mpsc::UnboundedSender<MonitorEvent>>,
    pub settings: MonitorSettings,
}

/// What monitoring did, for the live view, logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MonitorEvent {
    /// A message (or an edit) in a source.
    Message {
        source: ChatId,
        message_id: i32,
        edited: bool,
        outcome: MessageOutcome,
    },
    /// A source given by username or invite link is now known by id.
    SourceResolved { source: SourceRef, chat: ChatId },
    /// Telegram refused to resolve or join a source (no such username, an expired link …);
    /// asked again after the next configuration change.
    SourceFailed { source: SourceRef, error: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageOutcome {
    /// Refused by the pre-filters; not stored.
    Ignored(PreFilterRejection),
    /// Processed before (the same message delivered again, or an edit).
    AlreadyProcessed,
    Processed {
        status: VacancyStatus,
        /// Channels a notification was queued for.
        notified: Vec<String>,
        /// Channels that matched but had this vacancy already from another source.
        reposts: Vec<String>,
    },
    /// The store failed; the message is not on record and is handled again after a restart.
    Failed(String),
}

/// Why monitoring stopped taking updates in.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// A message could not be put on record: monitoring stops before taking the next update,
    /// so the message is not skipped (its supervisor starts monitoring again).
    #[error("a message could not be put on record: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// The running monitor, outside supervision (tests, tools).
pub struct MonitorHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), MonitorError>>,
}

impl MonitorHandle {
    /// Stops after the message being processed, if any.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
    }
}

/// Monitoring: one per process. [`Monitor::run`] takes updates in until shutdown; after a
/// failure it may be called again, and it goes on where the last run stopped.
#[derive(Clone)]
pub struct Monitor {
    shared: Arc<Shared>,
}

struct Shared {
    engine: Engine,
    store: Arc<dyn Store>,
    config: watch::Receiver<Arc<Config>>,
    events: tokio::sync::Mutex<TelegramEvents>,
    crm: Option<CrmHandle>,
    reports: Option<mpsc::UnboundedSender<MonitorEvent>>,
    settings: MonitorSettings,
}

impl Monitor {
    pub fn new(parts: MonitorParts) -> Self {
        Self {
            shared: Arc::new(Shared {
                engine: parts.engine,
                store: parts.store,
                config: parts.config,
                events: tokio::sync::Mutex::new(parts.events),
                crm: parts.crm,
                reports: parts.reports,
                settings: parts.settings,
            }),
        }
    }

    /// Runs a monitor in its own task until its handle stops it.
    pub fn spawn(parts: MonitorParts) -> MonitorHandle {
        let monitor = Self::new(parts);
        let (stop, signal) = watch::channel(false);
        let task =
            tokio::spawn(async move { monitor.run(ShutdownSignal::from_watch(signal)).await });
        MonitorHandle { stop, task }
    }

    /// Takes updates in until `shutdown` fires (after the message being processed) or the stream
    /// ends. An error means a message could not be put on record.
    pub async fn run(&self, shutdown: ShutdownSignal) -> Result<(), MonitorError> {
        let mut events = self.shared.events.lock().await;
        // A run that crashed mid-message may have lost it: no position past it is saved.
        events.recover();
        run(&self.shared, &mut events, shutdown).await
    }
}

async fn run(
    shared: &Shared,
    events: &mut TelegramEvents,
    mut shutdown: ShutdownSignal,
) -> Result<(), MonitorError> {
    let engine = shared.engine.clone();
    let mut config = shared.config.clone();
    let settings = shared.settings.clone();
    let Some(main) = engine.main_session().cloned() else {
        tracing::warn!(target: "monitor", "⚠️ Основной аккаунт не настроен: мониторинг источников выключен");
        shutdown.requested().await;
        return Ok(());
    };
    let (wanted, wanted_rx) = watch::channel(Arc::new(BTreeSet::new()));
    let (results, mut resolutions) = mpsc::unbounded_channel();
    let resolver = tokio::spawn(
        Resolver {
            engine: engine.clone(),
            session: main.clone(),
            wanted: wanted_rx,
            results,
            interval: settings.resolve_interval,
            join: settings.auto_join_public_sources,
        }
        .run(),
    );
    // Aborts the resolver however this task ends.
    let _resolver = AbortOnDrop(resolver);

    let mut monitor = MonitorState {
        engine,
        store: Arc::clone(&shared.store),
        settings,
        crm: shared.crm.clone(),
        reports: shared.reports.clone(),
        routes: None,
        resolved_as: HashMap::new(),
        wanted,
    };
    let initial = config.borrow_and_update().clone();
    monitor.reconfigure(&initial);
    let mut config_open = true;

    loop {
        tokio::select! {
            biased;
            _ = shutdown.requested() => return Ok(()),
            changed = config.changed(), if config_open => match changed {
                Ok(()) => {
                    let snapshot = config.borrow_and_update().clone();
                    monitor.reconfigure(&snapshot);
                }
                // Nobody can change the configuration any more; keep the last one.
                Err(_) => config_open = false,
            },
            Some(resolution) = resolutions.recv() => monitor.resolved(resolution),
            event = events.recv() => match event {
                None => return Ok(()),
                Some((session, event)) if session == main => match event {
                    AccountEvent::NewMessage(message) => monitor.handle(message, false).await?,
                    AccountEvent::MessageEdited(message) => monitor.handle(message, true).await?,
                    AccountEvent::ConnectionLost
                    | AccountEvent::ConnectionRestored
                    | AccountEvent::Checkpoint(_) => {}
                },
                Some(_) => {}
            },
        }
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct MonitorState {
    engine: Engine,
    store: Arc<dyn Store>,
    settings: MonitorSettings,
    crm: Option<CrmHandle>,
    reports: Option<mpsc::UnboundedSender<MonitorEvent>>,
    /// `None` only if the very first snapshot's filters did not compile.
    routes: Option<Routes>,
    /// Which configured sources (usernames, invites) each chat was resolved from. Kept across
    /// snapshots: a chat's id never changes, so the cache never goes stale.
    resolved_as: HashMap<ChatId, Vec<SourceRef>>,
    wanted: watch::Sender<Arc<BTreeSet<SourceRef>>>,
}

impl MonitorState {
    fn reconfigure(&mut self, config: &Config) {
        let routes = match Routes::build(config) {
            Ok(routes) => routes,
            Err(error) => {
                // Validation compiles the same keywords, so this means a bug; keep the last
                // working table rather than stop monitoring.
                tracing::error!(target: "monitor", "❌ Фильтры не скомпилированы, оставлена прежняя конфигурация: {error}");
                return;
            }
        };
        tracing::info!(target: "monitor", "📡 Отслеживается {} источников для {} каналов", routes.source_count(), routes.channels.len());
        if !self.settings.auto_join_public_sources {
            for invite in routes.invite_sources() {
                tracing::warn!(target: "monitor", "⚠️ Источник t.me/+{invite} — ссылка-приглашение: без автоподписки его id неизвестен, сообщения из него не будут найдены");
            }
        }
        let already: BTreeSet<&SourceRef> = self.resolved_as.values().flatten().collect();
        let wanted: BTreeSet<SourceRef> = routes
            .sources_to_resolve(self.settings.auto_join_public_sources)
            .into_iter()
            .filter(|source| !already.contains(source))
            .collect();
        self.wanted.send_replace(Arc::new(wanted));
        self.routes = Some(routes);
    }

    fn resolved(&mut self, resolution: Resolution) {
        match resolution {
            Resolution::Resolved {
                source,
                chat,
                title,
            } => {
                tracing::info!(target: "monitor", "🔎 Источник {source} → {title} ({chat})");
                let sources = self.resolved_as.entry(chat).or_default();
                if !sources.contains(&source) {
                    sources.push(source.clone());
                }
                self.report(MonitorEvent::SourceResolved { source, chat });
            }
            Resolution::Failed { source, error } => {
                tracing::warn!(target: "monitor", "⚠️ Не удалось найти источник {source}: {error}");
                self.report(MonitorEvent::SourceFailed {
                    source,
                    error: error.to_string(),
                });
            }
        }
    }

    /// Processes one message; an error means it is not on record, and monitoring must not take
    /// the next update (its position would be saved past this one).
    async fn handle(&mut self, message: IncomingMessage, edited: bool) -> Result<(), MonitorError> {
        let Some(result) = self.process(&message, edited).await else {
            return Ok(());
        };
        let (outcome, error) = match result {
            Ok(outcome) => (outcome, None),
            Err(error) => (MessageOutcome::Failed(error.to_string()), Some(error)),
        };
        self.report(MonitorEvent::Message {
            source: message.chat,
            message_id: message.message_id,
            edited,
            outcome,
        });
        error.map_or(Ok(()), Err)
    }

    fn report(&self, event: MonitorEvent) {
        if let Some(reports) = &self.reports {
            // A consumer that went away is not monitoring's concern.
            let _ = reports.send(event);
        }
    }

    /// `None` for a message that is not from a source.
    async fn process(
        &self,
        message: &IncomingMessage,
        edited: bool,
    ) -> Option<Result<MessageOutcome, MonitorError>> {
        let routes = self.routes.as_ref()?;
        let resolved_as = self
            .resolved_as
            .get(&message.chat)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let candidates =
            routes.channels_for(message.chat, message.chat_username.as_ref(), resolved_as);
        if candidates.is_empty() {
            return None;
        }
        let title = source_title(message);
        let now = self.engine.clock().now_unix();
        let limits = PreFilterSettings {
            min_text_chars: self.settings.min_text_chars,
            max_age_hours: self.settings.max_age_hours,
        };
        if let Err(rejection) = pre_filter(message, &limits, now.as_seconds()) {
            tracing::debug!(target: "monitor", "⏭ Пропущено сообщение {} из {title}: {rejection}", message.message_id);
            return Some(Ok(MessageOutcome::Ignored(rejection)));
        }
        let result = self
            .process_candidate(message, edited, &title, routes, &candidates, now)
            .await;
        if let Err(error) = &result {
            tracing::error!(target: "monitor", "❌ Сообщение {} из {title} не обработано: {error}", message.message_id);
        }
        Some(result)
    }

    async fn process_candidate(
        &self,
        message: &IncomingMessage,
        edited: bool,
        title: &str,
        routes: &Routes,
        candidates: &BTreeSet<usize>,
        now: UnixMillis,
    ) -> Result<MessageOutcome, MonitorError> {
        if self
            .store
            .is_processed(message.chat, message.message_id)
            .await?
        {
            if edited {
                tracing::debug!(target: "monitor", "✏️ Правка уже обработанного сообщения {} из {title} пропущена", message.message_id);
            }
            return Ok(MessageOutcome::AlreadyProcessed);
        }
        tracing::info!(target: "monitor", "📨 Новое сообщение из {title} (#{})", message.message_id);

        let matches = routes.matching(&message.text, candidates);
        let contacts = extract_contacts_with_context(&message.text);
        let candidates_for_crm = rank_crm_candidates(
            &contacts,
            message.chat_username.as_ref(),
            message.sender.as_ref(),
        );
        let text_hash = normalized_text_hash(&message.text);
        let link = post_link(
            message.chat,
            message.chat_username.as_ref(),
            message.message_id,
        );
        let window = u64::try_from(self.settings.repost_window.as_millis()).unwrap_or(u64::MAX);
        let window_start = UnixMillis(
            now.0
                .saturating_sub(i64::try_from(window).unwrap_or(i64::MAX)),
        );
        let vacancy = VacancyRef {
            source: message.chat,
            source_username: message.chat_username.clone(),
            message_id: message.message_id,
            source_title: title.to_owned(),
            link: link.clone(),
            text: message.text.clone(),
        };
        let config = self.engine_config();

        let mut matched = Vec::with_capacity(matches.len());
        let mut channels = Vec::with_capacity(matches.len());
        for found in &matches {
            let channel = &routes.channels[found.channel];
            let content = format_notification(&Notification {
                source_title: title,
                link: &link,
                matched_keywords: &found.keywords,
                sender: message.sender.as_ref(),
                contacts: &contacts.contacts,
                vacancy_text: &message.text,
            });
            let notification = self.engine.with_ttl(NewOutboxMessage {
                channel_id: channel.id.clone(),
                kind: OutboxKind::Notification,
                sender: SenderSelection::MainAccount,
                recipient: Recipient::Chat {
                    chat: channel.telegram_id,
                },
                content,
                first_contact: false,
                idempotency_key: Some(format!(
                    "notification:{}:{}:{}",
                    channel.id, message.chat, message.message_id
                )),
                created_at: now,
                not_before: None,
                expires_at: UnixMillis(0),
            });
            let workflows = match (&self.crm, &config) {
                (Some(crm), Some(config)) => {
                    crm.auto_responses(config, &channel.id, &vacancy, &candidates_for_crm, now)
                }
                _ => Vec::new(),
            };
            channels.push(ChannelIntake {
                channel_id: channel.id.clone(),
                notification,
                workflows,
            });
            matched.push(MatchedChannel {
                channel_id: channel.id.clone(),
                keywords: found.keywords.clone(),
                // Decided by the claim, in the store's transaction.
                notified: false,
            });
        }

        let status = if matched.is_empty() {
            tracing::info!(target: "monitor", "📭 Сообщение из {title} не подошло ни одному каналу");
            VacancyStatus::NotRelevant
        } else {
            tracing::info!(target: "monitor", "✅ Вакансия из {title} подходит для {} каналов", matched.len());
            VacancyStatus::Relevant
        };
        let record = ProcessedMessage {
            source: message.chat,
            message_id: message.message_id,
            source_title: title.to_owned(),
            link: link.clone(),
            text: message.text.clone(),
            text_hash,
            posted_at: UnixMillis(message.date.saturating_mul(1000)),
            processed_at: now,
            status,
            matched,
            contacts: VacancyContacts {
                telegram: contacts
                    .contacts
                    .telegram
                    .iter()
                    .map(Username::with_at)
                    .collect(),
                emails: contacts.contacts.emails.clone(),
                phones: contacts.contacts.phones.clone(),
                crm_target: crm_target(&candidates_for_crm).map(|candidate| {
                    match &candidate.target {
                        CandidateTarget::Username(name) => name.with_at(),
                        CandidateTarget::Sender {
                            username: Some(username),
                            ..
                        } => username.with_at(),
                        // Answered through the message (as `jobbot inspect` names them).
                        CandidateTarget::Sender { id, username: None } => format!("user {id}"),
                    }
                }),
            },
        };
        let intake = VacancyIntake {
            message: record,
            window_start,
            channels,
        };
        let (notified, reposts, workflows) = match self.store.take_in_vacancy(&intake).await? {
            IntakeOutcome::AlreadyProcessed => {
                // Another processor recorded it meanwhile; its hand-over is the one that counts.
                tracing::debug!(target: "monitor", "сообщение {} из {title} уже обработано параллельно", message.message_id);
                return Ok(MessageOutcome::AlreadyProcessed);
            }
            IntakeOutcome::Processed {
                notified,
                reposts,
                workflows,
            } => (notified, reposts, workflows),
        };
        for channel in &reposts {
            tracing::info!(target: "monitor", "🔁 Повтор вакансии из {title}: канал '{channel}' уже получил её");
        }
        let new: Vec<_> = notified
            .iter()
            .filter_map(|(channel, enqueued)| match enqueued {
                Enqueued::New(id) => {
                    tracing::info!(target: "monitor", "📤 Уведомление для '{channel}' поставлено в очередь");
                    Some(*id)
                }
                Enqueued::Existing(..) => None,
            })
            .collect();
        // On record already: a restart finds them if these hand-overs do not happen.
        self.engine.admit_stored(&new).await?;
        if let Some(crm) = &self.crm {
            crm.wake(&workflows);
        }
        Ok(MessageOutcome::Processed {
            status,
            notified: notified.into_iter().map(|(channel, _)| channel).collect(),
            reposts,
        })
    }

    fn engine_config(&self) -> Option<Arc<Config>> {
        self.crm.as_ref().map(CrmHandle::config)
    }
}

fn source_title(message: &IncomingMessage) -> String {
    match (&message.chat_title, &message.chat_username) {
        (Some(title), _) if !title.trim().is_empty() => title.clone(),
        (_, Some(username)) => username.with_at(),
        _ => message.chat.to_string(),
    }
}

/// The post's public link: `https://t.me/<username>/<id>`, or `https://t.me/c/<bare id>/<id>` for
/// a channel without username (members only). Basic groups have no post links.
fn post_link(chat: ChatId, username: Option<&Username>, message_id: i32) -> String {
    match (username, chat.kind()) {
        (Some(username), _) => format!("https://t.me/{}/{message_id}", username.as_str()),
        (None, ChatKind::Channel) => format!("https://t.me/c/{}/{message_id}", chat.bare()),
        (None, _) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_links() {
        let check = |chat: ChatId, username: Option<&str>, expected: &str| {
            let username = username.map(|name| Username::parse(name).unwrap());
            assert_eq!(post_link(chat, username.as_ref(), 7), expected);
        };
        check(
            ChatId::channel(1234567890).unwrap(),
            Some("python_jobs"),
            "https://t.me/python_jobs/7",
        );
        check(
            ChatId::channel(1234567890).unwrap(),
            None,
            "https://t.me/c/1234567890/7",
        );
        check(ChatId::basic_group(4012345).unwrap(), None, "");
    }
}
