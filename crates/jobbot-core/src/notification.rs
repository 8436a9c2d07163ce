//! The notification an output channel receives for a vacancy, and the text hash that recognises
//! the same vacancy reposted in another source.
//!
//! The layout is the original's (`🎯 Новая вакансия!`, chat, keywords, link, contacts), plus the
//! vacancy text itself, which the original left out. Formatting travels as entities, never as
//! Markdown: the original sent user text through Telethon's Markdown parser, so a `*` or `_` in a
//! vacancy could swallow or break the formatting. With entities, user text is sent verbatim and
//! needs no escaping.
//!
//! Offsets and lengths of entities are UTF-16 code units, as MTProto counts them
//! (core.telegram.org/api/entities): an emoji outside the Basic Multilingual Plane counts 2.

use sha2::{Digest, Sha256};

use crate::contacts::Contacts;
use crate::filters::normalize;
use crate::telegram::{EntityKind, MessageContent, PeerKind, Sender, TextEntity};

/// Telegram's limit on a message's text, in UTF-16 code units (`MESSAGE_TOO_LONG` beyond).
pub const MAX_MESSAGE_UTF16: usize = 4096;

/// What goes into one notification.
#[derive(Debug, Clone, Copy)]
pub struct Notification<'a> {
    /// The source chat's title.
    pub source_title: &'a str,
    /// The post's `t.me` link; empty when the source has none (a basic group).
    pub link: &'a str,
    /// The include keywords that matched this channel, as configured.
    pub matched_keywords: &'a [String],
    /// Who posted the message, when Telegram says (a user in a group).
    pub sender: Option<&'a Sender>,
    pub contacts: &'a Contacts,
    /// The vacancy text as posted.
    pub vacancy_text: &'a str,
}

/// How many items of each list the header shows at most. A header stays short, so the vacancy
/// text keeps nearly all of the message's 4,096 units.
const MAX_KEYWORDS: usize = 10;
const MAX_CONTACTS_PER_KIND: usize = 5;
/// Longest title, keyword or contact shown, in characters (Telegram titles are at most 128).
const MAX_FIELD_CHARS: usize = 128;
const ELLIPSIS: &str = "…";

/// Builds the notification: header lines with bold labels, the link as a URL entity, and the
/// vacancy text in a blockquote, trimmed (with "…") so the whole text fits Telegram's limit.
pub fn format_notification(notification: &Notification<'_>) -> MessageContent {
    let mut message = Builder::default();
    message.push("🎯 ");
    message.push_entity("Новая вакансия!", EntityKind::Bold);
    message.push("\n📍 ");
    message.push_entity("Чат:", EntityKind::Bold);
    message.push(" ");
    message.push(&shorten(notification.source_title.trim(), MAX_FIELD_CHARS));

    let keywords: Vec<String> = notification
        .matched_keywords
        .iter()
        .map(|keyword| displayed_keyword(keyword))
        .filter(|keyword| !keyword.is_empty())
        .take(MAX_KEYWORDS)
        .collect();
    if !keywords.is_empty() {
        message.push("\n🛠 ");
        message.push_entity("Ключевые слова:", EntityKind::Bold);
        message.push(" ");
        message.push(&keywords.join(", "));
    }
    if !notification.link.is_empty() {
        message.push("\n🔗 ");
        message.push_entity("Перейти:", EntityKind::Bold);
        message.push(" ");
        message.push_entity(notification.link, EntityKind::Url);
    }

    let contact_lines = contact_lines(notification.sender, notification.contacts);
    if !contact_lines.is_empty() {
        message.push("\n\n");
        message.push_entity("Контакты:", EntityKind::Bold);
        for line in contact_lines {
            message.push("\n   ");
            message.push(&line);
        }
    }

    let vacancy_text = notification.vacancy_text.trim();
    if !vacancy_text.is_empty() {
        let separator = "\n\n";
        let budget = MAX_MESSAGE_UTF16
            .saturating_sub(message.units)
            .saturating_sub(utf16_len(separator));
        // At least a few characters of the text, or none: a blockquote holding only "…" says
        // nothing.
        if budget > 16 {
            message.push(separator);
            let fitted = fit_to_utf16(vacancy_text, budget);
            message.push_entity(&fitted, EntityKind::Blockquote);
        }
    }
    message.finish()
}

