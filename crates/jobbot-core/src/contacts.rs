//! Contacts in a vacancy's text (Telegram usernames, e-mails, phone numbers), and which of them
//! the CRM should write to.
//!
//! The original took the first match of three regular expressions. That read `hr@gmail.com` as
//! the username `@gmail`, missed `t.me/name` links, and picked the source channel's own
//! signature or a bot as "the recruiter". Here:
//!
//! * e-mails are found first and their `@` is never read as a mention;
//! * `@name`, `t.me/name`, `https://t.me/name` and `telegram.me/name` are mentions; invite links
//!   (`t.me/+…`, `t.me/joinchat/…`), private post links (`t.me/c/…`) and Telegram's own paths
//!   (`t.me/share/…`, …) are not; a post link `t.me/name/123` names a channel's post and comes
//!   last;
//! * phone numbers are read in international (`+…`) and Russian (`8 …`, `7 …`) notation and
//!   normalised to `+` and digits; dates, salary ranges, years and long ids are not phones;
//! * every list is deduplicated, keeping the first spelling and the order of appearance.
//!
//! # Why hand-written scanners, not `regex`
//!
//! Each rule needs a look at the character before a match (`hr@gmail.com` vs ` @gmail`,
//! `about.me/x` vs ` t.me/x`, `id=89991234567` vs ` 89991234567`) and the phone rule needs the
//! shape of the digit groups (`8 999 123-45-67` vs `84 000 - 100 000`). The `regex` crate has no
//! look-behind, so every pattern would still need hand-written checks around it; a scanner over
//! the bytes says the whole rule in one place, runs in one linear pass and adds no dependency.
//! All the tokens are ASCII, so scanning bytes never splits a character: UTF-8 continuation
//! bytes are never ASCII.

use std::ops::Range;

use crate::ids::{ChatId, PhoneNumber, Username};
use crate::telegram::{PeerKind, Sender};

/// The contacts of one text, each list deduplicated in order of appearance.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Contacts {
    /// Usernames from `@name` and `t.me/name`; usernames known only from post links come last.
    pub telegram: Vec<Username>,
    /// As written; deduplicated ignoring case.
    pub emails: Vec<String>,
    /// `+` and digits, e.g. `+79991234567`.
    pub phones: Vec<String>,
}

/// How a username appeared in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MentionForm {
    /// `@name`
    At,
    /// `t.me/name`, `https://t.me/name`, `telegram.me/name`
    Link,
    /// `t.me/name/123` or `t.me/s/name`: a channel's post or page, not a person.
    PostLink,
}

/// One occurrence of a username, with what the words around it say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelegramMention {
    pub username: Username,
    pub form: MentionForm,
    /// Byte range of the whole mention (`@name` or the link) in the text.
    pub range: Range<usize>,
    /// A contact cue ("пишите", "контакты:", "HR", "apply", "tg:", …) comes shortly before it.
    pub after_contact_cue: bool,
    /// A word presenting it as a channel or group ("канал", "подписывайтесь", "join", …) is
    /// next to it.
    pub near_channel_word: bool,
}

/// [`Contacts`] plus every Telegram mention in text order (not deduplicated), for ranking.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContactsWithContext {
    pub contacts: Contacts,
    pub mentions: Vec<TelegramMention>,
}

/// Someone the CRM could write to about a vacancy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CandidateTarget {
    /// A username from the text.
    Username(Username),
    /// The user who posted the message (in a group); addressable by id even without a username.
    Sender {
        id: ChatId,
        username: Option<Username>,
    },
}

/// Why a candidate got its score; for logs and `jobbot inspect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CandidateReason {
    MentionedInText,
    LinkedInText,
    OnlyAPostLink,
    AfterContactCue,
    NearChannelWord,
    PostedTheMessage,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub target: CandidateTarget,
    pub score: i32,
    pub reasons: Vec<CandidateReason>,
}

/// The contacts of a text.
pub fn extract_contacts(text: &str) -> Contacts {
    extract_contacts_with_context(text).contacts
}

