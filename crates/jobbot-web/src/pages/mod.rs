//! The admin pages: askama templates (`templates/`, compiled into the binary, HTML-escaped by
//! default) rendered from the configuration snapshot (channel list and form), or as a skeleton
//! that a small plain script fills from the JSON API (agents dashboard, vacancies, Telegram
//! logins). No front-end build: one stylesheet and one script per page, served from the binary.
//!
//! - Every page but the admin login needs the cookie session; without one the browser is sent
//!   to `/login` (the API keeps answering 401: a script must see the refusal, not a page).
//! - The pages write only through the API, with the session's CSRF token (put in the page) and
//!   the revision they were rendered from, so a stale form gets a 409 and shows a conflict.
//! - Labels come from [`crate::i18n::LABELS`]; the `lang` cookie (`ru` by default, as the seed)
//!   picks the column, and every page has a link that switches it. The scripts ask the API for
//!   its messages in the page's language (`Accept-Language`).
//! - Every page extends `templates/base.html` through a [`Layout`]; a new page is a template,
//!   a struct with a `layout` field, a route in [`protected_pages`] and, if it belongs in the
//!   navigation, an entry in [`NAV`].
//! - No inline script or event handler (the Content-Security-Policy forbids them): behaviour
//!   lives in `/static/*.js`, which build DOM with `textContent`.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use jobbot_core::config::{ChannelDocument, Pacing, mask_proxy};
use serde::Deserialize;

use crate::AppState;
pub use crate::i18n::Lang;
use crate::i18n::{labels_json, t};

/// What a page needs from the session that asked for it, put there by
/// [`require_page_session`]: its CSRF token, and whether the main account still needs a login
/// (every page then shows a banner linking to the Logins page).
#[derive(Clone)]
struct PageCsrf {
    csrf: String,
    main_login_needed: bool,
}

impl From<String> for PageCsrf {
    fn from(csrf: String) -> Self {
        Self {
            csrf,
            main_login_needed: false,
        }
    }
}

/// The navigation: `(href, page, label key)`. A page's own entry is marked current.
pub const NAV: &[(&str, &str, &str)] = &[
    ("/", "channels", "nav_channels"),
    ("/agents", "agents", "nav_agents"),
    ("/vacancies", "vacancies", "nav_vacancies"),
    ("/conversations", "conversations", "nav_conversations"),
    ("/logins", "logins", "nav_logins"),
    ("/cluster", "cluster", "nav_cluster"),
    ("/doctor", "doctor", "nav_doctor"),
];

/// The pages behind the cookie session.
pub(crate) fn protected_pages(state: AppState) -> Router {
    Router::new()
        .route("/", get(channels_page))
        .route("/channels/new", get(new_channel_page))
        .route("/channels/{id}", get(edit_channel_page))
        .route("/agents", get(agents_page))
        .route("/vacancies", get(vacancies_page))
        .route("/conversations", get(conversations_page))
        .route("/conversations/{id}", get(conversation_page))
        .route("/cluster", get(cluster_page))
        .route("/logins", get(logins_page))
        .route("/doctor", get(doctor_page))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_page_session,
        ))
        .with_state(state)
}

/// Assets and the language switch: nothing secret, served without a session.
pub(crate) fn public_pages() -> Router {
    Router::new()
        .route("/static/{name}", get(asset))
        .route("/lang/{code}", get(switch_language))
}

async fn require_page_session(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    match state.inner.auth.page_session(request.headers()).await {
        Some(csrf) => {
            let main_login_needed = main_login_needed(&state);
            request.extensions_mut().insert(PageCsrf {
                csrf,
                main_login_needed,
            });
            next.run(request).await
        }
        None => {
            let target = request
                .uri()
                .path_and_query()
                .map_or("/", |path| path.as_str());
            Redirect::to(&format!("/login?next={}", url_encode(target))).into_response()
        }
    }
}