/// A stable hash of a vacancy's text, equal for reposts of the same vacancy.
///
/// Reposts usually copy the text verbatim, but sources change what surrounds it: the signature
/// (`@their_channel`, a `t.me/…` link), emoji, punctuation, line breaks. So the text is compared
/// after: lower-casing with `ё` → `е` (the filters' [`normalize`]); dropping every word that is a
/// link (`http…`, `t.me/…`, `www.…`) or a mention (`@name`); replacing every other character that
/// is not a letter or digit by a space; collapsing spaces. Two different vacancies that differ
/// only in their contact username therefore hash the same; that costs one notification at most,
/// where keeping mentions would let every re-signed repost through. Words of a signature line
/// ("Подписывайтесь на канал") still count: a repost that adds prose is a different text.
///
/// A text made only of links and mentions hashes its plain normalised form instead, so such
/// posts are not all one "vacancy". The result is the SHA-256 in lower-case hex.
pub fn normalized_text_hash(text: &str) -> String {
    let normalized = normalize(text);
    let mut words: Vec<&str> = Vec::new();
    for token in normalized.split_whitespace() {
        if is_link_or_mention(token) {
            continue;
        }
        words.extend(
            token
                .split(|c: char| !c.is_alphanumeric())
                .filter(|word| !word.is_empty()),
        );
    }
    let canonical = if words.is_empty() {
        normalized.split_whitespace().collect::<Vec<_>>().join(" ")
    } else {
        words.join(" ")
    };
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// Length of a text in UTF-16 code units.
pub fn utf16_len(text: &str) -> usize {
    text.chars().map(char::len_utf16).sum()
}

/// A whole message's text bounded to Telegram's limit ([`MAX_MESSAGE_UTF16`]) by cutting its
/// end (see [`fit_to_utf16`]). Every text jobbot composes from parts it does not control (names,
/// templates, a vacancy, a contact's message) goes through this or a tighter bound, so no send
/// fails with `MESSAGE_TOO_LONG`.
pub fn fit_message(text: &str) -> String {
    fit_to_utf16(text, MAX_MESSAGE_UTF16)
}

/// The text itself if it fits in `max_units` UTF-16 units, else its longest prefix that fits
/// together with "…". The cut falls between characters, so never inside a surrogate pair, and
/// preferably at a space near the end so no word is halved.
pub fn fit_to_utf16(text: &str, max_units: usize) -> String {
    if utf16_len(text) <= max_units {
        return text.to_owned();
    }
    let room = max_units.saturating_sub(utf16_len(ELLIPSIS));
    let mut units = 0;
    let mut cut = 0;
    for (index, character) in text.char_indices() {
        let next = units + character.len_utf16();
        if next > room {
            break;
        }
        units = next;
        cut = index + character.len_utf8();
    }
    let prefix = &text[..cut];
    // A space in the last 10% of the prefix is a better place to stop than mid-word.
    let word_cut = prefix
        .rfind(char::is_whitespace)
        .filter(|&at| at >= prefix.len() - prefix.len() / 10 && at > 0);
    let prefix = match word_cut {
        Some(at) => &prefix[..at],
        None => prefix,
    };
    format!("{}{ELLIPSIS}", prefix.trim_end())
}

fn is_link_or_mention(token: &str) -> bool {
    let token = token.trim_start_matches(|c: char| !c.is_alphanumeric() && c != '@');
    token.starts_with('@')
        || token.contains("://")
        || token.starts_with("www.")
        || token.starts_with("t.me/")
        || token.starts_with("telegram.me/")
}

/// A keyword as shown: whole-word quotes removed, shortened.
fn displayed_keyword(keyword: &str) -> String {
    let trimmed = keyword.trim();
    let unquoted = trimmed
        .strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .unwrap_or(trimmed);
    shorten(unquoted.trim(), MAX_FIELD_CHARS / 2)
}

/// The original's contact lines: the poster (`✉️ @name  |  👤 Full Name`), then what the text
/// gives, each username once.
fn contact_lines(sender: Option<&Sender>, contacts: &Contacts) -> Vec<String> {
    let mut lines = Vec::new();
    let sender = sender.filter(|sender| sender.kind == PeerKind::User);
    if let Some(sender) = sender {
        let full_name = match &sender.last_name {
            Some(last) if !last.trim().is_empty() => format!("{} {}", sender.first_name, last),
            _ => sender.first_name.clone(),
        };
        let full_name = shorten(full_name.trim(), MAX_FIELD_CHARS);
        let line = match (&sender.username, full_name.is_empty()) {
            (Some(username), false) => format!("✉️ {}  |  👤 {full_name}", username.with_at()),
            (Some(username), true) => format!("✉️ {}", username.with_at()),
            (None, false) => format!("👤 {full_name}"),
            (None, true) => String::new(),
        };
        if !line.is_empty() {
            lines.push(line);
        }
    }
    let sender_username = sender.and_then(|sender| sender.username.as_ref());
    lines.extend(
        contacts
            .telegram
            .iter()
            .filter(|username| Some(*username) != sender_username)
            .take(MAX_CONTACTS_PER_KIND)
            .map(|username| format!("✉️ {}", username.with_at())),
    );
    lines.extend(
        contacts
            .emails
            .iter()
            .take(MAX_CONTACTS_PER_KIND)
            .map(|email| format!("📧 {}", shorten(email, MAX_FIELD_CHARS))),
    );
    lines.extend(
        contacts
            .phones
            .iter()
            .take(MAX_CONTACTS_PER_KIND)
            .map(|phone| format!("📞 {phone}")),
    );
    lines
}

fn shorten(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        None => text.to_owned(),
        Some(_) => {
            let keep: String = text.chars().take(max_chars - 1).collect();
            format!("{}{ELLIPSIS}", keep.trim_end())
        }
    }
}

