//! Integration tests of jobbot-store: the configuration file's owner and the operational store.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jobbot_core::config::{self, ConfigDocument, ConfigProblems, Revision};
use jobbot_core::ids::{ChatId, SessionName, Username};
use jobbot_core::store::{
    Enqueued, NewOutboxMessage, OutboxCounts, OutboxId, OutboxKind, OutboxMessage, OutboxStatus,
    Recipient, SenderSelection, SentRecord, Store, UnixMillis,
};
use jobbot_core::telegram::{
    EntityKind, MessageContent, PeerRef, RandomId, SentMessage, TextEntity, TopicId,
};
use jobbot_store::{ConfigStore, MemoryStore, SqliteStore, StoreError, migrate_file};
use tempfile::TempDir;

/// Generous: these waits end as soon as the watcher reports; the limit only turns a hang into a
/// failure.
const WATCH_TIMEOUT: Duration = Duration::from_secs(20);

/// A configuration that loads now and once validation is complete.
fn valid_config(channel_name: &str) -> String {
    format!(
        r#"{{
  "output_channels": [
    {{
      "id": "channel_1",
      "name": "{channel_name}",
      "telegram_id": -1001234567890,
      "input_sources": ["@python_jobs"]
    }}
  ]
}}
"#
    )
}

/// Parses as JSON but does not fit the model (no `name`, no `telegram_id`).
const INVALID_CONFIG: &str = r#"{"output_channels": [{"id": "x"}]}"#;
const MALFORMED_CONFIG: &str = r#"{"output_channels": [ {"id": "channel_1", "#;

struct ConfigFixture {
    _directory: TempDir,
    path: PathBuf,
    store: ConfigStore,
}

impl ConfigFixture {
    async fn with_file(text: &str) -> Self {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("channels_config.json");
        std::fs::write(&path, text).unwrap();
        let store = ConfigStore::open(&path).await.unwrap();
        Self {
            _directory: directory,
            path,
            store,
        }
    }

    fn bytes_on_disk(&self) -> Vec<u8> {
        std::fs::read(&self.path).unwrap()
    }

    fn channel_name_on_disk(&self) -> String {
        let loaded = config::load(&String::from_utf8(self.bytes_on_disk()).unwrap()).unwrap();
        loaded.document.output_channels[0].name.clone()
    }

    /// Replaces the file the way most editors save: write another file, rename it over.
    fn edit_by_hand_with_rename(&self, text: &str) {
        let temporary = self.path.with_file_name("channels_config.json.swp");
        std::fs::write(&temporary, text).unwrap();
        std::fs::rename(&temporary, &self.path).unwrap();
    }
}

fn rename_channel(
    name: &str,
) -> impl FnOnce(&mut ConfigDocument) -> Result<(), StoreError> + use<> {
    let name = name.to_owned();
    move |document| {
        document.output_channels[0].name = name;
        Ok(())
    }
}

async fn within_timeout<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WATCH_TIMEOUT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

// ---------------------------------------------------------------------------------------------
// Opening

#[tokio::test]
async fn a_missing_file_is_an_empty_configuration_and_the_first_write_creates_it() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory
        .path()
        .join("configs")
        .join("channels_config.json");
    let store = ConfigStore::open(&path).await.unwrap();
    let snapshot = store.snapshot();
    assert_eq!(snapshot.revision, Revision::empty());
    assert!(snapshot.document.output_channels.is_empty());

    let document = config::load(&valid_config("Python")).unwrap().document;
    let revision = store.replace(&Revision::empty(), document).await.unwrap();

    let written = std::fs::read(&path).unwrap();
    assert_eq!(Revision::of(&written), revision);
    assert_eq!(store.snapshot().revision, revision);
    assert_eq!(store.snapshot().document.output_channels[0].name, "Python");
}