/// The engine runs a main account that has no usable login (never logged in, or refused by
/// Telegram): `jobbot run` waits for it, and the pages say so.
fn main_login_needed(state: &AppState) -> bool {
    let engine = &state.inner.engine;
    engine.main_session().is_some_and(|main| {
        matches!(
            engine.link_states().borrow().get(main),
            Some(jobbot_engine::LinkState::NotLoggedIn | jobbot_engine::LinkState::Dead { .. })
        )
    })
}

/// The language of the `lang` cookie; Russian without one.
pub fn lang_of(headers: &HeaderMap) -> Lang {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == "lang")
        .and_then(|(_, value)| Lang::parse(value))
        .unwrap_or(Lang::Ru)
}

#[derive(Deserialize)]
struct BackQuery {
    back: Option<String>,
}

/// Sets the `lang` cookie and returns to the page the switch was clicked on.
async fn switch_language(Path(code): Path<String>, Query(query): Query<BackQuery>) -> Response {
    let lang = Lang::parse(&code).unwrap_or(Lang::Ru);
    let back = query.back.as_deref().and_then(local_path).unwrap_or("/");
    let mut response = Redirect::to(back).into_response();
    let cookie = format!(
        "lang={}; Path=/; Max-Age=31536000; SameSite=Lax",
        lang.code()
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// `path` when it can only mean a path on this site, else `None` (the caller goes to `/`).
///
/// Browsers drop tabs and line breaks anywhere in a URL and treat `\` as `/`, so
/// `/<TAB>/evil.example` and `/\evil.example` both become `//evil.example`, another site. Only
/// visible ASCII without a backslash, starting with one `/`, is taken.
pub fn local_path(path: &str) -> Option<&str> {
    let visible = path.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
    let rooted = path.starts_with('/') && !path.starts_with("//");
    (visible && rooted).then_some(path)
}

const ASSETS: &[(&str, &str, &str)] = &[
    ("app.css", "text/css", include_str!("assets/app.css")),
    (
        "common.js",
        "text/javascript",
        include_str!("assets/common.js"),
    ),
    (
        "login.js",
        "text/javascript",
        include_str!("assets/login.js"),
    ),
    (
        "login_flow.js",
        "text/javascript",
        include_str!("assets/login_flow.js"),
    ),
    (
        "channels.js",
        "text/javascript",
        include_str!("assets/channels.js"),
    ),
    (
        "channel_form.js",
        "text/javascript",
        include_str!("assets/channel_form.js"),
    ),
    (
        "agents.js",
        "text/javascript",
        include_str!("assets/agents.js"),
    ),
    (
        "vacancies.js",
        "text/javascript",
        include_str!("assets/vacancies.js"),
    ),
    (
        "logins.js",
        "text/javascript",
        include_str!("assets/logins.js"),
    ),
    (
        "doctor.js",
        "text/javascript",
        include_str!("assets/doctor.js"),
    ),
    (
        "conversations.js",
        "text/javascript",
        include_str!("assets/conversations.js"),
    ),
    (
        "cluster.js",
        "text/javascript",
        include_str!("assets/cluster.js"),
    ),
];

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(known, _, _)| *known == name) {
        Some((_, content_type, body)) => (
            [
                (
                    header::CONTENT_TYPE,
                    format!("{content_type}; charset=utf-8"),
                ),
                (header::CACHE_CONTROL, "no-cache".to_owned()),
            ],
            *body,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Percent-encodes everything but unreserved characters and `/`.
fn url_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(byte as char)
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// What every page shares (`templates/base.html`): head, navigation, language switch, the
/// labels for the script.
pub struct Layout {
    pub lang: Lang,
    /// The page's script (`/static/{page}.js`) and its navigation entry.
    pub page: &'static str,
    pub title: String,
    /// The path to come back to after switching the language, URL-encoded.
    pub back: String,
    /// The session's CSRF token; empty on the login page.
    pub csrf: String,
    /// Shows the "log in the main account" banner.
    pub main_login_needed: bool,
}

/// A navigation entry as the template shows it.
pub struct NavLink {
    pub href: &'static str,
    pub label: &'static str,
    pub active: bool,
}

impl Layout {
    fn new(
        lang: Lang,
        page: &'static str,
        title_key: &str,
        path: &str,
        session: impl Into<PageCsrf>,
    ) -> Self {
        let session = session.into();
        Self {
            lang,
            page,
            title: t(lang, title_key).to_owned(),
            back: url_encode(path),
            csrf: session.csrf,
            main_login_needed: session.main_login_needed,
        }
    }

    /// The label `key` in the page's language.
    pub fn t(&self, key: &str) -> &'static str {
        t(self.lang, key)
    }

    pub fn signed_in(&self) -> bool {
        !self.csrf.is_empty()
    }

    pub fn nav(&self) -> Vec<NavLink> {
        NAV.iter()
            .map(|(href, page, key)| NavLink {
                href,
                label: self.t(key),
                active: *page == self.page || (*page == "channels" && self.page == "channel_form"),
            })
            .collect()
    }

    pub fn other_language_name(&self) -> &'static str {
        t(self.lang.other(), "lang_name")
    }

    /// The page language's labels as JSON that cannot end the `<script>` element it sits in.
    pub fn labels_json(&self) -> String {
        labels_json(self.lang)
            .replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026")
    }
}

/// Renders a page, or a 500 whose cause is logged.
fn render(page: impl Template) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(error) => crate::ApiError::internal(error).into_response(),
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    layout: Layout,
}

