//! End-to-end tests of the admin pages in real headless Chromium (Debian's `chromium` and
//! `chromium-driver`; `bash .ci/test` installs them), driven over W3C WebDriver by the small
//! client below, against `jobbot demo` on the simulator.
//!
//! Every wait polls the page with a generous deadline; nothing sleeps and then asserts, and no
//! assertion is about time. The screenshots in `docs/screenshots/` are written by these tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const PASSWORD: &str = "browser-test-password";
const API_TOKEN: &str = "jbt_browser_test_token";
const DEADLINE: Duration = Duration::from_secs(60);
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

// ----- a minimal HTTP/1.1 client (loopback only) -----

/// One request on a fresh connection (`Connection: close`); returns the status and the body.
fn http(
    address: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut stream =
        TcpStream::connect(address).unwrap_or_else(|error| panic!("connect {address}: {error}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let payload = body.map(Value::to_string).unwrap_or_default();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
        payload.len()
    );
    if body.is_some() {
        request.push_str("Content-Type: application/json; charset=utf-8\r\n");
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&payload);
    stream
        .write_all(request.as_bytes())
        .expect("send the request");
    // Read the head, then exactly the body: a server may keep the connection open regardless.
    let mut raw = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    let split = loop {
        if let Some(split) = raw.windows(4).position(|window| window == b"\r\n\r\n") {
            break split;
        }
        let read = stream.read(&mut buffer).expect("read the response");
        assert!(read > 0, "the connection closed before the response head");
        raw.extend_from_slice(&buffer[..read]);
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status code");
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse::<usize>().ok());
    let chunked = head.contains("transfer-encoding: chunked");
    let mut body = raw[split + 4..].to_vec();
    loop {
        let complete = match length {
            Some(length) => body.len() >= length,
            None if chunked => body.ends_with(b"0\r\n\r\n"),
            None => false,
        };
        if complete {
            break;
        }
        let read = stream.read(&mut buffer).expect("read the response body");
        if read == 0 {
            break;
        }
        body.extend_from_slice(&buffer[..read]);
    }
    if chunked {
        body = dechunk(&body);
    }
    (status, String::from_utf8_lossy(&body).to_string())
}

/// Whether chromedriver answers `GET /status` with `"ready":true`. Any failure (not listening
/// yet, a reset while it starts up on a busy machine) means "not yet": the caller retries until
/// its deadline.
fn driver_ready(address: &str) -> bool {
    let probe = || -> std::io::Result<bool> {
        let mut stream = TcpStream::connect(address)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "GET /status HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
        )?;
        // chromedriver may keep the connection open: read until the answer is in.
        let mut response = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let read = stream.read(&mut buffer)?;
            response.extend_from_slice(&buffer[..read]);
            let text = String::from_utf8_lossy(&response);
            if read == 0 || text.contains("\"ready\":") {
                return Ok(text.contains("\"ready\":true"));
            }
        }
    };
    probe().unwrap_or(false)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|window| window == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[end + 2 + size + 2..];
    }
    out
}

// ----- a minimal W3C WebDriver client -----

struct Browser {
    driver: String,
    session: String,
}

impl Drop for Browser {
    /// Ends the session, which makes chromedriver quit its Chromium: killing chromedriver alone
    /// leaves the browser running (seen: hundreds of orphaned Chromium processes after repeated
    /// runs, holding every inotify instance the user may have).
    fn drop(&mut self) {
        let path = format!("/session/{}", self.session);
        let quit = std::panic::catch_unwind(|| http(&self.driver, "DELETE", &path, None, &[]));
        let _ = quit;
    }
}

