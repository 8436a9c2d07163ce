//! `/api/cluster`: the nodes that share the database and which node holds each session's lease,
//! with the ages an operator needs to judge them (last heartbeat, how long a lease has been held,
//! how long until it expires). Read from the store at each request; a node on its own (SQLite)
//! shows no nodes and no leases.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::ApiError;

/// `/api/cluster`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterView {
    pub success: bool,
    /// The instant the ages below are measured from.
    pub now_unix_ms: i64,
    /// Every node on record, by name.
    pub nodes: Vec<NodeView>,
    /// Every session's lease on record, by session.
    pub leases: Vec<LeaseView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NodeView {
    pub node: String,
    /// Whether its last heartbeat still counts.
    pub alive: bool,
    pub started_unix_ms: i64,
    /// How long ago its last heartbeat was.
    pub heartbeat_age_ms: i64,
    /// How many sessions it holds now.
    pub leases_held: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LeaseView {
    pub session: String,
    /// The node holding it now; `null` when free, given back or expired.
    pub holder: Option<String>,
    /// The fencing token: grows each time the lease changes hands.
    pub token: i64,
    /// How long the holder has held it (`null` when nobody does).
    pub held_for_ms: Option<i64>,
    /// How long ago it was last taken or renewed.
    pub renewed_age_ms: i64,
    /// Until it expires (negative once expired).
    pub expires_in_ms: i64,
}

#[utoipa::path(get, path = "/api/cluster", tag = "status",
    responses((status = 200, body = ClusterView)))]
pub async fn cluster(State(state): State<AppState>) -> Result<Json<ClusterView>, ApiError> {
    let engine = &state.inner.engine;
    let store = engine.store();
    let now = engine.clock().now_unix();
    let nodes = store.cluster_nodes().await?;
    let leases = store.session_leases().await?;
    let held_by = |node| {
        leases
            .iter()
            .filter(|lease| lease.holder_at(now) == Some(node))
            .count()
    };
    Ok(Json(ClusterView {
        success: true,
        now_unix_ms: now.0,
        nodes: nodes
            .iter()
            .map(|node| NodeView {
                node: node.node.to_string(),
                alive: node.is_alive(now),
                started_unix_ms: node.started_at.0,
                heartbeat_age_ms: now.0 - node.heartbeat_at.0,
                leases_held: held_by(&node.node),
            })
            .collect(),
        leases: leases
            .iter()
            .map(|lease| {
                let holder = lease.holder_at(now);
                LeaseView {
                    session: lease.session.to_string(),
                    holder: holder.map(ToString::to_string),
                    token: lease.token.0,
                    held_for_ms: holder.map(|_| now.0 - lease.acquired_at.0),
                    renewed_age_ms: now.0 - lease.renewed_at.0,
                    expires_in_ms: lease.expires_at.0 - now.0,
                }
            })
            .collect(),
    }))
}
