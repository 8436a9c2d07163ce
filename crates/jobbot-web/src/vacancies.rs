//! `/api/vacancies`: the messages monitoring processed, newest first, with what each matched and
//! the contacts found. The store answers the query; this module only parses the filters.

use axum::Json;
use axum::extract::rejection::QueryRejection;
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
#[into_params(parameter_in = Query)]
pub struct VacancyFilters {
    /// Only relevant or only not relevant messages.
    #[param(value_type = VacancyStatusParam, inline, required = false)]
    pub status: Option<String>,
    /// Only messages that matched this output channel.
    #[param(value_type = String, required = false)]
    pub channel_id: Option<String>,
    /// Paging: only rows with an id below this (the previous page's `next_before_id`).
    #[param(value_type = i64, required = false)]
    pub before_id: Option<String>,
    /// 1 to 500; 50 when absent.
    #[param(value_type = u32, required = false, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
}

/// A vacancy's status as a filter.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // documents the accepted words; `VacancyStatus::parse` reads them
#[serde(rename_all = "snake_case")]
pub enum VacancyStatusParam {
    Relevant,
    NotRelevant,
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
    filters: Result<Query<VacancyFilters>, QueryRejection>,
) -> Result<Json<VacancyPage>, ApiError> {
    let Query(filters) = filters.map_err(crate::json::query_error)?;
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
        let id = whole_number(text);
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
    let limit = page_limit(&mut problems, filters.limit.as_deref());
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

/// The `limit` of a listing: 1 to 500, 50 when absent.
pub(crate) fn page_limit(problems: &mut Vec<Problem>, text: Option<&str>) -> u32 {
    let limit = bounded_number(
        problems,
        "limit",
        text,
        (1, i64::from(MAX_LIMIT)),
        i64::from(DEFAULT_LIMIT),
    );
    u32::try_from(limit).unwrap_or(DEFAULT_LIMIT)
}

/// An optional whole-number parameter within `min..=max`: `default` when absent; a problem
/// naming `field` (and `default`) when it is not a whole number in range.
pub(crate) fn bounded_number(
    problems: &mut Vec<Problem>,
    field: &'static str,
    text: Option<&str>,
    (min, max): (i64, i64),
    default: i64,
) -> i64 {
    let Some(text) = text else {
        return default;
    };
    match whole_number(text) {
        Some(number) if (min..=max).contains(&number) => number,
        _ => {
            problems.push(Problem::because(field, Reason::Range { min, max }));
            default
        }
    }
}

/// A whole number as a query writes it: `12`, `-3`, or `12.0` (JSON Schema's integers include
/// numbers with a zero fraction).
fn whole_number(text: &str) -> Option<i64> {
    if let Ok(number) = text.parse::<i64>() {
        return Some(number);
    }
    let float = text
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite() && f.fract() == 0.0)?;
    // Beyond ±2^63 a float no longer names one whole number.
    (float.abs() < 9.2e18).then_some(float as i64)
}
