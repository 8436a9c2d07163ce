//! Typed identifiers. Each has a `parse` constructor that accepts exactly the documented forms, so
//! a value of one of these types is valid by construction ("parse, don't validate").

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a string was refused by one of the `parse` constructors. The message is written to follow
/// `"<value>" ` in an error line, e.g. `"+7999" is not a phone number in international format`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} {reason}")]
pub struct ParseIdError {
    pub value: String,
    pub reason: &'static str,
}

impl ParseIdError {
    pub(crate) fn new(value: &str, reason: &'static str) -> Self {
        Self {
            value: value.to_owned(),
            reason,
        }
    }
}

/// A phone number in E.164 form: `+` and 8 to 15 digits, the first not `0`.
///
/// Spaces, dashes, dots and parentheses are accepted on input (people paste numbers formatted)
/// and dropped; the canonical form is `+79991234567`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

impl PhoneNumber {
    pub const INVALID: &'static str =
        "is not a phone number in international format (+ and 8 to 15 digits)";

    /// A refused number is quoted masked in the error ([`mask_phone`]): errors reach logs.
    pub fn parse(input: &str) -> Result<Self, ParseIdError> {
        let invalid = || ParseIdError::new(&mask_phone(input), Self::INVALID);
        let trimmed = input.trim();
        let Some(rest) = trimmed.strip_prefix('+') else {
            return Err(invalid());
        };
        let mut digits = String::with_capacity(rest.len() + 1);
        digits.push('+');
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '(' | ')' | '.' => {}
                _ => return Err(invalid()),
            }
        }
        let count = digits.len() - 1;
        if !(8..=15).contains(&count) || digits.as_bytes()[1] == b'0' {
            return Err(invalid());
        }
        Ok(Self(digits))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form used in logs: country code and the last two digits only, e.g. `+79*******67`.
    /// Phone numbers identify people; logs keep just enough to tell agents apart.
    pub fn masked(&self) -> String {
        mask_phone(&self.0)
    }
}

/// Masks any phone-like string for logging (see [`PhoneNumber::masked`]). Works on unparsed input
/// too, so an invalid number in an error message is not printed in full either.
pub fn mask_phone(raw: &str) -> String {
    let chars: Vec<char> = raw.chars().collect();
    if chars.len() <= 5 {
        return "*".repeat(chars.len());
    }
    let keep_head = if chars[0] == '+' { 3 } else { 2 };
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i < keep_head || i >= chars.len() - 2 || !c.is_ascii_digit() {
                *c
            } else {
                '*'
            }
        })
        .collect()
}

impl fmt::Display for PhoneNumber {
    /// Displays masked: a phone number reaches logs through `Display` far more often than on
    /// purpose. Use [`PhoneNumber::as_str`] where the full number is needed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = ParseIdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<PhoneNumber> for String {
    fn from(value: PhoneNumber) -> Self {
        value.0
    }
}

/// The name of a Telegram session: the file `sessions/{name}.session`.
///
/// Letters, digits, `_` and `-`, 1 to 64 characters: never a path separator, never `.` or `..`,
/// so a session name cannot point outside `sessions/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SessionName(String);

impl SessionName {
    /// The main account's session (the original system's `bot_session`). An agent may not use it.
    pub const MAIN: &'static str = "bot_session";
    pub const INVALID: &'static str =
        "is not a session name (1 to 64 letters, digits, '_' or '-'; no path separators)";

    pub fn parse(input: &str) -> Result<Self, ParseIdError> {
        let ok = !input.is_empty()
            && input.len() <= 64
            && input
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if ok {
            Ok(Self(input.to_owned()))
        } else {
            Err(ParseIdError::new(input, Self::INVALID))
        }
    }

