//! The single owner of the configuration document: `configs/channels_config.json`, or with a
//! database (`--database-url`) the `config_document` row shared by every node.
//!
//! The original system lost configuration three ways, and each step here exists to stop one:
//! - a syntax error made it load an empty channel list, and the next save wrote that empty list
//!   over the file. Here a file that does not load is an error at startup, and at runtime it is
//!   reported while the last good snapshot stays live; this module never writes over a file it
//!   could not load.
//! - several writers (web handlers, the creation wizard) each loaded, changed and saved the file,
//!   so the last one silently undid the others. Here every write states the [`Revision`] it was
//!   based on and is refused with [`StoreError::Conflict`] if the file has changed since.
//! - a crash in the middle of a save could leave a truncated file. Here a write goes to a
//!   temporary file that is flushed to disk and then renamed over the old one, so the file always
//!   holds either the old or the new configuration, whole.
//!
//! Invariant: every [`Snapshot`] published was produced by [`jobbot_core::config::load`] from
//! exactly the bytes stored at its revision; what subscribers run on is always what the file (or
//! the database) says.
//!
//! The revision check, validation, publication and reload logic is one, here; the two places the
//! bytes can live are a [`Backend`] each, which only reads, writes under its lock and watches. In
//! a database the write lock is PostgreSQL's (an advisory lock for the transaction), so writers on
//! different nodes serialise like writers in one process, and a committed write is announced to
//! every node with `NOTIFY` (see `postgres_documents.rs`).

use std::future::Future;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jobbot_core::config::{self, Config, ConfigDocument, ConfigProblem, ConfigProblems, Revision};
use notify::{EventKind, RecursiveMode, Watcher};

use crate::postgres_documents::{ConfigDocumentTable, LockedConfigDocument};
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// How long the file must be quiet before a change on disk is reloaded. Editors and the original
/// system write a file in several steps (truncate, write, close; or write a temporary file and
/// rename it); waiting for the burst to end avoids loading a half-written file and reporting a
/// spurious error.
const RELOAD_DEBOUNCE: Duration = Duration::from_millis(200);

/// A loaded, validated configuration at one revision. Shared read-only between subscribers.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The revision of the file's bytes this snapshot was loaded from; a writer passes it back to
    /// [`ConfigStore::update`].
    pub revision: Revision,
    /// The file model, with legacy keys migrated in memory (what a write starts from).
    pub document: ConfigDocument,
    /// The validated, typed view the engine runs on.
    pub config: Config,
    /// What migration changed in memory; non-empty when the file on disk still has the old
    /// format (the next write, or `jobbot config migrate`, brings the file up to date).
    pub pending_migrations: Vec<ConfigProblem>,
}

impl Snapshot {
    /// The snapshot of a configuration file that does not exist yet: no channels.
    pub fn empty() -> Self {
        Self {
            revision: Revision::empty(),
            document: ConfigDocument::default(),
            config: Config::default(),
            pending_migrations: Vec::new(),
        }
    }
}

/// Why the configuration could not be read or written. Every variant that concerns the file names
/// it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file is not at the revision the writer read: someone else saved, or it was edited by
    /// hand. Nothing was written; reload the snapshot, reapply the change, and try again.
    #[error(
        "the configuration has changed since it was read (it is now at revision {current}); nothing was written"
    )]
    Conflict { current: Revision },
    /// The edited configuration does not load; nothing was written.
    #[error("the edited configuration is not valid; nothing was written:\n{0}")]
    Invalid(ConfigProblems),
    /// The file on disk does not load (at startup, on `migrate`, or because it was edited by hand
    /// since the last good snapshot). It was left as it is.
    #[error("{path} does not load; it was left as it is:\n{problems}")]
    FileInvalid {
        path: PathBuf,
        problems: ConfigProblems,
    },
    #[error("could not read or write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The document stored in the database does not load (written there by hand, or by another
    /// version). It was left as it is.
    #[error("the configuration in {database} does not load; it was left as it is:\n{problems}")]
    StoredInvalid {
        database: String,
        problems: ConfigProblems,
    },
    /// The database did not answer or refused; the message names the database, never its
    /// password.
    #[error("could not read or write the configuration in {database}: {source}")]
    Database {
        database: String,
        #[source]
        source: sqlx::Error,
    },
    /// The directory of the file could not be watched for changes.
    #[error("could not watch {path} for changes: {source}")]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
}

