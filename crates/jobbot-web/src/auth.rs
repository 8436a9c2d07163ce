//! Who may use the API: one administrator (a password) and scripts (API tokens).
//!
//! - A browser logs in with the admin password and gets a session cookie (random 256-bit id,
//!   `HttpOnly`, `SameSite=Strict`, `Max-Age` its remaining lifetime, `Secure` when the browser
//!   reached a trusted proxy over TLS). A session ends [`AuthSettings::session_lifetime`] after
//!   the login however active it is, so an open tab that polls cannot keep it alive for ever,
//!   and earlier after [`AuthSettings::session_idle`] without a request. State-changing requests
//!   with the cookie must carry the session's CSRF token in `X-CSRF-Token` (derived from the
//!   session id, so nothing but the id's digest is stored).
//! - A script sends `Authorization: Bearer <token>`. Tokens expire (90 days unless asked
//!   otherwise), are shown once when created and kept as SHA-256 digests; `JOBBOT_API_TOKEN`
//!   adds one that lives as long as the variable. A bearer request needs no CSRF token: a
//!   browser never attaches one by itself.
//! - Sessions and tokens are in the store, so they survive a restart.
//! - Failed logins and unknown tokens are limited per client, per network and in total (see
//!   [`crate::client`]); a limited client gets 429 before its guess is even checked.
//! - The admin password must have at least [`MIN_PASSWORD_CHARS`] characters and
//!   `JOBBOT_API_TOKEN` at least [`MIN_TOKEN_CHARS`]; a weaker one stops the start.
//!
//! Invariant: the admin password, session ids and API tokens exist here only as digests, and no
//! response or log line carries them (the one exception is the response that creates a token).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use jobbot_core::store::{ApiTokenRecord, SecretDigest, Store, UnixMillis, WebSession};
use jobbot_engine::EngineClock;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use utoipa::ToSchema;

use crate::AppState;
use crate::client::{Bucket, ClientInfo};
use crate::constraints::Checks;
use crate::error::{ApiError, ErrorBody};
use crate::json::ApiJson;
use crate::metrics::WebMetrics;

/// The name of the session cookie.
pub const SESSION_COOKIE: &str = "jobbot_session";
/// The header that carries the CSRF token of a cookie session.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The shortest admin password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The shortest `JOBBOT_API_TOKEN` accepted (the generated ones have 68).
pub const MIN_TOKEN_CHARS: usize = 32;
/// The id under which `JOBBOT_API_TOKEN` is listed.
pub const ENV_TOKEN_ID: &str = "env";
/// How long a created token works unless the request says otherwise, and at most.
pub const DEFAULT_TOKEN_DAYS: u32 = 90;
pub const MAX_TOKEN_DAYS: u32 = 365;
/// A session's last request is written to the store at most this often.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// How many failures each bucket may count per [`FAILURE_WINDOW`]: per client, per network,
/// in total.
const LOGIN_FAILURES: [usize; 3] = [5, 20, 100];
const TOKEN_FAILURES: [usize; 3] = [20, 60, 300];
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// A secret in the environment that is too short to be one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeakSecret {
    #[error(
        "JOBBOT_ADMIN_PASSWORD has {length} characters; it needs at least {MIN_PASSWORD_CHARS} (or unset it to have one generated)"
    )]
    Password { length: usize },
    #[error("JOBBOT_API_TOKEN has {length} characters; it needs at least {MIN_TOKEN_CHARS}")]
    Token { length: usize },
}

/// An admin password that was generated because none was configured. The caller prints it once;
/// nothing in this crate logs it.
pub struct GeneratedPassword(pub String);

impl std::fmt::Debug for GeneratedPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GeneratedPassword(..)")
    }
}

/// The credentials and session rules the web starts with.
#[derive(Clone)]
pub struct AuthSettings {
    admin_password: String,
    api_token: Option<String>,
    /// A session ends this long after its login, however active.
    pub session_lifetime: Duration,
    /// A session ends after this long without a request.
    pub session_idle: Duration,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field("admin_password", &"<redacted>")
            .field("api_token", &self.api_token.as_ref().map(|_| "<redacted>"))
            .field("session_lifetime", &self.session_lifetime)
            .field("session_idle", &self.session_idle)
            .finish()
    }
}