/// The admin login page (public). Its script returns to `?next=` after logging in, if that is
/// a path on this site.
pub fn admin_login_page(lang: Lang) -> String {
    LoginPage {
        layout: Layout::new(lang, "login", "admin_login_title", "/login", String::new()),
    }
    .render()
    .unwrap_or_default()
}

struct ChannelCard {
    id: String,
    id_url: String,
    name: String,
    telegram_id: i64,
    enabled: bool,
    crm_enabled: bool,
    sources: usize,
    agents: usize,
    include: Vec<String>,
    exclude: Vec<String>,
}

#[derive(Template)]
#[template(path = "channels.html")]
struct ChannelsPage {
    layout: Layout,
    revision: String,
    stats: Vec<(&'static str, usize)>,
    channels: Vec<ChannelCard>,
}

async fn channels_page(
    State(state): State<AppState>,
    axum::Extension(csrf): axum::Extension<PageCsrf>,
    headers: HeaderMap,
) -> Response {
    let lang = lang_of(&headers);
    let snapshot = state.inner.config.snapshot();
    let channels = &snapshot.document.output_channels;
    let sessions: std::collections::BTreeSet<&str> = channels
        .iter()
        .flat_map(|channel| channel.agents.iter().map(|a| a.session_name.as_str()))
        .collect();
    let count = |keep: fn(&ChannelDocument) -> bool| channels.iter().filter(|c| keep(c)).count();
    render(ChannelsPage {
        layout: Layout::new(lang, "channels", "channels_title", "/", csrf),
        revision: snapshot.revision.to_string(),
        stats: vec![
            ("stat_channels", channels.len()),
            ("stat_enabled", count(|channel| channel.enabled)),
            (
                "stat_sources",
                channels
                    .iter()
                    .map(|channel| channel.input_sources.len())
                    .sum(),
            ),
            ("stat_agents", sessions.len()),
            ("stat_crm", count(|channel| channel.crm_enabled)),
        ],
        channels: channels
            .iter()
            .map(|channel| ChannelCard {
                id: channel.id.clone(),
                id_url: url_encode(&channel.id),
                name: channel.name.clone(),
                telegram_id: channel.telegram_id,
                enabled: channel.enabled,
                crm_enabled: channel.crm_enabled,
                sources: channel.input_sources.len(),
                agents: channel.agents.len(),
                include: channel.filters.include_keywords.clone(),
                exclude: channel.filters.exclude_keywords.clone(),
            })
            .collect(),
    })
}

/// An agent row of the form; the proxy masked.
struct AgentRow {
    phone: String,
    session_name: String,
    proxy: String,
    /// The agent's own pacing as JSON, kept through a save; empty for the channel's.
    pacing: String,
}

/// The channel form's values as the inputs show them.
struct ChannelForm {
    id: String,
    name: String,
    telegram_id: String,
    enabled: bool,
    input_sources: String,
    include_keywords: String,
    exclude_keywords: String,
    require_all_includes: bool,
    crm_enabled: bool,
    crm_group_id: String,
    crm_invite_link: String,
    agents: Vec<AgentRow>,
    pacing: Pacing,
    auto_response_enabled: bool,
    auto_response_template: String,
    ai_conversation_enabled: bool,
    /// `manual`, `suggest` or `auto`.
    ai_mode: &'static str,
    ai_provider: String,
    /// The file's `llm_model`; empty: the provider's default model.
    ai_model: String,
    prompts: Vec<PromptField>,
    /// `ai_config.fallback`, one provider a line, its model after a space when it names one.
    ai_fallback: String,
    ai_delay_min: u32,
    ai_delay_max: u32,
    ai_max_replies: u32,
    /// `ai_config.temperature` as the number input shows it (`0.7`).
    ai_temperature: String,
    ai_max_tokens: u32,
    ai_context_window: u32,
    instant_response: bool,
    delay_min: u32,
    delay_max: u32,
}

/// One prompt text of the form: its key (`base_context`, a phase), label key, the channel's
/// text and the built-in default it replaces (shown while the text is empty).
struct PromptField {
    key: &'static str,
    label: &'static str,
    text: String,
    default: String,
}

fn prompt_fields(own: &jobbot_core::ai::Prompts) -> Vec<PromptField> {
    let defaults = jobbot_core::ai::Prompts::defaults();
    [
        (
            "base_context",
            "prompt_base_context",
            &own.base_context,
            defaults.base_context,
        ),
        (
            "discovery",
            "prompt_discovery",
            &own.discovery,
            defaults.discovery,
        ),
        (
            "engagement",
            "prompt_engagement",
            &own.engagement,
            defaults.engagement,
        ),
        (
            "call_ready",
            "prompt_call_ready",
            &own.call_ready,
            defaults.call_ready,
        ),
        (
            "call_pending",
            "prompt_call_pending",
            &own.call_pending,
            defaults.call_pending,
        ),
        (
            "call_declined",
            "prompt_call_declined",
            &own.call_declined,
            defaults.call_declined,
        ),
    ]
    .into_iter()
    .map(|(key, label, text, default)| PromptField {
        key,
        label,
        text: text.clone(),
        default,
    })
    .collect()
}

impl ChannelForm {
    /// `ai`: the channel's AI settings as the validated configuration reads them (defaults for a
    /// new channel).
    fn of(channel: &ChannelDocument, ai: &jobbot_core::ai::AiSettings) -> Self {
        let id_text = |id: i64| {
            if id == 0 {
                String::new()
            } else {
                id.to_string()
            }
        };
        Self {
            id: channel.id.clone(),
            name: channel.name.clone(),
            telegram_id: id_text(channel.telegram_id),
            enabled: channel.enabled,
            input_sources: channel.input_sources.join("\n"),
            include_keywords: channel.filters.include_keywords.join(", "),
            exclude_keywords: channel.filters.exclude_keywords.join(", "),
            require_all_includes: channel.filters.require_all_includes,
            crm_enabled: channel.crm_enabled,
            crm_group_id: id_text(channel.crm_group_id),
            crm_invite_link: channel.crm_invite_link.clone().unwrap_or_default(),
            agents: channel
                .agents
                .iter()
                .map(|agent| AgentRow {
                    phone: agent.phone.clone(),
                    session_name: agent.session_name.clone(),
                    proxy: agent.proxy.as_deref().map(mask_proxy).unwrap_or_default(),
                    pacing: agent
                        .pacing
                        .as_ref()
                        .and_then(|pacing| serde_json::to_string(pacing).ok())
                        .unwrap_or_default(),
                })
                .collect(),
            pacing: channel.agent_pacing,
            auto_response_enabled: channel.auto_response_enabled,
            auto_response_template: channel.auto_response_template.clone(),
            ai_conversation_enabled: channel.ai_conversation_enabled,
            ai_mode: ai.mode.as_str(),
            ai_provider: ai.primary.provider.clone(),
            // As the file has it: empty when it names none (the provider's default applies,
            // shown as the placeholder), so changing the provider never keeps another's model.
            ai_model: channel
                .ai_config
                .as_ref()
                .and_then(|config| config.get("llm_model"))
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            prompts: prompt_fields(&ai.prompts),
            ai_fallback: ai
                .fallback
                .iter()
                .map(|choice| match &choice.model {
                    Some(model) => format!("{} {model}", choice.provider),
                    None => choice.provider.clone(),
                })
                .collect::<Vec<_>>()
                .join("\n"),
            ai_delay_min: ai.reply_delay.min_seconds,
            ai_delay_max: ai.reply_delay.max_seconds,
            ai_max_replies: ai.max_replies_per_day,
            // Shortest form that reads back as the same f32 (0.7, not 0.699999988079071).
            ai_temperature: ai.temperature.to_string(),
            ai_max_tokens: ai.max_tokens,
            ai_context_window: ai.context_window_messages,
            instant_response: channel.instant_response,
            delay_min: channel.human_delay.min_seconds,
            delay_max: channel.human_delay.max_seconds,
        }
    }
}

#[derive(Template)]
#[template(path = "channel_form.html")]
struct ChannelFormPage {
    layout: Layout,
    editing: bool,
    revision: String,
    form: ChannelForm,
    empty_agent: AgentRow,
    /// `(mode, label key)` for the AI mode select.
    ai_modes: Vec<(&'static str, &'static str)>,
    /// Every provider the configuration knows (presets and `llm_providers`), with its default
    /// model.
    providers: Vec<(String, String)>,
    /// The one-click setup's titles, from the channel's name, cut to Telegram's 128 UTF-16
    /// units (the inputs' `maxlength` counts the same units).
    setup_channel_title: String,
    setup_group_title: String,
}

fn channel_form(
    lang: Lang,
    csrf: PageCsrf,
    channel: &ChannelDocument,
    config: &jobbot_core::config::Config,
    revision: String,
    editing: Option<&str>,
) -> Response {
    let ai = config
        .channel(&channel.id)
        .filter(|_| editing.is_some())
        .map(|channel| channel.ai.clone())
        .unwrap_or_default();
    let (title, path) = match editing {
        Some(id) => ("form_edit_title", format!("/channels/{}", url_encode(id))),
        None => ("form_new_title", "/channels/new".to_owned()),
    };
    let setup = jobbot_engine::SetupRequest::for_channel(&channel.name, Vec::new());
    let fit_title = |title: &str| {
        jobbot_core::notification::fit_to_utf16(title, crate::channel_setup::TITLE_MAX)
    };
    render(ChannelFormPage {
        setup_channel_title: fit_title(&setup.channel_title),
        setup_group_title: fit_title(&setup.group_title),
        layout: Layout::new(lang, "channel_form", title, &path, csrf),
        editing: editing.is_some(),
        revision,
        form: ChannelForm::of(channel, &ai),
        empty_agent: AgentRow {
            phone: String::new(),
            session_name: String::new(),
            proxy: String::new(),
            pacing: String::new(),
        },
        ai_modes: jobbot_core::ai::AiMode::ALL
            .into_iter()
            .map(|mode| (mode.as_str(), mode_label(mode)))
            .collect(),
        providers: config
            .llm_providers
            .iter()
            .map(|provider| {
                (
                    provider.name.clone(),
                    provider.default_model.clone().unwrap_or_default(),
                )
            })
            .collect(),
    })
}

fn mode_label(mode: jobbot_core::ai::AiMode) -> &'static str {
    match mode {
        jobbot_core::ai::AiMode::Manual => "ai_mode_manual",
        jobbot_core::ai::AiMode::Suggest => "ai_mode_suggest",
        jobbot_core::ai::AiMode::Auto => "ai_mode_auto",
    }
}

