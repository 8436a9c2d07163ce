//! Integration tests of jobbot-store: the configuration file's owner and the operational store.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jobbot_core::config::{self, ConfigDocument, ConfigProblems, Revision};
use jobbot_core::ids::{ChatId, SessionName, Username};
use jobbot_core::store::{
    AccountGone, AgentEvent, AgentEventRecord, ApiTokenRecord, ChannelIntake, Conversation,
    ConversationId, ConversationStatus, Delivery, Enqueued, Holdup, InDoubt, IntakeOutcome,
    MatchedChannel, NewConversation, NewOutboxMessage, NewWorkflow, OutboxCounts, OutboxEnd,
    OutboxFailure, OutboxId, OutboxKind, OutboxMessage, OutboxStats, OutboxStatus,
    ProcessedMessage, Recipient, RelayDirection, RelayRecord, SecretDigest, SenderSelection,
    SentRecord, Store, Unavailable, UnixMillis, VacancyContacts, VacancyIntake, VacancyQuery,
    VacancyRecord, VacancyStatus, WebSession,
};
use jobbot_core::telegram::{
    DeadReason, EntityKind, MessageContent, PeerRef, RandomId, SentMessage, TelegramError,
    TextEntity, TopicId,
};
use jobbot_store::{
    ConfigStore, MemoryStore, PostgresStore, SqliteStore, StoreError, migrate_file,
};
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
    // It can hold proxy passwords: created readable by its owner only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
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

/// `modify` applies to the configuration as it is at the write, under the write lock: many
/// concurrent additions (the seed's "add one agent" without a revision) all land.
#[tokio::test]
async fn concurrent_modifications_without_a_revision_all_land() {
    let fixture = ConfigFixture::with_file(&valid_config("Original")).await;
    let writers: Vec<_> = (0..20)
        .map(|index| {
            let store = fixture.store.clone();
            tokio::spawn(async move {
                store
                    .modify(move |document: &mut ConfigDocument| {
                        document.output_channels[0]
                            .input_sources
                            .push(format!("@source_{index:02}"));
                        Ok::<(), StoreError>(())
                    })
                    .await
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap().unwrap();
    }
    let loaded = config::load(&String::from_utf8(fixture.bytes_on_disk()).unwrap()).unwrap();
    let mut sources = loaded.document.output_channels[0].input_sources.clone();
    sources.sort();
    let mut expected: Vec<String> = (0..20).map(|index| format!("@source_{index:02}")).collect();
    expected.insert(0, "@python_jobs".to_owned());
    expected.sort();
    assert_eq!(sources, expected);
}

/// A hand edit the store has not reloaded yet is the base of a `modify`, not overwritten by it;
/// a broken one is refused and left alone.
#[tokio::test]
async fn a_modification_applies_to_a_hand_edit_and_never_writes_over_a_broken_file() {
    let fixture = ConfigFixture::with_file(&valid_config("Original")).await;
    fixture.edit_by_hand_with_rename(&valid_config("Edited by hand"));
    fixture
        .store
        .modify(|document: &mut ConfigDocument| {
            document.output_channels[0].enabled = false;
            Ok::<(), StoreError>(())
        })
        .await
        .unwrap();
    let loaded = config::load(&String::from_utf8(fixture.bytes_on_disk()).unwrap()).unwrap();
    assert_eq!(loaded.document.output_channels[0].name, "Edited by hand");
    assert!(!loaded.document.output_channels[0].enabled);

    fixture.edit_by_hand_with_rename(MALFORMED_CONFIG);
    let refused = fixture
        .store
        .modify(|document: &mut ConfigDocument| {
            document.output_channels[0].enabled = true;
            Ok::<(), StoreError>(())
        })
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StoreError::FileInvalid { .. }),
        "{refused:?}"
    );
    assert_eq!(fixture.bytes_on_disk(), MALFORMED_CONFIG.as_bytes());
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
// The configuration in PostgreSQL: the same store logic, shared by every node on one database

/// Waits until `store` runs on `revision`, from its own subscription (a watch: it sees the
/// latest value, never misses the one waited for).
async fn wait_for_revision(store: &ConfigStore, revision: &Revision) {
    let mut snapshots = store.subscribe();
    within_timeout("the other node to load the change", async {
        snapshots
            .wait_for(|snapshot| snapshot.revision == *revision)
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_configuration_change_on_one_node_is_live_on_the_other_at_once() {
    let database = test_database::TestDatabase::create().await;
    let second_connection = database.connect_again().await;
    let first = ConfigStore::open_in_database(&database.store)
        .await
        .unwrap();
    let second = ConfigStore::open_in_database(&second_connection)
        .await
        .unwrap();
    assert_eq!(first.snapshot().revision, Revision::empty());
    assert_eq!(first.path(), None);
    assert!(
        first.location().contains(database.schema()),
        "{}",
        first.location()
    );
    let first_watch = first.watch().unwrap();
    let second_watch = second.watch().unwrap();

    let document = config::load(&valid_config("Python")).unwrap().document;
    let created = first.replace(&Revision::empty(), document).await.unwrap();
    wait_for_revision(&second, &created).await;
    assert_eq!(second.snapshot().document.output_channels[0].name, "Python");

    let renamed = second
        .update(&created, rename_channel("Rust"))
        .await
        .unwrap();
    wait_for_revision(&first, &renamed).await;
    assert_eq!(first.snapshot().document.output_channels[0].name, "Rust");

    // A write based on what the other node replaced is refused, naming the revision now stored.
    let stale = second.update(&created, rename_channel("Go")).await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { ref current }) if *current == renamed),
        "{stale:?}"
    );
    assert_eq!(first.snapshot().revision, renamed);

    first_watch.stop().await;
    second_watch.stop().await;
    second_connection.close().await;
    database.close().await;
}

#[tokio::test]
async fn a_write_based_on_a_revision_another_node_replaced_conflicts_even_unheard() {
    // No watch: the second node has not heard of the first's write, and still may not undo it.
    let database = test_database::TestDatabase::create().await;
    let first = ConfigStore::open_in_database(&database.store)
        .await
        .unwrap();
    let second = ConfigStore::open_in_database(&database.store)
        .await
        .unwrap();
    let document = config::load(&valid_config("Python")).unwrap().document;
    let created = first
        .replace(&Revision::empty(), document.clone())
        .await
        .unwrap();

    let stale = second.replace(&Revision::empty(), document).await;

    assert!(
        matches!(stale, Err(StoreError::Conflict { ref current }) if *current == created),
        "{stale:?}"
    );
    // The refusal made the stored document live on the second node, for its retry.
    assert_eq!(second.snapshot().revision, created);
    database.close().await;
}

#[tokio::test]
async fn concurrent_modifications_from_two_nodes_all_land() {
    let database = test_database::TestDatabase::create().await;
    let other_connection = database.connect_again().await;
    let first = ConfigStore::open_in_database(&database.store)
        .await
        .unwrap();
    let second = ConfigStore::open_in_database(&other_connection)
        .await
        .unwrap();
    let document = config::load(&valid_config("Python")).unwrap().document;
    first.replace(&Revision::empty(), document).await.unwrap();

    let append = |suffix: &'static str| {
        move |document: &mut ConfigDocument| {
            document.output_channels[0].name.push_str(suffix);
            Ok::<(), StoreError>(())
        }
    };
    let mut edits = tokio::task::JoinSet::new();
    for (index, suffix) in ["a", "b", "c", "d", "e", "f", "g", "h"]
        .into_iter()
        .enumerate()
    {
        let store = if index % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        edits.spawn(async move { store.modify(append(suffix)).await });
    }
    while let Some(result) = edits.join_next().await {
        result.unwrap().unwrap();
    }

    let stored = ConfigStore::open_in_database(&database.store)
        .await
        .unwrap();
    let name = stored.snapshot().document.output_channels[0].name.clone();
    assert_eq!(name.len(), "Python".len() + 8, "{name}");
    for suffix in ["a", "b", "c", "d", "e", "f", "g", "h"] {
        assert!(name.contains(suffix), "{name}");
    }
    other_connection.close().await;
    database.close().await;
}

#[tokio::test]
async fn an_invalid_configuration_is_never_written_to_the_database() {
    let database = test_database::TestDatabase::create().await;
    let store = ConfigStore::open_in_database(&database.store)
        .await
        .unwrap();
    let document = config::load(&valid_config("Python")).unwrap().document;
    let created = store.replace(&Revision::empty(), document).await.unwrap();

    let refused = store
        .update(&created, |document: &mut ConfigDocument| {
            document.output_channels[0].name.clear();
            Ok::<(), StoreError>(())
        })
        .await;

    assert!(
        matches!(refused, Err(StoreError::Invalid(_))),
        "{refused:?}"
    );
    let reopened = ConfigStore::open_in_database(&database.store)
        .await
        .unwrap();
    assert_eq!(reopened.snapshot().revision, created);

    // A document put there by hand that does not load is an error naming the database, and is
    // left as it is.
    let mut raw = database.raw_connection().await;
    sqlx::query(&format!(
        "UPDATE {}.config_document SET body = $1",
        database.schema()
    ))
    .bind(MALFORMED_CONFIG.as_bytes())
    .execute(&mut raw)
    .await
    .unwrap();
    let error = ConfigStore::open_in_database(&database.store)
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::StoredInvalid { ref database, .. } if database.contains("jobbot_test")),
        "{error:?}"
    );
    let written = store.update(&created, rename_channel("Rust")).await;
    assert!(
        matches!(written, Err(StoreError::StoredInvalid { .. })),
        "{written:?}"
    );
    database.close().await;
}

// ---------------------------------------------------------------------------------------------
// Operational store

/// The checks every [`Store`] backend must pass (memory, SQLite, PostgreSQL). Each
/// check other than `check_store` expects a store with an empty outbox. Times are small made-up
/// instants, so a backend that read the real clock instead of the `at` it is given fails.
mod conformance {
    use super::*;
    use jobbot_core::store::WorkflowId;
    use jobbot_core::workflow::{
        AutoResponse, AutoResponseEnd, AutoResponseStep, VacancyRef, Workflow,
    };

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

    pub fn sent_to(message_id: i32) -> Option<SentMessage> {
        Some(SentMessage {
            chat: ChatId::user(42).unwrap(),
            message_id,
        })
    }

    /// A recipient-level failure on agent_1.
    pub fn failed(error: TelegramError) -> OutboxEnd {
        OutboxEnd::Failed {
            failure: OutboxFailure::Recipient {
                agent: agent("agent_1"),
                error,
            },
        }
    }

    pub fn expired() -> OutboxEnd {
        OutboxEnd::Expired {
            last_holdup: Some(Holdup::Waiting {
                reason: Unavailable::AgentsNotConnected,
            }),
        }
    }

    /// An end with `status` (failed or expired).
    pub fn end_as(status: OutboxStatus) -> OutboxEnd {
        match status {
            OutboxStatus::Failed => failed(TelegramError::PrivacyRestricted),
            OutboxStatus::Expired => expired(),
            other => panic!("{other:?} is not an end"),
        }
    }

