//! Every constraint the API puts on a request value, stated once. The OpenAPI document takes its
//! patterns, ranges and lengths from here (the `*_schema` functions, used with
//! `#[schema(schema_with = …)]`), and the handlers check requests against the very same
//! patterns ([`Checks`]), so the document and the server cannot disagree: a value the document
//! allows is taken, one it does not is refused with 422 naming the field.
//!
//! The patterns are the strictest common form of what the configuration accepts (a value that
//! matches always loads; the configuration file itself may use looser forms, e.g. a phone number
//! with spaces around it). Rules that involve several fields or the rest of the configuration
//! (CRM needs a group and an agent, a session is one phone everywhere, ids are unique) cannot be
//! written in a schema: the configuration store enforces them, and a change that breaks one is
//! refused with 409 (`rejected`), each problem with its path.
//!
//! Patterns use only what ECMA-262 (JSON Schema), Python (the fuzzer) and Rust's `regex` read
//! alike: no `\s`/`\d` shorthands (their meanings differ), literal characters for whitespace.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use jobbot_core::config::{HumanDelay, Pacing, ProblemKind};
use jobbot_core::ids::{PhoneNumber, SessionName};
use regex::Regex;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
use utoipa::openapi::{KnownFormat, RefOr, Schema};

use crate::error::{ApiError, Problem, Reason};

/// Concatenates string constants at compile time (`concat!` takes literals only).
macro_rules! join {
    ($($part:expr),+ $(,)?) => {{
        const PARTS: &[&str] = &[$($part),+];
        const LENGTH: usize = {
            let mut length = 0;
            let mut index = 0;
            while index < PARTS.len() {
                length += PARTS[index].len();
                index += 1;
            }
            length
        };
        const BYTES: [u8; LENGTH] = {
            let mut bytes = [0u8; LENGTH];
            let mut at = 0;
            let mut index = 0;
            while index < PARTS.len() {
                let part = PARTS[index].as_bytes();
                let mut offset = 0;
                while offset < part.len() {
                    bytes[at] = part[offset];
                    at += 1;
                    offset += 1;
                }
                index += 1;
            }
            bytes
        };
        match std::str::from_utf8(&BYTES) {
            Ok(text) => text,
            Err(_) => panic!("the parts are UTF-8"),
        }
    }};
}

/// Characters taken as blank: Rust's `char::is_whitespace` and ECMA-262's `\s` together.
const BLANKS: &str = "\t\n\u{b}\u{c}\r \u{85}\u{a0}\u{1680}\u{2000}-\u{200a}\u{2028}\u{2029}\u{202f}\u{205f}\u{3000}\u{feff}";

const USERINFO: &str = "(?:[A-Za-z0-9._~!$&'()*+,;=-]|%[0-9A-Fa-f]{2})*";
const LABEL: &str = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
const HOST: &str = join!(LABEL, "(?:\\.", LABEL, ")*");
const PORT: &str =
    "(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])";
const USERNAME: &str = "[A-Za-z][A-Za-z0-9_]{4,31}";
const TME: &str = r"(?:https?://)?(?:t\.me|telegram\.me|www\.t\.me)/";
const INVITE: &str = r"(?:\+|joinchat/)[A-Za-z0-9_-]+/?";
/// A channel's id as Telethon prints it (1 to 9 999 999 999).
const BARE_CHANNEL: &str = "[1-9][0-9]{0,9}";
/// A channel in Bot API form: `-100` and its id in ten digits.
const CHANNEL_ID: &str = "-100(?:0{9}[1-9]|0{8}[1-9][0-9]|0{7}[1-9][0-9]{2}|0{6}[1-9][0-9]{3}|0{5}[1-9][0-9]{4}|0{4}[1-9][0-9]{5}|0{3}[1-9][0-9]{6}|0{2}[1-9][0-9]{7}|0[1-9][0-9]{8}|[1-9][0-9]{9})";
/// A basic group in Bot API form.
const GROUP_ID: &str = "-[1-9][0-9]{0,11}";