async fn new_channel_page(
    State(state): State<AppState>,
    axum::Extension(csrf): axum::Extension<PageCsrf>,
    headers: HeaderMap,
) -> Response {
    let snapshot = state.inner.config.snapshot();
    let mut channel: ChannelDocument =
        serde_json::from_value(serde_json::json!({})).expect("a channel has defaults");
    channel.enabled = true;
    channel_form(
        lang_of(&headers),
        csrf,
        &channel,
        &snapshot.config,
        snapshot.revision.to_string(),
        None,
    )
}

async fn edit_channel_page(
    State(state): State<AppState>,
    axum::Extension(csrf): axum::Extension<PageCsrf>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let snapshot = state.inner.config.snapshot();
    match snapshot
        .document
        .output_channels
        .iter()
        .find(|channel| channel.id == id)
    {
        Some(channel) => channel_form(
            lang_of(&headers),
            csrf,
            channel,
            &snapshot.config,
            snapshot.revision.to_string(),
            Some(&id),
        ),
        None => Redirect::to("/").into_response(),
    }
}

/// Every channel as `(id, name)`, for the pages' channel selects.
fn channel_options(state: &AppState) -> Vec<(String, String)> {
    state
        .inner
        .config
        .snapshot()
        .document
        .output_channels
        .iter()
        .map(|channel| (channel.id.clone(), channel.name.clone()))
        .collect()
}