    pub fn flood_wait(name: &str) -> Holdup {
        Holdup::Refused {
            agent: agent(name),
            error: TelegramError::FloodWait { seconds: 30 },
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
                    .mark_ended(id, &end_as(status), UnixMillis(2_000))
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
            assert_eq!(
                store.outbox_by_key(key).await.unwrap(),
                Some(before.clone()),
                "{key}: found by its key"
            );
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

        assert_eq!(store.outbox_by_key("never used").await.unwrap(), None);
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
            media: None,
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
            username: Some(jobbot_core::ids::Username::parse("alice_hr").unwrap()),
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
            .mark_ended(ended, &expired(), UnixMillis(600))
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
                in_doubt: None,
                sent: None,
                holdup: None,
                end: None,
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
            .mark_ended(
                failed,
                &conformance::failed(TelegramError::PrivacyRestricted),
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
            .note_holdup(id, &flood_wait("agent_1"), UnixMillis(2_000))
            .await
            .unwrap();
        let noted = stored(store, id).await;
        assert_eq!(noted.holdup, Some(flood_wait("agent_1")));
        assert_eq!(noted.status, OutboxStatus::Pending);
        assert_eq!(noted.updated_at, UnixMillis(2_000));
        assert_eq!(noted.delivery(), None);

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
        // The last holdup while pending is kept: it explains why the send took retries.
        assert_eq!(sent.holdup, Some(flood_wait("agent_1")));
        assert_eq!(
            sent.delivery(),
            Some(Delivery::Sent {
                agent: agent_1.clone(),
                message: sent_to(31)
            })
        );

        // Delivered without a known message id (RANDOM_ID_DUPLICATE).
        let duplicate = enqueue_new(store, message(Some("d"), 1_000)).await;
        store
            .mark_sent(duplicate, &agent_1, None, UnixMillis(3_500))
            .await
            .unwrap();
        assert_eq!(
            stored(store, duplicate).await.sent,
            Some(SentRecord {
                agent: agent_1.clone(),
                message: None,
                at: UnixMillis(3_500),
            })
        );

        let expired_id = enqueue_new(store, message(Some("e"), 1_000)).await;
        store
            .mark_ended(expired_id, &expired(), UnixMillis(4_000))
            .await
            .unwrap();
        let ended = stored(store, expired_id).await;
        assert_eq!(ended.status, OutboxStatus::Expired);
        assert_eq!(ended.end, Some(expired()));
        assert_eq!(ended.updated_at, UnixMillis(4_000));
        assert_eq!(ended.sent, None);
        assert_eq!(ended.delivery(), Some(Delivery::from(expired())));

        let failed_id = enqueue_new(store, message(Some("f"), 1_000)).await;
        let failure = failed(TelegramError::UsernameNotFound);
        store
            .mark_ended(failed_id, &failure, UnixMillis(4_500))
            .await
            .unwrap();
        let ended = stored(store, failed_id).await;
        assert_eq!(ended.status, OutboxStatus::Failed);
        assert_eq!(ended.end, Some(failure));

        for id in [id, expired_id, failed_id] {
            let before = stored(store, id).await;
            let attempts = [
                store
                    .mark_sent(id, &agent_1, sent_to(99), UnixMillis(5_000))
                    .await,
                store.mark_ended(id, &expired(), UnixMillis(5_000)).await,
                store
                    .note_holdup(id, &flood_wait("agent_1"), UnixMillis(5_000))
                    .await,
            ];
            for result in attempts {
                let error = result.unwrap_err();
                assert!(error.to_string().contains("already"), "{id}: {error}");
            }
            assert_eq!(stored(store, id).await, before, "{id}");
        }
        let missing = OutboxId(failed_id.0 + 1_000);
        let error = store
            .mark_sent(missing, &agent_1, sent_to(1), UnixMillis(5_000))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("does not exist"), "{error}");
    }

    /// An attempt is in doubt from its start until Telegram's refusal says it was not
    /// delivered; a note that only says why the message waits never clears the doubt (the old
    /// text encoding let any note overwrite it).
    pub async fn an_attempt_stays_in_doubt_until_telegram_refuses_it(store: &dyn Store) {
        let id = enqueue_new(store, message(Some("k"), 1_000)).await;
        let in_doubt = |name: &str, random_id: i64| {
            Some(InDoubt {
                agent: agent(name),
                random_id: RandomId(random_id),
            })
        };
        assert_eq!(stored(store, id).await.in_doubt, None);
        store
            .begin_attempt(id, &agent("agent_1"), RandomId(11), UnixMillis(2_000))
            .await
            .unwrap();
        assert_eq!(stored(store, id).await.in_doubt, in_doubt("agent_1", 11));
        let waiting = Holdup::Waiting {
            reason: Unavailable::StickyAgentNotConnected {
                agent: agent("agent_1"),
            },
        };
        store
            .note_holdup(id, &waiting, UnixMillis(2_100))
            .await
            .unwrap();
        assert_eq!(stored(store, id).await.in_doubt, in_doubt("agent_1", 11));
        // Another agent's refusal says nothing about agent_1's attempt.
        store
            .note_holdup(id, &flood_wait("agent_2"), UnixMillis(2_200))
            .await
            .unwrap();
        assert_eq!(stored(store, id).await.in_doubt, in_doubt("agent_1", 11));
        store
            .note_holdup(id, &flood_wait("agent_1"), UnixMillis(2_300))
            .await
            .unwrap();
        let refused = stored(store, id).await;
        assert_eq!(refused.in_doubt, None);
        assert_eq!(refused.holdup, Some(flood_wait("agent_1")));
        // A dropped connection sets it again, with the agent's first random id.
        store
            .begin_attempt(id, &agent("agent_1"), RandomId(99), UnixMillis(2_400))
            .await
            .unwrap();
        store
            .note_holdup(id, &flood_wait("agent_1"), UnixMillis(2_450))
            .await
            .unwrap();
        let network = Holdup::InDoubt {
            agent: agent("agent_1"),
            error: TelegramError::Network {
                message: "reset".into(),
            },
        };
        store
            .note_holdup(id, &network, UnixMillis(2_500))
            .await
            .unwrap();
        assert_eq!(stored(store, id).await.in_doubt, in_doubt("agent_1", 11));
        // In doubt needs an attempt on that agent.
        let error = store
            .note_holdup(
                id,
                &Holdup::InDoubt {
                    agent: agent("agent_3"),
                    error: TelegramError::Network {
                        message: "reset".into(),
                    },
                },
                UnixMillis(2_600),
            )
            .await
            .unwrap_err();
        assert!(error.to_string().contains("never attempted"), "{error}");
        assert_eq!(stored(store, id).await.in_doubt, in_doubt("agent_1", 11));
        // A later attempt that was never made (the agent was not connected) says nothing about
        // the earlier one's delivery either: only the agent's own refusal settles a doubt.
        store
            .note_holdup(
                id,
                &Holdup::NotAttempted {
                    agent: agent("agent_2"),
                },
                UnixMillis(2_700),
            )
            .await
            .unwrap();
        assert_eq!(stored(store, id).await.in_doubt, in_doubt("agent_1", 11));
        // The doubt ends with the message, either way.
        let gone = OutboxEnd::Failed {
            failure: OutboxFailure::InDoubtAccountGone {
                agent: agent("agent_1"),
                random_id: RandomId(11),
                account: AccountGone::Dead {
                    reason: DeadReason::Banned,
                },
            },
        };
        store
            .mark_ended(id, &gone, UnixMillis(3_000))
            .await
            .unwrap();
        let ended = stored(store, id).await;
        assert_eq!((ended.in_doubt, ended.end), (None, Some(gone)));
    }

    /// The operator's list of messages that ended undelivered: newest first, since an instant.
    pub async fn ended_messages_are_listed_newest_first(store: &dyn Store) {
        let mut ended = Vec::new();
        for (index, end) in [
            expired(),
            failed(TelegramError::PrivacyRestricted),
            expired(),
        ]
        .into_iter()
        .enumerate()
        {
            let id = enqueue_new(store, message(None, 1_000)).await;
            store
                .mark_ended(id, &end, UnixMillis(2_000 + index as i64))
                .await
                .unwrap();
            ended.push(id);
        }
        let sent = enqueue_new(store, message(None, 1_000)).await;
        store
            .mark_sent(sent, &agent("agent_1"), sent_to(1), UnixMillis(9_000))
            .await
            .unwrap();
        enqueue_new(store, message(None, 1_000)).await;
        let ids = |messages: Vec<OutboxMessage>| -> Vec<OutboxId> {
            messages.into_iter().map(|message| message.id).collect()
        };
        assert_eq!(
            ids(store.ended_outbox(UnixMillis(0), 0).await.unwrap()),
            [ended[2], ended[1], ended[0]]
        );
        assert_eq!(
            ids(store.ended_outbox(UnixMillis(2_001), 1).await.unwrap()),
            [ended[2]]
        );
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
            .mark_ended(ids[2], &failed(TelegramError::UsernameNotFound), at)
            .await
            .unwrap();
        for id in &ids[3..6] {
            store.mark_ended(*id, &expired(), at).await.unwrap();
        }

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

    // ----- Processed messages -----

    /// A processed message from channel `source`; relevant when it matched any channel.
    pub fn processed(source: i64, message_id: i32, matched: &[&str]) -> ProcessedMessage {
        ProcessedMessage {
            source: channel(source),
            message_id,
            source_title: "Python Jobs 🐍".to_owned(),
            link: format!("https://t.me/c/{source}/{message_id}"),
            text: format!("Вакансия {message_id}: Rust developer, remote"),
            text_hash: format!("hash-{message_id}"),
            posted_at: UnixMillis(1_000 + i64::from(message_id)),
            processed_at: UnixMillis(2_000 + i64::from(message_id)),
            status: if matched.is_empty() {
                VacancyStatus::NotRelevant
            } else {
                VacancyStatus::Relevant
            },
            matched: matched
                .iter()
                .enumerate()
                .map(|(index, channel_id)| MatchedChannel {
                    channel_id: (*channel_id).to_owned(),
                    keywords: vec!["rust".to_owned(), format!("keyword {index}")],
                    notified: index % 2 == 0,
                })
                .collect(),
            contacts: VacancyContacts::default(),
        }
    }

    async fn all_vacancies(store: &dyn Store) -> Vec<VacancyRecord> {
        store
            .vacancies(&VacancyQuery {
                limit: 500,
                ..VacancyQuery::default()
            })
            .await
            .unwrap()
    }

    pub async fn a_message_is_processed_once_and_comes_back_with_every_field(store: &dyn Store) {
        let mut message = processed(1_111, 55, &["channel_1", "channel_2"]);
        message.contacts = VacancyContacts {
            telegram: vec!["@alice_dev".to_owned(), "@hr_team".to_owned()],
            emails: vec!["jobs@example.com".to_owned()],
            phones: vec!["+7 999 123-45-67".to_owned()],
            crm_target: Some("@alice_dev".to_owned()),
        };
        assert!(!store.is_processed(message.source, 55).await.unwrap());

        assert!(store.record_processed(&message).await.unwrap());

        assert!(store.is_processed(message.source, 55).await.unwrap());
        let check = async |source: ChatId, message_id: i32, expected: bool| {
            assert_eq!(
                store.is_processed(source, message_id).await.unwrap(),
                expected,
                "{source} {message_id}"
            );
        };
        check(message.source, 56, false).await;
        check(channel(2_222), 55, false).await;
        let stored = all_vacancies(store).await;
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].message, message);

        // The same message again (an edit, a replay) stores nothing, whatever it says now.
        let mut edited = message.clone();
        edited.text = "Edited text".to_owned();
        edited.matched.clear();
        edited.status = VacancyStatus::NotRelevant;
        assert!(!store.record_processed(&edited).await.unwrap());
        assert_eq!(all_vacancies(store).await, stored);
    }

    pub async fn vacancies_list_newest_first_filtered_by_status_channel_and_id(store: &dyn Store) {
        let messages = [
            processed(1_111, 1, &["channel_1"]),
            processed(1_111, 2, &[]),
            processed(2_222, 1, &["channel_2", "channel_1"]),
            processed(2_222, 2, &["channel_2"]),
            processed(1_111, 3, &[]),
        ];
        for message in &messages {
            assert!(store.record_processed(message).await.unwrap());
        }
        let ids: Vec<i64> = all_vacancies(store)
            .await
            .iter()
            .map(|record| record.id)
            .collect();
        assert_eq!(ids.len(), 5);
        assert!(ids.windows(2).all(|pair| pair[0] > pair[1]), "{ids:?}");
        // `ids` is newest first; `nth(0)` is the first message recorded.
        let nth = |index: usize| ids[ids.len() - 1 - index];

        let check = async |query: VacancyQuery, expected: Vec<i64>| {
            let found: Vec<i64> = store
                .vacancies(&query)
                .await
                .unwrap()
                .iter()
                .map(|record| record.id)
                .collect();
            assert_eq!(found, expected, "{query:?}");
        };
        let query = |status, channel_id: Option<&str>, before_id, limit| VacancyQuery {
            status,
            channel_id: channel_id.map(str::to_owned),
            before_id,
            limit,
        };
        let relevant = Some(VacancyStatus::Relevant);
        let not_relevant = Some(VacancyStatus::NotRelevant);
        check(query(None, None, None, 0), ids.clone()).await;
        check(query(None, None, None, 2), vec![nth(4), nth(3)]).await;
        check(query(relevant, None, None, 0), vec![nth(3), nth(2), nth(0)]).await;
        check(query(not_relevant, None, None, 0), vec![nth(4), nth(1)]).await;
        check(
            query(None, Some("channel_1"), None, 0),
            vec![nth(2), nth(0)],
        )
        .await;
        check(
            query(None, Some("channel_2"), None, 0),
            vec![nth(3), nth(2)],
        )
        .await;
        check(query(None, Some("channel_9"), None, 0), vec![]).await;
        check(query(not_relevant, Some("channel_1"), None, 0), vec![]).await;
        check(
            query(None, None, Some(nth(3)), 0),
            vec![nth(2), nth(1), nth(0)],
        )
        .await;
        check(query(None, None, Some(nth(3)), 1), vec![nth(2)]).await;
        check(
            query(relevant, Some("channel_2"), Some(nth(3)), 0),
            vec![nth(2)],
        )
        .await;
        check(query(None, None, Some(nth(0)), 0), vec![]).await;
    }

    pub async fn a_vacancy_page_defaults_to_50_rows_and_holds_at_most_500(store: &dyn Store) {
        for message_id in 0..501 {
            store
                .record_processed(&processed(1_111, message_id, &[]))
                .await
                .unwrap();
        }
        let check = async |limit: u32, expected: usize| {
            let page = store
                .vacancies(&VacancyQuery {
                    limit,
                    ..VacancyQuery::default()
                })
                .await
                .unwrap();
            assert_eq!(page.len(), expected, "limit {limit}");
            assert_eq!(page[0].message.message_id, 500, "limit {limit}");
        };
        check(0, 50).await;
        check(7, 7).await;
        check(500, 500).await;
        check(501, 500).await;
        check(u32::MAX, 500).await;
    }

    pub async fn a_vacancy_is_notified_once_per_channel_within_the_repost_window(
        store: &dyn Store,
    ) {
        let check = async |channel_id: &str,
                           text_hash: &str,
                           window_start: i64,
                           at: i64,
                           expected: bool| {
            let claimed = store
                .claim_notification(
                    channel_id,
                    text_hash,
                    UnixMillis(window_start),
                    UnixMillis(at),
                )
                .await
                .unwrap();
            assert_eq!(
                claimed, expected,
                "{channel_id} {text_hash} window from {window_start} at {at}"
            );
        };
        check("channel_1", "hash_a", 0, 1_000, true).await;
        // Within the window (the claim at 1 000 is at or after its start).
        check("channel_1", "hash_a", 500, 2_000, false).await;
        check("channel_1", "hash_a", 1_000, 3_000, false).await;
        // Other channels and other texts are independent.
        check("channel_2", "hash_a", 500, 2_000, true).await;
        check("channel_1", "hash_b", 500, 2_000, true).await;
        // The last claim fell out of the window: claimed again, and recorded at 10 000.
        check("channel_1", "hash_a", 1_001, 10_000, true).await;
        check("channel_1", "hash_a", 9_000, 11_000, false).await;
        check("channel_1", "hash_a", 10_000, 12_000, false).await;
        check("channel_1", "hash_a", 10_001, 12_000, true).await;
    }

    pub async fn concurrent_claims_of_one_vacancy_notify_once(store: &dyn Store) {
        for round in 0..5 {
            let hash = format!("hash_{round}");
            let (first, second) = tokio::join!(
                store.claim_notification("channel_1", &hash, UnixMillis(0), UnixMillis(1_000)),
                store.claim_notification("channel_1", &hash, UnixMillis(0), UnixMillis(1_000)),
            );
            let claims = [first.unwrap(), second.unwrap()];
            assert_eq!(
                claims.iter().filter(|claimed| **claimed).count(),
                1,
                "{hash}: {claims:?}"
            );
        }
    }

    // ----- CRM conversations -----

    pub fn user(bare: i64) -> ChatId {
        ChatId::user(bare).unwrap()
    }

    pub fn new_conversation(group: i64, contact: i64, agent_name: &str) -> NewConversation {
        NewConversation {
            channel_id: "channel_1".to_owned(),
            group: channel(group),
            contact: user(contact),
            contact_username: Some(Username::parse("Alice_Dev").unwrap()),
            contact_name: "Алиса 👩‍💻".to_owned(),
            agent: agent(agent_name),
            contact_peer: Some(PeerRef {
                id: user(contact),
                access_hash: -4_242_424_242,
            }),
            contact_author: None,
            created_at: UnixMillis(1_000),
        }
    }

    async fn open_new(store: &dyn Store, new: &NewConversation) -> Conversation {
        let (conversation, created) = store.open_conversation(new).await.unwrap();
        assert!(created, "{new:?}");
        conversation
    }

    /// A contact's own reference, learnt from their private message, is kept when the
    /// conversation has none; an existing one stays, and another person's is ignored.
    pub async fn a_contacts_peer_is_remembered_once(store: &dyn Store) {
        let mut new = new_conversation(5_000, 42, "agent_1");
        new.contact_peer = None;
        let conversation = open_new(store, &new).await;
        let peer = PeerRef {
            id: user(42),
            access_hash: 777,
        };
        let stranger = PeerRef {
            id: user(43),
            access_hash: 1,
        };
        assert!(
            !store
                .remember_contact_peer(conversation.id, stranger)
                .await
                .unwrap()
        );
        assert!(
            store
                .remember_contact_peer(conversation.id, peer)
                .await
                .unwrap()
        );
        let other = PeerRef {
            access_hash: 888,
            ..peer
        };
        assert!(
            !store
                .remember_contact_peer(conversation.id, other)
                .await
                .unwrap()
        );
        let stored = store.conversation(conversation.id).await.unwrap().unwrap();
        assert_eq!(stored.contact_peer, Some(peer));
        assert_eq!(
            stored.contact_peer.map(|peer| peer.access_hash),
            Some(777),
            "the first reference stays"
        );
        assert!(
            !store
                .remember_contact_peer(ConversationId(999_999), peer)
                .await
                .unwrap(),
            "no such conversation"
        );
    }

    pub async fn a_conversation_opens_once_per_group_and_contact_and_keeps_its_agent(
        store: &dyn Store,
    ) {
        let new = new_conversation(5_000, 42, "agent_1");
        let (opened, created) = store.open_conversation(&new).await.unwrap();
        assert!(created);
        assert_eq!(
            opened,
            Conversation {
                id: opened.id,
                channel_id: new.channel_id.clone(),
                group: new.group,
                topic: None,
                contact: new.contact,
                contact_username: new.contact_username.clone(),
                contact_name: new.contact_name.clone(),
                agent: new.agent.clone(),
                contact_peer: new.contact_peer,
                contact_author: None,
                status: ConversationStatus::Active,
                created_at: UnixMillis(1_000),
                last_message_at: UnixMillis(1_000),
            }
        );
        assert_eq!(
            opened.contact_username.as_ref().unwrap().as_str(),
            "Alice_Dev"
        );
        store
            .set_conversation_topic(opened.id, Some(TopicId(17)))
            .await
            .unwrap();
        let with_topic = store.conversation(opened.id).await.unwrap().unwrap();

        // Another trigger, another agent, another channel: the conversation is sticky.
        let mut again = new_conversation(5_000, 42, "agent_2");
        again.channel_id = "channel_2".to_owned();
        again.contact_peer = None;
        again.created_at = UnixMillis(9_000);
        let (existing, created) = store.open_conversation(&again).await.unwrap();
        assert!(!created);
        assert_eq!(existing, with_topic);
        assert_eq!(existing.agent, agent("agent_1"));

        // The same contact in another group, and another contact in the same group, are new.
        let other_group = open_new(store, &new_conversation(6_000, 42, "agent_2")).await;
        let other_contact = open_new(store, &new_conversation(5_000, 43, "agent_1")).await;
        let ids = [opened.id, other_group.id, other_contact.id];
        assert!(
            ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
            "{ids:?}"
        );
        // Optional fields round-trip when absent too.
        let mut bare = new_conversation(5_000, 44, "agent_3");
        bare.contact_username = None;
        bare.contact_peer = None;
        let bare_opened = open_new(store, &bare).await;
        assert_eq!(bare_opened.contact_username, None);
        assert_eq!(bare_opened.contact_peer, None);
        assert_eq!(
            store.conversation(bare_opened.id).await.unwrap(),
            Some(bare_opened)
        );
        // A contact found through a group message keeps that message.
        let mut author = new_conversation(5_000, 45, "agent_3");
        author.contact_username = None;
        author.contact_peer = None;
        author.contact_author = Some(jobbot_core::telegram::MessageAuthor {
            chat: channel(7_000),
            chat_username: Some(Username::parse("jobs_chat").unwrap()),
            message_id: 77,
            user: user(45),
        });
        let author_opened = open_new(store, &author).await;
        assert_eq!(author_opened.contact_author, author.contact_author);
        assert_eq!(
            store.conversation(author_opened.id).await.unwrap(),
            Some(author_opened)
        );
        assert_eq!(
            store.conversation(ConversationId(9_999)).await.unwrap(),
            None
        );
    }

