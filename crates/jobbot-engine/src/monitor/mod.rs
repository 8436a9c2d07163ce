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
//! 8. the processed message on record, `relevant` or `not_relevant` (the original stored both;
//!    so do we: the web's history and statistics count what did not match too). Messages the
//!    pre-filters reject are not stored, as in the original: they are not vacancies;
//! 9. the [`Vacancy`] to the CRM, for the channels notified.
//!
//! An edit of a message never processed (a post whose caption arrives by edit, a message too
//! short at first) is processed like a new one; the original ignored every edit.
//!
//! Order of 6–8, and why: claims, then the outbox, then the record. The outbox is durable and
//! keyed per `(channel, source, message)`, so once a notification is enqueued a crash or a
//! concurrent processor cannot lose or double it. Recording first would lose the notification of
//! a crash between the record and the enqueue (the restart skips a message on record); the one
//! window left is between a claim and its enqueue.

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
use jobbot_core::ids::{ChatId, ChatKind, SessionName, Username};
use jobbot_core::notification::{Notification, format_notification, normalized_text_hash};
use jobbot_core::store::{
    MatchedChannel, NewOutboxMessage, OutboxKind, ProcessedMessage, Recipient, SenderSelection,
    Store, StoreError, UnixMillis, VacancyContacts, VacancyStatus,
};
use jobbot_core::telegram::{AccountEvent, IncomingMessage};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::engine::Engine;
use crate::vacancy::Vacancy;
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
    /// Pause between two username resolutions (or joins) of the main account.
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
    pub events: mpsc::UnboundedReceiver<(SessionName, AccountEvent)>,
    /// Where matched vacancies go for the CRM; `None` runs without CRM.
    pub vacancies: Option<mpsc::UnboundedSender<Vacancy>>,
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
    /// The store failed; the message is not on record and may be processed when seen again.
    Failed(String),
}

