//! `POST /api/channels/{id}/setup`: the one-click setup of the original's channel wizard (issue
//! #14 item 9). The engine creates the output channel and the CRM forum group with the main
//! account and brings the agents in ([`Engine::set_up_channel_chats`]); this writes the result
//! into the channel: `telegram_id`, `crm_group_id` and `crm_invite_link`, nothing else. With
//! `keep_output_channel` the channel's `telegram_id` stays as the operator set it and only the
//! CRM group is created (the output channel is then never deleted by a rollback either).
//!
//! Revisions: a request that names one is refused (409 `conflict`) before anything is created if
//! the configuration moved on. The chats take a while to create, so the result is then written
//! as one change to the configuration as it is at the end ([`ConfigStore::modify`]): only those
//! three fields of this channel change, and whatever else was saved meanwhile stays. If that
//! write fails (the channel was removed meanwhile, the configuration refuses it), the new chats
//! are deleted again, as for a failed step.
//!
//! [`Engine::set_up_channel_chats`]: jobbot_engine::Engine::set_up_channel_chats
//! [`ConfigStore::modify`]: jobbot_store::ConfigStore::modify

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use jobbot_core::config::ConfigDocument;
use jobbot_core::ids::{ChatId, SessionName};
use jobbot_core::telegram::TelegramError;
use jobbot_engine::{AgentSetup, Rollback, SetupError, SetupRequest, SetupResult, SetupStep};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::AppState;
use crate::channels::{channel_in, channel_index, channel_view, expected_revision, with_etag};
use crate::constraints::{self, Checks};
use crate::error::{ApiError, ErrorBody, Reason};
use crate::i18n::Lang;
use crate::json::ApiJson;

/// The longest title the API takes, in characters; the engine cuts a title to Telegram's 128
/// UTF-16 units ([`jobbot_core::telegram::MAX_CHAT_TITLE_UTF16`]), which the page's inputs
/// count as well (`maxlength` counts UTF-16 units).
pub const TITLE_MAX: usize = jobbot_core::telegram::MAX_CHAT_TITLE_UTF16;

/// What to create. Without titles, the original wizard's: "{name} - Вакансии" and
/// "{name} - CRM".
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetupBody {
    /// The configuration revision the request is based on (or send `If-Match`).
    #[schema(schema_with = constraints::optional_revision_schema)]
    pub revision: Option<String>,
    /// The output channel's title.
    #[schema(schema_with = constraints::optional_chat_title_schema)]
    pub channel_title: Option<String>,
    /// The CRM group's title.
    #[schema(schema_with = constraints::optional_chat_title_schema)]
    pub group_title: Option<String>,
    /// Keep the channel's `telegram_id` (an output channel set by hand) and create only the CRM
    /// group. Default `false`: a new output channel replaces it.
    #[serde(default)]
    pub keep_output_channel: bool,
}

/// A finished setup: the channel as saved, and how each agent came into the group.
#[derive(Debug, Serialize, ToSchema)]
pub struct SetupResponse {
    pub success: bool,
    pub message: String,
    pub channel_id: String,
    pub revision: String,
    /// The output channel (`telegram_id`): the new one, or the one kept.
    #[schema(value_type = i64)]
    pub telegram_id: ChatId,
    /// Whether the setup created the output channel (`false` with `keep_output_channel`).
    pub output_channel_created: bool,
    /// The new CRM forum group (`crm_group_id`).
    #[schema(value_type = i64)]
    pub crm_group_id: ChatId,
    pub crm_invite_link: String,
    /// Per agent: `invited` (added by the main account), `joined` (by the link),
    /// `by_link_later` (joins by the link once connected, with CRM enabled), `failed`.
    #[schema(value_type = Vec<Object>)]
    pub agents: Vec<AgentSetup>,
    #[schema(value_type = Object)]
    pub channel: Value,
}

/// A setup that failed in Telegram (or while saving its result): which step, why, and what was
/// deleted again. Status 429 when the account's pace refused a step for now, else 502.
#[derive(Debug, Serialize, ToSchema)]
pub struct SetupFailedBody {
    /// Always `false`.
    pub success: bool,
    /// `setup_failed`.
    pub error: &'static str,
    pub message: String,
    /// `create_channel`, `create_group`, `open_topics`, `export_invite`, `add_agents`,
    /// `save_configuration`.
    #[schema(value_type = String)]
    pub step: SetupStep,
    /// Telegram's refusal as a typed value (`{"error": "flood_wait", "seconds": 30}`, …);
    /// absent when no Telegram call failed (a rate-limit wait, the configuration).
    #[schema(value_type = Option<Object>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telegram_error: Option<TelegramError>,
    /// The chats deleted again, and those left in Telegram (with why).
    #[schema(value_type = Object)]
    pub rollback: Rollback,
}

