//! The keyword filters of every channel, compiled into one Aho-Corasick automaton.
//!
//! Why one automaton: the original looped over channels and, for each, over its keywords with a
//! substring search, so a message cost `channels × keywords` scans of the text. Here a message
//! costs one pass over its normalised text, plus work per keyword occurrence found, plus the
//! size of the answer (the matched channels and their keywords). Channels whose keywords do not
//! occur in the text cost nothing, apart from one bit each in a bitset walked per message.
//!
//! Layout: every distinct normalised keyword is one automaton pattern. `uses` lists, for each
//! pattern, the (channel, include/exclude, position) entries that use it, flattened into one
//! array indexed by `use_starts` so the hot loop touches contiguous memory.
//!
//! Per message, [`FilterEngine::evaluate_into`] keeps a tally per channel (how many includes
//! were found and which, or "excluded") and a bitset of the channels touched. Walking the bitset
//! visits channels in ascending order, so nothing is sorted; the tallies, bits and pattern flags
//! are reset as they are read, so the buffers in [`Matches`] are reused without being cleared
//! wholesale. The matched keywords of all channels go into one flat buffer: at 1,000 topical
//! channels a message matches about two hundred of them, and one `Vec` per matched channel cost
//! more than everything else together.

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
    /// Per channel, what deciding it and listing its keywords needs, apart from the rest: at
    /// 1,000 channels a message matches hundreds, and reading these scattered over the
    /// channels' own allocations was half of an evaluation's time (cache misses).
    rules: Vec<ChannelRule>,
    /// Every channel's include keywords, one channel after the other, as indices into
    /// `written`; channel `c`'s are `include_written_ids[rules[c].includes_start..]
    /// [..rules[c].includes_len]`. Channels share most keywords when there are many of them, so
    /// the distinct texts stay few and in cache while each channel's list is four bytes a
    /// keyword.
    include_written_ids: Vec<u32>,
    /// The distinct include keywords as written.
    written: Vec<Box<str>>,
    /// One bit per channel (bit `c % 64` of word `c / 64`), set for the channels with no include
    /// keyword: they match unless an exclude occurs, so every message visits them.
    channels_without_includes: Vec<u64>,
}

/// A channel the text passed the filters of, owning its keyword list; what
/// [`FilterEngine::evaluate`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelMatch<'engine, K> {
    /// Position of the channel in the slice given to [`FilterEngine::compile`].
    pub index: usize,
    pub channel: &'engine K,
    /// The include keywords found, as the user wrote them, in configuration order. Empty for a
    /// channel without include keywords.
    pub matched_keywords: Vec<&'engine str>,
}

/// A channel the text passed the filters of, borrowed from a [`Matches`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatchedChannel<'a, K> {
    /// Position of the channel in the slice given to [`FilterEngine::compile`].
    pub index: usize,
    pub channel: &'a K,
    /// The include keywords found, as the user wrote them, in configuration order. Empty for a
    /// channel without include keywords.
    pub matched_keywords: &'a [&'a str],
}

/// The channels one text passed, in channel order, written by [`FilterEngine::evaluate_into`];
/// also the buffers that evaluation works in. Keep one and pass it to every call: after the
/// first few messages an evaluation allocates nothing.
#[derive(Debug)]
pub struct Matches<'engine, K> {
    found: Vec<FoundChannel<'engine, K>>,
    /// The matched keywords of every found channel, one channel after the other.
    keywords: Vec<&'engine str>,
    scratch: Scratch,
}

#[derive(Debug)]
struct FoundChannel<'engine, K> {
    index: u32,
    channel: &'engine K,
    /// `Matches::keywords[keywords_start..keywords_end]`.
    keywords_start: u32,
    keywords_end: u32,
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
    excludes: Vec<CompiledKeyword>,
    require_all_includes: bool,
}

#[derive(Debug, Clone, Copy)]
struct ChannelRule {
    includes_start: u32,
    includes_len: u32,
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
    /// Position of the keyword in its channel's list.
    position: u32,
    list: List,
    whole_word: bool,
}

