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
    let mut value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|error| ApiError::invalid_because("", Reason::Json(scrub(error.to_string()))))?;
    whole_numbers_as_integers(&mut value);
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let path = if path == "." { String::new() } else { path };
        ApiError::invalid_because(path, Reason::Json(scrub(error.into_inner().to_string())))
    })
}

/// JSON Schema counts `1.0` as the integer 1 (an integer is a number with a zero fraction);
/// serde does not. Such numbers become integers before the body is read, so what the document
/// calls an integer is taken as one. The API has no fractional fields.
fn whole_numbers_as_integers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(number) if number.is_f64() => {
            if let Some(float) = number.as_f64().filter(|f| f.fract() == 0.0) {
                if (0.0..1.8e19).contains(&float) {
                    *value = serde_json::Value::from(float as u64);
                } else if (-9.2e18..0.0).contains(&float) {
                    *value = serde_json::Value::from(float as i64);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(whole_numbers_as_integers),
        serde_json::Value::Object(fields) => {
            fields.values_mut().for_each(whole_numbers_as_integers)
        }
        _ => {}
    }
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

/// A query string that does not fit its parameters (a name twice, a value of the wrong type),
/// in the API's shape.
pub fn query_error(rejection: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::invalid_because("", Reason::Query(rejection.body_text()))
}