impl AuthSettings {
    /// `admin_password` is `JOBBOT_ADMIN_PASSWORD`, `api_token` is `JOBBOT_API_TOKEN`; both are
    /// refused when too short.
    pub fn new(admin_password: &str, api_token: Option<&str>) -> Result<Self, WeakSecret> {
        let length = admin_password.chars().count();
        if length < MIN_PASSWORD_CHARS {
            return Err(WeakSecret::Password { length });
        }
        let api_token = api_token.filter(|token| !token.is_empty());
        if let Some(token) = api_token {
            let length = token.chars().count();
            if length < MIN_TOKEN_CHARS {
                return Err(WeakSecret::Token { length });
            }
        }
        Ok(Self {
            admin_password: admin_password.to_owned(),
            api_token: api_token.map(str::to_owned),
            session_lifetime: Duration::from_secs(12 * 3600),
            session_idle: Duration::from_secs(2 * 3600),
        })
    }

    /// Like [`AuthSettings::new`], generating a password when none is set (returned for the
    /// caller to show once).
    pub fn or_generated(
        admin_password: Option<&str>,
        api_token: Option<&str>,
    ) -> Result<(Self, Option<GeneratedPassword>), WeakSecret> {
        match admin_password.filter(|password| !password.is_empty()) {
            Some(password) => Ok((Self::new(password, api_token)?, None)),
            None => {
                let password = random_hex(16);
                let settings = Self::new(&password, api_token)?;
                Ok((settings, Some(GeneratedPassword(password))))
            }
        }
    }
}

/// The authentication state of the server. Cheap to clone; clones share it.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<AuthInner>,
}

struct AuthInner {
    password: SecretDigest,
    env_token: Option<SecretDigest>,
    session_lifetime: Duration,
    session_idle: Duration,
    store: Arc<dyn Store>,
    clock: EngineClock,
    login_failures: Mutex<FailureLimiter>,
    token_failures: Mutex<FailureLimiter>,
    metrics: Arc<WebMetrics>,
}

/// How a request was authenticated; handlers that care take it from the request extensions.
#[derive(Clone)]
pub enum Principal {
    Cookie {
        csrf: String,
        /// When the session ends for good.
        expires_at: UnixMillis,
    },
    Token {
        id: String,
    },
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Cookie { expires_at, .. } => f
                .debug_struct("Cookie")
                .field("csrf", &"<redacted>")
                .field("expires_at", expires_at)
                .finish(),
            Principal::Token { id } => f.debug_struct("Token").field("id", id).finish(),
        }
    }
}

impl Auth {
    pub(crate) fn new(
        settings: &AuthSettings,
        store: Arc<dyn Store>,
        clock: EngineClock,
        metrics: Arc<WebMetrics>,
    ) -> Self {
        Self {
            inner: Arc::new(AuthInner {
                password: SecretDigest::of(&settings.admin_password),
                env_token: settings.api_token.as_deref().map(SecretDigest::of),
                session_lifetime: settings.session_lifetime,
                session_idle: settings.session_idle,
                store,
                clock,
                login_failures: Mutex::new(FailureLimiter::new(LOGIN_FAILURES)),
                token_failures: Mutex::new(FailureLimiter::new(TOKEN_FAILURES)),
                metrics,
            }),
        }
    }

    fn now(&self) -> UnixMillis {
        self.inner.clock.now_unix()
    }

