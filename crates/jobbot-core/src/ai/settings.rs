//! Typed AI settings, parsed from the configuration's raw JSON.
//!
//! The file model keeps `ai_config`, `prompts` and `llm_providers` exactly as written (so a file
//! round-trips byte for byte, unknown keys and the original's Weaviate fields included); this
//! module reads them into typed values during validation, reporting every problem with its JSON
//! path. Defaults are the original's (`original-system.md` §1.2–1.3) except `mode`: a channel
//! whose `ai_config` does not say `mode` gets `suggest`, so nothing reaches a contact without an
//! operator's action unless the file asks for `auto` (the original wrote `mode` in every file it
//! saved, so its users keep what they had).

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

use crate::config::{ConfigProblem, HumanDelay};

use super::prompt::Prompts;

/// What the AI does with a contact's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AiMode {
    /// Record the conversation only.
    Manual,
    /// Post a suggestion in the topic, marked and never relayed; an operator sends it.
    Suggest,
    /// Reply through the conversation's agent (outbox, human-like delay), mirrored in the topic.
    Auto,
}

impl AiMode {
    pub const ALL: [Self; 3] = [Self::Manual, Self::Suggest, Self::Auto];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::Suggest => "suggest",
            Self::Auto => "auto",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        Self::ALL
            .into_iter()
            .find(|mode| mode.as_str().eq_ignore_ascii_case(text))
    }
}

impl fmt::Display for AiMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A provider and, optionally, a model of it (the provider's `default_model` when `None`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelChoice {
    pub provider: String,
    pub model: Option<String>,
}

/// One channel's AI settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AiSettings {
    /// The channel's `ai_conversation_enabled`.
    pub enabled: bool,
    pub mode: AiMode,
    /// `ai_config.llm_provider` / `llm_model`.
    pub primary: ModelChoice,
    /// jobbot's `ai_config.fallback`: tried in order when the primary fails for good.
    pub fallback: Vec<ModelChoice>,
    /// `ai_config.reply_delay_seconds` (`[3, 8]`): the delay before an `auto` reply goes out.
    pub reply_delay: HumanDelay,
    /// `ai_config.context_window_messages`: how many past messages the model sees.
    pub context_window_messages: u32,
    /// `ai_config.knowledge_files`: paths relative to the data directory.
    pub knowledge_files: Vec<String>,
    /// jobbot's `ai_config.max_replies_per_day`: AI replies (sent or suggested) per conversation
    /// per UTC day.
    pub max_replies_per_day: u32,
    /// jobbot's `ai_config.opt_out_phrases`, added to the built-in ones.
    pub opt_out_phrases: Vec<String>,
    /// `ai_config.use_state_analyzer`: run the analysis step before each reply.
    pub use_state_analyzer: bool,
    /// `ai_config.temperature` and `max_tokens` (the original's client defaults).
    pub temperature: f32,
    pub max_tokens: u32,
    /// The channel's `prompts`; empty entries fall back to the built-in defaults.
    pub prompts: Prompts,
}

impl AiSettings {
    pub const DEFAULT_PROVIDER: &'static str = "groq";
    pub const DEFAULT_MODEL: &'static str = "llama-3.3-70b-versatile";
    pub const DEFAULT_CONTEXT_WINDOW: u32 = 12;
    pub const DEFAULT_MAX_REPLIES_PER_DAY: u32 = 20;
    pub const DEFAULT_TEMPERATURE: f32 = 0.7;
    pub const DEFAULT_MAX_TOKENS: u32 = 2048;
    /// The longest history the model is shown, whatever the file says.
    pub const MAX_CONTEXT_WINDOW: u32 = 200;

    /// Every model to try, in order: the primary, then the fallbacks.
    pub fn chain(&self) -> impl Iterator<Item = &ModelChoice> {
        std::iter::once(&self.primary).chain(&self.fallback)
    }
}

impl Default for AiSettings {
    /// What a channel without `ai_config` gets.
    fn default() -> Self {
        Self {
            enabled: true,
            mode: AiMode::Suggest,
            primary: ModelChoice {
                provider: Self::DEFAULT_PROVIDER.to_owned(),
                model: Some(Self::DEFAULT_MODEL.to_owned()),
            },
            fallback: Vec::new(),
            reply_delay: HumanDelay {
                min_seconds: 3,
                max_seconds: 8,
            },
            context_window_messages: Self::DEFAULT_CONTEXT_WINDOW,
            knowledge_files: Vec::new(),
            max_replies_per_day: Self::DEFAULT_MAX_REPLIES_PER_DAY,
            opt_out_phrases: Vec::new(),
            use_state_analyzer: true,
            temperature: Self::DEFAULT_TEMPERATURE,
            max_tokens: Self::DEFAULT_MAX_TOKENS,
            prompts: Prompts::default(),
        }
    }
}

