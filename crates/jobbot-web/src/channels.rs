//! Output channels and their agent lists, with the seed's paths and bodies. Reads come from the
//! config store's live snapshot. A write that names the revision it read (`If-Match` or a
//! `revision` field) goes through [`ConfigStore::update`], so a stale write is refused (409)
//! instead of undoing someone else's change; a write without one (the seed's requests) is
//! applied to the configuration as it is now, read and written under the store's lock
//! ([`ConfigStore::modify`]), so two concurrent changes both land. The engine picks every change
//! up from the store's snapshot stream at once.
//!
//! [`ConfigStore::update`]: jobbot_store::ConfigStore::update
//! [`ConfigStore::modify`]: jobbot_store::ConfigStore::modify

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jobbot_core::config::{
    AgentDocument, ChannelDocument, ConfigDocument, HumanDelay, MASK, Pacing, Revision, mask_proxy,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::constraints::{self, Checks};
use crate::error::{ApiError, ErrorBody, Problem, Reason};
use crate::json::ApiJson;

/// The fields of a channel a `PUT` may set; the missing ones keep their values. Unknown fields
/// are refused (a typo must not become a key nobody reads).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelFields {
    /// The configuration revision this change is based on (or send `If-Match`); without one the
    /// change applies to the configuration as it is now.
    #[schema(schema_with = constraints::optional_revision_schema)]
    pub revision: Option<String>,
    /// Only the channel's own id (it cannot change).
    #[schema(schema_with = constraints::optional_non_blank_schema)]
    pub id: Option<String>,
    #[schema(schema_with = constraints::optional_non_blank_schema)]
    pub name: Option<String>,
    /// Where notifications go: a channel id in Bot API form (`-100…`).
    #[schema(schema_with = constraints::optional_channel_id_schema)]
    pub telegram_id: Option<i64>,
    pub enabled: Option<bool>,
    /// `@username`, t.me links or ids.
    #[schema(schema_with = constraints::optional_sources_schema)]
    pub input_sources: Option<Vec<String>>,
    #[schema(schema_with = constraints::optional_keywords_schema)]
    pub include_keywords: Option<Vec<String>>,
    #[schema(schema_with = constraints::optional_keywords_schema)]
    pub exclude_keywords: Option<Vec<String>>,
    pub require_all_includes: Option<bool>,
    pub crm_enabled: Option<bool>,
    /// The CRM forum supergroup (`-100…`), or 0 for none.
    #[schema(schema_with = constraints::optional_group_id_schema)]
    pub crm_group_id: Option<i64>,
    /// `https://t.me/+HASH`: agents join the CRM group with it. An empty string removes it.
    #[schema(schema_with = constraints::optional_invite_link_schema)]
    pub crm_invite_link: Option<String>,
    pub agents: Option<Vec<AgentFields>>,
    /// The seed's old single-agent form: with `agent_session_name`, one more agent.
    #[schema(schema_with = constraints::optional_phone_schema)]
    pub agent_phone: Option<String>,
    #[schema(schema_with = constraints::optional_session_name_schema)]
    pub agent_session_name: Option<String>,
    pub auto_response_enabled: Option<bool>,
    /// Text with `{first_name}`, `{channel_name}`, `{source_title}`, `{vacancy_link}`.
    #[schema(schema_with = constraints::optional_template_schema)]
    pub auto_response_template: Option<String>,
    pub ai_conversation_enabled: Option<bool>,
    /// `ai_config.mode`: `manual`, `suggest` or `auto`.
    #[schema(schema_with = constraints::optional_ai_mode_schema)]
    pub ai_mode: Option<String>,
    /// `ai_config.llm_provider`: a preset (`groq`, `openai`, …) or an `llm_providers` entry.
    pub ai_provider: Option<String>,
    /// `ai_config.llm_model`; empty: the provider's default model.
    pub ai_model: Option<String>,
    /// `prompts`: all six texts the AI is given; an empty one uses the built-in default.
    pub ai_prompts: Option<PromptFields>,
    /// `ai_config.fallback`: the providers tried in order when the primary fails for good (each
    /// a known provider; `model` empty: its default model). An empty list removes the chain.
    pub ai_fallback: Option<Vec<FallbackFields>>,
    /// `ai_config.reply_delay_seconds`: `[min, max]` seconds before an `auto` reply goes out.
    #[schema(schema_with = constraints::optional_reply_delay_schema)]
    pub ai_reply_delay_seconds: Option<[i64; 2]>,
    /// `ai_config.max_replies_per_day`: AI replies (sent or suggested) per conversation per UTC
    /// day.
    #[schema(schema_with = constraints::optional_reply_cap_schema)]
    pub ai_max_replies_per_day: Option<i64>,
    /// `ai_config.temperature`: from 0 to 2.
    #[schema(schema_with = constraints::optional_temperature_schema)]
    pub ai_temperature: Option<f64>,
    /// `ai_config.max_tokens`: the longest answer the model may give, in tokens.
    #[schema(schema_with = constraints::optional_max_tokens_schema)]
    pub ai_max_tokens: Option<i64>,
    /// `ai_config.context_window_messages`: how many past messages of the conversation the
    /// model sees.
    #[schema(schema_with = constraints::optional_context_window_schema)]
    pub ai_context_window_messages: Option<i64>,
    pub instant_response: Option<bool>,
    #[schema(schema_with = constraints::optional_delay_schema)]
    pub human_delay: Option<HumanDelay>,
    #[schema(schema_with = constraints::optional_pacing_schema)]
    pub agent_pacing: Option<Pacing>,
}