    /// Who sent `headers`: a bearer token is judged alone (a bad token is not rescued by a
    /// cookie); otherwise the session cookie.
    async fn authenticate(
        &self,
        headers: &HeaderMap,
        client: ClientInfo,
    ) -> Result<Principal, ApiError> {
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|value| value.strip_prefix("Bearer "))
                .map(str::trim)
                .unwrap_or_default();
            return self.authenticate_token(token, client).await;
        }
        let id = session_cookie(headers).ok_or(ApiError::Unauthorized)?;
        self.cookie_session(&id)
            .await?
            .ok_or(ApiError::Unauthorized)
    }

    async fn authenticate_token(
        &self,
        token: &str,
        client: ClientInfo,
    ) -> Result<Principal, ApiError> {
        let now = Instant::now();
        lock(&self.inner.token_failures)
            .check(&client, now)
            .map_err(|wait| {
                self.inner.metrics.auth_limit("bearer");
                too_many(wait)
            })?;
        let digest = SecretDigest::of(token);
        if self
            .inner
            .env_token
            .is_some_and(|known| known.matches(&digest))
        {
            return Ok(Principal::Token {
                id: ENV_TOKEN_ID.to_owned(),
            });
        }
        let at = self.now();
        match self.inner.store.api_token_by_digest(&digest, at).await? {
            Some(record) => {
                let stale = record
                    .last_used_at
                    .is_none_or(|last| at.0.saturating_sub(last.0) >= millis(TOUCH_EVERY));
                if stale {
                    self.inner.store.touch_api_token(&record.id, at).await?;
                }
                Ok(Principal::Token { id: record.id })
            }
            None => {
                lock(&self.inner.token_failures).record_failure(&client, now);
                self.inner.metrics.auth_failure("bearer");
                tracing::warn!(target: "web", client = ?client.ip, "unknown API token");
                Err(ApiError::Unauthorized)
            }
        }
    }

    /// The live session with cookie value `id`, refreshing its idle timer.
    async fn cookie_session(&self, id: &str) -> Result<Option<Principal>, ApiError> {
        let digest = SecretDigest::of(id);
        let now = self.now();
        let Some(session) = self.inner.store.web_session(&digest, now).await? else {
            return Ok(None);
        };
        let idle = now.0.saturating_sub(session.last_seen_at.0);
        if idle >= millis(self.inner.session_idle) {
            self.inner.store.end_web_session(&digest).await?;
            return Ok(None);
        }
        if idle >= millis(TOUCH_EVERY) {
            self.inner.store.touch_web_session(&digest, now).await?;
        }
        Ok(Some(Principal::Cookie {
            csrf: csrf_of(id),
            expires_at: session.expires_at,
        }))
    }

    /// The CSRF token of the cookie session a page request carries, if it is live.
    pub(crate) async fn page_session(&self, headers: &HeaderMap) -> Option<String> {
        let id = session_cookie(headers)?;
        match self.cookie_session(&id).await {
            Ok(Some(Principal::Cookie { csrf, .. })) => Some(csrf),
            Ok(_) => None,
            Err(error) => {
                tracing::error!(target: "web", %error, "could not read a web session");
                None
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn too_many(wait: Duration) -> ApiError {
    ApiError::TooManyRequests {
        retry_after_seconds: wait.as_secs().max(1),
    }
}

/// The CSRF token of a session: a digest of its id under another name, so the store (which
/// holds the id's plain digest) cannot give it away, and a page can be given it on every render.
fn csrf_of(session_id: &str) -> String {
    hex::encode(SecretDigest::of(&format!("jobbot csrf token\0{session_id}")).0)
}

/// A sliding window of failures in each of a client's buckets. Pure in `now`, so tests need no
/// clock.
#[derive(Debug)]
struct FailureLimiter {
    limits: [usize; 3],
    failures: HashMap<Bucket, VecDeque<Instant>>,
}

impl FailureLimiter {
    fn new(limits: [usize; 3]) -> Self {
        Self {
            limits,
            failures: HashMap::new(),
        }
    }

    fn forget_old(&mut self, now: Instant) {
        self.failures.retain(|_, times| {
            while times
                .front()
                .is_some_and(|at| now.duration_since(*at) >= FAILURE_WINDOW)
            {
                times.pop_front();
            }
            !times.is_empty()
        });
    }

    /// `Err(wait)` while any of the client's buckets is full.
    fn check(&mut self, client: &ClientInfo, now: Instant) -> Result<(), Duration> {
        self.forget_old(now);
        let mut wait = None;
        for (bucket, limit) in client.buckets().iter().zip(self.limits) {
            if let Some(times) = self.failures.get(bucket)
                && times.len() >= limit
            {
                let oldest = times.front().copied().unwrap_or(now);
                let left = FAILURE_WINDOW.saturating_sub(now.duration_since(oldest));
                wait = Some(wait.map_or(left, |known: Duration| known.max(left)));
            }
        }
        wait.map_or(Ok(()), Err)
    }

    fn record_failure(&mut self, client: &ClientInfo, now: Instant) {
        let buckets = client.buckets();
        // A client without an address has the same bucket twice; count it once.
        for (index, bucket) in buckets.iter().enumerate() {
            if buckets[..index].contains(bucket) {
                continue;
            }
            self.failures.entry(*bucket).or_default().push_back(now);
        }
    }
}

/// Middleware on every route but the login page, the login call, health and assets.
pub async fn require_auth(
    State(state): State<AppState>,
    client: ClientInfo,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let principal = state
        .inner
        .auth
        .authenticate(request.headers(), client)
        .await?;
    if let Principal::Cookie { csrf, .. } = &principal
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
        if !SecretDigest::of(presented).matches(&SecretDigest::of(csrf)) {
            return Err(ApiError::Forbidden(
                "a request with a session cookie must carry the session's X-CSRF-Token header",
            ));
        }
    }
    request.extensions_mut().insert(principal);
    Ok(next.run(request).await)
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

/// The `Set-Cookie` value of a session cookie: `id` for `max_age`, or cleared.
fn session_cookie_header(id: Option<&str>, max_age: Duration, https: bool) -> HeaderValue {
    let secure = if https { "; Secure" } else { "" };
    let value = match id {
        Some(id) => format!(
            "{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
            max_age.as_secs()
        ),
        None => format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}"),
    };
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// No `Debug`: it holds a secret, which must never be printed.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The admin password.
    #[schema(min_length = 1, max_length = 1024)]
    password: String,
}

/// The state of the caller's own authentication (no `Debug`: it holds the CSRF token).
#[derive(Serialize, ToSchema)]
pub struct SessionInfo {
    pub success: bool,
    pub authenticated: bool,
    /// `cookie` or `token`.
    #[schema(pattern = "^(cookie|token)$")]
    pub method: &'static str,
    /// For a cookie session: send it as `X-CSRF-Token` with every POST, PUT and DELETE.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
    /// For a cookie session: when it ends, however active (Unix ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at_unix_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
}

/// Logs in with the admin password and opens a cookie session.
#[utoipa::path(post, path = "/api/login", tag = "auth", request_body = LoginRequest,
    security(()),
    responses((status = 200, body = SessionInfo, description = "Logged in; the session cookie is set"),
              (status = 401, body = ErrorBody, description = "Wrong password"),
              (status = 422, body = ErrorBody), (status = 429, body = ErrorBody,
               description = "Too many failed logins from this client; see Retry-After")))]
