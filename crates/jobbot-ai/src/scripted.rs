//! Models that are scripts, served by [`crate::ProviderServer`]:
//! - [`ScriptedModel`], the demo's built-in provider: it reads jobbot's own prompts (the analysis
//!   step's instructions, the state line, the facts) and answers in character, deterministically;
//! - [`Script`], the tests' provider: a queue of replies (answers, 429s with `Retry-After`, 5xx,
//!   hangs, malformed JSON), then a fallback, recording every request it received.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use jobbot_core::ai::prompt::{ANALYZER_PROMPT, ANSWER_QUESTION_FIRST, RELEVANT_FACTS_HEADER};
use jobbot_core::ai::safety::mentions_call;
use jobbot_core::ai::{ChatMessage, ChatRole, Phase};
use tokio::sync::watch;

use crate::server::{ReceivedRequest, Reply, Responder};

/// What a [`Script`] answers once its queue is empty.
pub type ScriptFallback = Arc<dyn Fn(&ReceivedRequest) -> Reply + Send + Sync>;

/// A scripted provider for tests.
pub struct Script {
    queue: Mutex<VecDeque<Reply>>,
    fallback: ScriptFallback,
    received: Mutex<Vec<ReceivedRequest>>,
    /// The number of requests received, for tests that wait until one arrived.
    count: watch::Sender<usize>,
}

impl Script {
    /// Answers with `replies` in order, then with 500 `script_exhausted` (a test that asks more
    /// than it scripted fails visibly).
    pub fn new(replies: impl IntoIterator<Item = Reply>) -> Arc<Self> {
        Self::then(
            replies,
            Arc::new(|_| Reply::Error {
                status: 500,
                code: "script_exhausted".to_owned(),
                retry_after: None,
            }),
        )
    }

    /// Answers with `replies` in order, then with `fallback` for every request.
    pub fn then(replies: impl IntoIterator<Item = Reply>, fallback: ScriptFallback) -> Arc<Self> {
        Arc::new(Self {
            queue: Mutex::new(replies.into_iter().collect()),
            fallback,
            received: Mutex::new(Vec::new()),
            count: watch::Sender::new(0),
        })
    }

    /// Adds replies at the end of the queue.
    pub fn push(&self, replies: impl IntoIterator<Item = Reply>) {
        lock(&self.queue).extend(replies);
    }

    /// Every request received, in order.
    pub fn received(&self) -> Vec<ReceivedRequest> {
        lock(&self.received).clone()
    }

    /// Watches the number of requests received.
    pub fn request_count(&self) -> watch::Receiver<usize> {
        self.count.subscribe()
    }
}

#[async_trait]
impl Responder for Script {
    async fn respond(&self, request: ReceivedRequest) -> Reply {
        let reply = lock(&self.queue)
            .pop_front()
            .unwrap_or_else(|| (self.fallback)(&request));
        lock(&self.received).push(request);
        self.count.send_modify(|count| *count += 1);
        reply
    }