    pub async fn concurrent_opens_of_one_conversation_store_one(store: &dyn Store) {
        for contact in 1..=5 {
            let first = new_conversation(5_000, contact, "agent_1");
            let second = new_conversation(5_000, contact, "agent_2");
            let (first, second) = tokio::join!(
                store.open_conversation(&first),
                store.open_conversation(&second),
            );
            let ((first, first_created), (second, second_created)) =
                (first.unwrap(), second.unwrap());
            assert_eq!(first, second, "contact {contact}");
            assert!(first_created != second_created, "contact {contact}");
        }
        for contact in 1..=5 {
            let found = store
                .conversation_by_contact(channel(5_000), user(contact))
                .await
                .unwrap();
            assert!(found.is_some(), "contact {contact}");
        }
    }

    pub async fn conversations_are_found_by_contact_topic_and_agent(store: &dyn Store) {
        let group = channel(5_000);
        let first = open_new(store, &new_conversation(5_000, 42, "agent_1")).await;
        let in_other_group = open_new(store, &new_conversation(6_000, 42, "agent_1")).await;
        let other_agent = open_new(store, &new_conversation(7_000, 42, "agent_2")).await;
        let other_contact = open_new(store, &new_conversation(5_000, 43, "agent_1")).await;

        let by_contact = async |group: ChatId, contact: i64| {
            store
                .conversation_by_contact(group, user(contact))
                .await
                .unwrap()
                .map(|conversation| conversation.id)
        };
        assert_eq!(by_contact(group, 42).await, Some(first.id));
        assert_eq!(
            by_contact(channel(6_000), 42).await,
            Some(in_other_group.id)
        );
        assert_eq!(by_contact(group, 43).await, Some(other_contact.id));
        assert_eq!(by_contact(group, 44).await, None);

        let with_contact = async |agent_name: &str, contact: i64| {
            store
                .conversations_with_contact(&agent(agent_name), user(contact))
                .await
                .unwrap()
                .iter()
                .map(|conversation| conversation.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            with_contact("agent_1", 42).await,
            vec![first.id, in_other_group.id]
        );
        assert_eq!(with_contact("agent_2", 42).await, vec![other_agent.id]);
        assert_eq!(with_contact("agent_2", 43).await, vec![]);
        assert_eq!(with_contact("agent_3", 42).await, vec![]);

        let by_topic = async |group: ChatId, topic: i32| {
            store
                .conversation_by_topic(group, TopicId(topic))
                .await
                .unwrap()
                .map(|conversation| conversation.id)
        };
        assert_eq!(by_topic(group, 17).await, None);
        store
            .set_conversation_topic(first.id, Some(TopicId(17)))
            .await
            .unwrap();
        // Topic ids are per group: the same id in another group is another topic.
        store
            .set_conversation_topic(in_other_group.id, Some(TopicId(17)))
            .await
            .unwrap();
        assert_eq!(by_topic(group, 17).await, Some(first.id));
        assert_eq!(by_topic(channel(6_000), 17).await, Some(in_other_group.id));
        assert_eq!(
            store
                .conversation_by_topic(group, TopicId(17))
                .await
                .unwrap()
                .unwrap()
                .topic,
            Some(TopicId(17))
        );

        // A topic belongs to one conversation.
        let error = store
            .set_conversation_topic(other_contact.id, Some(TopicId(17)))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("already belongs"), "{error}");
        assert_eq!(by_topic(group, 17).await, Some(first.id));
        // Setting the topic a conversation already has changes nothing.
        store
            .set_conversation_topic(first.id, Some(TopicId(17)))
            .await
            .unwrap();

        // The topic was deleted: cleared, and then recreated under a new id.
        store.set_conversation_topic(first.id, None).await.unwrap();
        assert_eq!(by_topic(group, 17).await, None);
        assert_eq!(
            store.conversation(first.id).await.unwrap().unwrap().topic,
            None
        );
        store
            .set_conversation_topic(first.id, Some(TopicId(23)))
            .await
            .unwrap();
        assert_eq!(by_topic(group, 23).await, Some(first.id));
        // A freed topic id can be taken by another conversation.
        store
            .set_conversation_topic(other_contact.id, Some(TopicId(17)))
            .await
            .unwrap();
        assert_eq!(by_topic(group, 17).await, Some(other_contact.id));

        let last_message_at = async |id: ConversationId| {
            store
                .conversation(id)
                .await
                .unwrap()
                .unwrap()
                .last_message_at
        };
        store
            .touch_conversation(first.id, UnixMillis(5_000))
            .await
            .unwrap();
        assert_eq!(last_message_at(first.id).await, UnixMillis(5_000));
        assert_eq!(last_message_at(other_contact.id).await, UnixMillis(1_000));
        // Never backwards: a late touch from an earlier message keeps the newest time.
        store
            .touch_conversation(first.id, UnixMillis(4_000))
            .await
            .unwrap();
        assert_eq!(last_message_at(first.id).await, UnixMillis(5_000));
    }

