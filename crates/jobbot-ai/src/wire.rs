//! The OpenAI chat-completions format, as far as jobbot uses it: the client writes requests and
//! reads responses with these types, and the scripted server reads and writes the same ones.

use jobbot_core::ai::ChatMessage;
use serde::{Deserialize, Serialize};

/// `POST {base_url}/chat/completions`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub stream: bool,
}

impl std::fmt::Debug for ChatCompletionRequest {
    /// The messages show as roles and lengths ([`ChatMessage`]'s own `Debug`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatCompletionRequest")
            .field("model", &self.model)
            .field("messages", &self.messages)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionResponse {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    pub choices: Vec<Choice>,
    #[serde(default)]
    pub usage: Option<Usage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    #[serde(default)]
    pub index: u32,
    pub message: AnswerMessage,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerMessage {
    #[serde(default = "assistant")]
    pub role: String,
    /// `null` when a model answers with tool calls only.
    #[serde(default)]
    pub content: Option<String>,
}

impl std::fmt::Debug for AnswerMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerMessage")
            .field("role", &self.role)
            .field("chars", &self.content.as_ref().map(|c| c.chars().count()))
            .finish()
    }
}

fn assistant() -> String {
    "assistant".to_owned()
}

/// Tokens one completion used, as the provider counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
}

/// `{"error": {"message", "type", "code"}}` (OpenAI, Groq, OpenRouter), `{"error": "text"}`
/// (Ollama) — only the code and type are read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ErrorDetail {
    Object {
        #[serde(default)]
        message: Option<String>,
        #[serde(default, rename = "type")]
        kind: Option<String>,
        #[serde(default)]
        code: Option<serde_json::Value>,
    },
    Text(String),
}

impl ErrorBody {
    pub fn new(message: &str, kind: &str, code: &str) -> Self {
        Self {
            error: ErrorDetail::Object {
                message: Some(message.to_owned()),
                kind: Some(kind.to_owned()),
                code: Some(serde_json::Value::String(code.to_owned())),
            },
        }
    }

    /// The error's code, else its type.
    pub fn code(&self) -> Option<String> {
        match &self.error {
            ErrorDetail::Object { code, kind, .. } => code
                .as_ref()
                .and_then(|code| match code {
                    serde_json::Value::String(code) => Some(code.clone()),
                    serde_json::Value::Number(number) => Some(number.to_string()),
                    _ => None,
                })
                .or_else(|| kind.clone()),
            ErrorDetail::Text(_) => None,
        }
    }
}