/// An API key written in the file. Its `Debug` never shows it, and it has no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key itself, for the `Authorization` header and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// Where a provider's key comes from. `${NAME}` is read from the environment (or `.env`) when the
/// key is needed, never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiKeySource {
    Env(String),
    Literal(ApiKey),
}

/// One OpenAI-compatible provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    pub name: String,
    /// The API root, e.g. `https://api.openai.com/v1` (requests go to `{base_url}/chat/completions`).
    pub base_url: String,
    /// `None`: the provider takes no key (a local server).
    pub api_key: Option<ApiKeySource>,
    pub default_model: Option<String>,
}

/// The providers a configuration can use: the original's presets with the file's
/// `llm_providers` over them (an entry for a preset's name changes only the fields it writes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmProviders(BTreeMap<String, Provider>);

impl LlmProviders {
    /// The original's presets (`DEFAULT_LLM_PROVIDERS` and `llm_client.py`).
    pub fn presets() -> Self {
        let preset = |name: &str, base_url: &str, key: Option<&str>, model: &str| {
            let api_key = key.map(|key| match key.strip_prefix("${") {
                Some(rest) => ApiKeySource::Env(rest.trim_end_matches('}').to_owned()),
                None => ApiKeySource::Literal(ApiKey::new(key)),
            });
            (
                name.to_owned(),
                Provider {
                    name: name.to_owned(),
                    base_url: base_url.to_owned(),
                    api_key,
                    default_model: Some(model.to_owned()),
                },
            )
        };
        Self(BTreeMap::from([
            preset(
                "ollama",
                "http://localhost:11434/v1",
                Some("ollama"),
                "qwen2.5:3b",
            ),
            preset(
                "lm_studio",
                "http://127.0.0.1:1234/v1",
                Some("lm-studio"),
                "qwen2.5-vl-7b-instruct",
            ),
            preset(
                "openai",
                "https://api.openai.com/v1",
                Some("${OPENAI_API_KEY}"),
                "gpt-4o-mini",
            ),
            preset(
                "groq",
                "https://api.groq.com/openai/v1",
                Some("${GROQ_API_KEY}"),
                "llama-3.3-70b-versatile",
            ),
            preset(
                "together",
                "https://api.together.xyz/v1",
                Some("${TOGETHER_API_KEY}"),
                "meta-llama/Llama-3.3-70B-Instruct-Turbo",
            ),
            preset(
                "openrouter",
                "https://openrouter.ai/api/v1",
                Some("${OPENROUTER_API_KEY}"),
                "google/gemini-2.0-flash-exp:free",
            ),
            preset(
                "gemini",
                "https://generativelanguage.googleapis.com/v1beta/openai",
                Some("${GEMINI_API_KEY}"),
                "gemini-2.0-flash",
            ),
        ]))
    }

    pub fn get(&self, name: &str) -> Option<&Provider> {
        self.0.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Provider> {
        self.0.values()
    }

    /// Adds or replaces a provider (the demo's scripted one, tests).
    pub fn insert(&mut self, provider: Provider) {
        self.0.insert(provider.name.clone(), provider);
    }
}

impl Default for LlmProviders {
    fn default() -> Self {
        Self::presets()
    }
}

/// A change to a channel's AI fields, as the channel form makes it: only what it sets changes,
/// and every other key of `ai_config` and `prompts` (the original's Weaviate fields, keys jobbot
/// does not know) stays as written. The result still goes through validation before it is saved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AiEdit {
    /// `ai_conversation_enabled` (the form's "AI-диалог").
    pub enabled: Option<bool>,
    pub mode: Option<AiMode>,
    pub provider: Option<String>,
    /// `Some(None)` removes `llm_model` (the provider's default model applies).
    pub model: Option<Option<String>>,
    /// All six texts, written as the original writes them (empty ones included).
    pub prompts: Option<Prompts>,
    /// jobbot's `ai_config.fallback`, in order: a provider's name alone when it has no model of
    /// its own, else `{"provider", "model"}` (the two forms the file takes). An empty chain
    /// removes the key.
    pub fallback: Option<Vec<ModelChoice>>,
    /// `ai_config.reply_delay_seconds`, written as the original's `[min, max]`.
    pub reply_delay: Option<HumanDelay>,
    /// jobbot's `ai_config.max_replies_per_day`.
    pub max_replies_per_day: Option<u32>,
    /// `ai_config.temperature` (0 to 2, checked by the caller), `max_tokens` and
    /// `context_window_messages`.
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
    pub context_window_messages: Option<u32>,
}

