//! The keyword filters of every channel, compiled into one Aho-Corasick automaton.
//!
//! Why one automaton: the original looped over channels and, for each, over its keywords with a
//! substring search, so a message cost `channels × keywords` scans of the text. Here a message
//! costs one pass over its normalised text, plus work per keyword occurrence found, plus the
//! channels that have no include keywords (they match by default, so they are part of the
//! answer). Channels whose keywords do not occur in the text cost nothing.
//!
//! Layout: every distinct normalised keyword is one automaton pattern. `uses` lists, for each
//! pattern, the (channel, include/exclude) entries that use it, flattened into one array indexed
//! by `use_starts` so the hot loop touches contiguous memory.
//!
//! Per message, [`FilterEngine::evaluate`] keeps one counter per channel (found includes, or
//! "excluded") and the list of channels touched, then sorts only that list. Sorting every
//! (channel, keyword) touch instead cost more than the automaton itself at 1,000 channels, where
//! a message touches over a thousand keyword uses.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

use super::{Keyword, KeywordError, normalize_into, parse_keyword};
use crate::config::Filters;

/// The compiled filters of one configuration snapshot. `K` is whatever the caller keys channels
/// by (the channel id, usually); results also carry the channel's index in the compiled slice.
#[derive(Debug, Clone)]
pub struct FilterEngine<K> {
    /// `None` when no channel has any keyword: nothing to search for.
    automaton: Option<AhoCorasick>,
    /// `uses[use_starts[p]..use_starts[p + 1]]` are the uses of pattern `p`.
    use_starts: Vec<u32>,
    uses: Vec<PatternUse>,
    channels: Vec<CompiledChannel<K>>,
    /// Channels with no include keyword, ascending: they match unless an exclude occurs.
    channels_without_includes: Vec<u32>,
}

/// A channel the text passed the filters of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelMatch<'engine, K> {
    /// Position of the channel in the slice given to [`FilterEngine::compile`].
    pub index: usize,
    pub channel: &'engine K,
    /// The include keywords found, as the user wrote them, in configuration order. Empty for a
    /// channel without include keywords.
    pub matched_keywords: Vec<&'engine str>,
}