impl Browser {
    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("/session/{}{path}", self.session);
        let body = body.or_else(|| (method == "POST").then(|| json!({})));
        let (status, text) = http(&self.driver, method, &url, body.as_ref(), &[]);
        let reply: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("WebDriver said {status}: {text}"));
        assert!(status == 200, "WebDriver {method} {path}: {status} {reply}");
        reply["value"].clone()
    }

    fn goto(&self, url: &str) {
        self.command("POST", "/url", Some(json!({"url": url})));
    }

    fn refresh(&self) {
        self.command("POST", "/refresh", None);
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    fn js(&self, script: &str, args: Value) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    fn find(&self, css: &str) -> Value {
        let element = self.command(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        json!({ELEMENT: element[ELEMENT]})
    }

    /// Clicks `css`, finding it again if a live update replaced it in between.
    fn click(&self, css: &str) {
        let start = Instant::now();
        while !self.try_click(css) {
            assert!(start.elapsed() < DEADLINE, "could not click {css}");
        }
    }

    fn try_click(&self, css: &str) -> bool {
        let element = self.find(css);
        let id = element[ELEMENT].as_str().expect("an element id").to_owned();
        // To the middle of the screen, as a person would scroll: at the bottom edge the form's
        // sticky save bar covers it.
        self.js(
            "arguments[0].scrollIntoView({block: 'center'});",
            json!([element]),
        );
        let (status, text) = http(
            &self.driver,
            "POST",
            &format!("/session/{}/element/{id}/click", self.session),
            Some(&json!({})),
            &[],
        );
        if status == 200 {
            return true;
        }
        assert!(
            text.contains("stale element reference"),
            "click {css}: {status} {text}"
        );
        false
    }

    /// Replaces the value of the input `css` with `text`, as typing would.
    fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css);
        let id = element[ELEMENT].as_str().expect("an element id").to_owned();
        self.command("POST", &format!("/element/{id}/clear"), None);
        self.command(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({"text": text})),
        );
    }

    fn text(&self, css: &str) -> String {
        self.js("const e = document.querySelector(arguments[0]); return e ? e.textContent.trim() : null;", json!([css]))
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn path(&self) -> String {
        self.js("return location.pathname;", json!([]))
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn set_size(&self, width: u32, height: u32) {
        self.command(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
    }

    fn screenshot(&self, file: &Path) {
        let encoded = self.command("GET", "/screenshot", None);
        let png = base64_decode(encoded.as_str().expect("base64 PNG"));
        std::fs::create_dir_all(file.parent().expect("a parent")).expect("create docs/screenshots");
        std::fs::write(file, &png).expect("write the screenshot");
        assert!(
            png.len() < 300_000,
            "{} is {} bytes; keep screenshots small",
            file.display(),
            png.len()
        );
    }

    /// Polls `check` until it returns `Some`, or fails with `what` after the deadline.
    fn wait<T>(&self, what: &str, mut check: impl FnMut(&Browser) -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(found) = check(self) {
                return found;
            }
            assert!(start.elapsed() < DEADLINE, "timed out waiting for: {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_in(&self, base: &str, path: &str) {
        self.goto(&format!("{base}{path}"));
        self.wait("the login page", |b| (b.path() == "/login").then_some(()));
        self.type_into("#password", PASSWORD);
        self.click("#login button[type=submit]");
        self.wait("back from the login page", |b| {
            (b.path() == path).then_some(())
        });
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let digits: Vec<u32> = text.bytes().filter_map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let mut n = 0u32;
        for (index, digit) in chunk.iter().enumerate() {
            n |= digit << (18 - 6 * index);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len().saturating_sub(1)]);
    }
    out
}

// ----- the processes under test -----

/// Children started by a test, killed (by their own handles) when it ends, pass or fail.
struct Processes {
    children: Vec<Child>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.children {
            // Each child leads its own process group (chromedriver's Chromium is in it too):
            // end the whole group, then reap the child.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

/// A demo, a chromedriver and a browser session on it.
fn start() -> (Processes, Browser, String) {
    for tool in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: run `bash .ci/test` (it installs Debian's chromium and chromium-driver)"
        );
    }
    let data = tempfile::tempdir().expect("tempdir");
    let profile = tempfile::tempdir().expect("tempdir");
    let mut processes = Processes {
        children: Vec::new(),
        _dirs: Vec::new(),
    };

    let mut demo = Command::new(env!("CARGO_BIN_EXE_jobbot"))
        .process_group(0)
        .args(["--data-dir"])
        .arg(data.path())
        .args(["demo", "--listen", "127.0.0.1:0", "--pace-ms", "500"])
        .env("JOBBOT_ADMIN_PASSWORD", PASSWORD)
        .env("JOBBOT_API_TOKEN", API_TOKEN)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start jobbot demo");
    let stdout = demo.stdout.take().expect("stdout");
    processes.children.push(demo);
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Keeps draining stdout so the demo never blocks on a full pipe.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(address) = line.trim().strip_prefix("web interface: http://") {
                let _ = sender.send(address.to_owned());
            }
        }
    });
    let address = receiver
        .recv_timeout(DEADLINE)
        .expect("the demo prints its web address");

    // A free port can be taken between our probe and chromedriver's bind (the other browser test
    // starts one too): a driver that exited is started again on another port, so each test talks
    // to its own driver.
    let start = Instant::now();
    let driver_address = 'started: loop {
        let port = free_port();
        let mut driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver_address = format!("127.0.0.1:{port}");
        loop {
            assert!(
                start.elapsed() < DEADLINE,
                "chromedriver did not become ready"
            );
            if driver.try_wait().expect("chromedriver's status").is_some() {
                continue 'started;
            }
            if driver_ready(&driver_address) {
                processes.children.push(driver);
                break 'started driver_address;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let capabilities = json!({"capabilities": {"alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--no-first-run", "--hide-scrollbars", format!("--user-data-dir={}", profile.path().display())]
        }
    }}});
    let (status, text) = http(
        &driver_address,
        "POST",
        "/session",
        Some(&capabilities),
        &[],
    );
    let reply: Value = serde_json::from_str(&text).expect("a WebDriver reply");
    assert_eq!(status, 200, "new session: {reply}");
    let browser = Browser {
        driver: driver_address,
        session: reply["value"]["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned(),
    };
    browser.set_size(1280, 900);
    processes._dirs.push(data);
    processes._dirs.push(profile);
    (processes, browser, address)
}

