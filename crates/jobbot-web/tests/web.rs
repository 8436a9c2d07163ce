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
use jobbot_web::{AppState, Auth};
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
        Arc::new(jobbot_store::MemoryStore::new()),
        follow(&config),
        EngineClock::start(),
    )
    .await
    .expect("the engine starts");
    let (auth, generated) = Auth::new(Some(ADMIN_PASSWORD), Some(API_TOKEN));
    assert!(generated.is_none());
    let state = AppState::new(engine.clone(), config.clone(), auth, connector);
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
    for (method, path) in routes {
        let public = path == "/login" || path == "/api/login";
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
        let reply = app
            .call(
                method.clone(),
                &path,
                Credentials::Bearer("jbt_wrong"),
                body.clone(),
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

    let session = app
        .call(
            Method::GET,
            "/api/session",
            Credentials::Cookie {
                cookie: &cookie,
                csrf: None,
            },
            None,
        )
        .await;
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
    let after = app
        .call(
            Method::GET,
            "/api/session",
            Credentials::Cookie {
                cookie: &cookie,
                csrf: None,
            },
            None,
        )
        .await;
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
    let names: Vec<&str> = list
        .body
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
    let missing = app.send(Method::POST, "/api/channels", new.clone()).await;
    assert_eq!(missing.status, StatusCode::PRECONDITION_REQUIRED);
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
    let cases: Vec<(Method, &str, Value, Vec<&str>)> = vec![
        (
            Method::POST,
            "/api/channels",
            json!({"revision": revision, "name": "", "telegram_id": -1001234567899i64}),
            vec!["name"],
        ),
        (
            Method::POST,
            "/api/channels",
            json!({"revision": revision, "name": "X", "telegram_id": -1001234567899i64,
            "agents": [{"phone": "+7999", "session_name": "agent_x"}]}),
            vec!["agents[0].phone"],
        ),
        (
            Method::POST,
            "/api/channels",
            json!({"revision": revision, "telegram_id": "not a number"}),
            vec!["telegram_id"],
        ),
        (
            Method::POST,
            "/api/channels",
            json!({"revision": revision, "id": CHANNEL, "name": "Dup", "telegram_id": -1001234567899i64}),
            vec!["id"],
        ),
        (
            Method::POST,
            "/api/channels",
            json!({"revision": "not-a-revision", "name": "X"}),
            vec!["revision"],
        ),
        (
            Method::PUT,
            &channel,
            json!({"revision": revision, "agents": [good_agent, {"phone": "12", "session_name": "agent_c"}]}),
            vec!["agents[1].phone"],
        ),
        (
            Method::PUT,
            &channel,
            json!({"revision": revision, "id": "channel_other"}),
            vec!["id"],
        ),
        (
            Method::POST,
            &agents,
            json!({"revision": revision, "phone": "+7999", "session_name": "agent_c"}),
            vec!["phone"],
        ),
        (
            Method::POST,
            &agents,
            json!({"revision": revision, "phone": "+79991000000", "session_name": "agent_a"}),
            vec!["session_name"],
        ),
        (
            Method::POST,
            &bulk,
            json!({"revision": revision, "add": [{"phone": "+79991000009", "session_name": "bad/name"}]}),
            vec!["add[0].session_name"],
        ),
        (
            Method::POST,
            &bulk,
            json!({"revision": revision, "remove": ["agent_a", "agent_zz"]}),
            vec!["remove[1]"],
        ),
        (
            Method::POST,
            "/api/agents/pause",
            json!({"sessions": ["agent_a", "../etc"]}),
            vec!["sessions[1]"],
        ),
        (
            Method::POST,
            "/api/agents/resume",
            json!({"sessions": []}),
            vec!["sessions"],
        ),
        (
            Method::POST,
            "/api/logins",
            json!({"session": "a/b"}),
            vec!["session"],
        ),
        (
            Method::POST,
            "/api/tokens",
            json!({"name": " "}),
            vec!["name"],
        ),
        (
            Method::POST,
            "/api/tokens",
            json!({"name": "x", "scope": "all"}),
            vec!["scope"],
        ),
    ];
    for (method, uri, body, expected) in cases {
        let reply = app.send(method.clone(), uri, body.clone()).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{method} {uri} {body}: {}",
            reply.body
        );
        assert_eq!(reply.body["error"], "invalid");
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
        json!({"affected": ["agent_c"], "unknown": ["agent_unknown"]})
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
    assert_eq!(
        app.world
            .open_connections(&SessionName::parse("agent_c").unwrap()),
        0
    );
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
        "counters",
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
    assert!(
        metrics.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = metrics.body.as_str().unwrap();
    for line in [
        "# TYPE jobbot_outbox_messages gauge",
        "jobbot_outbox_messages{status=\"failed\"} 0",
        "# TYPE jobbot_flood_waits_total counter",
        "jobbot_agent_state{session=\"agent_a\",",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
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
        "GET /api/agents",
        "POST /api/agents/pause",
        "POST /api/agents/resume",
        "POST /api/logins",
        "GET /api/logins/{session}",
        "DELETE /api/logins/{session}",
        "POST /api/logins/{session}/phone",
        "POST /api/logins/{session}/code",
        "POST /api/logins/{session}/password",
        "GET /api/stats",
        "GET /api/vacancies",
        "GET /api/outbox/ended",
        "GET /metrics",
        "GET /api/ws",
        "GET /api/openapi.json",
    ];
    expected.sort();
    assert_eq!(listed, expected);
    let schemes = &reply.body["components"]["securitySchemes"];
    assert!(schemes.get("bearer").is_some() && schemes.get("session_cookie").is_some());
}

#[tokio::test]
async fn the_live_websocket_shows_an_agent_getting_a_flood_wait() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let app = spawn_app().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let state = AppState::new(
        app.engine.clone(),
        app.config.clone(),
        Auth::new(Some(ADMIN_PASSWORD), Some(API_TOKEN)).0,
        Arc::new(SimConnector::new(app.world.clone())),
    );
    let server = tokio::spawn(jobbot_web::serve(listener, state, async {
        let _ = stopped.await;
    }));

    let mut request = format!("ws://{address}/api/ws")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        header::AUTHORIZATION,
        format!("Bearer {API_TOKEN}").parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the WebSocket opens");
    let mut next = async || -> Value {
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
    };
    let snapshot = next().await;
    assert_eq!(snapshot["type"], "snapshot");
    assert!(snapshot["agents"].is_array() && snapshot["counters"].is_object());

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
    let mut saw_flood_wait = false;
    let mut saw_counter = false;
    while !(saw_flood_wait && saw_counter) {
        let message = next().await;
        assert_ne!(
            message["type"], "telegram",
            "raw Telegram events are never forwarded"
        );
        match message["type"].as_str().unwrap() {
            "flood_wait" => {
                assert!(message["session"].as_str().unwrap().starts_with("agent_"));
                assert!(message["seconds"].as_u64().unwrap() > 0);
                saw_flood_wait = true;
            }
            "counters" if message["counters"]["flood_waits_total"].as_u64().unwrap() > 0 => {
                saw_counter = true
            }
            _ => {}
        }
    }
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
}