/// Why one channel did or did not take a text; for `jobbot inspect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelVerdict<'engine, K> {
    pub index: usize,
    pub channel: &'engine K,
    pub verdict: Verdict<'engine>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<'engine> {
    /// Passed. `matched_includes` is empty when the channel has no include keywords.
    Matched { matched_includes: Vec<&'engine str> },
    /// An exclude keyword occurred (all of those that did are listed).
    Excluded { excludes_found: Vec<&'engine str> },
    /// No include keyword occurred, or (with `require_all_includes`) not all of them.
    IncludesMissing {
        matched_includes: Vec<&'engine str>,
        missing_includes: Vec<&'engine str>,
        require_all_includes: bool,
    },
}

/// A keyword that did not parse; the configuration validator normally catches these first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("channel #{channel_index}: keyword {keyword:?}: {error}")]
pub struct CompileError {
    pub channel_index: usize,
    pub keyword: String,
    pub error: KeywordError,
}

#[derive(Debug, Clone)]
struct CompiledChannel<K> {
    key: K,
    includes: Vec<CompiledKeyword>,
    /// `includes` again, compact: [`Scan::flags`] index and the flag that keyword needs. Listing
    /// a matched channel's keywords reads this, and at 1,000 channels a message matches hundreds
    /// of channels, so it must stay small and contiguous.
    include_lookups: Vec<(u32, u8)>,
    excludes: Vec<CompiledKeyword>,
    require_all_includes: bool,
}

#[derive(Debug, Clone)]
struct CompiledKeyword {
    keyword: Keyword,
    pattern: u32,
}

/// Which list of a channel a keyword is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum List {
    Exclude,
    Include,
}

#[derive(Debug, Clone, Copy)]
struct PatternUse {
    channel: u32,
    list: List,
    whole_word: bool,
}

/// The patterns found in one text.
struct Scan {
    /// Per pattern: [`OCCURS`] and [`OCCURS_AS_WHOLE_WORD`] bits.
    flags: Vec<u8>,
    /// The distinct patterns found, in order of first occurrence.
    found: Vec<u32>,
}

const OCCURS: u8 = 1;
const OCCURS_AS_WHOLE_WORD: u8 = 2;

/// The counter of a channel that an exclude keyword occurred in.
const EXCLUDED: u32 = u32::MAX;

impl Scan {
    fn contains(&self, keyword: &CompiledKeyword) -> bool {
        self.has(keyword.pattern, needed_flag(&keyword.keyword))
    }

    fn has(&self, pattern: u32, needed: u8) -> bool {
        self.flags
            .get(pattern as usize)
            .is_some_and(|flags| flags & needed != 0)
    }
}

/// The [`Scan::flags`] bit a keyword needs in order to count as found.
fn needed_flag(keyword: &Keyword) -> u8 {
    if keyword.whole_word {
        OCCURS_AS_WHOLE_WORD
    } else {
        OCCURS
    }
}

impl<K: Clone> FilterEngine<K> {
    /// Compiles every channel's keywords. Fails on the first keyword [`parse_keyword`] refuses.
    pub fn compile(channels: &[(K, &Filters)]) -> Result<Self, CompileError> {
        let mut patterns: Vec<String> = Vec::new();
        let mut pattern_of: std::collections::HashMap<String, u32> =
            std::collections::HashMap::new();
        let mut uses_by_pattern: Vec<Vec<PatternUse>> = Vec::new();
        let mut compiled_channels = Vec::with_capacity(channels.len());
        let mut channels_without_includes = Vec::new();

        for (channel_index, (key, filters)) in channels.iter().enumerate() {
            let channel = to_u32(channel_index);
            let mut compile_list = |written: &[String],
                                    list: List|
             -> Result<Vec<CompiledKeyword>, CompileError> {
                let mut compiled = Vec::with_capacity(written.len());
                for text in written {
                    let keyword = parse_keyword(text).map_err(|error| CompileError {
                        channel_index,
                        keyword: text.clone(),
                        error,
                    })?;
                    let pattern = *pattern_of.entry(keyword.needle.clone()).or_insert_with(|| {
                        patterns.push(keyword.needle.clone());
                        uses_by_pattern.push(Vec::new());
                        to_u32(patterns.len() - 1)
                    });
                    uses_by_pattern[pattern as usize].push(PatternUse {
                        channel,
                        list,
                        whole_word: keyword.whole_word,
                    });
                    compiled.push(CompiledKeyword { keyword, pattern });
                }
                Ok(compiled)
            };
            let includes = compile_list(&filters.include_keywords, List::Include)?;
            let excludes = compile_list(&filters.exclude_keywords, List::Exclude)?;
            if includes.is_empty() {
                channels_without_includes.push(channel);
            }
            compiled_channels.push(CompiledChannel {
                key: key.clone(),
                include_lookups: includes
                    .iter()
                    .map(|keyword| (keyword.pattern, needed_flag(&keyword.keyword)))
                    .collect(),
                includes,
                excludes,
                require_all_includes: filters.require_all_includes,
            });
        }

        let automaton = if patterns.is_empty() {
            None
        } else {
            // Standard semantics is what overlapping search requires, and it is what substring
            // matching means: every occurrence of every keyword, even inside another one.
            Some(
                AhoCorasickBuilder::new()
                    .match_kind(MatchKind::Standard)
                    .build(&patterns)
                    .expect("keyword automaton within aho-corasick's size limits"),
            )
        };
        let mut use_starts = Vec::with_capacity(uses_by_pattern.len() + 1);
        let mut uses = Vec::with_capacity(uses_by_pattern.iter().map(Vec::len).sum());
        for pattern_uses in uses_by_pattern {
            use_starts.push(to_u32(uses.len()));
            uses.extend(pattern_uses);
        }
        use_starts.push(to_u32(uses.len()));

        Ok(Self {
            automaton,
            use_starts,
            uses,
            channels: compiled_channels,
            channels_without_includes,
        })
    }
}

impl FilterEngine<String> {
    /// The enabled channels of a configuration, keyed by channel id.
    pub fn for_enabled_channels(config: &crate::config::Config) -> Result<Self, CompileError> {
        let channels: Vec<(String, &Filters)> = config
            .enabled_channels()
            .map(|channel| (channel.id.clone(), &channel.filters))
            .collect();
        Self::compile(&channels)
    }
}

impl<K> FilterEngine<K> {
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Every channel whose filters the text passes, in channel order.
    pub fn evaluate(&self, text: &str) -> Vec<ChannelMatch<'_, K>> {
        let scan = self.scan(text);

        // Per channel: how many of its include keywords occurred, or EXCLUDED. A channel's
        // include positions are distinct keyword uses, so the count reaches `includes.len()`
        // exactly when every include occurred.
        let mut found_includes = vec![0u32; self.channels.len()];
        let mut touched: Vec<u32> = Vec::new();
        for &pattern in &scan.found {
            let as_whole_word = scan.flags[pattern as usize] & OCCURS_AS_WHOLE_WORD != 0;
            for pattern_use in self.uses_of(pattern) {
                if pattern_use.whole_word && !as_whole_word {
                    continue;
                }
                let counter = &mut found_includes[pattern_use.channel as usize];
                if *counter == 0 {
                    touched.push(pattern_use.channel);
                }
                *counter = match pattern_use.list {
                    List::Exclude => EXCLUDED,
                    List::Include if *counter == EXCLUDED => EXCLUDED,
                    List::Include => *counter + 1,
                };
            }
        }
        touched.sort_unstable();

        let mut matches = Vec::new();
        let mut defaults = self.channels_without_includes.iter().copied().peekable();
        for channel in touched {
            // Default-matching channels before this one had no occurrence at all: they match.
            while let Some(&default) = defaults.peek().filter(|&&default| default < channel) {
                matches.push(self.default_match(default));
                defaults.next();
            }
            if defaults.peek() == Some(&channel) {
                defaults.next();
            }
            let includes_found = found_includes[channel as usize];
            if includes_found == EXCLUDED {
                continue;
            }
            let compiled = &self.channels[channel as usize];
            let passes = if compiled.require_all_includes {
                includes_found as usize == compiled.includes.len()
            } else {
                includes_found > 0 || compiled.includes.is_empty()
            };
            if passes {
                let mut matched_keywords = Vec::with_capacity(includes_found as usize);
                for (position, &(pattern, needed)) in compiled.include_lookups.iter().enumerate() {
                    if scan.has(pattern, needed) {
                        matched_keywords.push(compiled.includes[position].keyword.written());
                    }
                }
                matches.push(ChannelMatch {
                    index: channel as usize,
                    channel: &compiled.key,
                    matched_keywords,
                });
            }
        }
        matches.extend(defaults.map(|default| self.default_match(default)));
        matches
    }

    /// The verdict of every channel on the text, matched or not, with the keywords that
    /// decided it. Slower than [`Self::evaluate`] (it visits every channel); for diagnostics.
    pub fn explain(&self, text: &str) -> Vec<ChannelVerdict<'_, K>> {
        let scan = self.scan(text);
        let found = |keyword: &CompiledKeyword| scan.contains(keyword);
        self.channels
            .iter()
            .enumerate()
            .map(|(index, channel)| {
                let excludes_found: Vec<&str> = channel
                    .excludes
                    .iter()
                    .filter(|keyword| found(keyword))
                    .map(|keyword| keyword.keyword.written())
                    .collect();
                let (matched, missing): (Vec<&CompiledKeyword>, Vec<&CompiledKeyword>) =
                    channel.includes.iter().partition(|keyword| found(keyword));
                let matched_includes: Vec<&str> =
                    matched.iter().map(|k| k.keyword.written()).collect();
                let includes_satisfied = if channel.require_all_includes {
                    missing.is_empty()
                } else {
                    !matched.is_empty() || channel.includes.is_empty()
                };
                let verdict = if !excludes_found.is_empty() {
                    Verdict::Excluded { excludes_found }
                } else if includes_satisfied {
                    Verdict::Matched { matched_includes }
                } else {
                    Verdict::IncludesMissing {
                        matched_includes,
                        missing_includes: missing.iter().map(|k| k.keyword.written()).collect(),
                        require_all_includes: channel.require_all_includes,
                    }
                };
                ChannelVerdict {
                    index,
                    channel: &channel.key,
                    verdict,
                }
            })
            .collect()
    }

    fn default_match(&self, channel: u32) -> ChannelMatch<'_, K> {
        ChannelMatch {
            index: channel as usize,
            channel: &self.channels[channel as usize].key,
            matched_keywords: Vec::new(),
        }
    }

    fn uses_of(&self, pattern: u32) -> &[PatternUse] {
        let start = self.use_starts[pattern as usize] as usize;
        let end = self.use_starts[pattern as usize + 1] as usize;
        &self.uses[start..end]
    }

    /// The patterns occurring in the text, and whether each occurred as a whole word.
    fn scan(&self, text: &str) -> Scan {
        let Some(automaton) = &self.automaton else {
            return Scan {
                flags: Vec::new(),
                found: Vec::new(),
            };
        };
        let mut normalized = String::with_capacity(text.len() + text.len() / 8);
        normalize_into(text, &mut normalized);
        let mut flags = vec![0u8; automaton.patterns_len()];
        let mut found = Vec::new();
        for occurrence in automaton.find_overlapping_iter(normalized.as_str()) {
            let pattern = occurrence.pattern().as_u32();
            let pattern_flags = &mut flags[pattern as usize];
            if *pattern_flags == 0 {
                found.push(pattern);
            }
            // The boundary check is needed only until one whole-word occurrence is seen.
            if *pattern_flags & OCCURS_AS_WHOLE_WORD == 0
                && is_whole_word_at(&normalized, occurrence.start(), occurrence.end())
            {
                *pattern_flags |= OCCURS_AS_WHOLE_WORD;
            }
            *pattern_flags |= OCCURS;
        }
        Scan { flags, found }
    }
}

