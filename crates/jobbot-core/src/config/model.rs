//! The file model of `configs/channels_config.json`: exactly what the user wrote.
//!
//! Every struct keeps the keys it does not know in `extra` (flattened), and the AI fields
//! (`ai_config`, `prompts`, `llm_providers`) are kept as raw JSON (validation reads them into
//! typed settings, `crate::ai::settings`), so a file goes through parse → serialise without
//! losing a key or a value, the original's Weaviate fields included. Defaults are the original system's
//! (`original-system.md` §1.2). Fields that jobbot added are written only when they differ from
//! their defaults, so a file jobbot saves stays readable by the original system.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ConfigDocument {
    #[serde(default)]
    pub output_channels: Vec<ChannelDocument>,
    /// LLM providers over the presets, kept as written (typed in `Config::llm_providers`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub llm_providers: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The default auto-response of the original system ("Hello! Your vacancy interested me. Could
/// you tell me more?").
pub const DEFAULT_AUTO_RESPONSE_TEMPLATE: &str =
    "Здравствуйте! Заинтересовала ваша вакансия. Расскажите подробнее?";

/// One output channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelDocument {
    // `id`, `name` and `telegram_id` are required, but a missing one is reported by validation
    // (with the other problems of the file) rather than by the parser (which stops at the first).
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub telegram_id: i64,
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default)]
    pub input_sources: Vec<String>,
    #[serde(default)]
    pub filters: FiltersDocument,
    #[serde(default)]
    pub crm_enabled: bool,
    #[serde(default)]
    pub crm_group_id: i64,
    #[serde(default)]
    pub agents: Vec<AgentDocument>,
    #[serde(default)]
    pub auto_response_enabled: bool,
    #[serde(default = "default_template")]
    pub auto_response_template: String,
    #[serde(default = "default_true")]
    pub ai_conversation_enabled: bool,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub ai_config: Option<Value>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub prompts: Option<Value>,

    // The legacy single-agent keys (seed "Backward Compatibility"). Loading migrates them into
    // `agents` and clears them; they are written back only when they could not be migrated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_session_name: Option<String>,

    // jobbot's additions.
    /// Skip the human-like delay and typing before auto-responses and relayed replies
    /// (the original's `instant_response`, from its unmerged branch).
    #[serde(default, skip_serializing_if = "is_false")]
    pub instant_response: bool,
    /// The random delay before each auto-response or relayed reply.
    #[serde(default, skip_serializing_if = "HumanDelay::is_default")]
    pub human_delay: HumanDelay,
    /// Pacing for this channel's agents, unless an agent sets its own.
    #[serde(default, skip_serializing_if = "Pacing::is_default")]
    pub agent_pacing: Pacing,
    /// An invite link to the CRM group (`t.me/+HASH` or `t.me/joinchat/HASH`): when set, every
    /// agent of the channel joins the group with it (idempotently) so it can post in the topics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crm_invite_link: Option<String>,

    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FiltersDocument {
    #[serde(default)]
    pub include_keywords: Vec<String>,
    #[serde(default)]
    pub exclude_keywords: Vec<String>,
    #[serde(default)]
    pub require_all_includes: bool,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentDocument {
    pub phone: String,
    pub session_name: String,
    /// `socks5://[user:pass@]host:port` for this account's connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// This account's own pacing, overriding the channel's `agent_pacing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pacing: Option<Pacing>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// How fast one agent account may send. The defaults are the seed's figure (~20 messages a
/// minute per agent) with a small burst, and a daily budget of first messages to strangers, the
/// thing Telegram limits with `PEER_FLOOD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pacing {
    #[serde(default = "Pacing::default_per_minute")]
    pub messages_per_minute: u32,
    #[serde(default = "Pacing::default_burst")]
    pub burst: u32,
    #[serde(default = "Pacing::default_cold_dms_per_day")]
    pub cold_dms_per_day: u32,
    /// How long an agent stops writing first to strangers after `PEER_FLOOD`.
    #[serde(default = "Pacing::default_peer_flood_pause_hours")]
    pub peer_flood_pause_hours: u32,
}

impl Pacing {
    fn default_per_minute() -> u32 {
        20
    }
    fn default_burst() -> u32 {
        3
    }
    fn default_cold_dms_per_day() -> u32 {
        40
    }
    fn default_peer_flood_pause_hours() -> u32 {
        24
    }
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
    /// The more conservative of two pacings, field by field (an agent shared by channels that
    /// configure it differently gets the safest figure of each).
    pub fn min(self, other: Self) -> Self {
        Self {
            messages_per_minute: self.messages_per_minute.min(other.messages_per_minute),
            burst: self.burst.min(other.burst),
            cold_dms_per_day: self.cold_dms_per_day.min(other.cold_dms_per_day),
            peer_flood_pause_hours: self
                .peer_flood_pause_hours
                .max(other.peer_flood_pause_hours),
        }
    }
}

impl Default for Pacing {
    fn default() -> Self {
        Self {
            messages_per_minute: Self::default_per_minute(),
            burst: Self::default_burst(),
            cold_dms_per_day: Self::default_cold_dms_per_day(),
            peer_flood_pause_hours: Self::default_peer_flood_pause_hours(),
        }
    }
}

/// A uniformly random delay in `[min_seconds, max_seconds]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HumanDelay {
    pub min_seconds: u32,
    pub max_seconds: u32,
}

impl HumanDelay {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Default for HumanDelay {
    /// The original branch's common case (70 % of replies came after 3–10 s).
    fn default() -> Self {
        Self {
            min_seconds: 3,
            max_seconds: 10,
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_template() -> String {
    DEFAULT_AUTO_RESPONSE_TEMPLATE.to_owned()
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// A key that is present, even as `null`, is `Some`: the default `Option` handling would read an
/// explicit `null` as absent and drop the key on the next write.
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}