/// A new channel: `name` and `telegram_id` are required, the other fields take their defaults
/// when missing.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewChannel {
    /// The configuration revision this change is based on (or send `If-Match`); without one the
    /// channel is added to the configuration as it is now.
    #[schema(schema_with = constraints::optional_revision_schema)]
    pub revision: Option<String>,
    /// `channel_<8 hex>` when absent.
    #[schema(schema_with = constraints::optional_non_blank_schema)]
    pub id: Option<String>,
    #[schema(schema_with = constraints::non_blank_schema, required = true)]
    pub name: Option<String>,
    /// Where notifications go: a channel id in Bot API form (`-100…`).
    #[schema(schema_with = constraints::channel_id_schema, required = true)]
    pub telegram_id: Option<i64>,
    pub enabled: Option<bool>,
    #[schema(schema_with = constraints::optional_sources_schema)]
    pub input_sources: Option<Vec<String>>,
    #[schema(schema_with = constraints::optional_keywords_schema)]
    pub include_keywords: Option<Vec<String>>,
    #[schema(schema_with = constraints::optional_keywords_schema)]
    pub exclude_keywords: Option<Vec<String>>,
    pub require_all_includes: Option<bool>,
    pub crm_enabled: Option<bool>,
    #[schema(schema_with = constraints::optional_group_id_schema)]
    pub crm_group_id: Option<i64>,
    #[schema(schema_with = constraints::optional_invite_link_schema)]
    pub crm_invite_link: Option<String>,
    pub agents: Option<Vec<AgentFields>>,
    #[schema(schema_with = constraints::optional_phone_schema)]
    pub agent_phone: Option<String>,
    #[schema(schema_with = constraints::optional_session_name_schema)]
    pub agent_session_name: Option<String>,
    pub auto_response_enabled: Option<bool>,
    #[schema(schema_with = constraints::optional_template_schema)]
    pub auto_response_template: Option<String>,
    pub ai_conversation_enabled: Option<bool>,
    /// `ai_config.mode`: `manual`, `suggest` or `auto`.
    #[schema(schema_with = constraints::optional_ai_mode_schema)]
    pub ai_mode: Option<String>,
    /// `ai_config.llm_provider`: a preset (`groq`, `openai`, …) or an `llm_providers` entry.
    pub ai_provider: Option<String>,
    /// `ai_config.llm_model`; empty: the provider's default model.
    pub ai_model: Option<String>,
    /// `prompts`: all six texts the AI is given; an empty one uses the built-in default.
    pub ai_prompts: Option<PromptFields>,
    /// `ai_config.fallback`: the providers tried in order when the primary fails for good (each
    /// a known provider; `model` empty: its default model). An empty list removes the chain.
    pub ai_fallback: Option<Vec<FallbackFields>>,
    /// `ai_config.reply_delay_seconds`: `[min, max]` seconds before an `auto` reply goes out.
    #[schema(schema_with = constraints::optional_reply_delay_schema)]
    pub ai_reply_delay_seconds: Option<[i64; 2]>,
    /// `ai_config.max_replies_per_day`: AI replies (sent or suggested) per conversation per UTC
    /// day.
    #[schema(schema_with = constraints::optional_reply_cap_schema)]
    pub ai_max_replies_per_day: Option<i64>,
    /// `ai_config.temperature`: from 0 to 2.
    #[schema(schema_with = constraints::optional_temperature_schema)]
    pub ai_temperature: Option<f64>,
    /// `ai_config.max_tokens`: the longest answer the model may give, in tokens.
    #[schema(schema_with = constraints::optional_max_tokens_schema)]
    pub ai_max_tokens: Option<i64>,
    /// `ai_config.context_window_messages`: how many past messages of the conversation the
    /// model sees.
    #[schema(schema_with = constraints::optional_context_window_schema)]
    pub ai_context_window_messages: Option<i64>,
    pub instant_response: Option<bool>,
    #[schema(schema_with = constraints::optional_delay_schema)]
    pub human_delay: Option<HumanDelay>,
    #[schema(schema_with = constraints::optional_pacing_schema)]
    pub agent_pacing: Option<Pacing>,
}

/// A channel's `prompts`, as the original's editor writes them: the base context and one text
/// per phase of the conversation. An empty text means the built-in default.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromptFields {
    #[schema(schema_with = constraints::prompt_schema)]
    pub base_context: String,
    #[schema(schema_with = constraints::prompt_schema)]
    pub discovery: String,
    #[schema(schema_with = constraints::prompt_schema)]
    pub engagement: String,
    #[schema(schema_with = constraints::prompt_schema)]
    pub call_ready: String,
    #[schema(schema_with = constraints::prompt_schema)]
    pub call_pending: String,
    #[schema(schema_with = constraints::prompt_schema)]
    pub call_declined: String,
}

impl PromptFields {
    fn texts(&self) -> [(&'static str, &str); 6] {
        [
            ("base_context", &self.base_context),
            ("discovery", &self.discovery),
            ("engagement", &self.engagement),
            ("call_ready", &self.call_ready),
            ("call_pending", &self.call_pending),
            ("call_declined", &self.call_declined),
        ]
    }

    fn check(&self, checks: &mut Checks, path: &str) {
        for (key, text) in self.texts() {
            checks.length(format!("{path}.{key}"), text, 0, constraints::PROMPT_MAX);
        }
    }

    fn into_prompts(self) -> jobbot_core::ai::Prompts {
        jobbot_core::ai::Prompts {
            base_context: self.base_context,
            discovery: self.discovery,
            engagement: self.engagement,
            call_ready: self.call_ready,
            call_pending: self.call_pending,
            call_declined: self.call_declined,
        }
    }
}

/// One provider of a channel's fallback chain.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FallbackFields {
    /// A preset (`groq`, `gemini`, …) or an `llm_providers` entry.
    #[schema(schema_with = constraints::non_blank_schema)]
    pub provider: String,
    /// Empty or absent: the provider's default model.
    pub model: Option<String>,
}

