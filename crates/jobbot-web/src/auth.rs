//! Who may use the API: one administrator (a password) and scripts (API tokens).
//!
//! - A browser logs in with the admin password and gets a session cookie (random 256-bit id,
//!   `HttpOnly`, `SameSite=Strict`). State-changing requests with that cookie must carry the
//!   session's CSRF token in `X-CSRF-Token`; `SameSite` alone does not cover older browsers or
//!   same-site subdomains.
//! - A script sends `Authorization: Bearer <token>`. Tokens are kept only as SHA-256 digests and
//!   shown once, when created. A bearer request needs no CSRF token: a browser never attaches one
//!   by itself.
//! - Login attempts are limited per client address.
//!
//! Invariant: the admin password, session ids and API tokens exist here only as digests, and no
//! response or log line carries them (the one exception is the response that creates a token).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::ApiError;
use crate::json::ApiJson;

/// The name of the session cookie.
pub const SESSION_COOKIE: &str = "jobbot_session";
/// The header that carries the CSRF token of a cookie session.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Login attempts allowed per client address per [`LOGIN_WINDOW`].
pub const LOGIN_ATTEMPTS_PER_WINDOW: usize = 5;
pub const LOGIN_WINDOW: Duration = Duration::from_secs(60);
/// A session ends after this long without a request.
const SESSION_IDLE_LIMIT: Duration = Duration::from_secs(12 * 3600);

type Digest32 = [u8; 32];

/// The authentication state of the server. Cheap to clone; clones share it.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<AuthInner>,
}

struct AuthInner {
    password: Digest32,
    sessions: Mutex<HashMap<Digest32, CookieSession>>,
    tokens: Mutex<Vec<ApiToken>>,
    limiter: Mutex<LoginLimiter>,
}

struct CookieSession {
    csrf: String,
    last_used: Instant,
}

struct ApiToken {
    id: String,
    name: String,
    digest: Digest32,
}

/// An admin password that was generated because none was configured. The caller prints it once;
/// nothing in this crate logs it.
pub struct GeneratedPassword(pub String);

impl std::fmt::Debug for GeneratedPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GeneratedPassword(..)")
    }
}

impl Auth {
    /// `admin_password` is `JOBBOT_ADMIN_PASSWORD`; when it is unset or empty a password is
    /// generated and returned for the caller to print once. `api_token` is `JOBBOT_API_TOKEN`,
    /// registered under the id `env`.
    pub fn new(
        admin_password: Option<&str>,
        api_token: Option<&str>,
    ) -> (Self, Option<GeneratedPassword>) {
        let (password, generated) = match admin_password.filter(|p| !p.is_empty()) {
            Some(password) => (password.to_owned(), None),
            None => {
                let password = random_hex(16);
                (password.clone(), Some(GeneratedPassword(password)))
            }
        };
        let auth = Self {
            inner: Arc::new(AuthInner {
                password: digest(&password),
                sessions: Mutex::default(),
                tokens: Mutex::default(),
                limiter: Mutex::default(),
            }),
        };
        if let Some(token) = api_token.filter(|t| !t.is_empty()) {
            auth.tokens().push(ApiToken {
                id: "env".into(),
                name: "JOBBOT_API_TOKEN".into(),
                digest: digest(token),
            });
        }
        (auth, generated)
    }

