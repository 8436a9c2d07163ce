//! `/api/ws`: the live view. On connect it sends a snapshot (every agent's state and the
//! counters), then agent state changes, flood events, finished outbox messages and counter
//! updates as they happen. Raw Telegram events are never forwarded: they carry contacts' texts.

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use jobbot_engine::EngineEvent;
use serde_json::json;
use tokio::sync::broadcast;

use crate::AppState;
use crate::error::ApiError;

/// Upgrades to the live WebSocket. Messages are JSON objects with a `type`: `snapshot`,
/// `agent_state`, `flood_wait`, `peer_flood`, `outbox_finished`, `counters`.
#[utoipa::path(get, path = "/api/ws", tag = "status",
    responses((status = 101, description = "Switching to the WebSocket protocol"),
              (status = 403, body = crate::error::ErrorBody, description = "Cross-origin upgrade refused")))]
pub async fn live(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    check_origin(&headers)?;
    Ok(upgrade.on_upgrade(move |socket| run(socket, state)))
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

async fn run(mut socket: WebSocket, state: AppState) {
    // Subscribe before taking the snapshot, so no change between the two is lost.
    let mut events = state.inner.engine.subscribe();
    let mut counters = state.inner.counters.subscribe();
    let mut shutdown = state.inner.shutdown.subscribe();
    if *shutdown.borrow_and_update() || send_snapshot(&mut socket, &state).await.is_err() {
        return;
    }
    counters.mark_unchanged();
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
            changed = counters.changed() => {
                if changed.is_err() {
                    break;
                }
                let view = counters.borrow_and_update().clone();
                if send(&mut socket, json!({"type": "counters", "counters": *view})).await.is_err() {
                    break;
                }
            }
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            },
            _ = shutdown.changed() => break,
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}

/// The JSON of an event the live view shows; `None` for raw Telegram events.
fn live_event(event: &EngineEvent) -> Option<serde_json::Value> {
    match event {
        EngineEvent::Telegram { .. } => None,
        other => serde_json::to_value(other).ok(),
    }
}

async fn send_snapshot(socket: &mut WebSocket, state: &AppState) -> Result<(), axum::Error> {
    let agents = state.inner.engine.agents().await.unwrap_or_default();
    let counters = state.inner.counters.view();
    send(
        socket,
        json!({"type": "snapshot", "agents": agents, "counters": *counters}),
    )
    .await
}

async fn send(socket: &mut WebSocket, message: serde_json::Value) -> Result<(), axum::Error> {
    socket.send(Message::Text(message.to_string().into())).await
}