    pub fn main() -> Self {
        Self(Self::MAIN.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn file_name(&self) -> String {
        format!("{}.session", self.0)
    }
}

impl fmt::Display for SessionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for SessionName {
    type Error = ParseIdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<SessionName> for String {
    fn from(value: SessionName) -> Self {
        value.0
    }
}

/// A public Telegram username, without the `@`.
///
/// Telegram's rules (https://core.telegram.org/method/account.checkUsername and the app's own
/// check): 5 to 32 characters of `a-z`, `0-9` and `_`, starting with a letter. Usernames are
/// case-insensitive, so equality, hashing and ordering use the lower-case form; the spelling the
/// user wrote is kept for display.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Username {
    display: String,
    key: String,
}

impl Username {
    pub const INVALID: &'static str =
        "is not a Telegram username (5 to 32 letters, digits or '_', starting with a letter)";

    /// Accepts `name` or `@name`.
    pub fn parse(input: &str) -> Result<Self, ParseIdError> {
        let name = input.strip_prefix('@').unwrap_or(input);
        let valid_len = (5..=32).contains(&name.len());
        let valid_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        let starts_with_letter = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
        if valid_len && valid_chars && starts_with_letter {
            Ok(Self {
                display: name.to_owned(),
                key: name.to_ascii_lowercase(),
            })
        } else {
            Err(ParseIdError::new(input, Self::INVALID))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.display
    }

    /// The lower-case form Telegram compares by.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// `@name`, the way users write it.
    pub fn with_at(&self) -> String {
        format!("@{}", self.display)
    }
}

impl PartialEq for Username {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Username {}
impl std::hash::Hash for Username {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}
impl PartialOrd for Username {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Username {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}", self.display)
    }
}

impl TryFrom<String> for Username {
    type Error = ParseIdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Username> for String {
    fn from(value: Username) -> Self {
        value.display
    }
}

/// The kind of peer a [`ChatId`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatKind {
    User,
    /// A basic group (legacy "chat").
    BasicGroup,
    /// A broadcast channel or a supergroup (forums are supergroups).
    Channel,
}

/// A Telegram peer id in the Bot API "dialog id" form, the one form jobbot uses everywhere:
/// users are positive, basic groups are `-id`, channels and supergroups are `-100…` (that is,
/// `-1_000_000_000_000 - bare_id`). This is the canonical id the original system lacked: it
/// compared Telethon's bare ids with configured `-100…` ids and never matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChatId(i64);

/// `-1_000_000_000_000`: the Bot API offset of channel ids (core.telegram.org/api/bots/ids).
const CHANNEL_OFFSET: i64 = -1_000_000_000_000;
/// Largest bare channel id the Bot API form can hold (its documented range ends at 997852516352).
const MAX_BARE_CHANNEL: i64 = 997_852_516_352;

impl ChatId {
    pub const NOT_CHANNEL: &'static str =
        "is not a channel or supergroup id in Bot API form (-100 followed by the channel's id)";

    /// Any Bot API dialog id.
    pub fn from_bot_api(id: i64) -> Option<Self> {
        Self::kind_of(id).map(|_| Self(id))
    }

    pub fn user(bare: i64) -> Option<Self> {
        (bare > 0).then_some(Self(bare))
    }

    pub fn basic_group(bare: i64) -> Option<Self> {
        (bare > 0 && bare < 1_000_000_000_000).then_some(Self(-bare))
    }

    pub fn channel(bare: i64) -> Option<Self> {
        (bare > 0 && bare <= MAX_BARE_CHANNEL).then_some(Self(CHANNEL_OFFSET - bare))
    }

    /// A channel or supergroup id as configured (`telegram_id`, `crm_group_id`): must be `-100…`.
    pub fn parse_channel(id: i64) -> Result<Self, ParseIdError> {
        match Self::from_bot_api(id) {
            Some(chat) if chat.kind() == ChatKind::Channel => Ok(chat),
            _ => Err(ParseIdError::new(&id.to_string(), Self::NOT_CHANNEL)),
        }
    }

    fn kind_of(id: i64) -> Option<ChatKind> {
        if id > 0 {
            Some(ChatKind::User)
        } else if (CHANNEL_OFFSET - MAX_BARE_CHANNEL..CHANNEL_OFFSET).contains(&id) {
            Some(ChatKind::Channel)
        } else if id < 0 && id > -1_000_000_000_000 {
            Some(ChatKind::BasicGroup)
        } else {
            None
        }
    }

    pub fn kind(self) -> ChatKind {
        Self::kind_of(self.0).expect("ChatId is valid by construction")
    }

    /// The id inside its kind's namespace (what MTProto and Telethon call the id).
    pub fn bare(self) -> i64 {
        match self.kind() {
            ChatKind::User => self.0,
            ChatKind::BasicGroup => -self.0,
            ChatKind::Channel => CHANNEL_OFFSET - self.0,
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for ChatId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers() {
        let check = |input: &str, expected: Option<&str>| {
            assert_eq!(
                PhoneNumber::parse(input).ok().map(|p| p.0),
                expected.map(str::to_owned),
                "{input}"
            );
        };
        check("+79991234567", Some("+79991234567"));
        check("+7 (999) 123-45-67", Some("+79991234567"));
        check("+7999", None);
        check("79991234567", None);
        check("+0999123456", None);
        check("+7999123456789012", None);
        check("+7999abc4567", None);
        check("", None);
    }

    #[test]
    fn phone_masking_keeps_country_code_and_last_two_digits() {
        assert_eq!(
            PhoneNumber::parse("+79991234567").unwrap().to_string(),
            "+79*******67"
        );
        assert_eq!(mask_phone("+7999"), "*****");
    }

    #[test]
    fn session_names() {
        for ok in ["agent_1", "agent-python-2", "A", "bot_session"] {
            assert!(SessionName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "../x",
            "a/b",
            "a\\b",
            ".",
            "..",
            "a b",
            "агент",
            &"x".repeat(65),
        ] {
            assert!(SessionName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn usernames_compare_case_insensitively() {
        assert_eq!(
            Username::parse("@Recruiter_Ivan").unwrap(),
            Username::parse("recruiter_ivan").unwrap()
        );
        assert_eq!(
            Username::parse("@Recruiter_Ivan").unwrap().to_string(),
            "@Recruiter_Ivan"
        );
        for bad in ["@abc", "1abcde", "abc-def", &"a".repeat(33), "@"] {
            assert!(Username::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn chat_ids_round_trip_between_forms() {
        let channel = ChatId::channel(1234567890).unwrap();
        assert_eq!(channel.get(), -1001234567890);
        assert_eq!(channel.kind(), ChatKind::Channel);
        assert_eq!(channel.bare(), 1234567890);
        assert_eq!(ChatId::from_bot_api(-1001234567890), Some(channel));
        assert_eq!(
            ChatId::from_bot_api(-123).unwrap().kind(),
            ChatKind::BasicGroup
        );
        assert_eq!(ChatId::from_bot_api(42).unwrap().kind(), ChatKind::User);
        assert_eq!(ChatId::from_bot_api(0), None);
        assert!(ChatId::parse_channel(-123).is_err());
        assert!(ChatId::parse_channel(0).is_err());
        assert!(ChatId::parse_channel(-1001234567890).is_ok());
    }
}
