//! The `jobbot` binary, run as a user runs it.

use std::path::Path;
use std::process::{Command, Output};

fn jobbot(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jobbot"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the jobbot binary runs")
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
        .replace("\"+79997654321\"", "\"+7999\"")
        .replace("-1001234567890", "12345")
        .replace("\"@design_jobs_ru\"", "\"design jobs\"");
    write_config(dir.path(), &broken);
    let output = jobbot(dir.path(), &["config", "check"]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    for expected in [
        "3 problem(s):",
        "output_channels[0].telegram_id: 12345 is not a channel or supergroup id in Bot API form",
        "output_channels[0].agents[1].phone: \"+7999\" is not a phone number in international format",
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

#[test]
fn run_refuses_to_start_without_a_logged_in_main_account() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_jobbot"))
        .arg("--data-dir")
        .arg(dir.path())
        .arg("run")
        .env("API_ID", "12345")
        .env("API_HASH", "0123456789abcdef0123456789abcdef")
        .env_remove("JOBBOT_SESSION_KEY")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the main account is not logged in"),
        "{stderr}"
    );
    assert!(
        stderr.contains("jobbot login bot_session --phone"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("0123456789abcdef"),
        "the API hash is never printed: {stderr}"
    );
}
