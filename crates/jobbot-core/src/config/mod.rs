//! Channel configuration: the file model, migration of the old single-agent format, validation
//! into typed values, and rendering back to JSON.
//!
//! `load` is the one way in: text → [`ConfigDocument`] (lossless) → migrated → validated
//! [`Config`] (typed). `render` is the one way out. Both are pure; the config store in
//! `jobbot-store` owns the file and calls them.

mod migrate;
mod model;
mod proxy;
#[cfg(test)]
mod tests;
mod typed;
mod validate;

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use model::{
    AgentDocument, ChannelDocument, ConfigDocument, DEFAULT_AUTO_RESPONSE_TEMPLATE,
    FiltersDocument, HumanDelay, Pacing,
};
pub use proxy::{MASK, mask_proxy, mask_urls_in};
pub use typed::{Agent, Channel, Config, Filters, SourceRef};

/// One problem in a configuration, with the JSON path of the value it is about, e.g.
/// `output_channels[2].agents[1].phone: "+79*****67" is not a phone number in international
/// format`. `kind` says what is wrong as data, so a reader can word it in another language
/// without parsing `message` (English).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigProblem {
    /// Dotted path with indices; empty for the document as a whole.
    pub path: String,
    pub message: String,
    #[serde(default)]
    pub kind: ProblemKind,
}

impl ConfigProblem {
    /// A problem only `message` describes ([`ProblemKind::Other`]).
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::of_kind(path, ProblemKind::Other, message)
    }

    pub fn of_kind(path: impl Into<String>, kind: ProblemKind, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
            kind,
        }
    }
}

/// What is wrong with a value of the configuration. Phone numbers in it are masked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum ProblemKind {
    /// Missing or empty.
    Required,
    /// Not a channel or supergroup id (`-100…`).
    NotChannelId,
    /// Not `@username`, a t.me link or a numeric id.
    NotSource,
    /// Keyword syntax; `detail` says what (English).
    NotKeyword {
        detail: String,
    },
    /// CRM is on without its group.
    CrmGroupRequired,
    /// CRM is on without an agent.
    CrmAgentRequired,
    /// An old-format channel has `present` but not this field.
    LegacyAgentIncomplete {
        present: String,
    },
    /// Auto-responses are on with an empty template.
    TemplateEmpty,
    /// Template syntax; `detail` says what (English).
    NotTemplate {
        detail: String,
    },
    NotInviteLink,
    NotPhone,
    NotSessionName,
    /// An agent uses the main account's session.
    MainSession,
    /// The same session twice in one channel; `first` is the other index.
    SessionTwice {
        first: usize,
    },
    /// Not `socks5://[user:pass@]host:port`.
    NotProxy,
    /// The masked password (`***`) sent back where a password belongs.
    ProxyMasked,
    /// A count that must be at least 1.
    AtLeastOne,
    /// `min_seconds` above `max_seconds`.
    DelayOrder {
        max: u32,
    },
    /// A delay over an hour.
    DelayTooLong,
    /// The same channel id twice; `first` is the other index.
    ChannelIdTwice {
        first: usize,
    },
    /// A session with another phone at `there`.
    SessionPhoneElsewhere {
        there: String,
    },
    /// A phone with another session (`session`) at `there`.
    PhoneSessionElsewhere {
        session: String,
        there: String,
    },
    /// Longer than Telegram takes, counted in UTF-16 code units as Telegram counts text.
    TooLong {
        max_utf16: usize,
    },
    /// Anything else (JSON syntax, the file's shape, a migration note): `message` says it.
    #[default]
    Other,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// All the problems of a configuration that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigProblems(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// The revision of a configuration: a hash of the file's bytes. A writer states the revision it
/// read; if the file has changed since, its write is refused instead of overwriting the change.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Revision(String);

impl Revision {
    /// The first 16 hex digits of the SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        let digest = Sha256::digest(bytes);
        Self(hex::encode(&digest[..8]))
    }

    /// The revision of a file that does not exist yet.
    pub fn empty() -> Self {
        Self::of(b"")
    }

    pub fn parse(text: &str) -> Option<Self> {
        (text.len() == 16 && text.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Self(text.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A configuration that loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// What the file says, with legacy keys migrated in memory.
    pub document: ConfigDocument,
    /// The validated, typed view.
    pub config: Config,
    /// What migration changed (one line per channel); empty when the file is already current.
    pub migrations: Vec<ConfigProblem>,
}

/// Parses, migrates and validates a configuration file's text. On failure every problem found is
/// returned, each with its path.
pub fn load(text: &str) -> Result<Loaded, ConfigProblems> {
    let (document, migrations) = parse_and_migrate(text)?;
    let config = validate::validate(&document)?;
    Ok(Loaded {
        document,
        config,
        migrations,
    })
}

/// The first half of [`load`]: text → migrated document, without validation. Returns the
/// migration notes with it.
pub fn parse_and_migrate(
    text: &str,
) -> Result<(ConfigDocument, Vec<ConfigProblem>), ConfigProblems> {
    let mut document = parse(text)?;
    let migrations = migrate::migrate(&mut document);
    Ok((document, migrations))
}

/// Validates a document built in memory (by the API or the web form) without going through text.
pub fn validate(document: &ConfigDocument) -> Result<Config, ConfigProblems> {
    validate::validate(document)
}

/// Serialises a document the way the original system wrote it: two-space indentation, non-ASCII
/// characters as they are (Python's `ensure_ascii=False`), a trailing newline.
pub fn render(document: &ConfigDocument) -> String {
    let mut text =
        serde_json::to_string_pretty(document).expect("a ConfigDocument always serialises");
    text.push('\n');
    text
}

/// Text → document, collecting a problem for every channel that does not fit the model rather
/// than stopping at the first.
fn parse(text: &str) -> Result<ConfigDocument, ConfigProblems> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|error| {
        ConfigProblems(vec![ConfigProblem::new(
            "",
            format!("not valid JSON: {error} (nothing was loaded; the file was left as it is)"),
        )])
    })?;
    let serde_json::Value::Object(mut root) = value else {
        return Err(ConfigProblems(vec![ConfigProblem::new(
            "",
            "the file must hold a JSON object with an \"output_channels\" list",
        )]));
    };
    // `shift_remove` keeps the order of the other keys (`remove` would swap the last key in).
    let channels = match root.shift_remove("output_channels") {
        None => Vec::new(),
        Some(serde_json::Value::Array(channels)) => channels,
        Some(other) => {
            return Err(ConfigProblems(vec![ConfigProblem::new(
                "output_channels",
                format!("must be a list of channels, found {}", json_kind(&other)),
            )]));
        }
    };
    let mut problems = Vec::new();
    let mut output_channels = Vec::with_capacity(channels.len());
    for (index, channel) in channels.into_iter().enumerate() {
        match serde_path_to_error::deserialize::<_, ChannelDocument>(channel) {
            Ok(channel) => output_channels.push(channel),
            Err(error) => {
                let inner = error.path().to_string();
                let path = if inner == "." {
                    format!("output_channels[{index}]")
                } else {
                    format!("output_channels[{index}].{inner}")
                };
                problems.push(ConfigProblem::new(path, error.into_inner().to_string()));
            }
        }
    }
    let rest: ConfigDocument = serde_path_to_error::deserialize(serde_json::Value::Object(root))
        .map_err(|error| {
            ConfigProblems(vec![ConfigProblem::new(
                error.path().to_string(),
                error.into_inner().to_string(),
            )])
        })?;
    if !problems.is_empty() {
        return Err(ConfigProblems(problems));
    }
    Ok(ConfigDocument {
        output_channels,
        ..rest
    })
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}
