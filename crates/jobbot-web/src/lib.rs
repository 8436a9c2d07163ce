//! jobbot's web interface: the authenticated JSON API over the engine and the configuration
//! store, the admin pages, a WebSocket with live agent states, Prometheus metrics, health
//! checks, and the OpenAPI document generated from the handlers.
//!
//! Invariants:
//! - The web never opens a Telegram session or the configuration file itself: it asks the engine
//!   (status, pause/resume, logins through the engine's connector) and the [`ConfigStore`] (every
//!   write, with the revision it was based on or as one atomic change to the current file). A
//!   write is live as soon as the store publishes it; nothing restarts.
//! - Every route but the login page and call, the health checks and the static assets requires
//!   authentication (see [`auth`]); the admin pages ([`pages`]) send a browser without a
//!   session to the login page.
//! - No response or log line holds a session id, an API token (except once, when created), the
//!   admin password, a login code, a 2FA password or a proxy password; phone numbers in logs
//!   are masked.
//! - A client cannot hold the server: headers, bodies and writes have time limits and
//!   connections and WebSockets a cap ([`server`]).

mod agents;
pub mod auth;
mod channel_setup;
mod channels;
pub mod client;
mod cluster;
mod constraints;
mod conversations;
mod doctor;
mod error;
mod health;
pub mod i18n;
mod json;
mod live;
mod logins;
pub mod metrics;
mod outbox;
pub mod pages;
mod server;
mod stats;
mod vacancies;

use std::future::Future;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use jobbot_core::telegram::AccountConnector;
use jobbot_engine::Engine;
use jobbot_engine::doctor::ApiCredentials;
use jobbot_engine::supervisor::TaskStatus;
use jobbot_store::ConfigStore;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, broadcast, watch};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::{AuthSettings, GeneratedPassword, WeakSecret};
/// The web framework, for callers that build extra routes for [`serve_with`].
pub use axum;
pub use client::TrustedProxies;
pub use error::{ApiError, ErrorBody, Problem, Reason};
pub use live::live_event;
/// The metrics library, for callers that register their own families in
/// [`WebSettings::registry`].
pub use prometheus_client;
pub use server::ServerLimits;

/// The Content-Security-Policy of every response: scripts, styles and connections from this
/// origin only (no inline script or handler), no framing, no plugins.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// How the web starts.
pub struct WebSettings {
    pub auth: AuthSettings,
    /// Proxies whose `X-Forwarded-For` / `X-Forwarded-Proto` are believed (`--trusted-proxy`).
    pub trusted_proxies: TrustedProxies,
    pub limits: ServerLimits,
    /// The process's metrics registry (prefix `jobbot`). Components other than the engine and
    /// the web register their families here before the web starts; the web adds the engine's
    /// and its own, and serves them all on `/metrics`.
    pub registry: Registry,
    /// What the Doctor page reports about `API_ID` / `API_HASH` (`jobbot run` read them before
    /// the web started); `NotNeeded` for a simulated Telegram.
    pub api_credentials: ApiCredentials,
    /// Whether a variable is set (the environment, then `DATA_DIR/.env`): the Doctor page checks
    /// the AI providers' keys with it. The environment alone unless `jobbot run` says more.
    pub variables: Variables,
}

/// Whether a variable is set, as the process reads its variables.
pub type Variables = Arc<dyn Fn(&str) -> bool + Send + Sync>;

impl WebSettings {
    pub fn new(auth: AuthSettings) -> Self {
        Self {
            auth,
            trusted_proxies: TrustedProxies::none(),
            limits: ServerLimits::default(),
            registry: Registry::with_prefix("jobbot"),
            api_credentials: ApiCredentials::NotNeeded,
            variables: Arc::new(|name: &str| {
                std::env::var(name).is_ok_and(|value| !value.trim().is_empty())
            }),
        }
    }
}

/// What the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<StateInner>,
}

