//! Telegram logins through the web: the main account's and agents', phone → code → 2FA password
//! or a QR code scanned by the account's phone → 2FA password, driving the core's [`LoginFlow`]
//! over the engine's connector. The QR code is an SVG image of the login's current
//! `tg://login` URL (`GET …/qr.svg`); the page follows the login (`POST …/qr/wait`, which
//! answers when the phone scanned it or a new token replaced it) and reloads the image.
//!
//! `begin_login` takes the session's lock, the same lock the engine's owner of that session
//! holds while connected. So a login of a connected account is refused with 409 ("session in
//! use; pause the agent first") rather than done behind the owner's back: the operator pauses the
//! agent (`POST /api/agents/pause`), logs in, and the login restarts its owner. Pausing
//! automatically instead would take a working agent offline on a mistyped session name.
//!
//! Codes and passwords are passed to the backend and dropped; they are never logged, stored or
//! echoed. Phone numbers are masked in logs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use jobbot_core::ids::SessionName;
use jobbot_core::login::{LoginFlow, LoginState, LoginStepError};
use jobbot_core::telegram::{ConnectError, ConnectOptions, LoginBackend, LoginError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::AppState;
use crate::constraints::{self, Checks};
use crate::error::{ApiError, ErrorBody, Reason};
use crate::json::ApiJson;

type Flow = LoginFlow<Box<dyn LoginBackend>>;

/// Logins in progress, by session. Each flow holds its session's lock until it ends or is
/// cancelled.
pub struct LoginRegistry {
    flows: Mutex<HashMap<SessionName, Arc<tokio::sync::Mutex<Flow>>>>,
    /// The QR code each login shows, readable while a `qr/wait` holds the flow.
    qr_urls: Mutex<HashMap<SessionName, String>>,
    /// The origin of the QR logins' clock (milliseconds since it).
    started: tokio::time::Instant,
}

impl Default for LoginRegistry {
    fn default() -> Self {
        Self {
            flows: Mutex::default(),
            qr_urls: Mutex::default(),
            started: tokio::time::Instant::now(),
        }
    }
}

impl LoginRegistry {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn get(&self, session: &SessionName) -> Option<Arc<tokio::sync::Mutex<Flow>>> {
        self.flows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(session)
            .cloned()
    }

    fn insert(&self, session: SessionName, flow: Flow) {
        self.flows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(session, Arc::new(tokio::sync::Mutex::new(flow)));
    }

    /// Remembers the QR code `login` shows (none once it shows none).
    fn show(&self, session: &SessionName, login: &LoginState) {
        let mut urls = self.qr_urls.lock().unwrap_or_else(|p| p.into_inner());
        match login {
            LoginState::AwaitingQrScan { url, .. } => {
                urls.insert(session.clone(), url.clone());
            }
            _ => {
                urls.remove(session);
            }
        }
    }

    fn qr_url(&self, session: &SessionName) -> Option<String> {
        self.qr_urls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(session)
            .cloned()
    }

    fn remove(&self, session: &SessionName) -> bool {
        self.qr_urls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(session);
        self.flows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(session)
            .is_some()
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BeginLoginRequest {
    /// `bot_session` for the main account, or an agent's session name.
    #[schema(schema_with = crate::constraints::session_name_schema)]
    pub session: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PhoneRequest {
    /// The account's phone number in international format.
    #[schema(schema_with = crate::constraints::phone_schema)]
    pub phone: String,
}

/// No `Debug`: it holds a secret, which must never be printed.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    /// The code Telegram sent to the account's app.
    pub code: String,
}

/// No `Debug`: it holds a secret, which must never be printed.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordRequest {
    /// The account's two-step verification password.
    pub password: String,
}

/// Where a login stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginStatus {
    pub success: bool,
    pub session: String,
    /// `{"state": "awaiting_phone" | "awaiting_code" | "awaiting_qr_scan" | "awaiting_password"
    /// | "signed_in", …}`; `awaiting_code` carries `sent`: `{delivery, length, next,
    /// resend_after_seconds}`, where `delivery` and `next` are `app`, `sms`, `call`,
    /// `missed_call`, `email`, `fragment` or `other`; `awaiting_qr_scan` carries `url`
    /// (`tg://login?token=…`, drawn at `qr.svg`) and `expires_in_seconds`.
    #[schema(value_type = Object)]
    pub login: Value,
}

/// Starts a login for a session (replacing one in progress for it).
#[utoipa::path(post, path = "/api/logins", tag = "logins", request_body = BeginLoginRequest,
    responses((status = 201, body = LoginStatus), (status = 409, body = ErrorBody, description = "The session is in use"),
              (status = 422, body = ErrorBody)))]