fn screenshot_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/screenshots")
        .join(name)
}

const AGENT_ROWS: &str = "return document.querySelectorAll('#agents-list .agent-row').length;";

#[test]
fn channel_form_creates_edits_validates_and_shows_conflicts_in_chromium() {
    let (_processes, browser, address) = start();
    let base = format!("http://{address}");
    browser.log_in(&base, "/channels/new");

    // Create a channel.
    browser.type_into("#f-name", "Browser test channel");
    browser.type_into("#f-telegram_id", "-1001234567890");
    browser.type_into(
        "#f-input_sources",
        "@python_jobs_demo\nhttps://t.me/remote_it_demo",
    );
    browser.type_into("#f-include_keywords", "python, rust");
    browser.click("#save");
    let id = browser.wait("the new channel's edit page", |b| {
        let path = b.path();
        (path.starts_with("/channels/") && path != "/channels/new")
            .then(|| {
                b.js("return document.getElementById('f-id').value;", json!([]))
                    .as_str()
                    .map(str::to_owned)
            })
            .flatten()
    });
    let edit = format!("/channels/{id}");

    // Enable CRM, add two agents with the seed's button, remove one, save.
    assert_eq!(
        browser.text("label[for=f-crm_enabled], [data-field=crm_enabled] label"),
        "CRM Функциональность"
    );
    assert_eq!(browser.text("#add-agent"), "+ Добавить агента");
    browser.click("#f-crm_enabled");
    browser.type_into("#f-crm_group_id", "-1009876543210");
    browser.click("#add-agent");
    browser.click("#add-agent");
    assert_eq!(browser.js(AGENT_ROWS, json!([])), json!(2));
    browser.type_into(".agent-row:nth-child(1) input[name=phone]", "+79990000011");
    browser.type_into(
        ".agent-row:nth-child(1) input[name=session_name]",
        "agent_browser_1",
    );
    browser.type_into(".agent-row:nth-child(2) input[name=phone]", "+79990000012");
    browser.type_into(
        ".agent-row:nth-child(2) input[name=session_name]",
        "agent_browser_2",
    );
    browser.click(".agent-row:nth-child(2) .remove-agent");
    assert_eq!(browser.js(AGENT_ROWS, json!([])), json!(1));
    browser.click("#save");
    browser.wait("saved", |b| {
        (b.text("#form-status") == "Сохранено").then_some(())
    });

    // Reload: exactly the one agent.
    browser.refresh();
    browser.wait("the form after reload", |b| {
        (b.js(AGENT_ROWS, json!([])) == json!(1)).then_some(())
    });
    assert_eq!(
        browser.js(
            "return document.querySelector('.agent-row input[name=session_name]').value;",
            json!([])
        ),
        json!("agent_browser_1")
    );

    // A half-filled row is not dropped: its empty field gets the message.
    browser.click("#add-agent");
    browser.type_into(
        ".agent-row:nth-child(2) input[name=session_name]",
        "agent_browser_3",
    );
    browser.click("#save");
    browser.wait("the error next to the empty phone", |b| {
        (b.text(".agent-row:nth-child(2) [data-error-for=phone]") == "Обязательное поле")
            .then_some(())
    });
    browser.click(".agent-row:nth-child(2) .remove-agent");

    // CRM with no agents: the error is next to the agent list, and nothing is saved.
    browser.click(".agent-row:nth-child(1) .remove-agent");
    browser.click("#save");
    browser.wait("the error next to the agent list", |b| {
        let text = b.text("[data-field=agents] > [data-error-for=agents]");
        text.contains("хотя бы один агент").then_some(())
    });
    // The server refuses it too, with the same field path (a form that skipped the browser check).
    let server = browser.command("POST", "/execute/async", Some(json!({"script": "
        const done = arguments[arguments.length - 1];
        const form = document.getElementById('channel-form');
        api('PUT', '/api/channels/' + arguments[0], {revision: form.dataset.revision, crm_enabled: true, agents: []})
          .then((reply) => done([reply.status, (reply.body.problems || []).map((p) => p.path)]));",
        "args": [id]})));
    assert_eq!(server, json!([422, ["agents"]]));
    browser.refresh();
    browser.wait("the saved agent is still there", |b| {
        (b.js(AGENT_ROWS, json!([])) == json!(1)).then_some(())
    });

    // The same channel in two tabs: the second save shows the conflict and overwrites nothing.
    let first = browser.command("GET", "/window", None);
    let second = browser.command("POST", "/window/new", Some(json!({"type": "tab"})));
    browser.command("POST", "/window", Some(json!({"handle": second["handle"]})));
    browser.goto(&format!("{base}{edit}"));
    browser.wait("the form in the second tab", |b| {
        (b.js(AGENT_ROWS, json!([])) == json!(1)).then_some(())
    });
    browser.command("POST", "/window", Some(json!({"handle": first})));
    browser.type_into("#f-name", "Renamed in the first tab");
    browser.click("#save");
    browser.wait("saved in the first tab", |b| {
        (b.text("#form-status") == "Сохранено").then_some(())
    });
    browser.command("POST", "/window", Some(json!({"handle": second["handle"]})));
    browser.type_into("#f-name", "Renamed in the second tab");
    browser.click("#save");
    browser.wait("the conflict in the second tab", |b| {
        (b.js(
            "return !document.getElementById('conflict').hidden;",
            json!([]),
        ) == json!(true))
        .then_some(())
    });
    assert!(browser.text("#form-status").starts_with("Конфликт"));
    browser.refresh();
    browser.wait("the first tab's name kept", |b| {
        (b.js("return document.getElementById('f-name').value;", json!([]))
            == json!("Renamed in the first tab"))
        .then_some(())
    });

    // The channel list shows it with its badges and counts.
    browser.goto(&format!("{base}/"));
    let card = format!("[data-channel=\"{id}\"]");
    browser.wait("the channel's card", |b| {
        b.text(&card)
            .contains("Renamed in the first tab")
            .then_some(())
    });
    assert!(browser.text(&format!("{card} .badges")).contains("CRM"));

    // The demo's CRM channel, for the README.
    browser.goto(&format!("{base}/channels/channel_python"));
    browser.wait("the demo channel's agents", |b| {
        (b.js(AGENT_ROWS, json!([])) == json!(3)).then_some(())
    });
    browser.js(
        "document.querySelector('fieldset.crm').scrollIntoView();",
        json!([]),
    );
    browser.screenshot(&screenshot_path("channel-form.png"));

    // English and back.
    browser.click("#lang-switch");
    browser.wait("English labels", |b| {
        (b.text("#add-agent") == "+ Add agent").then_some(())
    });
    assert_eq!(
        browser.js("return document.documentElement.lang;", json!([])),
        json!("en")
    );
    assert_eq!(browser.path(), "/channels/channel_python");
    browser.click("#lang-switch");
    browser.wait("Russian labels again", |b| {
        (b.text("#add-agent") == "+ Добавить агента").then_some(())
    });

    // On a phone the form fits the width.
    browser.set_size(390, 844);
    browser.refresh();
    browser.wait("the form on a phone", |b| {
        (b.js(AGENT_ROWS, json!([])) == json!(3)).then_some(())
    });
    let overflow = browser.js(
        "return document.documentElement.scrollWidth - window.innerWidth;",
        json!([]),
    );
    assert!(
        overflow.as_i64().unwrap_or(1) <= 0,
        "horizontal scroll on a phone: {overflow}"
    );

    // Delete the test channel, confirming.
    browser.set_size(1280, 900);
    browser.goto(&format!("{base}/"));
    browser.wait("the list", |b| (!b.text(&card).is_empty()).then_some(()));
    browser.click(&format!("{card} button[data-delete]"));
    let prompt = browser.wait("the confirmation", |b| {
        let (status, text) = http(
            &b.driver,
            "GET",
            &format!("/session/{}/alert/text", b.session),
            None,
            &[],
        );
        (status == 200)
            .then(|| serde_json::from_str::<Value>(&text).expect("json")["value"].clone())
    });
    assert_eq!(prompt, json!("Удалить канал «Renamed in the first tab»?"));
    browser.command("POST", "/alert/accept", None);
    browser.wait("the card gone", |b| {
        (b.js(
            "return document.querySelector(arguments[0]) === null;",
            json!([card]),
        ) == json!(true))
        .then_some(())
    });
}

