//! jobbot's web interface: the authenticated JSON API over the engine and the configuration
//! store, a WebSocket with live agent states and counters, Prometheus metrics, and the OpenAPI
//! document generated from the handlers.
//!
//! Invariants:
//! - The web never opens a Telegram session or the configuration file itself: it asks the engine
//!   (status, pause/resume, logins through the engine's connector) and the [`ConfigStore`] (every
//!   write, with the revision it was based on). A write is live as soon as the store publishes it;
//!   nothing restarts.
//! - Every route but the login page and the login call requires authentication (see [`auth`]);
//!   the admin pages ([`pages`]) send a browser without a session to the login page.
//! - No response or log line holds a session id, an API token (except once, when created), the
//!   admin password, a login code or a 2FA password; phone numbers in logs are masked.

mod agents;
pub mod auth;
mod channels;
mod error;
mod json;
mod live;
mod logins;
mod outbox;
pub mod pages;
mod stats;
mod vacancies;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use jobbot_core::telegram::AccountConnector;
use jobbot_engine::Engine;
use jobbot_engine::supervisor::TaskStatus;
use jobbot_store::ConfigStore;
use tokio::net::TcpListener;
use tokio::sync::watch;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::{Auth, GeneratedPassword};
/// The web framework, for callers that build extra routes for [`serve_with`].
pub use axum;
pub use error::{ApiError, ErrorBody, Problem};

/// What the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<StateInner>,
}

struct StateInner {
    engine: Engine,
    config: ConfigStore,
    auth: Auth,
    /// The engine's connector, for logins only: `begin_login` takes the session's lock, so a
    /// login can never run beside the engine's owner of the same session.
    connector: Arc<dyn AccountConnector>,
    logins: logins::LoginRegistry,
    counters: stats::Counters,
    openapi: OnceLock<String>,
    /// Flips to `true` when the server shuts down, so long-lived WebSockets close and graceful
    /// shutdown does not wait for them forever.
    shutdown: watch::Sender<bool>,
    /// The process's supervised tasks, when the process supervises them (`jobbot run`).
    tasks: OnceLock<watch::Receiver<Vec<TaskStatus>>>,
}

impl AppState {
    /// Starts the counters task (it follows the engine's events), so call it inside the runtime.
    pub fn new(
        engine: Engine,
        config: ConfigStore,
        auth: Auth,
        connector: Arc<dyn AccountConnector>,
    ) -> Self {
        let counters = stats::Counters::start(&engine);
        Self {
            inner: Arc::new(StateInner {
                engine,
                config,
                auth,
                connector,
                logins: logins::LoginRegistry::default(),
                counters,
                openapi: OnceLock::new(),
                shutdown: watch::channel(false).0,
                tasks: OnceLock::new(),
            }),
        }
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

/// The whole HTTP surface. Serve it with connect info (see [`serve`]) so login attempts are
/// limited per client address.
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
    let _ = state.inner.openapi.get_or_init(|| {
        openapi()
            .to_pretty_json()
            .expect("the OpenAPI document serialises")
    });
    let (public, _) = public_routes().split_for_parts();
    protected
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_auth,
        ))
        .merge(public)
        .with_state(state.clone())
        .merge(pages::protected_pages(state))
        .merge(pages::public_pages())
        .merge(extra)
}

/// The OpenAPI document of every route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    protected_routes().merge(public_routes()).into_openapi()
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
    let router = app_with(state, extra);
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        stop.send_replace(true);
    })
    .await
}

#[derive(OpenApi)]
#[openapi(
    info(title = "jobbot", description = "Channels, agent pools, logins and live status of jobbot."),
    modifiers(&SecuritySchemes),
    security(("bearer" = []), ("session_cookie" = [])),
    tags(
        (name = "auth", description = "Admin login, sessions and API tokens"),
        (name = "channels", description = "Output channels and their agents (written through the config store)"),
        (name = "agents", description = "Agent accounts and their live state"),
        (name = "logins", description = "Telegram logins of the main account and agents"),
        (name = "status", description = "Statistics, metrics, the live WebSocket and this document"),
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
        .routes(routes!(agents::list_agents))
        .routes(routes!(agents::pause_agents))
        .routes(routes!(agents::resume_agents))
        .routes(routes!(logins::begin_login))
        .routes(routes!(logins::login_status, logins::cancel_login))
        .routes(routes!(logins::submit_phone))
        .routes(routes!(logins::submit_code))
        .routes(routes!(logins::submit_password))
        .routes(routes!(stats::stats))
        .routes(routes!(vacancies::list_vacancies))
        .routes(routes!(outbox::list_ended))
        .routes(routes!(stats::metrics))
        .routes(routes!(live::live))
        .routes(routes!(openapi_json))
}

fn public_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(auth::login))
        .routes(routes!(auth::login_page))
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "status",
    responses((status = 200, content_type = "application/json", description = "OpenAPI 3 document")))]
async fn openapi_json(State(state): State<AppState>) -> impl IntoResponse {
    let document = state.inner.openapi.get().cloned().unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], document)
}