impl StoreError {
    fn io(path: &Path, source: io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// The single owner of the configuration file: loads it, hands out snapshots, serialises writes
/// with a revision check, and (with [`ConfigStore::watch`]) reloads hand edits.
///
/// Cheap to clone; clones share the same state, so there is still one owner.
#[derive(Debug, Clone)]
pub struct ConfigStore {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    backend: Backend,
    /// Held for the whole of every read-compare-write and every reload, so that a write and a
    /// reload never interleave and two writers never both pass the revision check.
    write_lock: Mutex<()>,
    snapshots: watch::Sender<Arc<Snapshot>>,
    /// The problems of the file on disk when it does not load; `None` when the file on disk is
    /// the live snapshot.
    reload_problems: watch::Sender<Option<ConfigProblems>>,
}

impl ConfigStore {
    /// Loads the file. A missing file is an empty configuration at [`Revision::empty`]; a file
    /// that does not load is [`StoreError::FileInvalid`] with every problem, and is left as it is
    /// (the caller decides whether to stop; this store never overwrites it).
    pub async fn open(path: impl Into<PathBuf>) -> Result<Self, StoreError> {
        Self::open_backend(Backend::File(path.into())).await
    }

    /// The configuration document of the database `store` is in (the same schema), shared by
    /// every node on it. An absent document is an empty configuration, as for a file; one that
    /// does not load is [`StoreError::StoredInvalid`].
    pub async fn open_in_database(store: &crate::PostgresStore) -> Result<Self, StoreError> {
        Self::open_backend(Backend::Database(ConfigDocumentTable::new(store))).await
    }

    async fn open_backend(backend: Backend) -> Result<Self, StoreError> {
        let snapshot = match backend.read().await? {
            None => Snapshot::empty(),
            Some(bytes) => load_bytes(&bytes).map_err(|problems| backend.invalid(problems))?,
        };
        let (snapshots, _) = watch::channel(Arc::new(snapshot));
        let (reload_problems, _) = watch::channel(None);
        Ok(Self {
            shared: Arc::new(Shared {
                backend,
                write_lock: Mutex::new(()),
                snapshots,
                reload_problems,
            }),
        })
    }

    /// The file, for a store on a file; `None` for one in a database.
    pub fn path(&self) -> Option<&Path> {
        match &self.shared.backend {
            Backend::File(path) => Some(path),
            Backend::Database(_) => None,
        }
    }

    /// Where the document lives, for messages: the file's path, or the database (no password).
    pub fn location(&self) -> String {
        self.shared.backend.describe()
    }

    /// The live configuration.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.snapshots.borrow().clone()
    }

    /// A receiver that sees every new snapshot, whole; a subscriber never sees half of a change.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.shared.snapshots.subscribe()
    }

    /// Why the file on disk is not the live configuration, if it is not (a hand edit that does not
    /// load, or a removed file).
    pub fn last_error(&self) -> Option<ConfigProblems> {
        self.shared.reload_problems.borrow().clone()
    }

    /// A receiver of [`ConfigStore::last_error`], for a health page or a log.
    pub fn subscribe_errors(&self) -> watch::Receiver<Option<ConfigProblems>> {
        self.shared.reload_problems.subscribe()
    }

    /// Applies `edit` to the configuration at revision `expected`, validates the result and writes
    /// it atomically; returns the new revision.
    ///
    /// Refused, with nothing written, when the file is not at `expected`
    /// ([`StoreError::Conflict`]), when the edit fails (its own error), or when the result does not
    /// load ([`StoreError::Invalid`]). A caller's error type only needs `From<StoreError>`;
    /// `StoreError` itself works.
    pub async fn update<E>(
        &self,
        expected: &Revision,
        edit: impl FnOnce(&mut ConfigDocument) -> Result<(), E>,
    ) -> Result<Revision, E>
    where
        E: From<StoreError>,
    {
        self.write(Some(expected), edit).await
    }

    /// Applies `edit` to the configuration as it is now, whatever its revision: the read, the
    /// edit and the write happen under the store's write lock, so two concurrent changes both
    /// land (no lost update). For changes that stand on their own, like adding or removing one
    /// agent; a change computed from what a client read earlier must use [`ConfigStore::update`].
    ///
    /// A file edited by hand since the last snapshot is loaded first and the edit applies to it;
    /// a file that does not load is refused ([`StoreError::FileInvalid`]), never written over.
    pub async fn modify<E>(
        &self,
        edit: impl FnOnce(&mut ConfigDocument) -> Result<(), E>,
    ) -> Result<Revision, E>
    where
        E: From<StoreError>,
    {
        self.write(None, edit).await
    }

