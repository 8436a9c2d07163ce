//! The demo's simulator controls, served beside the API (and behind its authentication) only by
//! `jobbot demo`: they let a visitor or a browser test make Telegram do something now instead of
//! waiting for it to happen by chance.

use std::collections::BTreeMap;

use jobbot_core::ids::{ChatId, SessionName};
use jobbot_core::store::{NewOutboxMessage, OutboxKind, Recipient, SenderSelection, UnixMillis};
use jobbot_core::telegram::MessageContent;
use jobbot_engine::Engine;
use jobbot_sim::SimWorld;
use jobbot_web::axum::extract::State;
use jobbot_web::axum::routing::post;
use jobbot_web::axum::{Json, Router};
use jobbot_web::{ApiError, Problem};
use serde::Deserialize;

/// The longest flood wait the control imposes: a demo should recover within the hour.
const MAX_SECONDS: u32 = 3_600;

#[derive(Clone)]
pub struct DemoControls {
    pub world: SimWorld,
    pub engine: Engine,
    /// The agents' sessions and accounts.
    pub agents: BTreeMap<String, ChatId>,
    /// The CRM channel the agents belong to, and its group (where the probe message goes).
    pub channel_id: String,
    pub crm_group: ChatId,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FloodWaitRequest {
    session: String,
    seconds: u32,
}

/// `POST /api/demo/flood-wait {session, seconds}`.
pub fn routes(controls: DemoControls) -> Router {
    Router::new()
        .route("/api/demo/flood-wait", post(flood_wait))
        .with_state(controls)
}

/// Gives an agent a flood wait in the simulated Telegram (as Telegram does after a burst), then
/// queues a message sticky to that agent into the CRM group, so the engine meets the flood wait
/// at once: it publishes `FloodWait`, the agent's status gets its `flood_wait_until`, and the
/// live view shows it. The message goes out when the wait ends.
async fn flood_wait(
    State(controls): State<DemoControls>,
    Json(request): Json<FloodWaitRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Some(account) = controls.agents.get(&request.session).copied() else {
        return Err(ApiError::Invalid(vec![Problem::new(
            "session",
            format!(
                "not a demo agent (one of {})",
                controls
                    .agents
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )]));
    };
    if request.seconds == 0 || request.seconds > MAX_SECONDS {
        return Err(ApiError::invalid(
            "seconds",
            format!("must be 1 to {MAX_SECONDS}"),
        ));
    }
    let session = SessionName::parse(&request.session)
        .map_err(|error| ApiError::invalid("session", error.to_string()))?;
    controls.world.impose_flood_wait(account, request.seconds);
    let now: UnixMillis = controls.engine.clock().now_unix();
    controls
        .engine
        .enqueue(NewOutboxMessage {
            channel_id: controls.channel_id.clone(),
            kind: OutboxKind::Other,
            sender: SenderSelection::ChannelAgents {
                sticky: Some(session),
            },
            recipient: Recipient::Chat {
                chat: controls.crm_group,
            },
            content: MessageContent::plain(format!(
                "Демо: {} получил FloodWait на {} с.",
                request.session, request.seconds
            )),
            first_contact: false,
            idempotency_key: None,
            created_at: now,
            not_before: None,
            expires_at: UnixMillis(0),
        })
        .await?;
    Ok(Json(
        serde_json::json!({"session": request.session, "seconds": request.seconds}),
    ))
}