struct StateInner {
    engine: Engine,
    config: ConfigStore,
    auth: auth::Auth,
    /// The engine's connector, for logins only: `begin_login` takes the session's lock, so a
    /// login can never run beside the engine's owner of the same session.
    connector: Arc<dyn AccountConnector>,
    logins: logins::LoginRegistry,
    metrics: metrics::Metrics,
    openapi: String,
    trusted_proxies: TrustedProxies,
    limits: ServerLimits,
    /// Permits for live WebSockets.
    websockets: Arc<Semaphore>,
    /// Flips to `true` when the server shuts down, so long-lived WebSockets close and graceful
    /// shutdown does not wait for them forever.
    shutdown: watch::Sender<bool>,
    /// The process's supervised tasks, when the process supervises them (`jobbot run`).
    tasks: OnceLock<watch::Receiver<Vec<TaskStatus>>>,
    api_credentials: ApiCredentials,
    variables: Variables,
    /// Held while the doctor's checks run (one run at a time).
    doctor_running: tokio::sync::Mutex<()>,
    /// Held while a channel's one-click setup runs: one at a time, so a double click cannot
    /// create two sets of chats.
    setup_running: tokio::sync::Mutex<()>,
    /// The CRM's AI conversations, when the process runs them (`jobbot run`, `jobbot demo`).
    ai: OnceLock<jobbot_engine::CrmHandle>,
    /// With several nodes: the other nodes' display events, for the live view.
    cluster_events: OnceLock<broadcast::Sender<jobbot_store::ClusterEvent>>,
}

impl AppState {
    pub fn new(
        engine: Engine,
        config: ConfigStore,
        settings: WebSettings,
        connector: Arc<dyn AccountConnector>,
    ) -> Self {
        let metrics = metrics::Metrics::new(settings.registry, &engine.metrics());
        let auth = auth::Auth::new(
            &settings.auth,
            engine.store(),
            engine.clock(),
            Arc::clone(&metrics.web),
        );
        Self {
            inner: Arc::new(StateInner {
                engine,
                config,
                auth,
                connector,
                logins: logins::LoginRegistry::default(),
                metrics,
                openapi: openapi()
                    .to_pretty_json()
                    .expect("the OpenAPI document serialises"),
                trusted_proxies: settings.trusted_proxies,
                limits: settings.limits,
                websockets: Arc::new(Semaphore::new(settings.limits.max_websockets)),
                shutdown: watch::channel(false).0,
                tasks: OnceLock::new(),
                api_credentials: settings.api_credentials,
                variables: settings.variables,
                doctor_running: tokio::sync::Mutex::new(()),
                setup_running: tokio::sync::Mutex::new(()),
                ai: OnceLock::new(),
                cluster_events: OnceLock::new(),
            }),
        }
    }

    /// The CRM whose AI conversations `/api/stats`, `/metrics` and the conversation page show
    /// (set once).
    pub fn set_crm(&self, crm: jobbot_engine::CrmHandle) {
        let _ = self.inner.ai.set(crm);
    }

    /// With several nodes: the live view also shows the other nodes' events, heard from
    /// `events` (set once).
    pub fn set_cluster_events(&self, events: broadcast::Sender<jobbot_store::ClusterEvent>) {
        let _ = self.inner.cluster_events.set(events);
    }

    /// The conversations' AI records, when the CRM runs AI conversations.
    fn ai_store(&self) -> Option<Arc<dyn jobbot_core::ai::AiStore>> {
        self.inner.ai.get().and_then(|crm| crm.ai_store())
    }

    /// Shows the supervised tasks' states in `/api/stats` and `/metrics` (set once).
    pub fn set_tasks(&self, tasks: watch::Receiver<Vec<TaskStatus>>) {
        let _ = self.inner.tasks.set(tasks);
    }

    fn tasks(&self) -> Vec<TaskStatus> {
        self.inner
            .tasks
            .get()
            .map(|tasks| tasks.borrow().clone())
            .unwrap_or_default()
    }
}

/// The whole HTTP surface. Serve it with [`serve`] (connect info, limits); routers driven
/// without a socket see no client address.
pub fn app(state: AppState) -> Router {
    app_with(state, None)
}

/// [`app`] plus `extra` routes (with their own state applied) behind the same authentication
/// and CSRF check as the API; `jobbot demo` mounts its simulator controls this way. They are
/// not in the OpenAPI document.
pub fn app_with(state: AppState, extra: Option<Router>) -> Router {
    // An empty router cannot take a route layer.
    let extra = extra
        .map(|extra| {
            extra.route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                auth::require_auth,
            ))
        })
        .unwrap_or_default();
    let (protected, _) = protected_routes().split_for_parts();
    let (public, _) = public_routes().split_for_parts();
    let limits = state.inner.limits;
    protected
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_auth,
        ))
        .merge(public)
        .with_state(state.clone())
        .merge(pages::protected_pages(state.clone()))
        .merge(pages::public_pages())
        .merge(extra)
        .fallback(not_found)
        .layer(RequestBodyTimeoutLayer::new(limits.body_timeout))
        .layer(RequestBodyLimitLayer::new(json::BODY_LIMIT))
        .layer(axum::middleware::from_fn(error::json_refusals))
        .layer(axum::middleware::from_fn(error::localize))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        // Responses carry CSRF tokens, a new API token, live state: never cached (assets say
        // otherwise themselves).
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(axum::middleware::from_fn_with_state(
            state,
            client::identify,
        ))
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such page or API route".into())
}