/// A pattern and what a value that does not match it is.
#[derive(Clone, Copy)]
pub struct Rule {
    pub pattern: &'static str,
    reason: fn() -> Reason,
}

/// Holds a character that is not blank (a name, an id, a token's name).
pub const NON_BLANK: Rule = Rule {
    pattern: join!("[^", BLANKS, "]"),
    reason: || Reason::Required,
};

/// A session file's name.
pub const SESSION_NAME: Rule = Rule {
    pattern: "^[A-Za-z0-9_-]{1,64}$",
    reason: || Reason::NotSessionName,
};

/// `+`, then 8 to 15 digits (the first not 0), with spaces, dots, dashes or brackets between.
pub const PHONE: Rule = Rule {
    pattern: r"^\+[ ().-]*[1-9](?:[ ().-]*[0-9]){7,14}[ ().-]*$",
    reason: || config(ProblemKind::NotPhone, PhoneNumber::INVALID),
};

/// A configuration revision in a body or query.
pub const REVISION: Rule = Rule {
    pattern: "^[0-9a-fA-F]{16}$",
    reason: || Reason::NotRevision,
};

/// `If-Match`: a revision as the ETag gave it (quoted, possibly weak) or bare.
pub const IF_MATCH: Rule = Rule {
    pattern: r#"^(?:W/)?"[0-9a-fA-F]{16}"$|^[0-9a-fA-F]{16}$"#,
    reason: || Reason::NotRevision,
};

/// `socks5://[user[:password]@]host:port`: percent-escapes in the credentials, a DNS name or an
/// IPv4 address, a port from 1 to 65535, nothing after it.
pub const PROXY: Rule = Rule {
    pattern: join!(
        "^socks5://(?:",
        USERINFO,
        "(?::",
        USERINFO,
        ")?@)?",
        HOST,
        ":",
        PORT,
        "$"
    ),
    reason: || {
        config(
            ProblemKind::NotProxy,
            "is not a socks5://[user:password@]host:port proxy address (no path, query or spaces; write @ and : in a password as %40 and %3A)",
        )
    },
};

/// A source: `@username`, a t.me link (a public name, an invite, `c/` and an id), or an id.
pub const SOURCE: Rule = Rule {
    pattern: join!(
        "^(?:@",
        USERNAME,
        "|",
        TME,
        "(?:s/)?",
        USERNAME,
        "(?:/[0-9]+)?/?|",
        TME,
        INVITE,
        "|",
        TME,
        "c/",
        BARE_CHANNEL,
        "(?:/[0-9]+)?/?|",
        CHANNEL_ID,
        "|",
        GROUP_ID,
        "|",
        BARE_CHANNEL,
        ")$"
    ),
    reason: || {
        config(
            ProblemKind::NotSource,
            jobbot_core::config::SourceRef::INVALID,
        )
    },
};

/// A CRM invite link (`t.me/+HASH`, `t.me/joinchat/HASH`), or empty for none.
pub const INVITE_LINK: Rule = Rule {
    pattern: join!("^$|^", TME, INVITE, "$"),
    reason: || {
        config(
            ProblemKind::NotInviteLink,
            "is not an invite link (t.me/+HASH or t.me/joinchat/HASH)",
        )
    },
};

/// A keyword: a word or phrase with no blank or quote at either end, or a `"whole word"` in
/// quotes with none inside.
pub const KEYWORD: Rule = Rule {
    pattern: join!(
        "^\"[^\"]*[^\"",
        BLANKS,
        "][^\"]*\"$|^[^\"",
        BLANKS,
        "](?:[\\s\\S]*[^\"",
        BLANKS,
        "])?$"
    ),
    reason: || {
        let detail =
            "a word or phrase without blanks or quotes at its ends, or a \"whole word\" in quotes";
        config(
            ProblemKind::NotKeyword {
                detail: detail.into(),
            },
            detail,
        )
    },
};

