//! `jobbot doctor`'s checks against the simulator with every fault the report must name: a
//! missing session, a session Telegram refuses, a source the main account cannot read, one it is
//! not in, an output channel it may not post to, a CRM group that is not a forum, an agent that
//! is not a member, one that may not create topics, and a proxy nobody listens on. Real time
//! (the proxy probe is a real TCP connection), on the simulator's few-millisecond latency.

use std::sync::Arc;

use jobbot_core::config;
use jobbot_core::doctor::{DoctorPlan, DoctorReport, Problem, Skip, Subject, Verdict};
use jobbot_core::ids::{ChatId, SessionName};
use jobbot_core::telegram::{DeadReason, PeerKind, TelegramError};
use jobbot_engine::doctor::{ApiCredentials, ConnectorAccounts, DoctorSettings, run_doctor};
use jobbot_sim::{NewUser, SimConnector, SimParams, SimWorld};

fn session(name: &str) -> SessionName {
    SessionName::parse(name).unwrap()
}

/// A port on loopback that nothing listens on: bound, then released.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

struct Setup {
    world: SimWorld,
    config: config::Config,
    output_ok: ChatId,
    output_readonly: ChatId,
    forum: ChatId,
    plain_group: ChatId,
    private_source: ChatId,
    proxy: String,
}

/// Two channels. `good` has a readable source, an output the main account administers and a
/// forum CRM group with one working agent plus one of every agent fault; `bad` has a source the
/// main account cannot see, one it is not in, an output where it is only a member, and a CRM
/// group without topics.
fn broken_setup() -> Setup {
    let world = SimWorld::new(SimParams::default());
    let main = world.create_account(SessionName::MAIN, NewUser::named("Main"));
    let agent_ok = world.create_account("agent_ok", NewUser::named("Olga"));
    let member_only = world.create_account("agent_member", NewUser::named("Mark"));
    let outsider = world.create_account("agent_outside", NewUser::named("Otto"));
    let revoked = world.create_account("agent_revoked", NewUser::named("Rita"));
    world.revoke(&session("agent_revoked"));
    let _ = revoked;
    let proxied = world.create_account("agent_proxied", NewUser::named("Pavel"));

    let joined_source = world.create_channel("Python jobs", Some("python_jobs"), &[]);
    world.add_member(joined_source, main);
    let _not_joined = world.create_channel("Rust jobs", Some("rust_jobs"), &[]);
    let private_source = world.create_channel("Private jobs", None, &[]);
    let output_ok = world.create_channel("Jobs out", None, &[main]);
    let output_readonly = world.create_channel("Readonly out", None, &[]);
    world.add_member(output_readonly, main);
    let forum = world.create_group("CRM", None, true, &[main, agent_ok, proxied]);
    world.add_member(forum, member_only);
    let plain_group = world.create_group("CRM without topics", None, false, &[main]);
    let _ = outsider;

    let proxy = format!("socks5://user:hunter2@127.0.0.1:{}", closed_port());
    let text = serde_json::json!({
        "output_channels": [
            {
                "id": "good", "name": "Good", "telegram_id": output_ok.get(),
                "input_sources": ["@python_jobs"], "crm_enabled": true,
                "crm_group_id": forum.get(),
                "agents": [
                    {"phone": "", "session_name": "agent_ok"},
                    {"phone": "", "session_name": "agent_member"},
                    {"phone": "", "session_name": "agent_outside"},
                    {"phone": "", "session_name": "agent_revoked"},
                    {"phone": "", "session_name": "agent_missing"},
                    {"phone": "", "session_name": "agent_proxied", "proxy": proxy},
                ]
            },
            {
                "id": "bad", "name": "Bad", "telegram_id": output_readonly.get(),
                "input_sources": ["@rust_jobs", private_source.get().to_string()],
                "crm_enabled": true, "crm_group_id": plain_group.get(),
                "agents": [{"phone": "", "session_name": "agent_ok"}],
                "ai_config": {"llm_provider": "ollama"}
            }
        ]
    });
    let config = config::load(&text.to_string()).expect("valid").config;
    Setup {
        world,
        config,
        output_ok,
        output_readonly,
        forum,
        plain_group,
        private_source,
        proxy,
    }
}

async fn check(setup: &Setup, credentials: ApiCredentials) -> DoctorReport {
    let accounts = ConnectorAccounts::new(Arc::new(SimConnector::new(setup.world.clone())));
    // No variable is set: the default provider's key (GROQ_API_KEY) is missing.
    run_doctor(
        &DoctorPlan::of(&setup.config),
        &credentials,
        &|_| false,
        &accounts,
        DoctorSettings::default(),
    )
    .await
}

fn verdict<'a>(report: &'a DoctorReport, subject: &Subject) -> &'a Verdict {
    &report
        .finding(subject)
        .unwrap_or_else(|| panic!("no finding about {subject}:\n{report}"))
        .verdict
}

fn assert_problem(report: &DoctorReport, subject: Subject, expected: Problem) {
    assert_eq!(
        verdict(report, &subject),
        &Verdict::Failed { problem: expected },
        "{subject}:\n{report}"
    );
    let fix = report.finding(&subject).unwrap().fix.as_deref().unwrap();
    assert!(!fix.is_empty(), "{subject} has no fix");
}

fn assert_passed(report: &DoctorReport, subject: Subject) {
    assert!(
        matches!(verdict(report, &subject), Verdict::Passed { .. }),
        "{subject}:\n{report}"
    );
}

fn crm_agent(channel: &str, group: ChatId, name: &str) -> Subject {
    Subject::CrmAgent {
        channel: channel.into(),
        group,
        session: session(name),
    }
}

