//! The demo's simulator controls, served beside the API (and behind its authentication) only by
//! `jobbot demo`: they let a visitor or a browser test make Telegram do something now instead of
//! waiting for it to happen by chance.

use std::collections::BTreeMap;

use jobbot_core::ids::{ChatId, PhoneNumber, SessionName};
use jobbot_core::store::{NewOutboxMessage, OutboxKind, Recipient, SenderSelection, UnixMillis};
use jobbot_core::telegram::MessageContent;
use jobbot_engine::Engine;
use jobbot_sim::{NewUser, SimWorld};
use jobbot_web::axum::extract::{Query, State};
use jobbot_web::axum::routing::{get, post};
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountRequest {
    phone: String,
    name: String,
}

#[derive(Deserialize)]
struct PhoneQuery {
    phone: String,
}

/// `POST /api/demo/flood-wait {session, seconds}`, `POST /api/demo/accounts {phone, name}`,
/// `GET /api/demo/login-code?phone=…`.
pub fn routes(controls: DemoControls) -> Router {
    Router::new()
        .route("/api/demo/flood-wait", post(flood_wait))
        .route("/api/demo/accounts", post(create_account))
        .route("/api/demo/login-code", get(login_code))
        .with_state(controls)
}

fn parse_phone(phone: &str) -> Result<PhoneNumber, ApiError> {
    PhoneNumber::parse(phone).map_err(|error| ApiError::invalid("phone", error.to_string()))
}

/// Creates a Telegram account (no session logged in to it) in the simulated world: an agent
/// added with its phone can then be logged in from the web.
async fn create_account(
    State(controls): State<DemoControls>,
    Json(request): Json<AccountRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let phone = parse_phone(&request.phone)?;
    let id = controls
        .world
        .create_user(NewUser::named(&request.name).phone(phone.as_str()));
    Ok(Json(
        serde_json::json!({"success": true, "user_id": id.get()}),
    ))
}

/// The last login code the simulated Telegram sent to `phone` (a real one arrives in the
/// account's app).
async fn login_code(
    State(controls): State<DemoControls>,
    Query(query): Query<PhoneQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let phone = parse_phone(&query.phone)?;
    let code = controls
        .world
        .last_login_code(&phone)
        .ok_or_else(|| ApiError::NotFound("no code was sent to this phone".into()))?;
    Ok(Json(serde_json::json!({"success": true, "code": code})))
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
