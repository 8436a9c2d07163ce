//! The one error type of the API. Every refusal is JSON with a stable `error` code, a message a
//! person can act on and, for validation, the path of each offending field. 5xx bodies are
//! generic; their causes are logged, never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jobbot_core::config::{ConfigProblem, ConfigProblems, Revision};
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// `invalid`, `unauthorized`, `forbidden`, `not_found`, `conflict`, `revision_required`,
    /// `file_invalid`, `state_conflict` (e.g. a session in use, a login step out of order),
    /// `too_many_requests`, `internal`.
    pub error: &'static str,
    pub message: String,
    /// For `invalid` and `file_invalid`: every problem, each with its field path.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
    /// For `conflict`: the revision the configuration is at now (read again, reapply, retry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<String>,
}

/// One invalid value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Problem {
    /// The path in the request body (`agents[1].phone`); for a problem outside what the request
    /// touched, the path in the configuration file.
    pub path: String,
    pub message: String,
    /// The same value's path in the configuration file (`output_channels[2].agents[1].phone`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_path: Option<String>,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
            config_path: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid request")]
    Invalid(Vec<Problem>),
    #[error("authentication required")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    NotFound(String),
    #[error("the configuration has changed since it was read")]
    Conflict { current: Revision },
    #[error(
        "state the revision this change is based on: an If-Match header or a \"revision\" field"
    )]
    RevisionRequired,
    #[error("the configuration file on disk does not load; fix it before saving")]
    FileInvalid(ConfigProblems),
    #[error("{0}")]
    StateConflict(String),
    #[error("too many attempts; retry in {retry_after_seconds} s")]
    TooManyRequests { retry_after_seconds: u64 },
    /// Something failed inside; the cause is logged here and not sent.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid(vec![Problem::new(path, message)])
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }
}

impl From<jobbot_store::StoreError> for ApiError {
    fn from(error: jobbot_store::StoreError) -> Self {
        use jobbot_store::StoreError;
        match error {
            StoreError::Conflict { current } => Self::Conflict { current },
            StoreError::Invalid(problems) => Self::Invalid(
                problems
                    .0
                    .into_iter()
                    .map(|problem| Problem {
                        path: problem.path.clone(),
                        message: problem.message,
                        config_path: Some(problem.path),
                    })
                    .collect(),
            ),
            StoreError::FileInvalid { problems, .. } => Self::FileInvalid(problems),
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
    fn into_response(self) -> Response {
        let message = self.to_string();
        let (status, code, problems, current_revision) = match self {
            Self::Invalid(problems) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid", problems, None)
            }
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", vec![], None),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", vec![], None),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", vec![], None),
            Self::Conflict { current } => (
                StatusCode::CONFLICT,
                "conflict",
                vec![],
                Some(current.to_string()),
            ),
            Self::RevisionRequired => (
                StatusCode::PRECONDITION_REQUIRED,
                "revision_required",
                vec![],
                None,
            ),
            Self::FileInvalid(problems) => (
                StatusCode::CONFLICT,
                "file_invalid",
                problems.0.into_iter().map(config_problem).collect(),
                None,
            ),
            Self::StateConflict(_) => (StatusCode::CONFLICT, "state_conflict", vec![], None),
            Self::TooManyRequests {
                retry_after_seconds,
            } => {
                let body = ErrorBody {
                    error: "too_many_requests",
                    message,
                    problems: vec![],
                    current_revision: None,
                };
                let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_seconds));
                return response;
            }
            Self::Internal(cause) => {
                tracing::error!(target: "web", %cause, "request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal", vec![], None)
            }
        };
        let body = ErrorBody {
            error: code,
            message,
            problems,
            current_revision,
        };
        (status, Json(body)).into_response()
    }
}

fn config_problem(problem: ConfigProblem) -> Problem {
    Problem {
        path: problem.path.clone(),
        message: problem.message,
        config_path: Some(problem.path),
    }
}