    async fn write<E>(
        &self,
        expected: Option<&Revision>,
        edit: impl FnOnce(&mut ConfigDocument) -> Result<(), E>,
    ) -> Result<Revision, E>
    where
        E: From<StoreError>,
    {
        let shared = &self.shared;
        let _write_guard = shared.write_lock.lock().await;

        // The revision check compares against the bytes stored now, not against what we loaded
        // last: a hand edit (or another node's write) not reloaded yet, or no watcher at all,
        // must still make a stale write fail rather than be overwritten. In a database the
        // stored bytes stay locked until the write below commits or this returns.
        let (held, on_disk) = shared.backend.lock_and_read().await?;
        let disk_revision = on_disk
            .as_deref()
            .map_or_else(Revision::empty, Revision::of);
        let live = self.snapshot();
        if disk_revision != live.revision {
            // The file changed behind our back. Make the change live if it loads, so the caller's
            // retry starts from it; if it does not, refuse to write over it.
            let loaded = match &on_disk {
                Some(bytes) => load_bytes(bytes),
                None => Err(ConfigProblems(vec![ConfigProblem::new(
                    "",
                    "the file was removed; restore it (the last good configuration stays live) before saving",
                )])),
            };
            match loaded {
                Ok(snapshot) => self.publish(snapshot),
                Err(problems) => {
                    self.report(problems.clone());
                    return Err(shared.backend.invalid(problems).into());
                }
            }
            if expected.is_some() {
                return Err(StoreError::Conflict {
                    current: disk_revision,
                }
                .into());
            }
        }
        if let Some(expected) = expected
            && *expected != disk_revision
        {
            return Err(StoreError::Conflict {
                current: disk_revision,
            }
            .into());
        }

        // What is live now: the snapshot just published if the file changed behind our back.
        let live = self.snapshot();
        let mut document = live.document.clone();
        edit(&mut document)?;

        // Validate what will be written, not the document in memory: rendering and loading again
        // guarantees that the bytes on disk load to exactly the snapshot we publish (a key smuggled
        // in through `extra` that shadows a modelled field, for example, is caught here).
        let text = config::render(&document);
        let snapshot = load_bytes(text.as_bytes()).map_err(StoreError::Invalid)?;
        // Loading leaves a bad agent out so one agent never stops a running system; a save is
        // refused instead, so nobody writes a broken agent.
        if !snapshot.config.skipped_agents.is_empty() {
            return Err(StoreError::Invalid(ConfigProblems(
                snapshot.config.skipped_agents.clone(),
            ))
            .into());
        }
        if snapshot.revision == live.revision {
            return Ok(snapshot.revision);
        }
        held.write(text.into_bytes(), &snapshot.revision).await?;
        let revision = snapshot.revision.clone();
        self.publish(snapshot);
        Ok(revision)
    }

    /// Replaces the whole document (a web form that edits the file as a whole).
    pub async fn replace(
        &self,
        expected: &Revision,
        document: ConfigDocument,
    ) -> Result<Revision, StoreError> {
        self.update(expected, |current| {
            *current = document;
            Ok::<(), StoreError>(())
        })
        .await
    }

