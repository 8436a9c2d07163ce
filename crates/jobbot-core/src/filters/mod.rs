//! Which output channels a vacancy goes to: the pre-filters every message passes first
//! ([`pre_filter`]), then each channel's keyword filters ([`FilterEngine`]).
//!
//! # Keyword semantics
//!
//! A channel's filters are include keywords (any one must occur, or all of them with
//! `require_all_includes`; no includes means every message is included) and exclude keywords
//! (any occurrence rejects the message). Matching ignores case with Unicode lower-casing, Cyrillic
//! included, and treats `ё` as `е`, so `Ёлка`, `ёлка` and `елка` are the same word.
//!
//! A keyword is matched as a **substring** by default: `python` matches `Python3` and
//! `pythonista`, exactly as the original system did, so existing configurations keep their
//! behaviour. Spaces inside a substring keyword count (`" go "` is different from `go`).
//!
//! A keyword written **between double quotes** is matched as a **whole word**: `"go"` matches
//! `Go developer` and `(Go)` but not `Google` or `golang`. A whole-word match is one where the
//! character before it and the character after it are not letters or digits
//! ([`char::is_alphanumeric`]), or are the start or end of the text. Phrases work too:
//! `"machine learning"`. In the JSON file the quotes are escaped: `"\"go\""`.
//!
//! [`parse_keyword`] is the one place this syntax is read; the configuration validator calls it,
//! so an empty keyword, a blank one, `""` or an unbalanced quote is a configuration error rather
//! than a filter that silently matches everything or nothing.

mod engine;
mod pre_filter;

pub use engine::{
    ChannelMatch, ChannelVerdict, CompileError, FilterEngine, MatchedChannel, Matches, Verdict,
    naive_matches,
};
pub use pre_filter::{PreFilterRejection, PreFilterSettings, pre_filter};

/// A parsed filter keyword: the text the user wrote, and how it is matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyword {
    written: String,
    needle: String,
    whole_word: bool,
}

impl Keyword {
    /// The keyword as the user wrote it, quotes included; what explanations show.
    pub fn written(&self) -> &str {
        &self.written
    }

    /// The normalised text searched for (see [`normalize`]), without quotes.
    pub fn needle(&self) -> &str {
        &self.needle
    }

    pub fn is_whole_word(&self) -> bool {
        self.whole_word
    }
}

/// Why a keyword was refused. Converts into `String` so a validator can use it as a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeywordError {
    #[error("a keyword may not be empty")]
    Empty,
    #[error("a keyword may not be only spaces")]
    Blank,
    #[error("a whole-word keyword needs a word between the quotes, e.g. \"go\"")]
    EmptyQuoted,
    #[error(
        "a keyword has an unbalanced double quote; write a whole word as \"go\" (quotes on both sides)"
    )]
    UnbalancedQuote,
    #[error("a whole-word keyword may not contain a double quote inside the quotes")]
    QuoteInsideQuotes,
}

impl From<KeywordError> for String {
    fn from(error: KeywordError) -> Self {
        error.to_string()
    }
}

/// Reads one keyword as configured (see the module documentation for the syntax).
pub fn parse_keyword(input: &str) -> Result<Keyword, KeywordError> {
    if input.is_empty() {
        return Err(KeywordError::Empty);
    }
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(KeywordError::Blank);
    }
    let opens = trimmed.starts_with('"');
    let closes = trimmed.len() >= 2 && trimmed.ends_with('"');
    match (opens, closes) {
        (true, true) => {
            let inner = &trimmed[1..trimmed.len() - 1];
            if inner.trim().is_empty() {
                return Err(KeywordError::EmptyQuoted);
            }
            if inner.contains('"') {
                return Err(KeywordError::QuoteInsideQuotes);
            }
            Ok(Keyword {
                written: input.to_owned(),
                needle: normalize(inner),
                whole_word: true,
            })
        }
        (false, false) => Ok(Keyword {
            written: input.to_owned(),
            needle: normalize(input),
            whole_word: false,
        }),
        // `"go` or `go"`: almost certainly a typo for `"go"`; matching the quote literally would
        // silently never fire.
        _ => Err(KeywordError::UnbalancedQuote),
    }
}

