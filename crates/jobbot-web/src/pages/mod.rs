//! The admin pages: HTML rendered here from the configuration snapshot (channel list and form)
//! or as a skeleton that a small plain script fills from the JSON API (agents dashboard,
//! vacancies, Telegram logins). No front-end build: one stylesheet and one script per page,
//! compiled into the binary.
//!
//! - Every page but the admin login needs the cookie session; without one the browser is sent
//!   to `/login` (the API keeps answering 401: a script must see the refusal, not a page).
//! - The pages write only through the API, with the session's CSRF token (put in the page) and
//!   the revision they were rendered from, so a stale form gets a 409 and shows a conflict.
//! - Labels come from [`i18n::LABELS`]; the `lang` cookie (`ru` by default, as the seed) picks
//!   the column, and every page has a link that switches it.
//! - Everything put in HTML goes through [`esc`]; the scripts build DOM with `textContent`.

mod i18n;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use jobbot_core::config::{ChannelDocument, Pacing};
use serde::Deserialize;

pub use i18n::Lang;
use i18n::t;

use crate::AppState;

/// The CSRF token of the session that asked for the page, put there by [`require_page_session`].
#[derive(Clone)]
struct PageCsrf(String);

/// The pages behind the cookie session.
pub(crate) fn protected_pages(state: AppState) -> Router {
    Router::new()
        .route("/", get(channels_page))
        .route("/channels/new", get(new_channel_page))
        .route("/channels/{id}", get(edit_channel_page))
        .route("/agents", get(agents_page))
        .route("/vacancies", get(vacancies_page))
        .route("/logins", get(logins_page))
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
    match state.inner.auth.page_session(request.headers()) {
        Some(csrf) => {
            request.extensions_mut().insert(PageCsrf(csrf));
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
    let back = query
        .back
        .filter(|back| is_local_path(back))
        .unwrap_or_else(|| "/".to_owned());
    let mut response = Redirect::to(&back).into_response();
    let cookie = format!(
        "lang={}; Path=/; Max-Age=31536000; SameSite=Lax",
        lang.code()
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// Only a path on this site: `//evil.example` or `https://…` would make the switch an open
/// redirect.
fn is_local_path(path: &str) -> bool {
    path.starts_with('/') && !path.starts_with("//") && !path.contains('\\')
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

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

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

/// What every page shares: head, navigation, language switch, labels for the script.
struct Layout<'a> {
    lang: Lang,
    /// The page's script (`{page}.js`) and its navigation entry.
    page: &'static str,
    title: &'a str,
    /// The path to come back to after switching the language.
    path: &'a str,
    csrf: Option<&'a str>,
}

impl Layout<'_> {
    fn render(&self, body: &str) -> String {
        let lang = self.lang;
        let nav = [
            ("/", "channels", "nav_channels"),
            ("/agents", "agents", "nav_agents"),
            ("/vacancies", "vacancies", "nav_vacancies"),
            ("/logins", "logins", "nav_logins"),
        ];
        let mut links = String::new();
        if self.csrf.is_some() {
            for (href, page, key) in nav {
                let current =
                    if self.page == page || (page == "channels" && self.page == "channel_form") {
                        " class=\"active\" aria-current=\"page\""
                    } else {
                        ""
                    };
                links.push_str(&format!(
                    "<a href=\"{href}\"{current}>{}</a>",
                    esc(t(lang, key))
                ));
            }
        }
        let logout = if self.csrf.is_some() {
            format!(
                "<button type=\"button\" id=\"logout\" class=\"linklike\">{}</button>",
                esc(t(lang, "logout"))
            )
        } else {
            String::new()
        };
        let other = lang.other();
        // `</` cannot end the script element from inside a JSON string.
        let labels = i18n::labels_json(lang).replace("</", "<\\/");
        format!(
            r#"<!doctype html>
<html lang="{code}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} — jobbot</title>
<link rel="stylesheet" href="/static/app.css">
<meta name="csrf-token" content="{csrf}">
</head>
<body data-page="{page}">
<header class="top"><a class="brand" href="/">jobbot</a><nav>{links}</nav><span class="spacer"></span>
<a id="lang-switch" href="/lang/{other_code}?back={back}" lang="{other_code}">{other_name}</a>{logout}</header>
<main>
{body}
</main>
<script id="labels" type="application/json">{labels}</script>
<script src="/static/common.js"></script>
<script src="/static/{page}.js"></script>
</body></html>
"#,
            code = lang.code(),
            title = esc(self.title),
            csrf = esc(self.csrf.unwrap_or_default()),
            page = self.page,
            other_code = other.code(),
            back = esc(&url_encode(self.path)),
            other_name = esc(t(other, "lang_name")),
        )
    }
}

/// The admin login page (public). It returns to `?next=` after logging in.
pub fn admin_login_page(lang: Lang) -> String {
    let body = format!(
        r#"<section class="card narrow">
<h1>{title}</h1>
<form id="login" novalidate>
<div class="field"><label for="password">{password}</label>
<input type="password" id="password" name="password" autocomplete="current-password" required></div>
<p class="error" id="status" role="status"></p>
<div class="actions"><button type="submit" class="primary">{button}</button></div>
</form></section>"#,
        title = esc(t(lang, "admin_login_title")),
        password = esc(t(lang, "admin_password")),
        button = esc(t(lang, "admin_login_button")),
    );
    Layout {
        lang,
        page: "login",
        title: t(lang, "admin_login_title"),
        path: "/login",
        csrf: None,
    }
    .render(&body)
}

async fn channels_page(
    State(state): State<AppState>,
    axum::Extension(PageCsrf(csrf)): axum::Extension<PageCsrf>,
    headers: HeaderMap,
) -> Html<String> {
    let lang = lang_of(&headers);
    let snapshot = state.inner.config.snapshot();
    let channels = &snapshot.document.output_channels;
    let mut sessions = std::collections::BTreeSet::new();
    for channel in channels {
        for agent in &channel.agents {
            sessions.insert(agent.session_name.as_str());
        }
    }
    let stats = [
        ("stat_channels", channels.len()),
        (
            "stat_enabled",
            channels.iter().filter(|channel| channel.enabled).count(),
        ),
        (
            "stat_sources",
            channels
                .iter()
                .map(|channel| channel.input_sources.len())
                .sum(),
        ),
        ("stat_agents", sessions.len()),
        (
            "stat_crm",
            channels
                .iter()
                .filter(|channel| channel.crm_enabled)
                .count(),
        ),
    ];
    let mut body = format!(
        "<div class=\"heading\"><h1>{}</h1><a class=\"button primary\" id=\"new-channel\" href=\"/channels/new\">{}</a></div>\n<div class=\"stats\">",
        esc(t(lang, "channels_title")),
        esc(t(lang, "new_channel"))
    );
    for (key, value) in stats {
        body.push_str(&format!(
            "<div class=\"stat\" data-stat=\"{key}\"><span class=\"value\">{value}</span><span class=\"label\">{}</span></div>",
            esc(t(lang, key))
        ));
    }
    body.push_str(&format!(
        "</div>\n<p class=\"error\" id=\"list-status\" role=\"status\"></p>\n<div class=\"channels\" id=\"channels\" data-revision=\"{}\">",
        esc(&snapshot.revision.to_string())
    ));
    if channels.is_empty() {
        body.push_str(&format!(
            "<p class=\"muted\">{}</p>",
            esc(t(lang, "no_channels"))
        ));
    }
    for channel in channels {
        body.push_str(&channel_card(lang, channel));
    }
    body.push_str("</div>");
    Html(
        Layout {
            lang,
            page: "channels",
            title: t(lang, "channels_title"),
            path: "/",
            csrf: Some(&csrf),
        }
        .render(&body),
    )
}

fn channel_card(lang: Lang, channel: &ChannelDocument) -> String {
    let status = if channel.enabled {
        format!(
            "<span class=\"badge ok\">{}</span>",
            esc(t(lang, "badge_enabled"))
        )
    } else {
        format!(
            "<span class=\"badge off\">{}</span>",
            esc(t(lang, "badge_disabled"))
        )
    };
    let crm = if channel.crm_enabled {
        format!(
            "<span class=\"badge crm\">{}</span>",
            esc(t(lang, "badge_crm"))
        )
    } else {
        String::new()
    };
    let tags = |words: &[String], class: &str| -> String {
        words
            .iter()
            .map(|word| format!("<span class=\"tag {class}\">{}</span>", esc(word)))
            .collect()
    };
    let excluded = if channel.filters.exclude_keywords.is_empty() {
        String::new()
    } else {
        format!(
            "<div class=\"tags\"><span class=\"muted\">{}:</span> {}</div>",
            esc(t(lang, "excluded")),
            tags(&channel.filters.exclude_keywords, "minus")
        )
    };
    format!(
        r#"<article class="card channel" data-channel="{id}">
<div class="card-head"><h2>{name}</h2><div class="badges">{status}{crm}</div></div>
<p class="muted mono">{id} · {telegram_id}</p>
<p class="counts"><span>{sources_label}: <b>{sources}</b></span> <span>{agents_label}: <b>{agents}</b></span></p>
<div class="tags"><span class="muted">{keywords_label}:</span> {include}</div>
{excluded}
<div class="actions"><a class="button" href="/channels/{id_url}">{edit}</a>
<button type="button" class="danger" data-delete="{id}" data-name="{name}">{delete}</button></div>
</article>
"#,
        id = esc(&channel.id),
        id_url = esc(&url_encode(&channel.id)),
        name = esc(&channel.name),
        telegram_id = channel.telegram_id,
        sources_label = esc(t(lang, "sources_count")),
        sources = channel.input_sources.len(),
        agents_label = esc(t(lang, "agents_count")),
        agents = channel.agents.len(),
        keywords_label = esc(t(lang, "keywords")),
        include = tags(&channel.filters.include_keywords, ""),
        edit = esc(t(lang, "edit")),
        delete = esc(t(lang, "delete")),
    )
}

async fn new_channel_page(
    State(state): State<AppState>,
    axum::Extension(PageCsrf(csrf)): axum::Extension<PageCsrf>,
    headers: HeaderMap,
) -> Html<String> {
    let lang = lang_of(&headers);
    let revision = state.inner.config.snapshot().revision.to_string();
    let mut channel: ChannelDocument =
        serde_json::from_value(serde_json::json!({})).expect("a channel has defaults");
    channel.enabled = true;
    Html(channel_form(lang, &csrf, &channel, &revision, None))
}

async fn edit_channel_page(
    State(state): State<AppState>,
    axum::Extension(PageCsrf(csrf)): axum::Extension<PageCsrf>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let lang = lang_of(&headers);
    let snapshot = state.inner.config.snapshot();
    match snapshot
        .document
        .output_channels
        .iter()
        .find(|channel| channel.id == id)
    {
        Some(channel) => Html(channel_form(
            lang,
            &csrf,
            channel,
            &snapshot.revision.to_string(),
            Some(&id),
        ))
        .into_response(),
        None => Redirect::to("/").into_response(),
    }
}

/// One labelled input with the paragraph its errors go to. `path` is the API's field path, so a
/// 422 problem finds its place by it.
fn field(label: &str, path: &str, input: &str) -> String {
    format!(
        "<div class=\"field\" data-field=\"{path}\"><label for=\"f-{path}\">{label}</label>{input}<p class=\"error\" data-error-for=\"{path}\"></p></div>",
        label = esc(label),
    )
}

fn checkbox(label: &str, path: &str, checked: bool) -> String {
    format!(
        "<div class=\"field check\" data-field=\"{path}\"><label><input type=\"checkbox\" id=\"f-{path}\" name=\"{path}\"{}> {}</label><p class=\"error\" data-error-for=\"{path}\"></p></div>",
        if checked { " checked" } else { "" },
        esc(label),
    )
}

fn text_input(path: &str, value: &str, extra: &str) -> String {
    format!(
        "<input type=\"text\" id=\"f-{path}\" name=\"{path}\" value=\"{}\"{extra}>",
        esc(value)
    )
}

/// An agent row as the seed's `addAgent()` builds it; the script clones the `<template>` one.
fn agent_row(lang: Lang, phone: &str, session: &str, proxy: &str, pacing: &str) -> String {
    format!(
        r#"<div class="agent-row" data-pacing="{pacing}">
<div class="field"><label>{phone_label}</label><input type="tel" name="phone" value="{phone}" placeholder="+79991234567" autocomplete="off"><p class="error" data-error-for="phone"></p></div>
<div class="field"><label>{session_label}</label><input type="text" name="session_name" value="{session}" placeholder="agent_session" autocomplete="off"><p class="error" data-error-for="session_name"></p></div>
<div class="field"><label>Proxy</label><input type="text" name="proxy" value="{proxy}" placeholder="socks5://host:1080" autocomplete="off"><p class="error" data-error-for="proxy"></p></div>
<button type="button" class="remove-agent danger" onclick="removeAgent(this)" title="{remove}" aria-label="{remove}">✕</button>
</div>"#,
        pacing = esc(pacing),
        phone_label = esc(t(lang, "agent_phone")),
        session_label = esc(t(lang, "agent_session")),
        phone = esc(phone),
        session = esc(session),
        proxy = esc(proxy),
        remove = esc(t(lang, "remove_agent")),
    )
}

fn pacing_json(pacing: Option<&Pacing>) -> String {
    pacing
        .and_then(|pacing| serde_json::to_string(pacing).ok())
        .unwrap_or_default()
}

fn channel_form(
    lang: Lang,
    csrf: &str,
    channel: &ChannelDocument,
    revision: &str,
    editing: Option<&str>,
) -> String {
    let title = if editing.is_some() {
        t(lang, "form_edit_title")
    } else {
        t(lang, "form_new_title")
    };
    let id_input = match editing {
        Some(id) => format!(
            "<input type=\"text\" id=\"f-id\" name=\"id\" value=\"{}\" readonly>",
            esc(id)
        ),
        None => format!(
            "<input type=\"text\" id=\"f-id\" name=\"id\" placeholder=\"{}\">",
            esc(t(lang, "field_id_help"))
        ),
    };
    let telegram_id = if channel.telegram_id == 0 {
        String::new()
    } else {
        channel.telegram_id.to_string()
    };
    let crm_group = if channel.crm_group_id == 0 {
        String::new()
    } else {
        channel.crm_group_id.to_string()
    };
    let agents: String = channel
        .agents
        .iter()
        .map(|agent| {
            let proxy = agent
                .proxy
                .as_deref()
                .map(crate::channels::mask_proxy)
                .unwrap_or_default();
            agent_row(
                lang,
                &agent.phone,
                &agent.session_name,
                &proxy,
                &pacing_json(agent.pacing.as_ref()),
            )
        })
        .collect();
    let number = |path: &str, value: u32| {
        format!(
            "<input type=\"number\" min=\"0\" step=\"1\" inputmode=\"numeric\" id=\"f-{path}\" name=\"{path}\" value=\"{value}\">"
        )
    };
    let pacing = &channel.agent_pacing;
    let body = format!(
        r#"<div class="heading"><h1>{title}</h1></div>
<div class="banner conflict" id="conflict" role="alert" hidden><span>{conflict}</span> <a class="button" href="">{reload}</a></div>
<p class="error" id="form-status" role="status"></p>
<form id="channel-form" class="channel-form" novalidate data-mode="{mode}" data-revision="{revision}">
<fieldset class="card"><legend>{section_basic}</legend>
{id_field}{name_field}{telegram_field}{enabled_field}
</fieldset>
<fieldset class="card"><legend>{section_sources}</legend>
{sources_field}
</fieldset>
<fieldset class="card"><legend>{section_filters}</legend>
{include_field}{exclude_field}{require_all_field}
</fieldset>
<fieldset class="card crm"><legend>{section_crm}</legend>
{crm_field}{crm_group_field}
<div class="field" data-field="agents"><span class="label">{agents_label}</span>
<div id="agents-list" class="agents-list">{agents}</div>
<p class="error" data-error-for="agents"></p>
<button type="button" id="add-agent" onclick="addAgent()">+ {add_agent}</button></div>
<div class="grid4">{mpm}{burst}{cold}{pause}</div>
</fieldset>
<fieldset class="card"><legend>{section_responses}</legend>
{auto_field}{template_field}{ai_field}{instant_field}
<div class="grid2">{delay_min}{delay_max}</div>
</fieldset>
<div class="actions sticky"><button type="submit" class="primary" id="save">{save}</button> <a class="button" href="/">{cancel}</a></div>
</form>
<template id="agent-row-template">{template_row}</template>"#,
        title = esc(title),
        conflict = esc(t(lang, "conflict")),
        reload = esc(t(lang, "reload")),
        mode = if editing.is_some() { "edit" } else { "new" },
        revision = esc(revision),
        section_basic = esc(t(lang, "section_basic")),
        id_field = field(t(lang, "field_id"), "id", &id_input),
        name_field = field(
            t(lang, "field_name"),
            "name",
            &text_input("name", &channel.name, " required")
        ),
        telegram_field = field(
            t(lang, "field_telegram_id"),
            "telegram_id",
            &text_input(
                "telegram_id",
                &telegram_id,
                " inputmode=\"numeric\" placeholder=\"-1001234567890\" required"
            )
        ),
        enabled_field = checkbox(t(lang, "field_enabled"), "enabled", channel.enabled),
        section_sources = esc(t(lang, "section_sources")),
        sources_field = field(
            t(lang, "field_input_sources"),
            "input_sources",
            &format!(
                "<textarea id=\"f-input_sources\" name=\"input_sources\" rows=\"4\" placeholder=\"@python_jobs\">{}</textarea>",
                esc(&channel.input_sources.join("\n"))
            )
        ),
        section_filters = esc(t(lang, "section_filters")),
        include_field = field(
            t(lang, "field_include"),
            "include_keywords",
            &text_input(
                "include_keywords",
                &channel.filters.include_keywords.join(", "),
                ""
            )
        ),
        exclude_field = field(
            t(lang, "field_exclude"),
            "exclude_keywords",
            &text_input(
                "exclude_keywords",
                &channel.filters.exclude_keywords.join(", "),
                ""
            )
        ),
        require_all_field = checkbox(
            t(lang, "field_require_all"),
            "require_all_includes",
            channel.filters.require_all_includes
        ),
        section_crm = esc(t(lang, "section_crm")),
        crm_field = checkbox(
            t(lang, "field_crm_enabled"),
            "crm_enabled",
            channel.crm_enabled
        ),
        crm_group_field = field(
            t(lang, "field_crm_group"),
            "crm_group_id",
            &text_input(
                "crm_group_id",
                &crm_group,
                " inputmode=\"numeric\" placeholder=\"-1001234567890\""
            )
        ),
        agents_label = esc(t(lang, "agents_label")),
        agents = agents,
        add_agent = esc(t(lang, "add_agent")),
        mpm = field(
            t(lang, "pacing_mpm"),
            "agent_pacing.messages_per_minute",
            &number(
                "agent_pacing.messages_per_minute",
                pacing.messages_per_minute
            )
        ),
        burst = field(
            t(lang, "pacing_burst"),
            "agent_pacing.burst",
            &number("agent_pacing.burst", pacing.burst)
        ),
        cold = field(
            t(lang, "pacing_cold"),
            "agent_pacing.cold_dms_per_day",
            &number("agent_pacing.cold_dms_per_day", pacing.cold_dms_per_day)
        ),
        pause = field(
            t(lang, "pacing_pause"),
            "agent_pacing.peer_flood_pause_hours",
            &number(
                "agent_pacing.peer_flood_pause_hours",
                pacing.peer_flood_pause_hours
            )
        ),
        section_responses = esc(t(lang, "section_responses")),
        auto_field = checkbox(
            t(lang, "field_auto_response"),
            "auto_response_enabled",
            channel.auto_response_enabled
        ),
        template_field = field(
            t(lang, "field_template"),
            "auto_response_template",
            &format!(
                "<textarea id=\"f-auto_response_template\" name=\"auto_response_template\" rows=\"3\">{}</textarea>",
                esc(&channel.auto_response_template)
            )
        ),
        ai_field = checkbox(
            t(lang, "field_ai"),
            "ai_conversation_enabled",
            channel.ai_conversation_enabled
        ),
        instant_field = checkbox(
            t(lang, "field_instant"),
            "instant_response",
            channel.instant_response
        ),
        delay_min = field(
            t(lang, "field_delay_min"),
            "human_delay.min_seconds",
            &number("human_delay.min_seconds", channel.human_delay.min_seconds)
        ),
        delay_max = field(
            t(lang, "field_delay_max"),
            "human_delay.max_seconds",
            &number("human_delay.max_seconds", channel.human_delay.max_seconds)
        ),
        save = esc(t(lang, "save")),
        cancel = esc(t(lang, "cancel")),
        template_row = agent_row(lang, "", "", "", ""),
    );
    let path = match editing {
        Some(id) => format!("/channels/{}", url_encode(id)),
        None => "/channels/new".to_owned(),
    };
    Layout {
        lang,
        page: "channel_form",
        title,
        path: &path,
        csrf: Some(csrf),
    }
    .render(&body)
}

async fn agents_page(
    State(state): State<AppState>,
    axum::Extension(PageCsrf(csrf)): axum::Extension<PageCsrf>,
    headers: HeaderMap,
) -> Html<String> {
    let lang = lang_of(&headers);
    let options: String = state
        .inner
        .config
        .snapshot()
        .document
        .output_channels
        .iter()
        .map(|channel| {
            format!(
                "<option value=\"{}\">{}</option>",
                esc(&channel.id),
                esc(&channel.name)
            )
        })
        .collect();
    let columns: String = [
        "col_agent",
        "col_channels",
        "col_state",
        "col_headroom",
        "col_sent",
        "col_error",
        "col_actions",
    ]
    .iter()
    .map(|key| format!("<th>{}</th>", esc(t(lang, key))))
    .collect();
    let body = format!(
        r#"<div class="heading"><h1>{title}</h1><span class="live" id="live-status" data-live="off">{offline}</span></div>
<div class="table-wrap card"><table class="agents" id="agents-table"><thead><tr>{columns}</tr></thead><tbody id="agents-body"></tbody></table>
<p class="muted" id="no-agents" hidden>{no_agents}</p></div>
<p class="error" id="agents-status" role="status"></p>
<div class="two">
<section class="card"><h2>{chart_title}</h2><div id="usage-chart" class="chart"></div></section>
<section class="card"><h2>{bulk_title}</h2>
<form id="bulk-form" novalidate>
<div class="field" data-field="channel"><label for="bulk-channel">{bulk_channel}</label><select id="bulk-channel">{options}</select></div>
<div class="field" data-field="lines"><label for="bulk-lines">{bulk_help}</label><textarea id="bulk-lines" rows="4" placeholder="+79991234567 agent_session"></textarea><p class="error" data-error-for="lines"></p></div>
<div class="actions"><button type="submit" class="primary">{bulk_add}</button> <span id="bulk-result" class="muted"></span></div>
</form></section></div>
<div class="two">
<section class="card"><h2>{events_title}</h2><ul id="agent-events" class="plain"></ul></section>
<section class="card"><h2>{undelivered_title}</h2><ul id="undelivered" class="plain"></ul>
<h2>{tasks_title}</h2><ul id="tasks" class="plain"></ul></section></div>"#,
        events_title = esc(t(lang, "events_title")),
        undelivered_title = esc(t(lang, "undelivered_title")),
        tasks_title = esc(t(lang, "tasks_title")),
        title = esc(t(lang, "agents_title")),
        offline = esc(t(lang, "live_disconnected")),
        no_agents = esc(t(lang, "no_agents")),
        chart_title = esc(t(lang, "chart_title")),
        bulk_title = esc(t(lang, "bulk_title")),
        bulk_channel = esc(t(lang, "bulk_channel")),
        bulk_help = esc(t(lang, "bulk_help")),
        bulk_add = esc(t(lang, "bulk_add")),
    );
    Html(
        Layout {
            lang,
            page: "agents",
            title: t(lang, "agents_title"),
            path: "/agents",
            csrf: Some(&csrf),
        }
        .render(&body),
    )
}

async fn vacancies_page(
    State(state): State<AppState>,
    axum::Extension(PageCsrf(csrf)): axum::Extension<PageCsrf>,
    headers: HeaderMap,
) -> Html<String> {
    let lang = lang_of(&headers);
    let channels: String = state
        .inner
        .config
        .snapshot()
        .document
        .output_channels
        .iter()
        .map(|channel| {
            format!(
                "<option value=\"{}\">{}</option>",
                esc(&channel.id),
                esc(&channel.name)
            )
        })
        .collect();
    let columns: String = [
        "col_time",
        "col_source",
        "col_text",
        "col_matched",
        "col_contacts",
    ]
    .iter()
    .map(|key| format!("<th>{}</th>", esc(t(lang, key))))
    .collect();
    let body = format!(
        r#"<div class="heading"><h1>{title}</h1></div>
<form id="vacancy-filters" class="filters card">
<label>{status} <select name="status"><option value="">{all}</option><option value="relevant">{relevant}</option><option value="not_relevant">{not_relevant}</option></select></label>
<label>{channel} <select name="channel_id"><option value="">{all}</option>{channels}</select></label>
</form>
<div class="table-wrap card"><table class="vacancies"><thead><tr>{columns}</tr></thead><tbody id="vacancies-body"></tbody></table>
<p class="muted" id="no-vacancies" hidden>{none}</p></div>
<p class="error" id="vacancies-status" role="status"></p>
<div class="actions"><button type="button" id="more" hidden>{more}</button></div>"#,
        title = esc(t(lang, "vacancies_title")),
        status = esc(t(lang, "filter_status")),
        all = esc(t(lang, "status_all")),
        relevant = esc(t(lang, "status_relevant")),
        not_relevant = esc(t(lang, "status_not_relevant")),
        channel = esc(t(lang, "filter_channel")),
        none = esc(t(lang, "no_vacancies")),
        more = esc(t(lang, "more")),
    );
    Html(
        Layout {
            lang,
            page: "vacancies",
            title: t(lang, "vacancies_title"),
            path: "/vacancies",
            csrf: Some(&csrf),
        }
        .render(&body),
    )
}

async fn logins_page(
    State(state): State<AppState>,
    axum::Extension(PageCsrf(csrf)): axum::Extension<PageCsrf>,
    headers: HeaderMap,
) -> Html<String> {
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
                accounts.push((agent.session_name.clone(), agent.phone.clone()));
            }
        }
    }
    let cards: String = accounts
        .iter()
        .map(|(session, label)| {
            format!(
                r#"<section class="card login" data-session="{session}">
<div class="card-head"><h2>{session}</h2><span class="muted">{label}</span></div>
<p class="login-state muted">{idle}</p>
<form class="login-step" novalidate hidden><label><span class="step-label"></span> <input name="value" autocomplete="off"></label>
<button type="submit" class="primary">{next}</button> <button type="button" class="cancel-login">{cancel}</button>
<p class="error step-error" role="status"></p></form>
<div class="actions"><button type="button" class="start-login">{start}</button></div>
</section>"#,
                session = esc(session),
                label = esc(label),
                idle = esc(t(lang, "login_idle")),
                next = esc(t(lang, "login_next")),
                cancel = esc(t(lang, "login_cancel")),
                start = esc(t(lang, "login_start")),
            )
        })
        .collect();
    let body = format!(
        "<div class=\"heading\"><h1>{}</h1></div><div class=\"logins\">{cards}</div>",
        esc(t(lang, "logins_title"))
    );
    Html(
        Layout {
            lang,
            page: "logins",
            title: t(lang, "logins_title"),
            path: "/logins",
            csrf: Some(&csrf),
        }
        .render(&body),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_what_breaks_out_of_text_and_attributes() {
        let check = |input: &str, expected: &str| assert_eq!(esc(input), expected, "{input}");
        check("plain", "plain");
        check("<script>", "&lt;script&gt;");
        check("a \"b\" 'c' & d", "a &quot;b&quot; &#39;c&#39; &amp; d");
        check("Вакансия", "Вакансия");
    }

    #[test]
    fn the_language_switch_only_returns_to_local_paths() {
        let check =
            |path: &str, expected: bool| assert_eq!(is_local_path(path), expected, "{path}");
        check("/channels/x", true);
        check("/", true);
        check("//evil.example/", false);
        check("https://evil.example/", false);
        check("/\\evil.example", false);
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
}