    /// Starts reloading the file when it changes on disk; stops when the returned handle is
    /// stopped or dropped.
    ///
    /// The directory is watched, not the file: editors and atomic writers replace the file by
    /// renaming another over it, which a watch on the old file would not follow.
    ///
    /// In a database, the store listens for the `NOTIFY` every write sends, so a change made on
    /// one node is live on every other as soon as it commits.
    pub fn watch(&self) -> Result<ConfigWatch, StoreError> {
        let path = match &self.shared.backend {
            Backend::File(path) => path,
            Backend::Database(table) => {
                let (shutdown_sender, shutdown) = oneshot::channel::<()>();
                let task = tokio::spawn(table.clone().listen(self.clone(), async move {
                    let _ = shutdown.await;
                }));
                return Ok(ConfigWatch {
                    _watcher: None,
                    shutdown: Some(shutdown_sender),
                    task: Some(task),
                });
            }
        };
        let directory = directory_of(path);
        let file_name = path.file_name().map(ToOwned::to_owned);
        // A fresh data dir has no `configs/` yet: the first save creates the file in it, and the
        // watch must already be there to follow that file.
        std::fs::create_dir_all(&directory).map_err(|source| StoreError::Watch {
            path: directory.clone(),
            source: notify::Error::io(source),
        })?;
        let (changes_sender, changes) = mpsc::unbounded_channel();
        let mut watcher = notify::recommended_watcher(
            move |result: notify::Result<notify::Event>| match result {
                Ok(event) => {
                    let is_our_file = event.paths.iter().any(|path| {
                        path.file_name()
                            .is_some_and(|name| Some(name) == file_name.as_deref())
                    });
                    if is_our_file && is_content_change(&event.kind) {
                        // The receiver is gone only while the watch is being stopped.
                        let _ = changes_sender.send(());
                    }
                }
                Err(error) => tracing::warn!(target: "config_store", %error, "configuration file watcher error"),
            },
        )
        .map_err(|source| StoreError::Watch {
            path: directory.clone(),
            source,
        })?;
        watcher
            .watch(&directory, RecursiveMode::NonRecursive)
            .map_err(|source| StoreError::Watch {
                path: directory.clone(),
                source,
            })?;

        let (shutdown_sender, shutdown) = oneshot::channel::<()>();
        let task = tokio::spawn(run_reloads(self.clone(), changes, async move {
            // Resolves on an explicit stop and when the handle is dropped.
            let _ = shutdown.await;
        }));
        Ok(ConfigWatch {
            _watcher: Some(watcher),
            shutdown: Some(shutdown_sender),
            task: Some(task),
        })
    }

    /// Reads the file and makes it live if it changed and loads; otherwise keeps the last good
    /// snapshot and reports why. Never writes. The watcher calls this; it is public so a caller
    /// (a "reload now" button, or a test) can force a check.
    pub async fn reload(&self) {
        let shared = &self.shared;
        let _write_guard = shared.write_lock.lock().await;
        let bytes = match shared.backend.read().await {
            Ok(Some(bytes)) => bytes,
            Ok(None) if self.snapshot().revision == Revision::empty() => return,
            Ok(None) => {
                // Publishing an empty configuration would stop every channel because a file was
                // moved away for a moment; keep running on the last good one instead.
                self.report(ConfigProblems(vec![ConfigProblem::new(
                    "",
                    format!(
                        "{} was removed; the last good configuration stays live",
                        shared.backend.describe()
                    ),
                )]));
                return;
            }
            Err(error) => {
                self.report(ConfigProblems(vec![ConfigProblem::new(
                    "",
                    error.to_string(),
                )]));
                return;
            }
        };
        if Revision::of(&bytes) == self.snapshot().revision {
            // Unchanged (often our own write coming back as an event), or restored by hand to the
            // live revision after a bad edit; either way the file is the live configuration again.
            self.shared
                .reload_problems
                .send_if_modified(|problems| problems.take().is_some());
            return;
        }
        match load_bytes(&bytes) {
            Ok(snapshot) => {
                tracing::info!(target: "config_store", location = %shared.backend.describe(), revision = %snapshot.revision, "configuration reloaded");
                self.publish(snapshot);
            }
            Err(problems) => self.report(problems),
        }
    }

    fn publish(&self, snapshot: Snapshot) {
        self.shared.snapshots.send_replace(Arc::new(snapshot));
        self.shared
            .reload_problems
            .send_if_modified(|problems| problems.take().is_some());
    }

    fn report(&self, problems: ConfigProblems) {
        tracing::warn!(target: "config_store",
            location = %self.shared.backend.describe(),
            live_revision = %self.snapshot().revision,
            "the configuration file does not load; the last good configuration stays live and the file was not changed:\n{problems}"
        );
        self.shared.reload_problems.send_replace(Some(problems));
    }
}

/// Where the document's bytes live. Everything else (revisions, validation, publication,
/// reloads) is [`ConfigStore`]'s, the same for both.
#[derive(Debug)]
enum Backend {
    /// A file, written atomically; one process writes it (the data directory's lock).
    File(PathBuf),
    /// The `config_document` row of a PostgreSQL database, shared by every node on it.
    Database(ConfigDocumentTable),
}

/// What a writer holds between reading the stored bytes and writing new ones.
enum Held<'a> {
    /// The store's own write lock is enough: one process per data directory.
    File(&'a Path),
    /// The database's lock on the document, released when the transaction ends.
    Database(LockedConfigDocument),
}

