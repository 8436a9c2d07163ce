//! The one error type of the API. Every refusal is JSON with `success: false`, a stable `error`
//! code, a message a person can act on and, for validation, each offending field's path with a
//! stable `code` and a message. Messages are written in the language the request asks for
//! (`Accept-Language`: Russian or English) from typed reasons ([`Reason`]), by [`localize`];
//! nothing translates English text. 5xx bodies are generic; their causes are logged, never sent.

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jobbot_core::config::{ConfigProblem, ConfigProblems, ProblemKind, Revision};
use serde::Serialize;
use utoipa::ToSchema;

use crate::i18n::{Lang, reason_message};

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Always `false`.
    pub success: bool,
    /// `invalid` (422: a value breaks the schema), `rejected` (409: the change breaks a rule of
    /// the configuration across fields or channels), `unauthorized`, `forbidden`, `not_found`,
    /// `conflict` (409: the configuration changed since the stated revision), `file_invalid`,
    /// `state_conflict` (409: a session in use, a login step out of order), `upgrade_required`,
    /// `too_many_requests`, `request_timeout`, `payload_too_large`, `unavailable`, `internal`.
    pub error: &'static str,
    pub message: String,
    /// For `invalid` and `file_invalid`: every problem, each with its field path.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<ProblemBody>,
    /// For `conflict`: the revision the configuration is at now (read again, reapply, retry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<String>,
}

/// One invalid value, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ProblemBody {
    /// The path in the request body (`agents[1].phone`); for a problem outside what the request
    /// touched, the path in the configuration file.
    pub path: String,
    /// What is wrong, for programs: `required`, `length`, `range`, `not_phone`, `not_proxy`, …
    pub code: &'static str,
    /// What is wrong, for people, in the request's language.
    pub message: String,
    /// The same value's path in the configuration file (`output_channels[2].agents[1].phone`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_path: Option<String>,
}

/// Why a value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// From the configuration's validation: its kind, and its English message.
    Config(ProblemKind, String),
    Required,
    /// A text of `min` to `max` characters.
    Length {
        min: usize,
        max: usize,
    },
    /// A whole number from `min` to `max`.
    Range {
        min: i64,
        max: i64,
    },
    /// A number (not necessarily whole) from 0 to 2: a model's sampling temperature.
    Temperature,
    /// One of these words.
    OneOf(&'static [&'static str]),
    NotRevision,
    NotSessionName,
    /// The session is an agent of the channel already.
    AlreadyAgent,
    /// A channel with this id exists.
    ChannelExists,
    /// A channel's id cannot change.
    IdFixed,
    /// The body is not the JSON the operation takes; serde's words (values never quoted).
    Json(String),
    /// The query string does not fit the operation's parameters; axum's words.
    Query(String),
    /// Only these words say it (English).
    Text(String),
}

impl Reason {
    pub fn code(&self) -> &'static str {
        match self {
            Reason::Config(kind, _) => config_code(kind),
            Reason::Required => "required",
            Reason::Length { .. } => "length",
            Reason::Range { .. } | Reason::Temperature => "range",
            Reason::OneOf(_) => "one_of",
            Reason::NotRevision => "not_revision",
            Reason::NotSessionName => "not_session_name",
            Reason::AlreadyAgent => "already_agent",
            Reason::ChannelExists => "channel_exists",
            Reason::IdFixed => "id_fixed",
            Reason::Json(_) => "json",
            Reason::Query(_) => "query",
            Reason::Text(_) => "other",
        }
    }
}

/// The `code` a configuration problem kind serialises with (`not_phone`, …).
fn config_code(kind: &ProblemKind) -> &'static str {
    match kind {
        ProblemKind::Required => "required",
        ProblemKind::NotChannelId => "not_channel_id",
        ProblemKind::NotSource => "not_source",
        ProblemKind::NotKeyword { .. } => "not_keyword",
        ProblemKind::CrmGroupRequired => "crm_group_required",
        ProblemKind::CrmAgentRequired => "crm_agent_required",
        ProblemKind::LegacyAgentIncomplete { .. } => "legacy_agent_incomplete",
        ProblemKind::TemplateEmpty => "template_empty",
        ProblemKind::NotTemplate { .. } => "not_template",
        ProblemKind::NotInviteLink => "not_invite_link",
        ProblemKind::NotPhone => "not_phone",
        ProblemKind::NotSessionName => "not_session_name",
        ProblemKind::MainSession => "main_session",
        ProblemKind::SessionTwice { .. } => "session_twice",
        ProblemKind::NotProxy => "not_proxy",
        ProblemKind::ProxyMasked => "proxy_masked",
        ProblemKind::AtLeastOne => "at_least_one",
        ProblemKind::DelayOrder { .. } => "delay_order",
        ProblemKind::DelayTooLong => "delay_too_long",
        ProblemKind::TooLong { .. } => "too_long",
        ProblemKind::ChannelIdTwice { .. } => "channel_id_twice",
        ProblemKind::SessionPhoneElsewhere { .. } => "session_phone_elsewhere",
        ProblemKind::PhoneSessionElsewhere { .. } => "phone_session_elsewhere",
        ProblemKind::Other => "other",
    }
}

/// One invalid value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub reason: Reason,
    pub config_path: Option<String>,
}

impl Problem {
    /// A problem described by `message` only (English).
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::because(path, Reason::Text(message.into()))
    }

    pub fn because(path: impl Into<String>, reason: Reason) -> Self {
        Self {
            path: path.into(),
            reason,
            config_path: None,
        }
    }

    fn body(&self, lang: Lang) -> ProblemBody {
        ProblemBody {
            path: self.path.clone(),
            code: self.reason.code(),
            message: reason_message(&self.reason, lang),
            config_path: self.config_path.clone(),
        }
    }
}

