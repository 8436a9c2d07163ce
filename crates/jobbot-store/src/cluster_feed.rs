//! The live view of a cluster: each node publishes its own display events (agent states, flood
//! waits, finished messages: never raw Telegram events, which carry contacts' texts) through
//! PostgreSQL's `NOTIFY`, and hears every other node's, so the live page of any node covers the
//! whole cluster (#16 item 4).
//!
//! Notifications are per database, not per schema, so each carries its schema and a node drops
//! those of another schema (another cluster, or a test running beside this one) and its own.
//! They are best effort, as the live view is: a notification sent while a listener was
//! reconnecting is lost, and the page's next read of the API makes it whole. A payload is at
//! most [`MAX_PAYLOAD`] bytes (PostgreSQL refuses 8,000 and more); a larger event is not sent.

use std::future::Future;
use std::time::Duration;

use jobbot_core::cluster::NodeId;
use jobbot_core::store::StoreError;
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::{broadcast, watch};

use crate::PostgresStore;
use crate::rows::failed;

/// The channel live events are announced on.
const LIVE_CHANNEL: &str = "jobbot_live";

/// The largest payload sent (PostgreSQL's limit is 8,000 bytes by default).
pub const MAX_PAYLOAD: usize = 7_900;

/// How long the listener waits before connecting again after the database refused.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// Events heard from other nodes that a slow subscriber may fall behind by.
const HEARD_BUFFER: usize = 256;

/// One node's display event, as the other nodes hear it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterEvent {
    /// The node it happened on.
    pub node: String,
    /// The event, as that node's live view shows it.
    pub event: serde_json::Value,
}

#[derive(Serialize, Deserialize)]
struct Payload {
    schema: String,
    #[serde(flatten)]
    event: ClusterEvent,
}

/// Publishes this node's display events and hears the other nodes' (see the module).
#[derive(Debug, Clone)]
pub struct ClusterFeed {
    pool: PgPool,
    schema: String,
    node: NodeId,
    heard: broadcast::Sender<ClusterEvent>,
    listening: watch::Sender<bool>,
}

impl ClusterFeed {
    /// The feed of `node` on `store`'s database and schema.
    pub async fn new(store: &PostgresStore, node: NodeId) -> Result<Self, StoreError> {
        let pool = store.pool.clone();
        let schema: String = sqlx::query_scalar("SELECT current_schema()::TEXT")
            .fetch_one(&pool)
            .await
            .map_err(failed("read the schema of the live feed"))?;
        Ok(Self {
            pool,
            schema,
            node,
            heard: broadcast::channel(HEARD_BUFFER).0,
            listening: watch::channel(false).0,
        })
    }

    /// Announces one of this node's display events to the other nodes. `Ok(false)`: too large
    /// to announce, not sent.
    pub async fn publish(&self, event: serde_json::Value) -> Result<bool, StoreError> {
        let operation = "announce a live event to the other nodes";
        let payload = Payload {
            schema: self.schema.clone(),
            event: ClusterEvent {
                node: self.node.as_str().to_owned(),
                event,
            },
        };
        let text = serde_json::to_string(&payload)
            .map_err(|error| StoreError::new(operation, format!("could not encode it: {error}")))?;
        if text.len() > MAX_PAYLOAD {
            return Ok(false);
        }
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(LIVE_CHANNEL)
            .bind(text)
            .execute(&self.pool)
            .await
            .map_err(failed(operation))?;
        Ok(true)
    }

    /// The other nodes' events of this schema, as [`ClusterFeed::listen`] hears them.
    pub fn subscribe(&self) -> broadcast::Receiver<ClusterEvent> {
        self.heard.subscribe()
    }

    /// The sender [`ClusterFeed::subscribe`] reads from, for a live view to subscribe to.
    pub fn heard(&self) -> broadcast::Sender<ClusterEvent> {
        self.heard.clone()
    }

    /// Waits until the listener is listening (events published before are not heard).
    pub async fn listening(&self) {
        let mut listening = self.listening.subscribe();
        let _ = listening.wait_for(|listening| *listening).await;
    }

    /// Hears the other nodes' events until `shutdown` resolves, connecting again after a lost
    /// connection.
    pub async fn listen(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let listening = async {
                let mut listener = PgListener::connect_with(&self.pool).await?;
                listener.listen(LIVE_CHANNEL).await?;
                Ok::<_, sqlx::Error>(listener)
            };
            let mut listener = match listening.await {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::warn!(target: "cluster", %error, "could not listen for the other nodes' live events; trying again");
                    tokio::select! {
                        () = &mut shutdown => return,
                        () = tokio::time::sleep(LISTEN_RETRY) => continue,
                    }
                }
            };
            self.listening.send_replace(true);
            loop {
                tokio::select! {
                    () = &mut shutdown => return,
                    received = listener.try_recv() => match received {
                        Ok(Some(notification)) => self.hear(notification.payload()),
                        // Reconnected by the next `try_recv`; what was sent meanwhile is lost.
                        Ok(None) => {}
                        Err(error) => {
                            tracing::warn!(target: "cluster", %error, "lost the live events' listener; listening again");
                            self.listening.send_replace(false);
                            break;
                        }
                    },
                }
            }
        }
    }

    fn hear(&self, payload: &str) {
        match serde_json::from_str::<Payload>(payload) {
            Ok(payload)
                if payload.schema == self.schema && payload.event.node != self.node.as_str() =>
            {
                let _ = self.heard.send(payload.event);
            }
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(target: "cluster", %error, "a live event this node cannot read");
            }
        }
    }
}
