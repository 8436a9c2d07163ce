//! The checks every incoming message passes before any channel's keywords are looked at: the
//! original's `should_process_message` plus its handler's "not outgoing" test.

use crate::telegram::IncomingMessage;

/// Limits of the pre-filter; the defaults are the original's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreFilterSettings {
    /// Minimum length of the trimmed text or caption, in characters (not bytes: a Cyrillic post
    /// is as long as an English one with the same number of letters).
    pub min_text_chars: usize,
    /// Messages older than this are history, not news (the original's `MAX_MESSAGE_AGE_HOURS`).
    pub max_age_hours: u32,
}

impl Default for PreFilterSettings {
    fn default() -> Self {
        Self {
            min_text_chars: 50,
            max_age_hours: 24,
        }
    }
}

/// Why a message is not a vacancy candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PreFilterRejection {
    #[error("sent by this account")]
    Outgoing,
    #[error("a service message")]
    ServiceMessage,
    #[error("no text or caption")]
    NoText,
    #[error("text too short ({chars} characters, at least {minimum} needed)")]
    TooShort { chars: usize, minimum: usize },
    #[error("too old ({age_seconds} s, at most {max_age_seconds} s)")]
    TooOld {
        age_seconds: i64,
        max_age_seconds: i64,
    },
}

/// Accepts a message for filtering, or says why not. `now` is unix seconds.
///
/// A message dated in the future (clock skew between us and Telegram) is accepted: it is new.
pub fn pre_filter(
    message: &IncomingMessage,
    settings: &PreFilterSettings,
    now: i64,
) -> Result<(), PreFilterRejection> {
    if message.outgoing {
        return Err(PreFilterRejection::Outgoing);
    }
    if message.is_service {
        return Err(PreFilterRejection::ServiceMessage);
    }
    let text = message.text.trim();
    if text.is_empty() {
        return Err(PreFilterRejection::NoText);
    }
    // Counting stops at the minimum: a 4,000-character post needs no full count.
    let chars = text.chars().take(settings.min_text_chars).count();
    if chars < settings.min_text_chars {
        return Err(PreFilterRejection::TooShort {
            chars,
            minimum: settings.min_text_chars,
        });
    }
    let age_seconds = now.saturating_sub(message.date);
    let max_age_seconds = i64::from(settings.max_age_hours) * 3600;
    if age_seconds > max_age_seconds {
        return Err(PreFilterRejection::TooOld {
            age_seconds,
            max_age_seconds,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ChatId;
    use crate::telegram::PeerKind;

    const NOW: i64 = 1_750_000_000;

    fn message(text: &str, age_seconds: i64) -> IncomingMessage {
        IncomingMessage {
            chat: ChatId::channel(1234567890).unwrap(),
            chat_kind: PeerKind::Channel,
            chat_title: None,
            chat_username: None,
            message_id: 1,
            sender: None,
            text: text.to_owned(),
            media: None,
            file: None,
            date: NOW - age_seconds,
            outgoing: false,
            is_service: false,
            topic_id: None,
        }
    }

    #[test]
    fn each_rule_rejects_with_its_reason() {
        let settings = PreFilterSettings::default();
        let long = "Ищем Python-разработчика в команду платформы, удалёнка, 300к";
        let check = |message: IncomingMessage, expected: Result<(), PreFilterRejection>| {
            assert_eq!(
                pre_filter(&message, &settings, NOW),
                expected,
                "{:?}",
                message.text
            );
        };
        check(message(long, 60), Ok(()));
        check(message(long, 24 * 3600), Ok(()));
        check(message(long, -300), Ok(()));
        check(
            message(long, 24 * 3600 + 1),
            Err(PreFilterRejection::TooOld {
                age_seconds: 24 * 3600 + 1,
                max_age_seconds: 24 * 3600,
            }),
        );
        check(message("   \n ", 0), Err(PreFilterRejection::NoText));
        check(message("", 0), Err(PreFilterRejection::NoText));
        // 49 Cyrillic letters are 98 bytes but still too short.
        let short = format!("  {}  ", "ж".repeat(49));
        check(
            message(&short, 0),
            Err(PreFilterRejection::TooShort {
                chars: 49,
                minimum: 50,
            }),
        );
        check(message(&"ж".repeat(50), 0), Ok(()));
        check(
            IncomingMessage {
                is_service: true,
                ..message(long, 0)
            },
            Err(PreFilterRejection::ServiceMessage),
        );
        check(
            IncomingMessage {
                outgoing: true,
                ..message(long, 0)
            },
            Err(PreFilterRejection::Outgoing),
        );
    }

    #[test]
    fn limits_are_configurable() {
        let settings = PreFilterSettings {
            min_text_chars: 5,
            max_age_hours: 1,
        };
        assert_eq!(pre_filter(&message("hello", 3600), &settings, NOW), Ok(()));
        assert!(matches!(
            pre_filter(&message("hello", 3601), &settings, NOW),
            Err(PreFilterRejection::TooOld { .. })
        ));
    }
}