/// The contacts of a text, with every Telegram mention and its surroundings.
pub fn extract_contacts_with_context(text: &str) -> ContactsWithContext {
    let email_ranges = find_emails(text);
    let mut emails: Vec<String> = Vec::new();
    for range in &email_ranges {
        let email = &text[range.clone()];
        if !emails.iter().any(|known| known.eq_ignore_ascii_case(email)) {
            emails.push(email.to_owned());
        }
    }

    let mut mentions = find_at_mentions(text, &email_ranges);
    mentions.extend(find_links(text, &email_ranges));
    mentions.sort_by_key(|mention| mention.range.start);
    for mention in &mut mentions {
        let context = MentionContext::around(text, &mention.range);
        mention.after_contact_cue = context.contact_cue;
        mention.near_channel_word = context.channel_word;
    }

    let mut telegram: Vec<Username> = Vec::new();
    let people_first = mentions
        .iter()
        .filter(|mention| mention.form != MentionForm::PostLink)
        .chain(
            mentions
                .iter()
                .filter(|mention| mention.form == MentionForm::PostLink),
        );
    for mention in people_first {
        if !telegram.contains(&mention.username) {
            telegram.push(mention.username.clone());
        }
    }

    let mut phones: Vec<String> = Vec::new();
    for phone in find_phones(text, &email_ranges) {
        if !phones.contains(&phone) {
            phones.push(phone);
        }
    }

    ContactsWithContext {
        contacts: Contacts {
            telegram,
            emails,
            phones,
        },
        mentions,
    }
}

/// Every person the CRM might write to about this vacancy, best first.
///
/// Scoring (higher is better; ties keep the order of appearance, the sender first):
///
/// | signal                                                     | points |
/// |------------------------------------------------------------|-------:|
/// | `@name` or `t.me/name` in the text                         |    +50 |
/// | only a post link `t.me/name/123` (a channel's post)        |      0 |
/// | a contact cue shortly before ("пишите", "HR", "tg:", …)    |    +30 |
/// | a channel word next to it ("канал", "подписывайтесь", …)   |    −60 |
/// | the user who posted the message                            |    +60 |
/// | … who is also mentioned in the text                        | +10 more than the mention |
///
/// A username's score is its best occurrence. The numbers encode an order, not a probability:
/// a mention the text asks you to write to (80) beats the poster (60), who beats a bare mention
/// (50), which beats anything the text calls a channel. The channel penalty outweighs a bare
/// mention, so a plug ("подписывайтесь на @it_jobs") scores −10, and a cue does not fully rescue
/// it ("пишите в чат @x": 20). Never candidates: bots (a username ending in `bot`, or a sender
/// that is a bot), the source channel itself, and senders that are channels or groups.
pub fn rank_crm_candidates(
    contacts: &ContactsWithContext,
    source_username: Option<&Username>,
    sender: Option<&Sender>,
) -> Vec<Candidate> {
    const MENTION: i32 = 50;
    const POST_LINK: i32 = 0;
    const CONTACT_CUE: i32 = 30;
    const CHANNEL_WORD: i32 = -60;
    const POSTED_THE_MESSAGE: i32 = 60;
    const POSTER_ALSO_MENTIONED: i32 = 10;

    let is_excluded =
        |username: &Username| is_bot_username(username) || source_username == Some(username);
    let mut candidates: Vec<Candidate> = Vec::new();

    let sender = sender.filter(|sender| {
        sender.kind == PeerKind::User && !sender.username.as_ref().is_some_and(is_excluded)
    });
    if let Some(sender) = sender {
        candidates.push(Candidate {
            target: CandidateTarget::Sender {
                id: sender.id,
                username: sender.username.clone(),
            },
            score: POSTED_THE_MESSAGE,
            reasons: vec![CandidateReason::PostedTheMessage],
        });
    }

    for mention in &contacts.mentions {
        if is_excluded(&mention.username) {
            continue;
        }
        let mut score = 0;
        let mut reasons = Vec::new();
        match mention.form {
            MentionForm::At => {
                score += MENTION;
                reasons.push(CandidateReason::MentionedInText);
            }
            MentionForm::Link => {
                score += MENTION;
                reasons.push(CandidateReason::LinkedInText);
            }
            MentionForm::PostLink => {
                score += POST_LINK;
                reasons.push(CandidateReason::OnlyAPostLink);
            }
        }
        if mention.after_contact_cue {
            score += CONTACT_CUE;
            reasons.push(CandidateReason::AfterContactCue);
        }
        if mention.near_channel_word {
            score += CHANNEL_WORD;
            reasons.push(CandidateReason::NearChannelWord);
        }

        let is_sender =
            sender.is_some_and(|sender| sender.username.as_ref() == Some(&mention.username));
        if is_sender {
            // The poster pointing at themselves: one candidate, addressed by id.
            let sender_candidate = &mut candidates[0];
            let combined = (score + POSTER_ALSO_MENTIONED).max(POSTED_THE_MESSAGE);
            if combined > sender_candidate.score {
                sender_candidate.score = combined;
                sender_candidate.reasons = std::iter::once(CandidateReason::PostedTheMessage)
                    .chain(reasons)
                    .collect();
            }
            continue;
        }
        let existing = candidates
            .iter_mut()
            .find(|candidate| matches!(&candidate.target, CandidateTarget::Username(known) if *known == mention.username));
        match existing {
            Some(candidate) if candidate.score >= score => {}
            Some(candidate) => {
                candidate.score = score;
                candidate.reasons = reasons;
            }
            None => candidates.push(Candidate {
                target: CandidateTarget::Username(mention.username.clone()),
                score,
                reasons,
            }),
        }
    }

    // Stable: equal scores keep the order of appearance.
    candidates.sort_by_key(|candidate| std::cmp::Reverse(candidate.score));
    candidates
}