impl AiEdit {
    pub fn apply(&self, channel: &mut crate::config::ChannelDocument) {
        if let Some(enabled) = self.enabled {
            channel.ai_conversation_enabled = enabled;
        }
        let touches_ai_config = self.mode.is_some()
            || self.provider.is_some()
            || self.model.is_some()
            || self.fallback.is_some()
            || self.reply_delay.is_some()
            || self.max_replies_per_day.is_some()
            || self.temperature.is_some()
            || self.max_tokens.is_some()
            || self.context_window_messages.is_some();
        if touches_ai_config {
            let fields = object_of(&mut channel.ai_config);
            if let Some(mode) = self.mode {
                fields.insert("mode".into(), Value::String(mode.as_str().into()));
            }
            if let Some(provider) = &self.provider {
                fields.insert("llm_provider".into(), Value::String(provider.clone()));
            }
            match &self.model {
                Some(Some(model)) => {
                    fields.insert("llm_model".into(), Value::String(model.clone()));
                }
                Some(None) => {
                    fields.shift_remove("llm_model");
                }
                None => {}
            }
            match self.fallback.as_deref() {
                Some([]) => {
                    fields.shift_remove("fallback");
                }
                Some(chain) => {
                    let entries = chain.iter().map(fallback_entry).collect();
                    fields.insert("fallback".into(), Value::Array(entries));
                }
                None => {}
            }
            if let Some(delay) = self.reply_delay {
                fields.insert(
                    "reply_delay_seconds".into(),
                    serde_json::json!([delay.min_seconds, delay.max_seconds]),
                );
            }
            if let Some(cap) = self.max_replies_per_day {
                fields.insert("max_replies_per_day".into(), Value::from(cap));
            }
            if let Some(temperature) = self.temperature {
                fields.insert("temperature".into(), Value::from(temperature));
            }
            if let Some(tokens) = self.max_tokens {
                fields.insert("max_tokens".into(), Value::from(tokens));
            }
            if let Some(window) = self.context_window_messages {
                fields.insert("context_window_messages".into(), Value::from(window));
            }
        }
        if let Some(prompts) = &self.prompts {
            let fields = object_of(&mut channel.prompts);
            for (key, text) in [
                ("base_context", &prompts.base_context),
                ("discovery", &prompts.discovery),
                ("engagement", &prompts.engagement),
                ("call_ready", &prompts.call_ready),
                ("call_pending", &prompts.call_pending),
                ("call_declined", &prompts.call_declined),
            ] {
                fields.insert(key.into(), Value::String(text.clone()));
            }
        }
    }
}

/// One entry of `ai_config.fallback` in the file's shorter form where it can be.
fn fallback_entry(choice: &ModelChoice) -> Value {
    match &choice.model {
        None => Value::String(choice.provider.clone()),
        Some(model) => serde_json::json!({"provider": choice.provider, "model": model}),
    }
}

/// The object a raw field holds, made one when it is absent or `null` (any other value would
/// not have passed validation, so nothing written is replaced).
fn object_of(field: &mut Option<Value>) -> &mut Map<String, Value> {
    if !matches!(field, Some(Value::Object(_))) {
        *field = Some(Value::Object(Map::new()));
    }
    match field {
        Some(Value::Object(fields)) => fields,
        _ => unreachable!("just made an object"),
    }
}

/// Reads the top-level `llm_providers` over the presets.
pub(crate) fn parse_providers(
    raw: Option<&Value>,
    problems: &mut Vec<ConfigProblem>,
) -> LlmProviders {
    let mut providers = LlmProviders::presets();
    let path = "llm_providers";
    let entries = match raw {
        None | Some(Value::Null) => return providers,
        Some(Value::Object(entries)) => entries,
        Some(other) => {
            problems.push(ConfigProblem::new(
                path,
                format!(
                    "must be an object of providers by name, found {}",
                    kind(other)
                ),
            ));
            return providers;
        }
    };
    for (name, entry) in entries {
        let entry_path = format!("{path}.{name}");
        if name.trim().is_empty() {
            problems.push(ConfigProblem::new(&entry_path, "a provider needs a name"));
            continue;
        }
        let Value::Object(fields) = entry else {
            problems.push(ConfigProblem::new(
                &entry_path,
                format!(
                    "must be an object {{base_url, api_key, default_model}}, found {}",
                    kind(entry)
                ),
            ));
            continue;
        };
        let mut reader = Reader::new(fields, &entry_path, problems);
        let base_url = reader.string("base_url");
        let api_key = reader.string("api_key");
        let default_model = reader.string("default_model");
        let preset = providers.get(name).cloned();
        let base_url = match (base_url, &preset) {
            (Some(url), _) => match check_base_url(&url) {
                Ok(()) => Some(url.trim().trim_end_matches('/').to_owned()),
                Err(message) => {
                    problems.push(ConfigProblem::new(
                        format!("{entry_path}.base_url"),
                        message,
                    ));
                    None
                }
            },
            (None, Some(preset)) => Some(preset.base_url.clone()),
            (None, None) => {
                problems.push(ConfigProblem::new(
                    format!("{entry_path}.base_url"),
                    "is required: the provider's OpenAI-compatible API root, e.g. http://localhost:11434/v1",
                ));
                None
            }
        };
        let api_key = match api_key {
            Some(key) => match parse_api_key(&key) {
                Ok(source) => source,
                Err(message) => {
                    problems.push(ConfigProblem::new(format!("{entry_path}.api_key"), message));
                    None
                }
            },
            None => preset.as_ref().and_then(|preset| preset.api_key.clone()),
        };
        let default_model = default_model
            .filter(|model| !model.trim().is_empty())
            .or_else(|| preset.and_then(|preset| preset.default_model));
        if let Some(base_url) = base_url {
            providers.insert(Provider {
                name: name.clone(),
                base_url,
                api_key,
                default_model,
            });
        }
    }
    providers
}