    /// Reads `JOBBOT_ADMIN_PASSWORD` and `JOBBOT_API_TOKEN`.
    pub fn from_env() -> (Self, Option<GeneratedPassword>) {
        let password = std::env::var("JOBBOT_ADMIN_PASSWORD").ok();
        let token = std::env::var("JOBBOT_API_TOKEN").ok();
        Self::new(password.as_deref(), token.as_deref())
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<Digest32, CookieSession>> {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn tokens(&self) -> std::sync::MutexGuard<'_, Vec<ApiToken>> {
        self.inner
            .tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn check_password(&self, candidate: &str) -> bool {
        same_digest(&digest(candidate), &self.inner.password)
    }

    /// Opens a cookie session; returns its id (for the cookie only) and its CSRF token.
    fn open_session(&self, now: Instant) -> (String, String) {
        let id = random_hex(32);
        let csrf = random_hex(32);
        let mut sessions = self.sessions();
        sessions.retain(|_, session| now.duration_since(session.last_used) < SESSION_IDLE_LIMIT);
        sessions.insert(
            digest(&id),
            CookieSession {
                csrf: csrf.clone(),
                last_used: now,
            },
        );
        (id, csrf)
    }

    /// The CSRF token of a live session, refreshing its idle timer.
    fn touch_session(&self, id: &str, now: Instant) -> Option<String> {
        let mut sessions = self.sessions();
        let key = digest(id);
        let session = sessions.get_mut(&key)?;
        if now.duration_since(session.last_used) >= SESSION_IDLE_LIMIT {
            sessions.remove(&key);
            return None;
        }
        session.last_used = now;
        Some(session.csrf.clone())
    }

    /// The CSRF token of the cookie session a page request carries (refreshing its idle timer);
    /// `None` when there is none, and the page sends the browser to the login page.
    pub(crate) fn page_session(&self, headers: &HeaderMap) -> Option<String> {
        let id = session_cookie(headers)?;
        self.touch_session(&id, Instant::now())
    }

    fn close_session(&self, id: &str) {
        self.sessions().remove(&digest(id));
    }

    fn token_id(&self, token: &str) -> Option<String> {
        let candidate = digest(token);
        // Every stored digest is compared, so the time taken does not tell which one matched.
        let mut found = None;
        for stored in self.tokens().iter() {
            if same_digest(&candidate, &stored.digest) {
                found = Some(stored.id.clone());
            }
        }
        found
    }

    fn limit_login(&self, client: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        self.inner
            .limiter
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .attempt(client, now)
    }
}

/// How a request was authenticated; handlers that care take it from the request extensions.
#[derive(Debug, Clone)]
pub enum Principal {
    Cookie { csrf: String },
    Token { id: String },
}

/// A sliding-window limiter of login attempts per client address. Pure in `now`, so tests need
/// no clock. Requests without a known address (no `ConnectInfo`) share one bucket.
#[derive(Default)]
struct LoginLimiter {
    attempts: HashMap<Option<IpAddr>, VecDeque<Instant>>,
}

impl LoginLimiter {
    /// Counts an attempt, or refuses it with how long until the oldest one leaves the window.
    fn attempt(&mut self, client: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        self.attempts.retain(|_, times| {
            while times
                .front()
                .is_some_and(|at| now.duration_since(*at) >= LOGIN_WINDOW)
            {
                times.pop_front();
            }
            !times.is_empty()
        });
        let times = self.attempts.entry(client).or_default();
        if times.len() >= LOGIN_ATTEMPTS_PER_WINDOW {
            let oldest = times.front().copied().unwrap_or(now);
            return Err(LOGIN_WINDOW.saturating_sub(now.duration_since(oldest)));
        }
        times.push_back(now);
        Ok(())
    }
}

/// The client's address, when the server was started with connect info (not in `oneshot` tests).
pub struct ClientAddress(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(address)| address.ip()),
        ))
    }
}

/// Middleware on every route but the login page and the login call.
pub async fn require_auth(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let principal = authenticate(&state.inner.auth, request.headers(), Instant::now())?;
    if let Principal::Cookie { csrf } = &principal
        && !matches!(
            *request.method(),
            Method::GET | Method::HEAD | Method::OPTIONS
        )
    {
        let presented = request
            .headers()
            .get(CSRF_HEADER)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        if !same_digest(&digest(presented), &digest(csrf)) {
            return Err(ApiError::Forbidden(
                "a request with a session cookie must carry the session's X-CSRF-Token header",
            ));
        }
    }
    request.extensions_mut().insert(principal);
    Ok(next.run(request).await)
}

fn authenticate(auth: &Auth, headers: &HeaderMap, now: Instant) -> Result<Principal, ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        // A request that names a credential is judged by it alone: a bad token is not rescued by
        // a cookie.
        let token = value
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(ApiError::Unauthorized)?;
        return auth
            .token_id(token)
            .map(|id| Principal::Token { id })
            .ok_or(ApiError::Unauthorized);
    }
    let session = session_cookie(headers).ok_or(ApiError::Unauthorized)?;
    auth.touch_session(&session, now)
        .map(|csrf| Principal::Cookie { csrf })
        .ok_or(ApiError::Unauthorized)
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The admin password.
    password: String,
}

/// The state of the caller's own authentication.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionInfo {
    pub authenticated: bool,
    /// `cookie` or `token`.
    pub method: &'static str,
    /// For a cookie session: send it as `X-CSRF-Token` with every POST, PUT and DELETE.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
}

