//! The validated configuration: what the engine runs on. Built only by validation, so every value
//! here is well-formed (parse, don't validate).

use std::collections::BTreeMap;

use crate::ai::{AiSettings, LlmProviders};
use crate::config::{HumanDelay, Pacing};
use crate::ids::{ChatId, PhoneNumber, SessionName, Username};

/// A validated configuration snapshot.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    pub channels: Vec<Channel>,
    /// The LLM providers: the original's presets with the file's `llm_providers` over them.
    pub llm_providers: LlmProviders,
    /// Agents left out because something about them alone is wrong (a malformed phone or
    /// session name, a bad proxy …), each with its problem: one bad agent never stops the whole
    /// file. Saving a configuration refuses them (`ConfigStore`); loading one only reports them.
    pub skipped_agents: Vec<super::ConfigProblem>,
}

impl Config {
    pub fn enabled_channels(&self) -> impl Iterator<Item = &Channel> {
        self.channels.iter().filter(|channel| channel.enabled)
    }

    pub fn channel(&self, id: &str) -> Option<&Channel> {
        self.channels.iter().find(|channel| channel.id == id)
    }

    /// Every agent account of the enabled channels, once each (an agent listed by several
    /// channels is one account, shared). Its pacing is the most conservative of its mentions.
    pub fn agent_accounts(&self) -> BTreeMap<SessionName, Agent> {
        let mut accounts: BTreeMap<SessionName, Agent> = BTreeMap::new();
        for agent in self.enabled_channels().flat_map(|channel| &channel.agents) {
            accounts
                .entry(agent.session_name.clone())
                .and_modify(|known| known.pacing = known.pacing.min(agent.pacing))
                .or_insert_with(|| agent.clone());
        }
        accounts
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Channel {
    pub id: String,
    pub name: String,
    /// Where notifications go: a channel or supergroup.
    pub telegram_id: ChatId,
    pub enabled: bool,
    pub sources: Vec<SourceRef>,
    pub filters: Filters,
    pub crm_enabled: bool,
    /// The forum supergroup of the CRM; `Some` whenever `crm_enabled`.
    pub crm_group_id: Option<ChatId>,
    pub agents: Vec<Agent>,
    pub auto_response_enabled: bool,
    pub auto_response_template: String,
    pub instant_response: bool,
    pub human_delay: HumanDelay,
    /// The hash of the CRM group's invite link, which agents join with.
    pub crm_invite_hash: Option<String>,
    /// `ai_conversation_enabled`, `ai_config` and `prompts`, typed (the file keeps them as
    /// written).
    pub ai: AiSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Filters {
    pub include_keywords: Vec<String>,
    pub exclude_keywords: Vec<String>,
    pub require_all_includes: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// `None` when the file has none (`"phone": ""`, as the original's channel wizard saves
    /// agents): shown as "phone missing"; the agent works once its session is logged in.
    pub phone: Option<PhoneNumber>,
    pub session_name: SessionName,
    pub proxy: Option<String>,
    /// The effective pacing: the agent's own, else its channel's.
    pub pacing: Pacing,
}

/// A source channel as configured. Usernames still need resolving to a [`ChatId`] (that takes a
/// Telegram call); ids are canonical already.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceRef {
    /// `@name`, `t.me/name` or `https://t.me/name`.
    Username(Username),
    /// `-100…` (Bot API) or a bare channel id as Telethon prints it.
    Id(ChatId),
    /// A private chat's invite link: `t.me/+HASH` or `t.me/joinchat/HASH`.
    Invite(String),
}

impl SourceRef {
    pub const INVALID: &'static str =
        "is not a source (use @username, a t.me/… link, or a numeric id such as -1001234567890)";

    /// Accepts every way users write a source. A bare positive number is a channel id as Telethon
    /// and `get_peer_id` print it (sources are channels; a user id is never a source).
    pub fn parse(input: &str) -> Option<Self> {
        let text = input.trim();
        if text.is_empty() {
            return None;
        }
        if let Ok(number) = text.parse::<i64>() {
            return if number > 0 {
                ChatId::channel(number)
            } else {
                ChatId::from_bot_api(number)
            }
            .filter(|id| id.kind() != crate::ids::ChatKind::User)
            .map(Self::Id);
        }
        if text.starts_with('@') {
            return Username::parse(text).ok().map(Self::Username);
        }
        let without_scheme = text
            .strip_prefix("https://")
            .or_else(|| text.strip_prefix("http://"))
            .unwrap_or(text);
        let path = without_scheme
            .strip_prefix("t.me/")
            .or_else(|| without_scheme.strip_prefix("telegram.me/"))
            .or_else(|| without_scheme.strip_prefix("www.t.me/"))?;
        let path = path.trim_end_matches('/');
        if let Some(hash) = path
            .strip_prefix('+')
            .or_else(|| path.strip_prefix("joinchat/"))
        {
            let valid = !hash.is_empty()
                && hash
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            return valid.then(|| Self::Invite(hash.to_owned()));
        }
        if let Some(rest) = path.strip_prefix("c/") {
            // t.me/c/<bare id>[/<message>]: a private channel by id.
            let bare = rest.split('/').next()?.parse::<i64>().ok()?;
            return ChatId::channel(bare).map(Self::Id);
        }
        // t.me/<name>[/<message id>] or t.me/s/<name>
        let path = path.strip_prefix("s/").unwrap_or(path);
        let name = path.split(['/', '?']).next()?;
        Username::parse(name).ok().map(Self::Username)
    }
}

impl std::fmt::Display for SourceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Username(name) => write!(f, "{name}"),
            Self::Id(id) => write!(f, "{id}"),
            Self::Invite(hash) => write!(f, "t.me/+{hash}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_in_every_written_form() {
        let name = |n: &str| Some(SourceRef::Username(Username::parse(n).unwrap()));
        let id = |n: i64| Some(SourceRef::Id(ChatId::from_bot_api(n).unwrap()));
        let check = |input: &str, expected: Option<SourceRef>| {
            assert_eq!(SourceRef::parse(input), expected, "{input}")
        };
        check("@python_jobs", name("python_jobs"));
        check("t.me/python_jobs", name("python_jobs"));
        check("https://t.me/python_jobs", name("python_jobs"));
        check("https://t.me/python_jobs/123", name("python_jobs"));
        check("https://t.me/s/python_jobs", name("python_jobs"));
        check("-1001234567890", id(-1001234567890));
        check("1234567890", id(-1001234567890));
        check("https://t.me/c/1234567890/55", id(-1001234567890));
        check("-4012345", id(-4012345));
        check(
            "https://t.me/+AbCdEf123",
            Some(SourceRef::Invite("AbCdEf123".into())),
        );
        check(
            "t.me/joinchat/AbCdEf123",
            Some(SourceRef::Invite("AbCdEf123".into())),
        );
        check("python_jobs", None);
        check("@abc", None);
        check("https://example.com/python_jobs", None);
        check("", None);
        check("0", None);
    }
}