/// Reads one channel's `ai_config` and `prompts`, checking that the providers it names exist.
pub(crate) fn parse_channel_ai(
    path: &str,
    enabled: bool,
    ai_config: Option<&Value>,
    prompts: Option<&Value>,
    providers: &LlmProviders,
    problems: &mut Vec<ConfigProblem>,
) -> AiSettings {
    let mut settings = AiSettings {
        enabled,
        prompts: parse_prompts(&format!("{path}.prompts"), prompts, problems),
        ..AiSettings::default()
    };
    let config_path = format!("{path}.ai_config");
    match ai_config {
        None | Some(Value::Null) => {}
        Some(Value::Object(fields)) => {
            read_ai_config(&config_path, fields, &mut settings, problems)
        }
        Some(other) => {
            problems.push(ConfigProblem::new(
                config_path,
                format!("must be an object, found {}", kind(other)),
            ));
            return settings;
        }
    }
    check_choice(
        &config_path,
        "llm_provider",
        &settings.primary,
        providers,
        problems,
    );
    for (index, choice) in settings.fallback.iter().enumerate() {
        check_choice(
            &format!("{config_path}.fallback[{index}]"),
            "provider",
            choice,
            providers,
            problems,
        );
    }
    settings
}

/// Reads the keys of an `ai_config` object into `settings`.
fn read_ai_config(
    config_path: &str,
    fields: &Map<String, Value>,
    settings: &mut AiSettings,
    problems: &mut Vec<ConfigProblem>,
) {
    let mut reader = Reader::new(fields, config_path, problems);
    if let Some(mode) = reader.string("mode") {
        match AiMode::parse(&mode) {
            Some(mode) => settings.mode = mode,
            None => reader.problem(
                "mode",
                format!("{mode:?} is not a mode: use manual, suggest or auto"),
            ),
        }
    }
    let provider = reader.string("llm_provider");
    let model = reader.string("llm_model");
    match (provider, model) {
        (Some(provider), model) => {
            settings.primary = ModelChoice {
                provider: provider.trim().to_owned(),
                model: model.filter(|model| !model.trim().is_empty()),
            }
        }
        // The original's default provider with the file's model.
        (None, Some(model)) if !model.trim().is_empty() => settings.primary.model = Some(model),
        (None, _) => {}
    }
    if let Some(delay) = fields.get("reply_delay_seconds") {
        match parse_delay(delay) {
            Ok(delay) => settings.reply_delay = delay,
            Err(message) => reader.problem("reply_delay_seconds", message),
        }
    }
    if let Some(window) = reader.whole("context_window_messages") {
        if window == 0 || window > AiSettings::MAX_CONTEXT_WINDOW {
            reader.problem(
                "context_window_messages",
                format!(
                    "{window} is out of range: from 1 to {}",
                    AiSettings::MAX_CONTEXT_WINDOW
                ),
            );
        } else {
            settings.context_window_messages = window;
        }
    }
    if let Some(files) = reader.strings("knowledge_files") {
        for (index, file) in files.iter().enumerate() {
            if let Err(message) = check_relative_path(file) {
                reader.problem(&format!("knowledge_files[{index}]"), message);
            }
        }
        settings.knowledge_files = files;
    }
    if let Some(cap) = reader.whole("max_replies_per_day") {
        settings.max_replies_per_day = cap;
    }
    if let Some(phrases) = reader.strings("opt_out_phrases") {
        for (index, phrase) in phrases.iter().enumerate() {
            if phrase.trim().is_empty() {
                reader.problem(&format!("opt_out_phrases[{index}]"), "must not be empty");
            }
        }
        settings.opt_out_phrases = phrases;
    }
    if let Some(analyse) = reader.bool("use_state_analyzer") {
        settings.use_state_analyzer = analyse;
    }
    if let Some(temperature) = reader.number("temperature") {
        if (0.0..=2.0).contains(&temperature) {
            settings.temperature = temperature as f32;
        } else {
            reader.problem(
                "temperature",
                format!("{temperature} is out of range: from 0 to 2"),
            );
        }
    }
    if let Some(max_tokens) = reader.whole("max_tokens") {
        if max_tokens == 0 {
            reader.problem("max_tokens", "must be at least 1");
        } else {
            settings.max_tokens = max_tokens;
        }
    }
    if let Some(fallback) = fields.get("fallback") {
        settings.fallback = parse_fallback(&format!("{config_path}.fallback"), fallback, problems);
    }
}

