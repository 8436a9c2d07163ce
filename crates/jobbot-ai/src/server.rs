//! An OpenAI-compatible HTTP server for models that are scripts: the demo's built-in provider
//! ([`crate::ScriptedModel`]) and the tests' fault-injecting one ([`crate::Script`]). It speaks
//! real HTTP on a listener the caller binds (loopback, port 0), so the client under test or in
//! the demo goes through exactly the path it takes to a real provider.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jobbot_core::ai::ChatMessage;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::wire::{
    AnswerMessage, ChatCompletionRequest, ChatCompletionResponse, Choice, ErrorBody, Usage,
};

/// A request as the server received it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    /// The bearer token, if one was sent (tests check what the client sent; never logged).
    pub bearer: Option<String>,
}

/// What the server answers to one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A chat completion with this text.
    Answer(String),
    /// An error status with an OpenAI-style error body and, for 429, the wait asked for.
    Error {
        status: u16,
        code: String,
        retry_after: Option<RetryAfter>,
    },
    /// Never answers (until the server stops): the client's timeout must fire.
    Hang,
    /// A success status with this body as it is (malformed JSON, wrong shape).
    Raw(String),
}

/// How a 429 says how long to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// `Retry-After: <seconds>`.
    Seconds(u64),
    /// OpenAI's `retry-after-ms`.
    Millis(u64),
}

/// A model behind the server.
#[async_trait]
pub trait Responder: Send + Sync + 'static {
    async fn respond(&self, request: ReceivedRequest) -> Reply;
    /// The model names `GET /v1/models` lists.
    fn models(&self) -> Vec<String>;
}

/// A running server; stops when [`ProviderServer::stop`] is called or it is dropped.
pub struct ProviderServer {
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl ProviderServer {
    /// Serves `responder` on `listener` until stopped.
    pub fn start(listener: TcpListener, responder: Arc<dyn Responder>) -> std::io::Result<Self> {
        let address = listener.local_addr()?;
        let app = router(responder);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::warn!(target: "ai", %error, "the scripted provider stopped");
            }
        });
        Ok(Self {
            address,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Binds `127.0.0.1:0` and serves `responder` there.
    pub async fn on_loopback(responder: Arc<dyn Responder>) -> std::io::Result<Self> {
        Self::start(TcpListener::bind(("127.0.0.1", 0)).await?, responder)
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The provider's `base_url`: `http://127.0.0.1:<port>/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.address)
    }

    /// Stops accepting requests and waits for the server's task. Requests left hanging are cut.
    pub async fn stop(mut self) {
        self.stop_now();
        if let Some(task) = self.task.take() {
            // A hanging request holds graceful shutdown; it is cut here.
            task.abort();
            let _ = task.await;
        }
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for ProviderServer {
    fn drop(&mut self) {
        self.stop_now();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn router(responder: Arc<dyn Responder>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .with_state(responder)
}

async fn models(State(responder): State<Arc<dyn Responder>>) -> Response {
    let data: Vec<serde_json::Value> = responder
        .models()
        .into_iter()
        .map(|id| serde_json::json!({"id": id, "object": "model", "owned_by": "jobbot"}))
        .collect();
    axum::Json(serde_json::json!({"object": "list", "data": data})).into_response()
}

async fn chat_completions(
    State(responder): State<Arc<dyn Responder>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(request) = serde_json::from_slice::<ChatCompletionRequest>(&body) else {
        return error_response(400, "invalid_request_error", None);
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::to_owned);
    let prompt_chars: usize = request
        .messages
        .iter()
        .map(|message| message.content.chars().count())
        .sum();
    let model = request.model.clone();
    let reply = responder
        .respond(ReceivedRequest {
            model: request.model,
            messages: request.messages,
            bearer,
        })
        .await;
    match reply {
        Reply::Answer(text) => {
            // A rough count (four characters a token), so usage statistics have numbers.
            let prompt_tokens = prompt_chars.div_ceil(4) as u64;
            let completion_tokens = text.chars().count().div_ceil(4) as u64;
            axum::Json(ChatCompletionResponse {
                id: Some("chatcmpl-jobbot".to_owned()),
                model: Some(model),
                choices: vec![Choice {
                    index: 0,
                    message: AnswerMessage {
                        role: "assistant".to_owned(),
                        content: Some(text),
                    },
                    finish_reason: Some("stop".to_owned()),
                }],
                usage: Some(Usage {
                    prompt_tokens,
                    completion_tokens,
                    total_tokens: prompt_tokens + completion_tokens,
                }),
            })
            .into_response()
        }
        Reply::Error {
            status,
            code,
            retry_after,
        } => error_response(status, &code, retry_after),
        Reply::Hang => {
            // Longer than any client timeout; the server's stop cuts it.
            tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
            error_response(504, "hang_ended", None)
        }
        Reply::Raw(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
    }
}

fn error_response(status: u16, code: &str, retry_after: Option<RetryAfter>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (
        status,
        axum::Json(ErrorBody::new(
            status.canonical_reason().unwrap_or("error"),
            "error",
            code,
        )),
    )
        .into_response();
    let (name, value) = match retry_after {
        Some(RetryAfter::Seconds(seconds)) => ("retry-after", seconds),
        Some(RetryAfter::Millis(millis)) => ("retry-after-ms", millis),
        None => return response,
    };
    response
        .headers_mut()
        .insert(name, HeaderValue::from(value));
    response
}