impl FallbackFields {
    fn into_choice(self) -> jobbot_core::ai::ModelChoice {
        jobbot_core::ai::ModelChoice {
            provider: self.provider.trim().to_owned(),
            model: self
                .model
                .map(|model| model.trim().to_owned())
                .filter(|model| !model.is_empty()),
        }
    }
}

impl From<NewChannel> for ChannelFields {
    fn from(new: NewChannel) -> Self {
        Self {
            revision: new.revision,
            id: new.id,
            name: new.name,
            telegram_id: new.telegram_id,
            enabled: new.enabled,
            input_sources: new.input_sources,
            include_keywords: new.include_keywords,
            exclude_keywords: new.exclude_keywords,
            require_all_includes: new.require_all_includes,
            crm_enabled: new.crm_enabled,
            crm_group_id: new.crm_group_id,
            crm_invite_link: new.crm_invite_link,
            agents: new.agents,
            agent_phone: new.agent_phone,
            agent_session_name: new.agent_session_name,
            auto_response_enabled: new.auto_response_enabled,
            auto_response_template: new.auto_response_template,
            ai_conversation_enabled: new.ai_conversation_enabled,
            ai_mode: new.ai_mode,
            ai_provider: new.ai_provider,
            ai_model: new.ai_model,
            ai_prompts: new.ai_prompts,
            ai_fallback: new.ai_fallback,
            ai_reply_delay_seconds: new.ai_reply_delay_seconds,
            ai_max_replies_per_day: new.ai_max_replies_per_day,
            ai_temperature: new.ai_temperature,
            ai_max_tokens: new.ai_max_tokens,
            ai_context_window_messages: new.ai_context_window_messages,
            instant_response: new.instant_response,
            human_delay: new.human_delay,
            agent_pacing: new.agent_pacing,
        }
    }
}

impl ChannelFields {
    /// Every value against its pattern or range (422); rules across fields come later (409).
    fn check(&self) -> Result<(), ApiError> {
        let mut checks = Checks::new();
        checks.optional("revision", self.revision.as_deref(), constraints::REVISION);
        checks.optional("id", self.id.as_deref(), constraints::NON_BLANK);
        checks.optional("name", self.name.as_deref(), constraints::NON_BLANK);
        if let Some(id) = self.telegram_id {
            checks.channel_id("telegram_id", id);
        }
        if let Some(id) = self.crm_group_id.filter(|id| *id != 0) {
            checks.channel_id("crm_group_id", id);
        }
        if let Some(sources) = &self.input_sources {
            checks.each("input_sources", sources, constraints::SOURCE);
        }
        if let Some(keywords) = &self.include_keywords {
            checks.each("include_keywords", keywords, constraints::KEYWORD);
        }
        if let Some(keywords) = &self.exclude_keywords {
            checks.each("exclude_keywords", keywords, constraints::KEYWORD);
        }
        checks.optional(
            "crm_invite_link",
            self.crm_invite_link.as_deref(),
            constraints::INVITE_LINK,
        );
        for (index, agent) in self.agents.iter().flatten().enumerate() {
            agent.check(&mut checks, &format!("agents[{index}]"));
        }
        checks.optional(
            "agent_phone",
            self.agent_phone.as_deref(),
            constraints::PHONE,
        );
        checks.optional(
            "agent_session_name",
            self.agent_session_name.as_deref(),
            constraints::SESSION_NAME,
        );
        checks.optional(
            "auto_response_template",
            self.auto_response_template.as_deref(),
            constraints::TEMPLATE,
        );
        if let Some(prompts) = &self.ai_prompts {
            prompts.check(&mut checks, "ai_prompts");
        }
        for (index, entry) in self.ai_fallback.iter().flatten().enumerate() {
            checks.rule(
                format!("ai_fallback[{index}].provider"),
                &entry.provider,
                constraints::NON_BLANK,
            );
        }
        if let Some(bounds) = self.ai_reply_delay_seconds {
            checks.reply_delay("ai_reply_delay_seconds", bounds);
        }
        if let Some(cap) = self.ai_max_replies_per_day {
            checks.range("ai_max_replies_per_day", cap, 0, i64::from(u32::MAX));
        }
        if let Some(temperature) = self.ai_temperature {
            checks.temperature("ai_temperature", temperature);
        }
        if let Some(tokens) = self.ai_max_tokens {
            checks.range("ai_max_tokens", tokens, 1, constraints::MAX_AI_TOKENS);
        }
        if let Some(window) = self.ai_context_window_messages {
            checks.range(
                "ai_context_window_messages",
                window,
                1,
                i64::from(jobbot_core::ai::AiSettings::MAX_CONTEXT_WINDOW),
            );
        }
        if let Some(delay) = &self.human_delay {
            checks.human_delay("human_delay", delay);
        }
        if let Some(pacing) = &self.agent_pacing {
            checks.pacing("agent_pacing", pacing);
        }
        checks.finish()?;
        match self.ai_reply_delay_seconds {
            Some(bounds) => constraints::delay_order("ai_reply_delay_seconds", bounds),
            None => Ok(()),
        }
    }
}

