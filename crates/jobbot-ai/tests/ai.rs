//! The chat client against local OpenAI-compatible servers (real HTTP on loopback) whose scripts
//! answer, rate-limit, fail, hang and send malformed JSON; the demo's scripted model through the
//! same path; knowledge files from disk into the index.
//!
//! These run on real time (sockets do not work on a paused clock), with millisecond back-offs
//! and a short request timeout; no test asserts on how long anything took, only on what the
//! client decided (which provider answered, the failures in order, the waits it chose).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jobbot_ai::knowledge::{KnowledgeFileProblem, facts_for, sync_knowledge};
use jobbot_ai::{
    ChatRequest, ClientSettings, Failure, KeyLookup, LlmClient, LlmError, ProviderServer, Reply,
    RetryAfter, RetryPolicy, Script, ScriptedModel,
};
use jobbot_core::ai::{ApiKey, ApiKeySource, ChatMessage, LlmProviders, ModelChoice, Provider};
use jobbot_core::store::UnixMillis;
use jobbot_store::MemoryStore;

const REQUEST_TIMEOUT: Duration = Duration::from_millis(400);

fn settings() -> ClientSettings {
    ClientSettings {
        request_timeout: REQUEST_TIMEOUT,
        connect_timeout: Duration::from_secs(2),
        retry: RetryPolicy {
            attempts_per_model: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
            max_retry_after: Duration::from_secs(5),
        },
    }
}

fn keys(pairs: &[(&str, &str)]) -> KeyLookup {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    Arc::new(move |name| map.get(name).cloned())
}

fn answer(text: &str) -> Reply {
    Reply::Answer(text.to_owned())
}

fn status(status: u16) -> Reply {
    Reply::Error {
        status,
        code: "scripted".to_owned(),
        retry_after: None,
    }
}

fn request() -> ChatRequest {
    ChatRequest {
        messages: vec![
            ChatMessage::system("Ты отвечаешь кратко."),
            ChatMessage::user("Здравствуйте!"),
        ],
        temperature: 0.7,
        max_tokens: 256,
    }
}

/// Servers named `a`, `b`, … each with its script, as providers with `${KEY_A}`-style keys.
struct Providers {
    servers: Vec<ProviderServer>,
    providers: LlmProviders,
}

impl Providers {
    async fn start(scripts: &[(&str, Arc<Script>)]) -> Self {
        let mut providers = LlmProviders::presets();
        let mut servers = Vec::new();
        for (name, script) in scripts {
            let server = ProviderServer::on_loopback(script.clone()).await.unwrap();
            providers.insert(Provider {
                name: (*name).to_owned(),
                base_url: server.base_url(),
                api_key: Some(ApiKeySource::Env(format!("KEY_{}", name.to_uppercase()))),
                default_model: Some(format!("model-{name}")),
            });
            servers.push(server);
        }
        Self { servers, providers }
    }

    fn chain(names: &[&str]) -> Vec<ModelChoice> {
        names
            .iter()
            .map(|name| ModelChoice {
                provider: (*name).to_owned(),
                model: None,
            })
            .collect()
    }

    async fn stop(self) {
        for server in self.servers {
            server.stop().await;
        }
    }
}

fn kinds(failures: &[Failure]) -> Vec<(String, &'static str)> {
    failures
        .iter()
        .map(|failure| (failure.provider.clone(), failure.error.kind()))
        .collect()
}

#[tokio::test]
async fn an_answer_comes_back_with_its_usage_and_the_request_carries_model_messages_and_key() {
    let script = Script::new([answer("<think>план</think>Добрый день! Чем могу помочь?")]);
    let setup = Providers::start(&[("a", script.clone())]).await;
    let client = LlmClient::new(settings(), keys(&[("KEY_A", "sk-a")])).unwrap();
    let chain = [ModelChoice {
        provider: "a".into(),
        model: Some("custom-model".into()),
    }];
    let completion = client
        .complete(&setup.providers, &chain, &request())
        .await
        .unwrap();
    assert_eq!(completion.text, "Добрый день! Чем могу помочь?");
    assert_eq!(
        (completion.provider.as_str(), completion.model.as_str()),
        ("a", "custom-model")
    );
    assert!(completion.usage.prompt_tokens > 0 && completion.usage.completion_tokens > 0);
    assert!(completion.failures.is_empty());
    let received = script.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].model, "custom-model");
    assert_eq!(received[0].messages, request().messages);
    assert_eq!(received[0].bearer.as_deref(), Some("sk-a"));
    setup.stop().await;
}

