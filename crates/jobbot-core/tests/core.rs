//! Integration tests of the pure core: the vacancy corpus in `tests/corpus/` through the
//! pre-filter, the filter engine and contact extraction, plus property tests.

use jobbot_core::config::Filters;
use jobbot_core::contacts::{
    CandidateTarget, crm_target, extract_contacts, extract_contacts_with_context,
    rank_crm_candidates,
};
use jobbot_core::filters::{
    FilterEngine, PreFilterRejection, PreFilterSettings, naive_matches, pre_filter,
};
use jobbot_core::ids::{ChatId, PhoneNumber, Username};
use jobbot_core::telegram::{IncomingMessage, PeerKind, Sender};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// The corpus
// ---------------------------------------------------------------------------------------------

struct Post {
    name: &'static str,
    text: &'static str,
}

macro_rules! post {
    ($name:literal) => {
        Post {
            name: $name,
            text: include_str!(concat!("corpus/", $name, ".txt")),
        }
    };
}

const CORPUS: &[Post] = &[
    post!("ru_python_backend"),
    post!("ru_go_channel_plug"),
    post!("en_rust_remote"),
    post!("ru_only_email"),
    post!("ru_links_no_person"),
    post!("ua_qa_phone"),
    post!("ru_designer_eight_phone"),
    post!("en_frontend_dm"),
    post!("ru_group_post_by_user"),
    post!("ru_short"),
    post!("ru_crypto_casino"),
];

fn corpus(name: &str) -> &'static str {
    CORPUS
        .iter()
        .find(|post| post.name == name)
        .unwrap_or_else(|| panic!("no post {name}"))
        .text
}

fn filters(include: &[&str], exclude: &[&str], require_all: bool) -> Filters {
    Filters {
        include_keywords: include.iter().map(|keyword| keyword.to_string()).collect(),
        exclude_keywords: exclude.iter().map(|keyword| keyword.to_string()).collect(),
        require_all_includes: require_all,
    }
}

fn corpus_channels() -> Vec<(&'static str, Filters)> {
    vec![
        (
            "python",
            filters(&["python", "django"], &["стажировка", "казино"], false),
        ),
        ("go", filters(&["\"go\"", "golang"], &[], false)),
        ("rust_remote", filters(&["rust", "remote"], &[], true)),
        (
            "design",
            filters(&["дизайн", "figma", "\"ui\""], &[], false),
        ),
        ("all_but_crypto", filters(&[], &["crypto", "казино"], false)),
        ("qa", filters(&["\"qa\""], &[], false)),
        ("yo", filters(&["елка"], &[], false)),
    ]
}

const NOW: i64 = 1_756_000_000;

fn incoming(text: &str) -> IncomingMessage {
    IncomingMessage {
        chat: ChatId::channel(1_234_567_890).unwrap(),
        chat_kind: PeerKind::Channel,
        chat_title: Some("Jobs".into()),
        chat_username: None,
        message_id: 7,
        sender: None,
        text: text.to_owned(),
        media: None,
        file: None,
        date: NOW - 600,
        outgoing: false,
        is_service: false,
        topic_id: None,
    }
}

#[test]
fn corpus_posts_pass_the_pre_filter_except_the_short_one() {
    for post in CORPUS {
        let verdict = pre_filter(&incoming(post.text), &PreFilterSettings::default(), NOW);
        if post.name == "ru_short" {
            assert!(
                matches!(verdict, Err(PreFilterRejection::TooShort { .. })),
                "{}",
                post.name
            );
        } else {
            assert_eq!(verdict, Ok(()), "{}", post.name);
        }
    }
}