/// An agent of a channel.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentFields {
    /// `+` and 8 to 15 digits (spaces, dots, dashes and brackets between are fine).
    #[schema(schema_with = constraints::phone_schema)]
    pub phone: String,
    /// The session file's name, `sessions/{session_name}.session`.
    #[schema(schema_with = constraints::session_name_schema)]
    pub session_name: String,
    /// `socks5://[user:pass@]host:port`. Responses mask the password; sending the masked form
    /// back keeps the stored one.
    #[schema(schema_with = constraints::optional_proxy_schema)]
    pub proxy: Option<String>,
    #[schema(schema_with = constraints::optional_pacing_schema)]
    pub pacing: Option<Pacing>,
}

impl AgentFields {
    fn check(&self, checks: &mut Checks, path: &str) {
        checks.rule(format!("{path}.phone"), &self.phone, constraints::PHONE);
        checks.rule(
            format!("{path}.session_name"),
            &self.session_name,
            constraints::SESSION_NAME,
        );
        checks.optional(
            format!("{path}.proxy"),
            self.proxy.as_deref(),
            constraints::PROXY,
        );
        if let Some(pacing) = &self.pacing {
            checks.pacing(&format!("{path}.pacing"), pacing);
        }
    }
}

/// The seed's `AgentConfig`, plus an optional revision, proxy and pacing.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddAgentRequest {
    #[schema(schema_with = constraints::optional_revision_schema)]
    pub revision: Option<String>,
    #[schema(schema_with = constraints::phone_schema)]
    pub phone: String,
    #[schema(schema_with = constraints::session_name_schema)]
    pub session_name: String,
    #[schema(schema_with = constraints::optional_proxy_schema)]
    pub proxy: Option<String>,
    #[schema(schema_with = constraints::optional_pacing_schema)]
    pub pacing: Option<Pacing>,
}

/// Several agent changes to one channel in one write.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkAgentsRequest {
    #[schema(schema_with = constraints::optional_revision_schema)]
    pub revision: Option<String>,
    #[serde(default)]
    pub add: Vec<AgentFields>,
    /// Session names to remove.
    #[serde(default)]
    #[schema(schema_with = constraints::session_names_or_none_schema)]
    pub remove: Vec<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RevisionQuery {
    /// The configuration revision the deletion is based on (or send `If-Match`); without one
    /// the deletion applies to the configuration as it is now.
    #[param(value_type = String, required = false)]
    pub revision: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelsResponse {
    pub success: bool,
    pub revision: String,
    /// Channels as in the configuration file, proxy passwords masked.
    #[schema(value_type = Vec<Object>)]
    pub channels: Vec<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelResponse {
    pub success: bool,
    pub message: String,
    pub channel_id: String,
    pub revision: String,
    #[schema(value_type = Object)]
    pub channel: Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentsResponse {
    pub success: bool,
    pub revision: String,
    #[schema(value_type = Vec<Object>)]
    pub agents: Vec<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RevisionResponse {
    pub success: bool,
    pub message: String,
    /// The configuration's revision after the write.
    pub revision: String,
}

/// Every output channel.
#[utoipa::path(get, path = "/api/channels", tag = "channels",
    responses((status = 200, body = ChannelsResponse, description = "With the revision as ETag")))]
pub async fn list_channels(State(state): State<AppState>) -> Response {
    let snapshot = state.inner.config.snapshot();
    let channels = snapshot
        .document
        .output_channels
        .iter()
        .map(channel_view)
        .collect();
    with_etag(
        &snapshot.revision,
        ChannelsResponse {
            success: true,
            revision: snapshot.revision.to_string(),
            channels,
        },
    )
}

/// Creates a channel.
#[utoipa::path(post, path = "/api/channels", tag = "channels", request_body = NewChannel,
    params(("If-Match" = Option<String>, Header, description = "The revision the change is based on")),
    responses((status = 201, body = ChannelResponse), (status = 409, body = ErrorBody,
               description = "The revision is stale (`conflict`), or the channel breaks a rule of the configuration (`rejected`)"),
              (status = 422, body = ErrorBody)))]
pub async fn create_channel(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(new): ApiJson<NewChannel>,
) -> Result<Response, ApiError> {
    // Required, checked here so that a missing one is named like any other field.
    let mut checks = Checks::new();
    if new.name.is_none() {
        checks.add(Problem::because("name", Reason::Required));
    }
    if new.telegram_id.is_none() {
        checks.add(Problem::because("telegram_id", Reason::Required));
    }
    checks.finish()?;
    let mut fields = ChannelFields::from(new);
    fields.check()?;
    let expected = expected_revision(&headers, fields.revision.take())?;
    let id = match fields.id.take() {
        Some(id) if id.trim().is_empty() => {
            return Err(ApiError::invalid_because("id", Reason::Required));
        }
        Some(id) => id,
        None => format!("channel_{}", crate::auth::random_hex(4)),
    };
    let mut index = 0;
    let revision = write(&state, expected, |document: &mut ConfigDocument| {
        if document
            .output_channels
            .iter()
            .any(|channel| channel.id == id)
        {
            return Err(ApiError::rejected("id", Reason::ChannelExists));
        }
        let mut channel = new_channel_document(&id);
        let proxies = StoredProxies::of(document);
        apply_fields(&mut channel, fields, &proxies)?;
        index = document.output_channels.len();
        document.output_channels.push(channel);
        Ok(())
    })
    .await
    .map_err(|error| relative_paths(error, |path| strip_prefix(path, &channel_path(index))))?;
    let channel = find_channel(&state, &id)?;
    let mut response = with_etag(
        &revision,
        ChannelResponse {
            success: true,
            message: format!("channel {id} created"),
            channel_id: id.clone(),
            revision: revision.to_string(),
            channel: channel_view(&channel),
        },
    );
    *response.status_mut() = StatusCode::CREATED;
    if let Ok(location) = HeaderValue::from_str(&format!("/api/channels/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// One channel.
#[utoipa::path(get, path = "/api/channels/{id}", tag = "channels",
    params(("id" = String, Path, description = "The channel's id")),
    responses((status = 200, body = ChannelResponse), (status = 404, body = ErrorBody)))]
pub async fn get_channel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let snapshot = state.inner.config.snapshot();
    let channel = channel_in(&snapshot.document, &id)?;
    Ok(with_etag(
        &snapshot.revision,
        ChannelResponse {
            success: true,
            message: String::new(),
            channel_id: id.clone(),
            revision: snapshot.revision.to_string(),
            channel: channel_view(channel),
        },
    ))
}