/// Creates the channel's output channel and CRM group and saves them in the channel.
#[utoipa::path(post, path = "/api/channels/{id}/setup", tag = "channels", request_body = SetupBody,
    params(("id" = String, Path, description = "The channel's id"),
           ("If-Match" = Option<String>, Header, description = "The revision the request is based on")),
    responses((status = 200, body = SetupResponse), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody,
               description = "The revision is stale (`conflict`), the channel has a CRM group already (`rejected`), the main account is not connected or another setup runs (`state_conflict`)"),
              (status = 422, body = ErrorBody),
              (status = 429, body = SetupFailedBody,
               description = "The main account's pace did not allow a step in time (jobbot's limiter or a flood wait); the chats created before it were deleted"),
              (status = 502, body = SetupFailedBody,
               description = "A step failed in Telegram; the chats created before it were deleted")))]
pub async fn set_up_channel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SetupBody>,
) -> Result<Response, ApiError> {
    let mut checks = Checks::new();
    for (path, title) in [
        ("channel_title", &body.channel_title),
        ("group_title", &body.group_title),
    ] {
        if let Some(title) = title {
            checks.rule(path, title, constraints::NON_BLANK);
            checks.length(path, title, 1, TITLE_MAX);
        }
    }
    checks.finish()?;
    let expected = expected_revision(&headers, body.revision)?;
    let lang = Lang::of_request(&headers);
    let snapshot = state.inner.config.snapshot();
    if let Some(expected) = expected
        && expected != snapshot.revision
    {
        return Err(ApiError::Conflict {
            current: snapshot.revision.clone(),
        });
    }
    let channel = channel_in(&snapshot.document, &id)?;
    if channel.crm_group_id != 0 {
        return Err(ApiError::rejected(
            "crm_group_id",
            Reason::Text(
                "the channel has a CRM group already; set crm_group_id to 0 to create new chats"
                    .into(),
            ),
        ));
    }
    let Ok(_one_at_a_time) = state.inner.setup_running.try_lock() else {
        return Err(ApiError::StateConflict(
            "another channel's setup is running; try again when it has finished".into(),
        ));
    };
    let agents: Vec<SessionName> = channel
        .agents
        .iter()
        .filter_map(|agent| SessionName::parse(&agent.session_name).ok())
        .collect();
    let mut request = SetupRequest::for_channel(&channel.name, agents);
    if body.keep_output_channel {
        let kept = ChatId::from_bot_api(channel.telegram_id)
            .filter(|id| id.kind() == jobbot_core::ids::ChatKind::Channel);
        let Some(kept) = kept else {
            return Err(ApiError::rejected(
                "telegram_id",
                Reason::Text(
                    "keep_output_channel needs the channel's telegram_id to be a channel id (-100…)"
                        .into(),
                ),
            ));
        };
        request.output_channel = Some(kept);
    }
    if let Some(title) = body.channel_title {
        request.channel_title = title;
    }
    if let Some(title) = body.group_title {
        request.group_title = title;
    }
    let result = match state.inner.engine.set_up_channel_chats(&request).await {
        Ok(result) => result,
        Err(error @ (SetupError::NoMainAccount | SetupError::MainAccountNotReady { .. })) => {
            return Err(ApiError::StateConflict(error.to_string()));
        }
        Err(SetupError::RateLimited { step, rollback }) => {
            return Ok(failed(lang, step, None, rollback));
        }
        Err(SetupError::Telegram {
            step,
            error,
            rollback,
        }) => return Ok(failed(lang, step, Some(error), rollback)),
    };
    let saved = state
        .inner
        .config
        .modify(|document: &mut ConfigDocument| {
            let index = channel_index(document, &id)?;
            let channel = &mut document.output_channels[index];
            if result.output_channel_created {
                channel.telegram_id = result.output_channel.get();
            }
            channel.crm_group_id = result.crm_group.get();
            channel.crm_invite_link = Some(result.crm_invite_link.clone());
            Ok::<(), ApiError>(())
        })
        .await;
    let revision = match saved {
        Ok(revision) => revision,
        Err(error) => {
            tracing::warn!(target: "web", channel = %id, %error, "the setup's result could not be saved; deleting its chats");
            let rollback = state
                .inner
                .engine
                .undo_chat_setup(&result)
                .await
                .map_err(|error| ApiError::StateConflict(error.to_string()))?;
            return Ok(failed(lang, SetupStep::SaveConfiguration, None, rollback));
        }
    };
    tracing::info!(target: "web", channel = %id, output = %result.output_channel, group = %result.crm_group, "channel chats created and saved");
    let channel = channel_in(&state.inner.config.snapshot().document, &id)?.clone();
    Ok(with_etag(
        &revision,
        response(lang, &id, &revision, result, channel_view(&channel)),
    ))
}