impl Held<'_> {
    async fn write(self, bytes: Vec<u8>, revision: &Revision) -> Result<(), StoreError> {
        match self {
            Self::File(path) => write_atomically(path, bytes).await,
            Self::Database(locked) => locked.write(bytes, revision).await,
        }
    }
}

impl Backend {
    /// The stored bytes, or `None` when there is no document yet.
    async fn read(&self) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Self::File(path) => read_file(path).await,
            Self::Database(table) => table.read().await,
        }
    }

    /// The stored bytes, locked against every other writer (of any node) until the hold writes
    /// or is dropped.
    async fn lock_and_read(&self) -> Result<(Held<'_>, Option<Vec<u8>>), StoreError> {
        match self {
            Self::File(path) => Ok((Held::File(path), read_file(path).await?)),
            Self::Database(table) => {
                let (locked, bytes) = table.lock_and_read().await?;
                Ok((Held::Database(locked), bytes))
            }
        }
    }

    /// The error for stored bytes that do not load.
    fn invalid(&self, problems: ConfigProblems) -> StoreError {
        match self {
            Self::File(path) => StoreError::FileInvalid {
                path: path.clone(),
                problems,
            },
            Self::Database(table) => StoreError::StoredInvalid {
                database: table.database().to_owned(),
                problems,
            },
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::Database(table) => format!("the database {}", table.database()),
        }
    }
}

/// The running file watcher of a [`ConfigStore`]. Dropping it stops the watch; [`ConfigWatch::stop`]
/// also waits for the reload task to finish.
#[derive(Debug)]
pub struct ConfigWatch {
    // Dropping the watcher releases the OS watch; `None` for a database, which is listened to
    // by the task.
    _watcher: Option<notify::RecommendedWatcher>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl ConfigWatch {
    pub async fn stop(mut self) {
        self.shutdown.take();
        if let Some(task) = self.task.take() {
            // A panic in the reload task is a bug; surface it here rather than swallow it.
            if let Err(error) = task.await
                && error.is_panic()
            {
                std::panic::resume_unwind(error.into_panic());
            }
        }
    }
}

/// What [`migrate_file`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationReport {
    /// The file's revision before.
    pub previous: Revision,
    /// The file's revision after (equal to `previous` when nothing needed changing).
    pub current: Revision,
    /// Where the old bytes were kept; `None` when the file was already current.
    pub backup: Option<PathBuf>,
    /// What migration changed.
    pub migrations: Vec<ConfigProblem>,
}

/// Rewrites the configuration file in the current format (`jobbot config migrate`): legacy keys
/// migrated and the layout jobbot writes. The old bytes are first kept in
/// `<file>.bak-<revision>` next to it, so the change can be undone by hand. A file that does not
/// load is left as it is. Run it while the service is stopped or let the service's watcher pick
/// the result up; it does not go through a [`ConfigStore`].
pub async fn migrate_file(path: impl AsRef<Path>) -> Result<MigrationReport, StoreError> {
    let path = path.as_ref();
    let bytes = read_file(path).await?.ok_or_else(|| {
        StoreError::io(
            path,
            io::Error::new(io::ErrorKind::NotFound, "there is no file to migrate"),
        )
    })?;
    let previous = Revision::of(&bytes);
    let text = String::from_utf8_lossy(&bytes);
    let loaded = config::load(&text).map_err(|problems| StoreError::FileInvalid {
        path: path.to_owned(),
        problems,
    })?;
    let rendered = config::render(&loaded.document);
    if loaded.migrations.is_empty() && rendered.as_bytes() == bytes.as_slice() {
        return Ok(MigrationReport {
            current: previous.clone(),
            previous,
            backup: None,
            migrations: Vec::new(),
        });
    }
    // Same check as a store write: what is written must load to the same document.
    let reloaded = load_bytes(rendered.as_bytes()).map_err(StoreError::Invalid)?;

    let mut backup_name = path.file_name().unwrap_or_default().to_owned();
    backup_name.push(format!(".bak-{previous}"));
    let backup = path.with_file_name(backup_name);
    // The backup is written the same durable way, and before the file is touched, so that a crash
    // at any point leaves the old configuration somewhere on disk.
    write_atomically(&backup, bytes).await?;
    write_atomically(path, rendered.into_bytes()).await?;
    Ok(MigrationReport {
        previous,
        current: reloaded.revision,
        backup: Some(backup),
        migrations: loaded.migrations,
    })
}

