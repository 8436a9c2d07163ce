//! Health checks for load balancers and orchestrators, without login and without data:
//! `/healthz` answers while the process serves; `/readyz` says whether it can do its work (the
//! configuration is loaded, the store answers, the main account is connected).
//!
//! Also the responses every operation can give whatever its handler does (authentication,
//! limits, the connection cap), added to the OpenAPI document in one place.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};

use crate::AppState;
use crate::constraints;

#[derive(Debug, Serialize, ToSchema)]
pub struct Alive {
    /// Always `alive`.
    #[schema(pattern = "^alive$")]
    pub status: &'static str,
}

/// Each readiness condition.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadinessChecks {
    /// A valid configuration is live (always, once serving: the process does not start without
    /// one, and a broken hand edit keeps the last good one live).
    pub configuration: bool,
    /// The store answers and has jobbot's schema.
    pub store: bool,
    /// The main account is connected (true when the process runs without one).
    pub main_account: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    pub checks: ReadinessChecks,
}

/// Alive: the process answers HTTP.
#[utoipa::path(get, path = "/healthz", tag = "health", security(()),
    responses((status = 200, body = Alive)))]
pub async fn healthz() -> Json<Alive> {
    Json(Alive { status: "alive" })
}

/// Ready: the configuration is loaded, the store answers and the main account is connected.
#[utoipa::path(get, path = "/readyz", tag = "health", security(()),
    responses((status = 200, body = Readiness, description = "Ready"),
              (status = 503, body = Readiness, description = "Not ready; `checks` says why")))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let engine = &state.inner.engine;
    let store = engine.store().health().await.is_ok();
    let main_account = match engine.main_session() {
        Some(main) => engine
            .link_states()
            .borrow()
            .get(main)
            .is_some_and(|link| link.is_ready()),
        None => true,
    };
    let checks = ReadinessChecks {
        configuration: true,
        store,
        main_account,
    };
    let ready = checks.configuration && checks.store && checks.main_account;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(Readiness { ready, checks })).into_response()
}

/// The paths served without login.
const PUBLIC_PATHS: &[&str] = &["/api/login", "/login", "/healthz", "/readyz"];

/// Adds what does not depend on the handler: the patterns of the shared parameters (`If-Match`,
/// a `revision` query, a `session` in the path) with the 422 they can give; 401 and 429 (a
/// bearer token that does not work, too many of them) on every authenticated operation, 403 (a
/// cookie session without its CSRF token) on every authenticated write, 408, 413 and 422 on
/// every operation with a body, and 503 (the server is at its connection cap) everywhere.
pub(crate) fn document_common_responses(document: &mut utoipa::openapi::OpenApi) {
    for (path, item) in document.paths.paths.iter_mut() {
        let public = PUBLIC_PATHS.contains(&path.as_str());
        let operations = [
            (&mut item.get, false),
            (&mut item.post, true),
            (&mut item.put, true),
            (&mut item.delete, true),
            (&mut item.patch, true),
        ];
        for (operation, write) in operations {
            let Some(operation) = operation.as_mut() else {
                continue;
            };
            if !public {
                add(
                    operation,
                    "401",
                    "Authentication required, or the token does not work",
                );
                add(
                    operation,
                    "429",
                    "Too many unknown tokens from this client; see Retry-After",
                );
                if write {
                    add(
                        operation,
                        "403",
                        "A cookie session without its X-CSRF-Token header",
                    );
                }
            }
            if constrain_parameters(operation) {
                add(operation, "422", "A parameter breaks its pattern");
            }
            if operation.request_body.is_some() {
                add(operation, "408", "The request body did not arrive in time");
                add(operation, "413", "The request body is over 1 MiB");
                add(operation, "422", "The body is not valid for this operation");
            }
            add(
                operation,
                "503",
                "The server is at its connection cap; see Retry-After",
            );
        }
    }
}

fn add(operation: &mut Operation, status: &str, description: &str) {
    operation
        .responses
        .responses
        .entry(status.to_owned())
        .or_insert_with(|| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build(),
            )
        });
}

/// Gives the shared parameters their patterns; `true` when the operation has one.
fn constrain_parameters(operation: &mut Operation) -> bool {
    let mut constrained = false;
    for parameter in operation.parameters.iter_mut().flatten() {
        let rule = match (&parameter.parameter_in, parameter.name.as_str()) {
            (ParameterIn::Header, "If-Match") => constraints::IF_MATCH,
            (ParameterIn::Query, "revision") => constraints::REVISION,
            (ParameterIn::Path, "session") => constraints::SESSION_NAME,
            _ => continue,
        };
        parameter.schema = Some(rule.schema().into());
        constrained = true;
    }
    constrained
}