#[test]
fn corpus_posts_reach_the_expected_channels() {
    let owned = corpus_channels();
    let channels: Vec<(&str, &Filters)> =
        owned.iter().map(|(key, filters)| (*key, filters)).collect();
    let engine = FilterEngine::compile(&channels).unwrap();
    let check = |name: &str, expected: &[(&str, &[&str])]| {
        let found: Vec<(&str, Vec<&str>)> = engine
            .evaluate(corpus(name))
            .into_iter()
            .map(|m| (*m.channel, m.matched_keywords))
            .collect();
        let expected: Vec<(&str, Vec<&str>)> = expected
            .iter()
            .map(|(channel, keywords)| (*channel, keywords.to_vec()))
            .collect();
        assert_eq!(found, expected, "{name}");
    };
    check(
        "ru_python_backend",
        &[
            ("python", &["python", "django"]),
            ("all_but_crypto", &[]),
            ("yo", &["елка"]),
        ],
    );
    check(
        "ru_go_channel_plug",
        &[("go", &["\"go\"", "golang"]), ("all_but_crypto", &[])],
    );
    check(
        "en_rust_remote",
        &[
            ("rust_remote", &["rust", "remote"]),
            ("all_but_crypto", &[]),
        ],
    );
    check("ru_only_email", &[("all_but_crypto", &[])]);
    check(
        "ru_links_no_person",
        &[("all_but_crypto", &[]), ("qa", &["\"qa\""])],
    );
    check(
        "ua_qa_phone",
        &[
            ("python", &["python"]),
            ("all_but_crypto", &[]),
            ("qa", &["\"qa\""]),
        ],
    );
    check(
        "ru_designer_eight_phone",
        &[
            ("design", &["дизайн", "figma", "\"ui\""]),
            ("all_but_crypto", &[]),
        ],
    );
    check("en_frontend_dm", &[("all_but_crypto", &[])]);
    check(
        "ru_group_post_by_user",
        &[("python", &["python"]), ("all_but_crypto", &[])],
    );
    check("ru_crypto_casino", &[]);
}

#[test]
fn substring_channels_agree_with_the_original_loop_on_the_corpus() {
    let owned = corpus_channels();
    // The original knows no quotes; keep the channels whose keywords are all substrings.
    let channels: Vec<(&str, &Filters)> = owned
        .iter()
        .filter(|(_, filters)| {
            filters
                .include_keywords
                .iter()
                .chain(&filters.exclude_keywords)
                .all(|keyword| !keyword.contains('"'))
        })
        .map(|(key, filters)| (*key, filters))
        .collect();
    let engine = FilterEngine::compile(&channels).unwrap();
    for post in CORPUS {
        let text = fold_yo(post.text);
        let engine_found: Vec<usize> = engine.evaluate(&text).iter().map(|m| m.index).collect();
        assert_eq!(
            engine_found,
            naive_matches(&channels, &text),
            "{}",
            post.name
        );
    }
}

#[test]
fn explain_says_why_a_post_missed_a_channel() {
    use jobbot_core::filters::Verdict;
    let owned = corpus_channels();
    let channels: Vec<(&str, &Filters)> =
        owned.iter().map(|(key, filters)| (*key, filters)).collect();
    let engine = FilterEngine::compile(&channels).unwrap();
    let verdicts = engine.explain(corpus("ru_crypto_casino"));
    assert_eq!(
        verdicts[0].verdict,
        Verdict::Excluded {
            excludes_found: vec!["казино"]
        }
    );
    assert_eq!(
        verdicts[4].verdict,
        Verdict::Excluded {
            excludes_found: vec!["crypto", "казино"]
        }
    );
    let verdicts = engine.explain(corpus("en_frontend_dm"));
    assert_eq!(
        verdicts[2].verdict,
        Verdict::IncludesMissing {
            matched_includes: vec![],
            missing_includes: vec!["rust", "remote"],
            require_all_includes: true
        }
    );
}

struct ExpectedContacts {
    telegram: &'static [&'static str],
    emails: &'static [&'static str],
    phones: &'static [&'static str],
}

#[test]
fn corpus_contacts() {
    let check = |name: &str, expected: ExpectedContacts| {
        let contacts = extract_contacts(corpus(name));
        let telegram: Vec<&str> = contacts.telegram.iter().map(Username::as_str).collect();
        assert_eq!(telegram, expected.telegram, "{name}: telegram");
        assert_eq!(contacts.emails, expected.emails, "{name}: emails");
        assert_eq!(contacts.phones, expected.phones, "{name}: phones");
    };
    check(
        "ru_python_backend",
        ExpectedContacts {
            telegram: &["jobforjunior", "hr_anna_petrova"],
            emails: &["hr@gmail.com"],
            phones: &["+79991234567"],
        },
    );
    check(
        "ru_go_channel_plug",
        ExpectedContacts {
            telegram: &["hh_vacancy_apply_bot", "recruiter_ivan", "go_jobs_daily"],
            emails: &[],
            phones: &[],
        },
    );
    check(
        "en_rust_remote",
        ExpectedContacts {
            telegram: &["jane_recruits", "rust_jobs_feed"],
            emails: &["jobs@ferrous.dev"],
            phones: &["+14155552671"],
        },
    );
    // The original read this as the username "@gmail".
    check(
        "ru_only_email",
        ExpectedContacts {
            telegram: &[],
            emails: &["hr@gmail.com"],
            phones: &[],
        },
    );
    check(
        "ru_links_no_person",
        ExpectedContacts {
            telegram: &["it_jobs_msk"],
            emails: &[],
            phones: &[],
        },
    );
    check(
        "ua_qa_phone",
        ExpectedContacts {
            telegram: &["olena_hr_kyiv"],
            emails: &[],
            phones: &["+380671234567"],
        },
    );
    check(
        "ru_designer_eight_phone",
        ExpectedContacts {
            telegram: &[],
            emails: &[],
            phones: &["+79997654321"],
        },
    );
    check(
        "en_frontend_dm",
        ExpectedContacts {
            telegram: &["sam_frontend_lead", "frontend_weekly", "FrontendAlertsBot"],
            emails: &[],
            phones: &[],
        },
    );
    check(
        "ru_crypto_casino",
        ExpectedContacts {
            telegram: &["casino_hr_team"],
            emails: &[],
            phones: &[],
        },
    );
}