/// An auto-response template: text, `{{` and `}}` for braces, and the placeholders.
pub const TEMPLATE: Rule = Rule {
    pattern: r"^(?:[^{}]|\{\{|\}\}|\{ *(?:first_name|channel_name|source_title|vacancy_link) *\})*$",
    reason: || {
        let detail = "placeholders are {first_name}, {channel_name}, {source_title}, {vacancy_link}; write {{ and }} for braces";
        config(
            ProblemKind::NotTemplate {
                detail: detail.into(),
            },
            detail,
        )
    },
};

/// Channel and supergroup ids in Bot API form (`-100…`).
pub const CHANNEL_ID_MIN: i64 = -1_997_852_516_352;
pub const CHANNEL_ID_MAX: i64 = -1_000_000_000_001;
/// The longest human-like delay, in seconds.
pub const MAX_DELAY_SECONDS: u32 = 3600;
/// Names of API tokens.
pub const TOKEN_NAME_MAX: usize = 100;
/// One prompt text, in characters: the model reads it on every turn, so a page or two.
pub const PROMPT_MAX: usize = 20_000;

fn config(kind: ProblemKind, english: &str) -> Reason {
    Reason::Config(kind, english.to_owned())
}

impl Rule {
    pub fn matches(&self, value: &str) -> bool {
        compiled(self.pattern).is_match(value)
    }

    /// The schema of a string with this pattern.
    pub fn schema(&self) -> ObjectBuilder {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(self.pattern))
    }
}

/// Each pattern compiled once, for the life of the process.
fn compiled(pattern: &'static str) -> &'static Regex {
    static CACHE: LazyLock<Mutex<HashMap<&'static str, &'static Regex>>> =
        LazyLock::new(Mutex::default);
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    cache.entry(pattern).or_insert_with(|| {
        Box::leak(Box::new(
            Regex::new(pattern).expect("the constraint patterns compile"),
        ))
    })
}

/// The problems found in one request, each with its path.
#[derive(Default)]
pub struct Checks(Vec<Problem>);

impl Checks {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn rule(&mut self, path: impl Into<String>, value: &str, rule: Rule) {
        if !rule.matches(value) {
            self.0.push(Problem::because(path, (rule.reason)()));
        }
    }

    pub fn optional(&mut self, path: impl Into<String>, value: Option<&str>, rule: Rule) {
        if let Some(value) = value {
            self.rule(path, value, rule);
        }
    }

    pub fn each(&mut self, path: &str, values: &[String], rule: Rule) {
        for (index, value) in values.iter().enumerate() {
            self.rule(format!("{path}[{index}]"), value, rule);
        }
    }

    pub fn range(&mut self, path: impl Into<String>, value: i64, min: i64, max: i64) {
        if !(min..=max).contains(&value) {
            self.0
                .push(Problem::because(path, Reason::Range { min, max }));
        }
    }

    /// A model's sampling temperature: 0 to 2 (what OpenAI-compatible APIs take).
    pub fn temperature(&mut self, path: impl Into<String>, value: f64) {
        if !(0.0..=2.0).contains(&value) {
            self.0.push(Problem::because(path, Reason::Temperature));
        }
    }

    pub fn channel_id(&mut self, path: impl Into<String>, value: i64) {
        if !(CHANNEL_ID_MIN..=CHANNEL_ID_MAX).contains(&value) {
            self.0.push(Problem::because(
                path,
                config(
                    ProblemKind::NotChannelId,
                    jobbot_core::ids::ChatId::NOT_CHANNEL,
                ),
            ));
        }
    }

    pub fn length(&mut self, path: impl Into<String>, value: &str, min: usize, max: usize) {
        if !(min..=max).contains(&value.chars().count()) {
            self.0
                .push(Problem::because(path, Reason::Length { min, max }));
        }
    }

    pub fn pacing(&mut self, path: &str, pacing: &Pacing) {
        let max = i64::from(u32::MAX);
        self.range(
            format!("{path}.messages_per_minute"),
            i64::from(pacing.messages_per_minute),
            1,
            max,
        );
        self.range(format!("{path}.burst"), i64::from(pacing.burst), 1, max);
    }

    pub fn human_delay(&mut self, path: &str, delay: &HumanDelay) {
        let max = i64::from(MAX_DELAY_SECONDS);
        self.range(
            format!("{path}.min_seconds"),
            i64::from(delay.min_seconds),
            0,
            max,
        );
        self.range(
            format!("{path}.max_seconds"),
            i64::from(delay.max_seconds),
            0,
            max,
        );
    }

    /// `[min, max]` seconds, each within an hour (what the schema says; the order of the two is
    /// [`delay_order`]'s, after the schema's checks).
    pub fn reply_delay(&mut self, path: &str, [min, max]: [i64; 2]) {
        let limit = i64::from(MAX_DELAY_SECONDS);
        let in_range = |value: i64| (0..=limit).contains(&value);
        if !in_range(min) || !in_range(max) {
            self.0
                .push(Problem::because(path, Reason::Range { min: 0, max: limit }));
        }
    }

    pub fn add(&mut self, problem: Problem) {
        self.0.push(problem);
    }

    /// `Ok` when nothing was found, else 422 with every problem.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Invalid(self.0))
        }
    }
}

