//! A JSON body extractor whose refusals name the offending field (`agents[1].phone`), in the API's
//! error shape, instead of axum's plain-text rejection.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, Reason};

/// Largest accepted request body. A whole configuration is a few kilobytes.
pub const BODY_LIMIT: usize = 1 << 20;

pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/json"));
        if !is_json {
            return Err(ApiError::invalid_because(
                "",
                Reason::Json("the body must be JSON (Content-Type: application/json)".into()),
            ));
        }
        let bytes = axum::body::to_bytes(request.into_body(), BODY_LIMIT)
            .await
            .map_err(|error| body_error(&error))?;
        parse(&bytes).map(Self)
    }
}

/// Why a body could not be read: too slow (tower-http's body timeout), too large (the limit
/// here or tower-http's), or cut off.
fn body_error(error: &axum::Error) -> ApiError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if current.is::<tower_http::timeout::TimeoutError>() {
            return ApiError::RequestTimeout;
        }
        if current.is::<http_body_util::LengthLimitError>() {
            return ApiError::PayloadTooLarge { limit: BODY_LIMIT };
        }
        cause = current.source();
    }
    ApiError::invalid_because("", Reason::Json("the body was cut off".into()))
}

pub fn parse<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let path = if path == "." { String::new() } else { path };
        ApiError::invalid_because(path, Reason::Json(scrub(error.into_inner().to_string())))
    })
}

/// serde's "invalid type" and "invalid value" messages quote the value that was sent; a
/// password or login code in the wrong type must not come back in a response, so those quotes
/// are blanked. Other messages (unknown field, missing field) quote only field names.
fn scrub(message: String) -> String {
    if !(message.starts_with("invalid type") || message.starts_with("invalid value")) {
        return message;
    }
    let mut scrubbed = String::with_capacity(message.len());
    let mut quote = None;
    for c in message.chars() {
        match quote {
            Some(open) if c == open => {
                scrubbed.push('…');
                scrubbed.push(c);
                quote = None;
            }
            Some(_) => {}
            None => {
                scrubbed.push(c);
                if c == '"' || c == '`' {
                    quote = Some(c);
                }
            }
        }
    }
    scrubbed
}