/// Logs in with the admin password and opens a cookie session.
#[utoipa::path(post, path = "/api/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = SessionInfo, description = "Logged in; the session cookie is set"),
              (status = 401, body = crate::error::ErrorBody), (status = 429, body = crate::error::ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    ClientAddress(client): ClientAddress,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    let auth = &state.inner.auth;
    let now = Instant::now();
    auth.limit_login(client, now)
        .map_err(|wait| ApiError::TooManyRequests {
            retry_after_seconds: wait.as_secs().max(1),
        })?;
    if !auth.check_password(&body.password) {
        tracing::warn!(target: "web", client = ?client, "failed admin login");
        return Err(ApiError::Unauthorized);
    }
    let (id, csrf) = auth.open_session(now);
    let cookie = format!("{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/");
    let mut response = Json(SessionInfo {
        authenticated: true,
        method: "cookie",
        csrf_token: Some(csrf),
        token_id: None,
    })
    .into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(ApiError::internal)?,
    );
    Ok(response)
}

/// Ends the caller's cookie session.
#[utoipa::path(post, path = "/api/logout", tag = "auth",
    responses((status = 204, description = "Logged out; the cookie is cleared")))]
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        state.inner.auth.close_session(&id);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("jobbot_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    response
}

/// Who the caller is, and the CSRF token of a cookie session.
#[utoipa::path(get, path = "/api/session", tag = "auth",
    responses((status = 200, body = SessionInfo), (status = 401, body = crate::error::ErrorBody)))]
pub async fn session(principal: axum::Extension<Principal>) -> Json<SessionInfo> {
    Json(match principal.0 {
        Principal::Cookie { csrf } => SessionInfo {
            authenticated: true,
            method: "cookie",
            csrf_token: Some(csrf),
            token_id: None,
        },
        Principal::Token { id } => SessionInfo {
            authenticated: true,
            method: "token",
            csrf_token: None,
            token_id: Some(id),
        },
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenRequest {
    /// What the token is for (shown in the list).
    name: String,
}

/// A token just created: the only response that ever holds it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    pub id: String,
    pub name: String,
    /// Send as `Authorization: Bearer <token>`. Shown once; only its digest is kept.
    pub token: String,
}

/// Every API token (ids and names only).
#[utoipa::path(get, path = "/api/tokens", tag = "auth",
    responses((status = 200, body = Vec<TokenInfo>)))]
pub async fn list_tokens(State(state): State<AppState>) -> Json<Vec<TokenInfo>> {
    Json(
        state
            .inner
            .auth
            .tokens()
            .iter()
            .map(|token| TokenInfo {
                id: token.id.clone(),
                name: token.name.clone(),
            })
            .collect(),
    )
}

/// Creates an API token for a script.
#[utoipa::path(post, path = "/api/tokens", tag = "auth", request_body = NewTokenRequest,
    responses((status = 201, body = CreatedToken), (status = 422, body = crate::error::ErrorBody)))]
pub async fn create_token(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewTokenRequest>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let name = body.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::invalid("name", "must be 1 to 100 characters"));
    }
    let token = format!("jbt_{}", random_hex(32));
    let id = format!("tok_{}", random_hex(4));
    state.inner.auth.tokens().push(ApiToken {
        id: id.clone(),
        name: name.to_owned(),
        digest: digest(&token),
    });
    tracing::info!(target: "web", token_id = %id, "API token created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            id,
            name: name.to_owned(),
            token,
        }),
    ))
}

/// Revokes an API token.
#[utoipa::path(delete, path = "/api/tokens/{id}", tag = "auth",
    params(("id" = String, Path, description = "The token's id")),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn revoke_token(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut tokens = state.inner.auth.tokens();
    let before = tokens.len();
    tokens.retain(|token| token.id != id);
    if tokens.len() == before {
        return Err(ApiError::NotFound(format!("no API token {id:?}")));
    }
    tracing::info!(target: "web", token_id = %id, "API token revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// The login page: the one page served without authentication.
#[utoipa::path(get, path = "/login", tag = "auth",
    responses((status = 200, content_type = "text/html", description = "The login form")))]
pub async fn login_page(headers: HeaderMap) -> Html<String> {
    Html(crate::pages::admin_login_page(crate::pages::lang_of(
        &headers,
    )))
}

fn digest(secret: &str) -> Digest32 {
    Sha256::digest(secret.as_bytes()).into()
}

/// Compares two digests in time independent of where they differ.
fn same_digest(a: &Digest32, b: &Digest32) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::fill(&mut buffer[..]);
    hex::encode(buffer)
}