    fn models(&self) -> Vec<String> {
        vec!["scripted".to_owned()]
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The demo's model: no network, no weights, the same HTTP interface as a real provider. It
/// recognises jobbot's analysis step by its instructions and answers it with JSON; it answers a
/// reply step by the phase in the state line, in the tone of the default prompts, using the first
/// relevant fact when the prompt has one.
#[derive(Debug, Clone, Default)]
pub struct ScriptedModel;

impl ScriptedModel {
    pub const MODEL: &'static str = "jobbot-scripted";

    /// Answers one request (what the server serves; also callable without HTTP).
    pub fn answer(messages: &[ChatMessage]) -> String {
        if messages
            .first()
            .is_some_and(|first| first.content == ANALYZER_PROMPT)
        {
            Self::analyse(messages)
        } else {
            Self::reply(messages)
        }
    }

    fn analyse(messages: &[ChatMessage]) -> String {
        let input = messages
            .get(1)
            .map_or("", |message| message.content.as_str());
        let last = input
            .rsplit_once("Последнее сообщение клиента:")
            .map_or("", |(_, last)| last.trim())
            .to_lowercase();
        let contact_lines = input.matches("КЛИЕНТ:").count();
        let offered = input
            .lines()
            .filter(|line| line.starts_with("МЫ:"))
            .any(mentions_call);
        let declined = [
            "без созвона",
            "не готов",
            "не хочу",
            "не интересно",
            "неинтересно",
            "не надо",
        ]
        .iter()
        .any(|phrase| last.contains(phrase));
        let wants_call = [
            "созвон",
            "звонок",
            "позвон",
            "обсудим",
            "обсудить",
            "встрет",
        ]
        .iter()
        .any(|word| last.contains(word));
        let phase = if declined {
            Phase::CallDeclined
        } else if wants_call {
            Phase::CallReady
        } else if contact_lines >= 2 {
            Phase::Engagement
        } else {
            Phase::Discovery
        };
        serde_json::json!({
            "phase": phase.as_str(),
            "confidence": 0.8,
            "answer_question_first": last.contains('?'),
            "mention_founders": false,
            "call_offered_in_history": offered,
            "call_declined_in_history": declined,
            "reasoning": "scripted",
        })
        .to_string()
    }

    fn reply(messages: &[ChatMessage]) -> String {
        let system = messages
            .iter()
            .filter(|message| message.role == ChatRole::System)
            .map(|message| message.content.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        let phase = system
            .split("Состояние диалога: фаза ")
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .and_then(Phase::parse)
            .unwrap_or(Phase::Discovery);
        let mut text = String::new();
        if system.contains(ANSWER_QUESTION_FIRST) {
            text.push_str("Отвечу по существу: ");
        }
        text.push_str(match phase {
            Phase::Discovery => {
                "спасибо за ответ! Расскажите, пожалуйста, какую задачу хотите решить в первую очередь и в какие сроки?"
            }
            Phase::Engagement => {
                "понимаю. С похожими задачами я уже работал: начал бы с короткого разбора и плана на первый месяц. Что для вас сейчас важнее всего?"
            }
            Phase::CallReady => {
                "давайте обсудим детали на коротком созвоне, минут на 15–20. Когда вам удобно: завтра или в четверг?"
            }
            Phase::CallPending => {
                "хорошо, подстроюсь под ваше время. Напишите, когда удобно, и я пришлю приглашение."
            }
            Phase::CallDeclined => {
                "понимаю, тогда продолжим здесь. Уточните, пожалуйста, бюджет и сроки, и я подготовлю предложение письменно."
            }
        });
        if let Some(fact) = messages
            .iter()
            .filter(|message| message.role == ChatRole::System)
            .find_map(|message| message.content.strip_prefix(RELEVANT_FACTS_HEADER))
            .and_then(|facts| facts.lines().find_map(|line| line.strip_prefix("- ")))
        {
            let fact: String = fact.chars().take(160).collect();
            text.push_str(" Для справки: ");
            text.push_str(fact.trim());
        }
        capitalise(&text)
    }
}

fn capitalise(text: &str) -> String {
    let mut characters = text.chars();
    characters.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(characters).collect()
    })
}

#[async_trait]
impl Responder for ScriptedModel {
    async fn respond(&self, request: ReceivedRequest) -> Reply {
        Reply::Answer(Self::answer(&request.messages))
    }

    fn models(&self) -> Vec<String> {
        vec![Self::MODEL.to_owned()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobbot_core::ai::prompt::{analysis_messages, reply_messages, system_prompt};
    use jobbot_core::ai::{AiConversation, Author, HistoryEntry, Prompts, parse_analysis};
    use jobbot_core::store::UnixMillis;

    fn history(lines: &[(Author, &str)]) -> Vec<HistoryEntry> {
        lines
            .iter()
            .map(|(author, text)| HistoryEntry {
                author: *author,
                text: (*text).to_owned(),
                at: UnixMillis(0),
            })
            .collect()
    }

    #[test]
    fn the_analysis_answer_is_json_the_core_reads() {
        let state = AiConversation::new();
        let check = |lines: &[(Author, &str)], expected: Phase| {
            let answer = ScriptedModel::answer(&analysis_messages(&state, &history(lines)));
            assert_eq!(
                parse_analysis(&answer).unwrap().phase,
                Some(expected),
                "{lines:?}"
            );
        };
        check(&[(Author::Contact, "Здравствуйте")], Phase::Discovery);
        check(
            &[
                (Author::Contact, "Да"),
                (Author::Ai, "?"),
                (Author::Contact, "Нужен сайт"),
            ],
            Phase::Engagement,
        );
        check(
            &[(Author::Contact, "Можно созвониться завтра?")],
            Phase::CallReady,
        );
        check(
            &[(Author::Contact, "Я не готов к звонку")],
            Phase::CallDeclined,
        );
    }

    #[test]
    fn replies_follow_the_phase_and_use_a_fact() {
        let mut state = AiConversation::new();
        state.phase = Phase::CallReady;
        let lines = history(&[(Author::Contact, "Интересно")]);
        let messages = reply_messages(
            system_prompt(&Prompts::default(), &state, None),
            &lines,
            12,
            &["Созвон длится 15 минут.".to_owned()],
        );
        let answer = ScriptedModel::answer(&messages);
        assert!(answer.starts_with("Давайте обсудим"), "{answer}");
        assert!(
            answer.ends_with("Для справки: Созвон длится 15 минут."),
            "{answer}"
        );
        assert!(mentions_call(&answer));
    }
}