/// A session name that is a path parameter or a list item, checked on its own.
pub fn session_name(path: &str, value: &str) -> Result<SessionName, ApiError> {
    let mut checks = Checks::new();
    checks.rule(path, value, SESSION_NAME);
    checks.finish()?;
    SessionName::parse(value).map_err(|_| ApiError::invalid_because(path, Reason::NotSessionName))
}

// ----- Schemas for `#[schema(schema_with = …)]` -----

fn nullable(schema: ObjectBuilder) -> RefOr<Schema> {
    schema
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::String,
            Type::Null,
        ]))
        .into()
}

fn integer(min: i64, max: i64) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(min as f64))
        .maximum(Some(max as f64))
}

fn nullable_integer(min: i64, max: i64) -> ObjectBuilder {
    integer(min, max).schema_type(utoipa::openapi::schema::SchemaType::from_iter([
        Type::Integer,
        Type::Null,
    ]))
}

pub fn session_name_schema() -> RefOr<Schema> {
    SESSION_NAME.schema().into()
}

pub fn phone_schema() -> RefOr<Schema> {
    PHONE.schema().into()
}

pub fn optional_phone_schema() -> RefOr<Schema> {
    nullable(PHONE.schema())
}

pub fn optional_session_name_schema() -> RefOr<Schema> {
    nullable(SESSION_NAME.schema())
}

pub fn optional_proxy_schema() -> RefOr<Schema> {
    nullable(PROXY.schema())
}

pub fn optional_revision_schema() -> RefOr<Schema> {
    nullable(REVISION.schema())
}

pub fn non_blank_schema() -> RefOr<Schema> {
    NON_BLANK.schema().min_length(Some(1)).into()
}

pub fn optional_non_blank_schema() -> RefOr<Schema> {
    nullable(NON_BLANK.schema().min_length(Some(1)))
}

/// A chat title for the one-click setup: not blank, at most 128 characters (cut to 128 UTF-16
/// units before it reaches Telegram).
pub fn optional_chat_title_schema() -> RefOr<Schema> {
    nullable(
        NON_BLANK
            .schema()
            .min_length(Some(1))
            .max_length(Some(crate::channel_setup::TITLE_MAX)),
    )
}

pub fn optional_template_schema() -> RefOr<Schema> {
    nullable(TEMPLATE.schema())
}

pub fn optional_invite_link_schema() -> RefOr<Schema> {
    nullable(INVITE_LINK.schema())
}

pub fn token_name_schema() -> RefOr<Schema> {
    NON_BLANK
        .schema()
        .min_length(Some(1))
        .max_length(Some(TOKEN_NAME_MAX))
        .into()
}

fn list_of(items: ObjectBuilder, nullable: bool) -> RefOr<Schema> {
    let array = ArrayBuilder::new().items(items);
    let array = if nullable {
        array.schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::Array,
            Type::Null,
        ]))
    } else {
        array
    };
    array.into()
}

