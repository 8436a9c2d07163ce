//! The chat client: one request to a chain of (provider, model) choices. Each model gets a few
//! attempts when its failure is transient (429, 5xx, timeouts, connection failures), waiting as
//! the provider asks (`retry-after-ms`, `Retry-After`) or with jittered exponential back-off;
//! a refusal, a malformed answer or a wait longer than [`RetryPolicy::max_retry_after`] moves on
//! to the next choice at once. Keys are read when needed (`${NAME}` through the injected
//! lookup), sent only as a bearer header, and never logged.

use std::sync::Arc;
use std::time::Duration;

use jobbot_core::ai::{ApiKeySource, ChatMessage, LlmProviders, ModelChoice, Provider};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use crate::error::{ChainError, Failure, LlmError, safe_code};
use crate::wire::{ChatCompletionRequest, ChatCompletionResponse, ErrorBody, Usage};

/// Reads a variable (the environment, then `.env`): how `${NAME}` keys are resolved.
pub type KeyLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The process environment as a [`KeyLookup`].
pub fn process_environment() -> KeyLookup {
    Arc::new(|name| std::env::var(name).ok())
}

/// When to ask the same model again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts on one model before moving on (at least 1).
    pub attempts_per_model: u32,
    /// The first back-off; it doubles per attempt up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A provider asking to wait longer than this is skipped instead (the next provider may
    /// answer now; a conversation should not stall on one rate limit).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts_per_model: 3,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(20),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before asking the same model again after `attempt` (from 1) failed with
    /// `error`, or `None` to move on. `jitter` in `[0, 1)` spreads back-offs ("equal jitter":
    /// half the back-off fixed, half random).
    pub fn wait_after(&self, attempt: u32, error: &LlmError, jitter: f64) -> Option<Duration> {
        if attempt >= self.attempts_per_model || !error.is_transient() {
            return None;
        }
        if let LlmError::RateLimited {
            retry_after: Some(asked),
        } = error
        {
            return (*asked <= self.max_retry_after).then_some(*asked);
        }
        let exponent = attempt.saturating_sub(1).min(16);
        let backoff = self
            .base_delay
            .saturating_mul(1 << exponent)
            .min(self.max_delay);
        Some(backoff / 2 + backoff.mul_f64(jitter.clamp(0.0, 1.0) / 2.0))
    }
}

/// Timeouts and retries of the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    /// The whole of one attempt, answer included.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: RetryPolicy,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
        }
    }
}

/// What to ask.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    pub temperature: f32,
    pub max_tokens: u32,
}

/// An answer, with who gave it and what it took.
#[derive(Clone, PartialEq, Eq)]
pub struct Completion {
    pub text: String,
    pub provider: String,
    pub model: String,
    pub usage: Usage,
    /// The attempts that failed before this answer, in order.
    pub failures: Vec<Failure>,
    /// The waits decided between attempts, in order.
    pub waits: Vec<Duration>,
}

impl std::fmt::Debug for Completion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completion")
            .field("chars", &self.text.chars().count())
            .field("provider", &self.provider)
            .field("model", &self.model)
            .field("usage", &self.usage)
            .field("failures", &self.failures)
            .field("waits", &self.waits)
            .finish()
    }
}