/// Reads a channel's `prompts`: the six texts of the original (`base_context` and one per phase);
/// a missing, `null` or empty one uses the built-in default.
pub(crate) fn parse_prompts(
    path: &str,
    raw: Option<&Value>,
    problems: &mut Vec<ConfigProblem>,
) -> Prompts {
    let fields = match raw {
        None | Some(Value::Null) => return Prompts::default(),
        Some(Value::Object(fields)) => fields,
        Some(other) => {
            problems.push(ConfigProblem::new(
                path,
                format!("must be an object of texts, found {}", kind(other)),
            ));
            return Prompts::default();
        }
    };
    let mut reader = Reader::new(fields, path, problems);
    let mut text = |key: &str| reader.string(key).unwrap_or_default();
    Prompts {
        base_context: text("base_context"),
        discovery: text("discovery"),
        engagement: text("engagement"),
        call_ready: text("call_ready"),
        call_pending: text("call_pending"),
        call_declined: text("call_declined"),
    }
}

fn parse_fallback(path: &str, raw: &Value, problems: &mut Vec<ConfigProblem>) -> Vec<ModelChoice> {
    let Value::Array(entries) = raw else {
        problems.push(ConfigProblem::new(
            path,
            format!(
                "must be a list of providers (\"gemini\" or {{\"provider\": \"gemini\", \"model\": \"…\"}}), found {}",
                kind(raw)
            ),
        ));
        return Vec::new();
    };
    let mut choices = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let entry_path = format!("{path}[{index}]");
        match entry {
            Value::String(provider) => choices.push(ModelChoice {
                provider: provider.trim().to_owned(),
                model: None,
            }),
            Value::Object(fields) => {
                let mut reader = Reader::new(fields, &entry_path, problems);
                let provider = reader.string("provider");
                let model = reader
                    .string("model")
                    .filter(|model| !model.trim().is_empty());
                match provider {
                    Some(provider) => choices.push(ModelChoice {
                        provider: provider.trim().to_owned(),
                        model,
                    }),
                    None => reader.problem("provider", "is required"),
                }
            }
            other => problems.push(ConfigProblem::new(
                entry_path,
                format!(
                    "must be a provider name or {{\"provider\", \"model\"}}, found {}",
                    kind(other)
                ),
            )),
        }
    }
    choices
}

fn check_choice(
    path: &str,
    key: &str,
    choice: &ModelChoice,
    providers: &LlmProviders,
    problems: &mut Vec<ConfigProblem>,
) {
    match providers.get(&choice.provider) {
        None => problems.push(ConfigProblem::new(
            format!("{path}.{key}"),
            format!(
                "{:?} is not a provider (known: {}); add it under llm_providers",
                choice.provider,
                providers.names().collect::<Vec<_>>().join(", ")
            ),
        )),
        Some(provider) if provider.default_model.is_none() && choice.model.is_none() => {
            let model_key = if key == "llm_provider" {
                "llm_model"
            } else {
                "model"
            };
            problems.push(ConfigProblem::new(
                format!("{path}.{model_key}"),
                format!(
                    "is required: provider {:?} has no default_model",
                    choice.provider
                ),
            ))
        }
        Some(_) => {}
    }
}