#[test]
fn agents_dashboard_shows_a_flood_wait_live_in_chromium() {
    let (_processes, browser, address) = start();
    let base = format!("http://{address}");
    browser.log_in(&base, "/agents");
    browser.wait("live updates connected", |b| {
        (b.js(
            "return document.getElementById('live-status').dataset.live;",
            json!([]),
        ) == json!("on"))
        .then_some(())
    });
    // An agent that is ready now (the demo's bursts give flood waits of their own now and then).
    let session = browser.wait("a ready demo agent", |b| {
        b.js("const row = [...document.querySelectorAll('#agents-body tr')]
                .find((row) => row.dataset.session.startsWith('agent_demo_') && row.dataset.state === 'ready');
              return row ? row.dataset.session : null;", json!([]))
            .as_str()
            .map(str::to_owned)
    });
    // Proves below that the page was not reloaded.
    browser.js("window.notReloaded = true;", json!([]));

    let (status, reply) = http(
        &address,
        "POST",
        "/api/demo/flood-wait",
        Some(&json!({"session": session, "seconds": 3000})),
        &[("Authorization", &format!("Bearer {API_TOKEN}"))],
    );
    assert_eq!(status, 200, "{reply}");
    let row = format!("#agents-body tr[data-session=\"{session}\"]");
    let countdown = browser.wait("the flood wait on the dashboard", |b| {
        let state = b.js(
            "const row = document.querySelector(arguments[0]); return row && row.dataset.state;",
            json!([row]),
        );
        (state == json!("flood_wait")).then(|| b.text(&format!("{row} .countdown")))
    });
    // The imposed 50 minutes, not one of the demo's own short waits.
    let minutes: u32 = countdown
        .split(':')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    assert!(minutes >= 40, "countdown {countdown}");
    assert_eq!(
        browser.js("return window.notReloaded === true;", json!([])),
        json!(true)
    );
    assert_eq!(browser.text(&format!("{row} .badge")), "FloodWait");
    browser.screenshot(&screenshot_path("agents-dashboard.png"));

    // Pause and resume another agent.
    let other = if session == "agent_demo_3" {
        "agent_demo_2"
    } else {
        "agent_demo_3"
    };
    let other_row = format!("#agents-body tr[data-session=\"{other}\"]");
    browser.wait("the other agent's pause button", |b| {
        (b.js(
            "return document.querySelector(arguments[0]) !== null;",
            json!([format!("{other_row} button.pause")]),
        ) == json!(true))
        .then_some(())
    });
    browser.click(&format!("{other_row} button.pause"));
    browser.wait("paused", |b| {
        (b.js(
            "const r = document.querySelector(arguments[0]); return r && r.dataset.state;",
            json!([other_row]),
        ) == json!("paused"))
        .then_some(())
    });
    browser.click(&format!("{other_row} button.resume"));
    browser.wait("resumed", |b| {
        let state = b.js(
            "const r = document.querySelector(arguments[0]); return r && r.dataset.state;",
            json!([other_row]),
        );
        (state != json!("paused") && !state.is_null()).then_some(())
    });

    // Bulk add two agents to the design channel.
    browser.js(
        "document.getElementById('bulk-channel').value = 'channel_design';",
        json!([]),
    );
    browser.type_into(
        "#bulk-lines",
        "+79990000021 bulk_agent_1\n+79990000022 bulk_agent_2",
    );
    browser.click("#bulk-form button[type=submit]");
    browser.wait("the bulk-added agents", |b| {
        (b.js("return document.querySelectorAll('#agents-body tr[data-session^=bulk_agent_]').length;", json!([])) == json!(2))
            .then_some(())
    });
    assert_eq!(
        browser.js("return window.notReloaded === true;", json!([])),
        json!(true)
    );
}
