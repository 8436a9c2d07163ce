use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

const SEED_NEW: &str = include_str!("testdata/seed_new_format.json");
const SEED_OLD: &str = include_str!("testdata/seed_old_format.json");
const EXAMPLE: &str = include_str!("../../../../configs/channels_config.example.json");

fn problem_lines(result: Result<Config, ConfigProblems>) -> Vec<String> {
    match result {
        Ok(_) => Vec::new(),
        Err(problems) => problems.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn the_bundled_example_is_valid() {
    let loaded = load(EXAMPLE).expect("the example loads");
    assert_eq!(loaded.config.channels.len(), 2);
    assert!(loaded.migrations.is_empty());
    let python = &loaded.config.channels[0];
    assert_eq!(python.agents.len(), 2);
    assert_eq!(python.crm_group_id.map(|id| id.get()), Some(-1002345678901));
    assert_eq!(python.sources.len(), 3);
}

#[test]
fn seed_new_format_loads_with_its_two_agents() {
    let (document, migrations) = parse_and_migrate(SEED_NEW).expect("the seed's new format parses");
    assert!(migrations.is_empty());
    let agents = &document.output_channels[0].agents;
    assert_eq!(agents.len(), 2);
    assert_eq!(agents[1].session_name, "agent_python_2");
    // The seed's example is a fragment: it has no notification channel and no CRM group. Those
    // are the only problems; the agents are fine.
    assert_eq!(
        problem_lines(validate(&document)),
        [
            "output_channels[0].telegram_id: is required: the id of the channel notifications go to (-100…)",
            "output_channels[0].crm_group_id: CRM is enabled, so the id of its forum supergroup (-100…) is needed",
        ]
    );
}

#[test]
fn seed_old_format_migrates_to_exactly_one_agent() {
    let (document, migrations) = parse_and_migrate(SEED_OLD).expect("the seed's old format parses");
    let channel = &document.output_channels[0];
    assert_eq!(channel.agents.len(), 1);
    assert_eq!(channel.agents[0].phone, "+79991234567");
    assert_eq!(channel.agents[0].session_name, "agent_python");
    assert_eq!(channel.agent_phone, None);
    assert_eq!(channel.agent_session_name, None);
    assert_eq!(migrations.len(), 1);
    assert!(
        migrations[0]
            .to_string()
            .starts_with("output_channels[0]: moved agent_phone/agent_session_name")
    );
    // No "at least one agent" problem: the migration kept the agent.
    assert!(
        !problem_lines(validate(&document))
            .iter()
            .any(|line| line.contains("agents"))
    );
    // The migrated document no longer has the old keys when written.
    let written = render(&document);
    assert!(!written.contains("agent_phone") && written.contains("\"agents\""));
}

fn channel_json(extra: Value) -> Value {
    let mut channel = json!({
        "id": "channel_1",
        "name": "Jobs",
        "telegram_id": -1001234567890i64,
        "input_sources": ["@python_jobs"],
        "crm_enabled": true,
        "crm_group_id": -1002345678901i64,
        "agents": [{"phone": "+79991234567", "session_name": "agent_1"}]
    });
    let Value::Object(fields) = extra else {
        panic!("extra must be an object")
    };
    for (key, value) in fields {
        channel[key] = value;
    }
    channel
}

fn document_with(channels: Vec<Value>) -> String {
    json!({ "output_channels": channels }).to_string()
}

#[test]
fn legacy_keys_next_to_the_same_agent_do_not_duplicate_it() {
    let text = document_with(vec![channel_json(json!({
        "agent_phone": "+7 999 123-45-67",
        "agent_session_name": "agent_1"
    }))]);
    let loaded = load(&text).expect("loads");
    assert_eq!(loaded.document.output_channels[0].agents.len(), 1);
    assert_eq!(loaded.document.output_channels[0].agent_phone, None);
    assert!(loaded.migrations[0].message.contains("repeat agents[0]"));
}

#[test]
fn legacy_keys_that_differ_from_the_agents_are_kept_not_dropped() {
    let text = document_with(vec![channel_json(json!({
        "agent_phone": "+79990000000",
        "agent_session_name": "agent_old"
    }))]);
    let loaded = load(&text).expect("loads");
    let channel = &loaded.document.output_channels[0];
    assert_eq!(channel.agents.len(), 1);
    assert_eq!(channel.agent_session_name.as_deref(), Some("agent_old"));
    assert!(render(&loaded.document).contains("\"agent_session_name\": \"agent_old\""));
    assert!(loaded.migrations[0].message.starts_with("kept"));
}

#[test]
fn round_trip_keeps_unknown_keys_and_ai_fields() {
    let mut original: Value = serde_json::from_str(EXAMPLE).unwrap();
    original["schema_note"] = json!({"kept": [1, 2.5, "три"], "nested": {"deep": null}});
    original["output_channels"][0]["custom_flag"] = json!(true);
    original["output_channels"][0]["filters"]["future_option"] = json!("x");
    original["output_channels"][0]["agents"][0]["label"] = json!("основной");
    original["output_channels"][0]["ai_config"]["temperature"] = json!(0.7);
    let text = serde_json::to_string_pretty(&original).unwrap();

    let first = load(&text).expect("loads").document;
    let written = render(&first);
    let second = load(&written).expect("what jobbot writes loads").document;
    assert_eq!(first, second);
    assert_eq!(render(&second), written, "rendering is stable");

    let reparsed: Value = serde_json::from_str(&written).unwrap();
    for pointer in [
        "/schema_note",
        "/llm_providers",
        "/output_channels/0/ai_config",
        "/output_channels/0/prompts",
        "/output_channels/1/ai_config",
        "/output_channels/0/custom_flag",
        "/output_channels/0/filters/future_option",
        "/output_channels/0/agents/0/label",
    ] {
        let before = original
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{pointer} in input"));
        let after = reparsed
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{pointer} lost"));
        // Byte-for-byte: the same serialisation, key order included.
        assert_eq!(
            serde_json::to_string(before).unwrap(),
            serde_json::to_string(after).unwrap(),
            "{pointer}"
        );
    }
    assert_eq!(reparsed, original, "nothing added, nothing lost");
}

#[test]
fn render_writes_non_ascii_as_is_with_two_space_indent() {
    let written = render(&load(EXAMPLE).unwrap().document);
    assert!(written.contains("Дизайн — вакансии"));
    assert!(written.starts_with("{\n  \"output_channels\": [\n    {\n      \"id\""));
    assert!(written.ends_with("}\n"));
}

/// Each rule with a failing case and its exact message.
#[test]
fn every_validation_rule_names_the_path_and_value() {
    let check = |channels: Vec<Value>, expected: &str| {
        let text = document_with(channels);
        // An agent's own problem leaves the agent out and the rest loads; either way the
        // problem is reported with its path.
        let lines: Vec<String> = match load(&text) {
            Ok(loaded) => loaded
                .config
                .skipped_agents
                .iter()
                .map(ToString::to_string)
                .collect(),
            Err(problems) => problems.0.iter().map(ToString::to_string).collect(),
        };
        assert!(
            lines.iter().any(|line| line == expected),
            "expected {expected:?}\n got {lines:#?}"
        );
    };
    let agent = |phone: &str, session: &str| json!({"phone": phone, "session_name": session});
    check(
        vec![channel_json(
            json!({"agents": [agent("+79991234567", "a1"), agent("+7999123", "a2")]}),
        )],
        // Masked: validation messages reach logs.
        "output_channels[0].agents[1].phone: \"+79***23\" is not a phone number in international format (+ and 8 to 15 digits)",
    );
    check(
        vec![channel_json(json!({"agents": [agent("+79991234567", "")]}))],
        "output_channels[0].agents[0].session_name: is required",
    );
    check(
        vec![channel_json(
            json!({"agents": [agent("+79991234567", "../etc/passwd")]}),
        )],
        "output_channels[0].agents[0].session_name: \"../etc/passwd\" is not a session name (1 to 64 letters, digits, '_' or '-'; no path separators)",
    );
    check(
        vec![channel_json(
            json!({"agents": [agent("+79991234567", "bot_session")]}),
        )],
        "output_channels[0].agents[0].session_name: \"bot_session\" is the main account's session; an agent needs its own",
    );
    check(
        vec![channel_json(
            json!({"agents": [agent("+79991234567", "a1"), agent("+79997654321", "a1")]}),
        )],
        "output_channels[0].agents[1].session_name: \"a1\" is listed twice in this channel (also agents[0])",
    );
    check(
        vec![
            channel_json(json!({"agents": [agent("+79991234567", "shared")]})),
            channel_json(json!({"id": "channel_2", "agents": [agent("+79997654321", "shared")]})),
        ],
        "output_channels[1].agents[0].phone: session \"shared\" has phone +79*******67 in output_channels[0].agents[0]; one session is one account, so its phone must be the same everywhere",
    );
    check(
        vec![
            channel_json(json!({"agents": [agent("+79991234567", "first")]})),
            channel_json(
                json!({"id": "channel_2", "agents": [agent("+7 999 123 45 67", "second")]}),
            ),
        ],
        "output_channels[1].agents[0].session_name: phone +79*******67 already has session \"first\" in output_channels[0].agents[0]; one account must have one session",
    );
    check(
        vec![channel_json(json!({})), channel_json(json!({}))],
        "output_channels[1].id: \"channel_1\" is also the id of output_channels[0]; channel ids must be unique",
    );
    check(
        vec![channel_json(json!({"telegram_id": 1234567890}))],
        "output_channels[0].telegram_id: 1234567890 is not a channel or supergroup id in Bot API form (-100 followed by the channel's id)",
    );
    check(
        vec![channel_json(json!({"crm_group_id": -12345}))],
        "output_channels[0].crm_group_id: -12345 is not a channel or supergroup id in Bot API form (-100 followed by the channel's id)",
    );
    check(
        vec![channel_json(json!({"crm_group_id": 0}))],
        "output_channels[0].crm_group_id: CRM is enabled, so the id of its forum supergroup (-100…) is needed",
    );
    check(
        vec![channel_json(json!({"agents": []}))],
        "output_channels[0].agents: CRM is enabled, so at least one agent (phone and session_name) is needed",
    );
    check(
        vec![channel_json(
            json!({"input_sources": ["@python_jobs", "python_jobs"]}),
        )],
        "output_channels[0].input_sources[1]: \"python_jobs\" is not a source (use @username, a t.me/… link, or a numeric id such as -1001234567890)",
    );
    check(
        vec![channel_json(json!({"name": " "}))],
        "output_channels[0].name: must not be empty",
    );
    check(
        vec![channel_json(json!({"id": ""}))],
        "output_channels[0].id: must not be empty",
    );
    check(
        vec![channel_json(
            json!({"filters": {"include_keywords": ["python", " "]}}),
        )],
        "output_channels[0].filters.include_keywords[1]: \" \": a keyword may not be only spaces",
    );
    check(
        vec![channel_json(
            json!({"filters": {"exclude_keywords": ["\"go"]}}),
        )],
        "output_channels[0].filters.exclude_keywords[0]: \"\\\"go\": a keyword has an unbalanced double quote; write a whole word as \"go\" (quotes on both sides)",
    );
    check(
        vec![channel_json(
            json!({"auto_response_enabled": true, "auto_response_template": ""}),
        )],
        "output_channels[0].auto_response_template: is empty, but auto_response_enabled is true",
    );
    // Lengths count UTF-16 units, as Telegram does: 65 emoji are 130 units.
    check(
        vec![channel_json(json!({"name": "😀".repeat(65)}))],
        "output_channels[0].name: is 130 UTF-16 units long; Telegram takes at most 128",
    );
    check(
        vec![channel_json(
            json!({"auto_response_template": "я😀".repeat(1_366)}),
        )],
        "output_channels[0].auto_response_template: is 4098 UTF-16 units long; Telegram takes at most 4096",
    );
    check(
        vec![channel_json(
            json!({"agents": [{"phone": "+79991234567", "session_name": "a1", "proxy": "http://user:secret@host:1080"}]}),
        )],
        "output_channels[0].agents[0].proxy: is not a socks5://[user:password@]host:port proxy address (no path, query or spaces; write @ and : in a password as %40 and %3A)",
    );
    check(
        vec![channel_json(
            json!({"agents": [{"phone": "+79991234567", "session_name": "a1", "pacing": {"messages_per_minute": 0}}]}),
        )],
        "output_channels[0].agents[0].pacing.messages_per_minute: must be at least 1",
    );
    check(
        vec![channel_json(json!({"agent_pacing": {"burst": 0}}))],
        "output_channels[0].agent_pacing.burst: must be at least 1",
    );
    check(
        vec![channel_json(
            json!({"human_delay": {"min_seconds": 20, "max_seconds": 5}}),
        )],
        "output_channels[0].human_delay.min_seconds: 20 is more than max_seconds (5)",
    );
    check(
        vec![channel_json(
            json!({"agents": [], "crm_enabled": false, "agent_phone": "+79991234567"}),
        )],
        "output_channels[0].agent_session_name: missing: the old-format agent_phone needs it to become an agent",
    );
    check(
        vec![channel_json(
            json!({"agents": [{"phone": 79991234567i64, "session_name": "a1"}]}),
        )],
        "output_channels[0].agents[0].phone: invalid type: integer `79991234567`, expected a string",
    );
}

#[test]
fn templates_and_invite_links_are_validated() {
    let check = |extra: Value, expected: &[&str]| {
        let text = document_with(vec![channel_json(extra)]);
        let lines = match load(&text) {
            Ok(_) => Vec::new(),
            Err(problems) => problems.0.iter().map(ToString::to_string).collect(),
        };
        assert_eq!(lines, expected);
    };
    check(
        json!({"auto_response_template": "Hi {first_name}, about {source_title}: {vacancy_link} ({channel_name}) {{ok}}"}),
        &[],
    );
    check(
        json!({"auto_response_template": "Salary {salary}?"}),
        &[
            "output_channels[0].auto_response_template: unknown placeholder {salary}; use {first_name}, {channel_name}, {source_title}, {vacancy_link}",
        ],
    );
    // A broken template is reported even while auto-responses are off.
    check(
        json!({"auto_response_enabled": false, "auto_response_template": "Hi {name"}),
        &[
            "output_channels[0].auto_response_template: a '{' is not closed; write {{ for a literal brace",
        ],
    );
    check(json!({"crm_invite_link": "https://t.me/+AbC_d-9"}), &[]);
    check(json!({"crm_invite_link": "t.me/joinchat/AbC"}), &[]);
    check(
        json!({"crm_invite_link": "@crm_group"}),
        &[
            "output_channels[0].crm_invite_link: \"@crm_group\" is not an invite link (t.me/+HASH or t.me/joinchat/HASH)",
        ],
    );
    let loaded = load(&document_with(vec![channel_json(
        json!({"crm_invite_link": "https://t.me/+AbC"}),
    )]))
    .unwrap();
    assert_eq!(
        loaded.config.channels[0].crm_invite_hash.as_deref(),
        Some("AbC")
    );
    assert!(render(&loaded.document).contains("\"crm_invite_link\": \"https://t.me/+AbC\""));
    // Absent, it is not written (files stay readable by the original system).
    let plain = load(&document_with(vec![channel_json(json!({}))])).unwrap();
    assert!(!render(&plain.document).contains("crm_invite_link"));
}

#[test]
fn proxy_problems_never_echo_the_password() {
    let text = document_with(vec![channel_json(json!({
        "agents": [{"phone": "+79991234567", "session_name": "a1", "proxy": "socks4://user:hunter2@host:1080"}]
    }))]);
    let skipped = |text: &str| ConfigProblems(load(text).unwrap().config.skipped_agents);
    let problems = skipped(&text).to_string();
    assert!(
        problems.contains("proxy") && !problems.contains("hunter2"),
        "{problems}"
    );
    let valid = document_with(vec![channel_json(json!({
        "agents": [{"phone": "+79991234567", "session_name": "a1", "proxy": "socks5://user:hunter2@127.0.0.1:1080"}]
    }))]);
    assert!(load(&valid).is_ok());
    // Characters a URL parser reads as a query or fragment are refused, not quoted back.
    for sneaky in [
        "socks5://user:hunter2@host?x:1080",
        "socks5://user:hunter2@host#x:1080",
        "socks5://user:hun ter2@host:1080",
    ] {
        let text = document_with(vec![channel_json(json!({
            "agents": [{"phone": "+79991234567", "session_name": "a1", "proxy": sneaky}]
        }))]);
        let problems = skipped(&text);
        assert_eq!(problems.0[0].kind, ProblemKind::NotProxy, "{sneaky}");
        assert!(!problems.to_string().contains("hunter"), "{problems}");
    }
}

/// The original's channel wizard saves agents with `"phone": ""`: such an agent is used (its
/// session is what matters) with no phone; an agent whose own fields are wrong is left out with
/// its problem, and the rest of the file loads.
#[test]
fn wizard_agents_without_a_phone_load_and_one_bad_agent_stops_nothing() {
    let text = document_with(vec![channel_json(json!({
        "crm_enabled": true,
        "agents": [
            {"phone": "", "session_name": "agent_wizard"},
            {"phone": "+79991234567", "session_name": "bad/name"},
            {"phone": "+79997654321", "session_name": "agent_ok"}
        ]
    }))]);
    let loaded = load(&text).expect("one bad agent does not stop the file");
    let agents = &loaded.config.channels[0].agents;
    let sessions: Vec<&str> = agents.iter().map(|a| a.session_name.as_str()).collect();
    assert_eq!(sessions, ["agent_wizard", "agent_ok"]);
    assert_eq!(agents[0].phone, None, "phone missing");
    assert_eq!(agents[1].phone.as_ref().unwrap().as_str(), "+79997654321");
    let skipped: Vec<(String, ProblemKind)> = loaded
        .config
        .skipped_agents
        .iter()
        .map(|problem| (problem.path.clone(), problem.kind.clone()))
        .collect();
    assert_eq!(
        skipped,
        [(
            "output_channels[0].agents[1].session_name".to_owned(),
            ProblemKind::NotSessionName
        )]
    );
}

#[test]
fn every_problem_says_what_is_wrong_as_data() {
    let text = document_with(vec![channel_json(json!({
        "crm_enabled": true,
        "agents": [{"phone": "123", "session_name": "bot_session"}],
        "human_delay": {"min_seconds": 10, "max_seconds": 5}
    }))]);
    let kinds: Vec<(String, ProblemKind)> = load(&text)
        .unwrap_err()
        .0
        .into_iter()
        .map(|problem| (problem.path, problem.kind))
        .collect();
    for expected in [
        ("output_channels[0].agents[0].phone", ProblemKind::NotPhone),
        (
            "output_channels[0].agents[0].session_name",
            ProblemKind::MainSession,
        ),
        (
            "output_channels[0].human_delay.min_seconds",
            ProblemKind::DelayOrder { max: 5 },
        ),
    ] {
        assert!(
            kinds.contains(&(expected.0.to_owned(), expected.1.clone())),
            "{expected:?} not in {kinds:?}"
        );
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = document_with(vec![
        channel_json(
            json!({"telegram_id": 5, "agents": [{"phone": "123", "session_name": "a/b"}]}),
        ),
        json!({"id": "channel_2", "name": "Two", "telegram_id": "not a number"}),
    ]);
    let problems = load(&text).unwrap_err().0;
    // The type error in the second channel does not hide the first channel's problems.
    assert_eq!(
        problems.len(),
        1,
        "parse problems come first: {problems:#?}"
    );
    assert_eq!(problems[0].path, "output_channels[1].telegram_id");

    let text = document_with(vec![channel_json(
        json!({"telegram_id": 5, "agents": [{"phone": "123", "session_name": "a/b"}]}),
    )]);
    let paths: Vec<String> = load(&text)
        .unwrap_err()
        .0
        .into_iter()
        .map(|p| p.path)
        .collect();
    assert_eq!(
        paths,
        [
            "output_channels[0].telegram_id",
            "output_channels[0].agents[0].phone",
            "output_channels[0].agents[0].session_name"
        ]
    );
}

#[test]
fn malformed_json_is_one_clear_problem() {
    let problems = load("{\"output_channels\": [ {\"id\": \"x\", }\n]}").unwrap_err();
    let text = problems.to_string();
    assert!(
        text.starts_with("not valid JSON: ") && text.contains("line 1"),
        "{text}"
    );
    assert!(load("[]").unwrap_err().to_string().contains("JSON object"));
    assert_eq!(
        load("{\"output_channels\": {}}").unwrap_err().to_string(),
        "output_channels: must be a list of channels, found an object"
    );
}

#[test]
fn a_missing_output_channels_key_is_an_empty_configuration() {
    let loaded = load("{}").unwrap();
    assert!(loaded.config.channels.is_empty());
    assert_eq!(
        render(&loaded.document),
        "{\n  \"output_channels\": []\n}\n"
    );
}

#[test]
fn agents_shared_by_channels_take_the_most_conservative_pacing() {
    let text = document_with(vec![
        channel_json(json!({"agent_pacing": {"messages_per_minute": 10}})),
        channel_json(
            json!({"id": "channel_2", "agent_pacing": {"messages_per_minute": 30, "burst": 1}}),
        ),
    ]);
    let config = load(&text).unwrap().config;
    let accounts = config.agent_accounts();
    assert_eq!(accounts.len(), 1);
    let pacing = accounts.values().next().unwrap().pacing;
    assert_eq!((pacing.messages_per_minute, pacing.burst), (10, 1));
}

#[test]
fn revisions_are_content_hashes() {
    assert_eq!(Revision::of(b"abc"), Revision::of(b"abc"));
    assert_ne!(Revision::of(b"abc"), Revision::of(b"abd"));
    assert_eq!(Revision::of(b"abc").as_str().len(), 16);
    assert_eq!(
        Revision::parse(Revision::of(b"abc").as_str()),
        Some(Revision::of(b"abc"))
    );
    assert_eq!(Revision::parse("xyz"), None);
}

// ---- property test: arbitrary valid configurations round-trip ----

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1.0e9f64..1.0e9).prop_map(|f| json!(f)),
        "\\PC{0,12}".prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Unknown keys that cannot collide with the model's own.
fn extra_keys() -> impl Strategy<Value = serde_json::Map<String, Value>> {
    prop::collection::btree_map("x_[a-z]{1,8}", json_value(), 0..3)
        .prop_map(|map| map.into_iter().collect())
}

/// A valid `ai_config` with some of its known keys, in the original's spelling, and unknown ones
/// of any shape (the original's Weaviate fields among them), or `null`.
fn ai_config_value() -> impl Strategy<Value = Value> {
    (
        prop::option::of(prop::sample::select(vec!["manual", "suggest", "auto"])),
        prop::option::of(prop::sample::select(vec![
            "groq", "ollama", "openai", "gemini",
        ])),
        prop::option::of("[a-z0-9.:/-]{1,20}"),
        prop::option::of((0u32..10, 0u32..30)),
        prop::option::of(1u32..50),
        prop::option::of(prop::collection::vec("[a-z]{1,8}/[a-z]{1,8}\\.md", 0..3)),
        extra_keys(),
        any::<bool>(),
    )
        .prop_map(
            |(mode, provider, model, delay, window, files, extra, null)| {
                if null {
                    return Value::Null;
                }
                let mut object = extra;
                let mut put = |key: &str, value: Option<Value>| {
                    if let Some(value) = value {
                        object.insert(key.to_owned(), value);
                    }
                };
                put("mode", mode.map(|m| json!(m)));
                put("llm_provider", provider.map(|p| json!(p)));
                put("llm_model", model.map(|m| json!(m)));
                put(
                    "reply_delay_seconds",
                    delay.map(|(min, extra)| json!([min, min + extra])),
                );
                put("context_window_messages", window.map(|w| json!(w)));
                put("knowledge_files", files.map(|f| json!(f)));
                put("weaviate_port", Some(json!(8080)));
                Value::Object(object)
            },
        )
}

/// Texts for some of the six prompts, and unknown keys of any shape.
fn prompts_value() -> impl Strategy<Value = Value> {
    (
        prop::collection::btree_map(
            prop::sample::select(vec![
                "base_context",
                "discovery",
                "engagement",
                "call_ready",
                "call_pending",
                "call_declined",
            ]),
            "\\PC{0,20}",
            0..6,
        ),
        extra_keys(),
    )
        .prop_map(|(texts, mut object)| {
            for (key, text) in texts {
                object.insert(key.to_owned(), json!(text));
            }
            Value::Object(object)
        })
}

/// Providers over the presets (a changed preset, a new one) with unknown keys.
fn providers_value() -> impl Strategy<Value = Value> {
    (
        prop::option::of("\\$\\{[A-Z_]{1,10}\\}"),
        prop::option::of("http://127\\.0\\.0\\.1:[1-9][0-9]{3}/v1"),
        extra_keys(),
    )
        .prop_map(|(groq_key, local_url, extra)| {
            // Unknown providers, each with its unknown keys.
            let mut object: serde_json::Map<String, Value> = extra
                .into_iter()
                .map(|(name, value)| {
                    let provider = json!({
                        "base_url": "http://localhost:1/v1", "default_model": "x", "x_kept": value
                    });
                    (name, provider)
                })
                .collect();
            if let Some(key) = groq_key {
                object.insert("groq".into(), json!({"api_key": key}));
            }
            if let Some(url) = local_url {
                object.insert(
                    "local".into(),
                    json!({"base_url": url, "api_key": "", "default_model": "m"}),
                );
            }
            Value::Object(object)
        })
}

fn agent_document(index: usize) -> impl Strategy<Value = AgentDocument> {
    (
        prop::option::of(Just("socks5://127.0.0.1:1080".to_owned())),
        prop::option::of(
            (1u32..120, 1u32..10).prop_map(|(per_minute, burst)| Pacing {
                messages_per_minute: per_minute,
                burst,
                ..Pacing::default()
            }),
        ),
        extra_keys(),
    )
        .prop_map(move |(proxy, pacing, extra)| AgentDocument {
            phone: format!("+7999{:07}", 1_000_000 + index),
            session_name: format!("agent_{index}"),
            proxy,
            pacing,
            extra,
        })
}

fn channel_document(index: usize) -> impl Strategy<Value = ChannelDocument> {
    let sources = prop::collection::vec(
        prop_oneof![
            "[a-z][a-z0-9_]{4,20}".prop_map(|name| format!("@{name}")),
            "[a-z][a-z0-9_]{4,20}".prop_map(|name| format!("https://t.me/{name}")),
            (1i64..997_852_516_352)
                .prop_map(|bare| crate::ids::ChatId::channel(bare).unwrap().to_string()),
        ],
        0..4,
    );
    let keywords = prop::collection::vec("[a-zа-я]{1,10}( [a-zа-я]{1,10})?", 0..5);
    (
        (
            sources,
            keywords.clone(),
            keywords,
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        ),
        (
            0usize..3,
            prop::option::of(ai_config_value()),
            prop::option::of(prompts_value()),
            extra_keys(),
            "\\PC{1,30}",
        ),
    )
        .prop_flat_map(
            move |(
                (sources, include, exclude, require_all, enabled, crm),
                (agent_count, ai, prompts, extra, name),
            )| {
                let agents: Vec<_> = (0..agent_count.max(usize::from(crm)))
                    .map(|a| agent_document(index * 10 + a))
                    .collect();
                (
                    agents,
                    Just((
                        sources,
                        include,
                        exclude,
                        require_all,
                        enabled,
                        crm,
                        ai,
                        prompts,
                        extra,
                        name,
                    )),
                )
            },
        )
        .prop_map(
            move |(
                agents,
                (sources, include, exclude, require_all, enabled, crm, ai, prompts, extra, name),
            )| ChannelDocument {
                id: format!("channel_{index}"),
                name: if name.trim().is_empty() {
                    "x".into()
                } else {
                    name
                },
                telegram_id: -1_001_000_000_000 - index as i64,
                enabled,
                input_sources: sources,
                filters: FiltersDocument {
                    include_keywords: include,
                    exclude_keywords: exclude,
                    require_all_includes: require_all,
                    extra: Default::default(),
                },
                crm_enabled: crm,
                crm_group_id: if crm {
                    -1_002_000_000_000 - index as i64
                } else {
                    0
                },
                agents,
                auto_response_enabled: crm,
                auto_response_template: DEFAULT_AUTO_RESPONSE_TEMPLATE.into(),
                ai_conversation_enabled: true,
                ai_config: ai,
                prompts,
                agent_phone: None,
                agent_session_name: None,
                instant_response: false,
                human_delay: HumanDelay::default(),
                agent_pacing: Pacing::default(),
                crm_invite_link: None,
                extra,
            },
        )
}

fn config_document() -> impl Strategy<Value = ConfigDocument> {
    (0usize..4)
        .prop_flat_map(|count| (0..count).map(channel_document).collect::<Vec<_>>())
        .prop_flat_map(|channels| {
            (
                Just(channels),
                prop::option::of(providers_value()),
                extra_keys(),
            )
        })
        .prop_map(|(output_channels, llm_providers, extra)| ConfigDocument {
            output_channels,
            llm_providers,
            extra,
        })
}

proptest! {
    #[test]
    fn arbitrary_valid_configs_round_trip(document in config_document()) {
        let text = render(&document);
        let loaded = load(&text).map_err(|problems| TestCaseError::fail(format!("{problems}\n{text}")))?;
        prop_assert_eq!(&loaded.document, &document);
        prop_assert_eq!(render(&loaded.document), text);
        prop_assert_eq!(loaded.config.channels.len(), document.output_channels.len());
    }
}

#[test]
fn the_examples_ai_fields_are_typed_and_kept_as_written() {
    use crate::ai::{AiMode, ApiKeySource};
    let loaded = load(EXAMPLE).expect("the example loads");
    let first = &loaded.config.channels[0].ai;
    assert_eq!(first.mode, AiMode::Auto);
    assert_eq!(
        first.primary.model.as_deref(),
        Some("llama-3.3-70b-versatile")
    );
    assert!(first.prompts.base_context.contains("Лови Лидов"));
    // `ai_config: {}` takes jobbot's defaults: suggestions, not automatic replies.
    assert_eq!(loaded.config.channels[1].ai.mode, AiMode::Suggest);
    let openai = loaded.config.llm_providers.get("openai").unwrap();
    assert_eq!(
        openai.api_key,
        Some(ApiKeySource::Env("OPENAI_API_KEY".into()))
    );
    // The presets the file does not list are there too.
    assert!(loaded.config.llm_providers.get("openrouter").is_some());
    assert_eq!(render(&loaded.document), {
        let value: Value = serde_json::from_str(EXAMPLE).unwrap();
        let mut text = serde_json::to_string_pretty(&value).unwrap();
        text.push('\n');
        text
    });
}

#[test]
fn ai_problems_stop_the_load_with_their_paths() {
    let text = document_with(vec![channel_json(json!({
        "ai_config": {"mode": "always", "llm_provider": "nobody"},
        "prompts": {"discovery": ["not", "a", "text"]}
    }))]);
    let lines = problem_lines(load(&text).map(|loaded| loaded.config));
    assert_eq!(
        lines,
        [
            "output_channels[0].prompts.discovery: must be a text, found a list",
            "output_channels[0].ai_config.mode: \"always\" is not a mode: use manual, suggest or auto",
            "output_channels[0].ai_config.llm_provider: \"nobody\" is not a provider (known: gemini, groq, lm_studio, ollama, openai, openrouter, together); add it under llm_providers",
        ]
    );
}