#[tokio::test]
async fn a_429_is_retried_after_the_wait_the_provider_asked_for() {
    let script = Script::new([
        Reply::Error {
            status: 429,
            code: "rate_limit_exceeded".into(),
            retry_after: Some(RetryAfter::Millis(30)),
        },
        Reply::Error {
            status: 429,
            code: "rate_limit_exceeded".into(),
            retry_after: Some(RetryAfter::Seconds(1)),
        },
        answer("Готово"),
    ]);
    let setup = Providers::start(&[("a", script.clone())]).await;
    let client = LlmClient::new(settings(), keys(&[("KEY_A", "k")])).unwrap();
    let completion = client
        .complete(&setup.providers, &Providers::chain(&["a"]), &request())
        .await
        .unwrap();
    assert_eq!(completion.text, "Готово");
    assert_eq!(
        completion.waits,
        [Duration::from_millis(30), Duration::from_secs(1)],
        "the waits are the provider's, not the back-off"
    );
    assert_eq!(
        completion.failures[0].error,
        LlmError::RateLimited {
            retry_after: Some(Duration::from_millis(30))
        }
    );
    assert_eq!(script.received().len(), 3);
    setup.stop().await;
}

#[tokio::test]
async fn server_errors_are_retried_with_back_off_then_the_fallback_answers() {
    let first = Script::new([status(500), status(502), status(503)]);
    let second = Script::new([answer("Запасной ответ")]);
    let setup = Providers::start(&[("a", first.clone()), ("b", second.clone())]).await;
    let client = LlmClient::new(settings(), keys(&[("KEY_A", "ka"), ("KEY_B", "kb")])).unwrap();
    let completion = client
        .complete(&setup.providers, &Providers::chain(&["a", "b"]), &request())
        .await
        .unwrap();
    assert_eq!(
        (completion.provider.as_str(), completion.text.as_str()),
        ("b", "Запасной ответ")
    );
    assert_eq!(
        kinds(&completion.failures),
        [
            ("a".into(), "server"),
            ("a".into(), "server"),
            ("a".into(), "server")
        ]
    );
    assert_eq!(
        completion.waits.len(),
        2,
        "two waits between three attempts"
    );
    let policy = settings().retry;
    assert!(
        completion.waits[0] >= policy.base_delay / 2 && completion.waits[0] <= policy.base_delay
    );
    assert!(
        completion.waits[1] >= policy.base_delay && completion.waits[1] <= policy.base_delay * 2
    );
    assert_eq!(
        second.received()[0].bearer.as_deref(),
        Some("kb"),
        "each provider its own key"
    );
    setup.stop().await;
}

#[tokio::test]
async fn a_hanging_provider_times_out_and_the_next_one_answers() {
    let first = Script::new([Reply::Hang, Reply::Hang, Reply::Hang]);
    let second = Script::new([answer("Успел")]);
    let setup = Providers::start(&[("a", first.clone()), ("b", second)]).await;
    let client = LlmClient::new(settings(), keys(&[("KEY_A", "ka"), ("KEY_B", "kb")])).unwrap();
    let completion = client
        .complete(&setup.providers, &Providers::chain(&["a", "b"]), &request())
        .await
        .unwrap();
    assert_eq!(completion.text, "Успел");
    assert_eq!(completion.failures.len(), 3);
    assert!(completion.failures.iter().all(|failure| failure.error
        == LlmError::Timeout {
            after: REQUEST_TIMEOUT
        }));
    setup.stop().await;
}

#[tokio::test]
async fn malformed_or_empty_answers_move_on_without_retrying_the_same_model() {
    let first = Script::new([Reply::Raw("{\"choices\": [ {\"message\": ".into())]);
    let second = Script::new([Reply::Raw("{\"id\": \"x\"}".into())]);
    let third = Script::new([answer("   ")]);
    let fourth = Script::new([answer("Наконец")]);
    let setup = Providers::start(&[
        ("a", first.clone()),
        ("b", second.clone()),
        ("c", third.clone()),
        ("d", fourth),
    ])
    .await;
    let client = LlmClient::new(
        settings(),
        keys(&[
            ("KEY_A", "1"),
            ("KEY_B", "2"),
            ("KEY_C", "3"),
            ("KEY_D", "4"),
        ]),
    )
    .unwrap();
    let completion = client
        .complete(
            &setup.providers,
            &Providers::chain(&["a", "b", "c", "d"]),
            &request(),
        )
        .await
        .unwrap();
    assert_eq!(completion.text, "Наконец");
    assert_eq!(
        completion
            .failures
            .iter()
            .map(|failure| failure.error.clone())
            .collect::<Vec<_>>(),
        [
            LlmError::Malformed {
                detail: "cut short".into()
            },
            LlmError::Malformed {
                detail: "not the expected fields".into()
            },
            LlmError::Empty,
        ]
    );
    for script in [first, second, third] {
        assert_eq!(script.received().len(), 1);
    }
    setup.stop().await;
}