/// Whom the CRM writes to: the best candidate, unless even the best scores 0 or less, which means
/// the text itself presents it as a channel or a post. Writing to a channel wastes an agent's
/// send and risks its account; no target is the better answer.
pub fn crm_target(candidates: &[Candidate]) -> Option<&Candidate> {
    candidates.first().filter(|candidate| candidate.score > 0)
}

/// Telegram requires bot usernames to end in "bot", so this is a complete test for usernames.
pub fn is_bot_username(username: &Username) -> bool {
    username.key().ends_with("bot")
}

// ---------------------------------------------------------------------------------------------
// Scanners
// ---------------------------------------------------------------------------------------------

fn is_email_local_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_domain_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-')
}

fn is_username_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

fn inside(ranges: &[Range<usize>], position: usize) -> bool {
    ranges.iter().any(|range| range.contains(&position))
}

/// `local@domain.tld` with an ASCII domain of at least two labels and an alphabetic TLD of two
/// or more letters. Returns byte ranges in text order.
fn find_emails(text: &str) -> Vec<Range<usize>> {
    let bytes = text.as_bytes();
    let mut found: Vec<Range<usize>> = Vec::new();
    for at in positions_of(bytes, b'@') {
        if found.last().is_some_and(|last| last.end > at) {
            continue;
        }
        let mut start = at;
        while start > 0 && is_email_local_byte(bytes[start - 1]) {
            start -= 1;
        }
        // A local part does not start with punctuation ("—.hr@…", "+hr@…" read from the letter).
        while start < at && !bytes[start].is_ascii_alphanumeric() && bytes[start] != b'_' {
            start += 1;
        }
        if start == at {
            continue;
        }
        let mut end = at + 1;
        while end < bytes.len() && is_domain_byte(bytes[end]) {
            end += 1;
        }
        while end > at + 1 && matches!(bytes[end - 1], b'.' | b'-') {
            end -= 1;
        }
        let domain = &text[at + 1..end];
        let labels: Vec<&str> = domain.split('.').collect();
        let valid_labels = labels.len() >= 2
            && labels
                .iter()
                .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'));
        let top_level = labels.last().copied().unwrap_or_default();
        let valid_top_level =
            top_level.len() >= 2 && top_level.bytes().all(|byte| byte.is_ascii_alphabetic());
        if valid_labels && valid_top_level {
            found.push(start..end);
        }
    }
    found
}

