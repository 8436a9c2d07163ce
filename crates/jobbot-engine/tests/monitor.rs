//! Monitoring against the Telegram simulator, on paused tokio time: sources in, notifications out
//! through the engine's outbox, history in the in-memory store.

use std::sync::Arc;
use std::time::Duration;

use jobbot_core::config::{self, Config, SourceRef};
use jobbot_core::filters::PreFilterRejection;
use jobbot_core::ids::{ChatId, SessionName, Username};
use jobbot_core::store::{Store, UnixMillis, VacancyQuery, VacancyStatus};
use jobbot_core::telegram::EntityKind;
use jobbot_core::workflow::Workflow;
use jobbot_engine::{
    Crm, CrmParts, CrmSettings, Engine, EngineClock, EngineSettings, MessageOutcome, Monitor,
    MonitorEvent, MonitorHandle, MonitorParts, MonitorSettings, NoAutoReplies, router,
};
use jobbot_sim::{NewUser, SimConnector, SimParams, SimWorld};
use tokio::sync::{mpsc, watch};

const WAIT: Duration = Duration::from_secs(600);

/// A vacancy both output channels take: `python` for one, `django` for the other.
const PYTHON_AND_DJANGO: &str = "Ищем Python-разработчика (Django, PostgreSQL) в продуктовую команду. \
     Удалёнка, 300к. Пишите @anna_hr или на hr@gmail.com";
const PYTHON_ONLY: &str = "Python-разработчик на парсинг и автоматизацию, проектная занятость, \
     оплата за проект. Контакт: t.me/ivan_recruiter";
const NEITHER: &str =
    "Требуется дизайнер интерфейсов в мобильную команду, Figma обязательна, опыт от 3 лет";

fn session(name: &str) -> SessionName {
    SessionName::parse(name).unwrap()
}

fn username(name: &str) -> Username {
    Username::parse(name).unwrap()
}

/// One output channel: config id, Telegram id, sources as written, include keywords.
struct OutputChannel<'a> {
    id: &'a str,
    telegram_id: ChatId,
    sources: Vec<String>,
    include: &'a [&'a str],
}