/// The working memory of one evaluation. Between evaluations every `flags` byte, `tallies`
/// entry and `touched` bit is zero: each evaluation resets what it set while reading it back, so
/// the next one starts clean without a pass over the whole buffers.
#[derive(Debug, Default)]
struct Scratch {
    normalized: String,
    /// Per pattern: [`OCCURS`] and [`OCCURS_AS_WHOLE_WORD`] bits.
    flags: Vec<u8>,
    /// The distinct patterns found, in order of first occurrence.
    found_patterns: Vec<u32>,
    /// Per channel.
    tallies: Vec<Tally>,
    /// One bit per channel that a found keyword is used by.
    touched: Vec<u64>,
}

/// What the found keywords did to one channel.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    /// How many of its include keywords occurred, or [`EXCLUDED`]. A channel's include
    /// positions are distinct keyword uses, so the count reaches `includes.len()` exactly when
    /// every include occurred.
    includes_found: u32,
    /// Bit `i` set when include `i` occurred, for the first [`POSITION_BITS`] includes; listing
    /// the matched keywords of a channel then costs the keywords found, not the configured ones.
    positions_found: u64,
}

const OCCURS: u8 = 1;
const OCCURS_AS_WHOLE_WORD: u8 = 2;

/// The tally of a channel that an exclude keyword occurred in.
const EXCLUDED: u32 = u32::MAX;

/// Channels with more includes than this list their matched keywords by testing each include.
const POSITION_BITS: usize = 64;

impl Scratch {
    fn has(&self, pattern: u32, needed: u8) -> bool {
        self.flags
            .get(pattern as usize)
            .is_some_and(|flags| flags & needed != 0)
    }

    fn contains(&self, keyword: &CompiledKeyword) -> bool {
        self.has(keyword.pattern, needed_flag(&keyword.keyword))
    }
}

/// The [`Scratch::flags`] bit a keyword needs in order to count as found.
fn needed_flag(keyword: &Keyword) -> u8 {
    if keyword.whole_word {
        OCCURS_AS_WHOLE_WORD
    } else {
        OCCURS
    }
}

/// Makes `buffer` `len` long and all default, reusing it when it already is that long (it is
/// then all default already: see [`Scratch`]).
fn fit<T: Copy + Default>(buffer: &mut Vec<T>, len: usize) {
    if buffer.len() != len {
        buffer.clear();
        buffer.resize(len, T::default());
    }
}

impl<'engine, K> Matches<'engine, K> {
    pub fn new() -> Self {
        Self {
            found: Vec::new(),
            keywords: Vec::new(),
            scratch: Scratch::default(),
        }
    }

    /// How many channels matched.
    pub fn len(&self) -> usize {
        self.found.len()
    }

    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// The matched channels, in channel order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = MatchedChannel<'_, K>> + '_ {
        self.found.iter().map(|found| MatchedChannel {
            index: found.index as usize,
            channel: found.channel,
            matched_keywords: &self.keywords
                [found.keywords_start as usize..found.keywords_end as usize],
        })
    }

    /// The matches as owned [`ChannelMatch`]es, borrowing the engine rather than `self`.
    pub fn to_channel_matches(&self) -> Vec<ChannelMatch<'engine, K>> {
        self.found
            .iter()
            .map(|found| ChannelMatch {
                index: found.index as usize,
                channel: found.channel,
                matched_keywords: self.keywords
                    [found.keywords_start as usize..found.keywords_end as usize]
                    .to_vec(),
            })
            .collect()
    }
}