/// `@name` not inside an e-mail, not glued to a preceding word or path (`a@b`, `medium.com/@x`),
/// and not the start of a domain (`@company.ru`).
fn find_at_mentions(text: &str, email_ranges: &[Range<usize>]) -> Vec<TelegramMention> {
    let bytes = text.as_bytes();
    let mut mentions = Vec::new();
    for at in positions_of(bytes, b'@') {
        if inside(email_ranges, at) {
            continue;
        }
        if at > 0
            && (is_username_byte(bytes[at - 1]) || matches!(bytes[at - 1], b'.' | b'/' | b'@'))
        {
            continue;
        }
        let mut end = at + 1;
        while end < bytes.len() && is_username_byte(bytes[end]) {
            end += 1;
        }
        let followed_by_domain = bytes.get(end) == Some(&b'.')
            && bytes.get(end + 1).is_some_and(u8::is_ascii_alphanumeric);
        if followed_by_domain || bytes.get(end) == Some(&b'@') {
            continue;
        }
        if let Ok(username) = Username::parse(&text[at + 1..end]) {
            mentions.push(TelegramMention {
                username,
                form: MentionForm::At,
                range: at..end,
                after_contact_cue: false,
                near_channel_word: false,
            });
        }
    }
    mentions
}

/// Telegram's own paths under `t.me/` that are not usernames (the short ones, like `c`, `s`
/// or `iv`, are already too short to be usernames).
const RESERVED_LINK_PATHS: &[&str] = &[
    "joinchat",
    "addlist",
    "addstickers",
    "addemoji",
    "addtheme",
    "setlanguage",
    "share",
    "proxy",
    "socks",
    "boost",
    "login",
    "contact",
    "invoice",
    "confirmphone",
    "giftcode",
    "premium_offer",
    "premium_multigift",
];

const LINK_HOSTS: &[&str] = &["t.me/", "telegram.me/", "telegram.dog/"];

fn find_links(text: &str, email_ranges: &[Range<usize>]) -> Vec<TelegramMention> {
    let bytes = text.as_bytes();
    let mut mentions = Vec::new();
    let mut position = 0;
    while position < bytes.len() {
        let Some(host) = LINK_HOSTS.iter().find(|host| {
            bytes[position..].len() >= host.len()
                && bytes[position..position + host.len()].eq_ignore_ascii_case(host.as_bytes())
        }) else {
            position += 1;
            continue;
        };
        let host_start = position;
        let path_start = position + host.len();
        position = path_start;
        if inside(email_ranges, host_start) {
            continue;
        }
        let link_start =
            if host_start >= 4 && bytes[host_start - 4..host_start].eq_ignore_ascii_case(b"www.") {
                host_start - 4
            } else {
                host_start
            };
        let glued = link_start > 0 && {
            let before = bytes[link_start - 1];
            before.is_ascii_alphanumeric() || matches!(before, b'.' | b'-' | b'_' | b'@')
        };
        if glued {
            continue;
        }
        let segment_end = |from: usize| {
            let mut end = from;
            while end < bytes.len() && is_username_byte(bytes[end]) {
                end += 1;
            }
            end
        };
        let mut name_start = path_start;
        let mut name_end = segment_end(name_start);
        let mut form = MentionForm::Link;
        // t.me/s/name is a channel's web page.
        if &text[name_start..name_end] == "s" && bytes.get(name_end) == Some(&b'/') {
            name_start = name_end + 1;
            name_end = segment_end(name_start);
            form = MentionForm::PostLink;
        }
        let name = &text[name_start..name_end];
        if RESERVED_LINK_PATHS
            .iter()
            .any(|reserved| reserved.eq_ignore_ascii_case(name))
        {
            continue;
        }
        let Ok(username) = Username::parse(name) else {
            continue;
        };
        let mut end = name_end;
        if bytes.get(end) == Some(&b'/') && bytes.get(end + 1).is_some_and(u8::is_ascii_digit) {
            form = MentionForm::PostLink;
            end += 1;
            while end < bytes.len() && bytes[end].is_ascii_digit() {
                end += 1;
            }
        }
        mentions.push(TelegramMention {
            username,
            form,
            range: link_start..end,
            after_contact_cue: false,
            near_channel_word: false,
        });
        position = end;
    }
    mentions
}

fn positions_of(bytes: &[u8], needle: u8) -> impl Iterator<Item = usize> + '_ {
    bytes
        .iter()
        .enumerate()
        .filter(move |(_, byte)| **byte == needle)
        .map(|(index, _)| index)
}

/// One separator character inside a phone number, and its length in bytes.
fn phone_separator_at(text: &str, position: usize) -> Option<(char, usize)> {
    let character = text[position..].chars().next()?;
    match character {
        ' ' | '\u{a0}' | '\u{202f}' | '\u{2009}' | '-' | '\u{2013}' | '.' | '(' | ')' => {
            Some((character, character.len_utf8()))
        }
        _ => None,
    }
}