#[tokio::test]
async fn every_injected_fault_is_reported_with_its_fix() {
    let setup = broken_setup();
    let report = check(&setup, ApiCredentials::Missing(vec!["API_HASH".into()])).await;

    assert_problem(
        &report,
        Subject::ApiCredentials,
        Problem::ApiCredentialsMissing {
            missing: vec!["API_HASH".into()],
        },
    );
    let session_subject = |name: &str| Subject::Session {
        session: session(name),
        main: name == SessionName::MAIN,
    };
    assert_passed(&report, session_subject(SessionName::MAIN));
    assert_passed(&report, session_subject("agent_ok"));
    assert_problem(
        &report,
        session_subject("agent_missing"),
        Problem::SessionNotLoggedIn,
    );
    assert_problem(
        &report,
        session_subject("agent_revoked"),
        Problem::SessionDead {
            reason: DeadReason::Revoked,
        },
    );
    let proxy = Subject::proxy(&session("agent_proxied"), &setup.proxy);
    assert!(
        matches!(
            verdict(&report, &proxy),
            Verdict::Failed {
                problem: Problem::ProxyUnreachable { .. }
            }
        ),
        "{report}"
    );
    assert_eq!(
        verdict(&report, &session_subject("agent_proxied")),
        &Verdict::Skipped {
            because: Skip::ProxyUnreachable
        }
    );

    assert_passed(
        &report,
        Subject::Source {
            source: "@python_jobs".into(),
        },
    );
    assert_problem(
        &report,
        Subject::Source {
            source: "@rust_jobs".into(),
        },
        Problem::SourceNotJoined,
    );
    assert_problem(
        &report,
        Subject::Source {
            source: setup.private_source.to_string(),
        },
        Problem::SourceUnreadable {
            error: TelegramError::ChatForbidden {
                code: "CHANNEL_PRIVATE".into(),
            },
        },
    );

    assert_passed(
        &report,
        Subject::OutputChannel {
            channel: "good".into(),
            chat: setup.output_ok,
        },
    );
    assert_problem(
        &report,
        Subject::OutputChannel {
            channel: "bad".into(),
            chat: setup.output_readonly,
        },
        Problem::OutputCannotPost {
            kind: PeerKind::Channel,
        },
    );

    assert_passed(
        &report,
        Subject::CrmGroup {
            channel: "good".into(),
            group: setup.forum,
        },
    );
    assert_problem(
        &report,
        Subject::CrmGroup {
            channel: "bad".into(),
            group: setup.plain_group,
        },
        Problem::NotAForum {
            kind: PeerKind::Group,
        },
    );
    assert_passed(&report, crm_agent("good", setup.forum, "agent_ok"));
    assert_problem(
        &report,
        crm_agent("good", setup.forum, "agent_member"),
        Problem::AgentCannotCreateTopics,
    );
    assert_problem(
        &report,
        crm_agent("good", setup.forum, "agent_outside"),
        Problem::AgentNotMember,
    );
    for unavailable in ["agent_revoked", "agent_missing", "agent_proxied"] {
        assert_eq!(
            verdict(&report, &crm_agent("good", setup.forum, unavailable)),
            &Verdict::Skipped {
                because: Skip::AccountUnavailable {
                    session: session(unavailable)
                }
            },
            "{report}"
        );
    }
    // The AI's providers: the default one's key is missing; a local one needs none.
    assert_problem(
        &report,
        Subject::AiProvider {
            channel: "good".into(),
            provider: "groq".into(),
        },
        Problem::AiKeyMissing {
            variable: "GROQ_API_KEY".into(),
        },
    );
    assert_passed(
        &report,
        Subject::AiProvider {
            channel: "bad".into(),
            provider: "ollama".into(),
        },
    );
    assert!(!report.is_healthy());

    // The proxy's password is in neither the text nor the JSON.
    let text = report.to_string();
    let json = serde_json::to_string(&report).unwrap();
    assert!(
        !text.contains("hunter2") && !json.contains("hunter2"),
        "{text}"
    );
    // Everything opened for the checks is closed again.
    for name in [
        SessionName::MAIN,
        "agent_ok",
        "agent_member",
        "agent_outside",
    ] {
        assert_eq!(setup.world.open_connections(&session(name)), 0, "{name}");
    }
}

#[tokio::test]
async fn a_healthy_setup_passes_every_check() {
    let world = SimWorld::new(SimParams::default());
    let main = world.create_account(SessionName::MAIN, NewUser::named("Main"));
    let agent = world.create_account("agent_1", NewUser::named("Anna"));
    let source = world.create_channel("Python jobs", Some("python_jobs"), &[]);
    world.add_member(source, main);
    let output = world.create_channel("Jobs out", None, &[main]);
    let forum = world.create_group("CRM", None, true, &[main, agent]);
    let text = serde_json::json!({
        "output_channels": [{
            "id": "jobs", "name": "Jobs", "telegram_id": output.get(),
            "input_sources": ["@python_jobs"], "crm_enabled": true, "crm_group_id": forum.get(),
            "agents": [{"phone": "", "session_name": "agent_1"}]
        }]
    });
    let config = config::load(&text.to_string()).expect("valid").config;
    let accounts = ConnectorAccounts::new(Arc::new(SimConnector::new(world.clone())));
    let report = run_doctor(
        &DoctorPlan::of(&config),
        &ApiCredentials::NotNeeded,
        &|variable| variable == "GROQ_API_KEY",
        &accounts,
        DoctorSettings::default(),
    )
    .await;
    assert!(report.is_healthy(), "{report}");
    assert_eq!(report.findings.len(), 8, "{report}");
    assert_passed(
        &report,
        Subject::AiProvider {
            channel: "jobs".into(),
            provider: "groq".into(),
        },
    );
}