#[derive(Template)]
#[template(path = "agents.html")]
struct AgentsPage {
    layout: Layout,
    columns: &'static [&'static str],
    channels: Vec<(String, String)>,
}

async fn agents_page(
    State(state): State<AppState>,
    axum::Extension(csrf): axum::Extension<PageCsrf>,
    headers: HeaderMap,
) -> Response {
    render(AgentsPage {
        layout: Layout::new(lang_of(&headers), "agents", "agents_title", "/agents", csrf),
        columns: &[
            "col_agent",
            "col_channels",
            "col_state",
            "col_headroom",
            "col_rate",
            "col_sent",
            "col_error",
            "col_actions",
        ],
        channels: channel_options(&state),
    })
}

#[derive(Template)]
#[template(path = "vacancies.html")]
struct VacanciesPage {
    layout: Layout,
    columns: &'static [&'static str],
    channels: Vec<(String, String)>,
}

async fn vacancies_page(
    State(state): State<AppState>,
    axum::Extension(csrf): axum::Extension<PageCsrf>,
    headers: HeaderMap,
) -> Response {
    render(VacanciesPage {
        layout: Layout::new(
            lang_of(&headers),
            "vacancies",
            "vacancies_title",
            "/vacancies",
            csrf,
        ),
        columns: &[
            "col_time",
            "col_source",
            "col_text",
            "col_matched",
            "col_contacts",
        ],
        channels: channel_options(&state),
    })
}