/// Changes the fields given; the others keep their values.
#[utoipa::path(put, path = "/api/channels/{id}", tag = "channels", request_body = ChannelFields,
    params(("id" = String, Path, description = "The channel's id"),
           ("If-Match" = Option<String>, Header, description = "The revision the change is based on")),
    responses((status = 200, body = ChannelResponse), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody,
               description = "The revision is stale (`conflict`), or the change breaks a rule of the configuration (`rejected`)"),
              (status = 422, body = ErrorBody)))]
pub async fn update_channel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(mut fields): ApiJson<ChannelFields>,
) -> Result<Response, ApiError> {
    fields.check()?;
    let expected = expected_revision(&headers, fields.revision.take())?;
    if fields.id.as_ref().is_some_and(|given| *given != id) {
        return Err(ApiError::rejected("id", Reason::IdFixed));
    }
    let mut index = 0;
    let revision = write(&state, expected, |document: &mut ConfigDocument| {
        index = channel_index(document, &id)?;
        let proxies = StoredProxies::of(document);
        apply_fields(&mut document.output_channels[index], fields, &proxies)
    })
    .await
    .map_err(|error| relative_paths(error, |path| strip_prefix(path, &channel_path(index))))?;
    let channel = find_channel(&state, &id)?;
    Ok(with_etag(
        &revision,
        ChannelResponse {
            success: true,
            message: format!("channel {id} updated"),
            channel_id: id.clone(),
            revision: revision.to_string(),
            channel: channel_view(&channel),
        },
    ))
}

/// Removes a channel from the configuration (its Telegram channel and CRM group stay).
#[utoipa::path(delete, path = "/api/channels/{id}", tag = "channels",
    params(("id" = String, Path, description = "The channel's id"), RevisionQuery,
           ("If-Match" = Option<String>, Header, description = "The revision the change is based on")),
    responses((status = 200, body = RevisionResponse), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn delete_channel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<RevisionQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(crate::json::query_error)?;
    let expected = expected_revision(&headers, query.revision)?;
    let revision = write(&state, expected, |document: &mut ConfigDocument| {
        let index = channel_index(document, &id)?;
        document.output_channels.remove(index);
        Ok::<(), ApiError>(())
    })
    .await?;
    tracing::info!(target: "web", channel = %id, "channel removed from the configuration");
    Ok(with_etag(
        &revision,
        RevisionResponse {
            success: true,
            message: format!("channel {id} removed"),
            revision: revision.to_string(),
        },
    ))
}

/// A channel's agents as configured.
#[utoipa::path(get, path = "/api/channels/{id}/agents", tag = "channels",
    params(("id" = String, Path, description = "The channel's id")),
    responses((status = 200, body = AgentsResponse), (status = 404, body = ErrorBody)))]
pub async fn list_channel_agents(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let snapshot = state.inner.config.snapshot();
    let channel = channel_in(&snapshot.document, &id)?;
    Ok(with_etag(
        &snapshot.revision,
        AgentsResponse {
            success: true,
            revision: snapshot.revision.to_string(),
            agents: channel.agents.iter().map(agent_view).collect(),
        },
    ))
}

/// Adds an agent to a channel.
#[utoipa::path(post, path = "/api/channels/{id}/agents", tag = "channels", request_body = AddAgentRequest,
    params(("id" = String, Path, description = "The channel's id"),
           ("If-Match" = Option<String>, Header, description = "The revision the change is based on")),
    responses((status = 201, body = AgentsResponse), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody,
               description = "The revision is stale, the session is an agent of the channel already, or the agent breaks a rule of the configuration"),
              (status = 422, body = ErrorBody)))]
pub async fn add_channel_agent(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<AddAgentRequest>,
) -> Result<Response, ApiError> {
    let mut checks = Checks::new();
    checks.optional("revision", body.revision.as_deref(), constraints::REVISION);
    checks.finish()?;
    let expected = expected_revision(&headers, body.revision)?;
    let agent = AgentFields {
        phone: body.phone,
        session_name: body.session_name,
        proxy: body.proxy,
        pacing: body.pacing,
    };
    let mut checks = Checks::new();
    checks.rule("phone", &agent.phone, constraints::PHONE);
    checks.rule(
        "session_name",
        &agent.session_name,
        constraints::SESSION_NAME,
    );
    checks.optional("proxy", agent.proxy.as_deref(), constraints::PROXY);
    if let Some(pacing) = &agent.pacing {
        checks.pacing("pacing", pacing);
    }
    checks.finish()?;
    let mut prefix = String::new();
    let revision = write(&state, expected, |document: &mut ConfigDocument| {
        let index = channel_index(document, &id)?;
        let proxies = StoredProxies::of(document);
        let channel = &mut document.output_channels[index];
        if channel
            .agents
            .iter()
            .any(|a| a.session_name == agent.session_name)
        {
            return Err(ApiError::rejected("session_name", Reason::AlreadyAgent));
        }
        prefix = format!("{}.agents[{}]", channel_path(index), channel.agents.len());
        let agent = agent_document(agent, &channel.agents, &proxies);
        channel.agents.push(agent);
        Ok(())
    })
    .await
    .map_err(|error| relative_paths(error, |path| strip_prefix(path, &prefix)))?;
    let mut response = agents_response(&state, &id, &revision)?;
    *response.status_mut() = StatusCode::CREATED;
    Ok(response)
}