fn response(
    lang: Lang,
    id: &str,
    revision: &jobbot_core::config::Revision,
    result: SetupResult,
    channel: Value,
) -> SetupResponse {
    let (output, group) = (result.output_channel, result.crm_group);
    let message = match (lang, result.output_channel_created) {
        (Lang::En, true) => format!(
            "created the output channel {output} and the CRM group {group}; saved in channel {id}"
        ),
        (Lang::En, false) => format!(
            "created the CRM group {group}, kept the output channel {output}; saved in channel {id}"
        ),
        (Lang::Ru, true) => {
            format!("Созданы канал {output} и CRM-группа {group}; сохранено в канале {id}")
        }
        (Lang::Ru, false) => {
            format!("Создана CRM-группа {group}, канал {output} оставлен; сохранено в канале {id}")
        }
    };
    SetupResponse {
        success: true,
        message,
        channel_id: id.to_owned(),
        revision: revision.to_string(),
        telegram_id: result.output_channel,
        output_channel_created: result.output_channel_created,
        crm_group_id: result.crm_group,
        crm_invite_link: result.crm_invite_link,
        agents: result.agents,
        channel,
    }
}

/// The 429 or 502 of a failed step, its message naming the step, the cause and what was undone.
fn failed(
    lang: Lang,
    step: SetupStep,
    telegram_error: Option<TelegramError>,
    rollback: Rollback,
) -> Response {
    let body = SetupFailedBody {
        success: false,
        error: "setup_failed",
        message: failure_message(lang, step, telegram_error.as_ref(), &rollback),
        step,
        telegram_error,
        rollback,
    };
    // The account's pace (jobbot's limiter or Telegram's flood wait) refused it for now: a later
    // try may succeed (429). Any other refusal is Telegram's answer to this request (502).
    let status = match &body.telegram_error {
        None if step != SetupStep::SaveConfiguration => StatusCode::TOO_MANY_REQUESTS,
        Some(TelegramError::FloodWait { .. }) => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::BAD_GATEWAY,
    };
    (status, Json(body)).into_response()
}

fn failure_message(
    lang: Lang,
    step: SetupStep,
    error: Option<&TelegramError>,
    rollback: &Rollback,
) -> String {
    let list = |chats: Vec<ChatId>| {
        chats
            .iter()
            .map(ChatId::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let deleted = list(rollback.deleted.clone());
    let left = list(rollback.left.iter().map(|left| left.chat).collect());
    let nothing_created = rollback.deleted.is_empty() && rollback.left.is_empty();
    // Telegram's refusal in its English words: the typed value is in `telegram_error`.
    let (rate_limited, refusal) = match error {
        Some(error) => (false, format!(": {error}")),
        None => (step != SetupStep::SaveConfiguration, String::new()),
    };
    let mut message = match lang {
        Lang::En => {
            let cause = if rate_limited {
                ": the account's rate limit did not allow it in time".to_owned()
            } else {
                refusal
            };
            format!("{step} failed{cause}.")
        }
        Lang::Ru => {
            let step = match step {
                SetupStep::CreateChannel => "Создание канала",
                SetupStep::CreateGroup => "Создание CRM-группы",
                SetupStep::OpenTopics => "Разрешение агентам создавать темы в CRM-группе",
                SetupStep::ExportInvite => "Получение ссылки-приглашения в CRM-группу",
                SetupStep::AddAgents => "Добавление агентов в CRM-группу",
                SetupStep::SaveConfiguration => "Сохранение настроек канала",
            };
            let cause = if rate_limited {
                ": лимит аккаунта не позволил сделать это вовремя".to_owned()
            } else {
                refusal
            };
            format!("{step} не удалось{cause}.")
        }
    };
    let (none, deleted_again, could_not) = match lang {
        Lang::En => (
            " Nothing had been created.",
            " Deleted again:",
            "could not be deleted; delete them in Telegram.",
        ),
        Lang::Ru => (
            " Ничего не было создано.",
            " Удалены обратно:",
            "удалить не удалось; удалите их в Telegram.",
        ),
    };
    if nothing_created {
        message.push_str(none);
    }
    if !deleted.is_empty() {
        message.push_str(&format!("{deleted_again} {deleted}."));
    }
    if !left.is_empty() {
        message.push_str(&format!(" {left}: {could_not}"));
    }
    message
}