impl From<ConfigProblem> for Problem {
    fn from(problem: ConfigProblem) -> Self {
        Self {
            path: problem.path.clone(),
            reason: Reason::Config(problem.kind, problem.message),
            config_path: Some(problem.path),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// A value breaks the request's schema (a pattern, a range, a type): 422.
    #[error("invalid request")]
    Invalid(Vec<Problem>),
    /// The request is well-formed, but the change would break a rule of the configuration that
    /// involves other fields or channels, or the state says no (a duplicate, a login code
    /// Telegram refused): 409, each problem with its path.
    #[error("the change was refused")]
    Rejected(Vec<Problem>),
    #[error("authentication required")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    NotFound(String),
    #[error("the configuration has changed since it was read")]
    Conflict { current: Revision },
    #[error("this route speaks WebSocket: send an upgrade request")]
    UpgradeRequired,
    #[error("the configuration file on disk does not load; fix it before saving")]
    FileInvalid(ConfigProblems),
    #[error("{0}")]
    StateConflict(String),
    #[error("too many attempts; retry in {retry_after_seconds} s")]
    TooManyRequests { retry_after_seconds: u64 },
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    Unavailable(&'static str),
    /// Something failed inside; the cause is logged here and not sent.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid(vec![Problem::new(path, message)])
    }

    pub fn invalid_because(path: impl Into<String>, reason: Reason) -> Self {
        Self::Invalid(vec![Problem::because(path, reason)])
    }

    pub fn rejected(path: impl Into<String>, reason: Reason) -> Self {
        Self::Rejected(vec![Problem::because(path, reason)])
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            Self::Rejected(_) => (StatusCode::CONFLICT, "rejected"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Conflict { .. } => (StatusCode::CONFLICT, "conflict"),
            Self::UpgradeRequired => (StatusCode::UPGRADE_REQUIRED, "upgrade_required"),
            Self::FileInvalid(_) => (StatusCode::CONFLICT, "file_invalid"),
            Self::StateConflict(_) => (StatusCode::CONFLICT, "state_conflict"),
            Self::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
            Self::RequestTimeout => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            Self::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// The body in `lang`.
    fn body(&self, lang: Lang) -> ErrorBody {
        let (_, code) = self.status_and_code();
        let problems = match self {
            Self::Invalid(problems) | Self::Rejected(problems) => {
                problems.iter().map(|p| p.body(lang)).collect()
            }
            Self::FileInvalid(problems) => problems
                .0
                .iter()
                .cloned()
                .map(|problem| Problem::from(problem).body(lang))
                .collect(),
            _ => Vec::new(),
        };
        ErrorBody {
            success: false,
            error: code,
            message: crate::i18n::error_message(self, lang),
            problems,
            current_revision: match self {
                Self::Conflict { current } => Some(current.to_string()),
                _ => None,
            },
        }
    }

    fn response(&self, lang: Lang) -> Response {
        let (status, _) = self.status_and_code();
        let mut response = (status, Json(self.body(lang))).into_response();
        match self {
            Self::TooManyRequests {
                retry_after_seconds,
            } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_seconds));
            }
            Self::Unavailable(_) => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Self::UpgradeRequired => {
                let headers = response.headers_mut();
                headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
                headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            }
            _ => {}
        }
        response
    }
}

impl From<jobbot_store::StoreError> for ApiError {
    fn from(error: jobbot_store::StoreError) -> Self {
        use jobbot_store::StoreError;
        match error {
            StoreError::Conflict { current } => Self::Conflict { current },
            // The request passed its schema, so what the configuration refuses is a rule across
            // fields or channels.
            StoreError::Invalid(problems) => {
                Self::Rejected(problems.0.into_iter().map(Problem::from).collect())
            }
            StoreError::FileInvalid { problems, .. }
            | StoreError::StoredInvalid { problems, .. } => Self::FileInvalid(problems),
            other => Self::internal(other),
        }
    }
}

impl From<jobbot_engine::EngineError> for ApiError {
    fn from(error: jobbot_engine::EngineError) -> Self {
        Self::internal(error)
    }
}

impl From<jobbot_core::store::StoreError> for ApiError {
    fn from(error: jobbot_core::store::StoreError) -> Self {
        Self::internal(error)
    }
}

impl IntoResponse for ApiError {
    /// English; [`localize`] writes it again in the request's language.
    fn into_response(self) -> Response {
        if let Self::Internal(cause) = &self {
            tracing::error!(target: "web", %cause, "request failed");
        }
        let mut response = self.response(Lang::En);
        response.extensions_mut().insert(self);
        response
    }
}

/// Middleware: an error response is written again in the language the request asks for.
pub async fn localize(request: Request, next: Next) -> Response {
    let lang = Lang::of_request(request.headers());
    let response = next.run(request).await;
    if lang == Lang::En {
        return response;
    }
    match response.extensions().get::<ApiError>() {
        Some(error) => error.response(lang),
        None => response,
    }
}

/// Middleware: refusals written by layers below the handlers (tower-http's body limit) get the
/// API's JSON shape.
pub async fn json_refusals(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if response.extensions().get::<ApiError>().is_some() {
        return response;
    }
    match response.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge {
            limit: crate::json::BODY_LIMIT,
        }
        .into_response(),
        StatusCode::REQUEST_TIMEOUT => ApiError::RequestTimeout.into_response(),
        _ => response,
    }
}
