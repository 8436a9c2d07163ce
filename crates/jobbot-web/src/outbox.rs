//! `/api/outbox/ended`: the messages that ended without being delivered, newest first, each with
//! its typed end (a failure with its reason, or an expiry with what held it up last) and that
//! end in words. Among them, the messages that may have been delivered by an account that is
//! gone since: jobbot never moves those to another account, so the operator checks them.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use jobbot_core::store::{OutboxEnd, OutboxFailure, UnixMillis};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::vacancies::{bounded_number, page_limit};

const DEFAULT_DAYS: i64 = 7;
const MAX_DAYS: i64 = 90;
const DAY_MS: i64 = 24 * 3_600_000;

/// Taken as text and parsed here so a bad value is a field error in the API's shape.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EndedFilters {
    /// How far back, in days: 1 to 90; 7 when absent.
    #[param(value_type = u32, required = false, minimum = 1, maximum = 90)]
    pub days: Option<String>,
    /// 1 to 500; 50 when absent.
    #[param(value_type = u32, required = false, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndedPage {
    pub messages: Vec<EndedMessage>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndedMessage {
    pub id: i64,
    pub channel_id: String,
    pub kind: String,
    /// `failed` or `expired`.
    pub status: String,
    /// The typed end, as stored.
    #[schema(value_type = Object)]
    pub end: Value,
    /// The end in words.
    pub reason: String,
    /// It may have been delivered: its account is gone, and it was not retried elsewhere.
    pub may_have_been_delivered: bool,
    pub attempts: u32,
    pub updated_at_unix_ms: i64,
}

/// Messages that ended undelivered, newest first.
#[utoipa::path(get, path = "/api/outbox/ended", tag = "status", params(EndedFilters),
    responses((status = 200, body = EndedPage), (status = 422, body = ErrorBody)))]
pub async fn list_ended(
    State(state): State<AppState>,
    filters: Result<Query<EndedFilters>, QueryRejection>,
) -> Result<Json<EndedPage>, ApiError> {
    let Query(filters) = filters.map_err(crate::json::query_error)?;
    let mut problems = Vec::new();
    let days = bounded_number(
        &mut problems,
        "days",
        filters.days.as_deref(),
        (1, MAX_DAYS),
        DEFAULT_DAYS,
    );
    let limit = page_limit(&mut problems, filters.limit.as_deref());
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }
    let engine = &state.inner.engine;
    let since = UnixMillis(engine.clock().now_unix().0 - days * DAY_MS);
    let messages = engine
        .store()
        .ended_outbox(since, limit)
        .await?
        .into_iter()
        .map(|message| {
            let end = message.end.clone();
            Ok(EndedMessage {
                id: message.id.0,
                channel_id: message.message.channel_id.clone(),
                kind: message.message.kind.as_str().to_owned(),
                status: message.status.as_str().to_owned(),
                end: serde_json::to_value(&end).map_err(ApiError::internal)?,
                reason: end.as_ref().map_or_else(
                    || "ended with no record of why".to_owned(),
                    ToString::to_string,
                ),
                may_have_been_delivered: matches!(
                    end,
                    Some(OutboxEnd::Failed {
                        failure: OutboxFailure::InDoubtAccountGone { .. }
                    })
                ),
                attempts: message.attempts,
                updated_at_unix_ms: message.updated_at.0,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(Json(EndedPage { messages }))
}