/// Whether `text[start..end]` has no letter or digit right before or right after it.
fn is_whole_word_at(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
}

fn to_u32(value: usize) -> u32 {
    u32::try_from(value).expect("fewer than 2^32 channels and keywords")
}

/// The original system's algorithm, kept as the reference for tests and the benchmark: for each
/// channel, lower-case the text, then test each keyword with a substring search (any exclude
/// rejects; any include, or all with `require_all_includes`; no includes accepts).
///
/// Lower-casing is per character, like [`super::normalize`] but without the `ё` folding; it
/// differs from Python's `str.lower` only for the Greek final sigma. Quotes are not special here.
/// Returns the indices of the matching channels.
pub fn naive_matches<K>(channels: &[(K, &Filters)], text: &str) -> Vec<usize> {
    let lowercase = |value: &str| {
        value
            .chars()
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    channels
        .iter()
        .enumerate()
        .filter(|(_, (_, filters))| {
            let text_lower = lowercase(text);
            if filters
                .exclude_keywords
                .iter()
                .any(|keyword| text_lower.contains(&lowercase(keyword)))
            {
                return false;
            }
            if filters.include_keywords.is_empty() {
                return true;
            }
            let mut includes = filters
                .include_keywords
                .iter()
                .map(|keyword| text_lower.contains(&lowercase(keyword)));
            if filters.require_all_includes {
                includes.all(|found| found)
            } else {
                includes.any(|found| found)
            }
        })
        .map(|(index, _)| index)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filters(include: &[&str], exclude: &[&str], require_all: bool) -> Filters {
        Filters {
            include_keywords: include.iter().map(|s| s.to_string()).collect(),
            exclude_keywords: exclude.iter().map(|s| s.to_string()).collect(),
            require_all_includes: require_all,
        }
    }

    fn matched_indices(engine: &FilterEngine<&str>, text: &str) -> Vec<usize> {
        engine.evaluate(text).iter().map(|m| m.index).collect()
    }

    #[test]
    fn one_text_fans_out_to_every_matching_channel() {
        let python = filters(&["python", "django"], &["стажировка"], false);
        let go = filters(&["\"go\""], &[], false);
        let everything = filters(&[], &["казино"], false);
        let senior_python = filters(&["python", "senior"], &[], true);
        let engine = FilterEngine::compile(&[
            ("py", &python),
            ("go", &go),
            ("all", &everything),
            ("senior", &senior_python),
        ])
        .unwrap();
        let check = |text: &str, expected: &[usize]| {
            assert_eq!(matched_indices(&engine, text), expected, "{text}")
        };
        check("Senior Python/Django developer", &[0, 2, 3]);
        check("Ищем Go-разработчика", &[1, 2]);
        check("Google ищет python стажёра, стажировка", &[2]);
        check("Казино ищет Python senior", &[0, 3]);
        check("Бухгалтер", &[2]);
        check("", &[2]);
    }

    #[test]
    fn matched_keywords_are_the_includes_found_as_written_in_config_order() {
        let python = filters(&["Django", "\"Python\"", "FastAPI"], &[], false);
        let engine = FilterEngine::compile(&[("py", &python)]).unwrap();
        let found = engine.evaluate("fastapi and PYTHON, no django-less");
        assert_eq!(
            found[0].matched_keywords,
            vec!["Django", "\"Python\"", "FastAPI"]
        );
        let found = engine.evaluate("FastAPI, python3");
        assert_eq!(found[0].matched_keywords, vec!["FastAPI"]);
    }

    #[test]
    fn whole_word_needs_non_alphanumeric_neighbours_in_any_script() {
        let check = |keyword: &str, text: &str, expected: bool| {
            let channel = filters(&[keyword], &[], false);
            let engine = FilterEngine::compile(&[("c", &channel)]).unwrap();
            assert_eq!(
                !engine.evaluate(text).is_empty(),
                expected,
                "{keyword} in {text}"
            );
        };
        check("\"go\"", "Go developer", true);
        check("\"go\"", "(Go)", true);
        check("\"go\"", "golang", false);
        check("\"go\"", "Google, then go", true);
        check("\"go\"", "ergo", false);
        check("\"go\"", "go2", false);
        check("\"qa\"", "QA_engineer", true);
        check("\"ёж\"", "ЕЖ.", true);
        check("\"ёж\"", "ежик", false);
        check("\"ёж\"", "поёж", false);
        check("\"1с\"", "Программист 1С:Предприятие", true);
        check("\"machine learning\"", "Machine Learning engineer", true);
        check("go", "golang", true);
    }

    #[test]
    fn explain_names_the_exclude_or_the_missing_includes() {
        let strict = filters(&["rust", "tokio", "\"async\""], &["crypto", "web3"], true);
        let engine = FilterEngine::compile(&[("strict", &strict)]).unwrap();
        let verdict = |text: &str| engine.explain(text).remove(0).verdict;
        assert_eq!(
            verdict("Rust + Tokio, Web3 crypto"),
            Verdict::Excluded {
                excludes_found: vec!["crypto", "web3"]
            }
        );
        assert_eq!(
            verdict("Rust + Tokio asynchronous"),
            Verdict::IncludesMissing {
                matched_includes: vec!["rust", "tokio"],
                missing_includes: vec!["\"async\""],
                require_all_includes: true
            }
        );
        assert_eq!(
            verdict("Rust, tokio, async"),
            Verdict::Matched {
                matched_includes: vec!["rust", "tokio", "\"async\""]
            }
        );
    }

    #[test]
    fn explain_agrees_with_evaluate() {
        let a = filters(&["python"], &["junior"], false);
        let b = filters(&[], &["python"], false);
        let c = filters(&["\"go\"", "rust"], &[], true);
        let engine = FilterEngine::compile(&[("a", &a), ("b", &b), ("c", &c)]).unwrap();
        for text in [
            "python junior",
            "python",
            "go rust",
            "golang rust",
            "nothing",
        ] {
            let explained: Vec<usize> = engine
                .explain(text)
                .iter()
                .filter(|v| matches!(v.verdict, Verdict::Matched { .. }))
                .map(|v| v.index)
                .collect();
            assert_eq!(explained, matched_indices(&engine, text), "{text}");
        }
    }

    #[test]
    fn a_bad_keyword_is_a_compile_error_naming_the_channel() {
        let good = filters(&["ok"], &[], false);
        let bad = filters(&["ok"], &["\"\""], false);
        let error = FilterEngine::compile(&[("good", &good), ("bad", &bad)]).unwrap_err();
        assert_eq!(error.channel_index, 1);
        assert_eq!(error.error, KeywordError::EmptyQuoted);
    }

    #[test]
    fn no_keywords_anywhere_matches_every_channel() {
        let open = filters(&[], &[], false);
        let engine = FilterEngine::compile(&[("a", &open), ("b", &open)]).unwrap();
        assert_eq!(matched_indices(&engine, "anything"), vec![0, 1]);
        assert_eq!(
            naive_matches(&[("a", &open), ("b", &open)], "anything"),
            vec![0, 1]
        );
    }

    #[test]
    fn the_naive_loop_is_the_original_substring_semantics() {
        let channel = filters(&["Python", "go"], &["Junior"], false);
        let check = |text: &str, expected: bool| {
            assert_eq!(
                naive_matches(&[("c", &channel)], text) == vec![0],
                expected,
                "{text}"
            );
        };
        check("PYTHON dev", true);
        check("Google", true);
        check("junior python", false);
        check("Java", false);
    }
}