/// Removes an agent from a channel.
#[utoipa::path(delete, path = "/api/channels/{id}/agents/{session}", tag = "channels",
    params(("id" = String, Path, description = "The channel's id"),
           ("session" = String, Path, description = "The agent's session name"), RevisionQuery,
           ("If-Match" = Option<String>, Header, description = "The revision the change is based on")),
    responses((status = 200, body = AgentsResponse), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn remove_channel_agent(
    State(state): State<AppState>,
    Path((id, session)): Path<(String, String)>,
    headers: HeaderMap,
    query: Result<Query<RevisionQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(crate::json::query_error)?;
    constraints::session_name("session", &session)?;
    let expected = expected_revision(&headers, query.revision)?;
    let revision = write(&state, expected, |document: &mut ConfigDocument| {
        let index = channel_index(document, &id)?;
        let agents = &mut document.output_channels[index].agents;
        let before = agents.len();
        agents.retain(|agent| agent.session_name != session);
        if agents.len() == before {
            return Err(ApiError::NotFound(format!(
                "{session:?} is not an agent of channel {id:?}"
            )));
        }
        Ok(())
    })
    .await?;
    agents_response(&state, &id, &revision)
}

/// Adds and removes several agents of a channel in one write.
#[utoipa::path(post, path = "/api/channels/{id}/agents/bulk", tag = "channels", request_body = BulkAgentsRequest,
    params(("id" = String, Path, description = "The channel's id"),
           ("If-Match" = Option<String>, Header, description = "The revision the change is based on")),
    responses((status = 200, body = AgentsResponse), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody,
               description = "The revision is stale, a session to remove is not an agent, or the result breaks a rule of the configuration"),
              (status = 422, body = ErrorBody)))]
pub async fn bulk_channel_agents(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<BulkAgentsRequest>,
) -> Result<Response, ApiError> {
    let mut checks = Checks::new();
    checks.optional("revision", body.revision.as_deref(), constraints::REVISION);
    for (index, agent) in body.add.iter().enumerate() {
        agent.check(&mut checks, &format!("add[{index}]"));
    }
    checks.each("remove", &body.remove, constraints::SESSION_NAME);
    checks.finish()?;
    let expected = expected_revision(&headers, body.revision)?;
    let mut kept = 0;
    let mut prefix = String::new();
    let revision = write(&state, expected, |document: &mut ConfigDocument| {
        let index = channel_index(document, &id)?;
        let proxies = StoredProxies::of(document);
        let channel = &mut document.output_channels[index];
        let mut problems = Vec::new();
        for (position, session) in body.remove.iter().enumerate() {
            if !channel
                .agents
                .iter()
                .any(|agent| agent.session_name == *session)
            {
                problems.push(Problem::new(
                    format!("remove[{position}]"),
                    "is not an agent of this channel",
                ));
            }
        }
        if !problems.is_empty() {
            return Err(ApiError::Rejected(problems));
        }
        let previous = std::mem::take(&mut channel.agents);
        channel.agents = previous
            .iter()
            .filter(|agent| !body.remove.contains(&agent.session_name))
            .cloned()
            .collect();
        kept = channel.agents.len();
        prefix = format!("{}.agents", channel_path(index));
        for agent in body.add {
            let agent = agent_document(agent, &previous, &proxies);
            channel.agents.push(agent);
        }
        Ok(())
    })
    .await
    .map_err(|error| {
        relative_paths(error, |path| {
            // `agents[k]` with k past the kept ones is the request's `add[k - kept]`.
            let rest = path.strip_prefix(&prefix)?.strip_prefix('[')?;
            let (number, tail) = rest.split_once(']')?;
            let position = number.parse::<usize>().ok()?.checked_sub(kept)?;
            Some(format!("add[{position}]{tail}"))
        })
    })?;
    agents_response(&state, &id, &revision)
}

/// The live state of a channel's agent pool: total and available agents, and per agent its link
/// state, flood wait, pacing headroom and messages sent in the last minute, hour and day.
#[utoipa::path(get, path = "/api/channels/{id}/agents/status", tag = "channels",
    params(("id" = String, Path, description = "The channel's id")),
    responses((status = 200, description = "The pool's status (the seed's `get_status()` shape)", body = Object),
              (status = 404, body = ErrorBody)))]
pub async fn channel_agents_status(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let configured = state.inner.config.snapshot().config.channel(&id).is_some();
    if !configured {
        return Err(no_channel(&id));
    }
    let status = match state.inner.engine.pool_status(&id).await? {
        Some(pool) => serde_json::to_value(pool).map_err(ApiError::internal)?,
        // A disabled channel has no pool.
        None => serde_json::json!({
            "channel_id": id, "total_agents": 0, "available_agents": 0, "agents": [], "active": false
        }),
    };
    Ok(Json(status))
}