#[test]
fn corpus_crm_targets() {
    let user = Sender {
        id: ChatId::user(777).unwrap(),
        kind: PeerKind::User,
        username: Some(Username::parse("dasha_ds").unwrap()),
        first_name: "Даша".into(),
        last_name: None,
        peer: None,
    };
    let check =
        |name: &str, source: Option<&str>, sender: Option<&Sender>, expected: Option<&str>| {
            let source = source.map(|source| Username::parse(source).unwrap());
            let candidates = rank_crm_candidates(
                &extract_contacts_with_context(corpus(name)),
                source.as_ref(),
                sender,
            );
            let target = crm_target(&candidates).map(|candidate| match &candidate.target {
                CandidateTarget::Username(username) => username.as_str().to_owned(),
                CandidateTarget::Sender { id, .. } => format!("sender {id}"),
            });
            assert_eq!(target.as_deref(), expected, "{name}: {candidates:?}");
        };
    // The source's own signature comes first in the text and is skipped.
    check(
        "ru_python_backend",
        Some("jobforjunior"),
        None,
        Some("hr_anna_petrova"),
    );
    // Not the bot, not the channel plug: the t.me link.
    check("ru_go_channel_plug", None, None, Some("recruiter_ivan"));
    check("en_rust_remote", None, None, Some("jane_recruits"));
    check("ru_only_email", None, None, None);
    check("ru_links_no_person", None, None, None);
    check("ua_qa_phone", None, None, Some("olena_hr_kyiv"));
    check("en_frontend_dm", None, None, Some("sam_frontend_lead"));
    check(
        "ru_group_post_by_user",
        None,
        Some(&user),
        Some("sender 777"),
    );
    check(
        "ru_group_post_by_user",
        None,
        None,
        Some("some_company_news"),
    );
    check("ru_crypto_casino", None, None, Some("casino_hr_team"));
}

// ---------------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------------

fn fold_yo(text: &str) -> String {
    text.chars()
        .map(|character| {
            if matches!(character, 'ё' | 'Ё') {
                'е'
            } else {
                character
            }
        })
        .collect()
}

/// Text made of contact-shaped fragments and arbitrary characters, so the scanners' deep paths
/// (e-mails, links, phones, cues) are reached far more often than by uniform Unicode.
fn contact_like_text() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        Just("@".to_owned()),
        Just("t.me/".to_owned()),
        Just("https://".to_owned()),
        Just("telegram.me/".to_owned()),
        Just("+".to_owned()),
        Just("+7 ".to_owned()),
        Just("8 (".to_owned()),
        Just(") ".to_owned()),
        Just("-".to_owned()),
        Just(".".to_owned()),
        Just(" ".to_owned()),
        Just("\n".to_owned()),
        Just("пишите ".to_owned()),
        Just("канал ".to_owned()),
        Just("joinchat/".to_owned()),
        Just("/".to_owned()),
        "[0-9]{1,4}",
        "[a-zA-Z_]{1,8}",
        "[а-яёА-ЯЁ]{1,5}",
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(fragment, 0..40).prop_map(|fragments| fragments.concat())
}

fn check_extraction_invariants(text: &str) {
    let extracted = extract_contacts_with_context(text);
    for username in &extracted.contacts.telegram {
        assert_eq!(
            Username::parse(username.as_str()).as_ref(),
            Ok(username),
            "{text:?}"
        );
    }
    for phone in &extracted.contacts.phones {
        assert_eq!(
            PhoneNumber::parse(phone)
                .map(|p| p.as_str().to_owned())
                .as_ref(),
            Ok(phone),
            "{text:?}"
        );
    }
    for email in &extracted.contacts.emails {
        assert!(
            email.contains('@') && text.contains(email.as_str()),
            "{text:?}"
        );
    }
    for mention in &extracted.mentions {
        assert!(
            text.is_char_boundary(mention.range.start) && text.is_char_boundary(mention.range.end)
        );
    }
    // Ranking is total on whatever extraction returns.
    let candidates = rank_crm_candidates(&extracted, None, None);
    assert!(
        candidates
            .windows(2)
            .all(|pair| pair[0].score >= pair[1].score)
    );
}