/// Phone numbers, normalised to `+` and digits.
///
/// A candidate is a run of digit groups separated by at most three separator characters (space,
/// no-break space, `-`, `–`, `.`, `(`, `)`), starting with `+` or a digit that is not glued to a
/// word, a path or another number (`id=…`, `/vacancy/…`, `1,5`). It is a phone when:
///
/// * it starts with `+`: 9 to 15 digits, the first not 0 (`+1 (415) 555-2671`);
/// * otherwise it is Russian: 11 digits starting with `8` or `7`, an area code starting with
///   3, 4, 8 or 9, and written as `8 …`, `8999 …` or unbroken (`89991234567`). That shape rules out
///   salary ranges (`84 000 - 100 000`: first group `84`) and large sums.
///
/// A `.` separator is allowed only after `+`, so dates (`01.02.2024`) never qualify; neither do
/// years, short numbers or ids longer than 15 digits (the whole run is judged, not a slice of it).
fn find_phones(text: &str, email_ranges: &[Range<usize>]) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut phones = Vec::new();
    let mut position = 0;
    while position < bytes.len() {
        let first = bytes[position];
        let starts_with_plus =
            first == b'+' && bytes.get(position + 1).is_some_and(u8::is_ascii_digit);
        if !(first.is_ascii_digit() || starts_with_plus) || inside(email_ranges, position) {
            position += 1;
            continue;
        }
        let glued = text[..position].chars().next_back().is_some_and(|before| {
            before.is_alphanumeric()
                || matches!(
                    before,
                    '_' | '/'
                        | '.'
                        | ','
                        | '#'
                        | '='
                        | '&'
                        | '?'
                        | '%'
                        | '+'
                        | '-'
                        | '@'
                        | '$'
                        | '€'
                        | '₽'
                )
        });
        let run = read_digit_run(
            text,
            if starts_with_plus {
                position + 1
            } else {
                position
            },
        );
        position = run.scan_end.max(position + 1);
        if glued {
            continue;
        }
        let followed_by_word = text[run.digits_end..]
            .chars()
            .next()
            .is_some_and(char::is_alphanumeric);
        if followed_by_word || run.broken {
            continue;
        }
        let digits = &run.digits;
        let normalized = if starts_with_plus {
            let valid = (9..=15).contains(&digits.len()) && !digits.starts_with('0');
            valid.then(|| format!("+{digits}"))
        } else {
            let national_start = digits.as_bytes().get(1).copied();
            let russian = digits.len() == 11
                && (digits.starts_with('8') || digits.starts_with('7'))
                && matches!(national_start, Some(b'3' | b'4' | b'8' | b'9'))
                && matches!(run.first_group_length, 1 | 4 | 11)
                && !run.has_dot;
            russian.then(|| format!("+7{}", &digits[1..]))
        };
        if let Some(phone) = normalized.and_then(|phone| PhoneNumber::parse(&phone).ok()) {
            phones.push(phone.as_str().to_owned());
        }
    }
    phones
}

struct DigitRun {
    digits: String,
    /// Byte position just after the last digit.
    digits_end: usize,
    /// Where scanning stopped; the next candidate starts after it, so no slice of a rejected run
    /// is read as a phone of its own.
    scan_end: usize,
    first_group_length: usize,
    has_dot: bool,
    /// Parentheses that do not pair up, or a run too long to be a phone.
    broken: bool,
}

