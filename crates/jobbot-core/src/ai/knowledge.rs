//! `ai_config.knowledge_files`, the pure part: files cut into paragraph chunks of at most
//! [`MAX_CHUNK_CHARS`] (the original's size), and the search terms both the indexed chunks and
//! the queries are reduced to (lower case, Snowball stems for Russian and English, no stop
//! words). Indexing and search live behind [`KnowledgeIndex`] (SQLite FTS5 in `jobbot-store`,
//! the same semantics in memory); no external vector database is needed.

use std::collections::HashSet;

use async_trait::async_trait;
use rust_stemmers::{Algorithm, Stemmer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::{StoreError, UnixMillis};

pub const MAX_CHUNK_CHARS: usize = 500;
/// How many chunks a reply's prompt gets at most.
pub const MAX_FACTS: u32 = 3;
/// The most terms a query keeps (the message's first ones).
pub const MAX_QUERY_TERMS: usize = 32;

/// One chunk of a knowledge file, with its search terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnowledgeChunk {
    /// Its order in the file, from 0.
    pub position: u32,
    pub text: String,
    /// [`search_terms`] of the text, joined by spaces.
    pub terms: String,
}

/// A file as indexed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnowledgeSource {
    pub source: String,
    /// [`digest`] of the file's text: unchanged files are not indexed again.
    pub digest: String,
    pub chunks: u32,
    pub indexed_at: UnixMillis,
}

/// A chunk a search found, best first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnowledgeHit {
    pub source: String,
    pub position: u32,
    pub text: String,
}

/// The knowledge of each channel, searchable by terms.
#[async_trait]
pub trait KnowledgeIndex: Send + Sync {
    /// Replaces everything indexed for `(channel_id, source)` with `chunks`, in one transaction.
    async fn replace_knowledge(
        &self,
        channel_id: &str,
        source: &str,
        digest: &str,
        chunks: &[KnowledgeChunk],
        at: UnixMillis,
    ) -> Result<(), StoreError>;

    /// Forgets a file (no longer in the channel's `knowledge_files`). `false` if it was not known.
    async fn remove_knowledge(&self, channel_id: &str, source: &str) -> Result<bool, StoreError>;

    /// The files indexed for a channel, by name.
    async fn knowledge_sources(&self, channel_id: &str)
    -> Result<Vec<KnowledgeSource>, StoreError>;

    /// The chunks of a channel that share the most with `terms` (from [`search_terms`]), best
    /// first, at most `limit`. No terms, no hits.
    async fn search_knowledge(
        &self,
        channel_id: &str,
        terms: &[String],
        limit: u32,
    ) -> Result<Vec<KnowledgeHit>, StoreError>;
}

/// The first 16 hex digits of the SHA-256 of a file's text.
pub fn digest(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

/// A file's chunks with their terms.
pub fn chunks_of(text: &str) -> Vec<KnowledgeChunk> {
    chunk_text(text, MAX_CHUNK_CHARS)
        .into_iter()
        .enumerate()
        .map(|(position, text)| KnowledgeChunk {
            position: position as u32,
            terms: search_terms(&text).join(" "),
            text,
        })
        .collect()
}

/// Cuts a text into chunks of at most `max_chars` characters: paragraphs (separated by blank
/// lines) are kept whole when they fit and short neighbours are joined; a long paragraph is cut
/// at sentence ends, then at spaces, then anywhere.
pub fn chunk_text(text: &str, max_chars: usize) -> Vec<String> {
    let max_chars = max_chars.max(1);
    let mut pieces = Vec::new();
    for paragraph in paragraphs(text) {
        if paragraph.chars().count() <= max_chars {
            pieces.push(paragraph);
        } else {
            pieces.extend(split_long(&paragraph, max_chars));
        }
    }
    let mut chunks: Vec<String> = Vec::new();
    for piece in pieces {
        match chunks.last_mut() {
            Some(last) if last.chars().count() + 2 + piece.chars().count() <= max_chars => {
                last.push_str("\n\n");
                last.push_str(&piece);
            }
            _ => chunks.push(piece),
        }
    }
    chunks
}

fn paragraphs(text: &str) -> Vec<String> {
    let mut paragraphs = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                paragraphs.push(current.join("\n"));
                current.clear();
            }
        } else {
            current.push(line.trim_end());
        }
    }
    if !current.is_empty() {
        paragraphs.push(current.join("\n"));
    }
    paragraphs
}

fn split_long(paragraph: &str, max_chars: usize) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = paragraph.trim();
    while rest.chars().count() > max_chars {
        let limit = rest
            .char_indices()
            .nth(max_chars)
            .map_or(rest.len(), |(index, _)| index);
        let window = &rest[..limit];
        let sentence_end = window
            .char_indices()
            .filter(|&(index, c)| {
                matches!(c, '.' | '!' | '?' | '…')
                    && window[index + c.len_utf8()..]
                        .chars()
                        .next()
                        .is_none_or(char::is_whitespace)
            })
            .map(|(index, c)| index + c.len_utf8())
            .next_back()
            .filter(|&end| end > limit / 3);
        let cut = sentence_end
            .or_else(|| window.rfind(char::is_whitespace).filter(|&end| end > 0))
            .unwrap_or(limit);
        parts.push(rest[..cut].trim().to_owned());
        rest = rest[cut..].trim_start();
    }
    if !rest.is_empty() {
        parts.push(rest.to_owned());
    }
    parts
}