/// A failure to build the HTTP client (TLS set-up).
#[derive(Debug, thiserror::Error)]
#[error("could not set up the HTTP client for LLM providers: {0}")]
pub struct ClientBuildError(#[source] reqwest::Error);

/// The OpenAI-compatible chat client. Cheap to clone; one connection pool.
#[derive(Clone)]
pub struct LlmClient {
    http: reqwest::Client,
    settings: ClientSettings,
    keys: KeyLookup,
}

impl std::fmt::Debug for LlmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmClient")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl LlmClient {
    pub fn new(settings: ClientSettings, keys: KeyLookup) -> Result<Self, ClientBuildError> {
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .user_agent(concat!("jobbot/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ClientBuildError)?;
        Ok(Self {
            http,
            settings,
            keys,
        })
    }

    pub fn settings(&self) -> &ClientSettings {
        &self.settings
    }

    /// Asks each choice of `chain` in turn until one answers.
    pub async fn complete(
        &self,
        providers: &LlmProviders,
        chain: &[ModelChoice],
        request: &ChatRequest,
    ) -> Result<Completion, ChainError> {
        let mut failures = Vec::new();
        let mut waits = Vec::new();
        for choice in chain {
            let model_name = choice.model.clone();
            let fail = |error: LlmError, model: Option<String>| Failure {
                provider: choice.provider.clone(),
                model: model.unwrap_or_else(|| "?".to_owned()),
                error,
            };
            let Some(provider) = providers.get(&choice.provider) else {
                failures.push(fail(LlmError::UnknownProvider, model_name));
                continue;
            };
            let Some(model) = model_name.or_else(|| provider.default_model.clone()) else {
                failures.push(fail(LlmError::UnknownProvider, None));
                continue;
            };
            let key = match self.key_of(provider) {
                Ok(key) => key,
                Err(error) => {
                    tracing::warn!(target: "ai", provider = %provider.name, %error, "provider skipped");
                    failures.push(fail(error, Some(model)));
                    continue;
                }
            };
            let body = ChatCompletionRequest {
                model: model.clone(),
                messages: request.messages.clone(),
                temperature: Some(request.temperature),
                max_tokens: Some(request.max_tokens),
                stream: false,
            };
            let mut attempt = 0;
            loop {
                attempt += 1;
                match self.attempt(provider, key.as_deref(), &body).await {
                    Ok((text, usage)) => {
                        tracing::debug!(
                            target: "ai", provider = %provider.name, %model, attempt,
                            prompt_tokens = usage.prompt_tokens,
                            completion_tokens = usage.completion_tokens,
                            "answered"
                        );
                        return Ok(Completion {
                            text,
                            provider: provider.name.clone(),
                            model,
                            usage,
                            failures,
                            waits,
                        });
                    }
                    Err(error) => {
                        tracing::warn!(
                            target: "ai", provider = %provider.name, %model, attempt, %error,
                            "attempt failed"
                        );
                        let wait =
                            self.settings
                                .retry
                                .wait_after(attempt, &error, rand::random::<f64>());
                        failures.push(fail(error, Some(model.clone())));
                        match wait {
                            Some(wait) => {
                                waits.push(wait);
                                tokio::time::sleep(wait).await;
                            }
                            None => break,
                        }
                    }
                }
            }
        }
        Err(ChainError { failures })
    }

    fn key_of(&self, provider: &Provider) -> Result<Option<String>, LlmError> {
        match &provider.api_key {
            None => Ok(None),
            Some(ApiKeySource::Literal(key)) => Ok(Some(key.expose().to_owned())),
            Some(ApiKeySource::Env(variable)) => (self.keys)(variable)
                .map(|key| key.trim().to_owned())
                .filter(|key| !key.is_empty())
                .map(Some)
                .ok_or_else(|| LlmError::MissingKey {
                    variable: variable.clone(),
                }),
        }
    }

    async fn attempt(
        &self,
        provider: &Provider,
        key: Option<&str>,
        body: &ChatCompletionRequest,
    ) -> Result<(String, Usage), LlmError> {
        let url = format!(
            "{}/chat/completions",
            provider.base_url.trim_end_matches('/')
        );
        let mut request = self
            .http
            .post(url)
            .timeout(self.settings.request_timeout)
            .json(body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let timeout = self.settings.request_timeout;
        let transport = |error: reqwest::Error| {
            if error.is_timeout() {
                LlmError::Timeout { after: timeout }
            } else {
                LlmError::Connect
            }
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.map_err(transport)?;
        if !status.is_success() {
            return Err(status_error(status, &headers, &bytes));
        }
        let answer: ChatCompletionResponse =
            serde_json::from_slice(&bytes).map_err(|error| LlmError::Malformed {
                // The category only: serde's message may quote the answer.
                detail: match error.classify() {
                    serde_json::error::Category::Syntax => "not JSON",
                    serde_json::error::Category::Eof => "cut short",
                    serde_json::error::Category::Data => "not the expected fields",
                    serde_json::error::Category::Io => "unreadable",
                }
                .to_owned(),
            })?;
        let text = answer
            .choices
            .into_iter()
            .next()
            .and_then(|choice| choice.message.content)
            .map(|content| without_reasoning(&content).trim().to_owned())
            .unwrap_or_default();
        if text.is_empty() {
            return Err(LlmError::Empty);
        }
        Ok((text, answer.usage.unwrap_or_default()))
    }
}

fn status_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> LlmError {
    match status.as_u16() {
        429 => LlmError::RateLimited {
            retry_after: retry_after(headers),
        },
        status @ (408 | 500..=599) => LlmError::Server { status },
        status => LlmError::Refused {
            status,
            code: serde_json::from_slice::<ErrorBody>(body)
                .ok()
                .and_then(|body| body.code())
                .and_then(|code| safe_code(&code)),
        },
    }
}

/// The wait a 429 asks for: `retry-after-ms` (OpenAI's, fractional milliseconds) first, then
/// `Retry-After` in seconds. The HTTP-date form is not read (no provider of the presets sends it);
/// the back-off applies then.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let number = |name: &str| {
        headers
            .get(name)?
            .to_str()
            .ok()?
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|value| value.is_finite() && *value >= 0.0)
    };
    number("retry-after-ms")
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .or_else(|| number("retry-after").map(Duration::from_secs_f64))
}

/// The answer without a reasoning model's `<think>…</think>` blocks (Qwen3, DeepSeek-R1 on
/// Ollama and LM Studio put their reasoning in the content).
pub fn without_reasoning(text: &str) -> String {
    let mut output = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("<think>") {
        output.push_str(&rest[..start]);
        match rest[start..].find("</think>") {
            Some(end) => rest = &rest[start + end + "</think>".len()..],
            // Unclosed: everything after it is reasoning cut short.
            None => return output,
        }
    }
    output.push_str(rest);
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_follow_retry_after_else_back_off_and_stop_where_they_should() {
        let policy = RetryPolicy {
            attempts_per_model: 3,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(3),
            max_retry_after: Duration::from_secs(30),
        };
        let server = LlmError::Server { status: 503 };
        assert_eq!(
            policy.wait_after(1, &server, 0.0),
            Some(Duration::from_millis(500))
        );
        let second = policy.wait_after(2, &server, 0.99).unwrap();
        assert!(
            second > Duration::from_millis(1900) && second < Duration::from_secs(2),
            "half of 2 s fixed, the other half jittered: {second:?}"
        );
        assert_eq!(policy.wait_after(3, &server, 0.5), None, "attempts spent");
        let asked = |seconds| LlmError::RateLimited {
            retry_after: Some(Duration::from_secs(seconds)),
        };
        assert_eq!(
            policy.wait_after(1, &asked(7), 0.9),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            policy.wait_after(1, &asked(31), 0.0),
            None,
            "too long: move on"
        );
        let refused = LlmError::Refused {
            status: 401,
            code: None,
        };
        assert_eq!(policy.wait_after(1, &refused, 0.0), None);
        let large = RetryPolicy {
            max_delay: Duration::MAX,
            attempts_per_model: u32::MAX,
            ..policy
        };
        assert!(large.wait_after(100, &server, 1.0).is_some(), "no overflow");
    }

    #[test]
    fn retry_after_headers() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, value.parse().unwrap());
            }
            retry_after(&map)
        };
        assert_eq!(
            headers(&[("retry-after-ms", "1500.5"), ("retry-after", "9")]),
            Some(Duration::from_secs_f64(1.5005))
        );
        assert_eq!(
            headers(&[("retry-after", "2")]),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]),
            None
        );
        assert_eq!(headers(&[("retry-after", "-1")]), None);
        assert_eq!(headers(&[]), None);
    }

    #[test]
    fn reasoning_blocks_are_dropped() {
        assert_eq!(
            without_reasoning("<think>hmm</think>Добрый день"),
            "Добрый день"
        );
        assert_eq!(
            without_reasoning("a<think>x</think>b<think>y</think>c"),
            "abc"
        );
        assert_eq!(without_reasoning("ответ<think>обрыв"), "ответ");
        assert_eq!(without_reasoning("без рассуждений"), "без рассуждений");
    }
}