#[tokio::test]
async fn a_refusal_keeps_its_code_and_never_the_key_and_a_missing_key_skips_the_provider() {
    let first = Script::new([Reply::Error {
        status: 401,
        code: "invalid_api_key".into(),
        retry_after: None,
    }]);
    let unused = Script::new([answer("не должно дойти")]);
    let last = Script::new([answer("Ок")]);
    let setup = Providers::start(&[("a", first.clone()), ("b", unused.clone()), ("c", last)]).await;
    // `KEY_B` is not set.
    let client = LlmClient::new(
        settings(),
        keys(&[("KEY_A", "sk-SECRET-123"), ("KEY_C", "kc")]),
    )
    .unwrap();
    let completion = client
        .complete(
            &setup.providers,
            &Providers::chain(&["a", "b", "c"]),
            &request(),
        )
        .await
        .unwrap();
    assert_eq!(
        completion.failures[0].error,
        LlmError::Refused {
            status: 401,
            code: Some("invalid_api_key".into())
        }
    );
    assert_eq!(
        completion.failures[1].error,
        LlmError::MissingKey {
            variable: "KEY_B".into()
        }
    );
    assert!(unused.received().is_empty(), "no request without its key");
    assert_eq!(first.received().len(), 1, "a refusal is not retried");
    let shown = format!("{completion:?} {}", completion.failures[0]);
    assert!(!shown.contains("SECRET"), "{shown}");
    assert!(!format!("{client:?}").contains("SECRET"));
    setup.stop().await;
}

#[tokio::test]
async fn a_wait_longer_than_allowed_moves_on_at_once_and_all_failures_are_reported() {
    let first = Script::new([Reply::Error {
        status: 429,
        code: "rate_limit_exceeded".into(),
        retry_after: Some(RetryAfter::Seconds(3600)),
    }]);
    let second = Script::new([status(400)]);
    let setup = Providers::start(&[("a", first.clone()), ("b", second)]).await;
    let client = LlmClient::new(settings(), keys(&[("KEY_A", "1"), ("KEY_B", "2")])).unwrap();
    let chain = [
        ModelChoice {
            provider: "a".into(),
            model: None,
        },
        ModelChoice {
            provider: "nowhere".into(),
            model: Some("m".into()),
        },
        ModelChoice {
            provider: "b".into(),
            model: None,
        },
    ];
    let error = client
        .complete(&setup.providers, &chain, &request())
        .await
        .unwrap_err();
    assert_eq!(
        kinds(&error.failures),
        [
            ("a".into(), "rate_limited"),
            ("nowhere".into(), "unknown_provider"),
            ("b".into(), "refused")
        ]
    );
    assert_eq!(first.received().len(), 1, "an hour's wait is not waited");
    assert_eq!(
        error.to_string(),
        "no provider answered: a (model-a): rate limited (429), retry after 3600 s; \
         nowhere (m): the provider is not configured; b (model-b): refused with 400 (scripted)"
    );
    setup.stop().await;
}

#[tokio::test]
async fn a_provider_that_is_down_is_a_connection_failure() {
    // A port nothing listens on: bind one, note it, close it.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let mut providers = LlmProviders::presets();
    providers.insert(Provider {
        name: "down".into(),
        base_url: format!("http://{address}/v1"),
        api_key: Some(ApiKeySource::Literal(ApiKey::new("literal-key"))),
        default_model: Some("m".into()),
    });
    let client = LlmClient::new(settings(), keys(&[])).unwrap();
    let error = client
        .complete(&providers, &Providers::chain(&["down"]), &request())
        .await
        .unwrap_err();
    assert_eq!(error.failures.len(), 3, "connection failures are retried");
    assert!(error.failures.iter().all(|f| f.error == LlmError::Connect));
}