/// The running monitor.
pub struct MonitorHandle {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl MonitorHandle {
    /// Stops after the message being processed, if any.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for MonitorHandle {
    fn drop(&mut self) {
        if self.stop.is_some() {
            self.task.abort();
        }
    }
}

pub struct Monitor;

impl Monitor {
    pub fn spawn(parts: MonitorParts) -> MonitorHandle {
        let (stop, stop_rx) = oneshot::channel();
        let task = tokio::spawn(run(parts, stop_rx));
        MonitorHandle {
            stop: Some(stop),
            task,
        }
    }
}

async fn run(parts: MonitorParts, mut stop: oneshot::Receiver<()>) {
    let MonitorParts {
        engine,
        store,
        mut config,
        mut events,
        vacancies,
        reports,
        settings,
    } = parts;
    let Some(main) = engine.main_session().cloned() else {
        tracing::warn!(target: "monitor", "⚠️ Основной аккаунт не настроен: мониторинг источников выключен");
        return;
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
        store,
        settings,
        vacancies,
        reports,
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
            _ = &mut stop => break,
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
                None => break,
                Some((session, event)) if session == main => match event {
                    AccountEvent::NewMessage(message) => monitor.handle(message, false).await,
                    AccountEvent::MessageEdited(message) => monitor.handle(message, true).await,
                    AccountEvent::ConnectionLost | AccountEvent::ConnectionRestored => {}
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
    vacancies: Option<mpsc::UnboundedSender<Vacancy>>,
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

    async fn handle(&mut self, message: IncomingMessage, edited: bool) {
        let Some(outcome) = self.process(&message, edited).await else {
            return;
        };
        self.report(MonitorEvent::Message {
            source: message.chat,
            message_id: message.message_id,
            edited,
            outcome,
        });
    }

    fn report(&self, event: MonitorEvent) {
        if let Some(reports) = &self.reports {
            // A consumer that went away is not monitoring's concern.
            let _ = reports.send(event);
        }
    }

    /// `None` for a message that is not from a source.
    async fn process(&self, message: &IncomingMessage, edited: bool) -> Option<MessageOutcome> {
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
            return Some(MessageOutcome::Ignored(rejection));
        }
        Some(
            match self
                .process_candidate(message, edited, &title, routes, &candidates, now)
                .await
            {
                Ok(outcome) => outcome,
                Err(error) => {
                    tracing::error!(target: "monitor", "❌ Сообщение {} из {title} не обработано: {error}", message.message_id);
                    MessageOutcome::Failed(error.to_string())
                }
            },
        )
    }

    async fn process_candidate(
        &self,
        message: &IncomingMessage,
        edited: bool,
        title: &str,
        routes: &Routes,
        candidates: &BTreeSet<usize>,
        now: UnixMillis,
    ) -> Result<MessageOutcome, StoreError> {
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

        let mut matched = Vec::with_capacity(matches.len());
        for found in &matches {
            let channel = &routes.channels[found.channel];
            let notified = self
                .store
                .claim_notification(&channel.id, &text_hash, window_start, now)
                .await?;
            if notified {
                let content = format_notification(&Notification {
                    source_title: title,
                    link: &link,
                    matched_keywords: &found.keywords,
                    sender: message.sender.as_ref(),
                    contacts: &contacts.contacts,
                    vacancy_text: &message.text,
                });
                let enqueued = self
                    .engine
                    .enqueue(NewOutboxMessage {
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
                        // The engine's message TTL.
                        expires_at: UnixMillis(0),
                    })
                    .await;
                match enqueued {
                    Ok(_) => {
                        tracing::info!(target: "monitor", "📤 Уведомление для '{}' поставлено в очередь", channel.name)
                    }
                    Err(error) => {
                        tracing::error!(target: "monitor", "❌ Уведомление для '{}' не поставлено в очередь: {error}", channel.name)
                    }
                }
            } else {
                tracing::info!(target: "monitor", "🔁 Повтор вакансии из {title}: канал '{}' уже получил её", channel.name);
            }
            matched.push(MatchedChannel {
                channel_id: channel.id.clone(),
                keywords: found.keywords.clone(),
                notified,
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
            matched: matched.clone(),
            contacts: VacancyContacts {
                telegram: contacts
                    .contacts
                    .telegram
                    .iter()
                    .map(Username::with_at)
                    .collect(),
                emails: contacts.contacts.emails.clone(),
                phones: contacts.contacts.phones.clone(),
                crm_target: crm_target(&candidates_for_crm).and_then(|candidate| match &candidate
                    .target
                {
                    CandidateTarget::Username(name) => Some(name.with_at()),
                    CandidateTarget::Sender { username, .. } => {
                        username.as_ref().map(Username::with_at)
                    }
                }),
            },
        };
        let first = self.store.record_processed(&record).await?;
        let (notified, reposts): (Vec<&MatchedChannel>, Vec<&MatchedChannel>) =
            matched.iter().partition(|channel| channel.notified);
        let notified: Vec<String> = notified.iter().map(|c| c.channel_id.clone()).collect();
        if !first {
            // Another processor recorded it meanwhile; its CRM hand-over is the one that counts.
            tracing::debug!(target: "monitor", "сообщение {} из {title} уже обработано параллельно", message.message_id);
        } else if !notified.is_empty()
            && let Some(vacancies) = &self.vacancies
        {
            let _ = vacancies.send(Vacancy {
                source: message.chat,
                source_title: title.to_owned(),
                source_username: message.chat_username.clone(),
                message_id: message.message_id,
                link,
                text: message.text.clone(),
                sender: message.sender.clone(),
                channels: notified.clone(),
                candidates: candidates_for_crm,
                posted_at: record.posted_at,
            });
        }
        Ok(MessageOutcome::Processed {
            status,
            notified,
            reposts: reposts.iter().map(|c| c.channel_id.clone()).collect(),
        })
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