/// Debounces change events and reloads until `shutdown` resolves or the watcher goes away.
async fn run_reloads(
    store: ConfigStore,
    mut changes: mpsc::UnboundedReceiver<()>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    // Catch a change made between `open` and the start of the watch.
    store.reload().await;
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            change = changes.recv() => if change.is_none() { return },
        }
        // Wait until the file has been quiet for the debounce period.
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                change = tokio::time::timeout(RELOAD_DEBOUNCE, changes.recv()) => match change {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_quiet) => break,
                },
            }
        }
        store.reload().await;
    }
}

/// Events that may mean the file's bytes changed. Opening and reading (ours included) do not.
fn is_content_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(notify::event::AccessKind::Close(notify::event::AccessMode::Write)) => {
            true
        }
        EventKind::Access(_) => false,
        _ => true,
    }
}

fn load_bytes(bytes: &[u8]) -> Result<Snapshot, ConfigProblems> {
    let text = std::str::from_utf8(bytes).map_err(|error| {
        ConfigProblems(vec![ConfigProblem::new(
            "",
            format!("not UTF-8 text: {error}"),
        )])
    })?;
    let loaded = config::load(text)?;
    for problem in &loaded.config.skipped_agents {
        tracing::warn!(target: "config_store", "agent left out: {problem}");
    }
    Ok(Snapshot {
        revision: Revision::of(bytes),
        document: loaded.document,
        config: loaded.config,
        pending_migrations: loaded.migrations,
    })
}

/// The file's bytes, or `None` when it does not exist.
async fn read_file(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match tokio::fs::read(path).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(StoreError::io(path, error)),
    }
}

fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    }
}

async fn write_atomically(path: &Path, bytes: Vec<u8>) -> Result<(), StoreError> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || write_atomically_blocking(&path, &bytes))
        .await
        .expect("the atomic write task does not panic")
}

/// Replaces `path` with `bytes` so that, after a crash at any point, the file holds either its old
/// bytes or the new ones, whole.
fn write_atomically_blocking(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    static TEMPORARY_FILE_COUNTER: AtomicU64 = AtomicU64::new(0);

    let directory = directory_of(path);
    std::fs::create_dir_all(&directory).map_err(|error| StoreError::io(&directory, error))?;
    // The temporary file is in the same directory because a rename is atomic only within one file
    // system. Its name starts with a dot and differs from the watched name, so the watcher ignores
    // it until the rename.
    let temporary = directory.join(format!(
        ".{}.tmp-{}-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id(),
        TEMPORARY_FILE_COUNTER.fetch_add(1, Ordering::Relaxed),
    ));
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        // Created readable by its owner only: the configuration can hold proxy passwords.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(&temporary)
            .map_err(|error| StoreError::io(&temporary, error))?;
        // Keep the old file's permissions: the configuration can hold proxy credentials, and a
        // user who restricted it should not find it world-readable after a save.
        if let Ok(metadata) = std::fs::metadata(path) {
            std::fs::set_permissions(&temporary, metadata.permissions())
                .map_err(|error| StoreError::io(&temporary, error))?;
        }
        file.write_all(bytes)
            .map_err(|error| StoreError::io(&temporary, error))?;
        // Without this fsync the rename can reach the disk before the data does, and a power cut
        // leaves an empty or partial file under the real name.
        file.sync_all()
            .map_err(|error| StoreError::io(&temporary, error))?;
        drop(file);
        // The rename replaces the old file in one step: readers see the old or the new file, never
        // a mix, and never a missing file.
        std::fs::rename(&temporary, path).map_err(|error| StoreError::io(path, error))?;
        sync_directory(&directory)
    })();
    if result.is_err() {
        // Leave no temporary file behind; the original file is untouched at this point unless the
        // rename already happened, in which case the temporary name no longer exists.
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

/// Makes the rename itself durable: a rename is a change to the directory, and until the directory
/// is flushed a power cut can bring the old file back.
#[cfg(unix)]
fn sync_directory(directory: &Path) -> Result<(), StoreError> {
    std::fs::File::open(directory)
        .and_then(|handle| handle.sync_all())
        .map_err(|error| StoreError::io(directory, error))
}

/// Windows cannot open a directory as a file to flush it; `MoveFileEx` is as durable as it gets.
#[cfg(not(unix))]
fn sync_directory(_directory: &Path) -> Result<(), StoreError> {
    Ok(())
}