/// The form keywords and texts are compared in: each character lower-cased on its own
/// ([`char::to_lowercase`], which may yield several characters), then `ё` → `е`.
///
/// Keywords and texts go through this same function, so a match found in normalised text is a
/// match of the normalised keyword, whatever lower-casing did to byte lengths. Whole-word
/// boundaries are checked in the normalised text too; lower-casing keeps letters letters and
/// digits digits, so the boundary is the one the user sees.
pub fn normalize(text: &str) -> String {
    let mut normalized = String::with_capacity(text.len());
    normalize_into(text, &mut normalized);
    normalized
}

/// [`normalize`] into a buffer the caller owns (appending to it).
///
/// ASCII and the basic Cyrillic letters, nearly all of a vacancy, take shortcuts that give what
/// [`char::to_lowercase`] gives (a test compares them); the general lookup is a binary search
/// per character, and it was a noticeable share of evaluating a message.
pub fn normalize_into(text: &str, normalized: &mut String) {
    normalized.reserve(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let ascii_len = rest
            .bytes()
            .position(|byte| !byte.is_ascii())
            .unwrap_or(rest.len());
        if ascii_len > 0 {
            let start = normalized.len();
            normalized.push_str(&rest[..ascii_len]);
            normalized[start..].make_ascii_lowercase();
            rest = &rest[ascii_len..];
            continue;
        }
        let mut characters = rest.chars();
        let character = characters.next().expect("rest is not empty");
        rest = characters.as_str();
        match character {
            'А'..='Я' => normalized.push(
                char::from_u32(u32::from(character) + ('а' as u32 - 'А' as u32))
                    .expect("а..я are characters"),
            ),
            'а'..='я' => normalized.push(character),
            'ё' | 'Ё' => normalized.push('е'),
            _ => {
                for lower in character.to_lowercase() {
                    normalized.push(if lower == 'ё' { 'е' } else { lower });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_parse_into_substring_or_whole_word() {
        let check = |input: &str, expected: Result<(&str, bool), KeywordError>| {
            let actual = parse_keyword(input).map(|keyword| (keyword.needle, keyword.whole_word));
            assert_eq!(
                actual,
                expected.map(|(needle, whole)| (needle.to_owned(), whole)),
                "{input:?}"
            );
        };
        check("Python", Ok(("python", false)));
        check(" go ", Ok((" go ", false)));
        check("\"Go\"", Ok(("go", true)));
        check("  \"Go\"  ", Ok(("go", true)));
        check("\"machine learning\"", Ok(("machine learning", true)));
        check("Ёлка", Ok(("елка", false)));
        check("C++", Ok(("c++", false)));
        check("", Err(KeywordError::Empty));
        check("   ", Err(KeywordError::Blank));
        check("\"\"", Err(KeywordError::EmptyQuoted));
        check("\" \"", Err(KeywordError::EmptyQuoted));
        check("\"", Err(KeywordError::UnbalancedQuote));
        check("\"go", Err(KeywordError::UnbalancedQuote));
        check("go\"", Err(KeywordError::UnbalancedQuote));
        check("\"a\"b\"", Err(KeywordError::QuoteInsideQuotes));
    }

    #[test]
    fn keyword_errors_read_as_config_messages() {
        let message: String = parse_keyword("\"\"").unwrap_err().into();
        assert!(message.contains("between the quotes"), "{message}");
    }

    #[test]
    fn normalisation_folds_case_and_yo() {
        assert_eq!(
            normalize("ЁЖИК Ёлка ПРИВЕТ Straße ΣΑΣ"),
            "ежик елка привет straße σασ"
        );
        // İ lower-cases to two characters; the byte length changes and nothing breaks.
        assert_eq!(normalize("İ"), "i\u{307}");
    }

    #[test]
    fn normalisation_shortcuts_agree_with_unicode_lower_casing() {
        let by_the_book = |character: char| -> String {
            character
                .to_lowercase()
                .map(|lower| if lower == 'ё' { 'е' } else { lower })
                .collect()
        };
        // ASCII, Latin-1, Greek and all of Cyrillic, one by one and run together.
        let characters: Vec<char> = (0u32..0x530).filter_map(char::from_u32).collect();
        let mut together = String::new();
        for &character in &characters {
            assert_eq!(
                normalize(&character.to_string()),
                by_the_book(character),
                "{character:?}"
            );
            together.push_str(&by_the_book(character));
        }
        assert_eq!(normalize(&characters.iter().collect::<String>()), together);
        assert_eq!(normalize("Go-РАЗРАБОТЧИК, Ёж"), "go-разработчик, еж");
    }
}