pub async fn login(
    State(state): State<AppState>,
    client: ClientInfo,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    let auth = &state.inner.auth;
    let inner = &auth.inner;
    let now = Instant::now();
    lock(&inner.login_failures)
        .check(&client, now)
        .map_err(|wait| {
            inner.metrics.auth_limit("password");
            too_many(wait)
        })?;
    if !SecretDigest::of(&body.password).matches(&inner.password) {
        lock(&inner.login_failures).record_failure(&client, now);
        inner.metrics.auth_failure("password");
        tracing::warn!(target: "web", client = ?client.ip, "failed admin login");
        return Err(ApiError::Unauthorized);
    }
    let at = auth.now();
    inner.store.purge_expired_auth(at).await?;
    let id = random_hex(32);
    let expires_at = UnixMillis(at.0.saturating_add(millis(inner.session_lifetime)));
    inner
        .store
        .create_web_session(&WebSession {
            digest: SecretDigest::of(&id),
            created_at: at,
            expires_at,
            last_seen_at: at,
        })
        .await?;
    tracing::info!(target: "web", client = ?client.ip, "admin logged in");
    let mut response = Json(SessionInfo {
        success: true,
        authenticated: true,
        method: "cookie",
        csrf_token: Some(csrf_of(&id)),
        expires_at_unix_ms: Some(expires_at.0),
        token_id: None,
    })
    .into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie_header(Some(&id), inner.session_lifetime, client.https),
    );
    Ok(response)
}

/// Ends the caller's cookie session.
#[utoipa::path(post, path = "/api/logout", tag = "auth",
    responses((status = 204, description = "Logged out; the cookie is cleared")))]
pub async fn logout(
    State(state): State<AppState>,
    client: ClientInfo,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(id) = session_cookie(&headers) {
        state
            .inner
            .auth
            .inner
            .store
            .end_web_session(&SecretDigest::of(&id))
            .await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie_header(None, Duration::ZERO, client.https),
    );
    Ok(response)
}

/// Who the caller is, and the CSRF token of a cookie session.
#[utoipa::path(get, path = "/api/session", tag = "auth",
    responses((status = 200, body = SessionInfo)))]