/// The revision a write is based on: `If-Match` (an ETag from a GET) or the body's `revision`;
/// `None` when the request names none (then the change applies to the configuration as it is).
pub(crate) fn expected_revision(
    headers: &HeaderMap,
    from_body: Option<String>,
) -> Result<Option<Revision>, ApiError> {
    if let Some(value) = headers.get(header::IF_MATCH) {
        let text = value.to_str().unwrap_or_default();
        let mut checks = Checks::new();
        checks.rule("If-Match", text, constraints::IF_MATCH);
        checks.finish()?;
        let bare = text.trim_start_matches("W/").trim_matches('"');
        return Ok(Revision::parse(bare));
    }
    match from_body {
        Some(text) => {
            let mut checks = Checks::new();
            checks.rule("revision", &text, constraints::REVISION);
            checks.finish()?;
            Ok(Revision::parse(&text))
        }
        None => Ok(None),
    }
}

/// Writes `edit` at revision `expected` (refused if the file moved on), or without one as one
/// atomic change to the current configuration.
async fn write(
    state: &AppState,
    expected: Option<Revision>,
    edit: impl FnOnce(&mut ConfigDocument) -> Result<(), ApiError>,
) -> Result<Revision, ApiError> {
    let config = &state.inner.config;
    match expected {
        Some(expected) => config.update(&expected, edit).await,
        None => config.modify(edit).await,
    }
}

pub(crate) fn with_etag(revision: &Revision, body: impl Serialize) -> Response {
    let mut response = Json(body).into_response();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{revision}\"")) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

fn agents_response(state: &AppState, id: &str, revision: &Revision) -> Result<Response, ApiError> {
    let channel = find_channel(state, id)?;
    Ok(with_etag(
        revision,
        AgentsResponse {
            success: true,
            revision: revision.to_string(),
            agents: channel.agents.iter().map(agent_view).collect(),
        },
    ))
}

fn find_channel(state: &AppState, id: &str) -> Result<ChannelDocument, ApiError> {
    channel_in(&state.inner.config.snapshot().document, id).cloned()
}

pub(crate) fn channel_in<'document>(
    document: &'document ConfigDocument,
    id: &str,
) -> Result<&'document ChannelDocument, ApiError> {
    document
        .output_channels
        .iter()
        .find(|channel| channel.id == id)
        .ok_or_else(|| no_channel(id))
}

pub(crate) fn channel_index(document: &ConfigDocument, id: &str) -> Result<usize, ApiError> {
    document
        .output_channels
        .iter()
        .position(|channel| channel.id == id)
        .ok_or_else(|| no_channel(id))
}

fn no_channel(id: &str) -> ApiError {
    ApiError::NotFound(format!("no channel with id {id:?}"))
}

fn channel_path(index: usize) -> String {
    format!("output_channels[{index}]")
}

/// `output_channels[2].agents[1].phone` under prefix `output_channels[2]` is `agents[1].phone`.
fn strip_prefix(path: &str, prefix: &str) -> Option<String> {
    let rest = path.strip_prefix(prefix)?;
    if rest.is_empty() {
        return Some(String::new());
    }
    rest.strip_prefix('.')
        .map(str::to_owned)
        .or_else(|| rest.starts_with('[').then(|| rest.to_owned()))
}

/// Rewrites the configuration paths of validation problems into the request's terms where the
/// problem is about what the request touched; each keeps its `config_path`.
fn relative_paths(error: ApiError, map: impl Fn(&str) -> Option<String>) -> ApiError {
    let relative = |problems: Vec<Problem>| -> Vec<Problem> {
        problems
            .into_iter()
            .map(|mut problem| {
                if let Some(config_path) = &problem.config_path
                    && let Some(path) = map(config_path)
                {
                    problem.path = path;
                }
                problem
            })
            .collect()
    };
    match error {
        ApiError::Invalid(problems) => ApiError::Invalid(relative(problems)),
        ApiError::Rejected(problems) => ApiError::Rejected(relative(problems)),
        other => other,
    }
}

fn new_channel_document(id: &str) -> ChannelDocument {
    let mut channel: ChannelDocument = serde_json::from_value(serde_json::json!({}))
        .expect("a channel has defaults for every field");
    channel.id = id.to_owned();
    channel
}

