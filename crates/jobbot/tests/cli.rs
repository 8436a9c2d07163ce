//! The `jobbot` binary, run as a user runs it.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn jobbot(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jobbot"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("RUST_LOG")
        // The AI's default provider key: the tests give it through DATA_DIR/.env when they
        // need it, whatever the machine has.
        .env_remove("GROQ_API_KEY")
        .env_remove("BOT_SESSION_BASE64")
        .output()
        .expect("the jobbot binary runs")
}

/// The standard output of a command that must have succeeded (its errors shown if not).
fn succeeded(output: &Output) -> String {
    let text = stdout(output);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn write_config(dir: &Path, text: &str) -> std::path::PathBuf {
    let configs = dir.join("configs");
    std::fs::create_dir_all(&configs).unwrap();
    let file = configs.join("channels_config.json");
    std::fs::write(&file, text).unwrap();
    file
}

const EXAMPLE: &str = include_str!("../../../configs/channels_config.example.json");

#[test]
fn config_check_accepts_the_bundled_example() {
    let dir = tempfile::tempdir().unwrap();
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/channels_config.example.json");
    let output = jobbot(dir.path(), &["config", "check", example.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stdout(&output));
    assert!(
        stdout(&output).contains("valid (revision "),
        "{}",
        stdout(&output)
    );
    assert!(stdout(&output).contains("2 channels (1 enabled, 1 with CRM), 2 agent accounts"));
}

#[test]
fn config_check_lists_every_problem_with_its_path_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let broken = EXAMPLE
        .replace("\"+79997654321\"", "\"+7999876\"")
        .replace("-1001234567890", "12345")
        .replace("\"@design_jobs_ru\"", "\"design jobs\"");
    write_config(dir.path(), &broken);
    let output = jobbot(dir.path(), &["config", "check"]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    for expected in [
        "3 problem(s):",
        "output_channels[0].telegram_id: 12345 is not a channel or supergroup id in Bot API form",
        // Masked: the same message goes to the logs when the file is loaded.
        "output_channels[0].agents[1].phone: \"+79***76\" is not a phone number in international format",
        "output_channels[1].input_sources[0]: \"design jobs\" is not a source",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn config_check_reports_malformed_json_and_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = jobbot(dir.path(), &["config", "check"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("could not read"));

    write_config(dir.path(), "{\"output_channels\": [");
    let output = jobbot(dir.path(), &["config", "check"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains("not valid JSON"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn config_migrate_rewrites_the_old_format_and_keeps_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let old = r#"{
  "output_channels": [
    {
      "id": "channel_123",
      "name": "Python Jobs",
      "telegram_id": -1001234567890,
      "crm_enabled": true,
      "crm_group_id": -1002345678901,
      "agent_phone": "+79991234567",
      "agent_session_name": "agent_python"
    }
  ]
}
"#;
    let file = write_config(dir.path(), old);
    let check = jobbot(dir.path(), &["config", "check"]);
    assert!(check.status.success(), "{}", stdout(&check));
    assert!(stdout(&check).contains("moved agent_phone/agent_session_name into agents[0]"));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        old,
        "check never writes"
    );

    let output = jobbot(dir.path(), &["config", "migrate"]);
    assert!(output.status.success(), "{}", stdout(&output));
    let migrated: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(
        migrated["output_channels"][0]["agents"],
        serde_json::json!([{"phone": "+79991234567", "session_name": "agent_python"}])
    );
    assert!(migrated["output_channels"][0].get("agent_phone").is_none());
    let backups: Vec<_> = std::fs::read_dir(dir.path().join("configs"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with("channels_config.json.bak-"))
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    let backup = std::fs::read_to_string(dir.path().join("configs").join(&backups[0])).unwrap();
    assert_eq!(backup, old);

    let again = jobbot(dir.path(), &["config", "migrate"]);
    assert!(
        stdout(&again).contains("already in the current format"),
        "{}",
        stdout(&again)
    );
}

#[test]
fn login_without_api_credentials_names_the_missing_variable() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_jobbot"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["login", "agent_1", "--phone", "+79991234567"])
        .env_remove("API_ID")
        .env_remove("API_HASH")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("API_ID"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let bad_session = jobbot(dir.path(), &["login", "../x"]);
    assert!(
        String::from_utf8_lossy(&bad_session.stderr)
            .contains("SESSION: \"../x\" is not a session name")
    );
}

/// Without a logged-in main account `jobbot run` starts anyway and waits: it says how to log in,
/// serves the web interface (where the login can be done), and reports not ready with the main
/// account as the reason, until stopped (#14 item 5).
#[test]
fn run_starts_without_a_logged_in_main_account_and_waits() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), EXAMPLE);
    let (mut child, address, text) = start_run(dir.path());
    assert!(text.contains("the main account is not logged in"), "{text}");
    assert!(text.contains("jobbot login bot_session --phone"), "{text}");
    assert!(
        !text.contains("0123456789abcdef"),
        "the API hash is never printed: {text}"
    );
    let (status, body) = http_request(&address, "/readyz", None).expect("an answer");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"main_account\":false"), "{body}");
    stop_run(&mut child);
}

/// A data dir that does not exist yet (no `configs/`, no `data/`) is a first start, not an
/// error; the admin password generated for it is kept in an owner-only file and never printed
/// (a service's terminal output ends up in its journal).
#[test]
fn run_starts_on_a_fresh_data_dir_without_printing_the_generated_password() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("fresh");
    let (mut child, address, text) = start_run(&dir);
    let file = dir.join("data").join("admin_password");
    let password = std::fs::read_to_string(&file).expect("the generated password is kept");
    assert!(password.trim().len() >= 12, "a usable password");
    assert!(
        !text.contains(password.trim()),
        "the password is never printed: {text}"
    );
    assert!(text.contains(&file.display().to_string()), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "owner only: {mode:o}");
    }
    let (status, body) = http_request(&address, "/readyz", None).expect("an answer");
    assert_eq!(status, 503, "{body}");
    stop_run(&mut child);
}

