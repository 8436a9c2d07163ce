//! The AI's guard rails that are plain text rules: opt-out phrases, the bound on a reply's
//! length, and the original's rule that a reply proposing a call marks the call offered.

use crate::notification::{MAX_MESSAGE_UTF16, utf16_len};

/// Phrases that end AI for a contact wherever they appear in a message, on word boundaries
/// (case, `ё`, punctuation and spacing do not matter).
pub const BUILT_IN_OPT_OUT_PHRASES: &[&str] = &[
    "не пишите",
    "не пиши",
    "не пишите мне",
    "не надо писать",
    "не нужно писать",
    "не нужно мне писать",
    "не надо мне писать",
    "хватит писать",
    "перестаньте писать",
    "прекратите писать",
    "не беспокойте",
    "не беспокоить",
    "не присылайте",
    "отстаньте",
    "отпишитесь",
    "удалите мой номер",
    "удалите мой контакт",
    "это спам",
    "stop writing",
    "stop messaging",
    "stop texting",
    "do not write",
    "don t write",
    "do not message",
    "don t message",
    "do not contact",
    "don t contact",
    "leave me alone",
    "unsubscribe",
];

/// Words that opt out when they are the whole message, as in SMS (`STOP`); inside a sentence they
/// mean other things ("non-stop", "стоп-слово").
pub const BUILT_IN_OPT_OUT_WORDS: &[&str] =
    &["stop", "стоп", "хватит", "отписаться", "unsubscribe"];

/// The opt-out phrases in force for a channel: the built-in ones and the channel's own
/// (`ai_config.opt_out_phrases`, matched anywhere like the built-in phrases).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptOutPhrases {
    /// Normalised and padded with spaces: `" не пишите "`.
    phrases: Vec<String>,
    words: Vec<String>,
}

impl OptOutPhrases {
    pub fn built_in() -> Self {
        Self::with_extra(&[])
    }

    pub fn with_extra(extra: &[String]) -> Self {
        let phrases = BUILT_IN_OPT_OUT_PHRASES
            .iter()
            .copied()
            .chain(extra.iter().map(String::as_str))
            .map(normalise)
            .filter(|phrase| !phrase.is_empty())
            .map(|phrase| format!(" {phrase} "))
            .collect();
        let words = BUILT_IN_OPT_OUT_WORDS
            .iter()
            .copied()
            .map(normalise)
            .collect();
        Self { phrases, words }
    }

    /// Whether `text` asks not to be written to.
    pub fn matches(&self, text: &str) -> bool {
        let normalised = normalise(text);
        if self.words.contains(&normalised) {
            return true;
        }
        let padded = format!(" {normalised} ");
        self.phrases
            .iter()
            .any(|phrase| padded.contains(phrase.as_str()))
    }
}

/// Lower case, `ё` as `е`, every run of non-alphanumeric characters as one space, trimmed.
pub fn normalise(text: &str) -> String {
    let mut output = String::with_capacity(text.len());
    let mut space = false;
    for character in text.chars().flat_map(char::to_lowercase) {
        let character = if character == 'ё' { 'е' } else { character };
        if character.is_alphanumeric() {
            if space && !output.is_empty() {
                output.push(' ');
            }
            space = false;
            output.push(character);
        } else {
            space = true;
        }
    }
    output
}

/// A reply as it may be sent: trimmed, and at most Telegram's 4,096 UTF-16 units. A longer one
/// is cut on a character boundary (at the last space when one is near the end) and ends in `…`.
pub fn bound_reply(text: &str) -> String {
    bound_utf16(text.trim(), MAX_MESSAGE_UTF16)
}

/// `text` if it fits in `max_units` UTF-16 units, else its longest prefix that fits with `…`
/// after it, never splitting a character (a surrogate pair is one character).
pub fn bound_utf16(text: &str, max_units: usize) -> String {
    if utf16_len(text) <= max_units {
        return text.to_owned();
    }
    let room = max_units.saturating_sub(1);
    let mut units = 0;
    let mut end = 0;
    for (index, character) in text.char_indices() {
        units += character.len_utf16();
        if units > room {
            break;
        }
        end = index + character.len_utf8();
    }
    let prefix = &text[..end];
    // Prefer a word boundary within the last tenth of the room.
    let cut = prefix
        .rfind(char::is_whitespace)
        .filter(|&space| utf16_len(&prefix[space..]) <= room / 10)
        .map_or(prefix, |space| &prefix[..space]);
    format!("{}…", cut.trim_end())
}

/// Stems of words that propose a call or a meeting (the original's list).
const CALL_STEMS: &[&str] = &[
    "созвон",
    "позвон",
    "звонок",
    "звонк",
    "календар",
    "встреч",
    "call",
    "meet",
    "calendly",
];

/// Whether a reply proposes a call (then the call counts as offered).
pub fn mentions_call(text: &str) -> bool {
    text.to_lowercase().contains("cal.com")
        || normalise(text)
            .split(' ')
            .any(|word| CALL_STEMS.iter().any(|stem| word.starts_with(stem)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opt_outs_as_contacts_write_them() {
        let phrases = OptOutPhrases::with_extra(&["Больше не беспокоить".into()]);
        let check = |text: &str, expected: bool| {
            assert_eq!(phrases.matches(text), expected, "{text}");
        };
        check("Не пишите мне больше!", true);
        check("НЕ ПИШИТЕ", true);
        check("пожалуйста,не пиши", true);
        check("STOP", true);
        check(" Стоп. ", true);
        check("Please stop writing to me", true);
        check("Don't message me again", true);
        check("отстаньте уже", true);
        check("Не интересно, спасибо", false);
        check("Работаем non-stop", false);
        check("Стоп-слова у нас такие", false);
        check("Пишите в любое время", false);
        check("Нас не беспокоит цена", false);
    }

    #[test]
    fn replies_are_bounded_to_4096_utf16_units_on_character_boundaries() {
        assert_eq!(bound_reply("  Добрый день  "), "Добрый день");
        let emoji = "😀".repeat(3000); // 6,000 units
        let bounded = bound_reply(&emoji);
        assert!(utf16_len(&bounded) <= MAX_MESSAGE_UTF16);
        assert!(bounded.ends_with('…'));
        assert_eq!(bounded.chars().filter(|c| *c == '😀').count(), 2047);
        let words = "слово ".repeat(1000);
        let bounded = bound_reply(&words);
        assert!(utf16_len(&bounded) <= MAX_MESSAGE_UTF16);
        assert!(bounded.ends_with("слово…"), "cut at a word boundary");
    }

    #[test]
    fn call_proposals_are_recognised() {
        assert!(mentions_call("Давайте созвонимся во вторник?"));
        assert!(mentions_call("Выберите время: https://cal.com/me/15min"));
        assert!(mentions_call("Можем назначить встречу"));
        assert!(mentions_call("Let's have a quick call"));
        assert!(!mentions_call("Расскажите подробнее о задаче"));
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_bounded_on_a_character_boundary(text in "\\PC{0,5000}", limit in 1usize..5000) {
            let bounded = bound_utf16(&text, limit);
            proptest::prop_assert!(utf16_len(&bounded) <= limit);
            if utf16_len(&text) <= limit {
                proptest::prop_assert_eq!(bounded, text);
            } else {
                let stem = bounded.strip_suffix('…').unwrap();
                proptest::prop_assert!(text.starts_with(stem));
            }
        }
    }
}
