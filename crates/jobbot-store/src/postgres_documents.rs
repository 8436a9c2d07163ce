//! What a node keeps in PostgreSQL besides the operational records, so that every node on one
//! database runs on the same data: the configuration document (read and written by
//! [`crate::ConfigStore`], which owns the revision and validation logic) and the sealed
//! Telegram sessions ([`SessionVault`]).

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use jobbot_core::config::Revision;
use jobbot_core::ids::SessionName;
use jobbot_core::store::{SessionVault, StoreError as PortError, UnixMillis};
use sqlx::postgres::{PgListener, PgPool};
use sqlx::{Postgres, Transaction};

use crate::PostgresStore;
use crate::config_store::{ConfigStore, StoreError};
use crate::rows::failed;

/// The channel every configuration write notifies, with the new revision as its payload.
/// Notifications are per database, not per schema: a node of another schema that hears one
/// reloads, finds its own document unchanged, and does nothing.
const CONFIG_CHANNEL: &str = "jobbot_config";

/// How long the listener waits before connecting again after the database refused.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// The `config_document` row of one database (and schema).
#[derive(Debug, Clone)]
pub(crate) struct ConfigDocumentTable {
    pool: PgPool,
    database: String,
}

/// The document locked for a write: an open transaction holding the document's advisory lock.
/// Dropping it rolls back and releases the lock.
pub(crate) struct LockedConfigDocument {
    transaction: Transaction<'static, Postgres>,
    database: String,
}

impl ConfigDocumentTable {
    pub(crate) fn new(store: &PostgresStore) -> Self {
        Self {
            pool: store.pool.clone(),
            database: store.database().to_owned(),
        }
    }

    pub(crate) fn database(&self) -> &str {
        &self.database
    }

    fn failed(&self) -> impl Fn(sqlx::Error) -> StoreError + '_ {
        |source| StoreError::Database {
            database: self.database.clone(),
            source,
        }
    }

    pub(crate) async fn read(&self) -> Result<Option<Vec<u8>>, StoreError> {
        sqlx::query_scalar("SELECT body FROM config_document WHERE id = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(self.failed())
    }

    /// Opens a transaction, takes the document's lock in it (every writer of every node takes
    /// the same lock, so read-compare-write sequences never interleave), and reads the bytes.
    /// The lock is an advisory one rather than the row's, because before the first write there
    /// is no row to lock.
    pub(crate) async fn lock_and_read(
        &self,
    ) -> Result<(LockedConfigDocument, Option<Vec<u8>>), StoreError> {
        let mut transaction = self.pool.begin().await.map_err(self.failed())?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('jobbot_config:' || current_schema()))")
            .execute(&mut *transaction)
            .await
            .map_err(self.failed())?;
        let bytes = sqlx::query_scalar("SELECT body FROM config_document WHERE id = 1")
            .fetch_optional(&mut *transaction)
            .await
            .map_err(self.failed())?;
        Ok((
            LockedConfigDocument {
                transaction,
                database: self.database.clone(),
            },
            bytes,
        ))
    }

    /// Reloads `store` whenever any node writes, until `shutdown` resolves. A lost connection
    /// may have missed notifications, so the document is read again after each reconnect; the
    /// first read follows the `LISTEN`, so a write made before the listener was up is not
    /// missed either.
    pub(crate) async fn listen(self, store: ConfigStore, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut listener = loop {
            let listening = async {
                let mut listener = PgListener::connect_with(&self.pool).await?;
                listener.listen(CONFIG_CHANNEL).await?;
                Ok::<_, sqlx::Error>(listener)
            };
            match listening.await {
                Ok(listener) => break listener,
                Err(error) => {
                    tracing::warn!(target: "config_store", database = %self.database, %error, "could not listen for configuration changes; trying again");
                    tokio::select! {
                        () = &mut shutdown => return,
                        () = tokio::time::sleep(LISTEN_RETRY) => {}
                    }
                }
            }
        };
        store.reload().await;
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                received = listener.try_recv() => match received {
                    Ok(Some(_notification)) => store.reload().await,
                    // The connection was lost (and is made again by the next `try_recv`):
                    // changes made meanwhile were not announced to this node.
                    Ok(None) => store.reload().await,
                    Err(error) => {
                        tracing::warn!(target: "config_store", database = %self.database, %error, "lost the configuration listener; listening again");
                        tokio::select! {
                            () = &mut shutdown => return,
                            () = tokio::time::sleep(LISTEN_RETRY) => {}
                        }
                        store.reload().await;
                    }
                },
            }
        }
    }
}

impl LockedConfigDocument {
    /// Writes `bytes` (at `revision`, their hash), announces it, and commits: the other nodes
    /// hear of it only once it is committed.
    pub(crate) async fn write(self, bytes: Vec<u8>, revision: &Revision) -> Result<(), StoreError> {
        let Self {
            mut transaction,
            database,
        } = self;
        let failed = |source| StoreError::Database {
            database: database.clone(),
            source,
        };
        sqlx::query(
            "INSERT INTO config_document (id, body, revision, updated_at) \
             VALUES (1, $1, $2, (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT) \
             ON CONFLICT (id) DO UPDATE SET body = excluded.body, revision = excluded.revision, \
             updated_at = excluded.updated_at",
        )
        .bind(bytes)
        .bind(revision.as_str())
        .execute(&mut *transaction)
        .await
        .map_err(failed)?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CONFIG_CHANNEL)
            .bind(revision.as_str())
            .execute(&mut *transaction)
            .await
            .map_err(failed)?;
        transaction.commit().await.map_err(failed)
    }
}

#[async_trait]
impl SessionVault for PostgresStore {
    async fn load_session(&self, name: &SessionName) -> Result<Option<Vec<u8>>, PortError> {
        sqlx::query_scalar("SELECT body FROM session_data WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(failed("load a session"))
    }

    async fn save_session(
        &self,
        name: &SessionName,
        sealed: &[u8],
        now: UnixMillis,
    ) -> Result<(), PortError> {
        sqlx::query(
            "INSERT INTO session_data (name, body, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
        )
        .bind(name.as_str())
        .bind(sealed)
        .bind(now.0)
        .execute(&self.pool)
        .await
        .map_err(failed("save a session"))?;
        Ok(())
    }

    async fn session_names(&self) -> Result<Vec<SessionName>, PortError> {
        let operation = "list the sessions";
        let names: Vec<String> = sqlx::query_scalar("SELECT name FROM session_data ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(failed(operation))?;
        names
            .iter()
            .map(|name| SessionName::parse(name).map_err(|error| PortError::new(operation, error)))
            .collect()
    }
}
