//! The Doctor page's checks over the running engine (`jobbot doctor`'s, see
//! `jobbot_engine::doctor`): each session as its owner sees it, the main account's view of every
//! source and output channel, each CRM group and its agents, each proxy, each AI provider's key. One run at a time, so
//! reloading the page cannot multiply the calls made to Telegram.

use axum::Json;
use axum::extract::State;
use jobbot_core::doctor::{DoctorPlan, DoctorReport};
use jobbot_engine::doctor::{DoctorSettings, EngineAccounts, run_doctor};

use crate::AppState;

/// Runs every check of the current configuration.
pub(crate) async fn report(state: &AppState) -> DoctorReport {
    let _one_at_a_time = state.inner.doctor_running.lock().await;
    let plan = DoctorPlan::of(&state.inner.config.snapshot().config);
    let accounts = EngineAccounts::new(state.inner.engine.clone());
    run_doctor(
        &plan,
        &state.inner.api_credentials,
        &*state.inner.variables,
        &accounts,
        DoctorSettings::default(),
    )
    .await
}

/// The setup checked now: one finding per item (API credentials, sessions, proxies, sources,
/// output channels, CRM groups and their agents), each `passed`, `failed` with a typed
/// `problem` and its `fix`, or `skipped` with the reason. Nothing is changed.
#[utoipa::path(get, path = "/api/doctor", tag = "status",
    responses((status = 200, content_type = "application/json", body = Object,
        description = "`{findings: [{subject, verdict, fix}]}`, as `jobbot doctor --json` prints it")))]
pub async fn doctor(State(state): State<AppState>) -> Json<DoctorReport> {
    Json(report(&state).await)
}