/// Words too common to search by.
const STOP_WORDS: &[&str] = &[
    "и", "в", "во", "на", "не", "что", "это", "как", "а", "но", "да", "по", "из", "за", "к", "ко",
    "от", "до", "у", "о", "об", "с", "со", "для", "же", "ли", "бы", "то", "или", "мы", "вы", "я",
    "он", "она", "они", "вас", "нас", "мне", "его", "её", "их", "так", "уже", "есть", "the", "a",
    "an", "and", "or", "of", "to", "in", "on", "is", "are", "for", "it", "be", "we", "you", "i",
    "with", "at", "by", "this", "that",
];

/// The terms a text is searched by: words (letters and digits) in lower case with `ё` as `е`,
/// stop words and one-letter words dropped, Cyrillic words stemmed as Russian and Latin ones as
/// English, each once, in order of first appearance.
pub fn search_terms(text: &str) -> Vec<String> {
    let russian = Stemmer::create(Algorithm::Russian);
    let english = Stemmer::create(Algorithm::English);
    let mut seen = HashSet::new();
    let mut terms = Vec::new();
    let lowered = text.to_lowercase().replace('ё', "е");
    for word in lowered.split(|c: char| !c.is_alphanumeric()) {
        if word.chars().count() < 2 || STOP_WORDS.contains(&word) {
            continue;
        }
        let stem = if word.chars().any(is_cyrillic) {
            russian.stem(word).into_owned()
        } else if word.chars().all(|c| c.is_ascii_alphanumeric()) {
            english.stem(word).into_owned()
        } else {
            word.to_owned()
        };
        if seen.insert(stem.clone()) {
            terms.push(stem);
        }
    }
    terms
}

/// The terms of a contact's message to search by (its first [`MAX_QUERY_TERMS`]).
pub fn query_terms(text: &str) -> Vec<String> {
    let mut terms = search_terms(text);
    terms.truncate(MAX_QUERY_TERMS);
    terms
}

fn is_cyrillic(c: char) -> bool {
    matches!(c, '\u{0400}'..='\u{04FF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_stay_whole_and_short_ones_are_joined() {
        let text = "Цены от 50 000 ₽ в месяц.\n\nСроки: запуск за неделю.\n\n\n".to_owned()
            + &"Длинный абзац. ".repeat(60);
        let chunks = chunk_text(&text, 100);
        assert_eq!(
            chunks[0],
            "Цены от 50 000 ₽ в месяц.\n\nСроки: запуск за неделю."
        );
        assert!(chunks.iter().all(|chunk| chunk.chars().count() <= 100));
        assert!(
            chunks[1].ends_with('.'),
            "long paragraphs are cut at sentence ends"
        );
        let rejoined: String = chunks[1..].concat().split_whitespace().collect();
        let original: String = "Длинный абзац. ".repeat(60).split_whitespace().collect();
        assert_eq!(rejoined, original, "nothing is lost between chunks");
    }

    #[test]
    fn a_text_without_spaces_is_cut_anywhere() {
        let chunks = chunk_text(&"ж".repeat(250), 100);
        assert_eq!(
            chunks.iter().map(|c| c.chars().count()).collect::<Vec<_>>(),
            [100, 100, 50]
        );
    }

    #[test]
    fn terms_match_across_word_forms() {
        assert_eq!(search_terms("Цены"), search_terms("цена"));
        assert_eq!(search_terms("вакансии"), search_terms("вакансия"));
        assert_eq!(search_terms("pricing"), search_terms("price"));
        assert_eq!(search_terms("Ёлка и ёж"), search_terms("елка ежи"));
        assert!(search_terms("и в на the").is_empty());
        assert_eq!(search_terms("SQL sql 2024"), ["sql", "2024"]);
    }

    #[test]
    fn chunks_carry_their_terms_and_positions() {
        let chunks = chunks_of("Стоимость услуг\n\nКейсы клиентов");
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].position, 0);
        assert!(chunks[0].terms.contains(&search_terms("кейс")[0]));
    }

    proptest::proptest! {
        #[test]
        fn chunks_never_exceed_the_limit_and_lose_no_word(text in "[а-я a-z.!?\n]{0,2000}", max in 20usize..600) {
            let chunks = chunk_text(&text, max);
            for chunk in &chunks {
                proptest::prop_assert!(chunk.chars().count() <= max);
            }
            let words: Vec<&str> = text.split_whitespace().collect();
            let joined = chunks.join(" ");
            let chunk_words: Vec<&str> = joined.split_whitespace().collect();
            proptest::prop_assert_eq!(words.concat(), chunk_words.concat());
        }
    }
}