#[derive(Template)]
#[template(path = "cluster.html")]
struct ClusterPage {
    layout: Layout,
    node_columns: &'static [&'static str],
    lease_columns: &'static [&'static str],
}

async fn cluster_page(
    axum::Extension(csrf): axum::Extension<PageCsrf>,
    headers: HeaderMap,
) -> Response {
    render(ClusterPage {
        layout: Layout::new(
            lang_of(&headers),
            "cluster",
            "cluster_title",
            "/cluster",
            csrf,
        ),
        node_columns: &[
            "col_node",
            "col_alive",
            "col_started",
            "col_heartbeat",
            "col_leases_held",
        ],
        lease_columns: &[
            "col_session",
            "col_holder",
            "col_token",
            "col_held_for",
            "col_renewed",
            "col_expires_in",
        ],
    })
}

#[derive(Template)]
#[template(path = "conversations.html")]
struct ConversationsPage {
    layout: Layout,
    columns: &'static [&'static str],
    channels: Vec<(String, String)>,
    /// The conversation shown below the list (`/conversations/{id}`), empty for none.
    selected: String,
}

fn conversations_view(
    state: &AppState,
    headers: &HeaderMap,
    csrf: PageCsrf,
    selected: String,
) -> Response {
    let path = if selected.is_empty() {
        "/conversations".to_owned()
    } else {
        format!("/conversations/{selected}")
    };
    render(ConversationsPage {
        layout: Layout::new(
            lang_of(headers),
            "conversations",
            "conversations_title",
            &path,
            csrf,
        ),
        columns: &[
            "col_time",
            "col_contact",
            "col_channels",
            "col_phase",
            "col_control",
            "col_messages",
        ],
        channels: channel_options(state),
        selected,
    })
}

