//! `/api/vacancies`: the messages monitoring processed, newest first, with what each matched and
//! the contacts found. The store answers the query; this module only parses the filters.

use axum::Json;
use axum::extract::{Query, State};
use jobbot_core::store::{VacancyQuery, VacancyStatus};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::{ApiError, ErrorBody, Problem, Reason};

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;

/// Filters, all optional. Taken as text and parsed here so a bad value is a field error in the
/// API's shape, not a plain-text rejection.
#[derive(Debug, Deserialize, IntoParams)]
pub struct VacancyFilters {
    /// `relevant` or `not_relevant`.
    pub status: Option<String>,
    /// Only messages that matched this output channel.
    pub channel_id: Option<String>,
    /// Paging: only rows with an id below this (the previous page's `next_before_id`).
    pub before_id: Option<String>,
    /// 1 to 500; 50 when absent.
    pub limit: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VacancyPage {
    pub success: bool,
    /// Processed messages: source, link, text, status, matched channels (with keywords and
    /// whether a notification was queued) and contacts.
    #[schema(value_type = Vec<Object>)]
    pub vacancies: Vec<Value>,
    /// Pass as `before_id` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before_id: Option<i64>,
}

/// Processed messages, newest first, filterable by status and channel.
#[utoipa::path(get, path = "/api/vacancies", tag = "status", params(VacancyFilters),
    responses((status = 200, body = VacancyPage), (status = 422, body = ErrorBody)))]
pub async fn list_vacancies(
    State(state): State<AppState>,
    Query(filters): Query<VacancyFilters>,
) -> Result<Json<VacancyPage>, ApiError> {
    let query = parse(filters)?;
    let records = state.inner.engine.store().vacancies(&query).await?;
    let next_before_id = (records.len() == query.limit as usize)
        .then(|| records.last().map(|record| record.id))
        .flatten();
    let vacancies = records
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()
        .map_err(ApiError::internal)?;
    Ok(Json(VacancyPage {
        success: true,
        vacancies,
        next_before_id,
    }))
}

fn parse(filters: VacancyFilters) -> Result<VacancyQuery, ApiError> {
    let mut problems = Vec::new();
    let status = filters.status.as_deref().and_then(|text| {
        let status = VacancyStatus::parse(text);
        if status.is_none() {
            problems.push(Problem::because(
                "status",
                Reason::OneOf(&["relevant", "not_relevant"]),
            ));
        }
        status
    });
    let before_id = filters.before_id.as_deref().and_then(|text| {
        let id = text.parse::<i64>().ok();
        if id.is_none() {
            problems.push(Problem::because(
                "before_id",
                Reason::Range {
                    min: i64::MIN,
                    max: i64::MAX,
                },
            ));
        }
        id
    });
    let limit = match filters.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(text) => match text.parse::<u32>() {
            Ok(limit @ 1..=MAX_LIMIT) => limit,
            _ => {
                problems.push(Problem::because(
                    "limit",
                    Reason::Range {
                        min: 1,
                        max: i64::from(MAX_LIMIT),
                    },
                ));
                DEFAULT_LIMIT
            }
        },
    };
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }
    Ok(VacancyQuery {
        status,
        channel_id: filters.channel_id.filter(|id| !id.is_empty()),
        before_id,
        limit,
    })
}