/// One text of a channel's `prompts` (empty: the built-in default).
pub fn prompt_schema() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(PROMPT_MAX))
        .into()
}

/// `ai_config.mode`: one of [`jobbot_core::ai::AiMode::ALL`], or null (unchanged).
pub fn optional_ai_mode_schema() -> RefOr<Schema> {
    let modes = jobbot_core::ai::AiMode::ALL
        .into_iter()
        .map(|mode| serde_json::Value::from(mode.as_str()))
        .chain([serde_json::Value::Null]);
    nullable(ObjectBuilder::new().enum_values(Some(modes)))
}

pub fn optional_sources_schema() -> RefOr<Schema> {
    list_of(SOURCE.schema(), true)
}

pub fn optional_keywords_schema() -> RefOr<Schema> {
    list_of(KEYWORD.schema(), true)
}

pub fn session_names_schema() -> RefOr<Schema> {
    ArrayBuilder::new()
        .items(SESSION_NAME.schema())
        .min_items(Some(1))
        .into()
}

pub fn session_names_or_none_schema() -> RefOr<Schema> {
    list_of(SESSION_NAME.schema(), false)
}

pub fn channel_id_schema() -> RefOr<Schema> {
    integer(CHANNEL_ID_MIN, CHANNEL_ID_MAX).into()
}

pub fn optional_channel_id_schema() -> RefOr<Schema> {
    nullable_integer(CHANNEL_ID_MIN, CHANNEL_ID_MAX).into()
}

/// A CRM group: a supergroup id, or 0 (none) as the original system wrote it.
pub fn optional_group_id_schema() -> RefOr<Schema> {
    OneOfBuilder::new()
        .item(integer(CHANNEL_ID_MIN, CHANNEL_ID_MAX))
        .item(integer(0, 0))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .into()
}

fn count(min: i64) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(min as f64))
        .maximum(Some(f64::from(u32::MAX)))
}

/// `{messages_per_minute ≥ 1, burst ≥ 1, cold_dms_per_day, peer_flood_pause_hours}`, each
/// optional (absent ones take their defaults).
fn pacing_object() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::Object,
            Type::Null,
        ]))
        .property("messages_per_minute", count(1))
        .property("burst", count(1))
        .property("cold_dms_per_day", count(0))
        .property("peer_flood_pause_hours", count(0))
}

pub fn optional_pacing_schema() -> RefOr<Schema> {
    pacing_object().into()
}

/// `{min_seconds, max_seconds}`, both required, 0 to 3600 (and min ≤ max, checked with the
/// configuration: 409).
pub fn optional_delay_schema() -> RefOr<Schema> {
    let seconds = || {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(0.0))
            .maximum(Some(f64::from(MAX_DELAY_SECONDS)))
    };
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::Object,
            Type::Null,
        ]))
        .property("min_seconds", seconds())
        .property("max_seconds", seconds())
        .required("min_seconds")
        .required("max_seconds")
        .into()
}

/// `ai_config.reply_delay_seconds` as the original writes it: `[min, max]`, each 0 to 3600, min
/// ≤ max.
/// `[min, max]` seconds with the first not above the second. A pair the schema accepts, so a
/// wrong order is refused as the configuration refuses it (409 `rejected`), not as malformed.
pub fn delay_order(path: &str, [min, max]: [i64; 2]) -> Result<(), ApiError> {
    if min <= max {
        return Ok(());
    }
    Err(ApiError::Rejected(vec![Problem::because(
        path,
        config(
            ProblemKind::DelayOrder {
                max: u32::try_from(max).unwrap_or(MAX_DELAY_SECONDS),
            },
            &format!("the minimum ({min} s) is more than the maximum ({max} s)"),
        ),
    )]))
}

pub fn optional_reply_delay_schema() -> RefOr<Schema> {
    ArrayBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::Array,
            Type::Null,
        ]))
        .items(integer(0, i64::from(MAX_DELAY_SECONDS)))
        .min_items(Some(2))
        .max_items(Some(2))
        .into()
}

