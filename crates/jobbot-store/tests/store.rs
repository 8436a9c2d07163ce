//! Integration tests of jobbot-store: the configuration file's owner and the operational store.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jobbot_core::config::{self, ConfigDocument, ConfigProblems, Revision};
use jobbot_store::{ConfigStore, SqliteStore, Store, StoreError, migrate_file};
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

/// The checks every [`Store`] backend must pass. The PostgreSQL backend will run these too.
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