fn read_digit_run(text: &str, start: usize) -> DigitRun {
    let bytes = text.as_bytes();
    let mut run = DigitRun {
        digits: String::new(),
        digits_end: start,
        scan_end: start,
        first_group_length: 0,
        has_dot: false,
        broken: false,
    };
    let mut position = start;
    let mut parenthesis_open = false;
    let mut parentheses_used = false;
    loop {
        let group_start = position;
        while position < bytes.len() && bytes[position].is_ascii_digit() {
            run.digits.push(bytes[position] as char);
            position += 1;
        }
        if run.first_group_length == 0 {
            run.first_group_length = position - group_start;
        }
        run.digits_end = position;
        run.scan_end = position;
        if run.digits.len() > 15 {
            // Keep consuming digits so the rest of a long id is skipped too.
            while position < bytes.len() && bytes[position].is_ascii_digit() {
                position += 1;
            }
            run.scan_end = position;
            run.broken = true;
            return run;
        }
        // A separator of up to three characters, with at most one dash or dot.
        let mut separator_length = 0;
        let mut dashes_or_dots = 0;
        let mut opened = false;
        let mut closed = false;
        let mut has_dot = false;
        let mut cursor = position;
        while let Some((character, width)) = phone_separator_at(text, cursor) {
            separator_length += 1;
            match character {
                '-' | '\u{2013}' => dashes_or_dots += 1,
                '.' => {
                    dashes_or_dots += 1;
                    has_dot = true;
                }
                '(' => opened = true,
                ')' => closed = true,
                _ => {}
            }
            cursor += width;
            if separator_length > 3 {
                break;
            }
        }
        let continues = separator_length > 0
            && separator_length <= 3
            && dashes_or_dots <= 1
            && cursor < bytes.len()
            && bytes[cursor].is_ascii_digit()
            && (!opened || (!parentheses_used && !parenthesis_open && !closed))
            && (!closed || parenthesis_open);
        if !continues {
            if parenthesis_open {
                run.broken = true;
            }
            return run;
        }
        if opened {
            parenthesis_open = true;
            parentheses_used = true;
        }
        if closed {
            parenthesis_open = false;
        }
        run.has_dot |= has_dot;
        position = cursor;
    }
}

/// What the words around a mention say about it.
struct MentionContext {
    contact_cue: bool,
    channel_word: bool,
}

/// Words that introduce a contact. Stems match the start of a word ("пишит" covers "пишите",
/// "отклик" covers "откликнуться" and "отклики"); short words must be the whole word, so "dm"
/// does not match "dmitry" nor "hr" match "hrefs". Words are compared after
/// [`crate::filters::normalize`].
const CONTACT_CUE_STEMS: &[&str] = &[
    "пиши",
    "пишит",
    "писат",
    "напиш",
    "связ",
    "контакт",
    "резюме",
    "отклик",
    "обращ",
    "рекрутер",
    "эйчар",
    "телеграм",
    "telegram",
    "contact",
    "recruit",
    "apply",
    "applicat",
    "resume",
    "write",
    "message",
    "reach",
];
const CONTACT_CUE_WORDS: &[&str] = &[
    "hr",
    "tg",
    "тг",
    "dm",
    "cv",
    "лс",
    "личку",
    "личные",
    "send",
];
/// Words that present a mention as a channel or a group.
const CHANNEL_STEMS: &[&str] = &[
    "канал",
    "чат",
    "групп",
    "подпис",
    "подпиш",
    "вступ",
    "присоедин",
    "паблик",
    "сообществ",
    "channel",
    "chat",
    "group",
    "subscrib",
    "join",
    "follow",
    "community",
];

/// How many words before (after) a mention are read for cues.
const WORDS_BEFORE: usize = 6;
const WORDS_AFTER: usize = 4;

impl MentionContext {
    fn around(text: &str, mention: &Range<usize>) -> Self {
        let before = clause_before(text, mention.start);
        let after = clause_after(text, mention.end);
        let words_before = last_words(before, WORDS_BEFORE);
        let words_after = first_words(after, WORDS_AFTER);
        let is_cue = |word: &String| {
            CONTACT_CUE_WORDS.contains(&word.as_str())
                || CONTACT_CUE_STEMS.iter().any(|stem| word.starts_with(stem))
        };
        let is_channel_word =
            |word: &String| CHANNEL_STEMS.iter().any(|stem| word.starts_with(stem));
        Self {
            contact_cue: words_before.iter().any(is_cue),
            channel_word: words_before.iter().chain(&words_after).any(is_channel_word),
        }
    }
}

fn is_clause_end(text: &str, position: usize, character: char) -> bool {
    match character {
        '\n' | '!' | '?' | ';' | '|' | '•' => true,
        // "Тел. " ends nothing useful, but a sentence's full stop does; "t.me" is not a stop.
        '.' => text[position + 1..]
            .chars()
            .next()
            .is_none_or(char::is_whitespace),
        _ => false,
    }
}