/// Starts `jobbot run` on `dir` with API credentials and no main-account session; returns the
/// child, the web address and everything printed before it.
fn start_run(dir: &Path) -> (std::process::Child, String, String) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_jobbot"))
        .arg("--data-dir")
        .arg(dir)
        .args(["run", "--listen", "127.0.0.1:0"])
        .env("API_ID", "12345")
        .env("API_HASH", "0123456789abcdef0123456789abcdef")
        .env("RUST_LOG", "error")
        .env_remove("JOBBOT_SESSION_KEY")
        .env_remove("JOBBOT_ADMIN_PASSWORD")
        .env_remove("PORT")
        .env_remove("JOBBOT_LISTEN")
        .env_remove("DATABASE_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut printed = Vec::new();
    let address = loop {
        let Some(line) = stderr.next() else {
            panic!("jobbot run ended: {printed:?} {:?}", child.wait());
        };
        let line = line.unwrap();
        if let Some(rest) = line.trim().strip_prefix("Web interface: http://") {
            let address = rest.split_whitespace().next().unwrap_or(rest).to_owned();
            printed.push(line.clone());
            // A generated password's two lines follow the address.
            let generated = if line.contains("(admin password in") {
                0
            } else {
                2
            };
            for _ in 0..generated {
                if let Some(Ok(next)) = stderr.next() {
                    printed.push(next);
                }
            }
            break address;
        }
        printed.push(line);
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in stderr {});
    (child, address, printed.join("\n"))
}

/// Asks `jobbot run` to stop; it must still be running and exit 0.
fn stop_run(child: &mut std::process::Child) {
    assert!(
        child.try_wait().unwrap().is_none(),
        "still running, waiting"
    );
    let terminated = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    assert!(child.wait().unwrap().success(), "an asked-for stop exits 0");
}

/// A database URL that is not PostgreSQL, or a server that does not answer, stops `jobbot run`
/// before anything else, naming the problem and never the URL's password.
#[test]
fn run_refuses_a_database_url_it_cannot_use_without_printing_its_password() {
    let check = |flag: Option<&str>, variable: Option<&str>, expected: &str| {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_jobbot"));
        command.arg("--data-dir").arg(dir.path()).arg("run");
        if let Some(url) = flag {
            command.args(["--database-url", url]);
        }
        command.env_remove("DATABASE_URL").env_remove("RUST_LOG");
        if let Some(url) = variable {
            command.env("DATABASE_URL", url);
        }
        let output = command.output().unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
        assert!(
            !dir.path().join("data").join("jobbot.sqlite").exists(),
            "no SQLite store instead"
        );
    };
    check(
        Some("mysql://jobbot:hunter2@db/jobbot"),
        None,
        "scheme \"mysql\" is not PostgreSQL's",
    );
    // Nothing listens on port 1.
    check(
        None,
        Some("postgres://jobbot:hunter2@127.0.0.1:1/jobbot"),
        "could not connect to the database postgres://jobbot@127.0.0.1:1/jobbot",
    );
}

/// Runs `jobbot inspect` with `text` on stdin; returns the exit status, the parsed JSON (Null
/// when stdout is not JSON) and stderr.
fn inspect(data_dir: &Path, args: &[&str], text: &str) -> (Output, serde_json::Value) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_jobbot"))
        .arg("--data-dir")
        .arg(data_dir)
        .arg("inspect")
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the jobbot binary runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let report = serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
    (output, report)
}

fn channel_ids(list: &serde_json::Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|channel| channel["id"].as_str().unwrap())
        .collect()
}

/// Two enabled channels with different sources, in the current format.
const INSPECT_CONFIG: &str = r#"{
  "output_channels": [
    {
      "id": "python", "name": "Python Jobs", "telegram_id": -1001234567890, "enabled": true,
      "input_sources": ["https://t.me/python_jobs_feed", "@remote_it_vacancies"],
      "filters": {"include_keywords": ["Python", "django"], "exclude_keywords": ["стажировка"]}
    },
    {
      "id": "rust", "name": "Rust Jobs", "telegram_id": -1001234567891, "enabled": true,
      "input_sources": ["@remote_it_vacancies"],
      "filters": {"include_keywords": ["rust", "\"async\""], "require_all_includes": true}
    }
  ]
}"#;

#[test]
fn inspect_without_a_configuration_shows_contacts_only() {
    let dir = tempfile::tempdir().unwrap();
    let text = "Ищем Python-разработчика. Резюме на hr@gmail.com, вопросы в t.me/recruiter_ivan, \
                тел. 8 (999) 123-45-67";
    let (output, report) = inspect(dir.path(), &[], text);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(report["matched_channels"], serde_json::json!([]));
    assert_eq!(report["explain"], serde_json::json!([]));
    assert_eq!(
        report["contacts"],
        serde_json::json!({
            "telegram": ["@recruiter_ivan"],
            "emails": ["hr@gmail.com"],
            "phones": ["+79991234567"],
        })
    );
    assert_eq!(report["crm_target"], "@recruiter_ivan");

    let (_, nobody) = inspect(
        dir.path(),
        &[],
        "Подписывайтесь на наш канал @it_jobs_channel",
    );
    assert_eq!(nobody["crm_target"], serde_json::Value::Null);
}