/// Text with entities, counting UTF-16 units as it grows.
#[derive(Default)]
struct Builder {
    text: String,
    units: usize,
    entities: Vec<TextEntity>,
}

impl Builder {
    fn push(&mut self, text: &str) {
        self.text.push_str(text);
        self.units += utf16_len(text);
    }

    /// Appends `text` covered by one entity; nothing for empty text (Telegram refuses empty
    /// entities).
    fn push_entity(&mut self, text: &str, kind: EntityKind) {
        let offset = self.units;
        self.push(text);
        let length = self.units - offset;
        if length > 0 {
            self.entities.push(TextEntity {
                kind,
                offset: to_u32(offset),
                length: to_u32(length),
            });
        }
    }

    /// The message, cut at the limit if the header alone were too long (it cannot be with the
    /// caps above; this keeps the limit a guarantee rather than an argument).
    fn finish(mut self) -> MessageContent {
        if self.units > MAX_MESSAGE_UTF16 {
            self.text = fit_to_utf16(&self.text, MAX_MESSAGE_UTF16);
            let units = utf16_len(&self.text);
            // Entities cut by the trim are dropped, never shortened: half a link is a wrong link.
            self.entities
                .retain(|entity| (entity.offset + entity.length) as usize <= units);
            self.units = units;
        }
        MessageContent {
            text: self.text,
            entities: self.entities,
            // The link is the post itself and its text is quoted below: a preview would repeat it.
            link_preview: false,
            media: None,
        }
    }
}