pub async fn begin_login(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<BeginLoginRequest>,
) -> Result<(StatusCode, Json<LoginStatus>), ApiError> {
    let session = constraints::session_name("session", &body.session)?;
    // A login in progress for the session holds its lock; end it first.
    state.inner.logins.remove(&session);
    let proxy = state
        .inner
        .config
        .snapshot()
        .config
        .agent_accounts()
        .get(&session)
        .and_then(|agent| agent.proxy.clone());
    let backend = state
        .inner
        .connector
        .begin_login(&session, &ConnectOptions { proxy })
        .await
        .map_err(|error| match error {
            ConnectError::SessionBusy { .. } => ApiError::StateConflict(format!(
                "session {session} is in use; pause the agent first (POST /api/agents/pause)"
            )),
            ConnectError::Network { .. } | ConnectError::Storage { .. } => {
                tracing::warn!(target: "web", session = %session, %error, "could not start a login");
                ApiError::Unavailable(
                    "could not start the login (network or session storage); try again",
                )
            }
            other => ApiError::rejected("session", Reason::Text(other.to_string())),
        })?;
    let flow = LoginFlow::new(backend);
    let status = status_of(&session, flow.state());
    state.inner.logins.insert(session.clone(), flow);
    tracing::info!(target: "web", session = %session, "login started through the web");
    Ok((StatusCode::CREATED, Json(status)))
}

/// The state of a login in progress.
#[utoipa::path(get, path = "/api/logins/{session}", tag = "logins",
    params(("session" = String, Path, description = "The session being logged in")),
    responses((status = 200, body = LoginStatus), (status = 404, body = ErrorBody)))]
pub async fn login_status(
    State(state): State<AppState>,
    Path(session): Path<String>,
) -> Result<Json<LoginStatus>, ApiError> {
    let (session, flow) = flow_of(&state, &session)?;
    let flow = flow.lock().await;
    Ok(Json(status_of(&session, flow.state())))
}

/// Cancels a login in progress and releases the session.
#[utoipa::path(delete, path = "/api/logins/{session}", tag = "logins",
    params(("session" = String, Path, description = "The session being logged in")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn cancel_login(
    State(state): State<AppState>,
    Path(session): Path<String>,
) -> Result<StatusCode, ApiError> {
    let (session, _) = flow_of(&state, &session)?;
    state.inner.logins.remove(&session);
    Ok(StatusCode::NO_CONTENT)
}

/// Sends the login code to a phone number (again, to get a new code).
#[utoipa::path(post, path = "/api/logins/{session}/phone", tag = "logins", request_body = PhoneRequest,
    params(("session" = String, Path, description = "The session being logged in")),
    responses((status = 200, body = LoginStatus), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn submit_phone(
    State(state): State<AppState>,
    Path(session): Path<String>,
    ApiJson(body): ApiJson<PhoneRequest>,
) -> Result<Json<LoginStatus>, ApiError> {
    let mut checks = Checks::new();
    checks.rule("phone", &body.phone, constraints::PHONE);
    checks.finish()?;
    let (session, flow) = flow_of(&state, &session)?;
    let mut flow = flow.lock().await;
    let result = flow.submit_phone(&body.phone).await.cloned();
    tracing::info!(target: "web", session = %session, phone = %jobbot_core::ids::mask_phone(&body.phone),
        ok = result.is_ok(), "login: phone submitted");
    let login = result.map_err(|error| step_error(error, "phone"))?;
    Ok(Json(status_of(&session, &login)))
}

/// Asks Telegram to send the code again, the other way it offered (`login.sent.next`:
/// app → SMS → call); the answer says how it went this time (`login.sent.delivery`).
#[utoipa::path(post, path = "/api/logins/{session}/resend", tag = "logins",
    params(("session" = String, Path, description = "The session being logged in")),
    responses((status = 200, body = LoginStatus), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 429, body = ErrorBody)))]
pub async fn resend_code(
    State(state): State<AppState>,
    Path(session): Path<String>,
) -> Result<Json<LoginStatus>, ApiError> {
    let (session, flow) = flow_of(&state, &session)?;
    let mut flow = flow.lock().await;
    let result = flow.resend_code().await.cloned();
    tracing::info!(target: "web", session = %session, ok = result.is_ok(), "login: code resent");
    let login = result.map_err(|error| step_error(error, "code"))?;
    Ok(Json(status_of(&session, &login)))
}