pub async fn session(principal: axum::Extension<Principal>) -> Json<SessionInfo> {
    Json(match principal.0 {
        Principal::Cookie { csrf, expires_at } => SessionInfo {
            success: true,
            authenticated: true,
            method: "cookie",
            csrf_token: Some(csrf),
            expires_at_unix_ms: Some(expires_at.0),
            token_id: None,
        },
        Principal::Token { id } => SessionInfo {
            success: true,
            authenticated: true,
            method: "token",
            csrf_token: None,
            expires_at_unix_ms: None,
            token_id: Some(id),
        },
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    /// Absent for `JOBBOT_API_TOKEN`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at_unix_ms: Option<i64>,
    /// When it stops working; absent for `JOBBOT_API_TOKEN`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at_unix_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at_unix_ms: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    pub success: bool,
    pub tokens: Vec<TokenInfo>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenRequest {
    /// What the token is for (shown in the list): 1 to 100 characters, not only blanks.
    #[schema(schema_with = crate::constraints::token_name_schema)]
    name: String,
    /// Days until it stops working: 1 to 365; 90 when absent.
    #[schema(schema_with = crate::constraints::token_days_schema)]
    expires_in_days: Option<u32>,
}

/// A token just created: the only response that ever holds it (no `Debug`).
#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    pub success: bool,
    pub id: String,
    pub name: String,
    /// Send as `Authorization: Bearer <token>`. Shown once; only its digest is kept.
    pub token: String,
    pub expires_at_unix_ms: i64,
}

/// Every API token that works (ids, names and dates only).
#[utoipa::path(get, path = "/api/tokens", tag = "auth",
    responses((status = 200, body = TokenList)))]
pub async fn list_tokens(State(state): State<AppState>) -> Result<Json<TokenList>, ApiError> {
    let auth = &state.inner.auth;
    let mut tokens = Vec::new();
    if auth.inner.env_token.is_some() {
        tokens.push(TokenInfo {
            id: ENV_TOKEN_ID.to_owned(),
            name: "JOBBOT_API_TOKEN".to_owned(),
            created_at_unix_ms: None,
            expires_at_unix_ms: None,
            last_used_at_unix_ms: None,
        });
    }
    for record in auth.inner.store.api_tokens(auth.now()).await? {
        tokens.push(TokenInfo {
            id: record.id,
            name: record.name,
            created_at_unix_ms: Some(record.created_at.0),
            expires_at_unix_ms: Some(record.expires_at.0),
            last_used_at_unix_ms: record.last_used_at.map(|at| at.0),
        });
    }
    Ok(Json(TokenList {
        success: true,
        tokens,
    }))
}

/// Creates an API token for a script.
#[utoipa::path(post, path = "/api/tokens", tag = "auth", request_body = NewTokenRequest,
    responses((status = 201, body = CreatedToken), (status = 422, body = ErrorBody)))]
pub async fn create_token(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewTokenRequest>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let days = body.expires_in_days.unwrap_or(DEFAULT_TOKEN_DAYS);
    let mut checks = Checks::new();
    checks.length("name", &body.name, 1, crate::constraints::TOKEN_NAME_MAX);
    checks.rule("name", &body.name, crate::constraints::NON_BLANK);
    checks.range(
        "expires_in_days",
        i64::from(days),
        1,
        i64::from(MAX_TOKEN_DAYS),
    );
    checks.finish()?;
    let name = body.name.trim();
    let auth = &state.inner.auth;
    let token = format!("jbt_{}", random_hex(32));
    let id = format!("tok_{}", random_hex(6));
    let created_at = auth.now();
    let expires_at = UnixMillis(created_at.0.saturating_add(i64::from(days) * 86_400_000));
    auth.inner
        .store
        .create_api_token(&ApiTokenRecord {
            id: id.clone(),
            name: name.to_owned(),
            digest: SecretDigest::of(&token),
            created_at,
            expires_at,
            last_used_at: None,
        })
        .await?;
    tracing::info!(target: "web", token_id = %id, days, "API token created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            success: true,
            id,
            name: name.to_owned(),
            token,
            expires_at_unix_ms: expires_at.0,
        }),
    ))
}

/// Revokes an API token. `JOBBOT_API_TOKEN` (id `env`) is revoked by unsetting the variable.
#[utoipa::path(delete, path = "/api/tokens/{id}", tag = "auth",
    params(("id" = String, Path, description = "The token's id")),
    responses((status = 204, description = "Revoked"), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "The token comes from JOBBOT_API_TOKEN")))]