#[tokio::test]
async fn the_demos_scripted_model_answers_over_http_like_a_provider() {
    let server = ProviderServer::on_loopback(Arc::new(ScriptedModel))
        .await
        .unwrap();
    let mut providers = LlmProviders::presets();
    providers.insert(Provider {
        name: "scripted".into(),
        base_url: server.base_url(),
        api_key: None,
        default_model: Some(ScriptedModel::MODEL.into()),
    });
    let client = LlmClient::new(settings(), keys(&[])).unwrap();
    let state = jobbot_core::ai::AiConversation::new();
    let history = [jobbot_core::ai::HistoryEntry {
        author: jobbot_core::ai::Author::Contact,
        text: "Давайте созвонимся?".into(),
        at: UnixMillis(0),
    }];
    let analysis = client
        .complete(
            &providers,
            &Providers::chain(&["scripted"]),
            &ChatRequest {
                messages: jobbot_core::ai::prompt::analysis_messages(&state, &history),
                temperature: 0.0,
                max_tokens: 200,
            },
        )
        .await
        .unwrap();
    let parsed = jobbot_core::ai::parse_analysis(&analysis.text).unwrap();
    assert_eq!(parsed.phase, Some(jobbot_core::ai::Phase::CallReady));
    assert!(parsed.answer_question_first);
    let models: serde_json::Value = reqwest::get(format!("{}/models", server.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], ScriptedModel::MODEL);
    server.stop().await;
}

#[tokio::test]
async fn knowledge_files_are_indexed_once_reindexed_when_changed_and_forgotten_when_unlisted() {
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path();
    std::fs::create_dir(data.join("knowledge")).unwrap();
    std::fs::write(
        data.join("knowledge/prices.md"),
        "Стоимость: от 50 000 ₽ в месяц.\n\nСрок запуска: неделя.",
    )
    .unwrap();
    std::fs::write(data.join("knowledge/binary.bin"), [0xff, 0xfe, 0x00]).unwrap();
    let store = MemoryStore::new();
    let files = vec![
        "knowledge/prices.md".to_owned(),
        "knowledge/missing.md".to_owned(),
        "knowledge/binary.bin".to_owned(),
    ];
    let report = sync_knowledge(&store, data, "c1", &files, UnixMillis(1))
        .await
        .unwrap();
    assert_eq!(report.indexed, ["knowledge/prices.md"]);
    assert_eq!(
        report.problems,
        [
            KnowledgeFileProblem::Missing {
                path: "knowledge/missing.md".into()
            },
            KnowledgeFileProblem::NotText {
                path: "knowledge/binary.bin".into()
            },
        ]
    );
    let facts = facts_for(&store, "c1", "Какая у вас стоимость?")
        .await
        .unwrap();
    assert_eq!(facts.len(), 1);
    assert!(facts[0].contains("50 000"));

    let again = sync_knowledge(&store, data, "c1", &files, UnixMillis(2))
        .await
        .unwrap();
    assert_eq!(again.unchanged, ["knowledge/prices.md"]);
    assert!(again.indexed.is_empty());

    std::fs::write(data.join("knowledge/prices.md"), "Стоимость: от 70 000 ₽.").unwrap();
    let changed = sync_knowledge(&store, data, "c1", &files, UnixMillis(3))
        .await
        .unwrap();
    assert_eq!(changed.indexed, ["knowledge/prices.md"]);
    assert!(facts_for(&store, "c1", "стоимость").await.unwrap()[0].contains("70 000"));

    let unlisted = sync_knowledge(&store, data, "c1", &[], UnixMillis(4))
        .await
        .unwrap();
    assert_eq!(unlisted.removed, ["knowledge/prices.md"]);
    assert!(
        facts_for(&store, "c1", "стоимость")
            .await
            .unwrap()
            .is_empty()
    );
}

mod turns {
    use super::*;
    use jobbot_ai::{TurnInput, run_turn};
    use jobbot_core::ai::prompt::{DEFAULT_CALL_READY, DEFAULT_DISCOVERY};
    use jobbot_core::ai::{
        AiConversation, AiMode, AiPolicy, AiSettings, AnalysisError, Author, ContactDecision,
        HistoryEntry, Phase, ReplyDecision,
    };

