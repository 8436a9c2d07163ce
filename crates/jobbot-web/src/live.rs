//! `/api/ws`: the live view. On connect it sends a snapshot (every agent's state), then agent
//! state changes, flood events and finished outbox messages as they happen, from the engine's
//! display feed; when that feed drops events for this client, a fresh snapshot makes it whole.
//! Raw Telegram events are never forwarded: they carry contacts' texts. With several nodes the
//! other nodes' events follow too (heard through `jobbot_store::ClusterFeed`), each with the
//! `node` it happened on.
//!
//! At most [`crate::ServerLimits::max_websockets`] are open at once (one more is refused with
//! 503), a client may send nothing larger than `websocket_max_message`, and a cookie session's
//! WebSocket closes when the session ends.

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use jobbot_engine::EngineEvent;
use jobbot_store::ClusterEvent;
use serde_json::json;
use tokio::sync::broadcast;

use std::sync::Arc;

use crate::AppState;
use crate::auth::Principal;
use crate::error::ApiError;

/// Upgrades to the live WebSocket. Messages are JSON objects with a `type`: `snapshot`,
/// `agent_state`, `flood_wait`, `peer_flood`, `outbox_finished`.
#[utoipa::path(get, path = "/api/ws", tag = "status",
    responses((status = 101, description = "Switching to the WebSocket protocol"),
              (status = 426, body = crate::error::ErrorBody, description = "Not a WebSocket upgrade request"),
              (status = 403, body = crate::error::ErrorBody, description = "Cross-origin upgrade refused"),
              (status = 503, body = crate::error::ErrorBody, description = "Too many live WebSockets")))]
pub async fn live(
    State(state): State<AppState>,
    principal: axum::Extension<Principal>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|_| ApiError::UpgradeRequired)?;
    check_origin(&headers)?;
    let permit = Arc::clone(&state.inner.websockets)
        .try_acquire_owned()
        .map_err(|_| {
            state.inner.metrics.web.websockets_refused.inc();
            ApiError::Unavailable("too many live WebSockets; retry soon")
        })?;
    let ends = match principal.0 {
        Principal::Cookie { expires_at, .. } => {
            let clock = state.inner.engine.clock();
            Some(clock.instant(clock.from_unix(expires_at)))
        }
        Principal::Token { .. } => None,
    };
    let limit = state.inner.limits.websocket_max_message;
    Ok(upgrade
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| async move {
            let metrics = Arc::clone(&state.inner.metrics.web);
            metrics.websockets_open.inc();
            run(socket, state, ends).await;
            metrics.websockets_open.dec();
            drop(permit);
        }))
}

/// A browser always sends `Origin` with a WebSocket upgrade, and the cookie goes with it whatever
/// the page; refusing foreign origins stops another site from reading the live view with the
/// admin's cookie. Scripts that send no `Origin` are judged by their token alone.
fn check_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    if !host.is_empty() && origin_host == host {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "cross-origin WebSocket upgrade refused",
        ))
    }
}

async fn run(mut socket: WebSocket, state: AppState, ends: Option<tokio::time::Instant>) {
    // Subscribe before taking the snapshot, so no change between the two is lost.
    let mut events = state.inner.engine.subscribe();
    let mut others = state
        .inner
        .cluster_events
        .get()
        .map(broadcast::Sender::subscribe);
    let mut shutdown = state.inner.shutdown.subscribe();
    if *shutdown.borrow_and_update() || send_snapshot(&mut socket, &state).await.is_err() {
        return;
    }
    let session_end = async move {
        match ends {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(session_end);
    loop {
        tokio::select! {
            event = events.recv() => {
                let sent = match event {
                    Ok(event) => match live_event(&event) {
                        Some(message) => send(&mut socket, message).await,
                        None => Ok(()),
                    },
                    // Missed events: a fresh snapshot makes the client whole again.
                    Err(broadcast::error::RecvError::Lagged(_)) => send_snapshot(&mut socket, &state).await,
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                if sent.is_err() {
                    break;
                }
            }
            heard = other_node(&mut others) => {
                let sent = match heard {
                    Ok(heard) => send(&mut socket, other_nodes_event(heard)).await,
                    // The other nodes' missed events: the page's next read of the API has them.
                    Err(broadcast::error::RecvError::Lagged(_)) => Ok(()),
                    Err(broadcast::error::RecvError::Closed) => {
                        others = None;
                        Ok(())
                    }
                };
                if sent.is_err() {
                    break;
                }
            }
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            },
            _ = shutdown.changed() => break,
            () = &mut session_end => break,
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}

/// The next event heard from another node; never, on a node of its own.
async fn other_node(
    others: &mut Option<broadcast::Receiver<ClusterEvent>>,
) -> Result<ClusterEvent, broadcast::error::RecvError> {
    match others {
        Some(others) => others.recv().await,
        None => std::future::pending().await,
    }
}

/// Another node's event as the live view shows it: the event, with the `node` it happened on.
fn other_nodes_event(heard: ClusterEvent) -> serde_json::Value {
    let mut event = heard.event;
    if let Some(fields) = event.as_object_mut() {
        fields.insert("node".to_owned(), serde_json::Value::String(heard.node));
    }
    event
}

/// The JSON of an event the live view shows; `None` for raw Telegram events (they carry
/// contacts' texts). The same events go to the other nodes of a cluster.
pub fn live_event(event: &EngineEvent) -> Option<serde_json::Value> {
    match event {
        EngineEvent::Telegram { .. } => None,
        other => serde_json::to_value(other).ok(),
    }
}

async fn send_snapshot(socket: &mut WebSocket, state: &AppState) -> Result<(), axum::Error> {
    let agents = state.inner.engine.agents().await.unwrap_or_default();
    send(socket, json!({"type": "snapshot", "agents": agents})).await
}

async fn send(socket: &mut WebSocket, message: serde_json::Value) -> Result<(), axum::Error> {
    socket.send(Message::Text(message.to_string().into())).await
}