fn parse_delay(raw: &Value) -> Result<HumanDelay, String> {
    const SHAPE: &str = "must be [min, max] in whole seconds, e.g. [3, 8]";
    let Value::Array(bounds) = raw else {
        return Err(SHAPE.into());
    };
    let [min, max] = bounds.as_slice() else {
        return Err(SHAPE.into());
    };
    let seconds = |value: &Value| {
        value
            .as_u64()
            .and_then(|seconds| u32::try_from(seconds).ok())
            .ok_or_else(|| SHAPE.to_owned())
    };
    let (min_seconds, max_seconds) = (seconds(min)?, seconds(max)?);
    if min_seconds > max_seconds {
        return Err(format!(
            "min ({min_seconds}) is more than max ({max_seconds})"
        ));
    }
    if max_seconds > 3600 {
        return Err(format!("{max_seconds} s is more than an hour"));
    }
    Ok(HumanDelay {
        min_seconds,
        max_seconds,
    })
}

/// `${NAME}` → from the environment; any other non-empty text is the key itself.
fn parse_api_key(text: &str) -> Result<Option<ApiKeySource>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if let Some(name) = text
        .strip_prefix("${")
        .and_then(|rest| rest.strip_suffix('}'))
    {
        let valid = name
            .chars()
            .next()
            .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        return if valid {
            Ok(Some(ApiKeySource::Env(name.to_owned())))
        } else {
            Err(format!(
                "${{{name}}} is not an environment variable name (letters, digits and _)"
            ))
        };
    }
    if text.contains("${") {
        // The value is not echoed: it may hold a key.
        return Err("only a whole value ${NAME} is read from the environment".into());
    }
    Ok(Some(ApiKeySource::Literal(ApiKey::new(text))))
}

fn check_base_url(url: &str) -> Result<(), String> {
    let url = url.trim();
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{url:?} is not an http:// or https:// address"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.contains(char::is_whitespace) || host.contains('@') {
        return Err(format!(
            "{url:?} has no host (credentials go in api_key, not the address)"
        ));
    }
    Ok(())
}

fn check_relative_path(path: &str) -> Result<(), String> {
    if path.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if path.starts_with('/') || path.contains('\\') || path.split('/').any(|part| part == "..") {
        return Err(format!(
            "{path:?} must be a path inside the data directory (relative, without ..)"
        ));
    }
    Ok(())
}

/// Reads typed fields of one JSON object, recording a problem with the path of each bad one.
struct Reader<'a> {
    fields: &'a Map<String, Value>,
    path: &'a str,
    problems: &'a mut Vec<ConfigProblem>,
}

impl<'a> Reader<'a> {
    fn new(
        fields: &'a Map<String, Value>,
        path: &'a str,
        problems: &'a mut Vec<ConfigProblem>,
    ) -> Self {
        Self {
            fields,
            path,
            problems,
        }
    }

    fn problem(&mut self, key: &str, message: impl Into<String>) {
        self.problems
            .push(ConfigProblem::new(format!("{}.{key}", self.path), message));
    }

