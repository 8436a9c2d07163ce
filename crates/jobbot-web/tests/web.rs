//! The web API against a real engine over the Telegram simulator and a real config store over a
//! temporary file: router `oneshot` tests for every route, and a WebSocket test on a port-0
//! server with a real client.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use futures_util::StreamExt;
use jobbot_core::config::Config;
use jobbot_core::ids::{ChatId, PhoneNumber, SessionName, Username};
use jobbot_core::store::{NewOutboxMessage, OutboxKind, Recipient, SenderSelection, UnixMillis};
use jobbot_core::telegram::MessageContent;
use jobbot_engine::{Engine, EngineClock, EngineSettings, LinkState};
use jobbot_sim::{NewUser, SimConnector, SimParams, SimWorld};
use jobbot_store::ConfigStore;
use jobbot_web::{AppState, AuthSettings, WebSettings};
use serde_json::{Value, json};
use tokio::sync::watch;
use tower::ServiceExt;

const ADMIN_PASSWORD: &str = "correct-horse-battery-staple";
const API_TOKEN: &str = "jbt_env_token_for_tests_0123456789";
const CHANNEL: &str = "channel_1";
const TWO_FACTOR_PASSWORD: &str = "hunter2-second-factor";

enum Credentials<'a> {
    None,
    Bearer(&'a str),
    Cookie {
        cookie: &'a str,
        csrf: Option<&'a str>,
    },
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

struct TestApp {
    world: SimWorld,
    engine: Engine,
    config: ConfigStore,
    router: Router,
    agents: Vec<ChatId>,
    recipients: Vec<Username>,
    /// Every response body and header (but `Set-Cookie`) seen, for the secrets check.
    seen: Mutex<Vec<String>>,
    _dir: tempfile::TempDir,
}

/// A world with two logged-in agents and five people who have both as contacts, a configuration
/// file with one channel listing the agents (paced above what the simulator allows, so sends
/// can provoke flood waits), a config store on it, an engine following the store, and the app.
async fn spawn_app() -> TestApp {
    spawn_app_with(Arc::new(jobbot_store::MemoryStore::new()), |_| {}).await
}

/// [`spawn_app`] over `store`, with the web settings changed by `configure`.
async fn spawn_app_with(
    store: Arc<dyn jobbot_core::store::Store>,
    configure: impl FnOnce(&mut WebSettings),
) -> TestApp {
    let world = SimWorld::new(SimParams::default());
    let agents: Vec<ChatId> = ["agent_a", "agent_b"]
        .iter()
        .enumerate()
        .map(|(index, name)| {
            world.create_account(
                name,
                NewUser::named(&format!("Agent {index}")).phone(&format!("+7999100{index:04}")),
            )
        })
        .collect();
    let recipients = (0..5)
        .map(|index| {
            let username = format!("recruiter_{index:03}");
            let id = world.create_user(NewUser::named("Recruiter").username(&username));
            for agent in &agents {
                world.add_contact(*agent, id);
            }
            Username::parse(&username).unwrap()
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("channels_config.json");
    let document = json!({"output_channels": [{
        "id": CHANNEL, "name": "Jobs", "telegram_id": -1001234567890i64,
        "input_sources": ["@python_jobs"], "crm_enabled": true, "crm_group_id": -1002345678901i64,
        "agents": [
            {"phone": "+79991000000", "session_name": "agent_a"},
            {"phone": "+79991000001", "session_name": "agent_b",
             "proxy": "socks5://user:proxy-secret@127.0.0.1:1080"}
        ],
        "agent_pacing": {"messages_per_minute": 60, "burst": 10}
    }]});
    std::fs::write(&path, serde_json::to_string_pretty(&document).unwrap()).unwrap();
    let config = ConfigStore::open(&path).await.expect("the config loads");
    let connector = Arc::new(SimConnector::new(world.clone()));
    let engine = Engine::start(
        EngineSettings {
            main_session: None,
            seed: 7,
            ..EngineSettings::default()
        },
        connector.clone(),
        store,
        follow(&config),
        EngineClock::start(),
    )
    .await
    .expect("the engine starts");
    let mut settings = settings();
    configure(&mut settings);
    let state = AppState::new(engine.clone(), config.clone(), settings, connector);
    TestApp {
        world,
        engine,
        router: jobbot_web::app(state),
        config,
        agents,
        recipients,
        seen: Mutex::default(),
        _dir: dir,
    }
}

fn settings() -> WebSettings {
    WebSettings::new(AuthSettings::new(ADMIN_PASSWORD, Some(API_TOKEN)).unwrap())
}

/// The engine follows the store's snapshots, as `jobbot run` wires it.
fn follow(config: &ConfigStore) -> watch::Receiver<Arc<Config>> {
    let mut snapshots = config.subscribe();
    let (sender, receiver) = watch::channel(Arc::new(snapshots.borrow_and_update().config.clone()));
    tokio::spawn(async move {
        while snapshots.changed().await.is_ok() {
            let config = Arc::new(snapshots.borrow_and_update().config.clone());
            if sender.send(config).is_err() {
                break;
            }
        }
    });
    receiver
}

impl TestApp {
    async fn call(
        &self,
        method: Method,
        uri: &str,
        credentials: Credentials<'_>,
        body: Option<Value>,
    ) -> Reply {
        self.call_with(method, uri, credentials, body, &[], None)
            .await
    }

    async fn call_with(
        &self,
        method: Method,
        uri: &str,
        credentials: Credentials<'_>,
        body: Option<Value>,
        headers: &[(&str, &str)],
        client: Option<SocketAddr>,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(uri);
        match credentials {
            Credentials::None => {}
            Credentials::Bearer(token) => {
                request = request.header(header::AUTHORIZATION, format!("Bearer {token}"))
            }
            Credentials::Cookie { cookie, csrf } => {
                request = request.header(header::COOKIE, cookie);
                if let Some(csrf) = csrf {
                    request = request.header("x-csrf-token", csrf);
                }
            }
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let body = match body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        let mut request = request.body(body).unwrap();
        if let Some(client) = client {
            request.extensions_mut().insert(ConnectInfo(client));
        }
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        {
            let mut seen = self.seen.lock().unwrap();
            seen.push(text.clone());
            for (name, value) in &headers {
                if name != header::SET_COOKIE {
                    seen.push(value.to_str().unwrap_or_default().to_owned());
                }
            }
        }
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, uri: &str) -> Reply {
        self.call(Method::GET, uri, Credentials::Bearer(API_TOKEN), None)
            .await
    }

    async fn send(&self, method: Method, uri: &str, body: Value) -> Reply {
        self.call(method, uri, Credentials::Bearer(API_TOKEN), Some(body))
            .await
    }

    /// `method path` with the cookie session `cookie` (no CSRF token).
    async fn with_cookie(&self, method: Method, path: &str, cookie: &str) -> Reply {
        self.call(
            method,
            path,
            Credentials::Cookie { cookie, csrf: None },
            None,
        )
        .await
    }

    async fn revision(&self) -> String {
        let reply = self.get("/api/channels").await;
        reply.body["revision"].as_str().unwrap().to_owned()
    }

    /// Logs in with the admin password; returns the `Cookie` header value and the CSRF token.
    async fn log_in(&self) -> (String, String) {
        let reply = self
            .call(
                Method::POST,
                "/api/login",
                Credentials::None,
                Some(json!({"password": ADMIN_PASSWORD})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let set_cookie = reply.headers[header::SET_COOKIE].to_str().unwrap();
        assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
        assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
        let cookie = set_cookie.split(';').next().unwrap().to_owned();
        let csrf = reply.body["csrf_token"].as_str().unwrap().to_owned();
        (cookie, csrf)
    }

    /// No response so far holds any of `secrets`.
    fn assert_never_shown(&self, secrets: &[&str]) {
        let seen = self.seen.lock().unwrap();
        for secret in secrets {
            assert!(
                !seen.iter().any(|text| text.contains(secret)),
                "a response shows a secret"
            );
        }
    }

    async fn enqueue(
        &self,
        kind: OutboxKind,
        recipient: usize,
        text: &str,
    ) -> jobbot_engine::OutboxTicket {
        let now = self.engine.clock().now_unix();
        self.engine
            .enqueue(NewOutboxMessage {
                channel_id: CHANNEL.into(),
                kind,
                sender: SenderSelection::ChannelAgents { sticky: None },
                recipient: Recipient::Username {
                    username: self.recipients[recipient].clone(),
                },
                content: MessageContent::plain(text),
                first_contact: false,
                idempotency_key: None,
                created_at: now,
                not_before: None,
                expires_at: UnixMillis(0),
            })
            .await
            .expect("enqueued")
    }
}

/// Waits for an engine event matching `wanted`, for at most a minute.
/// Waits until `session`'s link state satisfies `wanted` (`None`: not configured), reading the
/// engine's state (a watch, checked now and on every change), never a stream of events.
async fn wait_link(app: &TestApp, session: &str, wanted: impl Fn(Option<&LinkState>) -> bool) {
    let session = SessionName::parse(session).unwrap();
    tokio::time::timeout(
        Duration::from_secs(60),
        app.engine
            .wait_for_links(|links| wanted(links.get(&session))),
    )
    .await
    .unwrap_or_else(|_| panic!("{session} reaches the wanted state"))
    .expect("the engine runs");
}

/// Waits until the engine has `session` connected.
async fn wait_ready(app: &TestApp, session: &str) {
    wait_link(app, session, |link| link.is_some_and(LinkState::is_ready)).await;
}

fn problem_paths(reply: &Reply) -> Vec<String> {
    reply.body["problems"]
        .as_array()
        .map(|problems| {
            problems
                .iter()
                .map(|p| p["path"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Every documented route, as `(method, path)`, with its path parameters filled in.
fn documented_routes() -> Vec<(Method, String)> {
    let document = serde_json::to_value(jobbot_web::openapi()).unwrap();
    let mut routes = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let method: Method = method.to_uppercase().parse().unwrap();
            let path = path
                .replace("{id}", CHANNEL)
                .replace("{session}", "agent_a");
            routes.push((method, path));
        }
    }
    routes
}

#[tokio::test]
async fn every_route_but_the_login_page_and_login_refuses_requests_without_credentials() {
    let app = spawn_app().await;
    let routes = documented_routes();
    assert!(routes.len() >= 30, "{routes:?}");
    for (index, (method, path)) in routes.into_iter().enumerate() {
        let public = ["/login", "/api/login", "/healthz", "/readyz"].contains(&path.as_str());
        let body = (method != Method::GET && method != Method::DELETE).then(|| json!({}));
        let reply = app
            .call(method.clone(), &path, Credentials::None, body.clone())
            .await;
        if public {
            assert_ne!(reply.status, StatusCode::UNAUTHORIZED, "{method} {path}");
            continue;
        }
        // 401 (not 404) also proves the documented route is served.
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(reply.body["error"], "unauthorized", "{method} {path}");
        assert_eq!(reply.body["success"], false, "{method} {path}");
        // From a client of its own each time: unknown tokens are limited per client.
        let client: SocketAddr = format!("198.51.{index}.7:40000").parse().unwrap();
        let reply = app
            .call_with(
                method.clone(),
                &path,
                Credentials::Bearer("jbt_wrong"),
                body.clone(),
                &[],
                Some(client),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        let reply = app
            .call(
                method.clone(),
                &path,
                Credentials::Cookie {
                    cookie: "jobbot_session=0123",
                    csrf: None,
                },
                body,
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    let page = app
        .call(Method::GET, "/login", Credentials::None, None)
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.as_str().unwrap().contains("<form"));
}

#[tokio::test]
async fn a_cookie_session_needs_its_csrf_token_for_writes_and_a_bearer_token_does_not() {
    let app = spawn_app().await;
    let wrong = app
        .call(
            Method::POST,
            "/api/login",
            Credentials::None,
            Some(json!({"password": "nope"})),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let (cookie, csrf) = app.log_in().await;

    let session = app.with_cookie(Method::GET, "/api/session", &cookie).await;
    assert_eq!(session.status, StatusCode::OK);
    assert_eq!(session.body["method"], "cookie");
    assert_eq!(session.body["csrf_token"], csrf.as_str());

    let revision = app.revision().await;
    let channel =
        |name: &str| json!({"revision": revision, "name": name, "telegram_id": -1001111111111i64});
    for csrf in [None, Some("0000")] {
        let reply = app
            .call(
                Method::POST,
                "/api/channels",
                Credentials::Cookie {
                    cookie: &cookie,
                    csrf,
                },
                Some(channel("Cookie channel")),
            )
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
        assert_eq!(reply.body["error"], "forbidden");
    }
    let created = app
        .call(
            Method::POST,
            "/api/channels",
            Credentials::Cookie {
                cookie: &cookie,
                csrf: Some(&csrf),
            },
            Some(channel("Cookie channel")),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);

    let by_token = app
        .send(
            Method::POST,
            "/api/channels",
            json!({"revision": created.body["revision"], "name": "Token channel", "telegram_id": -1002222222222i64}),
        )
        .await;
    assert_eq!(by_token.status, StatusCode::CREATED, "{}", by_token.body);

    let logout = app
        .call(
            Method::POST,
            "/api/logout",
            Credentials::Cookie {
                cookie: &cookie,
                csrf: Some(&csrf),
            },
            None,
        )
        .await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    let after = app.with_cookie(Method::GET, "/api/session", &cookie).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    let session_id = cookie.split_once('=').unwrap().1;
    app.assert_never_shown(&[ADMIN_PASSWORD, API_TOKEN, session_id]);
}

#[tokio::test]
async fn login_attempts_are_limited_per_client_address() {
    let app = spawn_app().await;
    let first: SocketAddr = "192.0.2.1:5000".parse().unwrap();
    let second: SocketAddr = "192.0.2.2:5000".parse().unwrap();
    let attempt = |client| {
        app.call_with(
            Method::POST,
            "/api/login",
            Credentials::None,
            Some(json!({"password": "guess"})),
            &[],
            Some(client),
        )
    };
    for _ in 0..5 {
        assert_eq!(attempt(first).await.status, StatusCode::UNAUTHORIZED);
    }
    let limited = attempt(first).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers.contains_key(header::RETRY_AFTER));
    // The limit holds even for the right password, and not for another client.
    let right = app
        .call_with(
            Method::POST,
            "/api/login",
            Credentials::None,
            Some(json!({"password": ADMIN_PASSWORD})),
            &[],
            Some(first),
        )
        .await;
    assert_eq!(right.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(attempt(second).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn api_tokens_are_shown_once_and_stop_working_when_revoked() {
    let app = spawn_app().await;
    let created = app
        .send(
            Method::POST,
            "/api/tokens",
            json!({"name": "backup script"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let token = created.body["token"].as_str().unwrap().to_owned();
    let id = created.body["id"].as_str().unwrap().to_owned();

    let session = app
        .call(
            Method::GET,
            "/api/session",
            Credentials::Bearer(&token),
            None,
        )
        .await;
    assert_eq!(session.body["token_id"], id.as_str());
    let list = app.get("/api/tokens").await;
    let names: Vec<&str> = list.body["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["JOBBOT_API_TOKEN", "backup script"]);
    assert!(!list.body.to_string().contains(&token));

    let revoked = app
        .call(
            Method::DELETE,
            &format!("/api/tokens/{id}"),
            Credentials::Bearer(API_TOKEN),
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let again = app
        .call(
            Method::DELETE,
            &format!("/api/tokens/{id}"),
            Credentials::Bearer(API_TOKEN),
            None,
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    let refused = app
        .call(
            Method::GET,
            "/api/session",
            Credentials::Bearer(&token),
            None,
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    // The token appeared in its creation response only.
    app.seen.lock().unwrap().remove(0);
    app.assert_never_shown(&[&token, API_TOKEN]);
}

/// The AI settings the form did not edit before (#17): the fallback chain, the reply delay and
/// the daily cap are written into `ai_config` in the file's format, every other key kept; a
/// delay whose minimum is above its maximum, a negative cap, a blank or unknown fallback
/// provider are refused naming the field, and nothing is written.
#[tokio::test]
async fn the_ai_fallback_chain_reply_delay_daily_cap_and_model_settings_are_edited_and_checked() {
    let app = spawn_app().await;
    let path = format!("/api/channels/{CHANNEL}");
    let before = app.config.snapshot().document.output_channels[0].clone();
    let saved = app
        .send(
            Method::PUT,
            &path,
            json!({"revision": app.revision().await,
                   "ai_fallback": [{"provider": "gemini"},
                                   {"provider": "openrouter", "model": "qwen/qwen3-coder:free"}],
                   "ai_reply_delay_seconds": [4, 11], "ai_max_replies_per_day": 6,
                   "ai_temperature": 0.3, "ai_max_tokens": 700, "ai_context_window_messages": 25}),
        )
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    let snapshot = app.config.snapshot();
    let channel = snapshot.config.channel(CHANNEL).unwrap();
    let chain: Vec<_> = channel
        .ai
        .chain()
        .map(|choice| (choice.provider.as_str(), choice.model.as_deref()))
        .collect();
    assert_eq!(
        chain[1..],
        [
            ("gemini", None),
            ("openrouter", Some("qwen/qwen3-coder:free"))
        ]
    );
    assert_eq!(channel.ai.reply_delay.min_seconds, 4);
    assert_eq!(channel.ai.reply_delay.max_seconds, 11);
    assert_eq!(channel.ai.max_replies_per_day, 6);
    assert_eq!(
        (
            channel.ai.temperature,
            channel.ai.max_tokens,
            channel.ai.context_window_messages
        ),
        (0.3, 700, 25)
    );
    let document = &snapshot.document.output_channels[0];
    let ai_config = document.ai_config.as_ref().unwrap();
    assert_eq!(
        ai_config["fallback"],
        json!(["gemini", {"provider": "openrouter", "model": "qwen/qwen3-coder:free"}])
    );
    assert_eq!(ai_config["reply_delay_seconds"], json!([4, 11]));
    assert_eq!(ai_config["max_replies_per_day"], 6);
    assert_eq!(ai_config["temperature"], 0.3);
    assert_eq!(ai_config["max_tokens"], 700);
    assert_eq!(ai_config["context_window_messages"], 25);
    // Everything the request did not name is as it was.
    for (key, value) in before
        .ai_config
        .iter()
        .flat_map(|config| config.as_object().unwrap())
    {
        let edited = [
            "fallback",
            "reply_delay_seconds",
            "max_replies_per_day",
            "temperature",
            "max_tokens",
            "context_window_messages",
        ];
        if !edited.contains(&key.as_str()) {
            assert_eq!(&ai_config[key], value, "{key}");
        }
    }
    assert_eq!(document.prompts, before.prompts);
    assert_eq!(document.name, before.name);

    let refusals = [
        (
            json!({"ai_reply_delay_seconds": [9, 3]}),
            "ai_reply_delay_seconds",
            StatusCode::CONFLICT,
        ),
        (
            json!({"ai_reply_delay_seconds": [3, 7200]}),
            "ai_reply_delay_seconds",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"ai_max_replies_per_day": -1}),
            "ai_max_replies_per_day",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"ai_temperature": 2.5}),
            "ai_temperature",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"ai_max_tokens": 0}),
            "ai_max_tokens",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"ai_context_window_messages": 201}),
            "ai_context_window_messages",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"ai_fallback": [{"provider": " "}]}),
            "ai_fallback[0].provider",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"ai_fallback": [{"provider": "gemini"}, {"provider": "nobody"}]}),
            "ai_config.fallback[1].provider",
            StatusCode::CONFLICT,
        ),
    ];
    for (change, field, status) in refusals {
        let mut body = change.clone();
        body["revision"] = json!(app.revision().await);
        let refused = app.send(Method::PUT, &path, body).await;
        assert_eq!(refused.status, status, "{change}: {}", refused.body);
        assert_eq!(
            problem_paths(&refused),
            [field],
            "{change}: {}",
            refused.body
        );
        let message = refused.body["problems"][0]["message"].as_str().unwrap();
        assert!(!message.is_empty(), "{change}");
    }
    assert_eq!(
        app.config.snapshot().document.output_channels[0].ai_config,
        document.ai_config,
        "nothing written"
    );
    // An empty chain removes it; the delay and cap stay.
    let cleared = app
        .send(
            Method::PUT,
            &path,
            json!({"revision": app.revision().await, "ai_fallback": []}),
        )
        .await;
    assert_eq!(cleared.status, StatusCode::OK, "{}", cleared.body);
    let snapshot = app.config.snapshot();
    let ai_config = snapshot.document.output_channels[0]
        .ai_config
        .as_ref()
        .unwrap();
    assert_eq!(ai_config.get("fallback"), None);
    assert_eq!(ai_config["max_replies_per_day"], 6);

    // The form shows the stored values.
    let (cookie, _) = app.log_in().await;
    let saved = app
        .send(
            Method::PUT,
            &path,
            json!({"revision": app.revision().await,
                   "ai_fallback": [{"provider": "gemini"}, {"provider": "groq", "model": "llama-3.1-8b-instant"}]}),
        )
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    let form = app
        .with_cookie(Method::GET, &path.replace("/api", ""), &cookie)
        .await;
    let html = form.body.as_str().unwrap();
    assert!(
        html.contains(">gemini\ngroq llama-3.1-8b-instant</textarea>"),
        "{html}"
    );
    assert!(
        html.contains(r#"name="ai_reply_delay_seconds.min" value="4""#),
        "{html}"
    );
    assert!(
        html.contains(r#"name="ai_reply_delay_seconds.max" value="11""#),
        "{html}"
    );
    assert!(
        html.contains(r#"name="ai_max_replies_per_day" value="6""#),
        "{html}"
    );
}

#[tokio::test]
async fn channels_are_created_read_changed_and_deleted_against_the_current_revision() {
    let app = spawn_app().await;
    let list = app.get("/api/channels").await;
    assert_eq!(list.status, StatusCode::OK);
    let revision = list.body["revision"].as_str().unwrap().to_owned();
    assert_eq!(
        list.headers[header::ETAG],
        format!("\"{revision}\"").as_str()
    );
    assert_eq!(list.body["channels"][0]["id"], CHANNEL);
    // A proxy password is masked in every response.
    let proxy = &list.body["channels"][0]["agents"][1]["proxy"];
    assert_eq!(proxy, "socks5://user:***@127.0.0.1:1080");

    let new = json!({"name": "Rust jobs", "telegram_id": -1003333333333i64, "input_sources": ["@rust_jobs"]});
    // Without a revision (the seed's request) the channel is added to the configuration as it
    // is now.
    let unversioned = app
        .send(
            Method::POST,
            "/api/channels",
            json!({"id": "unversioned", "name": "Go jobs", "telegram_id": -1004444444444i64}),
        )
        .await;
    assert_eq!(
        unversioned.status,
        StatusCode::CREATED,
        "{}",
        unversioned.body
    );
    assert_eq!(unversioned.body["success"], true);
    assert_eq!(unversioned.body["channel_id"], "unversioned");
    let revision = unversioned.body["revision"].as_str().unwrap().to_owned();
    let stale = app
        .call_with(
            Method::POST,
            "/api/channels",
            Credentials::Bearer(API_TOKEN),
            Some(new.clone()),
            &[("if-match", "\"0123456789abcdef\"")],
            None,
        )
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    assert_eq!(stale.body["current_revision"], revision.as_str());

    let created = app
        .call_with(
            Method::POST,
            "/api/channels",
            Credentials::Bearer(API_TOKEN),
            Some(new),
            &[("if-match", &format!("\"{revision}\""))],
            None,
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["channel"]["id"].as_str().unwrap().to_owned();
    assert!(
        id.len() == 16
            && id.starts_with("channel_")
            && id[8..].bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    let after_create = created.body["revision"].as_str().unwrap().to_owned();

    let read = app.get(&format!("/api/channels/{id}")).await;
    assert_eq!(read.body["channel"]["name"], "Rust jobs");
    assert_eq!(read.body["revision"], after_create.as_str());

    let changed = app
        .send(
            Method::PUT,
            &format!("/api/channels/{id}"),
            json!({"revision": after_create, "name": "Rust & Go jobs"}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert_eq!(changed.body["channel"]["name"], "Rust & Go jobs");
    assert_eq!(
        changed.body["channel"]["input_sources"],
        json!(["@rust_jobs"]),
        "fields not sent are kept"
    );
    let lost_update = app
        .send(
            Method::PUT,
            &format!("/api/channels/{id}"),
            json!({"revision": after_create, "name": "Older edit"}),
        )
        .await;
    assert_eq!(lost_update.status, StatusCode::CONFLICT);
    assert_eq!(
        lost_update.body["current_revision"],
        changed.body["revision"]
    );

    // The AI's mode, provider and model (#17): written into `ai_config`, other keys kept; a
    // wrong mode is named by its field.
    let ai = app
        .send(
            Method::PUT,
            &format!("/api/channels/{id}"),
            json!({"revision": app.revision().await, "ai_mode": "auto",
                   "ai_provider": "openai", "ai_model": "gpt-4o-mini"}),
        )
        .await;
    assert_eq!(ai.status, StatusCode::OK, "{}", ai.body);
    let channel = app.config.snapshot().config.channel(&id).unwrap().clone();
    assert_eq!(channel.ai.mode, jobbot_core::ai::AiMode::Auto);
    assert_eq!(channel.ai.primary.provider, "openai");
    assert_eq!(channel.ai.primary.model.as_deref(), Some("gpt-4o-mini"));
    let wrong = app
        .send(
            Method::PUT,
            &format!("/api/channels/{id}"),
            json!({"revision": app.revision().await, "ai_mode": "sometimes"}),
        )
        .await;
    assert_eq!(
        wrong.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        wrong.body
    );
    assert_eq!(problem_paths(&wrong), ["ai_mode"]);

    // The prompts: all six written to `prompts`, an empty one meaning the built-in text; one
    // too long is named by its path and nothing is written.
    let prompts = json!({"base_context": "Мы — студия Rust.", "discovery": "",
        "engagement": "Расскажите о проекте.", "call_ready": "", "call_pending": "",
        "call_declined": ""});
    let with_prompts = app
        .send(
            Method::PUT,
            &format!("/api/channels/{id}"),
            json!({"revision": app.revision().await, "ai_prompts": prompts}),
        )
        .await;
    assert_eq!(with_prompts.status, StatusCode::OK, "{}", with_prompts.body);
    let channel = app.config.snapshot().config.channel(&id).unwrap().clone();
    assert_eq!(channel.ai.prompts.base_context, "Мы — студия Rust.");
    assert_eq!(channel.ai.prompts.engagement, "Расскажите о проекте.");
    assert_eq!(
        channel
            .ai
            .prompts
            .for_phase(jobbot_core::ai::Phase::Discovery),
        jobbot_core::ai::Prompts::defaults().discovery
    );
    assert_eq!(channel.ai.mode, jobbot_core::ai::AiMode::Auto, "kept");
    let mut too_long = prompts.clone();
    too_long["call_ready"] = json!("я".repeat(20_001));
    let refused = app
        .send(
            Method::PUT,
            &format!("/api/channels/{id}"),
            json!({"revision": app.revision().await, "ai_prompts": too_long}),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    assert_eq!(problem_paths(&refused), ["ai_prompts.call_ready"]);
    assert_eq!(
        app.config
            .snapshot()
            .config
            .channel(&id)
            .unwrap()
            .ai
            .prompts,
        channel.ai.prompts
    );
    // The form shows what is stored: the mode selected, provider, model, the prompts, and the
    // built-in text where a prompt is empty.
    let (cookie, _) = app.log_in().await;
    let form = app
        .with_cookie(Method::GET, &format!("/channels/{id}"), &cookie)
        .await;
    let html = form.body.as_str().unwrap();
    assert!(html.contains(r#"<option value="auto" selected>"#), "{html}");
    assert!(
        html.contains(r#"name="ai_provider" value="openai""#),
        "{html}"
    );
    assert!(
        html.contains(r#"name="ai_model" value="gpt-4o-mini""#),
        "{html}"
    );
    assert!(html.contains(">Мы — студия Rust.</textarea>"), "{html}");
    assert!(
        html.contains(&format!(
            r#"name="ai_prompts.discovery" rows="4" placeholder="{}""#,
            jobbot_core::ai::Prompts::defaults().discovery
        )),
        "{html}"
    );

    // A PUT that sends the masked proxy back keeps the stored one.
    let current = app.revision().await;
    let agents = list.body["channels"][0]["agents"].clone();
    let kept = app
        .send(
            Method::PUT,
            &format!("/api/channels/{CHANNEL}"),
            json!({"revision": current, "agents": agents, "name": "Jobs!"}),
        )
        .await;
    assert_eq!(kept.status, StatusCode::OK, "{}", kept.body);
    let stored = &app.config.snapshot().document.output_channels[0].agents[1];
    assert_eq!(
        stored.proxy.as_deref(),
        Some("socks5://user:proxy-secret@127.0.0.1:1080")
    );

    let current = app.revision().await;
    let stale_delete = app
        .call(
            Method::DELETE,
            &format!("/api/channels/{id}?revision={after_create}"),
            Credentials::Bearer(API_TOKEN),
            None,
        )
        .await;
    assert_eq!(stale_delete.status, StatusCode::CONFLICT);
    let deleted = app
        .call(
            Method::DELETE,
            &format!("/api/channels/{id}?revision={current}"),
            Credentials::Bearer(API_TOKEN),
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    assert_eq!(
        app.get(&format!("/api/channels/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    app.assert_never_shown(&["proxy-secret", API_TOKEN]);
}

#[tokio::test]
async fn validation_errors_name_each_field_in_the_request() {
    let app = spawn_app().await;
    let revision = app.revision().await;
    let channel = format!("/api/channels/{CHANNEL}");
    let agents = format!("/api/channels/{CHANNEL}/agents");
    let bulk = format!("/api/channels/{CHANNEL}/agents/bulk");
    let good_agent = json!({"phone": "+79991000000", "session_name": "agent_a"});
    // 422: a value breaks its pattern or type; 409: the change breaks a rule across fields or the
    // state (a duplicate, an id that cannot change).
    let invalid = StatusCode::UNPROCESSABLE_ENTITY;
    let rejected = StatusCode::CONFLICT;
    let mut cases: Vec<(Method, &str, Value, Vec<&str>, StatusCode)> = vec![
        (
            Method::POST,
            "/api/channels",
            json!({"revision": revision, "name": "", "telegram_id": -1001234567899i64}),
            vec!["name"],
            invalid,
        ),
        (
            Method::POST,
            "/api/channels",
            json!({"revision": revision, "name": "X", "telegram_id": -1001234567899i64,
            "agents": [{"phone": "+7999", "session_name": "agent_x"}]}),
            vec!["agents[0].phone"],
            invalid,
        ),
        (
            Method::POST,
            "/api/channels",
            json!({"revision": revision, "telegram_id": "not a number"}),
            vec!["telegram_id"],
            invalid,
        ),
        (
            Method::POST,
            "/api/channels",
            json!({"revision": revision, "id": CHANNEL, "name": "Dup", "telegram_id": -1001234567899i64}),
            vec!["id"],
            rejected,
        ),
        (
            Method::POST,
            "/api/channels",
            json!({"revision": "not-a-revision", "name": "X", "telegram_id": -1001234567899i64}),
            vec!["revision"],
            invalid,
        ),
        (
            Method::PUT,
            &channel,
            json!({"revision": revision, "agents": [good_agent, {"phone": "12", "session_name": "agent_c"}]}),
            vec!["agents[1].phone"],
            invalid,
        ),
        (
            Method::PUT,
            &channel,
            json!({"revision": revision, "id": "channel_other"}),
            vec!["id"],
            rejected,
        ),
        (
            Method::POST,
            &agents,
            json!({"revision": revision, "phone": "+7999", "session_name": "agent_c"}),
            vec!["phone"],
            invalid,
        ),
        (
            Method::POST,
            &agents,
            json!({"revision": revision, "phone": "+79991000000", "session_name": "agent_a"}),
            vec!["session_name"],
            rejected,
        ),
        (
            Method::POST,
            &bulk,
            json!({"revision": revision, "add": [{"phone": "+79991000009", "session_name": "bad/name"}]}),
            vec!["add[0].session_name"],
            invalid,
        ),
        (
            Method::POST,
            &bulk,
            json!({"revision": revision, "remove": ["agent_a", "agent_zz"]}),
            vec!["remove[1]"],
            rejected,
        ),
        (
            Method::POST,
            "/api/agents/pause",
            json!({"sessions": ["agent_a", "../etc"]}),
            vec!["sessions[1]"],
            invalid,
        ),
        (
            Method::POST,
            "/api/agents/resume",
            json!({"sessions": []}),
            vec!["sessions"],
            invalid,
        ),
        (
            Method::POST,
            "/api/logins",
            json!({"session": "a/b"}),
            vec!["session"],
            invalid,
        ),
        (
            Method::POST,
            "/api/tokens",
            json!({"name": " "}),
            vec!["name"],
            invalid,
        ),
        (
            Method::POST,
            "/api/tokens",
            json!({"name": "x", "scope": "all"}),
            vec!["scope"],
            invalid,
        ),
    ];
    cases.push((
        Method::PUT,
        &channel,
        json!({"revision": revision, "crm_enabled": true, "agents": []}),
        vec!["agents"],
        rejected,
    ));
    cases.push((
        Method::POST,
        "/api/channels",
        json!({"revision": revision, "telegram_id": -1001234567899i64}),
        vec!["name"],
        invalid,
    ));
    for (method, uri, body, expected, status) in cases {
        let reply = app.send(method.clone(), uri, body.clone()).await;
        assert_eq!(
            reply.status, status,
            "{method} {uri} {body}: {}",
            reply.body
        );
        let code = if status == invalid {
            "invalid"
        } else {
            "rejected"
        };
        assert_eq!(reply.body["error"], code, "{method} {uri} {body}");
        assert_eq!(
            problem_paths(&reply),
            expected,
            "{method} {uri} {body}: {}",
            reply.body
        );
    }
    // Nothing was written.
    assert_eq!(app.revision().await, revision);
    // A malformed If-Match names the header.
    let reply = app
        .call_with(
            Method::PUT,
            &channel,
            Credentials::Bearer(API_TOKEN),
            Some(json!({"name": "X"})),
            &[("if-match", "\"zz\"")],
            None,
        )
        .await;
    assert_eq!(problem_paths(&reply), ["If-Match"]);
}

#[tokio::test]
async fn agents_are_added_removed_paused_and_resumed_live() {
    let app = spawn_app().await;
    app.world
        .create_account("agent_c", NewUser::named("Agent C").phone("+79991000002"));

    let listed = app.get(&format!("/api/channels/{CHANNEL}/agents")).await;
    assert_eq!(listed.body["agents"].as_array().unwrap().len(), 2);
    let revision = listed.body["revision"].as_str().unwrap().to_owned();
    let added = app
        .send(
            Method::POST,
            &format!("/api/channels/{CHANNEL}/agents"),
            json!({"revision": revision, "phone": "+79991000002", "session_name": "agent_c"}),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
    assert_eq!(added.body["agents"].as_array().unwrap().len(), 3);
    // Hot reload: the engine connects the new agent without a restart.
    wait_ready(&app, "agent_c").await;

    let status = app
        .get(&format!("/api/channels/{CHANNEL}/agents/status"))
        .await;
    assert_eq!(status.status, StatusCode::OK);
    assert_eq!(status.body["total_agents"], 3);
    assert_eq!(
        app.get("/api/channels/nope/agents/status").await.status,
        StatusCode::NOT_FOUND
    );

    let all = app.get("/api/agents").await;
    let agent_c = all.body["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["session_name"] == "agent_c")
        .unwrap()
        .clone();
    assert_eq!(agent_c["channels"], json!([CHANNEL]));
    assert_eq!(agent_c["live"]["link"]["state"], "ready");

    let paused = app
        .send(
            Method::POST,
            "/api/agents/pause",
            json!({"sessions": ["agent_c", "agent_unknown"]}),
        )
        .await;
    assert_eq!(paused.status, StatusCode::OK);
    assert_eq!(
        paused.body,
        json!({"success": true, "affected": ["agent_c"], "unknown": ["agent_unknown"]})
    );
    wait_link(&app, "agent_c", |link| link == Some(&LinkState::Paused)).await;
    // Saving a channel (any configuration change) keeps the pause (issue #11: it used to start
    // the agent's owner again).
    let saved = app
        .send(
            Method::PUT,
            &format!("/api/channels/{CHANNEL}"),
            json!({"revision": app.revision().await, "name": "Jobs, renamed"}),
        )
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    wait_link(&app, "agent_b", |link| {
        link.is_some_and(LinkState::is_ready)
    })
    .await;
    let agents = app.get("/api/agents").await;
    let agent_c = agents.body["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["session_name"] == "agent_c")
        .unwrap()
        .clone();
    assert_eq!(agent_c["live"]["link"]["state"], "paused", "{agent_c}");
    // The stopped owner disconnects in the background (after saving its update position).
    let agent_c_session = SessionName::parse("agent_c").unwrap();
    tokio::time::timeout(Duration::from_secs(60), async {
        while app.world.open_connections(&agent_c_session) > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the paused agent's connection closes");
    let resumed = app
        .send(
            Method::POST,
            "/api/agents/resume",
            json!({"sessions": ["agent_c"]}),
        )
        .await;
    assert_eq!(resumed.body["affected"], json!(["agent_c"]));
    wait_ready(&app, "agent_c").await;

    let revision = saved.body["revision"].as_str().unwrap();
    let removed = app
        .call(
            Method::DELETE,
            &format!("/api/channels/{CHANNEL}/agents/agent_c?revision={revision}"),
            Credentials::Bearer(API_TOKEN),
            None,
        )
        .await;
    assert_eq!(removed.status, StatusCode::OK, "{}", removed.body);
    assert_eq!(removed.body["agents"].as_array().unwrap().len(), 2);
    wait_link(&app, "agent_c", |link| link.is_none()).await;
    let revision = removed.body["revision"].as_str().unwrap();
    let gone = app
        .call(
            Method::DELETE,
            &format!("/api/channels/{CHANNEL}/agents/agent_c?revision={revision}"),
            Credentials::Bearer(API_TOKEN),
            None,
        )
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);

    let bulk = app
        .send(
            Method::POST,
            &format!("/api/channels/{CHANNEL}/agents/bulk"),
            json!({"revision": revision,
            "add": [{"phone": "+79991000002", "session_name": "agent_c"}], "remove": ["agent_a"]}),
        )
        .await;
    assert_eq!(bulk.status, StatusCode::OK, "{}", bulk.body);
    let sessions: Vec<&str> = bulk.body["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["session_name"].as_str().unwrap())
        .collect();
    assert_eq!(sessions, ["agent_b", "agent_c"]);
}

#[tokio::test]
async fn logins_go_phone_code_password_without_showing_the_code_or_password() {
    let app = spawn_app().await;
    let phone = "+79995550001";
    app.world.create_user(
        NewUser::named("Newcomer")
            .phone(phone)
            .two_factor(TWO_FACTOR_PASSWORD, Some("pet")),
    );

    wait_ready(&app, "agent_a").await;
    let busy = app
        .send(Method::POST, "/api/logins", json!({"session": "agent_a"}))
        .await;
    assert_eq!(busy.status, StatusCode::CONFLICT, "{}", busy.body);
    assert!(
        busy.body["message"]
            .as_str()
            .unwrap()
            .contains("pause the agent first")
    );

    let started = app
        .send(Method::POST, "/api/logins", json!({"session": "agent_new"}))
        .await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.body);
    assert_eq!(started.body["login"]["state"], "awaiting_phone");
    let early = app
        .send(
            Method::POST,
            "/api/logins/agent_new/code",
            json!({"code": "12345"}),
        )
        .await;
    assert_eq!(early.status, StatusCode::CONFLICT);

    let bad_phone = app
        .send(
            Method::POST,
            "/api/logins/agent_new/phone",
            json!({"phone": "12"}),
        )
        .await;
    assert_eq!(problem_paths(&bad_phone), ["phone"]);
    let asked = app
        .send(
            Method::POST,
            "/api/logins/agent_new/phone",
            json!({"phone": phone}),
        )
        .await;
    assert_eq!(asked.status, StatusCode::OK, "{}", asked.body);
    assert_eq!(asked.body["login"]["state"], "awaiting_code");
    let code = app
        .world
        .last_login_code(&PhoneNumber::parse(phone).unwrap())
        .unwrap();

    let wrong_code = app
        .send(
            Method::POST,
            "/api/logins/agent_new/code",
            json!({"code": "wrong"}),
        )
        .await;
    assert_eq!(problem_paths(&wrong_code), ["code"]);
    let typed_code = app
        .send(
            Method::POST,
            "/api/logins/agent_new/code",
            json!({"code": 12345}),
        )
        .await;
    assert_eq!(problem_paths(&typed_code), ["code"]);
    let needs_password = app
        .send(
            Method::POST,
            "/api/logins/agent_new/code",
            json!({"code": code}),
        )
        .await;
    assert_eq!(
        needs_password.body["login"]["state"], "awaiting_password",
        "{}",
        needs_password.body
    );
    assert_eq!(needs_password.body["login"]["hint"], "pet");
    let status = app.get("/api/logins/agent_new").await;
    assert_eq!(status.body["login"]["state"], "awaiting_password");

    let wrong_password = app
        .send(
            Method::POST,
            "/api/logins/agent_new/password",
            json!({"password": "not-it"}),
        )
        .await;
    assert_eq!(problem_paths(&wrong_password), ["password"]);
    let signed_in = app
        .send(
            Method::POST,
            "/api/logins/agent_new/password",
            json!({"password": TWO_FACTOR_PASSWORD}),
        )
        .await;
    assert_eq!(signed_in.status, StatusCode::OK, "{}", signed_in.body);
    assert_eq!(signed_in.body["login"]["state"], "signed_in");
    assert!(
        app.world
            .user_of_session(&SessionName::parse("agent_new").unwrap())
            .is_some()
    );
    assert_eq!(
        app.get("/api/logins/agent_new").await.status,
        StatusCode::NOT_FOUND
    );
    app.assert_never_shown(&[&code, TWO_FACTOR_PASSWORD, "not-it", API_TOKEN]);
}

#[tokio::test]
async fn stats_and_metrics_show_configuration_outbox_and_agents() {
    let app = spawn_app().await;
    let ticket = app.enqueue(OutboxKind::AutoResponse, 0, "Hello!").await;
    let delivery = tokio::time::timeout(Duration::from_secs(60), ticket.delivery())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(delivery, jobbot_engine::Delivery::Sent { .. }),
        "{delivery:?}"
    );
    let stats = app.get("/api/stats").await;
    assert_eq!(stats.status, StatusCode::OK);
    for key in [
        "notifications_sent",
        "auto_responses_sent",
        "flood_waits_total",
        "outbox",
        "success",
    ] {
        assert!(stats.body.get(key).is_some(), "{key} in {}", stats.body);
    }
    assert_eq!(stats.body["total_channels"], 1);
    assert_eq!(stats.body["total_agents"], 2);
    assert_eq!(stats.body["outbox"]["sent"], 1);
    assert_eq!(stats.body["auto_responses_sent"], 1);
    assert_eq!(stats.body["notifications_sent"], 0);
    let hours = stats.body["sent_per_agent_hour"].as_array().unwrap();
    assert_eq!(hours.len(), 1, "{hours:?}");
    assert_eq!(hours[0]["sent"], 1);
    assert_eq!(stats.body["sent_per_agent_day"][0]["sent"], 1);

    let metrics = app.get("/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert_eq!(
        metrics.headers[header::CONTENT_TYPE],
        jobbot_web::metrics::CONTENT_TYPE
    );
    let text = metrics.body.as_str().unwrap();
    for line in [
        // From the store, read when scraped.
        "# TYPE jobbot_outbox_messages gauge",
        "jobbot_outbox_messages{status=\"failed\"} 0",
        "jobbot_outbox_messages{status=\"sent\"} 1",
        // Counted by the engine where the message was sent.
        "# TYPE jobbot_outbox_finished counter",
        "jobbot_outbox_finished_total{kind=\"auto_response\",status=\"sent\"} 1",
        "jobbot_flood_waits_total 0",
        // The engine's state, read when scraped.
        "jobbot_agent_state{session=\"agent_a\",state=\"ready\"} 1",
        // The learned limits: an agent that was never refused is at its configured ceiling.
        "jobbot_agent_learned_messages_per_minute{session=\"agent_a\"} 60.0",
        "jobbot_agent_learned_first_messages_per_day{session=\"agent_a\"} 40",
        // Every class of call per agent, learned and ceiling: sends at the configured pacing,
        // the others at jobbot's default ceilings.
        "jobbot_agent_learned_calls_per_minute{session=\"agent_a\",class=\"send_message\"} 60.0",
        "jobbot_agent_call_ceiling_per_minute{session=\"agent_a\",class=\"send_message\"} 60.0",
        "jobbot_agent_learned_calls_per_minute{session=\"agent_a\",class=\"resolve_username\"} 6.0",
        "jobbot_agent_call_ceiling_per_minute{session=\"agent_a\",class=\"join_channel\"} 0.6",
        "jobbot_agent_learned_calls_per_minute{session=\"agent_a\",class=\"create_forum_topic\"} 2.0",
        // The web's own.
        "# TYPE jobbot_http_connections_open gauge",
        "# EOF",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    let sent_by_agents: u64 = text
        .lines()
        .filter(|line| line.starts_with("jobbot_agent_sent_total{"))
        .map(|line| line.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(sent_by_agents, 1);
}

#[tokio::test]
async fn the_openapi_document_is_openapi_3_and_lists_every_route() {
    let app = spawn_app().await;
    let reply = app.get("/api/openapi.json").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body["openapi"].as_str().unwrap().starts_with("3."));
    let document: utoipa::openapi::OpenApi =
        serde_json::from_value(reply.body.clone()).expect("a valid OpenAPI document");
    let mut listed: Vec<String> = document
        .paths
        .paths
        .iter()
        .flat_map(|(path, item)| {
            let item = serde_json::to_value(item).unwrap();
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| k.as_str() != "parameters")
                .map(|method| format!("{} {path}", method.to_uppercase()))
                .collect::<Vec<_>>()
        })
        .collect();
    listed.sort();
    let mut expected = vec![
        "GET /healthz",
        "GET /login",
        "POST /api/login",
        "POST /api/logout",
        "GET /api/session",
        "GET /api/tokens",
        "POST /api/tokens",
        "DELETE /api/tokens/{id}",
        "GET /api/channels",
        "POST /api/channels",
        "GET /api/channels/{id}",
        "PUT /api/channels/{id}",
        "DELETE /api/channels/{id}",
        "GET /api/channels/{id}/agents",
        "POST /api/channels/{id}/agents",
        "DELETE /api/channels/{id}/agents/{session}",
        "GET /api/channels/{id}/agents/status",
        "POST /api/channels/{id}/agents/bulk",
        "POST /api/channels/{id}/setup",
        "GET /api/agents",
        "GET /readyz",
        "POST /api/agents/pause",
        "POST /api/agents/resume",
        "POST /api/logins",
        "GET /api/logins/{session}",
        "DELETE /api/logins/{session}",
        "POST /api/logins/{session}/phone",
        "POST /api/logins/{session}/code",
        "POST /api/logins/{session}/resend",
        "POST /api/logins/{session}/password",
        "POST /api/logins/{session}/qr",
        "POST /api/logins/{session}/qr/wait",
        "GET /api/logins/{session}/qr.svg",
        "GET /api/stats",
        "GET /api/conversations",
        "GET /api/conversations/{id}/ai",
        "POST /api/conversations/{id}/ai/send",
        "POST /api/conversations/{id}/ai/release",
        "GET /api/cluster",
        "GET /api/vacancies",
        "GET /api/outbox/ended",
        "GET /api/doctor",
        "GET /metrics",
        "GET /api/ws",
        "GET /api/openapi.json",
    ];
    expected.sort();
    assert_eq!(listed, expected);
    let schemes = &reply.body["components"]["securitySchemes"];
    assert!(schemes.get("bearer").is_some() && schemes.get("session_cookie").is_some());
}

type LiveSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/api/ws` on `address` with the API token.
async fn open_live(address: std::net::SocketAddr) -> LiveSocket {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{address}/api/ws")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        header::AUTHORIZATION,
        format!("Bearer {API_TOKEN}").parse().unwrap(),
    );
    tokio_tungstenite::connect_async(request)
        .await
        .expect("the WebSocket opens")
        .0
}

/// The next text message of the live view, as JSON.
async fn next_live(socket: &mut LiveSocket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(60), socket.next())
            .await
            .expect("a message arrives")
            .expect("the socket is open")
            .unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

/// With several nodes, the live view also shows what the other nodes' agents do (heard through
/// the cluster feed), each event with the node it happened on (#16 item 4).
#[tokio::test]
async fn the_live_websocket_shows_the_other_nodes_events_with_their_node() {
    let app = spawn_app().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let state = AppState::new(
        app.engine.clone(),
        app.config.clone(),
        settings(),
        Arc::new(SimConnector::new(app.world.clone())),
    );
    let others = tokio::sync::broadcast::channel(16).0;
    state.set_cluster_events(others.clone());
    let server = tokio::spawn(jobbot_web::serve(listener, state, async {
        let _ = stopped.await;
    }));
    let mut socket = open_live(address).await;
    let mut next = async || next_live(&mut socket).await;
    assert_eq!(next().await["type"], "snapshot");
    // The connection subscribed before its snapshot, so this event reaches it.
    others
        .send(jobbot_store::ClusterEvent {
            node: "node-2".into(),
            event: json!({"type": "flood_wait", "session": "agent_9", "seconds": 42}),
        })
        .unwrap();
    let heard = loop {
        let message = next().await;
        if message["type"] == "flood_wait" && message["session"] == "agent_9" {
            break message;
        }
    };
    assert_eq!(heard["node"], "node-2");
    assert_eq!(heard["seconds"], 42);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_live_websocket_shows_an_agent_getting_a_flood_wait() {
    let app = spawn_app().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let state = AppState::new(
        app.engine.clone(),
        app.config.clone(),
        settings(),
        Arc::new(SimConnector::new(app.world.clone())),
    );
    let server = tokio::spawn(jobbot_web::serve(listener, state, async {
        let _ = stopped.await;
    }));

    let mut socket = open_live(address).await;
    let mut next = async || next_live(&mut socket).await;
    let snapshot = next().await;
    assert_eq!(snapshot["type"], "snapshot");
    assert!(snapshot["agents"].is_array());

    // jobbot is told the agents may send bursts of 10; the simulator allows 5. Twenty messages
    // between two agents make at least one flood wait certain.
    for index in 0..20 {
        app.enqueue(
            OutboxKind::Notification,
            index % 5,
            &format!("message {index}"),
        )
        .await;
    }
    // The flood wait shows either as its own message or, if this client fell behind the feed,
    // in the fresh snapshot the server sends instead.
    loop {
        let message = next().await;
        assert_ne!(
            message["type"], "telegram",
            "raw Telegram events are never forwarded"
        );
        match message["type"].as_str().unwrap() {
            "flood_wait" => {
                assert!(message["session"].as_str().unwrap().starts_with("agent_"));
                assert!(message["seconds"].as_u64().unwrap() > 0);
                break;
            }
            "snapshot"
                if message["agents"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|agent| agent["flood_wait_until_unix_ms"].is_i64()) =>
            {
                break;
            }
            _ => {}
        }
    }
    assert!(app.engine.metrics().flood_waits_total.get() > 0);
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("graceful shutdown closes the live socket")
        .unwrap()
        .unwrap();
    let _ = &app.agents;
}

#[tokio::test]
async fn vacancies_are_listed_newest_first_and_filtered() {
    use jobbot_core::store::{MatchedChannel, ProcessedMessage, VacancyContacts, VacancyStatus};

    let app = spawn_app().await;
    let store = app.engine.store();
    let source = ChatId::from_bot_api(-1001234567890).unwrap();
    for (message_id, status) in [
        (1, VacancyStatus::Relevant),
        (2, VacancyStatus::NotRelevant),
        (3, VacancyStatus::Relevant),
    ] {
        let matched = if status == VacancyStatus::Relevant {
            vec![MatchedChannel {
                channel_id: CHANNEL.into(),
                keywords: vec!["python".into()],
                notified: true,
            }]
        } else {
            vec![]
        };
        let stored = store
            .record_processed(&ProcessedMessage {
                source,
                message_id,
                source_title: "Python Jobs".into(),
                link: format!("https://t.me/python_jobs/{message_id}"),
                text: format!("Vacancy {message_id}: python developer, write @hr_{message_id}"),
                text_hash: format!("hash{message_id}"),
                posted_at: UnixMillis(1_750_000_000_000 + i64::from(message_id)),
                processed_at: UnixMillis(1_750_000_000_000 + i64::from(message_id)),
                status,
                matched,
                contacts: VacancyContacts {
                    telegram: vec![format!("@hr_{message_id}")],
                    ..VacancyContacts::default()
                },
            })
            .await
            .unwrap();
        assert!(stored);
    }
    let check = async |query: &str, expected: &[i64]| {
        let reply = app.get(&format!("/api/vacancies{query}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{query}: {}", reply.body);
        let ids: Vec<i64> = reply.body["vacancies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["message_id"].as_i64().unwrap())
            .collect();
        assert_eq!(ids, expected, "{query}");
        reply
    };
    check("", &[3, 2, 1]).await;
    check("?status=relevant", &[3, 1]).await;
    check("?status=not_relevant", &[2]).await;
    check(&format!("?channel_id={CHANNEL}"), &[3, 1]).await;
    check("?channel_id=other", &[]).await;
    let first_page = check("?limit=2", &[3, 2]).await;
    let next = first_page.body["next_before_id"].as_i64().unwrap();
    check(&format!("?limit=2&before_id={next}"), &[1]).await;
    let one = app.get("/api/vacancies?status=relevant&limit=1").await;
    assert_eq!(
        one.body["vacancies"][0]["matched"][0]["channel_id"],
        CHANNEL
    );
    assert_eq!(
        one.body["vacancies"][0]["contacts"]["telegram"],
        json!(["@hr_3"])
    );

    let invalid = app
        .get("/api/vacancies?status=maybe&limit=0&before_id=x")
        .await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem_paths(&invalid), ["status", "before_id", "limit"]);

    // The conversations' list takes the same limit; without a CRM in the process it says so.
    let invalid = app.get("/api/conversations?limit=501").await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem_paths(&invalid), ["limit"]);
    let no_crm = app.get("/api/conversations").await;
    assert_eq!(
        no_crm.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        no_crm.body
    );
}

/// Messages that ended undelivered are listed for the operator with their typed end, and one
/// that may have been delivered by an account that is gone says so.
#[tokio::test]
async fn messages_that_ended_undelivered_are_listed_with_their_typed_end() {
    use jobbot_core::store::{AccountGone, OutboxEnd, OutboxFailure};
    use jobbot_core::telegram::{RandomId, TelegramError};

    let app = spawn_app().await;
    let store = app.engine.store();
    let now = app.engine.clock().now_unix();
    let mut ids = Vec::new();
    for key in ["gone", "refused"] {
        let enqueued = store
            .enqueue(NewOutboxMessage {
                channel_id: CHANNEL.into(),
                kind: OutboxKind::AutoResponse,
                sender: SenderSelection::ChannelAgents { sticky: None },
                recipient: Recipient::Username {
                    username: app.recipients[0].clone(),
                },
                content: MessageContent::plain("hello"),
                first_contact: true,
                idempotency_key: Some(format!("ended:{key}")),
                created_at: now,
                not_before: None,
                expires_at: now.plus(Duration::from_secs(3600)),
            })
            .await
            .unwrap();
        ids.push(enqueued.id());
    }
    let agent = SessionName::parse("agent_gone").unwrap();
    store
        .mark_ended(
            ids[0],
            &OutboxEnd::Failed {
                failure: OutboxFailure::InDoubtAccountGone {
                    agent: agent.clone(),
                    random_id: RandomId(77),
                    account: AccountGone::Removed,
                },
            },
            now,
        )
        .await
        .unwrap();
    store
        .mark_ended(
            ids[1],
            &OutboxEnd::Failed {
                failure: OutboxFailure::Recipient {
                    agent: agent.clone(),
                    error: TelegramError::PrivacyRestricted,
                },
            },
            now,
        )
        .await
        .unwrap();

    let reply = app.get("/api/outbox/ended").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let messages = reply.body["messages"].as_array().unwrap();
    let listed: Vec<(i64, bool)> = messages
        .iter()
        .map(|m| {
            (
                m["id"].as_i64().unwrap(),
                m["may_have_been_delivered"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed.len(), 2, "{}", reply.body);
    assert!(listed.contains(&(ids[0].0, true)), "{listed:?}");
    assert!(listed.contains(&(ids[1].0, false)), "{listed:?}");
    let gone = messages
        .iter()
        .find(|m| m["id"].as_i64() == Some(ids[0].0))
        .unwrap();
    assert_eq!(gone["status"], "failed");
    assert_eq!(gone["end"]["failure"]["agent"], "agent_gone");
    assert!(
        gone["reason"].as_str().unwrap().contains("agent_gone"),
        "{gone}"
    );

    let invalid = app.get("/api/outbox/ended?days=0&limit=x").await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem_paths(&invalid), ["days", "limit"]);
}

// ----- Hardening (issue 15) -----

/// `app` served on a port-0 socket the way `jobbot run` serves it, with its own settings.
struct Served {
    address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Served {
    async fn start(app: &TestApp, configure: impl FnOnce(&mut WebSettings)) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut settings = settings();
        configure(&mut settings);
        let state = AppState::new(
            app.engine.clone(),
            app.config.clone(),
            settings,
            Arc::new(SimConnector::new(app.world.clone())),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(jobbot_web::serve(listener, state, async {
            let _ = stopped.await;
        }));
        Self {
            address,
            stop: Some(stop),
            server,
        }
    }

    async fn connect(&self) -> tokio::net::TcpStream {
        tokio::net::TcpStream::connect(self.address).await.unwrap()
    }

    /// Sends `request` on a fresh connection and reads until the server closes it.
    async fn exchange(&self, request: &str) -> String {
        let mut stream = self.connect().await;
        stream.write_all(request.as_bytes()).await.unwrap();
        read_until_closed(&mut stream).await
    }

    async fn shut_down(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(60), self.server)
            .await
            .expect("the server stops")
            .unwrap()
            .unwrap();
    }
}

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Everything the server sends until it closes the connection (a generous deadline turns a hang
/// into a failure; nothing is asserted about how long it took).
async fn read_until_closed(stream: &mut tokio::net::TcpStream) -> String {
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(count) => received.extend_from_slice(&buffer[..count]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server never closed the connection");
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test]
async fn the_language_switch_never_redirects_to_another_site() {
    let app = spawn_app().await;
    for (back, expected) in [
        ("/agents", "/agents"),
        ("/channels/channel_1?x=1", "/channels/channel_1?x=1"),
        // A tab, a line break or a backslash is dropped or read as `/` by browsers: `//evil`.
        ("/%09/evil.example", "/"),
        ("/%0A/evil.example", "/"),
        ("/%0D/evil.example", "/"),
        ("/%5Cevil.example", "/"),
        ("%5C%5Cevil.example", "/"),
        ("//evil.example", "/"),
        ("%20//evil.example", "/"),
        ("https://evil.example/", "/"),
        ("evil.example", "/"),
    ] {
        let reply = app
            .call(
                Method::GET,
                &format!("/lang/en?back={back}"),
                Credentials::None,
                None,
            )
            .await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{back}");
        assert_eq!(reply.headers[header::LOCATION], expected, "{back}");
    }
}

#[tokio::test]
async fn slow_clients_are_cut_off_by_header_and_body_timeouts() {
    let app = spawn_app().await;
    let served = Served::start(&app, |settings| {
        settings.limits.header_read_timeout = Duration::from_secs(1);
        settings.limits.body_timeout = Duration::from_secs(1);
    })
    .await;
    // Headers that never end: the connection is closed.
    let mut slow = served.connect().await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: jobbot\r\n")
        .await
        .unwrap();
    assert_eq!(read_until_closed(&mut slow).await, "");
    // A kept-alive connection that sends nothing more is closed after its answer.
    let idle = served
        .exchange("GET /healthz HTTP/1.1\r\nHost: jobbot\r\n\r\n")
        .await;
    assert!(idle.starts_with("HTTP/1.1 200 OK"), "{idle}");
    // A body that never arrives in full: 408, in the API's shape.
    let answer = served
        .exchange(
            "POST /api/login HTTP/1.1\r\nHost: jobbot\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"pass",
        )
        .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"error\":\"request_timeout\""), "{answer}");
    served.shut_down().await;
}

#[tokio::test]
async fn connections_beyond_the_cap_get_503_until_one_closes() {
    let app = spawn_app().await;
    let served = Served::start(&app, |settings| {
        settings.limits.max_connections = 2;
        settings.limits.header_read_timeout = Duration::from_secs(120);
    })
    .await;
    // Two clients hold the two connections (accepted in order, before the third).
    let mut first = served.connect().await;
    let mut second = served.connect().await;
    first.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    second
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .unwrap();
    let refused = served
        .exchange("GET /healthz HTTP/1.1\r\nHost: jobbot\r\n\r\n")
        .await;
    assert!(
        refused.starts_with("HTTP/1.1 503 Service Unavailable"),
        "{refused}"
    );
    assert!(refused.contains("Retry-After: 1"), "{refused}");
    assert!(refused.contains("\"error\":\"unavailable\""), "{refused}");
    // One leaves: the next client is served.
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let answer = served
            .exchange("GET /healthz HTTP/1.1\r\nHost: jobbot\r\nConnection: close\r\n\r\n")
            .await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cap never freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    second.write_all(b"Host: jobbot\r\n\r\n").await.unwrap();
    let metrics = served
        .exchange(&format!(
            "GET /metrics HTTP/1.1\r\nHost: jobbot\r\nAuthorization: Bearer {API_TOKEN}\r\nConnection: close\r\n\r\n"
        ))
        .await;
    assert!(
        metrics.contains("jobbot_http_connections_refused_total "),
        "{metrics}"
    );
    assert!(
        !metrics.contains("jobbot_http_connections_refused_total 0\n"),
        "{metrics}"
    );
    drop(second);
    served.shut_down().await;
}

#[tokio::test]
async fn guessing_api_tokens_is_limited_per_client_and_network() {
    let app = spawn_app().await;
    let guesser: SocketAddr = "203.0.113.5:4000".parse().unwrap();
    let other: SocketAddr = "192.0.2.44:4000".parse().unwrap();
    let call = |token: &'static str, client: SocketAddr| {
        app.call_with(
            Method::GET,
            "/api/session",
            Credentials::Bearer(token),
            None,
            &[],
            Some(client),
        )
    };
    for _ in 0..20 {
        assert_eq!(
            call("jbt_guess", guesser).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let limited = call("jbt_guess", guesser).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers.contains_key(header::RETRY_AFTER));
    // While limited, even a good token from there is not checked; elsewhere it works.
    assert_eq!(
        call(API_TOKEN, guesser).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(call(API_TOKEN, other).await.status, StatusCode::OK);
    // Rotating addresses within one IPv6 /64 is one client.
    for host in 1..=20 {
        let rotating: SocketAddr = format!("[2001:db8:5:6::{host:x}]:4000").parse().unwrap();
        assert_eq!(
            call("jbt_guess", rotating).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let rotated: SocketAddr = "[2001:db8:5:6::ffff]:4000".parse().unwrap();
    assert_eq!(
        call("jbt_guess", rotated).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    let metrics = app.get("/metrics").await;
    assert!(
        metrics
            .body
            .as_str()
            .unwrap()
            .contains("jobbot_auth_failures_total{method=\"bearer\"} 40"),
        "{}",
        metrics.body
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_logins_are_limited_per_forwarded_client() {
    let app = spawn_app_with(Arc::new(jobbot_store::MemoryStore::new()), |settings| {
        settings.trusted_proxies = jobbot_web::TrustedProxies::parse("10.0.0.1").unwrap();
    })
    .await;
    let proxy: SocketAddr = "10.0.0.1:50000".parse().unwrap();
    let attempt = async |forwarded: &'static str, client: SocketAddr, password: &'static str| {
        app.call_with(
            Method::POST,
            "/api/login",
            Credentials::None,
            Some(json!({"password": password})),
            &[
                ("x-forwarded-for", forwarded),
                ("x-forwarded-proto", "https"),
            ],
            Some(client),
        )
        .await
    };
    for _ in 0..5 {
        let reply = attempt("198.51.100.1", proxy, "guess").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        attempt("198.51.100.1", proxy, "guess").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another browser behind the same proxy is not locked out, and gets a Secure cookie.
    let other = attempt("203.0.113.9", proxy, ADMIN_PASSWORD).await;
    assert_eq!(other.status, StatusCode::OK, "{}", other.body);
    let cookie = other.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.ends_with("; Secure"), "{cookie}");
    // Anyone else's forwarded headers are not believed: no Secure over plain HTTP, and forged
    // addresses do not escape the limit.
    let direct: SocketAddr = "192.0.2.77:50000".parse().unwrap();
    let plain = attempt("203.0.113.10", direct, ADMIN_PASSWORD).await;
    assert!(
        !plain.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Secure")
    );
    for forged in ["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4", "5.5.5.5"] {
        let _ = attempt(forged, direct, "guess").await;
    }
    assert_eq!(
        attempt("6.6.6.6", direct, "guess").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test(start_paused = true)]
async fn a_session_ends_at_its_absolute_lifetime_however_often_the_page_polls() {
    let app = spawn_app().await;
    let login = app
        .call(
            Method::POST,
            "/api/login",
            Credentials::None,
            Some(json!({"password": ADMIN_PASSWORD})),
        )
        .await;
    let set_cookie = login.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(set_cookie.contains("Max-Age=43200"), "{set_cookie}");
    assert!(!set_cookie.contains("Secure"), "plain HTTP: {set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let session = || app.with_cookie(Method::GET, "/api/session", &cookie);
    // The dashboard polls every 15 s; poll every 15 min here for 11 h 45 min.
    for _ in 0..47 {
        tokio::time::advance(Duration::from_secs(15 * 60)).await;
        assert_eq!(session().await.status, StatusCode::OK);
    }
    tokio::time::advance(Duration::from_secs(15 * 60)).await;
    assert_eq!(session().await.status, StatusCode::UNAUTHORIZED);

    // Without requests, a session ends after two idle hours.
    let (idle_cookie, _) = app.log_in().await;
    tokio::time::advance(Duration::from_secs(2 * 3600)).await;
    let idle = app
        .with_cookie(Method::GET, "/api/session", &idle_cookie)
        .await;
    assert_eq!(idle.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sessions_and_tokens_survive_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let (cookie, token) = {
        let store = jobbot_store::SqliteStore::open(data.path()).await.unwrap();
        let app = spawn_app_with(Arc::new(store.clone()), |_| {}).await;
        let (cookie, _) = app.log_in().await;
        let created = app
            .send(
                Method::POST,
                "/api/tokens",
                json!({"name": "cron", "expires_in_days": 7}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED);
        app.engine.shutdown().await;
        store.close().await;
        (cookie, created.body["token"].as_str().unwrap().to_owned())
    };
    let store = jobbot_store::SqliteStore::open(data.path()).await.unwrap();
    let app = spawn_app_with(Arc::new(store.clone()), |_| {}).await;
    let by_cookie = app.with_cookie(Method::GET, "/api/session", &cookie).await;
    assert_eq!(by_cookie.status, StatusCode::OK, "{}", by_cookie.body);
    let by_token = app
        .call(
            Method::GET,
            "/api/session",
            Credentials::Bearer(&token),
            None,
        )
        .await;
    assert_eq!(by_token.status, StatusCode::OK);
    let list = app.get("/api/tokens").await;
    let cron = list.body["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|token| token["name"] == "cron")
        .cloned()
        .unwrap();
    let lifetime =
        cron["expires_at_unix_ms"].as_i64().unwrap() - cron["created_at_unix_ms"].as_i64().unwrap();
    assert_eq!(lifetime, 7 * 86_400_000);
    // Logging out ends it in the store, for every later process too.
    let out = app.with_cookie(Method::POST, "/api/logout", &cookie).await;
    assert_eq!(
        out.status,
        StatusCode::FORBIDDEN,
        "a write needs the CSRF token"
    );
    app.engine.shutdown().await;
    store.close().await;
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = spawn_app().await;
    let (cookie, _) = app.log_in().await;
    let page = |path: &'static str| app.with_cookie(Method::GET, path, &cookie);
    let replies = vec![
        page("/").await,
        page("/agents").await,
        page("/static/agents.js").await,
        app.get("/api/channels").await,
        app.call(Method::GET, "/api/channels", Credentials::None, None)
            .await,
        app.call(Method::GET, "/healthz", Credentials::None, None)
            .await,
        app.call(Method::GET, "/login", Credentials::None, None)
            .await,
        app.call(Method::GET, "/no/such/page", Credentials::None, None)
            .await,
    ];
    for reply in replies {
        let csp = reply.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(reply.headers[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(reply.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(reply.headers[header::REFERRER_POLICY], "no-referrer");
    }
    // The pages hold no inline script or handler for the policy to block.
    for path in [
        "/",
        "/channels/channel_1",
        "/agents",
        "/vacancies",
        "/logins",
        "/doctor",
        "/conversations",
        "/conversations/5",
        "/cluster",
    ] {
        let html = page(path).await.body.as_str().unwrap().to_owned();
        assert!(!html.contains(" onclick="), "{path}");
        for script in html.split("<script").skip(1) {
            let tag = script.split('>').next().unwrap();
            assert!(
                tag.contains("src=") || tag.contains("application/json"),
                "{path}: inline script <script{tag}>"
            );
        }
    }
}

#[tokio::test]
async fn websockets_are_capped_and_refuse_large_messages() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let app = spawn_app().await;
    let served = Served::start(&app, |settings| {
        settings.limits.max_websockets = 1;
        settings.limits.websocket_max_message = 1024;
    })
    .await;
    let request = || {
        let mut request = format!("ws://{}/api/ws", served.address)
            .into_client_request()
            .unwrap();
        request.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Bearer {API_TOKEN}").parse().unwrap(),
        );
        request
    };
    let (mut first, _) = tokio_tungstenite::connect_async(request()).await.unwrap();
    match tokio_tungstenite::connect_async(request()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        }
        other => panic!(
            "a second WebSocket was not refused: {:?}",
            other.map(|_| ())
        ),
    }
    // A message over the limit closes the socket (here: its first, the snapshot, comes before).
    first
        .send(Message::Text("x".repeat(4096).into()))
        .await
        .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match first.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the oversized message did not close the socket"
    );
    // Its permit is back: a new one opens.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio_tungstenite::connect_async(request()).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the WebSocket cap never freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    served.shut_down().await;
}

#[tokio::test]
async fn proxies_are_validated_masked_and_round_trip_without_their_password() {
    let app = spawn_app().await;
    let revision = app.revision().await;
    // A proxy a URL parser would read differently is refused without quoting it.
    let sneaky = app
        .send(
            Method::PUT,
            &format!("/api/channels/{CHANNEL}"),
            json!({"revision": revision, "agents": [
                {"phone": "+79991000000", "session_name": "agent_a"},
                {"phone": "+79991000001", "session_name": "agent_b", "proxy": "socks5://user:hunter2@host?x:1080"}
            ]}),
        )
        .await;
    assert_eq!(sneaky.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(sneaky.body["problems"][0]["path"], "agents[1].proxy");
    assert_eq!(sneaky.body["problems"][0]["code"], "not_proxy");
    assert!(!sneaky.body.to_string().contains("hunter2"));

    // Renaming the session while sending the masked proxy back keeps the stored password.
    let renamed = app
        .send(
            Method::PUT,
            &format!("/api/channels/{CHANNEL}"),
            json!({"agents": [
                {"phone": "+79991000000", "session_name": "agent_a"},
                {"phone": "+79991000001", "session_name": "agent_b2", "proxy": "socks5://user:***@127.0.0.1:1080"}
            ]}),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.body);
    let on_disk =
        std::fs::read_to_string(app.config.path().expect("a configuration file")).unwrap();
    assert!(
        on_disk.contains("socks5://user:proxy-secret@127.0.0.1:1080"),
        "{on_disk}"
    );
    assert!(!on_disk.contains("***"), "{on_disk}");
    // A masked form that matches no stored proxy is never saved as a password.
    let unknown = app
        .send(
            Method::POST,
            &format!("/api/channels/{CHANNEL}/agents"),
            json!({"phone": "+79991000009", "session_name": "agent_c", "proxy": "socks5://other:***@10.0.0.1:1080"}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::CONFLICT);
    assert_eq!(unknown.body["problems"][0]["code"], "proxy_masked");
    // A user name without a password (a token-style credential) is masked whole.
    let token_proxy = app
        .send(
            Method::POST,
            &format!("/api/channels/{CHANNEL}/agents"),
            json!({"phone": "+79991000009", "session_name": "agent_c", "proxy": "socks5://TOKEN1234secret@10.0.0.1:1080"}),
        )
        .await;
    assert_eq!(
        token_proxy.status,
        StatusCode::CREATED,
        "{}",
        token_proxy.body
    );
    let listed = app.get("/api/channels").await.body.to_string();
    assert!(listed.contains("socks5://***@10.0.0.1:1080"), "{listed}");
    assert!(!listed.contains("TOKEN1234secret") && !listed.contains("proxy-secret"));
    app.assert_never_shown(&["proxy-secret", "TOKEN1234secret", "hunter2"]);
}

#[tokio::test]
async fn validation_messages_come_in_the_requested_language() {
    let app = spawn_app().await;
    let body = json!({"agents": [{"phone": "+7999", "session_name": "agent_a"}]});
    let path = format!("/api/channels/{CHANNEL}");
    let english = app.send(Method::PUT, &path, body.clone()).await;
    let russian = app
        .call_with(
            Method::PUT,
            &path,
            Credentials::Bearer(API_TOKEN),
            Some(body),
            &[("accept-language", "ru-RU,ru;q=0.9,en;q=0.5")],
            None,
        )
        .await;
    for reply in [&english, &russian] {
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(reply.body["success"], false);
        assert_eq!(reply.body["problems"][0]["path"], "agents[0].phone");
        assert_eq!(reply.body["problems"][0]["code"], "not_phone");
    }
    assert!(
        english.body["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("is not a phone number in international format")
    );
    assert_eq!(
        russian.body["problems"][0]["message"],
        "Телефон: + и от 8 до 15 цифр"
    );
    assert_eq!(
        russian.body["message"],
        "Неверные данные: исправьте отмеченные поля"
    );
    // The refused number is masked wherever it is quoted.
    assert!(!english.body.to_string().contains("+7999\""));
}

#[tokio::test]
async fn the_crm_invite_link_is_set_changed_and_removed_through_the_api() {
    let app = spawn_app().await;
    let path = format!("/api/channels/{CHANNEL}");
    let set = app
        .send(
            Method::PUT,
            &path,
            json!({"crm_invite_link": "https://t.me/+AbCdEf123"}),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    assert_eq!(
        set.body["channel"]["crm_invite_link"],
        "https://t.me/+AbCdEf123"
    );
    let wrong = app
        .send(Method::PUT, &path, json!({"crm_invite_link": "@crm_group"}))
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(wrong.body["problems"][0]["path"], "crm_invite_link");
    assert_eq!(wrong.body["problems"][0]["code"], "not_invite_link");
    let removed = app
        .send(Method::PUT, &path, json!({"crm_invite_link": ""}))
        .await;
    assert_eq!(removed.status, StatusCode::OK);
    assert!(
        removed.body["channel"]
            .get("crm_invite_link")
            .is_none_or(Value::is_null)
    );
    assert!(
        !std::fs::read_to_string(app.config.path().expect("a configuration file"))
            .unwrap()
            .contains("crm_invite_link")
    );
}

#[tokio::test]
async fn health_checks_answer_without_login_and_without_data() {
    let app = spawn_app().await;
    let alive = app
        .call(Method::GET, "/healthz", Credentials::None, None)
        .await;
    assert_eq!(alive.status, StatusCode::OK);
    assert_eq!(alive.body, json!({"status": "alive"}));
    let ready = app
        .call(Method::GET, "/readyz", Credentials::None, None)
        .await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(
        ready.body,
        json!({"ready": true, "checks": {"configuration": true, "store": true, "main_account": true}})
    );

    // An engine that runs a main account that is not logged in is not ready.
    let config = app.config.clone();
    let connector = Arc::new(SimConnector::new(app.world.clone()));
    let engine = Engine::start(
        EngineSettings {
            seed: 7,
            ..EngineSettings::default()
        },
        connector.clone(),
        Arc::new(jobbot_store::MemoryStore::new()),
        follow(&config),
        EngineClock::start(),
    )
    .await
    .unwrap();
    let router = jobbot_web::app(AppState::new(engine.clone(), config, settings(), connector));
    let main = SessionName::main();
    tokio::time::timeout(
        Duration::from_secs(60),
        engine.wait_for_links(|links| matches!(links.get(&main), Some(LinkState::NotLoggedIn))),
    )
    .await
    .unwrap()
    .unwrap();
    let response = router
        .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["checks"]["main_account"], false);
    assert_eq!(body["ready"], false);
    engine.shutdown().await;
}

/// Every request of the seed's design note (`MULTI_AGENT_IMPLEMENTATION.md`, "API Endpoints",
/// "Configuration Format", "Backward Compatibility", "Monitoring Agent Status"), sent as the seed
/// writes it: no revision, its bodies, its paths; the answers carry its `success` field.
#[tokio::test]
async fn the_seeds_requests_work_as_the_seed_writes_them() {
    let app = spawn_app().await;
    // POST /api/channels: "Create channel with agents list", the seed's "New Multi-Agent Format"
    // (plus the two ids every channel needs, which the seed's excerpt leaves out).
    let created = app
        .send(
            Method::POST,
            "/api/channels",
            json!({
                "id": "channel_123",
                "name": "Python Jobs",
                "telegram_id": -1001111111111i64,
                "crm_group_id": -1002222222222i64,
                "crm_enabled": true,
                "agents": [
                    {"phone": "+79991234567", "session_name": "agent_python_1"},
                    {"phone": "+79997654321", "session_name": "agent_python_2"}
                ]
            }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["success"], true);
    assert_eq!(created.body["channel_id"], "channel_123");
    assert!(created.body["message"].is_string());

    // GET /api/channels/{channel_id}/agents: `{success, agents[{phone, session_name}]}`.
    let listed = app.get("/api/channels/channel_123/agents").await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.body["success"], true);
    assert_eq!(
        listed.body["agents"],
        json!([
            {"phone": "+79991234567", "session_name": "agent_python_1"},
            {"phone": "+79997654321", "session_name": "agent_python_2"}
        ])
    );

    // POST /api/channels/{channel_id}/agents with the seed's AgentConfig body.
    let added = app
        .send(
            Method::POST,
            "/api/channels/channel_123/agents",
            json!({"phone": "+79995555555", "session_name": "agent_python_3"}),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
    assert_eq!(added.body["success"], true);
    assert_eq!(added.body["agents"].as_array().unwrap().len(), 3);

    // DELETE /api/channels/{channel_id}/agents/{session}.
    let removed = app
        .call(
            Method::DELETE,
            "/api/channels/channel_123/agents/agent_python_2",
            Credentials::Bearer(API_TOKEN),
            None,
        )
        .await;
    assert_eq!(removed.status, StatusCode::OK, "{}", removed.body);
    assert_eq!(removed.body["success"], true);

    // PUT /api/channels/{id}: "Update channel with agents list", the seed's file example.
    let updated = app
        .send(
            Method::PUT,
            "/api/channels/channel_123",
            json!({"agents": [
                {"phone": "+79991234567", "session_name": "agent1"},
                {"phone": "+79997654321", "session_name": "agent2"},
                {"phone": "+79995555555", "session_name": "agent3"}
            ]}),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.body["success"], true);
    let sessions: Vec<&str> = updated.body["channel"]["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|agent| agent["session_name"].as_str().unwrap())
        .collect();
    assert_eq!(sessions, ["agent1", "agent2", "agent3"]);

    // "Backward Compatibility": the old single-agent fields become an agent.
    let legacy = app
        .send(
            Method::POST,
            "/api/channels",
            json!({
                "id": "channel_legacy",
                "name": "Python Jobs",
                "telegram_id": -1003333333333i64,
                "crm_group_id": -1004444444444i64,
                "crm_enabled": true,
                "agent_phone": "+79990000077",
                "agent_session_name": "agent_python"
            }),
        )
        .await;
    assert_eq!(legacy.status, StatusCode::CREATED, "{}", legacy.body);
    assert_eq!(
        legacy.body["channel"]["agents"],
        json!([{"phone": "+79990000077", "session_name": "agent_python"}])
    );
    assert!(legacy.body["channel"].get("agent_phone").is_none());

    // "Monitoring Agent Status": `status['available_agents']` / `status['total_agents']`.
    let status = app.get("/api/channels/channel_123/agents/status").await;
    assert_eq!(status.status, StatusCode::OK);
    assert_eq!(status.body["total_agents"], 3);
    assert!(status.body["available_agents"].is_u64());
}

/// Adding or removing one agent without a revision applies to the configuration as it is at
/// that moment: many at once all land, none undoes another.
#[tokio::test]
async fn concurrent_agent_changes_without_a_revision_are_never_lost() {
    let app = Arc::new(spawn_app().await);
    let adds: Vec<_> = (0..12)
        .map(|index| {
            let app = Arc::clone(&app);
            tokio::spawn(async move {
                app.send(
                    Method::POST,
                    &format!("/api/channels/{CHANNEL}/agents"),
                    json!({"phone": format!("+7999200{index:04}"), "session_name": format!("extra_{index}")}),
                )
                .await
                .status
            })
        })
        .collect();
    let remove = {
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            app.call(
                Method::DELETE,
                &format!("/api/channels/{CHANNEL}/agents/agent_b"),
                Credentials::Bearer(API_TOKEN),
                None,
            )
            .await
            .status
        })
    };
    for add in adds {
        assert_eq!(add.await.unwrap(), StatusCode::CREATED);
    }
    assert_eq!(remove.await.unwrap(), StatusCode::OK);
    let listed = app.get(&format!("/api/channels/{CHANNEL}/agents")).await;
    let mut sessions: Vec<String> = listed.body["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|agent| agent["session_name"].as_str().unwrap().to_owned())
        .collect();
    sessions.sort();
    let mut expected: Vec<String> = (0..12).map(|index| format!("extra_{index}")).collect();
    expected.push("agent_a".to_owned());
    expected.sort();
    assert_eq!(sessions, expected);
}

/// An agent the engine runs but nobody logged in yet: logged in through the API, its owner
/// connects at once (the login lets go of the session's lock before the owner retries), not at
/// its next retry ten minutes later.
#[tokio::test]
async fn an_agent_logged_in_through_the_api_connects_at_once() {
    let app = spawn_app().await;
    let phone = "+79995550077";
    app.world
        .create_user(NewUser::named("Late agent").phone(phone));
    let added = app
        .send(
            Method::POST,
            &format!("/api/channels/{CHANNEL}/agents"),
            json!({"phone": phone, "session_name": "agent_late"}),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
    wait_link(&app, "agent_late", |link| {
        matches!(link, Some(LinkState::NotLoggedIn))
    })
    .await;
    let started = app
        .send(
            Method::POST,
            "/api/logins",
            json!({"session": "agent_late"}),
        )
        .await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.body);
    let phone_step = app
        .send(
            Method::POST,
            "/api/logins/agent_late/phone",
            json!({"phone": phone}),
        )
        .await;
    assert_eq!(phone_step.status, StatusCode::OK, "{}", phone_step.body);
    let code = app
        .world
        .last_login_code(&PhoneNumber::parse(phone).unwrap())
        .unwrap();
    let signed_in = app
        .send(
            Method::POST,
            "/api/logins/agent_late/code",
            json!({"code": code}),
        )
        .await;
    assert_eq!(
        signed_in.body["login"]["state"], "signed_in",
        "{}",
        signed_in.body
    );
    wait_ready(&app, "agent_late").await;
}

/// The Doctor page and `/api/doctor` check the setup over the running engine's own connections
/// (no second connection to any session): a connected agent passes, the main account the engine
/// does not run is reported with its fix, chats nobody can see are reported per agent, and the
/// proxy's password is never shown (#14 item 8).
#[tokio::test]
async fn the_doctor_reports_over_the_engines_own_connections() {
    let app = spawn_app().await;
    wait_ready(&app, "agent_a").await;
    let reply = app.get("/api/doctor").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let findings = reply.body["findings"].as_array().unwrap();
    let finding = |item: &str, key: &str, value: &str| {
        findings
            .iter()
            .find(|finding| finding["subject"]["item"] == item && finding["subject"][key] == value)
            .unwrap_or_else(|| panic!("no {item} {value}: {}", reply.body))
    };
    assert_eq!(
        finding("session", "session", "agent_a")["verdict"]["verdict"],
        "passed"
    );
    let main = finding("session", "session", "bot_session");
    assert_eq!(main["verdict"]["problem"]["problem"], "session_unreachable");
    assert!(main["fix"].as_str().unwrap().contains("jobbot doctor"));
    let source = finding("source", "source", "@python_jobs");
    assert_eq!(source["verdict"]["because"]["skip"], "account_unavailable");
    let crm_agent = findings
        .iter()
        .find(|finding| {
            finding["subject"]["item"] == "crm_agent" && finding["subject"]["session"] == "agent_a"
        })
        .unwrap();
    assert_eq!(
        crm_agent["verdict"]["problem"]["problem"], "agent_not_member",
        "{crm_agent}"
    );
    assert!(
        crm_agent["fix"]
            .as_str()
            .unwrap()
            .contains("add agent_a to -1002345678901")
    );
    // The checks borrowed the owners' connections: still one per session.
    let session = SessionName::parse("agent_a").unwrap();
    assert_eq!(app.world.open_connections(&session), 1);

    let (cookie, _) = app.log_in().await;
    let page = app.with_cookie(Method::GET, "/doctor", &cookie).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.body.as_str().unwrap();
    assert!(html.contains("id=\"doctor-table\""), "{html}");
    assert!(html.contains("data-status=\"failed\""), "{html}");
    // Russian by default (the `lang` cookie picks English), written from the typed problem.
    assert!(html.contains("добавьте agent_a в -1002345678901"), "{html}");
    let english = app
        .with_cookie(Method::GET, "/doctor", &format!("{cookie}; lang=en"))
        .await;
    assert!(
        english
            .body
            .as_str()
            .unwrap()
            .contains("add agent_a to -1002345678901")
    );
    app.assert_never_shown(&["proxy-secret"]);
}

/// While the engine's main account has no login, every page but the Logins page shows the
/// banner linking there (`jobbot run` starts and waits for it, #14 item 5); without a main
/// account to wait for, no page does.
#[tokio::test]
async fn pages_ask_for_the_main_accounts_login_while_it_has_none() {
    let without_main = spawn_app().await;
    let (cookie, _) = without_main.log_in().await;
    let page = without_main
        .with_cookie(Method::GET, "/agents", &cookie)
        .await;
    assert!(!page.body.as_str().unwrap().contains("main-login-banner"));

    let app = spawn_app_with_main(
        SimWorld::new(SimParams::default()),
        &json!({"output_channels": []}),
        Vec::new(),
        |links| {
            matches!(
                links.get(&SessionName::main()),
                Some(LinkState::NotLoggedIn)
            )
        },
    )
    .await;
    let (cookie, _) = app.log_in().await;
    for path in ["/", "/agents", "/doctor"] {
        let html = app.with_cookie(Method::GET, path, &cookie).await.body;
        let html = html.as_str().unwrap();
        assert!(html.contains("id=\"main-login-banner\""), "{path}: {html}");
        assert!(html.contains("href=\"/logins\""), "{path}");
    }
    let logins = app.with_cookie(Method::GET, "/logins", &cookie).await.body;
    assert!(!logins.as_str().unwrap().contains("main-login-banner"));
}

/// A web login says how Telegram sent the code (`login.sent`) and asks for it the other way on
/// offer; with none left the resend is refused and the code still signs in (#14 item 5).
#[tokio::test]
async fn a_web_login_shows_the_code_delivery_and_resends_it() {
    let app = spawn_app().await;
    let phone = "+79995550002";
    app.world
        .create_user(NewUser::named("Resender").phone(phone));
    let started = app
        .send(
            Method::POST,
            "/api/logins",
            json!({"session": "agent_resend"}),
        )
        .await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.body);
    let sent = app
        .send(
            Method::POST,
            "/api/logins/agent_resend/phone",
            json!({"phone": phone}),
        )
        .await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.body);
    assert_eq!(
        sent.body["login"]["sent"]["delivery"], "sms",
        "{}",
        sent.body
    );
    assert_eq!(sent.body["login"]["sent"]["next"], "call");
    let resent = app
        .call(
            Method::POST,
            "/api/logins/agent_resend/resend",
            Credentials::Bearer(API_TOKEN),
            None,
        )
        .await;
    assert_eq!(resent.status, StatusCode::OK, "{}", resent.body);
    assert_eq!(resent.body["login"]["state"], "awaiting_code");
    assert_eq!(resent.body["login"]["sent"]["delivery"], "call");
    assert!(resent.body["login"]["sent"]["next"].is_null());
    let refused = app
        .call(
            Method::POST,
            "/api/logins/agent_resend/resend",
            Credentials::Bearer(API_TOKEN),
            None,
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert!(
        refused.body.to_string().contains("SEND_CODE_UNAVAILABLE"),
        "{}",
        refused.body
    );
    let phone = PhoneNumber::parse(phone).unwrap();
    let code = app.world.last_login_code(&phone).unwrap();
    let signed_in = app
        .send(
            Method::POST,
            "/api/logins/agent_resend/code",
            json!({"code": code}),
        )
        .await;
    assert_eq!(
        signed_in.body["login"]["state"], "signed_in",
        "{}",
        signed_in.body
    );
}

/// A QR login through the web: the state carries the `tg://login` URL, `qr.svg` draws it, the
/// phone's scan ends the wait, and the 2FA password follows as after a code.
#[tokio::test]
async fn a_web_qr_login_shows_the_code_as_an_image_and_asks_the_password_after_the_scan() {
    let app = spawn_app().await;
    let phone = "+79995550003";
    app.world.create_user(
        NewUser::named("Scanner")
            .phone(phone)
            .two_factor(TWO_FACTOR_PASSWORD, Some("pet")),
    );
    let started = app
        .send(Method::POST, "/api/logins", json!({"session": "agent_qr"}))
        .await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.body);
    let no_image = app.get("/api/logins/agent_qr/qr.svg").await;
    assert_eq!(no_image.status, StatusCode::CONFLICT, "{}", no_image.body);

    let shown = app
        .call(
            Method::POST,
            "/api/logins/agent_qr/qr",
            Credentials::Bearer(API_TOKEN),
            None,
        )
        .await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
    assert_eq!(shown.body["login"]["state"], "awaiting_qr_scan");
    assert_eq!(shown.body["login"]["expires_in_seconds"], 30);
    let url = shown.body["login"]["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("tg://login?token="), "{url}");

    let image = app.get("/api/logins/agent_qr/qr.svg").await;
    assert_eq!(image.status, StatusCode::OK);
    assert_eq!(image.headers[header::CONTENT_TYPE], "image/svg+xml");
    assert!(
        image.body.as_str().unwrap().contains("<svg"),
        "{}",
        image.body
    );

    let phone = PhoneNumber::parse(phone).unwrap();
    app.world.accept_login_token(&phone, &url).unwrap();
    let scanned = app
        .call(
            Method::POST,
            "/api/logins/agent_qr/qr/wait",
            Credentials::Bearer(API_TOKEN),
            None,
        )
        .await;
    assert_eq!(scanned.status, StatusCode::OK, "{}", scanned.body);
    assert_eq!(scanned.body["login"]["state"], "awaiting_password");
    assert_eq!(scanned.body["login"]["hint"], "pet");
    let early_wait = app
        .call(
            Method::POST,
            "/api/logins/agent_qr/qr/wait",
            Credentials::Bearer(API_TOKEN),
            None,
        )
        .await;
    assert_eq!(
        early_wait.status,
        StatusCode::CONFLICT,
        "{}",
        early_wait.body
    );

    let signed_in = app
        .send(
            Method::POST,
            "/api/logins/agent_qr/password",
            json!({"password": TWO_FACTOR_PASSWORD}),
        )
        .await;
    assert_eq!(
        signed_in.body["login"]["state"], "signed_in",
        "{}",
        signed_in.body
    );
    let gone = app.get("/api/logins/agent_qr/qr.svg").await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

/// `/api/cluster` shows every node and who holds which session, with ages, from the store.
#[tokio::test]
async fn the_cluster_page_shows_nodes_and_who_holds_each_session() {
    use jobbot_core::cluster::NodeId;
    let app = spawn_app().await;
    let alone = app.get("/api/cluster").await;
    assert_eq!(alone.status, StatusCode::OK);
    assert_eq!(alone.body["nodes"], serde_json::json!([]));
    assert_eq!(alone.body["leases"], serde_json::json!([]));

    let store = app.engine.store();
    let now = app.engine.clock().now_unix();
    let node = NodeId::parse("node-1").unwrap();
    let later = UnixMillis(now.0 + 30_000);
    store.heartbeat(&node, now, later).await.unwrap();
    let agent_1 = jobbot_core::ids::SessionName::parse("agent_1").unwrap();
    store
        .acquire_lease(&agent_1, &node, now, later)
        .await
        .unwrap()
        .unwrap();

    let view = app.get("/api/cluster").await;
    assert_eq!(view.status, StatusCode::OK);
    let nodes = view.body["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{}", view.body);
    assert_eq!(nodes[0]["node"], "node-1");
    assert_eq!(nodes[0]["alive"], true);
    assert_eq!(nodes[0]["leases_held"], 1);
    assert!(nodes[0]["heartbeat_age_ms"].as_i64().unwrap() >= 0);
    let leases = view.body["leases"].as_array().unwrap();
    assert_eq!(leases.len(), 1, "{}", view.body);
    assert_eq!(leases[0]["session"], "agent_1");
    assert_eq!(leases[0]["holder"], "node-1");
    assert_eq!(leases[0]["token"], 1);
    assert!(leases[0]["held_for_ms"].as_i64().unwrap() >= 0);
    assert!(leases[0]["expires_in_ms"].as_i64().unwrap() > 0);
}

/// An app whose engine runs the main account over `world`, with `document` as the configuration
/// file, once the accounts' link states satisfy `ready`.
async fn spawn_app_with_main(
    world: SimWorld,
    document: &Value,
    agents: Vec<ChatId>,
    ready: impl FnMut(&jobbot_engine::LinkStates) -> bool,
) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("channels_config.json");
    std::fs::write(&path, serde_json::to_string_pretty(document).unwrap()).unwrap();
    let config = ConfigStore::open(&path).await.expect("the config loads");
    let connector = Arc::new(SimConnector::new(world.clone()));
    let engine = Engine::start(
        EngineSettings {
            main_session: Some(SessionName::main()),
            seed: 7,
            ..EngineSettings::default()
        },
        connector.clone(),
        Arc::new(jobbot_store::MemoryStore::new()),
        follow(&config),
        EngineClock::start(),
    )
    .await
    .expect("the engine starts");
    tokio::time::timeout(Duration::from_secs(60), engine.wait_for_links(ready))
        .await
        .expect("the accounts reach the state the test waits for")
        .unwrap();
    TestApp {
        world,
        engine: engine.clone(),
        router: jobbot_web::app(AppState::new(engine, config.clone(), settings(), connector)),
        config,
        agents,
        recipients: Vec::new(),
        seen: Mutex::default(),
        _dir: dir,
    }
}

/// An app whose main account is logged in, with the channel not set up yet: no CRM group, and
/// a key of its own the web does not know (which every write must keep). The agents: one the
/// main account can invite, one without a username (it joins by the link).
async fn spawn_setup_app() -> (TestApp, ChatId) {
    let world = SimWorld::new(SimParams::default());
    let main = world.create_account(
        SessionName::MAIN,
        NewUser::named("Main").phone("+79990000000"),
    );
    let agents = vec![
        world.create_account(
            "agent_a",
            NewUser::named("Agent 0")
                .phone("+79991000000")
                .username("agent_alpha"),
        ),
        world.create_account("agent_b", NewUser::named("Agent 1").phone("+79991000001")),
    ];
    let document = json!({"output_channels": [{
        "id": CHANNEL, "name": "Jobs", "telegram_id": -1001234567890i64,
        "input_sources": ["@python_jobs"], "crm_enabled": false, "crm_group_id": 0,
        "agents": [
            {"phone": "+79991000000", "session_name": "agent_a"},
            {"phone": "+79991000001", "session_name": "agent_b"}
        ],
        "note": "kept by every write"
    }]});
    let app = spawn_app_with_main(world, &document, agents, |links| {
        links.len() == 3 && links.values().all(LinkState::is_ready)
    })
    .await;
    (app, main)
}

impl TestApp {
    async fn set_up(&self, body: Value) -> Reply {
        self.call_with(
            Method::POST,
            &format!("/api/channels/{CHANNEL}/setup"),
            Credentials::Bearer(API_TOKEN),
            Some(body),
            &[("accept-language", "en")],
            None,
        )
        .await
    }
}

/// The channel page offers the one-click setup with the original wizard's titles; the setup
/// creates the output channel and the CRM group, brings the agents in, and saves the ids and the
/// invite link in the channel, keeping everything else in the file (#14 item 9).
#[tokio::test]
async fn the_one_click_setup_creates_the_chats_and_saves_them_in_the_channel() {
    let (app, main) = spawn_setup_app().await;
    let (cookie, _) = app.log_in().await;
    let page = app
        .with_cookie(Method::GET, &format!("/channels/{CHANNEL}"), &cookie)
        .await;
    let html = page.body.as_str().unwrap();
    assert!(html.contains("id=\"setup-form\""), "{html}");
    assert!(html.contains("value=\"Jobs - Вакансии\""), "{html}");
    assert!(html.contains("value=\"Jobs - CRM\""), "{html}");

    let long = "x".repeat(129);
    let refused = app.set_up(json!({"group_title": long})).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused.body["problems"][0]["path"], "group_title");
    let stale = app.set_up(json!({"revision": "0000000000000000"})).await;
    assert_eq!(stale.status, StatusCode::CONFLICT, "{}", stale.body);
    assert_eq!(stale.body["error"], "conflict");
    assert!(app.world.chats_created_by(main).is_empty());

    let revision = app.revision().await;
    let done = app
        .set_up(json!({"revision": revision, "channel_title": "Python jobs"}))
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    let output = done.body["telegram_id"].as_i64().unwrap();
    let group = done.body["crm_group_id"].as_i64().unwrap();
    let link = done.body["crm_invite_link"].as_str().unwrap();
    assert!(link.starts_with("https://t.me/+"), "{link}");
    assert_eq!(
        done.body["agents"],
        json!([
            {"session": "agent_a", "outcome": "invited"},
            {"session": "agent_b", "outcome": "joined"}
        ])
    );
    let saved = app.config.snapshot();
    let channel = &saved.document.output_channels[0];
    assert_eq!((channel.telegram_id, channel.crm_group_id), (output, group));
    assert_eq!(channel.crm_invite_link.as_deref(), Some(link));
    assert_eq!(channel.name, "Jobs");
    assert_eq!(channel.input_sources, vec!["@python_jobs".to_owned()]);
    assert_eq!(channel.extra["note"], "kept by every write");
    assert_eq!(done.body["revision"], saved.revision.to_string());
    for chat in [output, group] {
        assert!(app.world.chat_exists(ChatId::from_bot_api(chat).unwrap()));
    }
    for agent in &app.agents {
        assert!(
            app.world
                .is_member(ChatId::from_bot_api(group).unwrap(), *agent)
        );
    }
    // The channel has a CRM group now: a second click creates nothing.
    let again = app.set_up(json!({})).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    assert_eq!(again.body["problems"][0]["path"], "crm_group_id");
    assert_eq!(app.world.chats_created_by(main).len(), 2);
    app.engine.shutdown().await;
}

/// An output channel set by hand is kept when asked: only the CRM group is created, the
/// channel's `telegram_id` stays, and a failed setup deletes only what it created.
#[tokio::test]
async fn the_one_click_setup_can_keep_the_output_channel_set_by_hand() {
    let (app, main) = spawn_setup_app().await;
    let (cookie, _) = app.log_in().await;
    let page = app
        .with_cookie(Method::GET, &format!("/channels/{CHANNEL}"), &cookie)
        .await;
    assert!(
        page.body
            .as_str()
            .unwrap()
            .contains("id=\"f-keep_output_channel\""),
        "the form offers it"
    );
    let set_by_hand = -1_001_234_567_890i64;
    // A failed setup that keeps it deletes only the group it made.
    app.world.fail_next_chat_call(
        main,
        jobbot_sim::ChatCall::ExportInvite,
        jobbot_core::telegram::TelegramError::ServerError { code: 500 },
    );
    let failed = app.set_up(json!({"keep_output_channel": true})).await;
    assert_eq!(failed.status, StatusCode::BAD_GATEWAY, "{}", failed.body);
    let deleted = failed.body["rollback"]["deleted"].as_array().unwrap();
    assert_eq!(deleted.len(), 1, "only the CRM group: {}", failed.body);
    assert_ne!(deleted[0], json!(set_by_hand));

    let done = app.set_up(json!({"keep_output_channel": true})).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(done.body["telegram_id"], json!(set_by_hand));
    assert_eq!(done.body["output_channel_created"], json!(false));
    let message = done.body["message"].as_str().unwrap();
    assert!(
        message.contains("kept the output channel -1001234567890"),
        "{message}"
    );
    let saved = app.config.snapshot();
    let channel = &saved.document.output_channels[0];
    assert_eq!(channel.telegram_id, set_by_hand);
    assert_eq!(
        channel.crm_group_id,
        done.body["crm_group_id"].as_i64().unwrap()
    );
    // Only the group was created, by both tries; the first was deleted again.
    assert_eq!(app.world.chats_created_by(main).len(), 1);
    app.engine.shutdown().await;
}

/// A step Telegram refuses answers 502 naming the step, Telegram's typed error and the chats
/// deleted again; the configuration is unchanged (#14 item 9).
#[tokio::test]
async fn a_failed_one_click_setup_names_the_step_and_deletes_what_it_created() {
    let (app, main) = spawn_setup_app().await;
    app.world.fail_next_chat_call(
        main,
        jobbot_sim::ChatCall::Create(jobbot_core::telegram::NewChatKind::Forum),
        jobbot_core::telegram::TelegramError::TooManyChannels,
    );
    let before = app.config.snapshot().revision.clone();
    let failed = app.set_up(json!({})).await;
    assert_eq!(failed.status, StatusCode::BAD_GATEWAY, "{}", failed.body);
    assert_eq!(failed.body["error"], "setup_failed");
    assert_eq!(failed.body["step"], "create_group");
    assert_eq!(failed.body["telegram_error"]["error"], "too_many_channels");
    let deleted = failed.body["rollback"]["deleted"].as_array().unwrap();
    assert_eq!(deleted.len(), 1, "{}", failed.body);
    assert_eq!(failed.body["rollback"]["left"], json!([]));
    let message = failed.body["message"].as_str().unwrap();
    assert!(
        message.starts_with("creating the CRM group failed: this account is in too many channels"),
        "{message}"
    );
    assert!(message.contains("Deleted again: "), "{message}");
    assert!(app.world.chats_created_by(main).is_empty());
    let after = app.config.snapshot();
    assert_eq!(after.revision, before);
    assert_eq!(after.document.output_channels[0].crm_group_id, 0);
    app.engine.shutdown().await;
}