/// The OpenAPI document of every route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut document = protected_routes().merge(public_routes()).into_openapi();
    health::document_common_responses(&mut document);
    document
}

/// Serves [`app`] on `listener` until `shutdown` resolves, then closes live WebSockets and waits
/// for requests in progress.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, None, shutdown).await
}

/// [`serve`] with `extra` routes (see [`app_with`]).
pub async fn serve_with(
    listener: TcpListener,
    state: AppState,
    extra: Option<Router>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stop = state.inner.shutdown.clone();
    // A server started again after a failure serves live WebSockets again.
    stop.send_replace(false);
    let limits = state.inner.limits;
    let metrics = Arc::clone(&state.inner.metrics.web);
    let router = app_with(state, extra);
    server::serve(listener, router, limits, metrics, shutdown, move || {
        stop.send_replace(true);
    })
    .await
}

#[derive(OpenApi)]
#[openapi(
    info(title = "jobbot", description = "Channels, agent pools, logins and live status of jobbot. \
        Errors are JSON (`ErrorBody`) with messages in the language of `Accept-Language` (ru or en)."),
    modifiers(&SecuritySchemes),
    security(("bearer" = []), ("session_cookie" = [])),
    tags(
        (name = "auth", description = "Admin login, sessions and API tokens"),
        (name = "channels", description = "Output channels and their agents (written through the config store)"),
        (name = "agents", description = "Agent accounts and their live state"),
        (name = "logins", description = "Telegram logins of the main account and agents"),
        (name = "conversations", description = "CRM conversations' AI: history, phase, the pending suggestion, hand-over"),
        (name = "status", description = "Statistics, metrics, the live WebSocket and this document"),
        (name = "health", description = "Liveness and readiness, without login"),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            utoipa::openapi::security::SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build(),
            ),
        );
        components.add_security_scheme(
            "session_cookie",
            utoipa::openapi::security::SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                auth::SESSION_COOKIE,
            ))),
        );
    }
}

/// Every route behind authentication, with its documentation. A route registered here or in
/// [`public_routes`] is in the OpenAPI document by construction.
fn protected_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(auth::session))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::list_tokens, auth::create_token))
        .routes(routes!(auth::revoke_token))
        .routes(routes!(channels::list_channels, channels::create_channel))
        .routes(routes!(
            channels::get_channel,
            channels::update_channel,
            channels::delete_channel
        ))
        .routes(routes!(
            channels::list_channel_agents,
            channels::add_channel_agent
        ))
        .routes(routes!(channels::remove_channel_agent))
        .routes(routes!(channels::channel_agents_status))
        .routes(routes!(channels::bulk_channel_agents))
        .routes(routes!(channel_setup::set_up_channel))
        .routes(routes!(agents::list_agents))
        .routes(routes!(agents::pause_agents))
        .routes(routes!(agents::resume_agents))
        .routes(routes!(logins::begin_login))
        .routes(routes!(logins::login_status, logins::cancel_login))
        .routes(routes!(logins::submit_phone))
        .routes(routes!(logins::submit_code))
        .routes(routes!(logins::resend_code))
        .routes(routes!(logins::submit_password))
        .routes(routes!(logins::start_qr_login))
        .routes(routes!(logins::follow_qr_login))
        .routes(routes!(logins::qr_login_image))
        .routes(routes!(stats::stats))
        .routes(routes!(conversations::list_conversations))
        .routes(routes!(conversations::conversation_ai))
        .routes(routes!(conversations::send_suggestion))
        .routes(routes!(conversations::release))
        .routes(routes!(cluster::cluster))
        .routes(routes!(vacancies::list_vacancies))
        .routes(routes!(outbox::list_ended))
        .routes(routes!(doctor::doctor))
        .routes(routes!(metrics::metrics))
        .routes(routes!(live::live))
        .routes(routes!(openapi_json))
}

fn public_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(auth::login))
        .routes(routes!(auth::login_page))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "status",
    responses((status = 200, content_type = "application/json", body = Object, description = "OpenAPI 3 document")))]
async fn openapi_json(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.inner.openapi.clone(),
    )
}