    pub async fn unknown_conversations_are_refused_naming_their_id(store: &dyn Store) {
        let known = open_new(store, &new_conversation(5_000, 42, "agent_1")).await;
        let missing = ConversationId(known.id.0 + 1_000);
        let relay = RelayRecord {
            conversation: missing,
            direction: RelayDirection::ContactToTopic,
            source: Some((user(42), 7)),
            outbox: None,
            at: UnixMillis(2_000),
        };
        let refusals = [
            store
                .set_conversation_topic(missing, Some(TopicId(1)))
                .await
                .unwrap_err(),
            store
                .set_conversation_topic(missing, None)
                .await
                .unwrap_err(),
            store
                .touch_conversation(missing, UnixMillis(2_000))
                .await
                .unwrap_err(),
            store.record_relay(&relay).await.map(|_| ()).unwrap_err(),
            store
                .record_own_post(channel(5_000), 9, Some(missing))
                .await
                .unwrap_err(),
        ];
        let expected = format!("conversation #{} does not exist", missing.0);
        for error in refusals {
            assert!(error.to_string().contains(&expected), "{error}");
        }
        // Nothing was stored on the way.
        assert!(!store.is_own_post(channel(5_000), 9).await.unwrap());
        assert_eq!(
            store.conversation(known.id).await.unwrap(),
            Some(known.clone())
        );
        // A relay whose outbox message does not exist is refused too.
        let error = store
            .record_relay(&RelayRecord {
                conversation: known.id,
                outbox: Some(OutboxId(9_999)),
                ..relay
            })
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("#9999 does not exist"),
            "{error}"
        );
    }

    pub async fn a_source_message_is_relayed_once_and_service_posts_always(store: &dyn Store) {
        let conversation = open_new(store, &new_conversation(5_000, 42, "agent_1")).await;
        let other = open_new(store, &new_conversation(5_000, 43, "agent_1")).await;
        // Each relay has its own outbox message (one record per outbox message is checked in
        // `a_delivered_post_is_recorded_once`).
        let check = async |conversation: ConversationId,
                           direction: RelayDirection,
                           source: Option<(ChatId, i32)>,
                           expected: bool| {
            let record = RelayRecord {
                conversation,
                direction,
                source,
                outbox: Some(enqueue_new(store, message(None, 1_000)).await),
                at: UnixMillis(2_000),
            };
            assert_eq!(
                store.record_relay(&record).await.unwrap(),
                expected,
                "{record:?}"
            );
        };
        let from_contact = Some((user(42), 7));
        let from_topic = Some((channel(5_000), 7));
        use RelayDirection::{ContactToTopic, Service, TopicToContact};
        check(conversation.id, ContactToTopic, from_contact, true).await;
        check(conversation.id, ContactToTopic, from_contact, false).await;
        check(conversation.id, ContactToTopic, Some((user(42), 8)), true).await;
        check(conversation.id, TopicToContact, from_topic, true).await;
        check(conversation.id, TopicToContact, from_topic, false).await;
        // The same source in the other direction, or for another conversation, is another relay.
        check(conversation.id, TopicToContact, from_contact, true).await;
        check(other.id, ContactToTopic, from_contact, true).await;
        check(conversation.id, Service, None, true).await;
        check(conversation.id, Service, None, true).await;
        let without_outbox = RelayRecord {
            conversation: conversation.id,
            direction: Service,
            source: None,
            outbox: None,
            at: UnixMillis(3_000),
        };
        assert!(store.record_relay(&without_outbox).await.unwrap());
    }

    pub async fn own_posts_are_recognised_by_group_and_message_id(store: &dyn Store) {
        let conversation = open_new(store, &new_conversation(5_000, 42, "agent_1")).await;
        let group = channel(5_000);
        store
            .record_own_post(group, 100, Some(conversation.id))
            .await
            .unwrap();
        store.record_own_post(group, 101, None).await.unwrap();
        // Recording a post twice is harmless.
        store.record_own_post(group, 101, None).await.unwrap();
        let check = async |group: ChatId, message_id: i32, expected: bool| {
            assert_eq!(
                store.is_own_post(group, message_id).await.unwrap(),
                expected,
                "{group} {message_id}"
            );
        };
        check(group, 100, true).await;
        check(group, 101, true).await;
        check(group, 102, false).await;
        check(channel(6_000), 100, false).await;
    }

    pub async fn the_last_auto_response_to_a_contact_is_the_newest_over_every_channel(
        store: &dyn Store,
    ) {
        let (alice, bob) = (user(42), user(43));
        assert_eq!(store.last_auto_response_to(alice).await.unwrap(), None);
        let record = async |channel_id: &str, contact: ChatId, at: i64| {
            store
                .record_auto_response(channel_id, contact, UnixMillis(at))
                .await
                .unwrap();
        };
        record("channel_1", alice, 1_000).await;
        record("channel_2", alice, 5_000).await;
        record("channel_1", alice, 3_000).await;
        record("channel_1", bob, 2_000).await;
        assert_eq!(
            store.last_auto_response_to(alice).await.unwrap(),
            Some(UnixMillis(5_000))
        );
        assert_eq!(
            store.last_auto_response_to(bob).await.unwrap(),
            Some(UnixMillis(2_000))
        );
        assert_eq!(store.last_auto_response_to(user(44)).await.unwrap(), None);
    }

    // ----- Statistics -----

    /// Pending messages count whatever their age; ended ones when they ended at or after `since`;
    /// sends per agent per hour when they were sent at or after `since`.
    pub async fn outbox_stats_count_by_kind_and_status_and_sends_per_agent_hour(store: &dyn Store) {
        const HOUR: i64 = 3_600_000;
        assert_eq!(
            store.outbox_stats(UnixMillis(0)).await.unwrap(),
            OutboxStats::default()
        );
        let enqueue = async |kind: OutboxKind| {
            let mut new = message(None, 0);
            new.kind = kind;
            new.expires_at = UnixMillis(100 * HOUR);
            enqueue_new(store, new).await
        };
        let send = async |kind: OutboxKind, agent_name: &str, at: i64| {
            let id = enqueue(kind).await;
            store
                .mark_sent(id, &agent(agent_name), sent_to(1), UnixMillis(at))
                .await
                .unwrap();
        };
        // Before `since` (hour 1): counted in neither list.
        send(OutboxKind::AutoResponse, "agent_1", HOUR - 1).await;
        // Hour 1.
        send(OutboxKind::AutoResponse, "agent_2", HOUR).await;
        send(OutboxKind::AutoResponse, "agent_1", HOUR + 10).await;
        send(OutboxKind::Notification, "agent_1", 2 * HOUR - 1).await;
        // Hour 2.
        send(OutboxKind::Notification, "main", 2 * HOUR).await;
        send(OutboxKind::AutoResponse, "agent_1", 2 * HOUR + 5).await;
        let failed = enqueue(OutboxKind::AutoResponse).await;
        store
            .mark_ended(failed, &end_as(OutboxStatus::Failed), UnixMillis(HOUR))
            .await
            .unwrap();
        let failed_early = enqueue(OutboxKind::AutoResponse).await;
        store
            .mark_ended(failed_early, &end_as(OutboxStatus::Failed), UnixMillis(10))
            .await
            .unwrap();
        // Pending since the start: still the backlog.
        enqueue(OutboxKind::TopicPost).await;
        enqueue(OutboxKind::TopicPost).await;

        let stats = store.outbox_stats(UnixMillis(HOUR)).await.unwrap();

        assert_eq!(
            stats,
            OutboxStats {
                by_kind_and_status: vec![
                    (OutboxKind::AutoResponse, OutboxStatus::Failed, 1),
                    (OutboxKind::AutoResponse, OutboxStatus::Sent, 3),
                    (OutboxKind::Notification, OutboxStatus::Sent, 2),
                    (OutboxKind::TopicPost, OutboxStatus::Pending, 2),
                ],
                sent_per_agent_hour: vec![
                    (agent("agent_1"), UnixMillis(HOUR), 2),
                    (agent("agent_2"), UnixMillis(HOUR), 1),
                    (agent("agent_1"), UnixMillis(2 * HOUR), 1),
                    (agent("main"), UnixMillis(2 * HOUR), 1),
                ],
            }
        );
        let everything = store.outbox_stats(UnixMillis(0)).await.unwrap();
        assert_eq!(
            everything.by_kind_and_status[..2],
            [
                (OutboxKind::AutoResponse, OutboxStatus::Failed, 2),
                (OutboxKind::AutoResponse, OutboxStatus::Sent, 4),
            ]
        );
        assert_eq!(
            everything.sent_per_agent_hour[0],
            (agent("agent_1"), UnixMillis(0), 1)
        );
    }

    pub async fn agent_events_come_back_newest_first_since_an_instant(store: &dyn Store) {
        let event = |agent_name: &str, event: AgentEvent, at: i64| AgentEventRecord {
            agent: agent(agent_name),
            event,
            at: UnixMillis(at),
        };
        let recorded = [
            event("agent_1", AgentEvent::FloodWait { seconds: 30 }, 1_000),
            event("agent_2", AgentEvent::PeerFlood, 3_000),
            // Recorded late, about an earlier instant: ordered by when it happened.
            event(
                "agent_1",
                AgentEvent::Dead {
                    reason: DeadReason::Banned,
                },
                2_000,
            ),
            // Two at one instant keep their recording order (newest recorded first).
            event("agent_3", AgentEvent::Reconnected, 3_000),
        ];
        for event in &recorded {
            store.record_agent_event(event).await.unwrap();
        }
        let check = async |since: i64, limit: u32, expected: &[usize]| {
            let expected: Vec<AgentEventRecord> = expected
                .iter()
                .map(|index| recorded[*index].clone())
                .collect();
            assert_eq!(
                store.agent_events(UnixMillis(since), limit).await.unwrap(),
                expected,
                "since {since}, limit {limit}"
            );
        };
        check(0, 0, &[3, 1, 2, 0]).await;
        check(0, 2, &[3, 1]).await;
        check(2_000, 0, &[3, 1, 2]).await;
        check(2_001, 0, &[3, 1]).await;
        check(3_001, 0, &[]).await;
    }

    // ----- Durable workflows -----

    fn auto_response_workflow(message_id: i32) -> Workflow {
        Workflow::AutoResponse(AutoResponse::new(
            "channel_1".to_owned(),
            VacancyRef {
                source: channel(1_111),
                source_username: Some(Username::parse("python_jobs").unwrap()),
                message_id,
                source_title: "Python Jobs 🐍".to_owned(),
                link: format!("https://t.me/c/1111/{message_id}"),
                text: "Rust developer".to_owned(),
            },
            Username::parse("alice_dev").unwrap(),
            UnixMillis(1_000),
            std::time::Duration::from_secs(3_600),
        ))
    }

    fn new_workflow(key: &str, message_id: i32) -> NewWorkflow {
        NewWorkflow {
            key: key.to_owned(),
            state: auto_response_workflow(message_id),
            created_at: UnixMillis(1_000),
        }
    }

    /// Monitoring's hand-over for processed message `message_id` matching `channels`.
    fn intake(message_id: i32, channels: &[&str]) -> VacancyIntake {
        let mut message = processed(1_111, message_id, channels);
        message.text_hash = "same vacancy".to_owned();
        VacancyIntake {
            message,
            window_start: UnixMillis(0),
            channels: channels
                .iter()
                .map(|channel_id| {
                    let mut notification = super::conformance::message(
                        Some(&format!("notification:{channel_id}:1111:{message_id}")),
                        1_000,
                    );
                    notification.channel_id = (*channel_id).to_owned();
                    notification.kind = OutboxKind::Notification;
                    ChannelIntake {
                        channel_id: (*channel_id).to_owned(),
                        notification,
                        workflows: vec![new_workflow(
                            &format!("auto_response:{channel_id}:1111:{message_id}"),
                            message_id,
                        )],
                    }
                })
                .collect(),
        }
    }

    pub async fn a_vacancy_is_taken_in_with_its_claims_notifications_and_workflows_at_once(
        store: &dyn Store,
    ) {
        let first = intake(5, &["channel_1", "channel_2"]);
        let IntakeOutcome::Processed {
            notified,
            reposts,
            workflows,
        } = store.take_in_vacancy(&first).await.unwrap()
        else {
            panic!("the first intake processes");
        };
        assert!(reposts.is_empty());
        assert_eq!(
            notified.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(),
            ["channel_1", "channel_2"]
        );
        assert!(notified.iter().all(|(_, e)| matches!(e, Enqueued::New(_))));
        assert_eq!(workflows.len(), 2);
        let pending = store.pending_outbox().await.unwrap();
        assert_eq!(pending.len(), 2);
        assert_eq!(store.active_workflows().await.unwrap().len(), 2);
        let recorded = &store.vacancies(&VacancyQuery::default()).await.unwrap()[0];
        // The store decided `notified`, whatever the caller said.
        assert!(recorded.message.matched.iter().all(|m| m.notified));
        assert!(store.is_processed(channel(1_111), 5).await.unwrap());

        // A replay of the same message changes nothing.
        assert_eq!(
            store.take_in_vacancy(&first).await.unwrap(),
            IntakeOutcome::AlreadyProcessed
        );
        assert_eq!(store.pending_outbox().await.unwrap(), pending);
        assert_eq!(store.active_workflows().await.unwrap().len(), 2);

        // The same vacancy from another message: a repost for both channels, nothing queued.
        let repost = intake(6, &["channel_1", "channel_2"]);
        let IntakeOutcome::Processed {
            notified,
            reposts,
            workflows,
        } = store.take_in_vacancy(&repost).await.unwrap()
        else {
            panic!("a new message processes");
        };
        assert!(notified.is_empty() && workflows.is_empty());
        assert_eq!(reposts, ["channel_1", "channel_2"]);
        assert_eq!(store.pending_outbox().await.unwrap().len(), 2);
        let recorded = &store.vacancies(&VacancyQuery::default()).await.unwrap()[0];
        assert_eq!(recorded.message.message_id, 6);
        assert!(recorded.message.matched.iter().all(|m| !m.notified));
    }

    /// The claim and the notification are one write: a claim never exists without its message
    /// (the old order, claim then enqueue, lost the notification of a crash in between).
    pub async fn a_repost_claim_and_its_notification_go_together(store: &dyn Store) {
        let mut vacancy = intake(7, &["channel_1"]);
        // A notification whose key is held by an earlier message: still claimed and recorded,
        // and the intake reports the holder.
        let holder = store
            .enqueue(vacancy.channels[0].notification.clone())
            .await
            .unwrap()
            .id();
        vacancy.channels[0].workflows.clear();
        let IntakeOutcome::Processed { notified, .. } =
            store.take_in_vacancy(&vacancy).await.unwrap()
        else {
            panic!("processed");
        };
        assert_eq!(
            notified,
            [(
                "channel_1".to_owned(),
                Enqueued::Existing(holder, OutboxStatus::Pending)
            )]
        );
        // Concurrent intakes of one vacancy from two sources notify once.
        let (eight, nine) = (intake(8, &["channel_2"]), intake(9, &["channel_2"]));
        let (first, second) =
            tokio::join!(store.take_in_vacancy(&eight), store.take_in_vacancy(&nine));
        let notified: usize = [first.unwrap(), second.unwrap()]
            .iter()
            .map(|outcome| match outcome {
                IntakeOutcome::Processed { notified, .. } => notified.len(),
                IntakeOutcome::AlreadyProcessed => 0,
            })
            .sum();
        assert_eq!(notified, 1);
    }

    /// A message handed over twice at once (a replayed update racing the live one) is taken in
    /// once: one intake processes it, the other finds it processed, and one notification and one
    /// workflow per channel are stored.
    pub async fn concurrent_intakes_of_one_message_take_it_in_once(store: &dyn Store) {
        for message_id in 20..25 {
            let vacancy = intake(message_id, &["channel_1", "channel_2"]);
            let (first, second) = tokio::join!(
                store.take_in_vacancy(&vacancy),
                store.take_in_vacancy(&vacancy)
            );
            let outcomes = [first.unwrap(), second.unwrap()];
            let processed = outcomes
                .iter()
                .filter(|outcome| matches!(outcome, IntakeOutcome::Processed { .. }))
                .count();
            assert_eq!(processed, 1, "{message_id}: {outcomes:?}");
            assert!(
                outcomes.contains(&IntakeOutcome::AlreadyProcessed),
                "{message_id}: {outcomes:?}"
            );
        }
        // The first message claimed the text for both channels; the others are its reposts.
        assert_eq!(store.pending_outbox().await.unwrap().len(), 2);
        assert_eq!(store.active_workflows().await.unwrap().len(), 2);
        assert_eq!(
            store
                .vacancies(&VacancyQuery::default())
                .await
                .unwrap()
                .len(),
            5
        );
    }

    pub async fn pauses_are_kept_until_resumed(store: &dyn Store) {
        assert!(store.paused_agents().await.unwrap().is_empty());
        let at = UnixMillis(1_000);
        store
            .set_agent_paused(&agent("agent_2"), true, at)
            .await
            .unwrap();
        store
            .set_agent_paused(&agent("agent_1"), true, at)
            .await
            .unwrap();
        store
            .set_agent_paused(&agent("agent_1"), true, at)
            .await
            .unwrap();
        assert_eq!(
            store.paused_agents().await.unwrap(),
            [agent("agent_1"), agent("agent_2")]
        );
        store
            .set_agent_paused(&agent("agent_1"), false, at)
            .await
            .unwrap();
        // Resuming an agent that is not paused is no error.
        store
            .set_agent_paused(&agent("agent_3"), false, at)
            .await
            .unwrap();
        assert_eq!(store.paused_agents().await.unwrap(), [agent("agent_2")]);
    }

    fn node(name: &str) -> jobbot_core::cluster::NodeId {
        jobbot_core::cluster::NodeId::parse(name).unwrap()
    }

    pub async fn a_session_lease_is_held_by_one_node_at_a_time_with_growing_tokens(
        store: &dyn Store,
    ) {
        use jobbot_core::cluster::FencingToken;
        let (a, b) = (node("node-a"), node("node-b"));
        let session = agent("agent_1");
        let taken = store
            .acquire_lease(&session, &a, UnixMillis(1_000), UnixMillis(31_000))
            .await
            .unwrap()
            .expect("a free lease is taken");
        assert_eq!(taken.holder, Some(a.clone()));
        assert_eq!(taken.token, FencingToken(1));
        assert_eq!(
            (taken.acquired_at, taken.renewed_at, taken.expires_at),
            (UnixMillis(1_000), UnixMillis(1_000), UnixMillis(31_000))
        );
        // Held: another node is refused until it expires; the holder taking it again extends
        // it with the same token.
        assert_eq!(
            store
                .acquire_lease(&session, &b, UnixMillis(30_999), UnixMillis(60_999))
                .await
                .unwrap(),
            None
        );
        let again = store
            .acquire_lease(&session, &a, UnixMillis(2_000), UnixMillis(32_000))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (again.token, again.acquired_at, again.expires_at),
            (FencingToken(1), UnixMillis(1_000), UnixMillis(32_000))
        );
        let renewed = store
            .renew_lease(
                &session,
                &a,
                FencingToken(1),
                UnixMillis(5_000),
                UnixMillis(35_000),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (renewed.renewed_at, renewed.expires_at),
            (UnixMillis(5_000), UnixMillis(35_000))
        );
        // Expired: b takes it with the next token, and a can neither renew nor release it.
        let moved = store
            .acquire_lease(&session, &b, UnixMillis(35_000), UnixMillis(65_000))
            .await
            .unwrap()
            .expect("an expired lease is taken");
        assert_eq!(
            (moved.holder.clone(), moved.token),
            (Some(b.clone()), FencingToken(2))
        );
        assert_eq!(moved.acquired_at, UnixMillis(35_000));
        // The fence: only the holder, with the current token, before expiry.
        let holds = |node, token, at| {
            store.holds_lease(&session, node, FencingToken(token), UnixMillis(at))
        };
        assert!(holds(&b, 2, 35_000).await.unwrap());
        assert!(!holds(&b, 2, 65_000).await.unwrap(), "expired");
        assert!(!holds(&b, 1, 35_000).await.unwrap(), "an old token");
        assert!(!holds(&a, 1, 34_000).await.unwrap(), "the old holder");
        assert_eq!(
            store
                .renew_lease(
                    &session,
                    &a,
                    FencingToken(1),
                    UnixMillis(36_000),
                    UnixMillis(66_000)
                )
                .await
                .unwrap(),
            None
        );
        assert!(
            !store
                .release_lease(&session, &a, FencingToken(1))
                .await
                .unwrap()
        );
        assert!(
            !store
                .release_lease(&session, &b, FencingToken(1))
                .await
                .unwrap()
        );
        // Released: free at once, and the next holder gets the next token.
        assert!(
            store
                .release_lease(&session, &b, FencingToken(2))
                .await
                .unwrap()
        );
        let listed = store.session_leases().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].holder.clone(), listed[0].token),
            (None, FencingToken(2))
        );
        let back = store
            .acquire_lease(&session, &a, UnixMillis(36_000), UnixMillis(66_000))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back.token, FencingToken(3));
        assert_eq!(store.session_leases().await.unwrap(), vec![back]);
    }

    pub async fn leases_renewed_together_are_each_renewed_only_with_their_holder_and_token(
        store: &dyn Store,
    ) {
        use jobbot_core::cluster::FencingToken;
        let (a, b) = (node("node-a"), node("node-b"));
        let mut held = Vec::new();
        for index in 0..3 {
            let session = agent(&format!("agent_{index}"));
            let lease = store
                .acquire_lease(&session, &a, UnixMillis(1_000), UnixMillis(31_000))
                .await
                .unwrap()
                .unwrap();
            held.push((session, lease.token));
        }
        let other = agent("agent_9");
        store
            .acquire_lease(&other, &b, UnixMillis(1_000), UnixMillis(31_000))
            .await
            .unwrap()
            .unwrap();
        // agent_2 named with a token it does not have, agent_9 held by b, agent_5 by no one.
        let mut asked = held.clone();
        asked[2].1 = FencingToken(7);
        asked.push((other.clone(), FencingToken(1)));
        asked.push((agent("agent_5"), FencingToken(1)));
        let mut renewed = store
            .renew_leases(&a, &asked, UnixMillis(5_000), UnixMillis(35_000))
            .await
            .unwrap();
        renewed.sort_by(|x, y| x.session.cmp(&y.session));
        let summary: Vec<_> = renewed
            .iter()
            .map(|lease| (lease.session.clone(), lease.token, lease.expires_at))
            .collect();
        assert_eq!(
            summary,
            [
                (agent("agent_0"), held[0].1, UnixMillis(35_000)),
                (agent("agent_1"), held[1].1, UnixMillis(35_000)),
            ]
        );
        let leases = store.session_leases().await.unwrap();
        let expiry = |name: &str| {
            leases
                .iter()
                .find(|lease| lease.session == agent(name))
                .map(|lease| lease.expires_at)
        };
        assert_eq!(expiry("agent_2"), Some(UnixMillis(31_000)));
        assert_eq!(expiry("agent_9"), Some(UnixMillis(31_000)));
        assert_eq!(
            store
                .renew_leases(&a, &[], UnixMillis(6_000), UnixMillis(36_000))
                .await
                .unwrap(),
            []
        );
    }

    pub async fn concurrent_takes_of_one_lease_grant_it_once(store: &dyn Store) {
        let (a, b) = (node("node-a"), node("node-b"));
        for round in 0..5 {
            let session = agent(&format!("agent_{round}"));
            let (first, second) = tokio::join!(
                store.acquire_lease(&session, &a, UnixMillis(1_000), UnixMillis(31_000)),
                store.acquire_lease(&session, &b, UnixMillis(1_000), UnixMillis(31_000)),
            );
            let granted = [first.unwrap(), second.unwrap()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>();
            assert_eq!(granted.len(), 1, "{session}: {granted:?}");
            assert_eq!(granted[0].token.0, 1);
        }
    }

    /// A message taken for an attempt by one node, under its agent's lease: refused to a node
    /// without the lease, to another node while in doubt on the first one's agent or while the
    /// first one's claim runs, taken once that claim has expired, and refused once it ended.
    pub async fn a_message_is_attempted_under_one_nodes_claim_and_its_agents_lease(
        store: &dyn Store,
    ) {
        use jobbot_core::cluster::{AttemptClaim, ClaimRefusal, FencingToken};
        let (a, b) = (node("node-a"), node("node-b"));
        let (agent_1, agent_2) = (agent("agent_1"), agent("agent_2"));
        let lease_a = store
            .acquire_lease(&agent_1, &a, UnixMillis(1_000), UnixMillis(31_000))
            .await
            .unwrap()
            .unwrap();
        let lease_b = store
            .acquire_lease(&agent_2, &b, UnixMillis(1_000), UnixMillis(100_000))
            .await
            .unwrap()
            .unwrap();
        let id = store.enqueue(message(None, 1_000)).await.unwrap().id();
        async fn attempt(
            store: &dyn Store,
            id: OutboxId,
            (agent, node, token): (&SessionName, &jobbot_core::cluster::NodeId, FencingToken),
            proposed: i64,
            at: i64,
        ) -> Result<AttemptClaim, jobbot_core::store::StoreError> {
            store
                .claim_attempt(id, agent, node, token, RandomId(proposed), UnixMillis(at))
                .await
        }
        let claim = |agent, node, token, proposed, at| {
            attempt(store, id, (agent, node, token), proposed, at)
        };
        let refused = |refusal| AttemptClaim::Refused(refusal);
        // Not the lease's holder, or not its token: refused, nothing recorded.
        assert_eq!(
            claim(&agent_1, &b, lease_a.token, 7, 2_000).await.unwrap(),
            refused(ClaimRefusal::LeaseNotHeld)
        );
        assert_eq!(
            claim(&agent_1, &a, FencingToken(lease_a.token.0 + 1), 7, 2_000)
                .await
                .unwrap(),
            refused(ClaimRefusal::LeaseNotHeld)
        );
        assert_eq!(store.outbox_message(id).await.unwrap().unwrap().attempts, 0);
        // Taken by a: the attempt is on record, in doubt on agent_1.
        assert_eq!(
            claim(&agent_1, &a, lease_a.token, 11, 2_000).await.unwrap(),
            AttemptClaim::Taken(RandomId(11))
        );
        let stored = store.outbox_message(id).await.unwrap().unwrap();
        assert_eq!(stored.attempts, 1);
        assert_eq!(
            stored.in_doubt,
            Some(InDoubt {
                agent: agent_1.clone(),
                random_id: RandomId(11)
            })
        );
        // b may not send it through another agent while agent_1's attempt may have gone.
        assert_eq!(
            claim(&agent_2, &b, lease_b.token, 22, 3_000).await.unwrap(),
            refused(ClaimRefusal::InDoubtOn {
                agent: agent_1.clone()
            })
        );
        // a again through agent_1: the same random id.
        assert_eq!(
            claim(&agent_1, &a, lease_a.token, 12, 3_000).await.unwrap(),
            AttemptClaim::Taken(RandomId(11))
        );
        // Refused by Telegram: no longer in doubt, but a's claim runs until its lease expiry.
        store
            .note_holdup(
                id,
                &Holdup::NotAttempted {
                    agent: agent_1.clone(),
                },
                UnixMillis(4_000),
            )
            .await
            .unwrap();
        assert_eq!(
            claim(&agent_2, &b, lease_b.token, 22, 30_999)
                .await
                .unwrap(),
            refused(ClaimRefusal::ClaimedElsewhere {
                node: a.clone(),
                until: UnixMillis(31_000)
            })
        );
        // Once it has expired (a is gone), b takes it.
        assert_eq!(
            claim(&agent_2, &b, lease_b.token, 22, 31_000)
                .await
                .unwrap(),
            AttemptClaim::Taken(RandomId(22))
        );
        assert_eq!(store.outbox_message(id).await.unwrap().unwrap().attempts, 3);
        store
            .mark_sent(id, &agent_2, sent_to(5), UnixMillis(32_000))
            .await
            .unwrap();
        assert_eq!(
            claim(&agent_2, &b, lease_b.token, 23, 33_000)
                .await
                .unwrap(),
            refused(ClaimRefusal::NotPending)
        );
        assert_eq!(
            store
                .claim_attempt(
                    OutboxId(999),
                    &agent_2,
                    &b,
                    lease_b.token,
                    RandomId(1),
                    UnixMillis(33_000)
                )
                .await
                .unwrap(),
            refused(ClaimRefusal::NotPending)
        );
    }

    /// A node that does not hold a message (its expiry timer ran out while another node sends
    /// it) cannot end it while the other node's claim runs: the claimant's attempt decides.
    /// The claimant ends its own; anyone ends an unclaimed message or one whose claim lapsed;
    /// nothing ends twice.
    pub async fn a_message_another_node_claimed_is_not_ended_under_its_claim(store: &dyn Store) {
        use jobbot_core::cluster::{AttemptClaim, ClaimRefusal};
        let (a, b) = (node("node-a"), node("node-b"));
        let agent_1 = agent("agent_1");
        let token = store
            .acquire_lease(&agent_1, &a, UnixMillis(1_000), UnixMillis(31_000))
            .await
            .unwrap()
            .unwrap()
            .token;
        let end_by = |id, node, at| async move {
            store
                .end_unclaimed(id, &expired(), node, UnixMillis(at))
                .await
                .unwrap()
        };
        // Unclaimed: any node ends it, once.
        let free = store.enqueue(message(None, 1_000)).await.unwrap().id();
        assert_eq!(end_by(free, &b, 2_000).await, Ok(()));
        assert_eq!(
            store.outbox_message(free).await.unwrap().unwrap().status,
            OutboxStatus::Expired
        );
        assert_eq!(end_by(free, &a, 2_000).await, Err(ClaimRefusal::NotPending));
        assert_eq!(
            end_by(OutboxId(999), &a, 2_000).await,
            Err(ClaimRefusal::NotPending)
        );
        // Claimed by a: b may not end it before the claim runs out; the message is untouched.
        let claimed = store.enqueue(message(None, 1_001)).await.unwrap().id();
        let taken = store
            .claim_attempt(claimed, &agent_1, &a, token, RandomId(5), UnixMillis(2_000))
            .await
            .unwrap();
        assert_eq!(taken, AttemptClaim::Taken(RandomId(5)));
        let refusal = ClaimRefusal::ClaimedElsewhere {
            node: a.clone(),
            until: UnixMillis(31_000),
        };
        assert_eq!(end_by(claimed, &b, 30_999).await, Err(refusal));
        let stored = store.outbox_message(claimed).await.unwrap().unwrap();
        assert_eq!(stored.status, OutboxStatus::Pending);
        assert_eq!(
            stored.in_doubt.map(|doubt| doubt.agent),
            Some(agent_1.clone())
        );
        // a (the claimant) ends its own.
        assert_eq!(end_by(claimed, &a, 3_000).await, Ok(()));
        assert_eq!(
            store.outbox_message(claimed).await.unwrap().unwrap().status,
            OutboxStatus::Expired
        );
        // A lapsed claim (a died with its lease) no longer holds the message.
        let lapsed = store.enqueue(message(None, 1_002)).await.unwrap().id();
        store
            .claim_attempt(lapsed, &agent_1, &a, token, RandomId(6), UnixMillis(2_000))
            .await
            .unwrap();
        assert_eq!(end_by(lapsed, &b, 31_000).await, Ok(()));
    }

    /// Two nodes, each with a free agent of the pool, claim the same messages at once: each
    /// message is taken by exactly one of them.
    pub async fn concurrent_claims_of_one_message_give_it_to_one_node(store: &dyn Store) {
        use jobbot_core::cluster::AttemptClaim;
        let (a, b) = (node("node-a"), node("node-b"));
        let (agent_1, agent_2) = (agent("agent_1"), agent("agent_2"));
        let token_a = store
            .acquire_lease(&agent_1, &a, UnixMillis(1_000), UnixMillis(31_000))
            .await
            .unwrap()
            .unwrap()
            .token;
        let token_b = store
            .acquire_lease(&agent_2, &b, UnixMillis(1_000), UnixMillis(31_000))
            .await
            .unwrap()
            .unwrap()
            .token;
        let mut taken_by = [0, 0];
        for round in 0..20 {
            let id = store
                .enqueue(message(None, 1_000 + round))
                .await
                .unwrap()
                .id();
            let (first, second) = tokio::join!(
                store.claim_attempt(id, &agent_1, &a, token_a, RandomId(1), UnixMillis(2_000)),
                store.claim_attempt(id, &agent_2, &b, token_b, RandomId(2), UnixMillis(2_000)),
            );
            let taken = [first.unwrap(), second.unwrap()]
                .map(|claim| matches!(claim, AttemptClaim::Taken(_)));
            assert_eq!(
                taken.iter().filter(|taken| **taken).count(),
                1,
                "message {round}: {taken:?}"
            );
            taken_by[usize::from(taken[1])] += 1;
            assert_eq!(store.outbox_message(id).await.unwrap().unwrap().attempts, 1);
        }
        assert_eq!(taken_by.iter().sum::<i32>(), 20);
    }

    /// Each account's Telegram user, as the node connecting it last recorded it.
    pub async fn account_users_are_recorded_per_session(store: &dyn Store) {
        assert!(store.account_users().await.unwrap().is_empty());
        let (first, second) = (ChatId::user(100).unwrap(), ChatId::user(200).unwrap());
        store
            .remember_account_user(&agent("agent_2"), second)
            .await
            .unwrap();
        store
            .remember_account_user(&agent("agent_1"), second)
            .await
            .unwrap();
        store
            .remember_account_user(&agent("agent_1"), first)
            .await
            .unwrap();
        assert_eq!(store.account_users().await.unwrap(), [first, second]);
    }

    /// A workflow is executed by one live node: another takes it only once the first is gone.
    pub async fn a_workflow_is_claimed_by_one_live_node(store: &dyn Store) {
        let (a, b) = (node("node-a"), node("node-b"));
        // A node the others cannot see yet (no heartbeat) claims nothing: they would take the
        // workflow back at once.
        let (early, _) = store
            .start_workflow(&new_workflow("early", 1))
            .await
            .unwrap();
        assert!(
            !store
                .claim_workflow(early, &a, UnixMillis(500))
                .await
                .unwrap()
        );
        for node in [&a, &b] {
            store
                .heartbeat(node, UnixMillis(1_000), UnixMillis(31_000))
                .await
                .unwrap();
        }
        let (id, _) = store.start_workflow(&new_workflow("w", 1)).await.unwrap();
        let (first, second) = tokio::join!(
            store.claim_workflow(id, &a, UnixMillis(2_000)),
            store.claim_workflow(id, &b, UnixMillis(2_000)),
        );
        assert_ne!(first.unwrap(), second.unwrap(), "taken by exactly one");
        let (holder, other) = if store
            .claim_workflow(id, &a, UnixMillis(3_000))
            .await
            .unwrap()
        {
            (&a, &b)
        } else {
            (&b, &a)
        };
        assert!(
            !store
                .claim_workflow(id, other, UnixMillis(30_999))
                .await
                .unwrap()
        );
        // The holder's heartbeat expired: the other takes it, and the holder has lost it.
        store
            .heartbeat(other, UnixMillis(31_000), UnixMillis(61_000))
            .await
            .unwrap();
        assert!(
            store
                .claim_workflow(id, other, UnixMillis(31_000))
                .await
                .unwrap()
        );
        assert!(
            !store
                .claim_workflow(id, holder, UnixMillis(31_001))
                .await
                .unwrap()
        );
        // Nor does a node whose own heartbeat expired claim a free workflow.
        assert!(
            !store
                .claim_workflow(early, holder, UnixMillis(31_001))
                .await
                .unwrap()
        );
        // A node that leaves frees its workflows at once.
        store.leave_cluster(other).await.unwrap();
        store
            .heartbeat(holder, UnixMillis(32_000), UnixMillis(62_000))
            .await
            .unwrap();
        assert!(
            store
                .claim_workflow(id, holder, UnixMillis(32_000))
                .await
                .unwrap()
        );
        assert!(
            !store
                .claim_workflow(WorkflowId(999), holder, UnixMillis(32_000))
                .await
                .unwrap()
        );
    }

    /// A workflow whose step needs an account another node holds is handed to that node by
    /// its claimant: the receiver then claims it, the giver no longer does; only the claimant
    /// can hand it over.
    pub async fn a_claimed_workflow_is_handed_to_another_node(store: &dyn Store) {
        let (a, b, c) = (node("node-a"), node("node-b"), node("node-c"));
        for node in [&a, &b, &c] {
            store
                .heartbeat(node, UnixMillis(1_000), UnixMillis(31_000))
                .await
                .unwrap();
        }
        let (id, _) = store.start_workflow(&new_workflow("w", 1)).await.unwrap();
        assert!(
            !store.hand_over_workflow(id, &a, &b).await.unwrap(),
            "unclaimed"
        );
        assert!(
            store
                .claim_workflow(id, &a, UnixMillis(2_000))
                .await
                .unwrap()
        );
        assert!(
            !store.hand_over_workflow(id, &c, &b).await.unwrap(),
            "not c's"
        );
        assert!(store.hand_over_workflow(id, &a, &b).await.unwrap());
        assert!(
            !store
                .claim_workflow(id, &a, UnixMillis(3_000))
                .await
                .unwrap()
        );
        assert!(
            !store
                .claim_workflow(id, &c, UnixMillis(3_000))
                .await
                .unwrap()
        );
        assert!(
            store
                .claim_workflow(id, &b, UnixMillis(3_000))
                .await
                .unwrap()
        );
        assert!(
            !store
                .hand_over_workflow(WorkflowId(999), &b, &a)
                .await
                .unwrap()
        );
    }

    pub async fn nodes_are_listed_with_their_heartbeats_and_a_leaving_node_frees_its_leases(
        store: &dyn Store,
    ) {
        let (a, b) = (node("node-a"), node("node-b"));
        store
            .heartbeat(&b, UnixMillis(1_000), UnixMillis(31_000))
            .await
            .unwrap();
        store
            .heartbeat(&a, UnixMillis(2_000), UnixMillis(32_000))
            .await
            .unwrap();
        store
            .heartbeat(&a, UnixMillis(7_000), UnixMillis(37_000))
            .await
            .unwrap();
        let nodes = store.cluster_nodes().await.unwrap();
        assert_eq!(
            nodes,
            vec![
                jobbot_core::cluster::NodeRecord {
                    node: a.clone(),
                    started_at: UnixMillis(2_000),
                    heartbeat_at: UnixMillis(7_000),
                    expires_at: UnixMillis(37_000),
                },
                jobbot_core::cluster::NodeRecord {
                    node: b.clone(),
                    started_at: UnixMillis(1_000),
                    heartbeat_at: UnixMillis(1_000),
                    expires_at: UnixMillis(31_000),
                },
            ]
        );
        for name in ["agent_1", "agent_2"] {
            store
                .acquire_lease(&agent(name), &a, UnixMillis(7_000), UnixMillis(37_000))
                .await
                .unwrap()
                .unwrap();
        }
        store
            .acquire_lease(&agent("agent_3"), &b, UnixMillis(7_000), UnixMillis(37_000))
            .await
            .unwrap()
            .unwrap();

        store.leave_cluster(&a).await.unwrap();

        let nodes = store.cluster_nodes().await.unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].node, b);
        let holders: Vec<_> = store
            .session_leases()
            .await
            .unwrap()
            .into_iter()
            .map(|lease| (lease.session.to_string(), lease.holder))
            .collect();
        assert_eq!(
            holders,
            vec![
                ("agent_1".to_owned(), None),
                ("agent_2".to_owned(), None),
                ("agent_3".to_owned(), Some(b.clone())),
            ]
        );
        // Freed leases are taken at once, before their old expiry.
        assert!(
            store
                .acquire_lease(&agent("agent_1"), &b, UnixMillis(8_000), UnixMillis(38_000))
                .await
                .unwrap()
                .is_some()
        );
    }

    pub async fn learned_limits_are_replaced_and_restored(store: &dyn Store) {
        use jobbot_core::scheduling::{
            AdaptiveBudget, AdaptiveRate, CallClass, LearnedCalls, LearnedLimits, Millis,
            RateCeiling,
        };
        assert!(store.learned_limits().await.unwrap().is_empty());
        let ceiling = RateCeiling::per_minute(20, 3);
        let fresh = LearnedLimits {
            send_message: AdaptiveRate::new(ceiling, Millis(0)),
            first_messages: AdaptiveBudget::new(40, Millis(0)),
            calls: LearnedCalls::new(Millis(0)),
            stored_at_unix_ms: None,
        };
        let mut flooded = fresh;
        // Each class of call has its own learned rate, stored with the rest.
        let resolve_ceiling = RateCeiling::per_minute(6, 3);
        if let Some(resolve) = flooded.calls.resolve_username.as_mut() {
            resolve.on_flood_wait(resolve_ceiling, 600, true, Millis(10));
        }
        flooded
            .send_message
            .on_flood_wait(ceiling, 30, true, Millis(10));
        flooded.first_messages.on_peer_flood(25, true, Millis(10));
        // What the engine stores: the deadlines as the time they have left, and when.
        let flooded = flooded.for_storage(Millis(20), 1_000);
        let at = UnixMillis(1_000);
        store
            .save_learned_limits(&agent("agent_2"), &fresh, at)
            .await
            .unwrap();
        store
            .save_learned_limits(&agent("agent_1"), &fresh, at)
            .await
            .unwrap();
        store
            .save_learned_limits(&agent("agent_1"), &flooded, at)
            .await
            .unwrap();
        let stored = store.learned_limits().await.unwrap();
        assert_eq!(
            stored
                .iter()
                .map(|(agent, _)| agent.clone())
                .collect::<Vec<_>>(),
            [agent("agent_1"), agent("agent_2")]
        );
        let restored = stored[0].1;
        assert_eq!(restored.send_message.milli_per_minute(), 10_000);
        assert_eq!(restored.send_message.burst(), 1);
        assert_eq!(restored.send_message.flooded(), Some(20_000));
        assert_eq!(restored.first_messages.per_day(), 25);
        assert_eq!(
            serde_json::to_value(restored).unwrap(),
            serde_json::to_value(flooded).unwrap(),
            "every stored field comes back"
        );
        assert_eq!(restored.since_stored_ms(61_000), Some(60_000));
        let resolve = restored.calls.get(CallClass::ResolveUsername).unwrap();
        // A long wait (600 s) cuts to a quarter.
        assert_eq!(resolve.milli_per_minute(), 1_500);
        assert_eq!(resolve.flooded(), Some(6_000));
        assert_eq!(
            restored
                .calls
                .get(CallClass::CreateForumTopic)
                .map(AdaptiveRate::milli_per_minute),
            Some(2_000)
        );
        assert_eq!(stored[1].1.send_message.milli_per_minute(), 20_000);
    }

    /// Every kind of workflow is stored and read back (the schema does not list the kinds).
    pub async fn a_workflow_of_any_kind_is_stored(store: &dyn Store) {
        use jobbot_core::ids::SessionName;
        use jobbot_core::store::ConversationId;
        use jobbot_core::telegram::{IncomingMessage, PeerKind, TopicId};
        use jobbot_core::workflow::MediaToContact;
        let message = IncomingMessage {
            chat: channel(2_222),
            chat_kind: PeerKind::Group,
            chat_title: Some("CRM".into()),
            chat_username: None,
            message_id: 40,
            sender: None,
            text: "the offer".into(),
            media: None,
            file: None,
            date: 1,
            outgoing: false,
            is_service: false,
            topic_id: Some(TopicId(3)),
        };
        let state = Workflow::MediaToContact(MediaToContact::new(
            SessionName::parse("agent_a").unwrap(),
            ConversationId(1),
            message,
        ));
        let (id, new) = store
            .start_workflow(&NewWorkflow {
                key: MediaToContact::key(channel(2_222), 40),
                state: state.clone(),
                created_at: UnixMillis(1_000),
            })
            .await
            .unwrap();
        assert!(new);
        assert_eq!(store.workflow(id).await.unwrap().unwrap().state, state);
    }

    pub async fn a_workflow_starts_once_per_key_and_ends_once(store: &dyn Store) {
        let (id, new) = store.start_workflow(&new_workflow("a", 1)).await.unwrap();
        assert!(new);
        let (again, new) = store.start_workflow(&new_workflow("a", 2)).await.unwrap();
        assert_eq!((again, new), (id, false));
        let (other, _) = store.start_workflow(&new_workflow("b", 3)).await.unwrap();
        let record = store.workflow(id).await.unwrap().unwrap();
        assert_eq!(
            record.state,
            auto_response_workflow(1),
            "the first state stays"
        );
        assert_eq!(record.key, "a");

        let Workflow::AutoResponse(mut advanced) = auto_response_workflow(1) else {
            unreachable!()
        };
        advanced.step = AutoResponseStep::Resolve {
            retry_at: Some(UnixMillis(61_000)),
            give_up_at: UnixMillis(3_601_000),
        };
        let advanced = Workflow::AutoResponse(advanced);
        store
            .save_workflow(id, &advanced, UnixMillis(2_000))
            .await
            .unwrap();
        let active = store.active_workflows().await.unwrap();
        assert_eq!(
            active.iter().map(|w| w.id).collect::<Vec<_>>(),
            [id, other],
            "oldest first"
        );
        assert_eq!(active[0].state, advanced);
        assert_eq!(active[0].updated_at, UnixMillis(2_000));

        let finished = Workflow::AutoResponse(AutoResponse {
            step: AutoResponseStep::Finished {
                end: AutoResponseEnd::GaveUpResolving,
            },
            ..match auto_response_workflow(1) {
                Workflow::AutoResponse(workflow) => workflow,
                _ => unreachable!(),
            }
        });
        store
            .save_workflow(id, &finished, UnixMillis(3_000))
            .await
            .unwrap();
        let active = store.active_workflows().await.unwrap();
        assert_eq!(active.iter().map(|w| w.id).collect::<Vec<_>>(), [other]);
        let error = store
            .save_workflow(id, &advanced, UnixMillis(4_000))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("has finished"), "{error}");
        assert_eq!(store.workflow(id).await.unwrap().unwrap().state, finished);
        let by_key = store.workflow_by_key("a").await.unwrap().unwrap();
        assert_eq!(
            (by_key.id, &by_key.state),
            (id, &finished),
            "found by key once finished"
        );
        assert_eq!(store.workflow_by_key("b").await.unwrap().unwrap().id, other);
        assert_eq!(store.workflow_by_key("c").await.unwrap(), None);
        let error = store
            .save_workflow(WorkflowId(999), &advanced, UnixMillis(4_000))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("does not exist"), "{error}");
        // A key taken by a finished workflow still starts nothing.
        assert_eq!(
            store.start_workflow(&new_workflow("a", 1)).await.unwrap(),
            (id, false)
        );
    }

    pub async fn a_topic_creation_keeps_each_creators_first_random_id(store: &dyn Store) {
        let conversation = open_new(store, &new_conversation(5, 6, "agent_1")).await.id;
        let check = async |replacing: Option<TopicId>,
                           creator: &str,
                           proposed: i64,
                           expected: i64| {
            let random_id = store
                .begin_topic_creation(conversation, replacing, &agent(creator), RandomId(proposed))
                .await
                .unwrap();
            assert_eq!(
                random_id,
                RandomId(expected),
                "{replacing:?} {creator} {proposed}"
            );
        };
        check(None, "agent_1", 10, 10).await;
        check(None, "agent_1", 11, 10).await;
        check(None, "main", 12, 12).await;
        // The topic replacing a deleted one is another creation.
        check(Some(TopicId(7)), "agent_1", 13, 13).await;
        check(Some(TopicId(7)), "agent_1", 14, 13).await;
        let error = store
            .begin_topic_creation(ConversationId(999), None, &agent("agent_1"), RandomId(1))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("does not exist"), "{error}");
    }

    /// Recording a delivered post again (a workflow resumed after a crash) adds nothing.
    pub async fn a_delivered_post_is_recorded_once(store: &dyn Store) {
        let conversation = open_new(store, &new_conversation(5, 6, "agent_1")).await.id;
        let outbox = enqueue_new(store, message(None, 1_000)).await;
        let record = RelayRecord {
            conversation,
            direction: RelayDirection::Service,
            source: None,
            outbox: Some(outbox),
            at: UnixMillis(2_000),
        };
        assert!(store.record_relay(&record).await.unwrap());
        assert!(!store.record_relay(&record).await.unwrap());
        let without_outbox = RelayRecord {
            outbox: None,
            ..record
        };
        assert!(store.record_relay(&without_outbox).await.unwrap());
        assert!(store.record_relay(&without_outbox).await.unwrap());
    }

    /// What `after_restart` needs to know about the store `before_restart` filled.
    pub struct BeforeRestart {
        id: OutboxId,
        pending: Vec<OutboxMessage>,
    }

    // ----- Web authentication -----

    pub fn web_session(secret: &str, created_at: i64, expires_at: i64) -> WebSession {
        WebSession {
            digest: SecretDigest::of(secret),
            created_at: UnixMillis(created_at),
            expires_at: UnixMillis(expires_at),
            last_seen_at: UnixMillis(created_at),
        }
    }

    pub fn api_token(id: &str, secret: &str, created_at: i64, expires_at: i64) -> ApiTokenRecord {
        ApiTokenRecord {
            id: id.to_owned(),
            name: format!("token {id}"),
            digest: SecretDigest::of(secret),
            created_at: UnixMillis(created_at),
            expires_at: UnixMillis(expires_at),
            last_used_at: None,
        }
    }

    pub async fn web_sessions_are_found_by_digest_until_their_absolute_expiry(store: &dyn Store) {
        let first = web_session("session-one", 1_000, 10_000);
        let second = web_session("session-two", 2_000, 20_000);
        store.create_web_session(&first).await.unwrap();
        store.create_web_session(&second).await.unwrap();
        // A digest is stored once.
        let refused = store.create_web_session(&first).await.unwrap_err();
        assert!(refused.to_string().contains("exists"), "{refused}");

        let found = |secret: &'static str, now: i64| async move {
            store
                .web_session(&SecretDigest::of(secret), UnixMillis(now))
                .await
                .unwrap()
        };
        assert_eq!(found("session-one", 5_000).await, Some(first.clone()));
        assert_eq!(found("no-such-session", 5_000).await, None);
        // Requests move `last_seen_at` forward only, and never the expiry.
        store
            .touch_web_session(&first.digest, UnixMillis(7_000))
            .await
            .unwrap();
        store
            .touch_web_session(&first.digest, UnixMillis(6_000))
            .await
            .unwrap();
        let touched = found("session-one", 7_500).await.unwrap();
        assert_eq!(touched.last_seen_at, UnixMillis(7_000));
        assert_eq!(touched.expires_at, UnixMillis(10_000));
        // At its expiry the session is gone, however recently it was used.
        store
            .touch_web_session(&first.digest, UnixMillis(9_999))
            .await
            .unwrap();
        assert_eq!(found("session-one", 10_000).await, None);
        assert!(found("session-two", 10_000).await.is_some());

        // Purging deletes what expired; ending deletes one.
        assert_eq!(
            store.purge_expired_auth(UnixMillis(10_000)).await.unwrap(),
            1
        );
        assert_eq!(
            store.purge_expired_auth(UnixMillis(10_000)).await.unwrap(),
            0
        );
        assert!(store.end_web_session(&second.digest).await.unwrap());
        assert!(!store.end_web_session(&second.digest).await.unwrap());
        assert_eq!(found("session-two", 10_000).await, None);
    }

    pub async fn api_tokens_are_listed_found_used_and_revoked_until_their_expiry(
        store: &dyn Store,
    ) {
        let old = api_token("tok_old", "jbt_old_secret", 1_000, 50_000);
        let new = api_token("tok_new", "jbt_new_secret", 2_000, 10_000);
        store.create_api_token(&new).await.unwrap();
        store.create_api_token(&old).await.unwrap();
        // An id or a value is stored once.
        for duplicate in [
            api_token("tok_old", "jbt_other_secret", 3_000, 50_000),
            api_token("tok_other", "jbt_new_secret", 3_000, 50_000),
        ] {
            let refused = store.create_api_token(&duplicate).await.unwrap_err();
            assert!(refused.to_string().contains("exists"), "{refused}");
        }
        // Oldest first.
        assert_eq!(
            store.api_tokens(UnixMillis(5_000)).await.unwrap(),
            vec![old.clone(), new.clone()]
        );
        assert_eq!(
            store
                .api_token_by_digest(&SecretDigest::of("jbt_new_secret"), UnixMillis(5_000))
                .await
                .unwrap(),
            Some(new.clone())
        );
        assert_eq!(
            store
                .api_token_by_digest(&SecretDigest::of("jbt_guess"), UnixMillis(5_000))
                .await
                .unwrap(),
            None
        );
        // Uses move `last_used_at` forward only.
        store
            .touch_api_token("tok_old", UnixMillis(6_000))
            .await
            .unwrap();
        store
            .touch_api_token("tok_old", UnixMillis(5_500))
            .await
            .unwrap();
        let used = store
            .api_token_by_digest(&old.digest, UnixMillis(6_000))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(used.last_used_at, Some(UnixMillis(6_000)));
        // An expired token neither lists nor authenticates.
        assert_eq!(
            store
                .api_token_by_digest(&new.digest, UnixMillis(10_000))
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store
                .api_tokens(UnixMillis(10_000))
                .await
                .unwrap()
                .iter()
                .map(|token| token.id.as_str())
                .collect::<Vec<_>>(),
            ["tok_old"]
        );
        assert_eq!(
            store.purge_expired_auth(UnixMillis(10_000)).await.unwrap(),
            1
        );
        // Revoked is gone at once.
        assert!(store.revoke_api_token("tok_old").await.unwrap());
        assert!(!store.revoke_api_token("tok_old").await.unwrap());
        assert_eq!(
            store
                .api_token_by_digest(&old.digest, UnixMillis(6_000))
                .await
                .unwrap(),
            None
        );
        assert!(store.api_tokens(UnixMillis(0)).await.unwrap().is_empty());
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
        assert_eq!(
            stored(store, before.id).await.in_doubt,
            Some(InDoubt {
                agent: agent("agent_1"),
                random_id: RandomId(424_242),
            }),
            "the interrupted attempt is in doubt after the restart"
        );
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

/// Runs each named conformance check on its own fresh store of every backend:
/// `sqlite_conformance`, `memory_conformance` and `postgres_conformance` hold one test per check
/// (each PostgreSQL test in a schema of its own, dropped when it ends). The restart pair
/// (`before_restart` and `after_restart`) is not listed: the memory store does not outlive a
/// reopen, and the others run them in `a_reopened_*_store_resumes_pending_messages_*`.
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

        mod postgres_conformance {
            $(
                #[tokio::test]
                async fn $check() {
                    let database = super::test_database::TestDatabase::create().await;
                    super::conformance::$check(&database.store).await;
                    database.close().await;
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
    a_message_is_processed_once_and_comes_back_with_every_field,
    vacancies_list_newest_first_filtered_by_status_channel_and_id,
    a_vacancy_page_defaults_to_50_rows_and_holds_at_most_500,
    a_vacancy_is_notified_once_per_channel_within_the_repost_window,
    concurrent_claims_of_one_vacancy_notify_once,
    a_conversation_opens_once_per_group_and_contact_and_keeps_its_agent,
    a_contacts_peer_is_remembered_once,
    concurrent_opens_of_one_conversation_store_one,
    conversations_are_found_by_contact_topic_and_agent,
    unknown_conversations_are_refused_naming_their_id,
    a_source_message_is_relayed_once_and_service_posts_always,
    own_posts_are_recognised_by_group_and_message_id,
    the_last_auto_response_to_a_contact_is_the_newest_over_every_channel,
    outbox_stats_count_by_kind_and_status_and_sends_per_agent_hour,
    agent_events_come_back_newest_first_since_an_instant,
    an_attempt_stays_in_doubt_until_telegram_refuses_it,
    ended_messages_are_listed_newest_first,
    a_vacancy_is_taken_in_with_its_claims_notifications_and_workflows_at_once,
    a_repost_claim_and_its_notification_go_together,
    concurrent_intakes_of_one_message_take_it_in_once,
    pauses_are_kept_until_resumed,
    learned_limits_are_replaced_and_restored,
    a_workflow_starts_once_per_key_and_ends_once,
    a_workflow_of_any_kind_is_stored,
    a_topic_creation_keeps_each_creators_first_random_id,
    a_delivered_post_is_recorded_once,
    web_sessions_are_found_by_digest_until_their_absolute_expiry,
    api_tokens_are_listed_found_used_and_revoked_until_their_expiry,
    a_session_lease_is_held_by_one_node_at_a_time_with_growing_tokens,
    concurrent_takes_of_one_lease_grant_it_once,
    leases_renewed_together_are_each_renewed_only_with_their_holder_and_token,
    nodes_are_listed_with_their_heartbeats_and_a_leaving_node_frees_its_leases,
    a_message_is_attempted_under_one_nodes_claim_and_its_agents_lease,
    a_message_another_node_claimed_is_not_ended_under_its_claim,
    concurrent_claims_of_one_message_give_it_to_one_node,
    a_workflow_is_claimed_by_one_live_node,
    a_claimed_workflow_is_handed_to_another_node,
    account_users_are_recorded_per_session,
);

/// The memory store stands in for SQLite and PostgreSQL in the engine's tests, which may match on
/// what a refusal says; so every refusal is compared word for word, not just by the substrings the conformance
/// checks look for.
#[tokio::test]
async fn every_store_refuses_in_the_same_words() {
    async fn refusals(store: &dyn Store) -> Vec<String> {
        use conformance::{agent, message};
        let agent_1 = agent("agent_1");
        let sent_message = conformance::sent_to(1);
        let at = UnixMillis(2_000);
        let pending = store.enqueue(message(None, 1_000)).await.unwrap().id();
        let sent = store.enqueue(message(None, 1_000)).await.unwrap().id();
        store
            .mark_sent(sent, &agent_1, sent_message, at)
            .await
            .unwrap();
        let expired = store.enqueue(message(None, 1_000)).await.unwrap().id();
        store
            .mark_ended(expired, &conformance::expired(), at)
            .await
            .unwrap();
        let missing = OutboxId(1_000);
        let mut refusals = Vec::new();
        let in_doubt = Holdup::InDoubt {
            agent: agent("agent_2"),
            error: TelegramError::Network {
                message: "reset".into(),
            },
        };
        for id in [pending, sent, expired, missing] {
            refusals.push(store.note_holdup(id, &in_doubt, at).await);
            if id == pending {
                continue;
            }
            refusals.push(
                store
                    .begin_attempt(id, &agent_1, RandomId(1), at)
                    .await
                    .map(|_| ()),
            );
            refusals.push(
                store
                    .note_holdup(id, &conformance::flood_wait("agent_1"), at)
                    .await,
            );
            refusals.push(store.mark_sent(id, &agent_1, sent_message, at).await);
            refusals.push(store.mark_ended(id, &conformance::expired(), at).await);
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
    assert_eq!(from_memory.len(), 16);
    assert_eq!(from_memory, from_sqlite);
    let postgres = test_database::TestDatabase::create().await;
    assert_eq!(refusals(&postgres.store).await, from_memory);
    postgres.close().await;
}

/// The same comparison for the conversation refusals.
#[tokio::test]
async fn every_store_refuses_conversation_changes_in_the_same_words() {
    async fn refusals(store: &dyn Store) -> Vec<String> {
        use conformance::{new_conversation, user};
        let (holder, _) = store
            .open_conversation(&new_conversation(5_000, 42, "agent_1"))
            .await
            .unwrap();
        let (other, _) = store
            .open_conversation(&new_conversation(5_000, 43, "agent_1"))
            .await
            .unwrap();
        store
            .set_conversation_topic(holder.id, Some(TopicId(17)))
            .await
            .unwrap();
        let missing = ConversationId(1_000);
        let relay = |conversation, outbox| RelayRecord {
            conversation,
            direction: RelayDirection::ContactToTopic,
            source: Some((user(42), 1)),
            outbox,
            at: UnixMillis(2_000),
        };
        let group = holder.group;
        [
            store
                .set_conversation_topic(other.id, Some(TopicId(17)))
                .await,
            store.set_conversation_topic(missing, None).await,
            store.touch_conversation(missing, UnixMillis(2_000)).await,
            store.record_relay(&relay(missing, None)).await.map(|_| ()),
            store
                .record_relay(&relay(holder.id, Some(OutboxId(1_000))))
                .await
                .map(|_| ()),
            store.record_own_post(group, 1, Some(missing)).await,
        ]
        .into_iter()
        .map(|refusal| refusal.unwrap_err().to_string())
        .collect()
    }
    let directory = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(directory.path()).await.unwrap();
    let from_sqlite = refusals(&sqlite).await;
    sqlite.close().await;
    let from_memory = refusals(&MemoryStore::new()).await;
    assert_eq!(from_memory, from_sqlite);
    let postgres = test_database::TestDatabase::create().await;
    assert_eq!(refusals(&postgres.store).await, from_memory);
    postgres.close().await;
    assert_eq!(
        from_memory[0],
        "could not set a conversation's topic: topic 17 of group -1000000005000 already belongs \
         to conversation #1"
    );
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

#[tokio::test]
async fn a_reconnected_postgres_store_resumes_pending_messages_with_their_random_ids() {
    let database = test_database::TestDatabase::create().await;
    let before = conformance::before_restart(&database.store).await;
    database.store.close().await;

    let reconnected = database.connect_again().await;
    conformance::after_restart(&reconnected, before).await;
    reconnected.close().await;
    database.close().await;
}

#[tokio::test]
async fn postgres_store_passes_the_conformance_checks_in_its_own_schema() {
    let database = test_database::TestDatabase::create().await;
    conformance::check_store(&database.store, PostgresStore::latest_schema_version()).await;
    assert_eq!(database.store.health().await.unwrap().backend, "postgres");
    // Its tables are in its schema, not in `public`.
    let mut connection = database.raw_connection().await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::TEXT FROM information_schema.tables WHERE table_schema = $1 \
         ORDER BY table_name",
    )
    .bind(database.schema())
    .fetch_all(&mut connection)
    .await
    .unwrap();
    for table in [
        "_sqlx_migrations",
        "meta",
        "outbox",
        "workflows",
        "knowledge_chunks",
    ] {
        assert!(tables.iter().any(|t| t == table), "{table}: {tables:?}");
    }
    database.close().await;
}

#[tokio::test]
async fn reconnecting_to_a_postgres_schema_keeps_its_data_and_does_not_migrate_twice() {
    let database = test_database::TestDatabase::create().await;
    let session = conformance::web_session("session-kept", 1_000, 100_000);
    database.store.create_web_session(&session).await.unwrap();
    database.store.close().await;

    let reconnected = database.connect_again().await;
    conformance::check_store(&reconnected, PostgresStore::latest_schema_version()).await;
    assert_eq!(
        reconnected
            .web_session(&session.digest, UnixMillis(2_000))
            .await
            .unwrap(),
        Some(session)
    );
    let mut connection = database.raw_connection().await;
    let applications: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM {}.meta WHERE key = 'application'",
        database.schema()
    ))
    .fetch_one(&mut connection)
    .await
    .unwrap();
    assert_eq!(applications, 1);
    reconnected.close().await;
    database.close().await;
}

/// The live view of a cluster (#16 item 4): a node hears the other nodes' display events of
/// its own schema, in order; never its own, never another schema's (another cluster on the
/// same database), never one too large to announce.
#[tokio::test]
async fn each_node_hears_the_other_nodes_live_events_of_its_schema_only() {
    use jobbot_core::cluster::NodeId;
    use jobbot_store::{ClusterEvent, ClusterFeed};
    let database = test_database::TestDatabase::create().await;
    let other_cluster = test_database::TestDatabase::create().await;
    let feed = async |store: &PostgresStore, node: &str| {
        ClusterFeed::new(store, NodeId::parse(node).unwrap())
            .await
            .unwrap()
    };
    let (a, b) = (
        feed(&database.store, "node-a").await,
        feed(&database.store, "node-b").await,
    );
    let stranger = feed(&other_cluster.store, "node-c").await;
    let (mut heard_by_a, mut heard_by_b) = (a.subscribe(), b.subscribe());
    let listeners = [a.clone(), b.clone(), stranger.clone()]
        .map(|feed| tokio::spawn(feed.listen(std::future::pending())));
    a.listening().await;
    b.listening().await;
    let next = async |heard: &mut tokio::sync::broadcast::Receiver<ClusterEvent>| {
        tokio::time::timeout(std::time::Duration::from_secs(30), heard.recv())
            .await
            .expect("an event is heard")
            .unwrap()
    };
    let event = |node: &str, event: serde_json::Value| ClusterEvent {
        node: node.to_owned(),
        event,
    };
    let from_stranger = serde_json::json!({"type": "agent_state", "session": "elsewhere"});
    let from_a = serde_json::json!({"type": "agent_state", "session": "agent_1", "state": "ready"});
    let from_b = serde_json::json!({"type": "flood_wait", "session": "agent_2", "seconds": 30});
    assert!(stranger.publish(from_stranger).await.unwrap());
    assert!(a.publish(from_a.clone()).await.unwrap());
    assert!(b.publish(from_b.clone()).await.unwrap());
    assert_eq!(next(&mut heard_by_b).await, event("node-a", from_a));
    assert_eq!(next(&mut heard_by_a).await, event("node-b", from_b));
    // Too large for a notification: not sent (the page's next read of the API shows it).
    let large = serde_json::json!({"type": "outbox_finished", "channel_id": "x".repeat(8_000)});
    assert!(!a.publish(large).await.unwrap());
    let marker = serde_json::json!({"type": "peer_flood", "session": "agent_1"});
    assert!(a.publish(marker.clone()).await.unwrap());
    assert_eq!(next(&mut heard_by_b).await, event("node-a", marker));
    assert!(heard_by_a.try_recv().is_err(), "a node never hears its own");
    for listener in listeners {
        listener.abort();
    }
    database.close().await;
    other_cluster.close().await;
}

#[tokio::test]
async fn a_postgres_database_that_is_not_jobbots_fails_the_health_check_naming_it() {
    let database = test_database::TestDatabase::create().await;
    let mut connection = database.raw_connection().await;
    sqlx::query(&format!("DELETE FROM {}.meta", database.schema()))
        .execute(&mut connection)
        .await
        .unwrap();
    let error = database.store.health().await.unwrap_err().to_string();
    assert!(error.contains("is not a jobbot database"), "{error}");
    assert!(error.contains(database.schema()), "{error}");
    database.close().await;
}

/// Bad input names what is wrong, and a password in the URL never appears in an error.
#[tokio::test]
async fn postgres_connection_errors_name_the_problem_and_never_the_password() {
    let check = async |result: Result<PostgresStore, jobbot_store::DatabaseError>,
                       expected: &str| {
        let error = result.expect_err(expected).to_string();
        assert!(error.contains(expected), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    };
    check(
        PostgresStore::connect("mysql://root:hunter2@localhost/x").await,
        "scheme \"mysql\" is not PostgreSQL's",
    )
    .await;
    check(
        PostgresStore::connect("postgres://jobbot:hunter2@127.0.0.1:port/x").await,
        "not a valid PostgreSQL URL",
    )
    .await;
    check(
        PostgresStore::connect_to_schema(&test_database::url(), "Robert'); DROP TABLE x").await,
        "is not a plain identifier",
    )
    .await;
    // Nothing listens on port 1.
    check(
        PostgresStore::connect("postgres://jobbot:hunter2@127.0.0.1:1/jobbot").await,
        "could not connect to the database postgres://jobbot@127.0.0.1:1/jobbot",
    )
    .await;
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

/// A database written before the typed outbox (migrations up to 0003) upgrades without losing a
/// doubt: pending messages whose last attempt was not refused stay bound to their agent, refused
/// ones are free, ended ones keep their status, and the rows that point at the outbox
/// (attempts, relays) survive the table's rebuild.
#[tokio::test]
async fn an_old_database_keeps_its_messages_in_doubt_across_the_upgrade() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join(SqliteStore::FILE_NAME);
    {
        let mut old = sqlx::migrate!("migrations/sqlite");
        old.migrations = old
            .migrations
            .iter()
            .filter(|migration| migration.version <= 3)
            .cloned()
            .collect::<Vec<_>>()
            .into();
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .foreign_keys(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        old.run(&pool).await.unwrap();
        let insert = |id: i64,
                      status: &'static str,
                      attempts: i64,
                      last_agent: Option<&'static str>,
                      reason: Option<&'static str>| {
            let sent = status == "sent";
            sqlx::query(
                "INSERT INTO outbox (id, channel_id, kind, sender, recipient, content, \
                     first_contact, created_at, expires_at, status, attempts, last_agent, \
                     sent_agent, sent_chat, sent_message_id, sent_at, reason, updated_at) \
                 VALUES (?, 'channel_1', 'auto_response', '{\"type\":\"main_account\"}', \
                     '{\"type\":\"chat\",\"chat\":-1001234}', '{\"text\":\"hi\",\"entities\":[],\"link_preview\":false}', \
                     0, 1, 100, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
            )
            .bind(id)
            .bind(status)
            .bind(attempts)
            .bind(last_agent)
            .bind(sent.then_some("agent_1"))
            .bind(sent.then_some(-1_001_234_i64))
            .bind(sent.then_some(5_i64))
            .bind(sent.then_some(2_i64))
            .bind(reason)
        };
        for query in [
            // Interrupted mid-send: no reason at all.
            insert(1, "pending", 1, Some("agent_1"), None),
            // The connection dropped: the old "in doubt" text.
            insert(
                2,
                "pending",
                1,
                Some("agent_1"),
                Some("in doubt on agent_1: network error"),
            ),
            // Refused by agent_1: free for other agents.
            insert(
                3,
                "pending",
                1,
                Some("agent_1"),
                Some("not delivered by agent_1: flood wait of 30 s"),
            ),
            // Refused by agent_2 earlier, then a note overwrote the reason.
            insert(
                4,
                "pending",
                2,
                Some("agent_1"),
                Some("waiting: every agent is connecting"),
            ),
            insert(5, "pending", 0, None, None),
            insert(
                6,
                "failed",
                1,
                Some("agent_1"),
                Some("the user's privacy settings refuse this message"),
            ),
            insert(7, "sent", 1, Some("agent_1"), None),
        ] {
            query.execute(&pool).await.unwrap();
        }
        for (id, random_id) in [(1, 11), (2, 22), (3, 33), (4, 44), (6, 66), (7, 77)] {
            sqlx::query(
                "INSERT INTO outbox_attempts (outbox_id, agent, random_id, first_attempt_at) \
                 VALUES (?, 'agent_1', ?, 1)",
            )
            .bind(id)
            .bind(random_id)
            .execute(&pool)
            .await
            .unwrap();
        }
        sqlx::query(
            "INSERT INTO conversations (id, channel_id, group_id, contact, contact_name, agent, \
                 created_at, last_message_at) VALUES (1, 'channel_1', -1001234, 42, 'A', 'agent_1', 1, 1)",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO relays (conversation_id, direction, outbox_id, at) VALUES (1, 'service', 7, 1)",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }

    let store = SqliteStore::open(directory.path()).await.unwrap();
    let in_doubt = |random_id: i64| {
        Some(InDoubt {
            agent: SessionName::parse("agent_1").unwrap(),
            random_id: RandomId(random_id),
        })
    };
    for (id, expected) in [
        (1, in_doubt(11)),
        (2, in_doubt(22)),
        (3, None),
        (4, in_doubt(44)),
        (5, None),
    ] {
        let message = store.outbox_message(OutboxId(id)).await.unwrap().unwrap();
        assert_eq!(message.in_doubt, expected, "message {id}");
        assert_eq!(message.status, OutboxStatus::Pending);
    }
    let failed = store.outbox_message(OutboxId(6)).await.unwrap().unwrap();
    assert_eq!(failed.status, OutboxStatus::Failed);
    assert_eq!(failed.in_doubt, None);
    let sent = store.outbox_message(OutboxId(7)).await.unwrap().unwrap();
    assert_eq!(
        sent.delivery(),
        Some(Delivery::Sent {
            agent: SessionName::parse("agent_1").unwrap(),
            message: Some(SentMessage {
                chat: ChatId::from_bot_api(-1_001_234).unwrap(),
                message_id: 5
            })
        })
    );
    // The attempts survived: a retry on agent_1 repeats its random id.
    assert_eq!(
        store
            .begin_attempt(
                OutboxId(1),
                &SessionName::parse("agent_1").unwrap(),
                RandomId(999),
                UnixMillis(5)
            )
            .await
            .unwrap(),
        RandomId(11)
    );
    // The relay survived, and still names its outbox message.
    let relay = RelayRecord {
        conversation: ConversationId(1),
        direction: RelayDirection::Service,
        source: None,
        outbox: Some(OutboxId(7)),
        at: UnixMillis(9),
    };
    assert!(!store.record_relay(&relay).await.unwrap());
    // New ids continue after the old ones.
    let next = store
        .enqueue(conformance::message(None, 10))
        .await
        .unwrap()
        .id();
    assert_eq!(next, OutboxId(8));
    store.close().await;
}

/// Web sessions and API tokens outlive a restart: a browser stays logged in and a script's token
/// keeps working after `jobbot run` restarts.
#[tokio::test]
async fn web_sessions_and_api_tokens_survive_a_reopen() {
    let directory = tempfile::tempdir().unwrap();
    let session = conformance::web_session("session-kept", 1_000, 100_000);
    let token = conformance::api_token("tok_kept", "jbt_kept_secret", 1_000, 100_000);
    let first = SqliteStore::open(directory.path()).await.unwrap();
    first.create_web_session(&session).await.unwrap();
    first.create_api_token(&token).await.unwrap();
    first.close().await;
    let reopened = SqliteStore::open(directory.path()).await.unwrap();
    assert_eq!(
        reopened
            .web_session(&session.digest, UnixMillis(2_000))
            .await
            .unwrap(),
        Some(session)
    );
    assert_eq!(
        reopened
            .api_token_by_digest(&token.digest, UnixMillis(2_000))
            .await
            .unwrap(),
        Some(token)
    );
    reopened.close().await;
}

// ----- The knowledge index (`KnowledgeIndex`, #17 item 4) -----

mod knowledge {
    use jobbot_core::ai::knowledge::{
        KnowledgeIndex, chunks_of, digest, query_terms, search_terms,
    };
    use jobbot_core::store::UnixMillis;
    use jobbot_store::{MemoryStore, SqliteStore};

    const PRICES: &str = "Стоимость ведения рекламы — от 50 000 ₽ в месяц.\n\n\
        Запуск первой кампании занимает неделю.";
    const CASES: &str = "Кейс: интернет-магазин одежды, цена заявки снизилась вдвое.\n\n\
        Кейс: школа английского, 300 заявок в месяц.";

    async fn index(store: &dyn KnowledgeIndex, channel: &str, source: &str, text: &str) {
        store
            .replace_knowledge(
                channel,
                source,
                &digest(text),
                &chunks_of(text),
                UnixMillis(1),
            )
            .await
            .unwrap();
    }

    async fn search(store: &dyn KnowledgeIndex, channel: &str, query: &str) -> Vec<String> {
        store
            .search_knowledge(channel, &query_terms(query), 5)
            .await
            .unwrap()
            .into_iter()
            .map(|hit| format!("{}#{}", hit.source, hit.position))
            .collect()
    }

    /// Small chunks, so each paragraph is its own.
    fn paragraphs(text: &str) -> Vec<jobbot_core::ai::knowledge::KnowledgeChunk> {
        jobbot_core::ai::knowledge::chunk_text(text, 80)
            .into_iter()
            .enumerate()
            .map(
                |(position, text)| jobbot_core::ai::knowledge::KnowledgeChunk {
                    position: position as u32,
                    terms: search_terms(&text).join(" "),
                    text,
                },
            )
            .collect()
    }

    pub async fn checks(store: &dyn KnowledgeIndex) {
        // Word forms meet: "цены"/"стоимость" in a question find the chunk that says "цена".
        store
            .replace_knowledge(
                "c1",
                "prices.md",
                &digest(PRICES),
                &paragraphs(PRICES),
                UnixMillis(1),
            )
            .await
            .unwrap();
        store
            .replace_knowledge(
                "c1",
                "cases.md",
                &digest(CASES),
                &paragraphs(CASES),
                UnixMillis(2),
            )
            .await
            .unwrap();
        assert_eq!(
            search(store, "c1", "Какая стоимость рекламы?").await[0],
            "prices.md#0"
        );
        assert_eq!(
            search(store, "c1", "сколько недель на запуск").await,
            ["prices.md#1"]
        );
        // The chunk sharing more terms ranks first.
        let hits = search(store, "c1", "кейсы заявок школы английского").await;
        assert_eq!(hits[0], "cases.md#1", "{hits:?}");
        assert!(hits.contains(&"cases.md#0".to_owned()), "{hits:?}");

        // Channels do not see each other's knowledge.
        index(store, "c2", "other.md", "Стоимость услуг по запросу.").await;
        assert!(search(store, "c2", "рекламы кейс").await.is_empty());
        assert_eq!(search(store, "c2", "стоимость").await, ["other.md#0"]);

        // Nothing to search by, nothing found; query syntax is never interpreted.
        assert!(search(store, "c1", "и в на").await.is_empty());
        for hostile in ["\"", "*", "OR", "NEAR(a b)", "-x", "terms:цен", "a\"b"] {
            store
                .search_knowledge("c1", &[hostile.to_owned()], 5)
                .await
                .unwrap_or_else(|error| panic!("{hostile}: {error}"));
        }
        let limited = store
            .search_knowledge("c1", &query_terms("кейс заявк реклам запуск"), 2)
            .await
            .unwrap();
        assert_eq!(limited.len(), 2);
        assert!(limited.iter().all(|hit| !hit.text.is_empty()));

        // Replacing a file replaces its chunks; the listing says what is indexed.
        index(store, "c1", "prices.md", "Цены изменились: от 70 000 ₽.").await;
        assert!(search(store, "c1", "стоимость запуск").await.is_empty());
        assert_eq!(
            search(store, "c1", "цены изменились").await[0],
            "prices.md#0"
        );
        let sources = store.knowledge_sources("c1").await.unwrap();
        let names: Vec<(&str, u32)> = sources
            .iter()
            .map(|source| (source.source.as_str(), source.chunks))
            .collect();
        assert_eq!(names, [("cases.md", 2), ("prices.md", 1)]);
        assert_eq!(sources[1].digest, digest("Цены изменились: от 70 000 ₽."));

        // A forgotten file is gone from search and listing.
        assert!(store.remove_knowledge("c1", "prices.md").await.unwrap());
        assert!(!store.remove_knowledge("c1", "prices.md").await.unwrap());
        assert!(search(store, "c1", "изменились").await.is_empty());
        assert_eq!(store.knowledge_sources("c1").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn sqlite_knowledge_index_passes_the_checks_and_survives_a_reopen() {
        let directory = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(directory.path()).await.unwrap();
        checks(&store).await;
        store.close().await;
        let reopened = SqliteStore::open(directory.path()).await.unwrap();
        assert_eq!(search(&reopened, "c1", "школа").await, ["cases.md#1"]);
        reopened.close().await;
    }

    #[tokio::test]
    async fn postgres_knowledge_index_passes_the_checks_and_survives_a_reconnect() {
        let database = super::test_database::TestDatabase::create().await;
        checks(&database.store).await;
        database.store.close().await;
        let reconnected = database.connect_again().await;
        assert_eq!(search(&reconnected, "c1", "школа").await, ["cases.md#1"]);
        reconnected.close().await;
        database.close().await;
    }

    #[tokio::test]
    async fn memory_knowledge_index_passes_the_checks() {
        checks(&MemoryStore::new()).await;
    }
}

/// A fresh PostgreSQL schema per test, so the tests run in parallel on one database and never see
/// each other's data. The database is `JOBBOT_TEST_DATABASE_URL`, by default the local server
/// CI runs (`.ci/run` checks it answers). Without it these tests fail, saying so: they never skip.
mod test_database {
    use std::sync::atomic::{AtomicU32, Ordering};

    use jobbot_store::PostgresStore;
    use sqlx::Connection;

    pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

    pub fn url() -> String {
        std::env::var("JOBBOT_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
    }

    pub struct TestDatabase {
        pub store: PostgresStore,
        url: String,
        schema: String,
    }

    impl TestDatabase {
        /// Creates an empty schema (dropping a stale one of the same name) and a store in it.
        pub async fn create() -> Self {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let url = url();
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos();
            let schema = format!(
                "jobbot_test_{}_{}_{nanos}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            let mut connection = connect(&url).await;
            sqlx::raw_sql(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
            ))
            .execute(&mut connection)
            .await
            .unwrap();
            connection.close().await.unwrap();
            // The store's connections carry the schema's name, so the cleanup can end them.
            let separator = if url.contains('?') { '&' } else { '?' };
            let url = format!("{url}{separator}application_name={schema}");
            let store = PostgresStore::connect_to_schema(&url, &schema)
                .await
                .unwrap_or_else(|error| panic!("{}", needs_postgres(&url, &error)));
            Self { store, url, schema }
        }

        pub fn schema(&self) -> &str {
            &self.schema
        }

        /// A second store over the same schema, as after a restart.
        pub async fn connect_again(&self) -> PostgresStore {
            PostgresStore::connect_to_schema(&self.url, &self.schema)
                .await
                .unwrap()
        }

        /// A connection outside the store, to look at or damage its tables.
        pub async fn raw_connection(&self) -> sqlx::PgConnection {
            connect(&self.url).await
        }

        /// Closes the store's connections; dropping then removes the schema.
        pub async fn close(self) {
            self.store.close().await;
        }
    }

    impl Drop for TestDatabase {
        /// Drops the schema, also when the test failed. `Drop` cannot await, so a thread of its
        /// own runs the statements on a runtime of its own. The test's runtime is blocked
        /// meanwhile, so the store's connections cannot finish what they were doing (a failed
        /// test may leave one inside a transaction that holds locks): they are ended first.
        fn drop(&mut self) {
            let (url, schema) = (self.url.clone(), self.schema.clone());
            let dropped = std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(async {
                        let mut connection = connect(&url).await;
                        sqlx::raw_sql(&format!(
                            "SET lock_timeout = '20s'; \
                             SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                             WHERE application_name = '{schema}' AND pid <> pg_backend_pid(); \
                             DROP SCHEMA IF EXISTS {schema} CASCADE"
                        ))
                        .execute(&mut connection)
                        .await
                        .map(drop)
                    })
            })
            .join();
            if !std::thread::panicking() {
                dropped.unwrap().unwrap();
            }
        }
    }

    async fn connect(url: &str) -> sqlx::PgConnection {
        sqlx::PgConnection::connect(url)
            .await
            .unwrap_or_else(|error| panic!("{}", needs_postgres(url, &error)))
    }

    fn needs_postgres(url: &str, error: &dyn std::fmt::Display) -> String {
        format!(
            "these tests need PostgreSQL at {url} (JOBBOT_TEST_DATABASE_URL, default \
             {DEFAULT_URL}; trust authentication, or a password in the URL): {error}"
        )
    }
}

// ----- Conversations' AI records (`AiStore`, #17 items 3, 1) -----

mod ai_records {
    use jobbot_core::ai::{AiMode, AiPolicy, AiRecord, AiSettings, AiStore, TurnResult};
    use jobbot_core::store::{ConversationId, UnixMillis};
    use jobbot_store::{MemoryStore, SqliteStore};

    const AT: UnixMillis = UnixMillis(1_750_000_000_000);

    fn record_with_a_suggestion() -> AiRecord {
        let policy = AiPolicy::from_settings(&AiSettings {
            mode: AiMode::Suggest,
            ..AiSettings::default()
        });
        let mut record = AiRecord::default();
        record.take_contact_message(7, "Здравствуйте", &policy, AT);
        let turn = record.state.in_flight.expect("a turn started").number;
        record.decide(
            turn,
            TurnResult {
                analysis: None,
                reply: Some("Добрый день"),
                prompt_tokens: 100,
                completion_tokens: 20,
                failed_calls: 1,
            },
            &policy,
            AT,
        );
        record
    }

    pub async fn checks(store: &dyn AiStore) {
        let (one, two) = (ConversationId(1), ConversationId(2));
        assert_eq!(store.ai_record(one).await.unwrap(), None);
        let record = record_with_a_suggestion();
        // The first write expects no record; a second first write loses.
        assert_eq!(
            store
                .save_ai_record(one, "c1", 0, &record, AT)
                .await
                .unwrap(),
            Some(1)
        );
        assert_eq!(
            store
                .save_ai_record(one, "c1", 0, &AiRecord::default(), AT)
                .await
                .unwrap(),
            None
        );
        let stored = store.ai_record(one).await.unwrap().unwrap();
        assert_eq!((stored.version, &stored.record), (1, &record));
        assert_eq!(stored.channel_id, "c1");
        // A write from a stale version is refused and changes nothing.
        let mut changed = record.clone();
        changed.operator_wrote("Я сам", AT);
        assert_eq!(
            store
                .save_ai_record(one, "c1", 1, &changed, AT)
                .await
                .unwrap(),
            Some(2)
        );
        assert_eq!(
            store
                .save_ai_record(one, "c1", 1, &record, AT)
                .await
                .unwrap(),
            None
        );
        assert_eq!(store.ai_record(one).await.unwrap().unwrap().record, changed);
        store
            .save_ai_record(two, "c1", 0, &record, AT)
            .await
            .unwrap();
        store
            .save_ai_record(ConversationId(3), "c2", 0, &AiRecord::default(), AT)
            .await
            .unwrap();
        let stats = store.ai_stats().await.unwrap();
        assert_eq!(stats.len(), 2);
        assert_eq!(
            (
                stats[0].channel_id.as_str(),
                stats[0].conversations,
                stats[0].counters.suggestions,
                stats[0].counters.prompt_tokens,
                stats[0].counters.completion_tokens,
                stats[0].counters.errors,
                stats[0].counters.replies_sent
            ),
            ("c1", 2, 2, 200, 40, 2, 0)
        );
        assert_eq!(
            (stats[1].channel_id.as_str(), stats[1].conversations),
            ("c2", 1)
        );

        // The latest first: by the time of the last write, then the higher id; per channel or
        // all; at most the limit.
        let later = UnixMillis(AT.0 + 60_000);
        store
            .save_ai_record(two, "c1", 1, &record, later)
            .await
            .unwrap();
        let ids = |records: Vec<jobbot_core::ai::StoredAi>| {
            records
                .iter()
                .map(|stored| stored.conversation.0)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(store.recent_ai_records(None, 10).await.unwrap()),
            [2, 3, 1]
        );
        assert_eq!(
            ids(store.recent_ai_records(Some("c1"), 10).await.unwrap()),
            [2, 1]
        );
        assert_eq!(ids(store.recent_ai_records(None, 1).await.unwrap()), [2]);
        assert!(
            store
                .recent_ai_records(Some("nobody"), 10)
                .await
                .unwrap()
                .is_empty()
        );
        let latest = &store.recent_ai_records(None, 1).await.unwrap()[0];
        assert_eq!(
            (latest.version, latest.updated_at, &latest.record),
            (2, later, &record)
        );
    }

    /// An AI turn is a stored workflow like the others (a CHECK on the kind once refused it).
    pub async fn ai_turns_are_stored_workflows(store: &dyn jobbot_core::store::Store) {
        use jobbot_core::store::NewWorkflow;
        use jobbot_core::workflow::{AiTurn, Workflow};
        let workflow = NewWorkflow {
            key: AiTurn::key(ConversationId(1), 1),
            state: Workflow::AiTurn(AiTurn::new(ConversationId(1), 1)),
            created_at: AT,
        };
        let (id, _) = store.start_workflow(&workflow).await.unwrap();
        let (again, _) = store.start_workflow(&workflow).await.unwrap();
        assert_eq!(id, again);
        let active = store.active_workflows().await.unwrap();
        assert!(
            active
                .iter()
                .any(|record| record.id == id && record.state == workflow.state)
        );
    }

    #[tokio::test]
    async fn sqlite_ai_records_pass_the_checks_and_survive_a_reopen() {
        let directory = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(directory.path()).await.unwrap();
        checks(&store).await;
        ai_turns_are_stored_workflows(&store).await;
        store.close().await;
        let reopened = SqliteStore::open(directory.path()).await.unwrap();
        let stored = reopened
            .ai_record(ConversationId(1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.version, 2);
        assert!(stored.record.state.in_flight.is_none());
        reopened.close().await;
    }

    #[tokio::test]
    async fn postgres_ai_records_pass_the_checks_and_survive_a_reconnect() {
        let database = super::test_database::TestDatabase::create().await;
        checks(&database.store).await;
        ai_turns_are_stored_workflows(&database.store).await;
        database.store.close().await;
        let reconnected = database.connect_again().await;
        let stored = reconnected
            .ai_record(ConversationId(1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.version, 2);
        reconnected.close().await;
        database.close().await;
    }

    #[tokio::test]
    async fn memory_ai_records_pass_the_checks() {
        checks(&MemoryStore::new()).await;
        ai_turns_are_stored_workflows(&MemoryStore::new()).await;
    }
}