fn apply_fields(
    channel: &mut ChannelDocument,
    fields: ChannelFields,
    proxies: &StoredProxies,
) -> Result<(), ApiError> {
    let ChannelFields {
        revision: _,
        id: _,
        name,
        telegram_id,
        enabled,
        input_sources,
        include_keywords,
        exclude_keywords,
        require_all_includes,
        crm_enabled,
        crm_group_id,
        crm_invite_link,
        agents,
        agent_phone,
        agent_session_name,
        auto_response_enabled,
        auto_response_template,
        ai_conversation_enabled,
        ai_mode,
        ai_provider,
        ai_model,
        ai_prompts,
        ai_fallback,
        ai_reply_delay_seconds,
        ai_max_replies_per_day,
        ai_temperature,
        ai_max_tokens,
        ai_context_window_messages,
        instant_response,
        human_delay,
        agent_pacing,
    } = fields;
    let mode = ai_mode
        .map(|text| {
            jobbot_core::ai::AiMode::parse(&text)
                .ok_or_else(|| ApiError::invalid("ai_mode", "must be manual, suggest or auto"))
        })
        .transpose()?;
    jobbot_core::ai::AiEdit {
        enabled: None,
        mode,
        provider: ai_provider,
        model: ai_model.map(|model| (!model.trim().is_empty()).then_some(model)),
        prompts: ai_prompts.map(PromptFields::into_prompts),
        fallback: ai_fallback
            .map(|chain| chain.into_iter().map(FallbackFields::into_choice).collect()),
        // Both checked in range and order before (422).
        reply_delay: ai_reply_delay_seconds.map(|[min, max]| HumanDelay {
            min_seconds: u32::try_from(min).unwrap_or_default(),
            max_seconds: u32::try_from(max).unwrap_or_default(),
        }),
        max_replies_per_day: ai_max_replies_per_day
            .map(|cap| u32::try_from(cap).unwrap_or_default()),
        // Checked in range before (422).
        temperature: ai_temperature,
        max_tokens: ai_max_tokens.map(|tokens| u32::try_from(tokens).unwrap_or(1)),
        context_window_messages: ai_context_window_messages
            .map(|window| u32::try_from(window).unwrap_or(1)),
    }
    .apply(channel);
    set(&mut channel.name, name);
    set(&mut channel.telegram_id, telegram_id);
    set(&mut channel.enabled, enabled);
    set(&mut channel.input_sources, input_sources);
    set(&mut channel.filters.include_keywords, include_keywords);
    set(&mut channel.filters.exclude_keywords, exclude_keywords);
    set(
        &mut channel.filters.require_all_includes,
        require_all_includes,
    );
    set(&mut channel.crm_enabled, crm_enabled);
    set(&mut channel.crm_group_id, crm_group_id);
    if let Some(link) = crm_invite_link {
        channel.crm_invite_link = (!link.is_empty()).then_some(link);
    }
    set(&mut channel.auto_response_enabled, auto_response_enabled);
    set(&mut channel.auto_response_template, auto_response_template);
    set(
        &mut channel.ai_conversation_enabled,
        ai_conversation_enabled,
    );
    set(&mut channel.instant_response, instant_response);
    set(&mut channel.human_delay, human_delay);
    set(&mut channel.agent_pacing, agent_pacing);
    let previous = channel.agents.clone();
    if let Some(agents) = agents {
        channel.agents = agents
            .into_iter()
            .map(|agent| agent_document(agent, &previous, proxies))
            .collect();
    }
    // The seed's old single-agent form becomes one more agent, as `jobbot config migrate` does
    // with such a file (unless the list has that session already). One without the other is
    // refused by validation, as in a file.
    match (agent_phone, agent_session_name) {
        (Some(phone), Some(session_name)) => {
            if !channel
                .agents
                .iter()
                .any(|agent| agent.session_name == session_name)
            {
                let agent = AgentFields {
                    phone,
                    session_name,
                    proxy: None,
                    pacing: None,
                };
                channel
                    .agents
                    .push(agent_document(agent, &previous, proxies));
            }
        }
        (None, None) => {}
        (phone, session_name) => {
            channel.agent_phone = phone;
            channel.agent_session_name = session_name;
        }
    }
    Ok(())
}

fn set<T>(target: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *target = value;
    }
}

/// Every proxy in the configuration before a change, for telling a masked proxy sent back
/// (`socks5://user:***@host:1080`) from a new one.
struct StoredProxies(Vec<(String, String)>);

impl StoredProxies {
    fn of(document: &ConfigDocument) -> Self {
        Self(
            document
                .output_channels
                .iter()
                .flat_map(|channel| &channel.agents)
                .filter_map(|agent| {
                    agent
                        .proxy
                        .clone()
                        .map(|proxy| (agent.session_name.clone(), proxy))
                })
                .collect(),
        )
    }

    /// The stored proxy whose masked form is `given`: the session's own if it has one, else the
    /// only one with that masked form (a renamed session keeps its proxy). `None` when nothing
    /// or several different ones match: then the masked text stays, and validation refuses it
    /// (never saved as a password).
    fn unmask(&self, session: &str, given: &str) -> Option<String> {
        let matching: Vec<&(String, String)> = self
            .0
            .iter()
            .filter(|(_, stored)| mask_proxy(stored) == given)
            .collect();
        if let Some((_, own)) = matching.iter().find(|(name, _)| name == session) {
            return Some(own.clone());
        }
        let mut distinct: Vec<&String> = matching.iter().map(|(_, proxy)| proxy).collect();
        distinct.dedup();
        match distinct.as_slice() {
            [only] => Some((*only).clone()),
            _ => None,
        }
    }
}

/// The document of an agent from a request. A proxy sent back in its masked form keeps the
/// stored one, so a client can round-trip what it read without knowing the password.
fn agent_document(
    agent: AgentFields,
    previous: &[AgentDocument],
    proxies: &StoredProxies,
) -> AgentDocument {
    let stored = previous
        .iter()
        .find(|known| known.session_name == agent.session_name);
    let proxy = agent.proxy.map(|given| {
        if given.contains(MASK) {
            proxies.unmask(&agent.session_name, &given).unwrap_or(given)
        } else {
            given
        }
    });
    AgentDocument {
        phone: agent.phone,
        session_name: agent.session_name,
        proxy,
        pacing: agent.pacing,
        extra: stored.map(|known| known.extra.clone()).unwrap_or_default(),
    }
}

pub(crate) fn channel_view(channel: &ChannelDocument) -> Value {
    let mut value = serde_json::to_value(channel).unwrap_or(Value::Null);
    if let Some(agents) = value.get_mut("agents") {
        *agents = Value::Array(channel.agents.iter().map(agent_view).collect());
    }
    value
}

fn agent_view(agent: &AgentDocument) -> Value {
    let mut masked = agent.clone();
    masked.proxy = masked.proxy.as_deref().map(mask_proxy);
    serde_json::to_value(masked).unwrap_or(Value::Null)
}