/// The most tokens an answer may be given (`ai_config.max_tokens`): far above any model's output
/// limit, so only nonsense is refused.
pub const MAX_AI_TOKENS: i64 = 1_000_000;

/// `ai_config.temperature`: 0 to 2.
pub fn optional_temperature_schema() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::Number,
            Type::Null,
        ]))
        .minimum(Some(0.0))
        .maximum(Some(2.0))
        .into()
}

/// `ai_config.max_tokens`: 1 to [`MAX_AI_TOKENS`].
pub fn optional_max_tokens_schema() -> RefOr<Schema> {
    nullable_integer(1, MAX_AI_TOKENS).into()
}

/// `ai_config.context_window_messages`: 1 to the most the AI is shown.
pub fn optional_context_window_schema() -> RefOr<Schema> {
    nullable_integer(
        1,
        i64::from(jobbot_core::ai::AiSettings::MAX_CONTEXT_WINDOW),
    )
    .into()
}

/// `ai_config.max_replies_per_day`: 0 (no AI replies) or more.
pub fn optional_reply_cap_schema() -> RefOr<Schema> {
    nullable_integer(0, i64::from(u32::MAX)).into()
}

pub fn token_days_schema() -> RefOr<Schema> {
    nullable_integer(1, i64::from(crate::auth::MAX_TOKEN_DAYS)).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value the pattern takes is one the configuration takes (the web never passes a value
    /// its own store would refuse as malformed).
    #[test]
    fn values_the_patterns_take_load_in_the_configuration() {
        use jobbot_core::config::SourceRef;
        for phone in ["+79991234567", "+7 (999) 123-45-67", "+1.234.567.8901"] {
            assert!(PHONE.matches(phone), "{phone}");
            assert!(PhoneNumber::parse(phone).is_ok(), "{phone}");
        }
        for phone in [
            "79991234567",
            "+0999123456",
            "+7999",
            " +79991234567",
            "+7999123456789012",
        ] {
            assert!(!PHONE.matches(phone), "{phone}");
        }
        for source in [
            "@python_jobs",
            "t.me/python_jobs",
            "https://t.me/s/python_jobs/12/",
            "https://t.me/+AbC_d-9",
            "t.me/joinchat/AbC",
            "https://t.me/c/1234567890/55",
            "-1001234567890",
            "-1000000000001",
            "-4012345",
            "1234567890",
        ] {
            assert!(SOURCE.matches(source), "{source}");
            assert!(SourceRef::parse(source).is_some(), "{source}");
        }
        for source in [
            "python_jobs",
            "@abc",
            "0",
            "-1000000000000",
            "https://example.com/x",
            " @python_jobs",
        ] {
            assert!(!SOURCE.matches(source), "{source}");
        }
        for keyword in ["python", "senior rust", "\"go\"", "\" go \"", "a\"b", "x"] {
            assert!(KEYWORD.matches(keyword), "{keyword:?}");
            assert!(
                jobbot_core::filters::parse_keyword(keyword).is_ok(),
                "{keyword:?}"
            );
        }
        for keyword in [
            "",
            " ",
            "\"",
            "\"go",
            "go\"",
            "\"\"",
            "\" \"",
            "\"a\"b\"",
            " go",
            "go\u{3000}",
        ] {
            assert!(!KEYWORD.matches(keyword), "{keyword:?}");
        }
        for template in ["Hello {first_name}!", "{{literal}}", "{ vacancy_link }", ""] {
            assert!(TEMPLATE.matches(template), "{template}");
            assert!(
                jobbot_core::template::parse_template(template).is_ok(),
                "{template}"
            );
        }
        for template in ["{unknown}", "{", "}", "{{first_name}", "{first_name}}"] {
            assert!(!TEMPLATE.matches(template), "{template}");
            assert!(
                jobbot_core::template::parse_template(template).is_err(),
                "{template}"
            );
        }
        for proxy in [
            "socks5://127.0.0.1:1080",
            "socks5://user:p%40ss@proxy.example.com:65535",
            "socks5://token@10.0.0.1:1",
        ] {
            assert!(PROXY.matches(proxy), "{proxy}");
        }
        for proxy in [
            "socks5://u:s@host?x:1080",
            "socks5://u:s@host:1080/",
            "socks5://u:s@host:0",
            "socks5://u:s@host:65536",
            "socks5://u:s@host:01080",
            "socks5://u:s t@host:1080",
            "http://host:1080",
        ] {
            assert!(!PROXY.matches(proxy), "{proxy}");
        }
        assert!(NON_BLANK.matches("x") && NON_BLANK.matches(" x "));
        assert!(!NON_BLANK.matches("") && !NON_BLANK.matches(" \u{85}\u{feff}\u{3000}"));
        assert!(INVITE_LINK.matches("") && INVITE_LINK.matches("https://t.me/+AbC"));
        assert!(!INVITE_LINK.matches("@crm_group"));
        assert!(
            IF_MATCH.matches("\"0123456789abcdef\"") && IF_MATCH.matches("W/\"0123456789abcdef\"")
        );
        assert!(
            IF_MATCH.matches("0123456789abcdef")
                && !IF_MATCH.matches("")
                && !IF_MATCH.matches("\"0123\"")
        );
    }

    /// The document states the very patterns the handlers check.
    #[test]
    fn the_openapi_document_states_the_checked_patterns() {
        let document = serde_json::to_value(crate::openapi()).unwrap();
        let schemas = &document["components"]["schemas"];
        let property = |schema: &str, field: &str| schemas[schema]["properties"][field].clone();
        assert_eq!(property("AgentFields", "phone")["pattern"], PHONE.pattern);
        assert_eq!(
            property("AgentFields", "session_name")["pattern"],
            SESSION_NAME.pattern
        );
        assert_eq!(property("AgentFields", "proxy")["pattern"], PROXY.pattern);
        assert_eq!(
            property("ChannelFields", "input_sources")["items"]["pattern"],
            SOURCE.pattern
        );
        assert_eq!(
            property("ChannelFields", "include_keywords")["items"]["pattern"],
            KEYWORD.pattern
        );
        assert_eq!(
            property("ChannelFields", "auto_response_template")["pattern"],
            TEMPLATE.pattern
        );
        assert_eq!(
            property("NewChannel", "telegram_id")["maximum"],
            CHANNEL_ID_MAX
        );
        let required = schemas["NewChannel"]["required"].as_array().unwrap();
        assert!(required.contains(&"name".into()) && required.contains(&"telegram_id".into()));
        assert_eq!(schemas["AgentFields"]["additionalProperties"], false);
        let parameters = &document["paths"]["/api/channels/{id}"]["put"]["parameters"];
        let if_match = parameters
            .as_array()
            .unwrap()
            .iter()
            .find(|parameter| parameter["name"] == "If-Match")
            .unwrap();
        assert_eq!(if_match["schema"]["pattern"], IF_MATCH.pattern);
    }

    /// Random strings: whatever the proxy pattern takes, the configuration's proxy check takes.
    #[test]
    fn every_proxy_the_pattern_takes_loads() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(15);
        let alphabet: Vec<char> = "ab:@%12.-_*/?# 0F".chars().collect();
        let mut taken = 0;
        for _ in 0..20_000 {
            let tail: String = (0..rng.random_range(3..20))
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            let proxy = format!("socks5://{tail}:1080");
            if PROXY.matches(&proxy) {
                taken += 1;
                let document = serde_json::json!({"output_channels": [{
                    "id": "c", "name": "c", "telegram_id": -1001234567890i64,
                    "agents": [{"phone": "+79991234567", "session_name": "a", "proxy": proxy}]
                }]});
                let loaded = jobbot_core::config::load(&document.to_string());
                let masked = proxy.contains(":***@") || proxy.contains("//***@");
                assert!(loaded.is_ok() || masked, "{proxy}: {:?}", loaded.err());
            }
        }
        assert!(taken > 100, "the sample took {taken}");
    }
}