    fn settings_for(provider: &str, analyse: bool) -> AiSettings {
        AiSettings {
            mode: AiMode::Auto,
            primary: ModelChoice {
                provider: provider.into(),
                model: None,
            },
            use_state_analyzer: analyse,
            ..AiSettings::default()
        }
    }

    fn history(text: &str) -> Vec<HistoryEntry> {
        vec![
            HistoryEntry {
                author: Author::Vacancy,
                text: "Ищем маркетолога".into(),
                at: UnixMillis(0),
            },
            HistoryEntry {
                author: Author::Contact,
                text: text.into(),
                at: UnixMillis(1),
            },
        ]
    }

    fn system_of(request: &jobbot_ai::ReceivedRequest) -> &str {
        &request.messages[0].content
    }

    #[tokio::test]
    async fn the_reply_is_written_for_the_phase_the_analysis_found_and_the_caller_applies_both() {
        let script = Script::new([
            answer("```json\n{\"phase\": \"CALL_READY\", \"confidence\": 0.9}\n```"),
            answer("Давайте созвонимся завтра в 11?"),
        ]);
        let setup = Providers::start(&[("a", script.clone())]).await;
        let client = LlmClient::new(settings(), keys(&[("KEY_A", "k")])).unwrap();
        let settings = settings_for("a", true);
        let policy = AiPolicy::from_settings(&settings);
        let mut state = AiConversation::new();
        let text = "Интересно, можно обсудить голосом?";
        let ContactDecision::Generate(turn) =
            state.on_contact_message(text, &policy, UnixMillis(1))
        else {
            panic!("a turn starts")
        };
        let history = history(text);
        let facts = ["Созвон длится 15 минут.".to_owned()];
        let outcome = run_turn(
            &client,
            TurnInput {
                settings: &settings,
                providers: &setup.providers,
                state: &state,
                turn: turn.number,
                history: &history,
                facts: &facts,
            },
        )
        .await;
        let received = script.received();
        assert_eq!(received.len(), 2);
        assert!(system_of(&received[1]).contains(DEFAULT_CALL_READY));
        assert!(
            received[1]
                .messages
                .iter()
                .any(|message| message.content.contains("Созвон длится 15 минут."))
        );
        assert!(outcome.usage().total_tokens > 0);
        // What the caller does with the outcome, on the stored state.
        let analysis = outcome.analysis.unwrap();
        state.on_analysis(turn.number, analysis.as_ref(), &policy);
        assert_eq!(state.phase, Phase::CallReady);
        let reply = outcome.reply.unwrap();
        let (decision, _) = state.on_reply(turn.number, &reply.text, &policy, UnixMillis(2));
        assert_eq!(
            decision,
            ReplyDecision::Deliver {
                text: "Давайте созвонимся завтра в 11?".into(),
                mode: AiMode::Auto
            }
        );
        state.on_ai_message_sent(&reply.text, UnixMillis(3));
        assert_eq!(state.phase, Phase::CallPending);
        setup.stop().await;
    }

    #[tokio::test]
    async fn a_bad_analysis_keeps_the_phase_and_a_channel_without_analysis_asks_once() {
        let script = Script::new([
            answer("Фаза, по-моему, вторая."),
            answer("Расскажите подробнее?"),
        ]);
        let setup = Providers::start(&[("a", script.clone())]).await;
        let client = LlmClient::new(settings(), keys(&[("KEY_A", "k")])).unwrap();
        let state = AiConversation::new();
        let history = history("Привет");
        let turn = |analyse: bool| {
            let settings = settings_for("a", analyse);
            let (client, providers, state, history) = (&client, &setup.providers, &state, &history);
            async move {
                run_turn(
                    client,
                    TurnInput {
                        settings: &settings,
                        providers,
                        state,
                        turn: 1,
                        history,
                        facts: &[],
                    },
                )
                .await
            }
        };
        let outcome = turn(true).await;
        assert_eq!(outcome.analysis, Some(Err(AnalysisError::NoObject)));
        assert!(system_of(&script.received()[1]).contains(DEFAULT_DISCOVERY));
        assert_eq!(outcome.reply.unwrap().text, "Расскажите подробнее?");

        script.push([answer("Одним запросом")]);
        let outcome = turn(false).await;
        assert!(outcome.analysis.is_none() && outcome.analysis_call.is_none());
        assert_eq!(outcome.reply.unwrap().text, "Одним запросом");
        assert_eq!(script.received().len(), 3);
        setup.stop().await;
    }
}