fn to_u32(units: usize) -> u32 {
    u32::try_from(units).expect("a message is far shorter than 4 G units")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::contacts::extract_contacts;
    use crate::ids::{ChatId, Username};

    /// The text an entity covers.
    fn covered(content: &MessageContent, entity: &TextEntity) -> String {
        let units: Vec<u16> = content.text.encode_utf16().collect();
        let start = entity.offset as usize;
        String::from_utf16(&units[start..start + entity.length as usize])
            .expect("an entity never splits a surrogate pair")
    }

    fn entities_of(content: &MessageContent) -> Vec<(EntityKind, String)> {
        content
            .entities
            .iter()
            .map(|entity| (entity.kind.clone(), covered(content, entity)))
            .collect()
    }

    fn assert_well_formed(content: &MessageContent) {
        let length = utf16_len(&content.text);
        assert!(length <= MAX_MESSAGE_UTF16, "{length} units");
        for entity in &content.entities {
            assert!(entity.length > 0, "{entity:?}");
            assert!(
                (entity.offset + entity.length) as usize <= length,
                "{entity:?} beyond {length}"
            );
            covered(content, entity);
        }
    }

    fn recruiter() -> Sender {
        Sender {
            id: ChatId::user(42).unwrap(),
            kind: PeerKind::User,
            username: Some(Username::parse("anna_hr").unwrap()),
            first_name: "Анна".into(),
            last_name: Some("Петрова".into()),
            peer: None,
        }
    }

    #[test]
    fn layout_with_bold_labels_link_and_quoted_vacancy() {
        let text = "Ищем Python-разработчика 🐍, пишите @ivan_recruiter или hr@gmail.com";
        let contacts = extract_contacts(text);
        let keywords = vec!["python".to_owned(), "\"django\"".to_owned()];
        let sender = recruiter();
        let content = format_notification(&Notification {
            source_title: "Python Jobs",
            link: "https://t.me/python_jobs/7",
            matched_keywords: &keywords,
            sender: Some(&sender),
            contacts: &contacts,
            vacancy_text: text,
        });
        assert_eq!(
            content.text,
            "🎯 Новая вакансия!\n📍 Чат: Python Jobs\n🛠 Ключевые слова: python, django\n\
             🔗 Перейти: https://t.me/python_jobs/7\n\nКонтакты:\n   ✉️ @anna_hr  |  👤 Анна Петрова\n\
             \x20  ✉️ @ivan_recruiter\n   📧 hr@gmail.com\n\n\
             Ищем Python-разработчика 🐍, пишите @ivan_recruiter или hr@gmail.com"
        );
        assert_eq!(
            entities_of(&content),
            vec![
                (EntityKind::Bold, "Новая вакансия!".to_owned()),
                (EntityKind::Bold, "Чат:".to_owned()),
                (EntityKind::Bold, "Ключевые слова:".to_owned()),
                (EntityKind::Bold, "Перейти:".to_owned()),
                (EntityKind::Url, "https://t.me/python_jobs/7".to_owned()),
                (EntityKind::Bold, "Контакты:".to_owned()),
                (EntityKind::Blockquote, text.to_owned()),
            ]
        );
        // 🎯 is two UTF-16 units: "Новая" starts at 3, not 2.
        assert_eq!(content.entities[0].offset, 3);
        assert!(!content.link_preview);
        assert_well_formed(&content);
    }

    #[test]
    fn optional_lines_are_left_out() {
        let content = format_notification(&Notification {
            source_title: "Group",
            link: "",
            matched_keywords: &[],
            sender: None,
            contacts: &Contacts::default(),
            vacancy_text: "  Текст вакансии  ",
        });
        assert_eq!(
            content.text,
            "🎯 Новая вакансия!\n📍 Чат: Group\n\nТекст вакансии"
        );
        assert_eq!(content.entities.len(), 3);
    }

    #[test]
    fn markdown_characters_in_a_vacancy_stay_literal() {
        let text = "*Senior* _Rust_ dev [remote](x) `code` ~strike~ \\ **bold** __it__";
        let content = format_notification(&Notification {
            source_title: "*Jobs_[chat]*",
            link: "https://t.me/jobs/1",
            matched_keywords: &["rust_*".to_owned()],
            sender: None,
            contacts: &Contacts::default(),
            vacancy_text: text,
        });
        assert!(content.text.ends_with(text), "{}", content.text);
        assert!(content.text.contains("Чат: *Jobs_[chat]*"));
        assert!(content.text.contains("слова: rust_*"));
        assert_well_formed(&content);
    }

    #[test]
    fn a_long_vacancy_is_trimmed_to_the_limit_with_an_ellipsis() {
        // Emoji are two units each: the limit is in units, not characters.
        let text = "🚀".repeat(5000);
        let content = format_notification(&Notification {
            source_title: "Jobs",
            link: "https://t.me/jobs/1",
            matched_keywords: &[],
            sender: None,
            contacts: &Contacts::default(),
            vacancy_text: &text,
        });
        assert_well_formed(&content);
        assert!(content.text.ends_with("🚀…"), "cut between characters");
        let units = utf16_len(&content.text);
        assert!(
            units >= MAX_MESSAGE_UTF16 - 2,
            "{units}: the budget is used"
        );
        let quote = content.entities.last().unwrap();
        assert_eq!(quote.kind, EntityKind::Blockquote);
        assert_eq!((quote.offset + quote.length) as usize, units);
    }

    #[test]
    fn trimming_prefers_a_word_boundary() {
        let check = |text: &str, max: usize, expected: &str| {
            assert_eq!(fit_to_utf16(text, max), expected, "{text:?} in {max}");
        };
        check("short", 10, "short");
        check("exactly10!", 10, "exactly10!");
        check("abcdefghijklmnop", 10, "abcdefghi…");
        check("word word word word word", 20, "word word word word…");
        check("🚀🚀🚀", 4, "🚀…");
        check("🚀🚀🚀", 2, "…");
    }

    #[test]
    fn reposts_hash_the_same_and_other_texts_do_not() {
        let original = "Ищем Python-разработчика!\nЗарплата 300к. Пишите @anna_hr\n\n@python_jobs";
        let check = |text: &str, same: bool| {
            assert_eq!(
                normalized_text_hash(text) == normalized_text_hash(original),
                same,
                "{text:?}"
            );
        };
        check(original, true);
        check(
            "ищем python разработчика — зарплата 300к пишите @anna_hr 🔥 https://t.me/other_jobs",
            true,
        );
        check(
            "ИЩЕМ PYTHON-РАЗРАБОТЧИКА. Зарплата 300к.   Пишите @boris_hr\n@it_jobs_daily",
            true,
        );
        check(
            "Ищем Python-разработчика! Зарплата 400к. Пишите @anna_hr",
            false,
        );
        check(
            "Ищем Go-разработчика! Зарплата 300к. Пишите @anna_hr",
            false,
        );
        assert_eq!(normalized_text_hash("ёлка"), normalized_text_hash("Елка"));
        assert_eq!(normalized_text_hash(original).len(), 64);
        assert_ne!(
            normalized_text_hash("@one_channel"),
            normalized_text_hash("@another_one")
        );
    }

    proptest! {
        // Each case formats two texts of up to 6,000 characters; 64 cases keep the test fast.
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn entities_stay_in_bounds_and_the_limit_holds(
            text in any::<String>(),
            long_text in proptest::collection::vec(any::<char>(), 3000..6000),
            title in any::<String>(),
            keywords in proptest::collection::vec(any::<String>(), 0..20),
        ) {
            let long_text: String = long_text.into_iter().collect();
            for vacancy_text in [text.as_str(), long_text.as_str()] {
                let contacts = extract_contacts(vacancy_text);
                let content = format_notification(&Notification {
                    source_title: &title,
                    link: "https://t.me/c/1234567890/5",
                    matched_keywords: &keywords,
                    sender: None,
                    contacts: &contacts,
                    vacancy_text,
                });
                assert_well_formed(&content);
                let trimmed = vacancy_text.trim();
                if !trimmed.is_empty() && utf16_len(&content.text) < MAX_MESSAGE_UTF16 - 200 {
                    prop_assert!(content.text.ends_with(trimmed));
                }
            }
        }
    }
}