/// Keywords over a small alphabet (with case pairs, `ё`, and characters whose lower case is
/// longer than themselves) so that random texts contain them often.
fn substring_keyword() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            'a', 'b', 'A', 'B', 'ё', 'Ё', 'е', 'ж', 'Ж', 'İ', 'i', 'ß', ' ', '-', '1',
        ]),
        1..4,
    )
    .prop_map(|characters| characters.into_iter().collect::<String>())
    .prop_filter("blank keywords are configuration errors", |keyword| {
        !keyword.trim().is_empty()
    })
}

fn small_alphabet_text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(
            prop::sample::select(vec![
                'a', 'b', 'A', 'B', 'ё', 'Ё', 'е', 'ж', 'Ж', 'İ', 'i', 'ß', ' ', '-', '1',
                '\u{307}'
            ]),
            0..48,
        )
        .prop_map(|characters| characters.into_iter().collect::<String>()),
        any::<String>(),
    ]
}

fn channel_filters() -> impl Strategy<Value = Filters> {
    (
        prop::collection::vec(substring_keyword(), 0..4),
        prop::collection::vec(substring_keyword(), 0..3),
        any::<bool>(),
    )
        .prop_map(
            |(include_keywords, exclude_keywords, require_all_includes)| Filters {
                include_keywords,
                exclude_keywords,
                require_all_includes,
            },
        )
}

/// The whole-word rule written the slow, obvious way: every occurrence of the normalised keyword
/// in the normalised text, overlapping ones included, with its neighbours checked.
fn whole_word_reference(keyword_inner: &str, text: &str) -> bool {
    let needle = jobbot_core::filters::normalize(keyword_inner);
    let haystack = jobbot_core::filters::normalize(text);
    haystack
        .char_indices()
        .map(|(start, _)| start)
        .chain([haystack.len()])
        .any(|start| {
            haystack[start..].starts_with(&needle) && {
                let before = haystack[..start].chars().next_back();
                let after = haystack[start + needle.len()..].chars().next();
                !before.is_some_and(char::is_alphanumeric)
                    && !after.is_some_and(char::is_alphanumeric)
            }
        })
}

proptest! {
    #[test]
    fn extraction_never_panics_on_arbitrary_unicode(text in any::<String>()) {
        check_extraction_invariants(&text);
    }

    #[test]
    fn extraction_never_panics_on_contact_shaped_text(text in contact_like_text()) {
        check_extraction_invariants(&text);
    }

    #[test]
    fn engine_agrees_with_the_naive_loop_on_substring_keywords(
        channels in prop::collection::vec(channel_filters(), 1..6),
        text in small_alphabet_text(),
    ) {
        let keyed: Vec<(usize, &Filters)> = channels.iter().enumerate().collect();
        let engine = FilterEngine::compile(&keyed).unwrap();
        let engine_found: Vec<usize> = engine.evaluate(&text).iter().map(|m| m.index).collect();

        let folded: Vec<Filters> = channels
            .iter()
            .map(|filters| Filters {
                include_keywords: filters.include_keywords.iter().map(|k| fold_yo(k)).collect(),
                exclude_keywords: filters.exclude_keywords.iter().map(|k| fold_yo(k)).collect(),
                require_all_includes: filters.require_all_includes,
            })
            .collect();
        let folded_keyed: Vec<(usize, &Filters)> = folded.iter().enumerate().collect();
        prop_assert_eq!(&engine_found, &naive_matches(&folded_keyed, &fold_yo(&text)));

        // explain() tells the same story as evaluate().
        let explained: Vec<usize> = engine
            .explain(&text)
            .iter()
            .filter(|verdict| matches!(verdict.verdict, jobbot_core::filters::Verdict::Matched { .. }))
            .map(|verdict| verdict.index)
            .collect();
        prop_assert_eq!(engine_found, explained);
    }

    #[test]
    fn whole_word_keywords_follow_the_documented_rule(
        inner in substring_keyword().prop_filter("no spaces at the edges", |k| k.trim() == k),
        text in small_alphabet_text(),
    ) {
        let channel = Filters { include_keywords: vec![format!("\"{inner}\"")], ..Filters::default() };
        let engine = FilterEngine::compile(&[((), &channel)]).unwrap();
        prop_assert_eq!(!engine.evaluate(&text).is_empty(), whole_word_reference(&inner, &text));
    }
}