/// Every channel answers vacancies' authors through a CRM group (its agent never connects here:
/// monitoring only hands the auto-responses over, and no CRM executes them).
fn config(channels: &[OutputChannel<'_>]) -> Arc<Config> {
    let channels: Vec<serde_json::Value> = channels
        .iter()
        .map(|channel| {
            serde_json::json!({
                "id": channel.id, "name": channel.id, "telegram_id": channel.telegram_id.get(),
                "input_sources": channel.sources, "filters": {"include_keywords": channel.include},
                "crm_enabled": true, "crm_group_id": -1009999999999i64,
                "agents": [{"phone": "+79990000999", "session_name": "agent_offline"}],
                "auto_response_enabled": true,
                "auto_response_template": "Hi {first_name}!"
            })
        })
        .collect();
    let text = serde_json::json!({ "output_channels": channels }).to_string();
    Arc::new(config::load(&text).expect("test config is valid").config)
}

struct Harness {
    world: SimWorld,
    engine: Engine,
    store: Arc<dyn Store>,
    monitor: MonitorHandle,
    /// Every report of the monitor, losslessly.
    reports: mpsc::UnboundedReceiver<MonitorEvent>,
    config: watch::Sender<Arc<Config>>,
    main: ChatId,
    admin: ChatId,
    /// `@python_jobs`, public.
    python_jobs: ChatId,
    /// `@go_jobs`, public.
    go_jobs: ChatId,
    /// No username: configurable only by id.
    private_jobs: ChatId,
    /// Output channels, the main account is their admin.
    out_python: ChatId,
    out_backend: ChatId,
}

impl Harness {
    /// A world with three source channels the main account is in and two output channels it
    /// posts to; `configure` writes the channels' configuration from the harness's chat ids.
    async fn start(configure: impl FnOnce(&Harness) -> Arc<Config>) -> Self {
        Self::start_with(MonitorSettings::default(), configure).await
    }

    async fn start_with(
        settings: MonitorSettings,
        configure: impl FnOnce(&Harness) -> Arc<Config>,
    ) -> Self {
        Self::start_in(SimParams::default(), settings, configure).await
    }

    /// [`Harness::start_with`] in a simulated Telegram with `params`.
    async fn start_in(
        params: SimParams,
        settings: MonitorSettings,
        configure: impl FnOnce(&Harness) -> Arc<Config>,
    ) -> Self {
        let world = SimWorld::new(params);
        let main = world.create_account("bot_session", NewUser::named("Jobbot"));
        let admin = world.create_user(NewUser::named("Admin"));
        let python_jobs = world.create_channel("Python Jobs", Some("python_jobs"), &[admin]);
        let go_jobs = world.create_channel("Go Jobs", Some("go_jobs"), &[admin]);
        let private_jobs = world.create_channel("Closed Jobs", None, &[admin]);
        for source in [python_jobs, go_jobs, private_jobs] {
            world.add_member(source, main);
        }
        let out_python = world.create_channel("Python vacancies", None, &[main]);
        let out_backend = world.create_channel("Backend vacancies", None, &[main]);

        let store: Arc<dyn Store> = Arc::new(jobbot_store::MemoryStore::new());
        let (config_tx, config_rx) = watch::channel(Arc::new(Config::default()));
        let engine = Engine::start(
            EngineSettings {
                main_session: Some(session("bot_session")),
                seed: 7,
                ..EngineSettings::default()
            },
            Arc::new(SimConnector::new(world.clone())),
            Arc::clone(&store),
            config_rx.clone(),
            EngineClock::starting_at(UnixMillis(world.now_unix() * 1000)),
        )
        .await
        .expect("engine starts");
        let (_router, mut streams) = router::fan_out(engine.take_telegram_events().unwrap(), 2);
        // The CRM takes the hand-over; it does not run here, so its workflows stay stored.
        let crm = Crm::new(CrmParts {
            engine: engine.clone(),
            config: config_rx.clone(),
            telegram: streams.pop().unwrap(),
            replier: Arc::new(NoAutoReplies),
            ai: None,
            settings: CrmSettings::default(),
        })
        .await
        .unwrap();
        let (reports_tx, reports) = mpsc::unbounded_channel();
        let monitor = Monitor::spawn(MonitorParts {
            engine: engine.clone(),
            store: Arc::clone(&store),
            config: config_rx,
            events: streams.pop().unwrap(),
            crm: Some(crm.handle()),
            reports: Some(reports_tx),
            settings,
        });

        // Telegram delivers updates only to connected sessions: wait for the main account.
        tokio::time::timeout(
            WAIT,
            engine.wait_for_links(|links| {
                links
                    .get(&session("bot_session"))
                    .is_some_and(|link| link.is_ready())
            }),
        )
        .await
        .expect("the main account connects")
        .expect("the engine runs");

        let harness = Self {
            world,
            engine,
            store,
            monitor,
            reports,
            config: config_tx,
            main,
            admin,
            python_jobs,
            go_jobs,
            private_jobs,
            out_python,
            out_backend,
        };
        harness.reconfigure(configure(&harness));
        harness
    }

    /// The usual configuration: `python` takes "python" from all three sources, `backend` takes
    /// "django" or "backend" from `@python_jobs` and `@go_jobs`.
    fn two_channels(&self) -> Arc<Config> {
        config(&[
            OutputChannel {
                id: "python",
                telegram_id: self.out_python,
                sources: vec![
                    "@python_jobs".into(),
                    "https://t.me/go_jobs".into(),
                    self.private_jobs.get().to_string(),
                ],
                include: &["python"],
            },
            OutputChannel {
                id: "backend",
                telegram_id: self.out_backend,
                sources: vec!["t.me/python_jobs".into(), "@Go_Jobs".into()],
                include: &["django", "backend"],
            },
        ])
    }

    fn reconfigure(&self, config: Arc<Config>) {
        self.config.send_replace(config);
    }

    /// What monitoring did with a message; skips reports about other messages.
    async fn outcome(&mut self, source: ChatId, message_id: i32) -> (bool, MessageOutcome) {
        tokio::time::timeout(WAIT, async {
            loop {
                match self.reports.recv().await.expect("monitor runs") {
                    MonitorEvent::Message {
                        source: reported,
                        message_id: id,
                        edited,
                        outcome,
                    } if reported == source && id == message_id => return (edited, outcome),
                    _ => {}
                }
            }
        })
        .await
        .expect("the message is reported")
    }

    async fn post(&mut self, source: ChatId, text: &str) -> (i32, MessageOutcome) {
        let id = self.world.channel_post(source, text);
        let (_, outcome) = self.outcome(source, id).await;
        (id, outcome)
    }

    /// Waits (on the store's state, polled on paused time) until nothing is pending and at least
    /// `count` messages have ended, and returns how many were sent. Only notifications go through
    /// the outbox here: no CRM runs.
    async fn notifications_finished(&mut self, count: u64) -> u64 {
        tokio::time::timeout(WAIT, async {
            loop {
                let counts = self.store.outbox_counts().await.unwrap();
                if counts.pending == 0 && counts.sent + counts.failed + counts.expired >= count {
                    return counts.sent;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .expect("the notifications are delivered")
    }

    /// Every notification text posted to an output channel.
    fn posted(&self, channel: ChatId) -> Vec<String> {
        self.world
            .chat_messages(channel)
            .into_iter()
            .map(|message| message.text)
            .collect()
    }

    /// After everything was delivered: nothing is left in the outbox.
    async fn assert_outbox_drained(&self, sent: u64) {
        let counts = self.store.outbox_counts().await.unwrap();
        assert_eq!((counts.pending, counts.sent, counts.failed), (0, sent, 0));
    }
}

fn processed(notified: &[&str], reposts: &[&str]) -> MessageOutcome {
    MessageOutcome::Processed {
        status: if notified.is_empty() && reposts.is_empty() {
            VacancyStatus::NotRelevant
        } else {
            VacancyStatus::Relevant
        },
        notified: notified.iter().map(|c| (*c).to_owned()).collect(),
        reposts: reposts.iter().map(|c| (*c).to_owned()).collect(),
    }
}

#[tokio::test(start_paused = true)]
async fn a_post_reaches_every_matching_output_channel_once() {
    let mut harness = Harness::start(Harness::two_channels).await;
    let source = harness.python_jobs;

    let (both, outcome) = harness.post(source, PYTHON_AND_DJANGO).await;
    assert_eq!(outcome, processed(&["python", "backend"], &[]));
    let (one, outcome) = harness.post(source, PYTHON_ONLY).await;
    assert_eq!(outcome, processed(&["python"], &[]));
    let (_, outcome) = harness.post(source, NEITHER).await;
    assert_eq!(outcome, processed(&[], &[]));

    assert_eq!(harness.notifications_finished(3).await, 3);
    let python = harness.posted(harness.out_python);
    let backend = harness.posted(harness.out_backend);
    assert_eq!(python.len(), 2, "{python:#?}");
    assert_eq!(backend.len(), 1, "{backend:#?}");
    assert!(python.iter().any(|text| text.contains(PYTHON_AND_DJANGO)));
    assert!(python.iter().any(|text| text.contains(PYTHON_ONLY)));
    assert!(backend[0].contains(PYTHON_AND_DJANGO));
    harness.assert_outbox_drained(3).await;

    // The CRM's auto-responses are on record with the notifications: one per channel notified,
    // each to the vacancy's best contact, nothing for the third message.
    let handed_over: Vec<(String, i32, String, String)> = harness
        .store
        .active_workflows()
        .await
        .unwrap()
        .into_iter()
        .map(|record| match record.state {
            Workflow::AutoResponse(workflow) => (
                workflow.channel_id,
                workflow.vacancy.message_id,
                workflow.contact.to_string(),
                workflow.vacancy.link,
            ),
            other => panic!("{other:?}"),
        })
        .collect();
    let link = |id: i32| format!("https://t.me/python_jobs/{id}");
    assert_eq!(
        handed_over,
        [
            ("python".to_owned(), both, "@anna_hr".to_owned(), link(both)),
            (
                "backend".to_owned(),
                both,
                "@anna_hr".to_owned(),
                link(both)
            ),
            (
                "python".to_owned(),
                one,
                "@ivan_recruiter".to_owned(),
                link(one)
            ),
        ]
    );
    harness.monitor.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_vacancy_reposted_in_another_source_is_notified_once_per_channel() {
    let mut harness = Harness::start(Harness::two_channels).await;
    let (_, outcome) = harness.post(harness.python_jobs, PYTHON_AND_DJANGO).await;
    assert_eq!(outcome, processed(&["python", "backend"], &[]));

    // Another source copies it an hour later with its own emoji, punctuation and signature.
    tokio::time::advance(Duration::from_secs(3600)).await;
    let repost = format!("🔥🔥 {PYTHON_AND_DJANGO}!\n\n— @go_jobs, https://t.me/go_jobs");
    let (_, outcome) = harness.post(harness.go_jobs, &repost).await;
    assert_eq!(outcome, processed(&[], &["python", "backend"]));

    assert_eq!(harness.notifications_finished(2).await, 2);
    assert_eq!(harness.posted(harness.out_python).len(), 1);
    assert_eq!(harness.posted(harness.out_backend).len(), 1);
    // Both are on record; the repost knows it was not notified.
    let history = harness
        .store
        .vacancies(&VacancyQuery {
            limit: 10,
            ..VacancyQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(history.len(), 2);
    assert!(history[0].message.matched.iter().all(|m| !m.notified));
    assert!(history[1].message.matched.iter().all(|m| m.notified));
    harness.assert_outbox_drained(2).await;

    // After the window, the same text is news again.
    tokio::time::advance(Duration::from_secs(24 * 3600)).await;
    let (_, outcome) = harness.post(harness.python_jobs, PYTHON_AND_DJANGO).await;
    assert_eq!(outcome, processed(&["python", "backend"], &[]));
}

#[tokio::test(start_paused = true)]
async fn an_edit_does_not_notify_again_but_a_message_completed_by_an_edit_counts() {
    let mut harness = Harness::start(Harness::two_channels).await;
    let source = harness.python_jobs;
    let (id, _) = harness.post(source, PYTHON_ONLY).await;
    harness.world.edit_chat_message(
        source,
        id,
        &format!("{PYTHON_ONLY} (обновлено: Django тоже)"),
    );
    assert_eq!(
        harness.outcome(source, id).await,
        (true, MessageOutcome::AlreadyProcessed)
    );

    // A post whose text arrives by edit (too short at first) is a new vacancy then.
    let (short, outcome) = harness.post(source, "Вакансия, подробности ниже").await;
    assert!(matches!(
        outcome,
        MessageOutcome::Ignored(PreFilterRejection::TooShort { .. })
    ));
    harness
        .world
        .edit_chat_message(source, short, PYTHON_AND_DJANGO);
    assert_eq!(
        harness.outcome(source, short).await,
        (true, processed(&["python", "backend"], &[]))
    );

    assert_eq!(harness.notifications_finished(3).await, 3);
    assert_eq!(harness.posted(harness.out_python).len(), 2);
    harness.assert_outbox_drained(3).await;
}

#[tokio::test(start_paused = true)]
async fn sources_route_however_they_were_written() {
    let mut harness = Harness::start(Harness::two_channels).await;
    // "@python_jobs", "https://t.me/go_jobs" and the private channel's "-100…" id.
    for (source, expected) in [
        (harness.python_jobs, processed(&["python"], &[])),
        (harness.go_jobs, processed(&["python"], &[])),
        (harness.private_jobs, processed(&["python"], &[])),
    ] {
        let text = format!("{PYTHON_ONLY} #{}", source.get());
        let (_, outcome) = harness.post(source, &text).await;
        assert_eq!(outcome, expected, "{source}");
    }
    // A bare id (as Telethon prints it) is the same channel as its -100 form.
    let bare = harness.private_jobs.bare().to_string();
    harness.reconfigure(config(&[OutputChannel {
        id: "bare",
        telegram_id: harness.out_backend,
        sources: vec![bare],
        include: &[],
    }]));
    let (_, outcome) = harness.post(harness.private_jobs, NEITHER).await;
    assert_eq!(outcome, processed(&["bare"], &[]));

    assert_eq!(harness.notifications_finished(4).await, 4);
    assert_eq!(harness.posted(harness.out_python).len(), 3);
    let private_link = format!("https://t.me/c/{}/", harness.private_jobs.bare());
    assert!(harness.posted(harness.out_python)[2].contains(&private_link));
    // Each username was resolved once, paced, whatever the number of messages.
    let resolves = harness.world.counters(harness.main).resolves;
    assert!(resolves <= 2, "{resolves} resolves for two usernames");
}

#[tokio::test(start_paused = true)]
async fn short_old_service_and_own_messages_are_ignored() {
    let mut harness = Harness::start(|harness| {
        let group =
            harness
                .world
                .create_group("Jobs chat", Some("jobs_chat"), true, &[harness.admin]);
        harness.world.add_member(group, harness.main);
        config(&[OutputChannel {
            id: "all",
            telegram_id: harness.out_python,
            sources: vec!["@python_jobs".into(), "@jobs_chat".into()],
            include: &[],
        }])
    })
    .await;
    let group = harness.world.find_username("jobs_chat").unwrap();
    let check = |outcome: MessageOutcome, expected: fn(&PreFilterRejection) -> bool| match &outcome
    {
        MessageOutcome::Ignored(rejection) if expected(rejection) => {}
        other => panic!("unexpected {other:?}"),
    };

    let (_, outcome) = harness
        .post(harness.python_jobs, "Ищем джуна, пишите в лс")
        .await;
    check(outcome, |r| {
        matches!(r, PreFilterRejection::TooShort { .. })
    });

    let topic = harness.world.create_topic(group, harness.admin, "Вакансии");
    let (_, outcome) = harness.outcome(group, topic.0).await;
    check(outcome, |r| *r == PreFilterRejection::ServiceMessage);

    let own = harness
        .world
        .group_post(group, harness.main, None, PYTHON_AND_DJANGO)
        .unwrap();
    let (_, outcome) = harness.outcome(group, own).await;
    check(outcome, |r| *r == PreFilterRejection::Outgoing);

    // An old message seen now (its text arrived by an edit a day later) is history.
    let (old, _) = harness.post(harness.python_jobs, "Скоро вакансия").await;
    tokio::time::advance(Duration::from_secs(25 * 3600)).await;
    harness
        .world
        .edit_chat_message(harness.python_jobs, old, PYTHON_AND_DJANGO);
    let (_, outcome) = harness.outcome(harness.python_jobs, old).await;
    check(outcome, |r| matches!(r, PreFilterRejection::TooOld { .. }));

    // None of them is on record or notified.
    let history = harness
        .store
        .vacancies(&VacancyQuery {
            limit: 10,
            ..VacancyQuery::default()
        })
        .await
        .unwrap();
    assert!(history.is_empty(), "{history:#?}");
    assert!(harness.posted(harness.out_python).is_empty());
    harness.assert_outbox_drained(0).await;
}

#[tokio::test(start_paused = true)]
async fn sources_added_and_dropped_by_a_config_change_take_effect_live() {
    let mut harness = Harness::start(|harness| {
        config(&[OutputChannel {
            id: "python",
            telegram_id: harness.out_python,
            sources: vec!["@python_jobs".into()],
            include: &["python"],
        }])
    })
    .await;
    let source = harness.python_jobs;
    // Not a source yet: nothing is reported for it; the next post shows it was passed over.
    let ignored = harness.world.channel_post(harness.go_jobs, PYTHON_ONLY);
    let (_, outcome) = harness.post(source, PYTHON_AND_DJANGO).await;
    assert_eq!(outcome, processed(&["python"], &[]));

    harness.reconfigure(config(&[OutputChannel {
        id: "python",
        telegram_id: harness.out_python,
        sources: vec!["@go_jobs".into()],
        include: &["python"],
    }]));
    // The new source is resolved in the background.
    tokio::time::timeout(WAIT, async {
        loop {
            if let MonitorEvent::SourceResolved { source, chat } =
                harness.reports.recv().await.unwrap()
                && source == SourceRef::Username(username("go_jobs"))
            {
                assert_eq!(chat, harness.go_jobs);
                return;
            }
        }
    })
    .await
    .expect("the new source is resolved");
    let (added, outcome) = harness
        .post(harness.go_jobs, &format!("{PYTHON_ONLY} (Go Jobs)"))
        .await;
    assert!(added > ignored);
    assert_eq!(outcome, processed(&["python"], &[]));
    // The dropped source is passed over now; the go_jobs post after it is the barrier.
    harness.world.channel_post(source, PYTHON_ONLY);
    let (_, outcome) = harness.post(harness.go_jobs, NEITHER).await;
    assert_eq!(outcome, processed(&[], &[]));

    assert_eq!(harness.notifications_finished(2).await, 2);
    assert_eq!(harness.posted(harness.out_python).len(), 2);
    let history = harness
        .store
        .vacancies(&VacancyQuery {
            limit: 10,
            ..VacancyQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(history.len(), 3, "the unrouted posts are not on record");
}

#[tokio::test(start_paused = true)]
async fn the_notification_quotes_the_vacancy_with_its_link_keywords_and_contacts() {
    let mut harness = Harness::start(Harness::two_channels).await;
    let text = format!("{PYTHON_AND_DJANGO}. *Бонусы* _и_ [плюшки]");
    let (id, _) = harness.post(harness.python_jobs, &text).await;
    assert_eq!(harness.notifications_finished(2).await, 2);

    // The store numbers outbox messages from 1.
    let mut backend = None;
    for raw in 1.. {
        let Some(message) = harness
            .store
            .outbox_message(jobbot_core::store::OutboxId(raw))
            .await
            .unwrap()
        else {
            break;
        };
        if message.message.channel_id == "backend" {
            backend = Some(message);
        }
    }
    let message = backend.expect("a notification for backend");
    assert_eq!(
        message.message.idempotency_key.as_deref(),
        Some(format!("notification:backend:{}:{id}", harness.python_jobs).as_str())
    );
    let content = &message.message.content;
    let link = format!("https://t.me/python_jobs/{id}");
    for expected in [
        "🎯 Новая вакансия!",
        "📍 Чат: Python Jobs",
        "Ключевые слова: django",
        &link,
        "✉️ @anna_hr",
        "📧 hr@gmail.com",
    ] {
        assert!(
            content.text.contains(expected),
            "{expected:?} in {}",
            content.text
        );
    }
    // Markdown characters are the vacancy's own, untouched.
    assert!(content.text.ends_with(&text), "{}", content.text);
    let units: Vec<u16> = content.text.encode_utf16().collect();
    let covered = |kind: EntityKind| -> Vec<String> {
        content
            .entities
            .iter()
            .filter(|entity| entity.kind == kind)
            .map(|entity| {
                let start = entity.offset as usize;
                String::from_utf16(&units[start..start + entity.length as usize]).unwrap()
            })
            .collect()
    };
    assert_eq!(covered(EntityKind::Url), vec![link]);
    assert_eq!(covered(EntityKind::Blockquote), vec![text.clone()]);
    assert_eq!(
        covered(EntityKind::Bold),
        vec![
            "Новая вакансия!",
            "Чат:",
            "Ключевые слова:",
            "Перейти:",
            "Контакты:"
        ]
    );
    // What Telegram shows is that text.
    assert_eq!(
        harness.posted(harness.out_backend),
        vec![content.text.clone()]
    );
}

#[tokio::test(start_paused = true)]
async fn the_history_lists_relevant_and_not_relevant_messages_with_their_contacts() {
    let mut harness = Harness::start(Harness::two_channels).await;
    let (relevant, _) = harness.post(harness.python_jobs, PYTHON_AND_DJANGO).await;
    let (not_relevant, _) = harness
        .post(
            harness.python_jobs,
            &format!("{NEITHER}. Резюме: design@yandex.ru, +7 999 123-45-67"),
        )
        .await;

    let list = |status: Option<VacancyStatus>| {
        let store = Arc::clone(&harness.store);
        async move {
            store
                .vacancies(&VacancyQuery {
                    status,
                    limit: 10,
                    ..VacancyQuery::default()
                })
                .await
                .unwrap()
        }
    };
    let all = list(None).await;
    assert_eq!(
        all.iter()
            .map(|record| (record.message.message_id, record.message.status))
            .collect::<Vec<_>>(),
        vec![
            (not_relevant, VacancyStatus::NotRelevant),
            (relevant, VacancyStatus::Relevant)
        ]
    );
    let relevant_rows = list(Some(VacancyStatus::Relevant)).await;
    assert_eq!(relevant_rows.len(), 1);
    let record = &relevant_rows[0].message;
    assert_eq!(record.source, harness.python_jobs);
    assert_eq!(record.source_title, "Python Jobs");
    assert_eq!(record.link, format!("https://t.me/python_jobs/{relevant}"));
    assert_eq!(record.contacts.telegram, vec!["@anna_hr"]);
    assert_eq!(record.contacts.emails, vec!["hr@gmail.com"]);
    assert!(!record.contacts.telegram.contains(&"@gmail".to_owned()));
    assert_eq!(record.contacts.crm_target.as_deref(), Some("@anna_hr"));
    assert_eq!(
        record
            .matched
            .iter()
            .map(|m| (m.channel_id.as_str(), m.keywords.clone(), m.notified))
            .collect::<Vec<_>>(),
        vec![
            ("python", vec!["python".to_owned()], true),
            ("backend", vec!["django".to_owned()], true),
        ]
    );
    let other = &all[0].message;
    assert!(other.matched.is_empty());
    assert_eq!(other.contacts.emails, vec!["design@yandex.ru"]);
    assert_eq!(other.contacts.phones, vec!["+79991234567"]);
    assert!(other.contacts.telegram.is_empty());
}

#[tokio::test(start_paused = true)]
async fn public_sources_are_joined_when_auto_join_is_on() {
    let settings = MonitorSettings {
        auto_join_public_sources: true,
        ..MonitorSettings::default()
    };
    let mut harness = Harness::start_with(settings, |harness| {
        // The main account is not a member of this one: without joining it would see nothing.
        harness
            .world
            .create_channel("New Jobs", Some("new_jobs"), &[harness.admin]);
        config(&[OutputChannel {
            id: "python",
            telegram_id: harness.out_python,
            sources: vec!["@new_jobs".into(), "@no_such_channel".into()],
            include: &["python"],
        }])
    })
    .await;
    let new_jobs = harness.world.find_username("new_jobs").unwrap();
    let (mut joined, mut failed) = (false, false);
    tokio::time::timeout(WAIT, async {
        while !(joined && failed) {
            match harness.reports.recv().await.unwrap() {
                MonitorEvent::SourceResolved { source, chat } => {
                    assert_eq!(source, SourceRef::Username(username("new_jobs")));
                    assert_eq!(chat, new_jobs);
                    joined = true;
                }
                MonitorEvent::SourceFailed { source, .. } => {
                    assert_eq!(source, SourceRef::Username(username("no_such_channel")));
                    failed = true;
                }
                MonitorEvent::Message { .. } => {}
            }
        }
    })
    .await
    .expect("one source joined, one refused");

    let (_, outcome) = harness.post(new_jobs, PYTHON_ONLY).await;
    assert_eq!(outcome, processed(&["python"], &[]));
    assert_eq!(harness.notifications_finished(1).await, 1);
    assert_eq!(harness.posted(harness.out_python).len(), 1);
}

/// Joining sources is paced by the main account's join limiter: a flood wait on joins lowers
/// the join rate only (the account's sends and their rate are untouched) and the remaining
/// sources are joined once it is over, without asking Telegram during the wait.
#[tokio::test(start_paused = true)]
async fn a_join_flood_wait_lowers_the_join_rate_only_and_the_sources_are_joined_after_it() {
    use jobbot_core::scheduling::{CallClass, default_call_ceiling};
    // A simulated Telegram that allows two quick joins, then a 5-minute wait.
    let params = SimParams {
        join_channel: jobbot_sim::RateLimitParams {
            per_minute: 1,
            burst: 2,
            first_wait_seconds: 300,
            max_wait_seconds: 86_400,
            violation_memory_seconds: 3_600,
        },
        ..SimParams::default()
    };
    let settings = MonitorSettings {
        auto_join_public_sources: true,
        ..MonitorSettings::default()
    };
    let names = ["jobs_a", "jobs_b", "jobs_c", "jobs_d"];
    let mut harness = Harness::start_in(params, settings, |harness| {
        for name in names {
            harness
                .world
                .create_channel(name, Some(name), &[harness.admin]);
        }
        config(&[OutputChannel {
            id: "python",
            telegram_id: harness.out_python,
            sources: names.iter().map(|name| format!("@{name}")).collect(),
            include: &["python"],
        }])
    })
    .await;
    let mut joined = 0;
    tokio::time::timeout(Duration::from_secs(3_600), async {
        while joined < names.len() {
            if let MonitorEvent::SourceResolved { .. } = harness.reports.recv().await.unwrap() {
                joined += 1;
            }
        }
    })
    .await
    .expect("every source is joined once the flood wait is over");
    let counters = harness.world.counters(harness.main);
    assert_eq!(
        counters.flood_violations, 1,
        "one flood wait, never repeated"
    );
    assert_eq!(
        counters.other_flood_waits, 1,
        "nothing asked during the wait"
    );
    let agents = harness.engine.agents().await.unwrap();
    let account = agents
        .iter()
        .find(|agent| agent.session == session("bot_session"))
        .unwrap();
    let join = account
        .scheduling
        .calls
        .iter()
        .find(|call| call.class == CallClass::JoinChannel)
        .unwrap();
    assert!(
        join.learned_milli_per_minute
            < default_call_ceiling(CallClass::JoinChannel)
                .unwrap()
                .milli_per_minute,
        "{join:?}"
    );
    assert_eq!(
        account.scheduling.learned_milli_per_minute, account.scheduling.ceiling_milli_per_minute,
        "the send rate is another method's"
    );
    // Sends (notifications) go on.
    let jobs_a = harness.world.find_username("jobs_a").unwrap();
    let (_, outcome) = harness.post(jobs_a, PYTHON_ONLY).await;
    assert_eq!(outcome, processed(&["python"], &[]));
    assert_eq!(harness.notifications_finished(1).await, 1);
}

/// Monitoring over an engine on `world` and `store`, checkpointing every `checkpoint_interval`.
async fn start_monitoring(
    world: &SimWorld,
    store: &Arc<dyn Store>,
    config: Arc<Config>,
    checkpoint_interval: Duration,
) -> (Engine, MonitorHandle, mpsc::UnboundedReceiver<MonitorEvent>) {
    let (_config_tx, config_rx) = watch::channel(config);
    // The sender is dropped: the configuration stays as it is (the engine keeps the last).
    let engine = Engine::start(
        EngineSettings {
            main_session: Some(session("bot_session")),
            seed: 7,
            owner: jobbot_engine::OwnerSettings {
                checkpoint_interval,
                ..jobbot_engine::OwnerSettings::default()
            },
            ..EngineSettings::default()
        },
        Arc::new(SimConnector::new(world.clone())),
        Arc::clone(store),
        config_rx.clone(),
        EngineClock::starting_at(UnixMillis(world.now_unix() * 1000)),
    )
    .await
    .unwrap();
    let (reports_tx, reports) = mpsc::unbounded_channel();
    let monitor = Monitor::spawn(MonitorParts {
        engine: engine.clone(),
        store: Arc::clone(store),
        config: config_rx,
        events: engine.take_telegram_events().unwrap(),
        crm: None,
        reports: Some(reports_tx),
        settings: MonitorSettings::default(),
    });
    tokio::time::timeout(
        WAIT,
        engine.wait_for_links(|links| {
            links
                .get(&session("bot_session"))
                .is_some_and(|link| link.is_ready())
        }),
    )
    .await
    .unwrap()
    .unwrap();
    (engine, monitor, reports)
}

/// The messages monitoring reported, as (message id, outcome), until `quiet` passes without one.
async fn reported(
    reports: &mut mpsc::UnboundedReceiver<MonitorEvent>,
    quiet: Duration,
) -> Vec<(i32, MessageOutcome)> {
    let mut seen = Vec::new();
    while let Ok(Some(event)) = tokio::time::timeout(quiet, reports.recv()).await {
        if let MonitorEvent::Message {
            message_id,
            outcome,
            ..
        } = event
        {
            seen.push((message_id, outcome));
        }
    }
    seen
}

/// The update position is saved while running: a checkpoint every interval, committed once
/// monitoring has every message before it on record. A restart (here without any orderly
/// shutdown of the positions) catches up on what was posted while jobbot was down, and what was
/// handled before the last saved position is not delivered again. Without a saved position past
/// a message, it is delivered again and the processed record absorbs it: nothing is notified
/// twice, nothing is lost.
#[tokio::test(start_paused = true)]
async fn a_restart_catches_up_from_the_saved_update_position() {
    for (checkpoint_interval, replayed) in [
        (Duration::from_secs(10), false),
        (Duration::from_secs(24 * 3600), true),
    ] {
        let world = SimWorld::new(SimParams::default());
        let main = world.create_account("bot_session", NewUser::named("Jobbot"));
        let admin = world.create_user(NewUser::named("Admin"));
        let source = world.create_channel("Python Jobs", Some("python_jobs"), &[admin]);
        world.add_member(source, main);
        let out = world.create_channel("Python vacancies", None, &[main]);
        let store: Arc<dyn Store> = Arc::new(jobbot_store::MemoryStore::new());
        let config = || {
            let channels = serde_json::json!({"output_channels": [{
                "id": "python", "name": "python", "telegram_id": out.get(),
                "input_sources": ["@python_jobs"], "filters": {"include_keywords": ["python"]}
            }]});
            Arc::new(config::load(&channels.to_string()).unwrap().config)
        };

        let (engine, monitor, mut reports) =
            start_monitoring(&world, &store, config(), checkpoint_interval).await;
        let before = world.channel_post(source, PYTHON_ONLY);
        assert_eq!(
            reported(&mut reports, Duration::from_secs(60)).await,
            [(before, processed(&["python"], &[]))]
        );
        // A crash-like stop: nothing flushes the position.
        monitor.stop().await;
        engine.shutdown().await;

        let during = world.channel_post(source, PYTHON_AND_DJANGO);
        let (engine, monitor, mut reports) =
            start_monitoring(&world, &store, config(), checkpoint_interval).await;
        let seen = reported(&mut reports, Duration::from_secs(60)).await;
        let mut expected = Vec::new();
        if replayed {
            expected.push((before, MessageOutcome::AlreadyProcessed));
        }
        expected.push((during, processed(&["python"], &[])));
        assert_eq!(seen, expected, "checkpoints every {checkpoint_interval:?}");
        tokio::time::timeout(WAIT, async {
            while world.chat_messages(out).len() < 2 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .expect("both are notified");
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(world.chat_messages(out).len(), 2, "each notified once");
        monitor.stop().await;
        engine.shutdown().await;
    }
}

/// An orderly stop saves the position of everything taken in: the next start replays nothing.
#[tokio::test(start_paused = true)]
async fn flushing_the_positions_leaves_nothing_to_replay() {
    let world = SimWorld::new(SimParams::default());
    let main = world.create_account("bot_session", NewUser::named("Jobbot"));
    let admin = world.create_user(NewUser::named("Admin"));
    let source = world.create_channel("Python Jobs", Some("python_jobs"), &[admin]);
    world.add_member(source, main);
    let out = world.create_channel("Python vacancies", None, &[main]);
    let store: Arc<dyn Store> = Arc::new(jobbot_store::MemoryStore::new());
    let channels = serde_json::json!({"output_channels": [{
        "id": "python", "name": "python", "telegram_id": out.get(),
        "input_sources": ["@python_jobs"], "filters": {"include_keywords": ["python"]}
    }]});
    let config = Arc::new(config::load(&channels.to_string()).unwrap().config);
    // Periodic checkpoints far apart: only the flush saves the position.
    let hours = Duration::from_secs(24 * 3600);
    let (engine, monitor, mut reports) =
        start_monitoring(&world, &store, Arc::clone(&config), hours).await;
    let first = world.channel_post(source, PYTHON_ONLY);
    assert_eq!(
        reported(&mut reports, Duration::from_secs(60)).await,
        [(first, processed(&["python"], &[]))]
    );
    assert_eq!(
        engine
            .flush_positions(Duration::from_secs(60))
            .await
            .unwrap(),
        1
    );
    monitor.stop().await;
    engine.shutdown().await;
    let (engine, monitor, mut reports) = start_monitoring(&world, &store, config, hours).await;
    assert_eq!(reported(&mut reports, Duration::from_secs(60)).await, []);
    monitor.stop().await;
    engine.shutdown().await;
}

/// Catch-up after a restart neither stalls nor loses. A flood wait on one source's catch-up
/// (`updates.getChannelDifference`) holds that source only: the other source's vacancy is taken
/// in while it waits. The held source missed more messages than one channel difference returns
/// (`channelDifferenceTooLong`): once its wait is over, every one of them is taken in, once, in
/// order, from the channel's history.
#[tokio::test(start_paused = true)]
async fn catch_up_after_a_restart_neither_stalls_nor_loses() {
    let world = SimWorld::new(SimParams::default());
    let main = world.create_account("bot_session", NewUser::named("Jobbot"));
    let admin = world.create_user(NewUser::named("Admin"));
    let held = world.create_channel("Python Jobs", Some("python_jobs"), &[admin]);
    let other = world.create_channel("Go Jobs", Some("go_jobs"), &[admin]);
    for source in [held, other] {
        world.add_member(source, main);
    }
    let out = world.create_channel("Python vacancies", None, &[main]);
    let store: Arc<dyn Store> = Arc::new(jobbot_store::MemoryStore::new());
    let channels = serde_json::json!({"output_channels": [{
        "id": "python", "name": "python", "telegram_id": out.get(),
        "input_sources": ["@python_jobs", "@go_jobs"],
        "filters": {"include_keywords": ["python"]}
    }]});
    let config = Arc::new(config::load(&channels.to_string()).unwrap().config);
    let interval = Duration::from_secs(10);

    let (engine, monitor, mut reports) =
        start_monitoring(&world, &store, Arc::clone(&config), interval).await;
    let first = world.channel_post(held, PYTHON_ONLY);
    assert_eq!(
        next_report(&mut reports).await,
        (held, first, processed(&["python"], &[]))
    );
    engine.flush_positions(WAIT).await.unwrap();
    monitor.stop().await;
    engine.shutdown().await;

    // While jobbot is down: a long gap in one source, one vacancy in the other.
    let gap = world.params().channel_difference_limit * 2;
    let mut missed: Vec<i32> = (0..gap)
        .map(|n| world.channel_post(held, &format!("{NEITHER} #{n}")))
        .collect();
    missed.push(world.channel_post(held, &format!("{PYTHON_ONLY} #last")));
    let elsewhere = world.channel_post(other, PYTHON_AND_DJANGO);
    world.flood_channel_catch_up(main, held, 300);

    let (engine, monitor, mut reports) = start_monitoring(&world, &store, config, interval).await;
    let (source, id, outcome) = next_report(&mut reports).await;
    assert_eq!(
        (source, id),
        (other, elsewhere),
        "the other source is taken in first, while the held one waits"
    );
    assert_eq!(outcome, processed(&["python"], &[]));
    assert_eq!(world.counters(main).catch_up_flood_waits, 1);
    let mut taken = Vec::new();
    while taken.len() < missed.len() {
        let (source, id, outcome) = next_report(&mut reports).await;
        assert_eq!(source, held, "only the held source had anything left");
        assert!(
            matches!(outcome, MessageOutcome::Processed { .. }),
            "{id}: {outcome:?}"
        );
        taken.push(id);
    }
    assert_eq!(taken, missed, "every missed message once, in order");
    assert!(
        world.counters(main).history_fills >= 1,
        "filled from history"
    );
    tokio::time::timeout(WAIT, async {
        while world.chat_messages(out).len() < 3 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
    .await
    .expect("the first vacancy, the other source's and the gap's last are notified");
    monitor.stop().await;
    engine.shutdown().await;
    assert_eq!(world.chat_messages(out).len(), 3, "each notified once");
}

/// The next message monitoring reports, as (source, message id, outcome).
async fn next_report(
    reports: &mut mpsc::UnboundedReceiver<MonitorEvent>,
) -> (ChatId, i32, MessageOutcome) {
    tokio::time::timeout(WAIT, async {
        loop {
            if let MonitorEvent::Message {
                source,
                message_id,
                outcome,
                ..
            } = reports.recv().await.expect("monitoring runs")
            {
                return (source, message_id, outcome);
            }
        }
    })
    .await
    .expect("a message is reported")
}
