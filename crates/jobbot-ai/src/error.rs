//! Typed failures of the chat client. None holds a prompt, an answer or a key: a provider's
//! refusal keeps only its short error code (`invalid_api_key`, `model_not_found`), never its
//! message, which may quote the request.

use std::fmt;
use std::time::Duration;

/// Why one attempt on one provider's model failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    /// The channel names a provider the configuration does not have.
    #[error("the provider is not configured")]
    UnknownProvider,
    /// The provider's key is `${VARIABLE}` and the variable is not set.
    #[error("no API key: {variable} is not set")]
    MissingKey { variable: String },
    #[error("no answer within {} s", .after.as_secs_f32())]
    Timeout { after: Duration },
    #[error("could not reach the provider")]
    Connect,
    /// 429, with the wait the provider asked for.
    #[error("rate limited (429){}", retry_after_note(.retry_after))]
    RateLimited { retry_after: Option<Duration> },
    /// 5xx (and 408).
    #[error("server error {status}")]
    Server { status: u16 },
    /// Any other non-success status: the request itself is refused (bad key, unknown model,
    /// context too long).
    #[error("refused with {status}{}", code_note(.code))]
    Refused { status: u16, code: Option<String> },
    #[error("the answer is not a chat completion ({detail})")]
    Malformed { detail: String },
    #[error("the answer is empty")]
    Empty,
}

fn retry_after_note(retry_after: &Option<Duration>) -> String {
    retry_after.map_or_else(String::new, |wait| {
        format!(", retry after {} s", wait.as_secs_f32())
    })
}

fn code_note(code: &Option<String>) -> String {
    code.as_ref()
        .map_or_else(String::new, |code| format!(" ({code})"))
}

impl LlmError {
    /// Whether the same model may answer if asked again (after a wait).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Timeout { .. } | Self::Connect | Self::RateLimited { .. } | Self::Server { .. }
        )
    }

    /// A short stable name, for metrics labels and statistics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnknownProvider => "unknown_provider",
            Self::MissingKey { .. } => "missing_key",
            Self::Timeout { .. } => "timeout",
            Self::Connect => "connect",
            Self::RateLimited { .. } => "rate_limited",
            Self::Server { .. } => "server",
            Self::Refused { .. } => "refused",
            Self::Malformed { .. } => "malformed",
            Self::Empty => "empty",
        }
    }
}

/// One failed attempt, with the provider and model it was on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub provider: String,
    pub model: String,
    pub error: LlmError,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.provider, self.model, self.error)
    }
}

/// Every provider of the chain failed. `failures` lists every attempt, in order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ChainError {
    pub failures: Vec<Failure>,
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no provider answered")?;
        for (index, failure) in self.failures.iter().enumerate() {
            f.write_str(if index == 0 { ": " } else { "; " })?;
            write!(f, "{failure}")?;
        }
        Ok(())
    }
}

/// A provider's error code as it may be shown: short, and only the characters codes use, so a
/// code can never carry a piece of the request.
pub(crate) fn safe_code(code: &str) -> Option<String> {
    let code = code.trim();
    let plain = !code.is_empty()
        && code.len() <= 64
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    plain.then(|| code.to_owned())
}