async fn conversations_page(
    State(state): State<AppState>,
    axum::Extension(csrf): axum::Extension<PageCsrf>,
    headers: HeaderMap,
) -> Response {
    conversations_view(&state, &headers, csrf, String::new())
}

/// One conversation below the list; an id that is not a positive integer goes to the list.
async fn conversation_page(
    State(state): State<AppState>,
    axum::Extension(csrf): axum::Extension<PageCsrf>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match id.parse::<i64>() {
        Ok(id) if id > 0 => conversations_view(&state, &headers, csrf, id.to_string()),
        _ => Redirect::to("/conversations").into_response(),
    }
}

#[derive(Template)]
#[template(path = "logins.html")]
struct LoginsPage {
    layout: Layout,
    /// `(session, what it is)`: the main account, then each agent once.
    accounts: Vec<(String, String)>,
}

async fn logins_page(
    State(state): State<AppState>,
    axum::Extension(csrf): axum::Extension<PageCsrf>,
    headers: HeaderMap,
) -> Response {
    let lang = lang_of(&headers);
    let snapshot = state.inner.config.snapshot();
    let mut accounts = vec![(
        jobbot_core::ids::SessionName::MAIN.to_owned(),
        t(lang, "login_main").to_owned(),
    )];
    for channel in &snapshot.document.output_channels {
        for agent in &channel.agents {
            if !accounts
                .iter()
                .any(|(session, _)| *session == agent.session_name)
            {
                let phone = if agent.phone.is_empty() {
                    t(lang, "phone_missing").to_owned()
                } else {
                    agent.phone.clone()
                };
                accounts.push((agent.session_name.clone(), phone));
            }
        }
    }
    render(LoginsPage {
        layout: Layout::new(lang, "logins", "logins_title", "/logins", csrf),
        accounts,
    })
}

/// A finding as the Doctor page shows it, in the page's language.
struct DoctorRow {
    status: &'static str,
    badge: &'static str,
    label: &'static str,
    subject: String,
    detail: String,
    fix: String,
}

#[derive(Template)]
#[template(path = "doctor.html")]
struct DoctorPage {
    layout: Layout,
    rows: Vec<DoctorRow>,
    passed: usize,
    failed: usize,
    skipped: usize,
}