#[test]
fn inspect_names_the_matched_keywords_and_explains_the_channels_that_did_not_match() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), INSPECT_CONFIG);
    let (output, report) = inspect(
        dir.path(),
        &[],
        "Senior Python/Django + Rust developer, asynchronous everything. Пишите @hr_anna_petrova",
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        report["matched_channels"],
        serde_json::json!([{"id": "python", "name": "Python Jobs", "keywords": ["Python", "django"]}])
    );
    assert_eq!(
        report["explain"],
        serde_json::json!([{
            "id": "rust",
            "name": "Rust Jobs",
            "reason": "include_keywords_missing",
            "require_all_includes": true,
            "matched_includes": ["rust"],
            "missing_includes": ["\"async\""],
        }])
    );
    assert_eq!(report["crm_target"], "@hr_anna_petrova");

    let (_, excluded) = inspect(dir.path(), &[], "Стажировка: Python, Rust, async");
    assert_eq!(channel_ids(&excluded["matched_channels"]), vec!["rust"]);
    assert_eq!(excluded["explain"][0]["reason"], "exclude_keyword_found");
    assert_eq!(
        excluded["explain"][0]["excludes_found"],
        serde_json::json!(["стажировка"])
    );
}

#[test]
fn inspect_with_a_source_considers_only_the_channels_listing_it_in_any_form() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), INSPECT_CONFIG);
    let text = "Python and Rust, async, remote";
    let check = |source: &str, expected_matched: &[&str]| {
        let (output, report) = inspect(
            dir.path(),
            &["--source", source, "--config", config.to_str().unwrap()],
            text,
        );
        assert!(output.status.success(), "{source}");
        assert_eq!(
            channel_ids(&report["matched_channels"]),
            expected_matched,
            "{source}"
        );
        report
    };
    let only_python = check("@Python_Jobs_Feed", &["python"]);
    assert_eq!(only_python["source"], "@Python_Jobs_Feed");
    assert_eq!(
        only_python["explain"],
        serde_json::json!([{"id": "rust", "name": "Rust Jobs", "reason": "source_not_listed"}])
    );
    check("https://t.me/remote_it_vacancies/42", &["python", "rust"]);
    check("@somewhere_else", &[]);

    let (bad, _) = inspect(dir.path(), &["--source", "not a source"], text);
    assert!(!bad.status.success());
}

#[test]
fn inspect_refuses_an_invalid_configuration_listing_its_problems() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &INSPECT_CONFIG
            .replace("-1001234567891", "12345")
            .replace("\"\\\"async\\\"\"", "\"\\\"\\\"\""),
    );
    let (output, _) = inspect(dir.path(), &[], "Python");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("2 problem(s)"), "{stderr}");
    assert!(
        stderr.contains("output_channels[1].telegram_id"),
        "{stderr}"
    );
    assert!(stderr.contains("between the quotes"), "{stderr}");

    let (missing, _) = inspect(dir.path(), &["--config", "/nonexistent/config.json"], "x");
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("could not read"),
        "an explicit --config must exist"
    );
}