impl<K> Default for Matches<'_, K> {
    fn default() -> Self {
        Self::new()
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
        let mut channels_without_includes = vec![0u64; channels.len().div_ceil(64)];
        let mut rules = Vec::with_capacity(channels.len());
        let mut include_written_ids: Vec<u32> = Vec::new();
        let mut written: Vec<Box<str>> = Vec::new();
        let mut written_id_of: std::collections::HashMap<String, u32> =
            std::collections::HashMap::new();

        for (channel_index, (key, filters)) in channels.iter().enumerate() {
            let channel = to_u32(channel_index);
            let mut compile_list = |written: &[String],
                                    list: List|
             -> Result<Vec<CompiledKeyword>, CompileError> {
                let mut compiled = Vec::with_capacity(written.len());
                for (position, text) in written.iter().enumerate() {
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
                        position: to_u32(position),
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
                channels_without_includes[channel_index / 64] |= 1 << (channel_index % 64);
            }
            rules.push(ChannelRule {
                includes_start: to_u32(include_written_ids.len()),
                includes_len: to_u32(includes.len()),
                require_all_includes: filters.require_all_includes,
            });
            for keyword in &includes {
                let text = keyword.keyword.written();
                let id = *written_id_of.entry(text.to_owned()).or_insert_with(|| {
                    written.push(text.into());
                    to_u32(written.len() - 1)
                });
                include_written_ids.push(id);
            }
            compiled_channels.push(CompiledChannel {
                key: key.clone(),
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
            rules,
            include_written_ids,
            written,
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

    /// Every channel whose filters the text passes, in channel order. Allocates the answer; a
    /// caller evaluating many texts should keep a [`Matches`] and call [`Self::evaluate_into`].
    pub fn evaluate(&self, text: &str) -> Vec<ChannelMatch<'_, K>> {
        let mut matches = Matches::new();
        self.evaluate_into(text, &mut matches);
        matches.to_channel_matches()
    }

    /// Every channel whose filters the text passes, in channel order, written into `matches`
    /// (replacing what it held). Reusing one `matches` reuses all of its buffers.
    pub fn evaluate_into<'engine>(&'engine self, text: &str, matches: &mut Matches<'engine, K>) {
        let Matches {
            found,
            keywords,
            scratch,
        } = matches;
        found.clear();
        keywords.clear();
        self.scan_into(text, scratch);
        fit(&mut scratch.tallies, self.channels.len());
        fit(&mut scratch.touched, self.channels_without_includes.len());

        for &pattern in &scratch.found_patterns {
            let as_whole_word = scratch.flags[pattern as usize] & OCCURS_AS_WHOLE_WORD != 0;
            for pattern_use in self.uses_of(pattern) {
                if pattern_use.whole_word && !as_whole_word {
                    continue;
                }
                let channel = pattern_use.channel as usize;
                scratch.touched[channel / 64] |= 1 << (channel % 64);
                let tally = &mut scratch.tallies[channel];
                match pattern_use.list {
                    List::Exclude => tally.includes_found = EXCLUDED,
                    List::Include => {
                        if tally.includes_found != EXCLUDED {
                            tally.includes_found += 1;
                        }
                        if (pattern_use.position as usize) < POSITION_BITS {
                            tally.positions_found |= 1 << pattern_use.position;
                        }
                    }
                }
            }
        }

        // Ascending channel order falls out of walking the bits; the default-matching channels
        // join here, untouched ones with an empty tally.
        for (word, &defaults) in self.channels_without_includes.iter().enumerate() {
            let mut channels = std::mem::take(&mut scratch.touched[word]) | defaults;
            while channels != 0 {
                let channel = word * 64 + channels.trailing_zeros() as usize;
                channels &= channels - 1;
                let tally = std::mem::take(&mut scratch.tallies[channel]);
                if tally.includes_found == EXCLUDED {
                    continue;
                }
                let rule = self.rules[channel];
                let passes = if rule.require_all_includes {
                    tally.includes_found == rule.includes_len
                } else {
                    tally.includes_found > 0 || rule.includes_len == 0
                };
                if !passes {
                    continue;
                }
                let keywords_start = keywords.len();
                let written_ids = &self.include_written_ids[rule.includes_start as usize..]
                    [..rule.includes_len as usize];
                if written_ids.len() <= POSITION_BITS {
                    let mut positions = tally.positions_found;
                    while positions != 0 {
                        let position = positions.trailing_zeros() as usize;
                        positions &= positions - 1;
                        keywords.push(&self.written[written_ids[position] as usize]);
                    }
                } else {
                    keywords.extend(
                        self.channels[channel]
                            .includes
                            .iter()
                            .filter(|keyword| scratch.contains(keyword))
                            .map(|keyword| keyword.keyword.written()),
                    );
                }
                found.push(FoundChannel {
                    index: to_u32(channel),
                    channel: &self.channels[channel].key,
                    keywords_start: to_u32(keywords_start),
                    keywords_end: to_u32(keywords.len()),
                });
            }
        }

        for &pattern in &scratch.found_patterns {
            scratch.flags[pattern as usize] = 0;
        }
        scratch.found_patterns.clear();
    }

    /// The verdict of every channel on the text, matched or not, with the keywords that
    /// decided it. Slower than [`Self::evaluate`] (it visits every channel); for diagnostics.
    pub fn explain(&self, text: &str) -> Vec<ChannelVerdict<'_, K>> {
        let mut scan = Scratch::default();
        self.scan_into(text, &mut scan);
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

    fn uses_of(&self, pattern: u32) -> &[PatternUse] {
        let start = self.use_starts[pattern as usize] as usize;
        let end = self.use_starts[pattern as usize + 1] as usize;
        &self.uses[start..end]
    }

    /// Sets `scratch.flags` and `scratch.found_patterns` to the patterns occurring in the text,
    /// and whether each occurred as a whole word. Expects them clean (see [`Scratch`]).
    fn scan_into(&self, text: &str, scratch: &mut Scratch) {
        let Some(automaton) = &self.automaton else {
            return;
        };
        let Scratch {
            normalized,
            flags,
            found_patterns,
            ..
        } = scratch;
        normalized.clear();
        normalize_into(text, normalized);
        fit(flags, automaton.patterns_len());
        for occurrence in automaton.find_overlapping_iter(normalized.as_str()) {
            let pattern = occurrence.pattern().as_u32();
            let pattern_flags = &mut flags[pattern as usize];
            if *pattern_flags == 0 {
                found_patterns.push(pattern);
            }
            // The boundary check is needed only until one whole-word occurrence is seen.
            if *pattern_flags & OCCURS_AS_WHOLE_WORD == 0
                && is_whole_word_at(normalized, occurrence.start(), occurrence.end())
            {
                *pattern_flags |= OCCURS_AS_WHOLE_WORD;
            }
            *pattern_flags |= OCCURS;
        }
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
    fn a_reused_matches_answers_each_text_as_a_fresh_evaluation() {
        let python = filters(&["python", "django"], &["junior"], false);
        let go = filters(&["\"go\"", "grpc"], &[], true);
        let open = filters(&[], &["casino"], false);
        // More includes than the position bits: keywords are listed by testing each one.
        let many: Vec<String> = (0..70).map(|n| format!("k{n:02}x")).collect();
        let many_refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let wide = filters(&many_refs, &[], false);
        let small =
            FilterEngine::compile(&[("py", &python), ("go", &go), ("open", &open)]).unwrap();
        let large = FilterEngine::compile(&[
            ("open", &open),
            ("wide", &wide),
            ("py", &python),
            ("go", &go),
            ("wide2", &wide),
        ])
        .unwrap();
        let texts = [
            "Python/Django, go and grpc",
            "junior python casino",
            "golang grpc",
            "k00x k69x k64x k63x python",
            "",
            "go grpc",
        ];
        // One Matches for both engines and every text, in both orders: no state may leak from
        // one evaluation into the next.
        let mut small_matches = Matches::new();
        let mut large_matches = Matches::new();
        for text in texts.iter().chain(texts.iter().rev()) {
            for (engine, matches) in [(&small, &mut small_matches), (&large, &mut large_matches)] {
                engine.evaluate_into(text, matches);
                let reused: Vec<(usize, Vec<&str>)> = matches
                    .iter()
                    .map(|m| (m.index, m.matched_keywords.to_vec()))
                    .collect();
                let fresh: Vec<(usize, Vec<&str>)> = engine
                    .evaluate(text)
                    .into_iter()
                    .map(|m| (m.index, m.matched_keywords))
                    .collect();
                assert_eq!(reused, fresh, "{text}");
                assert_eq!(matches.len(), fresh.len());
                let explained: Vec<(usize, Vec<&str>)> = engine
                    .explain(text)
                    .into_iter()
                    .filter_map(|v| match v.verdict {
                        Verdict::Matched { matched_includes } => Some((v.index, matched_includes)),
                        _ => None,
                    })
                    .collect();
                assert_eq!(reused, explained, "{text}");
            }
        }
        large.evaluate_into("k69x, K03X and k64x", &mut large_matches);
        let wide_keywords: Vec<&[&str]> =
            large_matches.iter().map(|m| m.matched_keywords).collect();
        assert_eq!(
            wide_keywords,
            vec![
                &[][..],
                &["k03x", "k64x", "k69x"][..],
                &["k03x", "k64x", "k69x"][..]
            ]
        );
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