#[tokio::test]
async fn a_file_that_does_not_load_at_startup_is_an_error_with_every_problem_and_is_left_alone() {
    async fn check(text: &str, expected_problem_path_prefix: &str) {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("channels_config.json");
        std::fs::write(&path, text).unwrap();

        let error = ConfigStore::open(&path).await.unwrap_err();

        let StoreError::FileInvalid {
            path: named,
            problems,
        } = &error
        else {
            panic!("{text}: {error:?}")
        };
        assert_eq!(named, &path);
        assert!(!problems.0.is_empty(), "{text}");
        assert!(
            problems
                .0
                .iter()
                .all(|problem| problem.path.starts_with(expected_problem_path_prefix)),
            "{text}: {problems}"
        );
        assert!(
            error.to_string().contains("channels_config.json"),
            "{error}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), text.as_bytes(), "{text}");
    }
    check(MALFORMED_CONFIG, "").await;
    check("", "").await;
    check(INVALID_CONFIG, "output_channels[0]").await;
}

// ---------------------------------------------------------------------------------------------
// Writing

#[tokio::test]
async fn of_two_writers_of_the_same_revision_the_second_conflicts_and_the_first_change_stays() {
    let fixture = ConfigFixture::with_file(&valid_config("Original")).await;
    let read_by_both = fixture.store.snapshot().revision.clone();

    let first = fixture
        .store
        .update(&read_by_both, rename_channel("First"))
        .await
        .unwrap();
    let second = fixture
        .store
        .update(&read_by_both, rename_channel("Second"))
        .await;

    match second {
        Err(StoreError::Conflict { current }) => assert_eq!(current, first),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(fixture.channel_name_on_disk(), "First");
    assert_eq!(Revision::of(&fixture.bytes_on_disk()), first);
    assert_eq!(fixture.store.snapshot().revision, first);
}

#[tokio::test]
async fn concurrent_writers_of_the_same_revision_one_wins_and_the_other_conflicts() {
    let fixture = ConfigFixture::with_file(&valid_config("Original")).await;
    let read_by_both = fixture.store.snapshot().revision.clone();
    let (store_a, store_b) = (fixture.store.clone(), fixture.store.clone());
    let (revision_a, revision_b) = (read_by_both.clone(), read_by_both.clone());

    let writer_a =
        tokio::spawn(async move { store_a.update(&revision_a, rename_channel("A")).await });
    let writer_b =
        tokio::spawn(async move { store_b.update(&revision_b, rename_channel("B")).await });
    let (result_a, result_b) = (writer_a.await.unwrap(), writer_b.await.unwrap());

    let (winner, winning_revision, loser) = match (result_a, result_b) {
        (Ok(revision), Err(error)) => ("A", revision, error),
        (Err(error), Ok(revision)) => ("B", revision, error),
        other => panic!("expected exactly one write to succeed, got {other:?}"),
    };
    assert!(
        matches!(loser, StoreError::Conflict { ref current } if *current == winning_revision),
        "{loser:?}"
    );
    assert_eq!(fixture.channel_name_on_disk(), winner);
}

#[tokio::test]
async fn a_hand_edit_between_read_and_write_makes_the_write_conflict_and_is_kept() {
    let fixture = ConfigFixture::with_file(&valid_config("Original")).await;
    let read = fixture.store.snapshot().revision.clone();
    let hand_edit = valid_config("Edited by hand");
    std::fs::write(&fixture.path, &hand_edit).unwrap();

    let result = fixture
        .store
        .update(&read, rename_channel("From the web"))
        .await;

    match result {
        Err(StoreError::Conflict { current }) => {
            assert_eq!(current, Revision::of(hand_edit.as_bytes()))
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(fixture.bytes_on_disk(), hand_edit.as_bytes());
    // The conflict made the hand edit live, so a retry starts from it and loses nothing.
    let live = fixture.store.snapshot();
    assert_eq!(live.revision, Revision::of(hand_edit.as_bytes()));
    let retried = fixture
        .store
        .update(&live.revision, |document: &mut ConfigDocument| {
            assert_eq!(document.output_channels[0].name, "Edited by hand");
            document.output_channels[0]
                .filters
                .include_keywords
                .push("rust".to_owned());
            Ok::<(), StoreError>(())
        })
        .await
        .unwrap();
    assert_eq!(Revision::of(&fixture.bytes_on_disk()), retried);
    assert_eq!(fixture.channel_name_on_disk(), "Edited by hand");
}

#[tokio::test]
async fn a_broken_hand_edit_between_read_and_write_refuses_the_write_and_is_left_alone() {
    let fixture = ConfigFixture::with_file(&valid_config("Original")).await;
    let before = fixture.store.snapshot();
    std::fs::write(&fixture.path, MALFORMED_CONFIG).unwrap();

    let result = fixture
        .store
        .update(&before.revision, rename_channel("From the web"))
        .await;

    assert!(
        matches!(result, Err(StoreError::FileInvalid { ref path, .. }) if *path == fixture.path),
        "{result:?}"
    );
    assert_eq!(fixture.bytes_on_disk(), MALFORMED_CONFIG.as_bytes());
    assert_eq!(fixture.store.snapshot(), before);
    assert!(fixture.store.last_error().is_some());
}

#[tokio::test]
async fn an_edit_that_does_not_load_is_refused_and_nothing_is_written() {
    let fixture = ConfigFixture::with_file(&valid_config("Original")).await;
    let before = fixture.store.snapshot();
    let bytes_before = fixture.bytes_on_disk();

    // A key kept in `extra` that shadows a modelled field renders as a duplicate key; the round
    // trip through text sees the value that would really be loaded, and refuses it.
    let result = fixture
        .store
        .update(&before.revision, |document: &mut ConfigDocument| {
            document.extra.insert(
                "output_channels".to_owned(),
                serde_json::json!("not a list"),
            );
            Ok::<(), StoreError>(())
        })
        .await;

    match result {
        Err(StoreError::Invalid(ConfigProblems(problems))) => {
            assert!(
                problems
                    .iter()
                    .any(|problem| problem.path == "output_channels"),
                "{problems:?}"
            )
        }
        other => panic!("expected the edit to be refused, got {other:?}"),
    }
    assert_eq!(fixture.bytes_on_disk(), bytes_before);
    assert_eq!(fixture.store.snapshot(), before);
}

#[tokio::test]
async fn an_edit_that_fails_returns_its_own_error_and_nothing_is_written() {
    #[derive(Debug)]
    enum EditError {
        NoSuchChannel,
        Store(StoreError),
    }
    impl From<StoreError> for EditError {
        fn from(error: StoreError) -> Self {
            Self::Store(error)
        }
    }
    let fixture = ConfigFixture::with_file(&valid_config("Original")).await;
    let bytes_before = fixture.bytes_on_disk();
    let revision = fixture.store.snapshot().revision.clone();

    let result = fixture
        .store
        .update(&revision, |document: &mut ConfigDocument| {
            document.output_channels.clear();
            Err(EditError::NoSuchChannel)
        })
        .await;

    assert!(
        matches!(result, Err(EditError::NoSuchChannel)),
        "{result:?}"
    );
    assert_eq!(fixture.bytes_on_disk(), bytes_before);
    let stale = fixture
        .store
        .update(&Revision::empty(), |_: &mut ConfigDocument| {
            Ok::<(), EditError>(())
        })
        .await;
    assert!(
        matches!(stale, Err(EditError::Store(StoreError::Conflict { .. }))),
        "{stale:?}"
    );
}

#[tokio::test]
async fn atomic_writes_leave_no_temporary_files_and_keep_the_file_mode() {
    let fixture = ConfigFixture::with_file(&valid_config("Original")).await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fixture.path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    for name in ["One", "Two", "Three"] {
        let revision = fixture.store.snapshot().revision.clone();
        fixture
            .store
            .update(&revision, rename_channel(name))
            .await
            .unwrap();
    }

    let mut names: Vec<String> = std::fs::read_dir(fixture.path.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["channels_config.json"]);
    assert_eq!(fixture.channel_name_on_disk(), "Three");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&fixture.path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[tokio::test]
async fn what_is_written_loads_back_to_the_published_snapshot() {
    let fixture = ConfigFixture::with_file(&valid_config("Original")).await;
    let revision = fixture.store.snapshot().revision.clone();
    fixture
        .store
        .update(&revision, rename_channel("Привет, мир"))
        .await
        .unwrap();

    let reopened = ConfigStore::open(&fixture.path).await.unwrap();
    assert_eq!(reopened.snapshot(), fixture.store.snapshot());
}

// ---------------------------------------------------------------------------------------------
// Hot reload

#[tokio::test]
async fn a_valid_hand_edit_on_disk_is_published_to_subscribers() {
    let fixture = ConfigFixture::with_file(&valid_config("Original")).await;
    let mut snapshots = fixture.store.subscribe();
    let watch = fixture.store.watch().unwrap();

    // In place, the way `echo > file` or the original system writes.
    let in_place = valid_config("Edited in place");
    std::fs::write(&fixture.path, &in_place).unwrap();
    let expected = Revision::of(in_place.as_bytes());
    within_timeout(
        "the in-place edit",
        snapshots.wait_for(|snapshot| snapshot.revision == expected),
    )
    .await
    .unwrap();
    assert_eq!(
        fixture.store.snapshot().document.output_channels[0].name,
        "Edited in place"
    );

    // By rename, the way editors save; only a directory watch sees this.
    let renamed = valid_config("Edited by rename");
    fixture.edit_by_hand_with_rename(&renamed);
    let expected = Revision::of(renamed.as_bytes());
    within_timeout(
        "the renamed edit",
        snapshots.wait_for(|snapshot| snapshot.revision == expected),
    )
    .await
    .unwrap();
    assert_eq!(
        fixture.store.snapshot().document.output_channels[0].name,
        "Edited by rename"
    );
    assert_eq!(fixture.store.last_error(), None);

    watch.stop().await;
}

#[tokio::test]
async fn a_malformed_hand_edit_keeps_the_last_good_snapshot_live_reports_it_and_is_never_overwritten()
 {
    let fixture = ConfigFixture::with_file(&valid_config("Original")).await;
    let good = fixture.store.snapshot();
    let mut errors = fixture.store.subscribe_errors();
    let mut snapshots = fixture.store.subscribe();
    let watch = fixture.store.watch().unwrap();

    fixture.edit_by_hand_with_rename(MALFORMED_CONFIG);
    let reported = within_timeout("the error report", errors.wait_for(Option::is_some))
        .await
        .unwrap()
        .clone();

    assert!(!reported.unwrap().0.is_empty());
    assert_eq!(fixture.store.snapshot(), good);
    assert_eq!(fixture.bytes_on_disk(), MALFORMED_CONFIG.as_bytes());

    // Fixing the file makes it live and clears the error.
    let fixed = valid_config("Fixed");
    fixture.edit_by_hand_with_rename(&fixed);
    let expected = Revision::of(fixed.as_bytes());
    within_timeout(
        "the fixed file",
        snapshots.wait_for(|snapshot| snapshot.revision == expected),
    )
    .await
    .unwrap();
    within_timeout("the error to clear", errors.wait_for(Option::is_none))
        .await
        .unwrap();
    assert_eq!(fixture.bytes_on_disk(), fixed.as_bytes());

    watch.stop().await;
}

#[tokio::test]
async fn an_invalid_hand_edit_is_reported_by_an_explicit_reload_and_left_alone() {
    let fixture = ConfigFixture::with_file(&valid_config("Original")).await;
    let good = fixture.store.snapshot();
    std::fs::write(&fixture.path, INVALID_CONFIG).unwrap();

    fixture.store.reload().await;

    let problems = fixture.store.last_error().expect("the problem is reported");
    assert!(
        problems
            .0
            .iter()
            .all(|problem| problem.path.starts_with("output_channels[0]")),
        "{problems}"
    );
    assert_eq!(fixture.store.snapshot(), good);
    assert_eq!(fixture.bytes_on_disk(), INVALID_CONFIG.as_bytes());

    // A removed file is reported too, and does not empty the live configuration.
    std::fs::remove_file(&fixture.path).unwrap();
    fixture.store.reload().await;
    assert!(
        fixture
            .store
            .last_error()
            .unwrap()
            .to_string()
            .contains("removed")
    );
    assert_eq!(fixture.store.snapshot(), good);
    assert!(!fixture.path.exists());
}

// ---------------------------------------------------------------------------------------------
// Migration

#[tokio::test]
async fn migrate_file_keeps_a_backup_and_leaves_a_current_file_alone() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("channels_config.json");
    // The original single-agent format, written compactly.
    let legacy = r#"{"output_channels": [{"id": "channel_1", "name": "Python", "telegram_id": -1001234567890, "input_sources": ["@python_jobs"], "agent_phone": "+79991234567", "agent_session_name": "agent_1"}]}"#;
    std::fs::write(&path, legacy).unwrap();

    let report = migrate_file(&path).await.unwrap();

    let backup = report.backup.clone().expect("a backup is kept");
    assert_eq!(
        backup,
        directory.path().join(format!(
            "channels_config.json.bak-{}",
            Revision::of(legacy.as_bytes())
        ))
    );
    assert_eq!(std::fs::read(&backup).unwrap(), legacy.as_bytes());
    assert_eq!(report.previous, Revision::of(legacy.as_bytes()));
    let migrated = std::fs::read_to_string(&path).unwrap();
    assert_eq!(report.current, Revision::of(migrated.as_bytes()));
    let loaded = config::load(&migrated).unwrap();
    assert!(loaded.migrations.is_empty(), "{:?}", loaded.migrations);
    assert_eq!(config::render(&loaded.document), migrated);

    // A second run finds nothing to do.
    let again = migrate_file(&path).await.unwrap();
    assert_eq!(again.backup, None);
    assert_eq!(again.previous, again.current);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), migrated);
}

#[tokio::test]
async fn migrate_file_leaves_a_file_that_does_not_load_alone() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("channels_config.json");
    std::fs::write(&path, MALFORMED_CONFIG).unwrap();

    let error = migrate_file(&path).await.unwrap_err();

    assert!(matches!(error, StoreError::FileInvalid { .. }), "{error:?}");
    assert_eq!(std::fs::read(&path).unwrap(), MALFORMED_CONFIG.as_bytes());
    assert_eq!(std::fs::read_dir(directory.path()).unwrap().count(), 1);

    let missing = migrate_file(directory.path().join("absent.json"))
        .await
        .unwrap_err();
    assert!(
        matches!(missing, StoreError::Io { ref path, .. } if path.ends_with("absent.json")),
        "{missing:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Operational store

/// The checks every [`Store`] backend must pass; the PostgreSQL backend will run these too. Each
/// check other than `check_store` expects a store with an empty outbox. Times are small made-up
/// instants, so a backend that read the real clock instead of the `at` it is given fails.
mod conformance {
    use super::*;

    pub async fn check_store(store: &dyn Store, expected_schema_version: i64) {
        let health = store.health().await.unwrap();
        assert!(!health.backend.is_empty());
        assert_eq!(health.schema_version, expected_schema_version);
        // The store is shared between tasks; concurrent calls must not trip over each other.
        let (first, second) = tokio::join!(store.health(), store.health());
        assert_eq!(first.unwrap(), health);
        assert_eq!(second.unwrap(), health);
    }

    pub fn agent(name: &str) -> SessionName {
        SessionName::parse(name).unwrap()
    }

    pub fn channel(bare: i64) -> ChatId {
        ChatId::channel(bare).unwrap()
    }

    /// A plain auto-response with an optional idempotency key, created at `created_at`.
    pub fn message(key: Option<&str>, created_at: i64) -> NewOutboxMessage {
        NewOutboxMessage {
            channel_id: "channel_1".to_owned(),
            kind: OutboxKind::AutoResponse,
            sender: SenderSelection::ChannelAgents { sticky: None },
            recipient: Recipient::Username {
                username: Username::parse("alice_dev").unwrap(),
            },
            content: MessageContent::plain("Hello"),
            first_contact: true,
            idempotency_key: key.map(str::to_owned),
            created_at: UnixMillis(created_at),
            not_before: None,
            expires_at: UnixMillis(created_at + 60_000),
        }
    }

    fn sent_to(message_id: i32) -> SentMessage {
        SentMessage {
            chat: ChatId::user(42).unwrap(),
            message_id,
        }
    }

    async fn stored(store: &dyn Store, id: OutboxId) -> OutboxMessage {
        store
            .outbox_message(id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{id} is stored"))
    }

    async fn enqueue_new(store: &dyn Store, message: NewOutboxMessage) -> OutboxId {
        match store.enqueue(message).await.unwrap() {
            Enqueued::New(id) => id,
            other => panic!("expected a new message, got {other:?}"),
        }
    }

    pub async fn a_taken_idempotency_key_returns_its_holder_whatever_its_status(store: &dyn Store) {
        let check = async |key: &str, end: Option<OutboxStatus>| {
            let id = enqueue_new(store, message(Some(key), 1_000)).await;
            match end {
                Some(OutboxStatus::Sent) => store
                    .mark_sent(id, &agent("agent_1"), sent_to(7), UnixMillis(2_000))
                    .await
                    .unwrap(),
                Some(status) => store
                    .mark_final(id, status, "gone", UnixMillis(2_000))
                    .await
                    .unwrap(),
                None => {}
            }
            let before = stored(store, id).await;
            let mut again = message(Some(key), 5_000);
            again.content = MessageContent::plain("A different text");

            let outcome = store.enqueue(again).await.unwrap();

            let status = end.unwrap_or(OutboxStatus::Pending);
            assert_eq!(outcome, Enqueued::Existing(id, status), "{key}");
            assert_eq!(outcome.id(), id);
            assert_eq!(
                stored(store, id).await,
                before,
                "{key}: the holder is unchanged"
            );
        };
        check("pending", None).await;
        check("sent", Some(OutboxStatus::Sent)).await;
        check("failed", Some(OutboxStatus::Failed)).await;
        check("expired", Some(OutboxStatus::Expired)).await;
        // Only the four originals were stored.
        assert_eq!(
            store.outbox_counts().await.unwrap(),
            OutboxCounts {
                pending: 1,
                sent: 1,
                failed: 1,
                expired: 1
            }
        );

        // Without a key nothing is deduplicated.
        let first = enqueue_new(store, message(None, 1_000)).await;
        let second = enqueue_new(store, message(None, 1_000)).await;
        assert_ne!(first, second);
        assert_eq!(store.outbox_counts().await.unwrap().pending, 3);
    }

    pub async fn concurrent_enqueues_of_one_key_store_one_message(store: &dyn Store) {
        for round in 0..5 {
            let key = format!("auto_response:channel_1:{round}");
            let (first, second) = tokio::join!(
                store.enqueue(message(Some(&key), 1_000)),
                store.enqueue(message(Some(&key), 1_000)),
            );
            let (first, second) = (first.unwrap(), second.unwrap());
            assert_eq!(first.id(), second.id(), "{key}");
            let new = [first, second]
                .iter()
                .filter(|outcome| matches!(outcome, Enqueued::New(_)))
                .count();
            assert_eq!(new, 1, "{key}: {first:?} {second:?}");
        }
        assert_eq!(store.outbox_counts().await.unwrap().pending, 5);
    }

    pub async fn pending_messages_come_back_oldest_first_with_every_field(store: &dyn Store) {
        let group = channel(1_234_567);
        let mut all_fields = message(Some("notification:channel_1:55"), 1_000);
        all_fields.kind = OutboxKind::Notification;
        all_fields.sender = SenderSelection::MainAccount;
        all_fields.recipient = Recipient::Chat { chat: group };
        all_fields.first_contact = false;
        all_fields.not_before = Some(UnixMillis(1_500));
        all_fields.content = MessageContent {
            text: "Вакансия: Rust 🦀 — подробнее".to_owned(),
            entities: vec![
                TextEntity {
                    kind: EntityKind::Bold,
                    offset: 0,
                    length: 8,
                },
                TextEntity {
                    kind: EntityKind::TextUrl("https://t.me/python_jobs/55".to_owned()),
                    offset: 19,
                    length: 9,
                },
            ],
            link_preview: true,
        };
        let mut known_peer = message(None, 2_000);
        known_peer.kind = OutboxKind::RelayToContact;
        known_peer.sender = SenderSelection::ChannelAgents {
            sticky: Some(agent("agent_2")),
        };
        known_peer.recipient = Recipient::KnownPeer {
            peer: PeerRef {
                id: ChatId::user(777).unwrap(),
                access_hash: -8_765_432_101_234,
            },
        };
        let mut topic = message(Some("topic_post:channel_1:9"), 3_000);
        topic.kind = OutboxKind::TopicPost;
        topic.recipient = Recipient::Topic {
            group,
            topic: TopicId(17),
        };
        let username = message(Some("auto_response:channel_1:alice"), 4_000);
        let mut other = message(None, 5_000);
        other.kind = OutboxKind::Other;
        let enqueued = [all_fields, known_peer, topic, username, other];
        let mut ids = Vec::new();
        for message in &enqueued {
            ids.push(enqueue_new(store, message.clone()).await);
        }
        // A message that ended is not pending.
        let ended = enqueue_new(store, message(None, 500)).await;
        store
            .mark_final(ended, OutboxStatus::Expired, "too late", UnixMillis(600))
            .await
            .unwrap();

        let pending = store.pending_outbox().await.unwrap();

        let expected: Vec<OutboxMessage> = ids
            .iter()
            .zip(&enqueued)
            .map(|(id, message)| OutboxMessage {
                id: *id,
                message: message.clone(),
                status: OutboxStatus::Pending,
                attempts: 0,
                last_agent: None,
                sent: None,
                reason: None,
                updated_at: message.created_at,
            })
            .collect();
        assert_eq!(pending, expected);
        for message in &expected {
            assert_eq!(&stored(store, message.id).await, message);
        }
        let missing = OutboxId(ended.0 + 1_000);
        assert_eq!(store.outbox_message(missing).await.unwrap(), None);
    }

    pub async fn begin_attempt_keeps_each_agents_first_random_id(store: &dyn Store) {
        let id = enqueue_new(store, message(Some("a"), 1_000)).await;
        let other = enqueue_new(store, message(Some("b"), 1_000)).await;
        let check = async |id: OutboxId, name: &str, proposed: i64, at: i64, expected: i64| {
            let random_id = store
                .begin_attempt(id, &agent(name), RandomId(proposed), UnixMillis(at))
                .await
                .unwrap();
            assert_eq!(random_id, RandomId(expected), "{id} {name} {proposed}");
        };
        check(id, "agent_1", 111, 2_000, 111).await;
        check(id, "agent_1", 222, 3_000, 111).await;
        check(id, "agent_2", 333, 4_000, 333).await;
        check(id, "agent_2", 444, 5_000, 333).await;
        check(id, "agent_1", 555, 6_000, 111).await;
        // Random ids are per message: the same agent gets its own for another one.
        check(other, "agent_1", 666, 7_000, 666).await;

        let message = stored(store, id).await;
        assert_eq!(message.attempts, 5);
        assert_eq!(message.last_agent, Some(agent("agent_1")));
        assert_eq!(message.updated_at, UnixMillis(6_000));
        assert_eq!(message.status, OutboxStatus::Pending);
        assert_eq!(stored(store, other).await.attempts, 1);
    }

    pub async fn begin_attempt_refuses_a_message_that_ended_or_does_not_exist(store: &dyn Store) {
        let sent = enqueue_new(store, message(Some("sent"), 1_000)).await;
        store
            .begin_attempt(sent, &agent("agent_1"), RandomId(1), UnixMillis(2_000))
            .await
            .unwrap();
        store
            .mark_sent(sent, &agent("agent_1"), sent_to(9), UnixMillis(3_000))
            .await
            .unwrap();
        let failed = enqueue_new(store, message(Some("failed"), 1_000)).await;
        store
            .mark_final(
                failed,
                OutboxStatus::Failed,
                "USER_PRIVACY_RESTRICTED",
                UnixMillis(2_000),
            )
            .await
            .unwrap();
        let check = async |id: OutboxId, expected_words: &str| {
            let before = store.outbox_message(id).await.unwrap();
            let error = store
                .begin_attempt(id, &agent("agent_1"), RandomId(2), UnixMillis(9_000))
                .await
                .unwrap_err();
            assert!(error.to_string().contains(expected_words), "{id}: {error}");
            assert_eq!(store.outbox_message(id).await.unwrap(), before, "{id}");
        };
        check(sent, "already sent").await;
        check(failed, "already failed").await;
        check(OutboxId(failed.0 + 1_000), "does not exist").await;
    }

    pub async fn a_message_ends_once(store: &dyn Store) {
        let agent_1 = agent("agent_1");
        let id = enqueue_new(store, message(Some("k"), 1_000)).await;

        store
            .note_error(id, "FLOOD_WAIT_30", UnixMillis(2_000))
            .await
            .unwrap();
        let noted = stored(store, id).await;
        assert_eq!(noted.reason.as_deref(), Some("FLOOD_WAIT_30"));
        assert_eq!(noted.status, OutboxStatus::Pending);
        assert_eq!(noted.updated_at, UnixMillis(2_000));

        // Neither pending nor sent is a way to end: pending is not an end, and sent needs the
        // sent record that only `mark_sent` carries.
        for status in [OutboxStatus::Pending, OutboxStatus::Sent] {
            let error = store
                .mark_final(id, status, "no", UnixMillis(2_500))
                .await
                .unwrap_err();
            assert!(error.to_string().contains(status.as_str()), "{error}");
        }
        assert_eq!(stored(store, id).await, noted);

        store
            .mark_sent(id, &agent_1, sent_to(31), UnixMillis(3_000))
            .await
            .unwrap();
        let sent = stored(store, id).await;
        assert_eq!(sent.status, OutboxStatus::Sent);
        assert_eq!(
            sent.sent,
            Some(SentRecord {
                agent: agent_1.clone(),
                message: sent_to(31),
                at: UnixMillis(3_000),
            })
        );
        assert_eq!(sent.updated_at, UnixMillis(3_000));
        // The last error while pending is kept: it explains why the send took retries.
        assert_eq!(sent.reason.as_deref(), Some("FLOOD_WAIT_30"));

        let expired = enqueue_new(store, message(Some("e"), 1_000)).await;
        store
            .mark_final(
                expired,
                OutboxStatus::Expired,
                "no agent in time",
                UnixMillis(4_000),
            )
            .await
            .unwrap();
        let ended = stored(store, expired).await;
        assert_eq!(ended.status, OutboxStatus::Expired);
        assert_eq!(ended.reason.as_deref(), Some("no agent in time"));
        assert_eq!(ended.updated_at, UnixMillis(4_000));
        assert_eq!(ended.sent, None);

        for id in [id, expired] {
            let before = stored(store, id).await;
            let attempts = [
                store
                    .mark_sent(id, &agent_1, sent_to(99), UnixMillis(5_000))
                    .await,
                store
                    .mark_final(id, OutboxStatus::Failed, "late", UnixMillis(5_000))
                    .await,
                store.note_error(id, "late", UnixMillis(5_000)).await,
            ];
            for result in attempts {
                let error = result.unwrap_err();
                assert!(error.to_string().contains("already"), "{id}: {error}");
            }
            assert_eq!(stored(store, id).await, before, "{id}");
        }
        let missing = OutboxId(expired.0 + 1_000);
        let error = store
            .mark_sent(missing, &agent_1, sent_to(1), UnixMillis(5_000))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("does not exist"), "{error}");
    }

    pub async fn outbox_counts_count_by_status(store: &dyn Store) {
        assert_eq!(
            store.outbox_counts().await.unwrap(),
            OutboxCounts::default()
        );
        let mut ids = Vec::new();
        for created_at in 0..7 {
            ids.push(enqueue_new(store, message(None, created_at)).await);
        }
        let at = UnixMillis(100);
        store
            .mark_sent(ids[0], &agent("agent_1"), sent_to(1), at)
            .await
            .unwrap();
        store
            .mark_sent(ids[1], &agent("agent_2"), sent_to(2), at)
            .await
            .unwrap();
        store
            .mark_final(ids[2], OutboxStatus::Failed, "USERNAME_NOT_OCCUPIED", at)
            .await
            .unwrap();
        store
            .mark_final(ids[3], OutboxStatus::Expired, "ttl", at)
            .await
            .unwrap();
        store
            .mark_final(ids[4], OutboxStatus::Expired, "ttl", at)
            .await
            .unwrap();
        store
            .mark_final(ids[5], OutboxStatus::Expired, "ttl", at)
            .await
            .unwrap();

        assert_eq!(
            store.outbox_counts().await.unwrap(),
            OutboxCounts {
                pending: 1,
                sent: 2,
                failed: 1,
                expired: 3
            }
        );
    }

    /// What `after_restart` needs to know about the store `before_restart` filled.
    pub struct BeforeRestart {
        id: OutboxId,
        pending: Vec<OutboxMessage>,
    }

    /// Enqueues a message and begins an attempt on it, as the engine does just before a send
    /// that a crash interrupts.
    pub async fn before_restart(store: &dyn Store) -> BeforeRestart {
        let id = enqueue_new(store, message(Some("auto_response:channel_1:bob"), 1_000)).await;
        let random_id = store
            .begin_attempt(id, &agent("agent_1"), RandomId(424_242), UnixMillis(2_000))
            .await
            .unwrap();
        assert_eq!(random_id, RandomId(424_242));
        BeforeRestart {
            id,
            pending: store.pending_outbox().await.unwrap(),
        }
    }

    /// On a new store over the same database: the message is still pending, and a retry on the
    /// same agent repeats the random id, so Telegram drops the second copy if the first went out.
    /// A restart therefore cannot double-send.
    pub async fn after_restart(store: &dyn Store, before: BeforeRestart) {
        assert_eq!(store.pending_outbox().await.unwrap(), before.pending);
        let random_id = store
            .begin_attempt(
                before.id,
                &agent("agent_1"),
                RandomId(999),
                UnixMillis(3_000),
            )
            .await
            .unwrap();
        assert_eq!(random_id, RandomId(424_242));
        assert_eq!(stored(store, before.id).await.attempts, 2);
        assert_eq!(
            store
                .enqueue(message(Some("auto_response:channel_1:bob"), 4_000))
                .await
                .unwrap(),
            Enqueued::Existing(before.id, OutboxStatus::Pending)
        );
    }
}

/// Runs each named conformance check on its own fresh store of every backend: `sqlite_conformance`
/// and `memory_conformance` hold one test per check. The restart pair (`before_restart` and
/// `after_restart`) is not listed: only SQLite outlives a reopen, and it runs them in
/// `a_reopened_sqlite_store_resumes_pending_messages_with_their_random_ids`.
macro_rules! conformance_on_every_backend {
    ($($check:ident),* $(,)?) => {
        mod sqlite_conformance {
            $(
                #[tokio::test]
                async fn $check() {
                    let directory = tempfile::tempdir().unwrap();
                    let store = jobbot_store::SqliteStore::open(directory.path()).await.unwrap();
                    super::conformance::$check(&store).await;
                    store.close().await;
                }
            )*
        }

        mod memory_conformance {
            $(
                #[tokio::test]
                async fn $check() {
                    let store = jobbot_store::MemoryStore::new();
                    super::conformance::$check(&store).await;
                }
            )*
        }
    };
}

conformance_on_every_backend!(
    a_taken_idempotency_key_returns_its_holder_whatever_its_status,
    concurrent_enqueues_of_one_key_store_one_message,
    pending_messages_come_back_oldest_first_with_every_field,
    begin_attempt_keeps_each_agents_first_random_id,
    begin_attempt_refuses_a_message_that_ended_or_does_not_exist,
    a_message_ends_once,
    outbox_counts_count_by_status,
);

/// The memory store stands in for SQLite in the engine's tests, which may match on what a refusal
/// says; so every refusal is compared word for word, not just by the substrings the conformance
/// checks look for.
#[tokio::test]
async fn sqlite_and_memory_stores_refuse_in_the_same_words() {
    async fn refusals(store: &dyn Store) -> Vec<String> {
        use conformance::{agent, message};
        let agent_1 = agent("agent_1");
        let sent_message = SentMessage {
            chat: ChatId::user(42).unwrap(),
            message_id: 1,
        };
        let at = UnixMillis(2_000);
        let pending = store.enqueue(message(None, 1_000)).await.unwrap().id();
        let sent = store.enqueue(message(None, 1_000)).await.unwrap().id();
        store
            .mark_sent(sent, &agent_1, sent_message, at)
            .await
            .unwrap();
        let expired = store.enqueue(message(None, 1_000)).await.unwrap().id();
        store
            .mark_final(expired, OutboxStatus::Expired, "ttl", at)
            .await
            .unwrap();
        let missing = OutboxId(1_000);
        let mut refusals = Vec::new();
        for id in [pending, sent, expired, missing] {
            for status in [OutboxStatus::Pending, OutboxStatus::Sent] {
                refusals.push(store.mark_final(id, status, "no", at).await);
            }
            if id == pending {
                continue;
            }
            refusals.push(
                store
                    .begin_attempt(id, &agent_1, RandomId(1), at)
                    .await
                    .map(|_| ()),
            );
            refusals.push(store.note_error(id, "late", at).await);
            refusals.push(store.mark_sent(id, &agent_1, sent_message, at).await);
            refusals.push(store.mark_final(id, OutboxStatus::Failed, "late", at).await);
        }
        refusals
            .into_iter()
            .map(|refusal| refusal.unwrap_err().to_string())
            .collect()
    }
    let directory = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(directory.path()).await.unwrap();
    let from_sqlite = refusals(&sqlite).await;
    sqlite.close().await;
    let from_memory = refusals(&MemoryStore::new()).await;
    assert_eq!(from_memory.len(), 20);
    assert_eq!(from_memory, from_sqlite);
}

#[tokio::test]
async fn a_reopened_sqlite_store_resumes_pending_messages_with_their_random_ids() {
    let directory = tempfile::tempdir().unwrap();
    let first = SqliteStore::open(directory.path()).await.unwrap();
    let before = conformance::before_restart(&first).await;
    first.close().await;
    drop(first);

    let reopened = SqliteStore::open(directory.path()).await.unwrap();
    conformance::after_restart(&reopened, before).await;
    reopened.close().await;
}

async fn raw_connection(path: &Path) -> sqlx::SqliteConnection {
    use sqlx::Connection;
    sqlx::SqliteConnection::connect_with(&sqlx::sqlite::SqliteConnectOptions::new().filename(path))
        .await
        .unwrap()
}

#[tokio::test]
async fn sqlite_store_passes_the_conformance_checks() {
    let directory = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(directory.path().join("data"))
        .await
        .unwrap();
    conformance::check_store(&store, SqliteStore::latest_schema_version()).await;
    assert_eq!(store.health().await.unwrap().backend, "sqlite");
    store.close().await;
}

#[tokio::test]
async fn memory_store_passes_the_conformance_checks() {
    let store = MemoryStore::new();
    conformance::check_store(&store, SqliteStore::latest_schema_version()).await;
    assert_eq!(store.health().await.unwrap().backend, "memory");
}

#[tokio::test]
async fn sqlite_store_creates_its_file_in_wal_mode_with_its_migrations_applied() {
    let directory = tempfile::tempdir().unwrap();
    let data_dir = directory.path().join("nested").join("data");
    let store = SqliteStore::open(&data_dir).await.unwrap();
    assert_eq!(store.path(), data_dir.join("jobbot.sqlite"));

    // A fresh connection that does not ask for a journal mode sees the one stored in the file.
    let mut connection = raw_connection(store.path()).await;
    let journal_mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(journal_mode, "wal");
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert!(applied >= 1);
    let application: String =
        sqlx::query_scalar("SELECT value FROM meta WHERE key = 'application'")
            .fetch_one(&mut connection)
            .await
            .unwrap();
    assert_eq!(application, "jobbot");
    store.close().await;
}

#[tokio::test]
async fn reopening_an_existing_sqlite_database_keeps_its_data_and_does_not_migrate_twice() {
    let directory = tempfile::tempdir().unwrap();
    let first = SqliteStore::open(directory.path()).await.unwrap();
    let mut connection = raw_connection(first.path()).await;
    sqlx::query("INSERT INTO meta (key, value) VALUES ('marker', 'kept')")
        .execute(&mut connection)
        .await
        .unwrap();
    drop(connection);
    first.close().await;

    let reopened = SqliteStore::open(directory.path()).await.unwrap();
    conformance::check_store(&reopened, SqliteStore::latest_schema_version()).await;
    let mut connection = raw_connection(reopened.path()).await;
    let marker: String = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'marker'")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(marker, "kept");
    let applications: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM meta WHERE key = 'application'")
            .fetch_one(&mut connection)
            .await
            .unwrap();
    assert_eq!(applications, 1);
    reopened.close().await;
}

#[tokio::test]
async fn a_database_that_is_not_jobbots_fails_the_health_check() {
    let directory = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(directory.path()).await.unwrap();
    let mut connection = raw_connection(store.path()).await;
    sqlx::query("DELETE FROM meta")
        .execute(&mut connection)
        .await
        .unwrap();

    let error = store.health().await.unwrap_err();
    assert!(error.to_string().contains("jobbot.sqlite"), "{error}");
    store.close().await;
}