/// Runs the checks (see [`crate::doctor`]) and shows each finding with its fix.
async fn doctor_page(
    State(state): State<AppState>,
    axum::Extension(csrf): axum::Extension<PageCsrf>,
    headers: HeaderMap,
) -> Response {
    use jobbot_core::doctor::Verdict;
    let lang = lang_of(&headers);
    let report = crate::doctor::report(&state).await;
    let rows: Vec<DoctorRow> = report
        .findings
        .iter()
        .map(|finding| {
            let (status, badge, label) = match &finding.verdict {
                Verdict::Passed { .. } => ("passed", "ok", "doctor_ok"),
                Verdict::Failed { .. } => ("failed", "state-dead", "doctor_fail"),
                Verdict::Skipped { .. } => ("skipped", "", "doctor_skip"),
            };
            let (subject, detail, fix) = crate::i18n::doctor_texts(lang, finding);
            DoctorRow {
                status,
                badge,
                label,
                subject,
                detail,
                fix,
            }
        })
        .collect();
    let count = |status: &str| rows.iter().filter(|row| row.status == status).count();
    let (passed, failed, skipped) = (count("passed"), count("failed"), count("skipped"));
    render(DoctorPage {
        layout: Layout::new(lang, "doctor", "doctor_title", "/doctor", csrf),
        rows,
        passed,
        failed,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_language_switch_only_returns_to_paths_on_this_site() {
        let check = |path: &str, expected: bool| {
            assert_eq!(local_path(path).is_some(), expected, "{path:?}")
        };
        check("/channels/x", true);
        check("/", true);
        check("/agents?x=1", true);
        check("/%2F/evil.example", true);
        check("//evil.example/", false);
        check("https://evil.example/", false);
        check("/\\evil.example", false);
        check("\\/evil.example", false);
        // Browsers drop tabs and line breaks, which would make these `//evil.example`.
        check("/\t/evil.example", false);
        check("/\n/evil.example", false);
        check("/\r/evil.example", false);
        check(" //evil.example", false);
        check("/ /evil.example", false);
        check("/\u{0}/evil.example", false);
        check("/é", false);
        check("", false);
        check("evil.example", false);
    }

    #[test]
    fn the_language_comes_from_the_cookie_and_defaults_to_russian() {
        let check = |cookie: Option<&str>, expected: Lang| {
            let mut headers = HeaderMap::new();
            if let Some(cookie) = cookie {
                headers.insert(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
            }
            assert_eq!(lang_of(&headers), expected, "{cookie:?}");
        };
        check(None, Lang::Ru);
        check(Some("lang=en"), Lang::En);
        check(Some("jobbot_session=abc; lang=en"), Lang::En);
        check(Some("lang=de"), Lang::Ru);
    }

    #[test]
    fn templates_escape_what_they_are_given() {
        let layout = Layout::new(
            Lang::En,
            "channels",
            "channels_title",
            "/",
            "csrf".to_owned(),
        );
        let html = ChannelsPage {
            layout,
            revision: "0123456789abcdef".into(),
            stats: vec![("stat_channels", 1)],
            channels: vec![ChannelCard {
                id: "c\"1".into(),
                id_url: url_encode("c\"1"),
                name: "<script>alert(1)</script>".into(),
                telegram_id: -1001,
                enabled: true,
                crm_enabled: false,
                sources: 0,
                agents: 0,
                include: vec!["a&b".into()],
                exclude: vec![],
            }],
        }
        .render()
        .unwrap();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(
            html.contains("&#60;script&#62;alert(1)&#60;/script&#62;")
                || html.contains("&lt;script&gt;"),
            "{html}"
        );
        assert!(!html.contains("data-channel=\"c\"1\""), "{html}");
        assert!(
            html.contains("a&#38;b") || html.contains("a&amp;b"),
            "{html}"
        );
    }

    #[test]
    fn the_labels_cannot_end_their_script_element() {
        let layout = Layout::new(Lang::En, "channels", "channels_title", "/", String::new());
        let json = layout.labels_json();
        assert!(!json.contains("</"), "{json}");
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["add_agent"], "Add agent");
    }
}