#[test]
fn filters_benchmark_writes_one_result_per_workload_and_channel_count() {
    let dir = tempfile::tempdir().unwrap();
    let json_file = dir.path().join("bench.json");
    let output = jobbot(
        dir.path(),
        &[
            "bench",
            "filters",
            "--channels",
            "10,30",
            "--iterations",
            "2",
            "--json",
            json_file.to_str().unwrap(),
        ],
    );
    assert!(
        output.status.success(),
        "{}{}",
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout(&output).contains("jobbot msg/s"),
        "{}",
        stdout(&output)
    );
    let document: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_file).unwrap()).unwrap();
    let results = document["results"].as_array().unwrap();
    let rows: Vec<(&str, u64)> = results
        .iter()
        .map(|result| {
            (
                result["workload"].as_str().unwrap(),
                result["channels"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("topical", 10),
            ("topical", 30),
            ("niche", 10),
            ("niche", 30)
        ]
    );
    for result in results {
        assert_eq!(result["keywords_per_channel"], 20);
        for field in [
            "jobbot_msgs_per_s",
            "jobbot_evaluate_msgs_per_s",
            "naive_msgs_per_s",
            "ratio",
            "mean_matched_channels",
        ] {
            let value = result[field].as_f64().unwrap_or(-1.0);
            assert!(value > 0.0 && value.is_finite(), "{field} in {result}");
        }
    }
}

/// `GET path` with a bearer token over plain HTTP/1.1; the body of a 200.
fn http_get(address: &str, path: &str, token: &str) -> Option<String> {
    let (status, body) = http_request(address, path, Some(token))?;
    (status == 200).then_some(body)
}

/// `GET path` over plain HTTP/1.1, with a bearer token if given: the status and the body.
fn http_request(address: &str, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok()?;
    let authorization = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\n{authorization}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// A demo on `dir` that sends at a quick pace, with its API token `token`: the process, its web
/// address, and what it printed.
fn start_busy_demo(dir: &Path, token: &str) -> (std::process::Child, String, Vec<String>) {
    start_demo(
        dir,
        &["--listen", "127.0.0.1:0", "--pace-ms", "300"],
        // Little on stderr: the pipe is not read while the demo runs.
        &[("JOBBOT_API_TOKEN", token), ("RUST_LOG", "error")],
    )
}

/// Polls `/api/stats` until `done` says so (within 90 s); the last stats read.
fn wait_for_stats(
    address: &str,
    token: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> (bool, serde_json::Value) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let mut last = serde_json::Value::Null;
    loop {
        if let Some(body) = http_get(address, "/api/stats", token) {
            last = serde_json::from_str(&body).unwrap();
            if done(&last) {
                return (true, last);
            }
        }
        if std::time::Instant::now() > deadline {
            return (false, last);
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

fn sent(stats: &serde_json::Value, what: &str) -> u64 {
    stats[what].as_u64().unwrap_or(0)
}

/// The README's main command: the demo serves the API, and within a minute of simulated
/// Telegram traffic it has sent notifications, delivered auto-responses, and posted AI
/// suggestions from its built-in scripted provider (over the OpenAI-compatible HTTP interface)
/// for the recruiters' answers. (The deadline only bounds the wait; nothing is asserted about
/// how long it took.)
#[test]
fn the_demo_sends_notifications_and_auto_responses_and_suggests_ai_replies() {
    let dir = tempfile::tempdir().unwrap();
    let token = "demo-test-token-0123456789abcdefghij";
    let (mut child, address, printed) = start_busy_demo(dir.path(), token);
    assert!(
        printed.iter().any(|line| line.contains("admin password")),
        "{printed:?}"
    );
    assert!(
        !printed
            .iter()
            .any(|line| line.contains("demo-admin-password")),
        "the password is not echoed"
    );
    let (reached, last) = wait_for_stats(&address, token, |stats| {
        sent(stats, "notifications_sent") > 0
            && sent(stats, "auto_responses_sent") > 0
            && sent(stats, "ai_suggestions") > 0
    });
    let metrics = http_get(&address, "/metrics", token).unwrap_or_default();
    // The conversations page's list: the suggested conversation with its contact, and its
    // history as the model sees it.
    let list: serde_json::Value = http_get(&address, "/api/conversations", token)
        .map(|body| serde_json::from_str(&body).unwrap())
        .unwrap_or_default();
    let suggested = list["conversations"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|item| item["suggestions"].as_u64().unwrap_or(0) > 0)
        .cloned();
    let detail: serde_json::Value = suggested
        .as_ref()
        .and_then(|item| {
            http_get(
                &address,
                &format!("/api/conversations/{}/ai", item["conversation"]),
                token,
            )
        })
        .map(|body| serde_json::from_str(&body).unwrap())
        .unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        reached,
        "no notification, auto-response and AI suggestion in the demo's stats: {last}"
    );
    let suggested = suggested.unwrap_or_else(|| panic!("no suggested conversation in {list}"));
    assert!(
        suggested["contact"]["name"]
            .as_str()
            .is_some_and(|name| !name.is_empty()),
        "{suggested}"
    );
    assert_eq!(detail["contact"], suggested["contact"], "{detail}");
    assert!(
        detail["history"]
            .as_array()
            .is_some_and(|history| history.iter().any(|entry| entry["author"] == "contact")),
        "{detail}"
    );
    assert!(
        metrics.contains("jobbot_ai_suggestions{channel=\"channel_python\"}"),
        "{metrics}"
    );
    assert_eq!(last["ai_channels"][0]["channel_id"], "channel_python");
    assert!(sent(&last["ai_channels"][0], "prompt_tokens") > 0, "{last}");
}

/// One process per data directory: a second demo on the same directory is refused, naming the
/// first one, and wipes nothing of it. The first one shows its supervised tasks running, and a
/// SIGTERM stops it in order with exit status 0.
#[test]
fn a_second_demo_on_the_same_data_dir_is_refused_and_wipes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let token = "demo-test-token-0123456789abcdefghij";
    let (mut first, address, _) = start_busy_demo(dir.path(), token);
    let (reached, before) = wait_for_stats(&address, token, |stats| {
        sent(stats, "notifications_sent") > 0
    });
    assert!(reached, "the first demo works: {before}");
    let tasks: Vec<(String, String)> = before["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|task| {
            (
                task["name"].as_str().unwrap().to_owned(),
                task["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for name in [
        "dispatcher",
        "monitor",
        "crm_intake",
        "crm_workflows",
        "web",
    ] {
        assert!(
            tasks.contains(&(name.to_owned(), "running".to_owned())),
            "{name} runs: {tasks:?}"
        );
    }
    let metrics = http_get(&address, "/metrics", token).unwrap();
    assert!(
        metrics.contains("jobbot_task_up{task=\"monitor\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("jobbot_task_restarts_total{task=\"web\"} 0"));

    let second = jobbot(dir.path(), &["demo", "--listen", "127.0.0.1:0"]);
    assert!(!second.status.success());
    let error = String::from_utf8_lossy(&second.stderr);
    assert!(
        error.contains("is in use by another jobbot")
            && error.contains(&format!("pid {}", first.id()))
            && error.contains("`jobbot demo`"),
        "{error}"
    );
    // The first one's database is still there and still counts up.
    let (still, after) = wait_for_stats(&address, token, |stats| {
        sent(stats, "notifications_sent") > sent(&before, "notifications_sent")
    });
    assert!(still, "the first demo keeps its data and goes on: {after}");

    let terminated = Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    let status = first.wait().unwrap();
    assert!(status.success(), "an asked-for stop exits 0: {status:?}");
}

/// A demo started in `dir` with `env`: the process, the address it printed, and every line it
/// printed up to its Ctrl-C hint.
fn start_demo(
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (std::process::Child, String, Vec<String>) {
    use std::io::BufRead;
    let mut command = Command::new(env!("CARGO_BIN_EXE_jobbot"));
    command
        .arg("--data-dir")
        .arg(dir)
        .arg("demo")
        .args(args)
        .env_remove("PORT")
        .env_remove("JOBBOT_LISTEN")
        .env("JOBBOT_ADMIN_PASSWORD", "demo-admin-password")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut address = None;
    let mut printed = Vec::new();
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(url) = line.trim().strip_prefix("web interface: http://") {
            address = Some(url.to_owned());
        }
        let hint = line.contains("Ctrl-C");
        printed.push(line);
        if hint {
            break;
        }
    }
    let address = address.unwrap_or_else(|| panic!("the demo printed its address: {printed:?}"));
    (child, address, printed)
}

#[test]
fn secrets_that_are_too_short_stop_the_start_naming_the_variable() {
    for (variable, value, expected) in [
        (
            "JOBBOT_ADMIN_PASSWORD",
            "hunter2",
            "JOBBOT_ADMIN_PASSWORD has 7 characters; it needs at least 12",
        ),
        (
            "JOBBOT_API_TOKEN",
            "short-token",
            "JOBBOT_API_TOKEN has 11 characters; it needs at least 32",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_jobbot"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(["demo", "--listen", "127.0.0.1:0"])
            .env("JOBBOT_ADMIN_PASSWORD", "a-long-enough-password")
            .env(variable, value)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{variable}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{stderr}");
        assert!(!stderr.contains(value), "the secret is echoed: {stderr}");
    }
}

/// `$PORT` (what container platforms set) makes the demo listen on every interface, with a
/// warning that no proxy is trusted; health checks answer without login, and the demo's
/// configuration file is readable by its owner only.
#[test]
fn the_demo_listens_on_port_answers_health_checks_and_keeps_its_config_private() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, address, _) = start_demo(dir.path(), &["--pace-ms", "60000"], &[("PORT", "0")]);
    assert!(address.starts_with("0.0.0.0:"), "{address}");
    let port = address.rsplit(':').next().unwrap();
    let local = format!("127.0.0.1:{port}");
    let (status, body) = http_request(&local, "/healthz", None).expect("an answer");
    assert_eq!((status, body.as_str()), (200, r#"{"status":"alive"}"#));
    // Ready once the simulated main account is connected.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (status, body) = http_request(&local, "/readyz", None).expect("an answer");
        if status == 200 {
            assert!(body.contains("\"ready\":true"), "{body}");
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(std::time::Instant::now() < deadline, "never ready: {body}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let config = dir.path().join("demo/configs/channels_config.json");
        let mode = std::fs::metadata(config).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("without --trusted-proxy"), "{stderr}");

    // JOBBOT_LISTEN wins over PORT, and loopback needs no warning.
    let dir = tempfile::tempdir().unwrap();
    let (mut child, address, _) = start_demo(
        dir.path(),
        &["--pace-ms", "60000"],
        &[("PORT", "0"), ("JOBBOT_LISTEN", "127.0.0.1:0")],
    );
    assert!(address.starts_with("127.0.0.1:"), "{address}");
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    assert!(!String::from_utf8_lossy(&output.stderr).contains("without --trusted-proxy"));
}

/// The original system's Telethon session in `sessions/` is imported on first use and shown
/// with its DC and the auth key's MTProto id, never the key; `session import` takes a file from
/// elsewhere under a new name, leaving the file as it was.
#[test]
fn telethon_sessions_are_imported_and_shown_by_key_id() {
    let dir = tempfile::tempdir().unwrap();
    let sessions = dir.path().join("sessions");
    std::fs::create_dir_all(&sessions).unwrap();
    let legacy = legacy_session(13, 5, 4, "149.154.167.91");
    let key = legacy.auth_key.0;
    let original = sessions.join("agent_1.session");
    let elsewhere = dir.path().join("old_bot.session");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        jobbot_store::telethon::write_telethon_session(&original, &legacy)
            .await
            .unwrap();
        jobbot_store::telethon::write_telethon_session(&elsewhere, &legacy)
            .await
            .unwrap();
    });
    let key_hex: String = key[..16].iter().map(|byte| format!("{byte:02x}")).collect();

    let output = jobbot(dir.path(), &["session", "show", "agent_1"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = stdout(&output);
    assert!(
        text.contains(&format!(
            "session agent_1: DC 4 (149.154.167.91:443), user not known yet, auth key id {}, logged in",
            legacy.auth_key.id()
        )),
        "{text}"
    );
    assert!(!text.contains(&key_hex), "{text}");
    assert!(
        sessions.join("agent_1.session.telethon").exists(),
        "the original is kept"
    );

    let output = jobbot(
        dir.path(),
        &[
            "session",
            "import",
            elsewhere.to_str().unwrap(),
            "--name",
            "bot_session",
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout(&output).contains(&format!("auth key id {}", legacy.auth_key.id())));
    assert!(elsewhere.exists());
    // A second import over a logged-in session is refused, naming it.
    let output = jobbot(
        dir.path(),
        &[
            "session",
            "import",
            elsewhere.to_str().unwrap(),
            "--name",
            "bot_session",
        ],
    );
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("already exists and is logged in"), "{error}");
    assert!(!error.contains(&key_hex));
}

/// A logged-in legacy session with no peers: its key a pattern of `mult` and `add`.
fn legacy_session(
    mult: usize,
    add: usize,
    dc_id: i32,
    address: &str,
) -> jobbot_core::legacy_session::LegacySession {
    let mut key = [0u8; 256];
    for (index, byte) in key.iter_mut().enumerate() {
        *byte = (index * mult + add) as u8;
    }
    jobbot_core::legacy_session::LegacySession {
        dc_id,
        server_address: address.into(),
        port: 443,
        auth_key: jobbot_core::legacy_session::AuthKey(key),
        entities: Vec::new(),
        update_state: None,
        channel_states: Vec::new(),
        user_id: None,
    }
}

/// The original's Railway deployments keep the main account's session file base64-encoded in
/// `BOT_SESSION_BASE64`: with no session of its own, the main account's is taken from there
/// (kept as the original, imported like a file), never logged; a value that is not a session
/// is reported without itself, and never replaces a session.
#[test]
fn the_main_accounts_session_is_taken_from_bot_session_base64() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let legacy = legacy_session(17, 11, 2, "149.154.167.51");
    let file = dir.path().join("railway.session");
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(jobbot_store::telethon::write_telethon_session(
            &file, &legacy,
        ))
        .unwrap();
    let encoded = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&file).unwrap());

    // Not a session: reported by name, the value never shown, nothing written.
    std::fs::write(
        dir.path().join(".env"),
        "BOT_SESSION_BASE64=bm90IGEgc2Vzc2lvbg==\n",
    )
    .unwrap();
    let output = jobbot(dir.path(), &["session", "show", "bot_session"]);
    assert!(!output.status.success());
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(
        errors.contains("BOT_SESSION_BASE64 does not hold a Telethon or Pyrogram session file"),
        "{errors}"
    );
    assert!(!errors.contains("bm90IGEgc2Vzc2lvbg"), "{errors}");
    assert!(
        !dir.path()
            .join("sessions/bot_session.session.telethon")
            .exists()
    );

    std::fs::write(
        dir.path().join(".env"),
        format!("BOT_SESSION_BASE64={encoded}\n"),
    )
    .unwrap();
    let output = jobbot(dir.path(), &["session", "show", "bot_session"]);
    let text = stdout(&output);
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{text}{errors}");
    assert!(
        text.contains(&format!(
            "session bot_session: DC 2 (149.154.167.51:443), user not known yet, auth key id {}, logged in",
            legacy.auth_key.id()
        )),
        "{text}"
    );
    assert!(!errors.contains(&encoded[..40]), "{errors}");
    assert!(
        dir.path()
            .join("sessions/bot_session.session.telethon")
            .exists()
    );
    // A session of its own is never replaced by the variable.
    let before = std::fs::read(dir.path().join("sessions/bot_session.session")).unwrap();
    let output = jobbot(dir.path(), &["session", "show", "bot_session"]);
    assert!(output.status.success());
    assert_eq!(
        std::fs::read(dir.path().join("sessions/bot_session.session")).unwrap(),
        before
    );
}

/// A Telethon `StringSession` piped into `jobbot session import --string` becomes a session; a
/// string that is not one is refused without being shown.
#[test]
fn a_string_session_is_imported_from_standard_input() {
    use base64::Engine as _;
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let legacy = legacy_session(19, 2, 2, "149.154.167.51");
    let mut packed = vec![2u8, 149, 154, 167, 51];
    packed.extend_from_slice(&443u16.to_be_bytes());
    packed.extend_from_slice(&legacy.auth_key.0);
    let string = format!(
        "1{}",
        base64::engine::general_purpose::URL_SAFE.encode(&packed)
    );
    let import = |input: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_jobbot"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(["session", "import", "--string", "--name", "agent_7"])
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{input}\n").as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    // Base64 of "secretsecret": not a session's layout.
    let refused = import("1c2VjcmV0c2VjcmV0");
    assert!(!refused.status.success());
    let errors = String::from_utf8_lossy(&refused.stderr);
    assert!(
        errors.contains("neither a Telethon StringSession nor"),
        "{errors}"
    );
    assert!(!errors.contains("c2VjcmV0"), "{errors}");

    let output = import(&string);
    let text = succeeded(&output);
    assert!(
        text.contains(&format!(
            "as session agent_7 (DC 2 (149.154.167.51:443), user not known yet, auth key id {}, logged in",
            legacy.auth_key.id()
        )),
        "{text}"
    );
    assert!(!text.contains(&string[1..40]), "{text}");
}

/// A Pyrogram session file (the other Python library's format) is taken over like Telethon's:
/// automatically on first use, with its account, its DC's address from Pyrogram's own table and
/// its peers; and by `jobbot session import`.
#[test]
fn pyrogram_sessions_are_imported_with_their_account() {
    use jobbot_core::legacy_session::{LegacyEntity, LegacySession};
    let dir = tempfile::tempdir().unwrap();
    let sessions = dir.path().join("sessions");
    std::fs::create_dir_all(&sessions).unwrap();
    let legacy = LegacySession {
        entities: vec![LegacyEntity {
            id: 7_000_001,
            access_hash: 4_242,
            username: Some("anna_hr".into()),
            name: None,
            seen_at: Some(1_700_000_000),
        }],
        user_id: Some(6_000_001),
        ..legacy_session(31, 7, 2, "149.154.167.51")
    };
    let original = sessions.join("agent_1.session");
    let elsewhere = dir.path().join("pyro.session");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        for path in [&original, &elsewhere] {
            jobbot_store::pyrogram::write_pyrogram_session(path, &legacy, false)
                .await
                .unwrap();
        }
    });
    let key_hex: String = legacy.auth_key.0[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();

    let output = jobbot(dir.path(), &["session", "show", "agent_1"]);
    let text = succeeded(&output);
    assert!(
        text.contains(&format!(
            "session agent_1: DC 2 (149.154.167.51:443), user 6000001, auth key id {}, logged in, 2 peers cached",
            legacy.auth_key.id()
        )),
        "{text}"
    );
    assert!(!text.contains(&key_hex), "{text}");
    assert!(sessions.join("agent_1.session.telethon").exists());

    let output = jobbot(
        dir.path(),
        &[
            "session",
            "import",
            elsewhere.to_str().unwrap(),
            "--name",
            "bot_session",
        ],
    );
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("Imported the Pyrogram session"), "{text}");
    assert!(text.contains("user 6000001"), "{text}");
}

/// A configuration saved by the original's channel wizard (agents with `"phone": ""`) is valid:
/// the agent is kept with its phone missing; a malformed agent beside it is left out, named,
/// and the rest of the file is used.
#[test]
fn the_original_wizards_configuration_loads() {
    let dir = tempfile::tempdir().unwrap();
    let wizard = EXAMPLE.replacen("\"+79991234567\"", "\"\"", 1).replacen(
        "\"+79997654321\"",
        "\"+7999\"",
        1,
    );
    assert_ne!(wizard, EXAMPLE);
    write_config(dir.path(), &wizard);
    let output = jobbot(dir.path(), &["config", "check"]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("valid (revision "), "{text}");
    assert!(text.contains("1 agent accounts"), "{text}");
    assert!(
        text.contains("agent agent_python_1 has no phone (phone missing)"),
        "{text}"
    );
    assert!(
        text.contains("agent left out: output_channels[0].agents[1].phone: ")
            && !text.contains("+7999\""),
        "{text}"
    );
}

/// `jobbot login` for an agent goes through the agent's proxy from the configuration (the
/// account logs in from the address it works from); the proxy's password is never shown.
#[test]
fn login_goes_through_the_agents_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let with_proxy = EXAMPLE.replacen(
        r#"{"phone": "+79991234567", "session_name": "agent_python_1"}"#,
        r#"{"phone": "+79991234567", "session_name": "agent_python_1", "proxy": "socks5://user:hunter2@127.0.0.1:9"}"#,
        1,
    );
    assert_ne!(with_proxy, EXAMPLE);
    write_config(dir.path(), &with_proxy);
    let output = Command::new(env!("CARGO_BIN_EXE_jobbot"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["login", "agent_python_1", "--phone", "+79991234567"])
        .env("API_ID", "12345")
        .env("API_HASH", "0123456789abcdef0123456789abcdef")
        .env("RUST_LOG", "off")
        .env_remove("JOBBOT_SESSION_KEY")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        text.contains("Logging in through the agent's proxy socks5://user:***@127.0.0.1:9"),
        "{text}"
    );
    assert!(text.contains("Proxy server unreachable"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

/// `jobbot doctor --telegram sim://…` against `jobbot sim serve` with a broken setup: each fault
/// is one `FAIL` line with its fix, the exit status is 1, no proxy password is printed; and the
/// same setup made whole passes with status 0 (#14 item 8). The report printed here is the
/// README's example.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_each_fault_of_a_simulated_setup_with_its_fix() {
    use jobbot_core::ids::{ChatId, SessionName};
    use jobbot_sim::NewUser;
    use jobbot_sim_remote::RemoteConnector;
    use jobbot_sim_remote::rpc::AdminRpcClient;

    let dir = tempfile::tempdir().unwrap();
    let (_server, address) = common::sim_serve(&dir.path().join("world.json"), &[]);
    let admin = RemoteConnector::new(address).client().await.unwrap();
    let account = |session: &'static str, name: &'static str| {
        let admin = admin.clone();
        async move {
            admin
                .create_account(SessionName::parse(session).unwrap(), NewUser::named(name))
                .await
                .unwrap()
                .unwrap()
        }
    };
    let main = account("bot_session", "Main").await;
    let agent_ok = account("agent_anna", "Anna").await;
    let member_only = account("agent_boris", "Boris").await;
    let _outsider = account("agent_vera", "Vera").await;
    let _revoked = account("agent_gleb", "Gleb").await;
    admin
        .revoke(SessionName::parse("agent_gleb").unwrap())
        .await
        .unwrap()
        .unwrap();
    let source = admin
        .create_channel("Python jobs".into(), Some("python_jobs".into()), vec![])
        .await
        .unwrap()
        .unwrap();
    admin.add_member(source, main).await.unwrap().unwrap();
    let private_source = admin
        .create_channel("Closed jobs".into(), None, vec![])
        .await
        .unwrap()
        .unwrap();
    let output = admin
        .create_channel("Jobs digest".into(), None, vec![])
        .await
        .unwrap()
        .unwrap();
    admin.add_member(output, main).await.unwrap().unwrap();
    let forum = admin
        .create_group("Python CRM".into(), None, true, vec![main, agent_ok])
        .await
        .unwrap()
        .unwrap();
    admin.add_member(forum, member_only).await.unwrap().unwrap();
    let go_output = admin
        .create_channel("Go digest".into(), None, vec![main])
        .await
        .unwrap()
        .unwrap();
    let plain_group = admin
        .create_group("Go CRM".into(), None, false, vec![main, agent_ok])
        .await
        .unwrap()
        .unwrap();
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let channel = |id: &str, output: ChatId, sources: &[String], crm: ChatId, agents: &str| {
        format!(
            r#"{{"id": "{id}", "name": "{id}", "telegram_id": {output}, "input_sources": {sources:?},
                "crm_enabled": true, "crm_group_id": {crm}, "agents": [{agents}]}}"#
        )
    };
    let agent = |name: &str| format!(r#"{{"phone": "", "session_name": "{name}"}}"#);
    let python_agents = [
        agent("agent_anna"),
        agent("agent_boris"),
        agent("agent_vera"),
        agent("agent_gleb"),
        agent("agent_dima"),
        format!(
            r#"{{"phone": "", "session_name": "agent_anna2", "proxy": "socks5://user:hunter2@127.0.0.1:{closed_port}"}}"#
        ),
    ]
    .join(", ");
    let broken = format!(
        r#"{{"output_channels": [{}, {}]}}"#,
        channel(
            "python",
            output,
            &["@python_jobs".into(), private_source.to_string()],
            forum,
            &python_agents
        ),
        channel(
            "golang",
            go_output,
            &["@python_jobs".into()],
            plain_group,
            &agent("agent_anna")
        ),
    );
    write_config(dir.path(), &broken);
    let url = format!("sim://{address}");
    let run = || {
        let data_dir = dir.path().to_owned();
        let url = url.clone();
        std::thread::spawn(move || jobbot(&data_dir, &["doctor", "--telegram", &url]))
            .join()
            .unwrap()
    };
    let broken = run();
    let text = stdout(&broken);
    println!("{text}");
    assert_eq!(broken.status.code(), Some(1), "{text}");
    for expected in [
        "ok    session bot_session (main account): Main",
        "FAIL  session agent_gleb: Telegram refuses it: the session was revoked",
        "FAIL  session agent_dima: not logged in",
        "skip  session agent_anna2: not checked: its proxy does not answer",
        "FAIL  proxy of agent_anna2 (socks5://user:***@127.0.0.1:",
        "ok    source @python_jobs",
        &format!("FAIL  source {private_source}: the main account cannot see it (CHANNEL_PRIVATE)"),
        &format!("FAIL  output channel {output} of python: the main account may not post there"),
        &format!("ok    output channel {go_output} of golang: Go digest"),
        &format!("ok    CRM group {forum} of python: Python CRM"),
        &format!("ok    agent agent_anna in the CRM group {forum} of python: admin"),
        &format!(
            "FAIL  agent agent_boris in the CRM group {forum} of python: a member, but may not create topics"
        ),
        &format!("FAIL  agent agent_vera in the CRM group {forum} of python: not a member"),
        &format!("FAIL  CRM group {plain_group} of golang: not a forum (topics are off)"),
        &format!(
            "skip  agent agent_anna in the CRM group {plain_group} of golang: a member; topics are checked once the group is a forum"
        ),
        "FAIL  AI provider groq of python: no API key: GROQ_API_KEY is not set",
        "fix: set GROQ_API_KEY (the provider's API key) in the environment or DATA_DIR/.env",
        "fix: log it in: `jobbot login agent_dima --phone +…`",
        "fix: make the main account an admin of",
        "fix: turn on Topics in",
    ] {
        assert!(text.contains(expected), "{expected:?} missing:\n{text}");
    }
    assert!(!text.contains("hunter2"), "{text}");

    // Made whole: the main account may post, the member may create topics, the unreadable
    // source and the agents that cannot be repaired are left out, Go's CRM is off.
    admin.add_admin(output, main).await.unwrap().unwrap();
    admin.add_admin(forum, member_only).await.unwrap().unwrap();
    let whole = format!(
        r#"{{"output_channels": [{}]}}"#,
        channel(
            "python",
            output,
            &["@python_jobs".into()],
            forum,
            &[agent("agent_anna"), agent("agent_boris")].join(", ")
        ),
    );
    write_config(dir.path(), &whole);
    // The AI's key, read from DATA_DIR/.env as `jobbot run` reads it.
    std::fs::write(dir.path().join(".env"), "GROQ_API_KEY=gsk_not_a_real_key\n").unwrap();
    let healthy = run();
    let text = stdout(&healthy);
    assert_eq!(healthy.status.code(), Some(0), "{text}");
    assert!(text.contains("0 problems"), "{text}");
    assert!(
        text.contains("ok    AI provider groq of python: GROQ_API_KEY is set"),
        "{text}"
    );
    assert!(!text.contains("gsk_not_a_real_key"), "{text}");
}

fn jobbot_with(data_dir: &Path, args: &[&str], key: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_jobbot"));
    command
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("DATABASE_URL")
        .env_remove("JOBBOT_SESSION_KEY");
    if let Some(key) = key {
        command.env("JOBBOT_SESSION_KEY", key);
    }
    command.output().expect("the jobbot binary runs")
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "{}\n{}",
        stdout(output),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// With a database, the configuration and the sessions move between a data directory and
/// PostgreSQL: `config import|export` (validated, revision-checked), `session push|pull`
/// (sealed with JOBBOT_SESSION_KEY, which is required and never printed).
#[test]
fn configuration_and_sessions_move_between_a_data_directory_and_a_database() {
    use jobbot_core::ids::SessionName;
    use jobbot_telegram::{SessionKey, SessionStore};
    let base = std::env::var("JOBBOT_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema =
        common::TestSchema::create(&base, format!("jobbot_cli_move_{}", std::process::id()));
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}options[search_path]={}", schema.name);
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();

    write_config(first.path(), EXAMPLE);
    let imported = jobbot_with(
        first.path(),
        &["config", "import", "--database-url", &url],
        None,
    );
    assert_success(&imported);
    assert!(
        stdout(&imported).contains("revision"),
        "{}",
        stdout(&imported)
    );
    let exported = jobbot_with(
        second.path(),
        &["config", "export", "--database-url", &url],
        None,
    );
    assert_success(&exported);
    let written = std::fs::read_to_string(second.path().join("configs/channels_config.json"))
        .expect("export writes the configuration file");
    assert_eq!(
        jobbot_core::config::load(&written).unwrap().document,
        jobbot_core::config::load(EXAMPLE).unwrap().document
    );

    // A logged-in session file, plain.
    let session = SessionName::parse("agent_1").unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = SessionStore::open(&first.path().join("sessions"), &session, None).unwrap();
        store.mark_logged_in().await.unwrap();
        store.close().await.unwrap();
    });
    let key = "5a".repeat(32);

    let refused = jobbot_with(
        first.path(),
        &["session", "push", "--database-url", &url],
        None,
    );
    assert!(!refused.status.success());
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(error.contains("JOBBOT_SESSION_KEY"), "{error}");

    let pushed = jobbot_with(
        first.path(),
        &["session", "push", "--database-url", &url],
        Some(&key),
    );
    assert_success(&pushed);
    assert!(
        stdout(&pushed).contains("session agent_1: pushed"),
        "{}",
        stdout(&pushed)
    );
    let pulled = jobbot_with(
        second.path(),
        &["session", "pull", "--database-url", &url],
        Some(&key),
    );
    assert_success(&pulled);
    for output in [&pushed, &pulled] {
        assert!(!stdout(output).contains(&key));
        assert!(!String::from_utf8_lossy(&output.stderr).contains(&key));
    }
    // Pulled sealed: it opens with the key only.
    let sessions = second.path().join("sessions");
    assert!(matches!(
        SessionStore::open(&sessions, &session, None),
        Err(jobbot_telegram::SessionStoreError::KeyRequired { .. })
    ));
    let key = SessionKey::from_hex(&key).unwrap();
    let reopened = SessionStore::open(&sessions, &session, Some(key)).unwrap();
    assert!(reopened.is_logged_in());
}