/// Submits the login code.
#[utoipa::path(post, path = "/api/logins/{session}/code", tag = "logins", request_body = CodeRequest,
    params(("session" = String, Path, description = "The session being logged in")),
    responses((status = 200, body = LoginStatus), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn submit_code(
    State(state): State<AppState>,
    Path(session): Path<String>,
    ApiJson(body): ApiJson<CodeRequest>,
) -> Result<Json<LoginStatus>, ApiError> {
    let (session, flow) = flow_of(&state, &session)?;
    let login = {
        let mut flow = flow.lock().await;
        flow.submit_code(&body.code)
            .await
            .cloned()
            .map_err(|error| step_error(error, "code"))?
    };
    // The flow holds the session's lock: let go of it before the engine's owner reconnects.
    drop(flow);
    finish_if_signed_in(&state, &session, &login).await;
    Ok(Json(status_of(&session, &login)))
}

/// Submits the 2FA password.
#[utoipa::path(post, path = "/api/logins/{session}/password", tag = "logins", request_body = PasswordRequest,
    params(("session" = String, Path, description = "The session being logged in")),
    responses((status = 200, body = LoginStatus), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn submit_password(
    State(state): State<AppState>,
    Path(session): Path<String>,
    ApiJson(body): ApiJson<PasswordRequest>,
) -> Result<Json<LoginStatus>, ApiError> {
    let (session, flow) = flow_of(&state, &session)?;
    let login = {
        let mut flow = flow.lock().await;
        flow.submit_password(&body.password)
            .await
            .cloned()
            .map_err(|error| step_error(error, "password"))?
    };
    drop(flow);
    finish_if_signed_in(&state, &session, &login).await;
    Ok(Json(status_of(&session, &login)))
}

/// The longest one `POST …/qr/wait` holds its request: short of the 10 s many HTTP clients
/// and proxies give up after, long enough that the page asks a few times per token.
pub const QR_WAIT_SECONDS: u64 = 8;

/// Logs in with a QR code instead of a code: `login.state` becomes `awaiting_qr_scan` with
/// `url` (`tg://login?token=…`, also as an image at `qr.svg`) and `expires_in_seconds`.
#[utoipa::path(post, path = "/api/logins/{session}/qr", tag = "logins",
    params(("session" = String, Path, description = "The session being logged in")),
    responses((status = 200, body = LoginStatus), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 429, body = ErrorBody)))]
pub async fn start_qr_login(
    State(state): State<AppState>,
    Path(session): Path<String>,
) -> Result<Json<LoginStatus>, ApiError> {
    let (session, flow) = flow_of(&state, &session)?;
    let login = {
        let mut flow = flow.lock().await;
        let now = state.inner.logins.now_ms();
        flow.start_qr(now)
            .await
            .cloned()
            .map_err(|error| step_error(error, "qr"))?
    };
    drop(flow);
    state.inner.logins.show(&session, &login);
    tracing::info!(target: "web", session = %session, "login: QR code shown");
    finish_if_signed_in(&state, &session, &login).await;
    Ok(Json(status_of(&session, &login)))
}

/// Waits for the phone to scan the QR code, at most until its token expires and at most
/// [`QR_WAIT_SECONDS`] s, and answers the login's state then: a new `url` after an expiry,
/// `awaiting_password` or `signed_in` after a scan, the same `url` when nothing happened yet (the
/// page asks again).
#[utoipa::path(post, path = "/api/logins/{session}/qr/wait", tag = "logins",
    params(("session" = String, Path, description = "The session being logged in")),
    responses((status = 200, body = LoginStatus), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 429, body = ErrorBody)))]
pub async fn follow_qr_login(
    State(state): State<AppState>,
    Path(session): Path<String>,
) -> Result<Json<LoginStatus>, ApiError> {
    let (session, flow) = flow_of(&state, &session)?;
    // The whole request, the wait for another request's turn included, stays within the bound.
    let bound = std::time::Duration::from_secs(QR_WAIT_SECONDS);
    let started = tokio::time::Instant::now();
    let login = {
        let Ok(mut flow) = tokio::time::timeout(bound, flow.lock()).await else {
            return Err(ApiError::StateConflict(format!(
                "another request is waiting for the scan of {session}'s QR code; ask again"
            )));
        };
        let logins = &state.inner.logins;
        let clock = || logins.now_ms();
        flow.follow_qr(&clock, bound.saturating_sub(started.elapsed()))
            .await
            .cloned()
            .map_err(|error| step_error(error, "qr"))?
    };
    drop(flow);
    state.inner.logins.show(&session, &login);
    finish_if_signed_in(&state, &session, &login).await;
    Ok(Json(status_of(&session, &login)))
}