    /// A present, non-null value of `key`.
    fn value(&self, key: &str) -> Option<&'a Value> {
        self.fields.get(key).filter(|value| !value.is_null())
    }

    /// The value of `key` converted, or a problem saying what was `expected` instead.
    fn read<T>(
        &mut self,
        key: &str,
        expected: &str,
        convert: impl FnOnce(&Value) -> Option<T>,
    ) -> Option<T> {
        let value = self.value(key)?;
        let converted = convert(value);
        if converted.is_none() {
            let found = kind(value);
            self.problem(key, format!("must be {expected}, found {found}"));
        }
        converted
    }

    fn string(&mut self, key: &str) -> Option<String> {
        self.read(key, "a text", |value| value.as_str().map(str::to_owned))
    }

    fn bool(&mut self, key: &str) -> Option<bool> {
        self.read(key, "true or false", Value::as_bool)
    }

    fn whole(&mut self, key: &str) -> Option<u32> {
        self.read(key, "a whole number", |value| {
            value.as_u64().and_then(|number| u32::try_from(number).ok())
        })
    }

    fn number(&mut self, key: &str) -> Option<f64> {
        self.read(key, "a number", Value::as_f64)
    }

    fn strings(&mut self, key: &str) -> Option<Vec<String>> {
        self.read(key, "a list of texts", |value| {
            value.as_array().and_then(|items| {
                items
                    .iter()
                    .map(|item| item.as_str().map(str::to_owned))
                    .collect()
            })
        })
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn channel_ai(ai_config: Value) -> Result<AiSettings, Vec<String>> {
        let mut problems = Vec::new();
        let settings = parse_channel_ai(
            "output_channels[0]",
            true,
            Some(&ai_config),
            None,
            &LlmProviders::presets(),
            &mut problems,
        );
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(problems.iter().map(ToString::to_string).collect())
        }
    }

    #[test]
    fn the_originals_full_ai_config_reads_with_its_values() {
        let settings = channel_ai(json!({
            "llm_provider": "groq", "llm_model": "llama-3.3-70b-versatile",
            "persona_file": "personas/default.txt", "mode": "auto",
            "reply_delay_seconds": [3, 8], "context_window_messages": 12,
            "weaviate_host": "localhost", "weaviate_port": 8080, "use_weaviate": true,
            "knowledge_files": ["knowledge/prices.md"]
        }))
        .unwrap();
        assert_eq!(settings.mode, AiMode::Auto);
        assert_eq!(settings.primary.provider, "groq");
        assert_eq!(settings.reply_delay.max_seconds, 8);
        assert_eq!(settings.knowledge_files, ["knowledge/prices.md"]);
    }

    #[test]
    fn a_channel_without_ai_config_suggests_through_groq() {
        let mut problems = Vec::new();
        let settings = parse_channel_ai(
            "c",
            true,
            None,
            None,
            &LlmProviders::presets(),
            &mut problems,
        );
        assert!(problems.is_empty());
        assert_eq!(settings.mode, AiMode::Suggest);
        assert_eq!(settings.chain().count(), 1);
    }

    #[test]
    fn bad_values_are_reported_with_their_paths() {
        let problems = channel_ai(json!({
            "mode": "automatic", "llm_provider": "nobody", "reply_delay_seconds": [8, 3],
            "context_window_messages": 0, "knowledge_files": ["../etc/passwd"],
            "temperature": "hot", "fallback": [{"model": "x"}, 5]
        }))
        .unwrap_err();
        let expected_paths = [
            "output_channels[0].ai_config.mode:",
            "output_channels[0].ai_config.reply_delay_seconds:",
            "output_channels[0].ai_config.context_window_messages:",
            "output_channels[0].ai_config.knowledge_files[0]:",
            "output_channels[0].ai_config.temperature:",
            "output_channels[0].ai_config.fallback[0].provider:",
            "output_channels[0].ai_config.fallback[1]:",
            "output_channels[0].ai_config.llm_provider:",
        ];
        for path in expected_paths {
            assert!(
                problems.iter().any(|problem| problem.starts_with(path)),
                "{path} in {problems:#?}"
            );
        }
        assert_eq!(problems.len(), expected_paths.len(), "{problems:#?}");
    }

    #[test]
    fn file_providers_change_presets_field_by_field_and_add_new_ones() {
        let mut problems = Vec::new();
        let providers = parse_providers(
            Some(&json!({
                "groq": {"api_key": "${MY_GROQ}"},
                "local": {"base_url": "http://127.0.0.1:8000/v1/", "default_model": "m"},
                "keyless": {"base_url": "http://127.0.0.1:9000/v1", "api_key": ""}
            })),
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:?}");
        let groq = providers.get("groq").unwrap();
        assert_eq!(groq.base_url, "https://api.groq.com/openai/v1");
        assert_eq!(groq.api_key, Some(ApiKeySource::Env("MY_GROQ".into())));
        assert_eq!(
            providers.get("local").unwrap().base_url,
            "http://127.0.0.1:8000/v1"
        );
        assert_eq!(providers.get("keyless").unwrap().api_key, None);
        assert_eq!(providers.names().count(), 9);
    }

    #[test]
    fn provider_problems_name_the_field_and_never_echo_a_key() {
        let mut problems = Vec::new();
        parse_providers(
            Some(&json!({
                "a": {"default_model": "m"},
                "b": {"base_url": "ftp://x"},
                "c": {"base_url": "http://x", "api_key": "sk-SECRET-${X"},
                "d": "http://x"
            })),
            &mut problems,
        );
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 4, "{text:#?}");
        assert!(text[0].starts_with("llm_providers.a.base_url: is required"));
        assert!(text[1].starts_with("llm_providers.b.base_url:"));
        assert!(text[2].starts_with("llm_providers.c.api_key:"));
        assert!(text[3].starts_with("llm_providers.d: must be an object"));
        assert!(text.iter().all(|line| !line.contains("SECRET")));
    }

    #[test]
    fn a_provider_without_default_model_needs_the_channels_model() {
        let mut problems = Vec::new();
        let providers = parse_providers(
            Some(&json!({"local": {"base_url": "http://127.0.0.1:8000/v1"}})),
            &mut problems,
        );
        parse_channel_ai(
            "output_channels[0]",
            true,
            Some(&json!({"llm_provider": "local"})),
            None,
            &providers,
            &mut problems,
        );
        assert_eq!(
            problems[0].to_string(),
            "output_channels[0].ai_config.llm_model: is required: provider \"local\" has no default_model"
        );
    }

    #[test]
    fn an_edit_changes_what_it_sets_and_keeps_every_other_key() {
        let mut channel: crate::config::ChannelDocument = serde_json::from_value(json!({
            "id": "c", "name": "n", "telegram_id": -1001,
            "ai_config": {"llm_provider": "groq", "llm_model": "x", "weaviate_port": 8080,
                          "mode": "auto", "x_future": [1]},
            "prompts": {"base_context": "B", "x_note": "kept"}
        }))
        .unwrap();
        AiEdit {
            enabled: Some(false),
            mode: Some(AiMode::Suggest),
            model: Some(None),
            prompts: Some(Prompts {
                discovery: "D".into(),
                ..Prompts::default()
            }),
            ..AiEdit::default()
        }
        .apply(&mut channel);
        assert!(!channel.ai_conversation_enabled);
        assert_eq!(
            channel.ai_config,
            Some(
                json!({"llm_provider": "groq", "weaviate_port": 8080, "mode": "suggest",
                        "x_future": [1]})
            )
        );
        let prompts = channel.prompts.unwrap();
        assert_eq!(prompts["x_note"], "kept");
        assert_eq!(prompts["discovery"], "D");
        assert_eq!(prompts["base_context"], "");
        let mut bare: crate::config::ChannelDocument =
            serde_json::from_value(json!({"id": "c", "name": "n", "telegram_id": -1001})).unwrap();
        AiEdit {
            provider: Some("ollama".into()),
            ..AiEdit::default()
        }
        .apply(&mut bare);
        assert_eq!(bare.ai_config, Some(json!({"llm_provider": "ollama"})));
        assert_eq!(bare.prompts, None, "untouched fields stay absent");
    }

    #[test]
    fn an_edit_writes_the_chain_delay_and_cap_in_the_files_format_and_they_read_back() {
        let mut channel: crate::config::ChannelDocument = serde_json::from_value(json!({
            "id": "c", "name": "n", "telegram_id": -1001,
            "ai_config": {"llm_provider": "groq", "use_weaviate": true,
                          "fallback": ["openai"], "reply_delay_seconds": [3, 8]}
        }))
        .unwrap();
        let chain = vec![
            ModelChoice {
                provider: "gemini".into(),
                model: None,
            },
            ModelChoice {
                provider: "openrouter".into(),
                model: Some("qwen/qwen3-coder:free".into()),
            },
        ];
        AiEdit {
            fallback: Some(chain.clone()),
            reply_delay: Some(HumanDelay {
                min_seconds: 5,
                max_seconds: 12,
            }),
            max_replies_per_day: Some(7),
            temperature: Some(0.25),
            max_tokens: Some(900),
            context_window_messages: Some(30),
            ..AiEdit::default()
        }
        .apply(&mut channel);
        let written = channel.ai_config.clone().unwrap();
        assert_eq!(
            written,
            json!({"llm_provider": "groq", "use_weaviate": true,
                   "fallback": ["gemini", {"provider": "openrouter", "model": "qwen/qwen3-coder:free"}],
                   "reply_delay_seconds": [5, 12], "max_replies_per_day": 7,
                   "temperature": 0.25, "max_tokens": 900, "context_window_messages": 30})
        );
        let settings = channel_ai(written).unwrap();
        assert_eq!(settings.fallback, chain);
        assert_eq!(settings.reply_delay.min_seconds, 5);
        assert_eq!(settings.reply_delay.max_seconds, 12);
        assert_eq!(settings.max_replies_per_day, 7);
        assert_eq!((settings.temperature, settings.max_tokens), (0.25, 900));
        assert_eq!(settings.context_window_messages, 30);
        // An empty chain removes the key; the rest stays.
        AiEdit {
            fallback: Some(Vec::new()),
            ..AiEdit::default()
        }
        .apply(&mut channel);
        let written = channel.ai_config.unwrap();
        assert_eq!(written.get("fallback"), None);
        assert_eq!(written["max_replies_per_day"], 7);
        assert_eq!(written["use_weaviate"], true);
    }

    #[test]
    fn api_keys_are_redacted_in_debug() {
        let source = ApiKeySource::Literal(ApiKey::new("sk-live-123"));
        assert!(!format!("{source:?}").contains("sk-live"));
    }

    #[test]
    fn prompts_read_as_texts_and_report_other_values() {
        let mut problems = Vec::new();
        let prompts = parse_prompts(
            "output_channels[0].prompts",
            Some(&json!({"base_context": "B", "discovery": 5, "extra": "kept in the file"})),
            &mut problems,
        );
        assert_eq!(prompts.base_context, "B");
        assert_eq!(prompts.discovery, "");
        assert_eq!(
            problems[0].to_string(),
            "output_channels[0].prompts.discovery: must be a text, found a number"
        );
    }
}