/// The clause before `end`. When the mention opens its line ("Контакты:\n@hr_anna"), the
/// previous non-empty line is the clause: it is the mention's heading.
fn clause_before(text: &str, end: usize) -> &str {
    let head = &text[..end];
    let start = head
        .char_indices()
        .rev()
        .find(|&(position, character)| is_clause_end(text, position, character))
        .map_or(0, |(position, character)| position + character.len_utf8());
    let clause = &head[start..];
    if clause.chars().any(char::is_alphanumeric) || start == 0 {
        return clause;
    }
    let previous = head[..start].trim_end();
    let line_start = previous.rfind('\n').map_or(0, |position| position + 1);
    &head[line_start..]
}

fn clause_after(text: &str, start: usize) -> &str {
    let tail = &text[start..];
    let end = tail
        .char_indices()
        .find(|&(offset, character)| is_clause_end(text, start + offset, character))
        .map_or(tail.len(), |(offset, _)| offset);
    &tail[..end]
}

fn words(text: &str) -> impl DoubleEndedIterator<Item = &str> {
    text.split(|character: char| !(character.is_alphanumeric() || character == '_'))
        .filter(|word| !word.is_empty())
}

fn last_words(text: &str, count: usize) -> Vec<String> {
    words(text)
        .rev()
        .take(count)
        .map(crate::filters::normalize)
        .collect()
}