pub async fn revoke_token(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if id == ENV_TOKEN_ID {
        return Err(ApiError::StateConflict(
            "this token is JOBBOT_API_TOKEN; unset the variable and restart to revoke it".into(),
        ));
    }
    if !state.inner.auth.inner.store.revoke_api_token(&id).await? {
        return Err(ApiError::NotFound(format!("no API token {id:?}")));
    }
    tracing::info!(target: "web", token_id = %id, "API token revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// The login page: the one page served without authentication.
#[utoipa::path(get, path = "/login", tag = "auth", security(()),
    responses((status = 200, content_type = "text/html", body = String, description = "The login form")))]
pub async fn login_page(headers: HeaderMap) -> Html<String> {
    Html(crate::pages::admin_login_page(crate::pages::lang_of(
        &headers,
    )))
}

pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::fill(&mut buffer[..]);
    hex::encode(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(ip: &str) -> ClientInfo {
        ClientInfo {
            ip: Some(ip.parse().unwrap()),
            https: false,
        }
    }

    #[test]
    fn short_secrets_are_refused_naming_the_variable() {
        let error = AuthSettings::new("short", None).unwrap_err();
        assert_eq!(error, WeakSecret::Password { length: 5 });
        assert!(
            error
                .to_string()
                .starts_with("JOBBOT_ADMIN_PASSWORD has 5 characters")
        );
        let error = AuthSettings::new("a-long-enough-password", Some("jbt_short")).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("JOBBOT_API_TOKEN has 9 characters")
        );
        // Characters, not bytes: twelve Cyrillic letters are a password.
        assert!(AuthSettings::new("парольпароль", None).is_ok());
        let (_, generated) = AuthSettings::or_generated(None, None).unwrap();
        assert!(generated.unwrap().0.chars().count() >= MIN_PASSWORD_CHARS);
        assert!(
            !format!(
                "{:?}",
                AuthSettings::new("a-long-enough-password", None).unwrap()
            )
            .contains("a-long-enough-password")
        );
    }

    #[test]
    fn failures_are_limited_per_client_per_network_and_in_total() {
        let start = Instant::now();
        let mut limiter = FailureLimiter::new([2, 3, 5]);
        let one = client("198.51.100.1");
        limiter.record_failure(&one, start);
        assert!(limiter.check(&one, start).is_ok());
        limiter.record_failure(&one, start);
        let wait = limiter.check(&one, start).unwrap_err();
        assert_eq!(wait, FAILURE_WINDOW);
        // A neighbour is still allowed until the network's bucket fills.
        let neighbour = client("198.51.100.2");
        assert!(limiter.check(&neighbour, start).is_ok());
        limiter.record_failure(&neighbour, start);
        assert!(limiter.check(&client("198.51.100.3"), start).is_err());
        // Another network still has its own allowance, until everyone's fills.
        let far = client("203.0.113.9");
        assert!(limiter.check(&far, start).is_ok());
        limiter.record_failure(&far, start);
        limiter.record_failure(&client("192.0.2.1"), start);
        assert!(limiter.check(&client("192.0.2.2"), start).is_err());
        // The window slides.
        assert!(limiter.check(&one, start + FAILURE_WINDOW).is_ok());
    }

    #[test]
    fn rotating_ipv6_addresses_within_a_64_does_not_escape_the_limit() {
        let start = Instant::now();
        let mut limiter = FailureLimiter::new(LOGIN_FAILURES);
        for host in 0..LOGIN_FAILURES[0] {
            let rotating = client(&format!("2001:db8:0:1::{:x}", host + 1));
            assert!(limiter.check(&rotating, start).is_ok());
            limiter.record_failure(&rotating, start);
        }
        assert!(limiter.check(&client("2001:db8:0:1::ffff"), start).is_err());
        assert!(limiter.check(&client("2001:db8:0:2::1"), start).is_ok());
    }

    #[test]
    fn cookies_carry_max_age_and_secure_behind_tls() {
        let plain = session_cookie_header(Some("abc"), Duration::from_secs(3600), false);
        assert_eq!(
            plain,
            "jobbot_session=abc; HttpOnly; SameSite=Strict; Path=/; Max-Age=3600"
        );
        let secure = session_cookie_header(Some("abc"), Duration::from_secs(60), true);
        assert!(secure.to_str().unwrap().ends_with("; Max-Age=60; Secure"));
        let cleared = session_cookie_header(None, Duration::ZERO, false);
        assert!(cleared.to_str().unwrap().contains("Max-Age=0"));
    }
}