/// The QR code of the login's current token, as an SVG image (`awaiting_qr_scan` only).
#[utoipa::path(get, path = "/api/logins/{session}/qr.svg", tag = "logins",
    params(("session" = String, Path, description = "The session being logged in")),
    responses((status = 200, content_type = "image/svg+xml", body = String), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn qr_login_image(
    State(state): State<AppState>,
    Path(session): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let (session, flow) = flow_of(&state, &session)?;
    // While a `qr/wait` holds the flow, the code it waits on is the one last shown.
    let url = match flow.try_lock() {
        Ok(flow) => match flow.state() {
            LoginState::AwaitingQrScan { url, .. } => Ok(url.clone()),
            other => Err(other.step_name()),
        },
        Err(_) => state
            .inner
            .logins
            .qr_url(&session)
            .ok_or("a step in progress"),
    };
    let url = url.map_err(|step| {
        ApiError::StateConflict(format!(
            "the login of {session} shows no QR code (it is at: {step})"
        ))
    })?;
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "image/svg+xml"),
            (axum::http::header::CACHE_CONTROL, "no-store"),
        ],
        qr_svg(&url),
    )
        .into_response())
}

/// `url` as a QR code in SVG, with the quiet zone scanners need.
fn qr_svg(url: &str) -> String {
    use qrcode::render::svg;
    match qrcode::QrCode::new(url.as_bytes()) {
        Ok(code) => code
            .render::<svg::Color<'_>>()
            .min_dimensions(240, 240)
            .quiet_zone(true)
            .build(),
        // A `tg://login` URL is far below a QR code's capacity.
        Err(_) => String::new(),
    }
}

/// A signed-in login releases the session, and the engine's owner of it (if the engine runs it)
/// restarts to connect now instead of at its next retry. The caller has dropped its handle on
/// the flow: the registry's is the last, and removing it releases the session's lock.
async fn finish_if_signed_in(state: &AppState, session: &SessionName, login: &LoginState) {
    if !matches!(login, LoginState::SignedIn(_)) {
        return;
    }
    state.inner.logins.remove(session);
    tracing::info!(target: "web", session = %session, "login completed through the web");
    let engine = &state.inner.engine;
    if let Ok(known) = engine.pause_agents(vec![session.clone()]).await
        && !known.is_empty()
    {
        let _ = engine.resume_agents(known).await;
    }
}

fn flow_of(
    state: &AppState,
    session: &str,
) -> Result<(SessionName, Arc<tokio::sync::Mutex<Flow>>), ApiError> {
    let session = constraints::session_name("session", session)?;
    let flow = state.inner.logins.get(&session).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no login in progress for {session}; start one with POST /api/logins"
        ))
    })?;
    Ok((session, flow))
}

fn status_of(session: &SessionName, login: &LoginState) -> LoginStatus {
    LoginStatus {
        success: true,
        session: session.as_str().to_owned(),
        login: serde_json::to_value(login).unwrap_or(Value::Null),
    }
}

/// A failed step as an API error. `field` is the request field the step took.
fn step_error(error: LoginStepError, field: &'static str) -> ApiError {
    match error {
        LoginStepError::Phone(error) => {
            ApiError::invalid_because("phone", Reason::Text(error.reason.to_owned()))
        }
        LoginStepError::OutOfOrder { .. } => ApiError::StateConflict(error.to_string()),
        LoginStepError::Telegram(LoginError::FloodWait { seconds }) => ApiError::TooManyRequests {
            retry_after_seconds: u64::from(seconds),
        },
        LoginStepError::Telegram(
            error @ (LoginError::InvalidPhone
            | LoginError::PhoneBanned
            | LoginError::SignUpRequired),
        ) => ApiError::rejected("phone", Reason::Text(error.to_string())),
        // Telegram refused a well-formed value (a wrong or expired code, a wrong password).
        LoginStepError::Telegram(error) => {
            ApiError::rejected(field, Reason::Text(error.to_string()))
        }
    }
}