fn first_words(text: &str, count: usize) -> Vec<String> {
    words(text)
        .take(count)
        .map(crate::filters::normalize)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usernames(text: &str) -> Vec<String> {
        extract_contacts(text)
            .telegram
            .iter()
            .map(|name| name.as_str().to_owned())
            .collect()
    }

    #[test]
    fn telegram_usernames_and_links() {
        let check = |text: &str, expected: &[&str]| assert_eq!(usernames(text), expected, "{text}");
        check("Пишите @recruiter_ivan", &["recruiter_ivan"]);
        check("Контакт: t.me/recruiter_ivan", &["recruiter_ivan"]);
        check(
            "https://t.me/Recruiter_Ivan, telegram.me/hr_maria",
            &["Recruiter_Ivan", "hr_maria"],
        );
        check("www.t.me/hr_maria", &["hr_maria"]);
        check("hr@gmail.com", &[]);
        check("Почта hr@gmail.com, тг @hr_anna", &["hr_anna"]);
        check(
            "t.me/+AbCdEf12345 t.me/joinchat/AbCdEf t.me/c/1234567890/55",
            &[],
        );
        check("t.me/share/url?url=x", &[]);
        check("about.me/someone_else", &[]);
        check("medium.com/@author_name", &[]);
        check("@abcd @abcde @1abcde", &["abcde"]);
        check(&format!("@{}", "a".repeat(33)), &[]);
        check(&format!("@{}", "a".repeat(32)), &["a".repeat(32).as_str()]);
        check(
            "Пост: t.me/it_jobs/123, пишите @hr_anna",
            &["hr_anna", "it_jobs"],
        );
        check("@hr_anna и снова @HR_ANNA", &["hr_anna"]);
        check("@company.ru", &[]);
        check("(@hr_anna)", &["hr_anna"]);
        check("Связь:@hr_anna.", &["hr_anna"]);
    }

    #[test]
    fn emails() {
        let check = |text: &str, expected: &[&str]| {
            assert_eq!(extract_contacts(text).emails, expected, "{text}")
        };
        check("hr@gmail.com", &["hr@gmail.com"]);
        check(
            "Резюме: Anna.Petrova+jobs@company.co.uk.",
            &["Anna.Petrova+jobs@company.co.uk"],
        );
        check("hr@gmail.com HR@GMAIL.COM", &["hr@gmail.com"]);
        check("@hr_anna", &[]);
        check("a@b", &[]);
        check("x@localhost", &[]);
        check("hr@mail.r2", &[]);
        check("почта@яндекс.рф", &[]);
    }

    #[test]
    fn phones() {
        let check = |text: &str, expected: &[&str]| {
            assert_eq!(extract_contacts(text).phones, expected, "{text}")
        };
        check("+7 999 123-45-67", &["+79991234567"]);
        check("8 (999) 123-45-67", &["+79991234567"]);
        check("+380 67 123 4567", &["+380671234567"]);
        check("+1 (415) 555-2671", &["+14155552671"]);
        check("Тел: 89991234567", &["+79991234567"]);
        check(
            "тел.:+7\u{a0}999\u{a0}123\u{a0}45\u{a0}67",
            &["+79991234567"],
        );
        check("8 800 555 35 35", &["+78005553535"]);
        check("(8 999 123 45 67)", &["+79991234567"]);
        check("+7 999 123-45-67, 8 (999) 123-45-67", &["+79991234567"]);
        check("150 000 - 200 000 руб", &[]);
        check("84 000 - 100 000", &[]);
        check("80 000 - 100 000", &[]);
        check("800 000 - 1 200 000 ₽", &[]);
        check("с 01.02.2024 по 8.03.2024", &[]);
        check("2023-2024", &[]);
        check("id 12345678901234567890", &[]);
        check("+12345678901234567", &[]);
        check("https://hh.ru/vacancy/89991234567", &[]);
        check("https://t.me/c/1234567890/55", &[]);
        check("+7 (999 123-45-67", &[]);
        check("89991234567руб", &[]);
        check("9991234567", &[]);
        check("+20%", &[]);
    }

    fn sender(username: Option<&str>, kind: PeerKind) -> Sender {
        Sender {
            id: ChatId::user(42).unwrap(),
            kind,
            username: username.map(|name| Username::parse(name).unwrap()),
            first_name: "Anna".into(),
            last_name: None,
            peer: None,
        }
    }

    fn ranked(text: &str, source: Option<&str>, sender: Option<&Sender>) -> Vec<String> {
        let source = source.map(|name| Username::parse(name).unwrap());
        rank_crm_candidates(
            &extract_contacts_with_context(text),
            source.as_ref(),
            sender,
        )
        .iter()
        .map(|candidate| match &candidate.target {
            CandidateTarget::Username(name) => format!("{}:{}", name.as_str(), candidate.score),
            CandidateTarget::Sender { .. } => format!("sender:{}", candidate.score),
        })
        .collect()
    }

    #[test]
    fn ranking_prefers_cued_people_over_channels_bots_and_the_source() {
        let check =
            |text: &str, source: Option<&str>, sender: Option<&Sender>, expected: &[&str]| {
                assert_eq!(ranked(text, source, sender), expected, "{text}");
            };
        check(
            "@jobforjunior\nВакансия. Пишите @hr_anna",
            Some("jobforjunior"),
            None,
            &["hr_anna:80"],
        );
        check(
            "Подписывайтесь на наш канал @it_jobs. Контакты: @hr_anna",
            None,
            None,
            &["hr_anna:80", "it_jobs:-10"],
        );
        check(
            "Откликнуться через @hr_apply_bot или @hr_anna",
            None,
            None,
            &["hr_anna:80"],
        );
        check("@IT_Jobs_Bot", None, None, &[]);
        check("Пост t.me/it_jobs/123", None, None, &["it_jobs:0"]);
        check("Контакты:\n\n@hr_anna", None, None, &["hr_anna:80"]);
        check("Вакансия в @some_company", None, None, &["some_company:50"]);
        let poster = sender(Some("anna_hr"), PeerKind::User);
        check(
            "Вакансия в @some_company",
            None,
            Some(&poster),
            &["sender:60", "some_company:50"],
        );
        check("Пишите @anna_hr", None, Some(&poster), &["sender:90"]);
        check(
            "Пишите @hr_boris",
            None,
            Some(&poster),
            &["hr_boris:80", "sender:60"],
        );
        let bot = sender(Some("vacancy_bot"), PeerKind::Bot);
        check("Вакансия", None, Some(&bot), &[]);
        let channel = sender(Some("it_jobs"), PeerKind::Channel);
        check("Вакансия", None, Some(&channel), &[]);
    }

    #[test]
    fn crm_target_refuses_channels() {
        let target = |text: &str| {
            let candidates = rank_crm_candidates(&extract_contacts_with_context(text), None, None);
            crm_target(&candidates).map(|candidate| candidate.target.clone())
        };
        assert_eq!(target("Подписывайтесь на канал @it_jobs"), None);
        assert_eq!(target("Пост t.me/it_jobs/123"), None);
        assert_eq!(
            target("HR: @hr_anna"),
            Some(CandidateTarget::Username(
                Username::parse("hr_anna").unwrap()
            ))
        );
    }
}
