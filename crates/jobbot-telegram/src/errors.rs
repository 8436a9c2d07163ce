//! grammers errors as jobbot's typed errors: pure functions, one table each.
//!
//! grammers parses `FLOOD_WAIT_31` into `name: "FLOOD_WAIT", value: Some(31)` (the first run of
//! digits goes into `value` and `_<digits>` leaves the name), so names here never carry numbers.

use grammers_mtsender::{InvocationError, RpcError};
use jobbot_core::telegram::{DeadReason, LoginError, TelegramError};

/// Why the account is unusable, if the error says so (core.telegram.org/api/errors: 401 and
/// 406 `AUTH_KEY_DUPLICATED`, and the frozen-account family).
pub fn dead_reason(error: &RpcError) -> Option<DeadReason> {
    let reason = match error.name.as_str() {
        "USER_DEACTIVATED_BAN" => DeadReason::Banned,
        "USER_DEACTIVATED" => DeadReason::Deactivated,
        "AUTH_KEY_UNREGISTERED" => DeadReason::Unregistered,
        "SESSION_REVOKED" | "SESSION_EXPIRED" => DeadReason::Revoked,
        "AUTH_KEY_DUPLICATED" => DeadReason::AuthKeyDuplicated,
        "AUTH_KEY_INVALID" => DeadReason::AuthKeyInvalid,
        name if name.starts_with("FROZEN_") => DeadReason::Frozen,
        _ => return None,
    };
    Some(reason)
}

/// The text of a network failure. grammers' proxy errors quote the proxy address (with its
/// password) into the message, which then reaches logs, link states and the web; its
/// credentials are masked here.
fn network_message(error: &InvocationError) -> String {
    jobbot_core::config::mask_urls_in(&error.to_string())
}

/// A failed call as a value the scheduler can act on. Secrets never reach the message: RPC
/// errors carry only Telegram's error name.
pub fn map_invocation_error(error: &InvocationError) -> TelegramError {
    let rpc = match error {
        InvocationError::Rpc(rpc) => rpc,
        InvocationError::Io(_) | InvocationError::Transport(_) | InvocationError::Dropped(_) => {
            // Transport covers `BadStatus` (e.g. 429 too many connections, 404 unknown key);
            // the runner reconnects, so the same call may succeed later.
            return TelegramError::Network {
                message: network_message(error),
            };
        }
        InvocationError::Session(_)
        | InvocationError::Deserialize(_)
        | InvocationError::InvalidDc
        | InvocationError::Authentication(_) => {
            return TelegramError::Other {
                message: error.to_string(),
            };
        }
    };
    if let Some(reason) = dead_reason(rpc) {
        return TelegramError::AccountDead { reason };
    }
    // 5xx and -503 `Timeout`: Telegram failed inside, whatever the name
    // (core.telegram.org/api/errors: "500 INTERNAL", "-503 Timeout"). `RANDOM_ID_DUPLICATE`
    // comes with 500 too, and is not a failure: it is matched by name first.
    if rpc.name != "RANDOM_ID_DUPLICATE" && (rpc.code >= 500 || rpc.code == -503) {
        return TelegramError::ServerError { code: rpc.code };
    }
    // 303 `*_MIGRATE_X`: the call belongs to DC X. grammers follows it during login itself.
    if rpc.code == 303 || rpc.name.ends_with("_MIGRATE") {
        return TelegramError::WrongDc {
            dc: rpc.value.unwrap_or(0),
        };
    }
    match rpc.name.as_str() {
        "FLOOD_WAIT" | "FLOOD_PREMIUM_WAIT" => TelegramError::FloodWait {
            seconds: wait_seconds(rpc),
        },
        "SLOWMODE_WAIT" => TelegramError::SlowMode {
            seconds: wait_seconds(rpc),
        },
        "PEER_FLOOD" => TelegramError::PeerFlood,
        // `channels.createChannel`'s "You're spamreported, you can't create channels or chats":
        // the same spam limitation as PEER_FLOOD (telegram.org/faq_spam), on this account.
        "USER_RESTRICTED" => TelegramError::PeerFlood,
        // `channels.inviteToChannel`: the user lets only contacts (or mutual contacts) add them.
        "USER_PRIVACY_RESTRICTED"
        | "PRIVACY_PREMIUM_REQUIRED"
        | "USER_IS_BLOCKED"
        | "USER_NOT_MUTUAL_CONTACT" => TelegramError::PrivacyRestricted,
        "USERNAME_NOT_OCCUPIED" | "USERNAME_INVALID" => TelegramError::UsernameNotFound,
        // Paid messages (core.telegram.org/api/paid-messages): the price in Stars is the number.
        "ALLOW_PAYMENT_REQUIRED" => TelegramError::PaymentRequired {
            stars: rpc.value.unwrap_or(0),
        },
        // `MSG_ID_INVALID`: an `inputUserFromMessage` whose message is gone names nobody.
        "PEER_ID_INVALID" | "USER_ID_INVALID" | "INPUT_USER_INVALID" | "MSG_ID_INVALID" => {
            TelegramError::PeerInvalid
        }
        "INPUT_USER_DEACTIVATED" => TelegramError::RecipientDeactivated,
        "USER_IS_BOT" | "BOT_METHOD_INVALID" => TelegramError::NotAUser,
        "YOU_BLOCKED_USER" => TelegramError::YouBlockedUser,
        "MESSAGE_TOO_LONG" | "MEDIA_CAPTION_TOO_LONG" => TelegramError::MessageTooLong,
        // Re-sending a received file (core.telegram.org/api/file_reference, /api/files).
        "MEDIA_EMPTY" | "MEDIA_INVALID" | "PHOTO_INVALID" | "DOCUMENT_INVALID" => {
            TelegramError::MediaEmpty
        }
        // `FILE_REFERENCE_%d_EXPIRED` (the n-th file of a request) arrives here as
        // `FILE_REFERENCE_EXPIRED`: grammers moves the number into `value`. The engine fetches the
        // message again for a fresh reference and retries once.
        "FILE_REFERENCE_EXPIRED" | "FILE_REFERENCE_INVALID" => TelegramError::FileReferenceExpired,
        "VOICE_MESSAGES_FORBIDDEN" => TelegramError::MediaForbidden {
            code: rpc.name.clone(),
        },
        name if name.starts_with("CHAT_SEND_")
            && name.ends_with("_FORBIDDEN")
            && name != "CHAT_SEND_PLAIN_FORBIDDEN" =>
        {
            TelegramError::MediaForbidden {
                code: rpc.name.clone(),
            }
        }
        "CHANNELS_TOO_MUCH" => TelegramError::TooManyChannels,
        "USER_CHANNELS_TOO_MUCH" => TelegramError::UserInTooManyChannels,
        "INVITE_REQUEST_SENT" => TelegramError::JoinRequestSent,
        "TOPIC_DELETED" | "MESSAGE_THREAD_INVALID" => TelegramError::TopicDeleted,
        "TOPIC_CLOSED" => TelegramError::TopicClosed,
        "CHAT_WRITE_FORBIDDEN"
        | "CHANNEL_PRIVATE"
        | "CHANNEL_INVALID"
        | "CHAT_ID_INVALID"
        | "USER_BANNED_IN_CHANNEL"
        | "CHAT_ADMIN_REQUIRED"
        | "CHAT_SEND_PLAIN_FORBIDDEN"
        | "CHAT_RESTRICTED"
        | "CHAT_GUEST_SEND_FORBIDDEN" => TelegramError::ChatForbidden {
            code: rpc.name.clone(),
        },
        "INVITE_HASH_EXPIRED" | "INVITE_HASH_INVALID" => TelegramError::InvalidInvite,
        // 500, yet not a server fault: a send with this random_id is already being processed
        // (core.telegram.org/api/updates, random ID deduplication), so the message is on its way.
        "RANDOM_ID_DUPLICATE" => TelegramError::RandomIdDuplicate,
        _ => TelegramError::Other {
            message: rpc_description(rpc),
        },
    }
}

/// A failed login step. `PHONE_CODE_EXPIRED` stays apart from `PHONE_CODE_INVALID` because the
/// login backend calls `auth.signIn` itself (grammers' `sign_in` folds every `PHONE_CODE_*` into
/// one `InvalidCode`).
pub fn map_login_error(error: &InvocationError) -> LoginError {
    let rpc = match error {
        InvocationError::Rpc(rpc) => rpc,
        InvocationError::Io(_) | InvocationError::Transport(_) | InvocationError::Dropped(_) => {
            return LoginError::Network {
                message: network_message(error),
            };
        }
        _ => {
            return LoginError::Other {
                message: error.to_string(),
            };
        }
    };
    if let Some(reason) = dead_reason(rpc) {
        return LoginError::AccountDead { reason };
    }
    match rpc.name.as_str() {
        "PHONE_NUMBER_INVALID" => LoginError::InvalidPhone,
        "PHONE_NUMBER_BANNED" => LoginError::PhoneBanned,
        "PHONE_NUMBER_UNOCCUPIED" => LoginError::SignUpRequired,
        "PHONE_CODE_INVALID" | "PHONE_CODE_EMPTY" => LoginError::InvalidCode,
        "PHONE_CODE_EXPIRED" => LoginError::CodeExpired,
        "SEND_CODE_UNAVAILABLE" => LoginError::ResendUnavailable,
        "PASSWORD_HASH_INVALID" => LoginError::InvalidPassword,
        "FLOOD_WAIT" | "FLOOD_PREMIUM_WAIT" => LoginError::FloodWait {
            seconds: wait_seconds(rpc),
        },
        "PHONE_NUMBER_FLOOD" => LoginError::PhoneNumberFlood,
        "PHONE_PASSWORD_FLOOD" => LoginError::PasswordFlood,
        "SRP_ID_INVALID" | "SRP_PASSWORD_CHANGED" => LoginError::PasswordCheckExpired,
        _ => LoginError::Other {
            message: rpc_description(rpc),
        },
    }
}

/// A 420 without a number still means "wait"; one second is the least wait that does.
fn wait_seconds(rpc: &RpcError) -> u32 {
    rpc.value.unwrap_or(1).max(1)
}

fn rpc_description(rpc: &RpcError) -> String {
    match rpc.value {
        Some(value) => format!("{} {} ({value})", rpc.code, rpc.name),
        None => format!("{} {}", rpc.code, rpc.name),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io;

    use super::*;

    pub(crate) fn rpc(code: i32, name: &str, value: Option<u32>) -> InvocationError {
        InvocationError::Rpc(RpcError {
            code,
            name: name.into(),
            value,
            caused_by: None,
        })
    }

    fn forbidden(code: &str) -> TelegramError {
        TelegramError::ChatForbidden { code: code.into() }
    }

    fn dead(reason: DeadReason) -> TelegramError {
        TelegramError::AccountDead { reason }
    }

    #[test]
    fn a_proxy_address_quoted_by_a_network_error_is_masked() {
        let error = InvocationError::Io(io::Error::new(
            io::ErrorKind::NotFound,
            "proxy port is missing from url: socks5://user:hunter2@host?x:1080",
        ));
        for message in [
            match map_invocation_error(&error) {
                TelegramError::Network { message } => message,
                other => panic!("{other:?}"),
            },
            match map_login_error(&error) {
                LoginError::Network { message } => message,
                other => panic!("{other:?}"),
            },
        ] {
            assert!(!message.contains("hunter2"), "{message}");
            assert!(message.contains("socks5://***@host"), "{message}");
        }
    }

    #[test]
    fn invocation_errors_map_to_telegram_errors() {
        let check = |input: InvocationError, expected: TelegramError| {
            assert_eq!(map_invocation_error(&input), expected, "{input:?}");
        };
        check(
            rpc(420, "FLOOD_WAIT", Some(31)),
            TelegramError::FloodWait { seconds: 31 },
        );
        check(
            rpc(420, "FLOOD_PREMIUM_WAIT", Some(5)),
            TelegramError::FloodWait { seconds: 5 },
        );
        check(
            rpc(420, "FLOOD_WAIT", None),
            TelegramError::FloodWait { seconds: 1 },
        );
        check(
            rpc(420, "SLOWMODE_WAIT", Some(10)),
            TelegramError::SlowMode { seconds: 10 },
        );
        check(rpc(400, "PEER_FLOOD", None), TelegramError::PeerFlood);
        check(
            rpc(403, "USER_PRIVACY_RESTRICTED", None),
            TelegramError::PrivacyRestricted,
        );
        check(
            rpc(403, "PRIVACY_PREMIUM_REQUIRED", None),
            TelegramError::PrivacyRestricted,
        );
        check(
            rpc(400, "USER_IS_BLOCKED", None),
            TelegramError::PrivacyRestricted,
        );
        check(
            rpc(400, "USER_NOT_MUTUAL_CONTACT", None),
            TelegramError::PrivacyRestricted,
        );
        check(rpc(400, "USER_RESTRICTED", None), TelegramError::PeerFlood);
        check(
            rpc(400, "CHAT_ABOUT_TOO_LONG", None),
            TelegramError::Other {
                message: "400 CHAT_ABOUT_TOO_LONG".into(),
            },
        );
        check(
            rpc(400, "USERNAME_NOT_OCCUPIED", None),
            TelegramError::UsernameNotFound,
        );
        check(
            rpc(400, "USERNAME_INVALID", None),
            TelegramError::UsernameNotFound,
        );
        check(
            rpc(401, "USER_DEACTIVATED", None),
            dead(DeadReason::Deactivated),
        );
        check(
            rpc(401, "USER_DEACTIVATED_BAN", None),
            dead(DeadReason::Banned),
        );
        check(
            rpc(401, "AUTH_KEY_UNREGISTERED", None),
            dead(DeadReason::Unregistered),
        );
        check(rpc(401, "SESSION_REVOKED", None), dead(DeadReason::Revoked));
        check(rpc(401, "SESSION_EXPIRED", None), dead(DeadReason::Revoked));
        check(
            rpc(406, "AUTH_KEY_DUPLICATED", None),
            dead(DeadReason::AuthKeyDuplicated),
        );
        check(
            rpc(420, "FROZEN_METHOD_INVALID", None),
            dead(DeadReason::Frozen),
        );
        check(
            rpc(400, "FROZEN_PARTICIPANT_MISSING", None),
            dead(DeadReason::Frozen),
        );
        check(rpc(400, "TOPIC_DELETED", None), TelegramError::TopicDeleted);
        check(
            rpc(400, "MESSAGE_THREAD_INVALID", None),
            TelegramError::TopicDeleted,
        );
        check(
            rpc(403, "CHAT_WRITE_FORBIDDEN", None),
            forbidden("CHAT_WRITE_FORBIDDEN"),
        );
        check(
            rpc(406, "CHANNEL_PRIVATE", None),
            forbidden("CHANNEL_PRIVATE"),
        );
        check(
            rpc(400, "USER_BANNED_IN_CHANNEL", None),
            forbidden("USER_BANNED_IN_CHANNEL"),
        );
        check(
            rpc(400, "CHAT_ADMIN_REQUIRED", None),
            forbidden("CHAT_ADMIN_REQUIRED"),
        );
        check(
            rpc(400, "INVITE_HASH_EXPIRED", None),
            TelegramError::InvalidInvite,
        );
        check(
            rpc(400, "INVITE_HASH_INVALID", None),
            TelegramError::InvalidInvite,
        );
        check(
            rpc(500, "RANDOM_ID_DUPLICATE", None),
            TelegramError::RandomIdDuplicate,
        );
        check(
            InvocationError::Io(io::Error::from(io::ErrorKind::ConnectionRefused)),
            TelegramError::Network {
                message: "request error: connection refused".into(),
            },
        );
        check(
            InvocationError::Dropped("SenderPoolRunner was dropped at send"),
            TelegramError::Network {
                message: "request error: dropped: SenderPoolRunner was dropped at send".into(),
            },
        );
        check(
            rpc(400, "MESSAGE_EMPTY", None),
            TelegramError::Other {
                message: "400 MESSAGE_EMPTY".into(),
            },
        );
        check(
            InvocationError::InvalidDc,
            TelegramError::Other {
                message: "request error: invalid dc".into(),
            },
        );
    }

    /// What the engine does after a send failed this way, in the words of the table.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Reaction {
        /// Recorded as sent.
        Delivered,
        /// Ends at once for the recipient (or the message): no other account is tried.
        EndsForRecipient,
        /// Ends: the chat refuses.
        EndsForChat,
        /// Stays with this account and its random_id: it may have been delivered.
        InDoubtOnThisAccount,
        /// Another account takes it now; this one is left as it is.
        OtherAccountNow,
        /// Another account takes it now; this one is dead.
        AccountDeadOtherAccountNow,
    }

    /// The engine's judgement of one failed non-sticky send from agent 0 of two ready agents:
    /// the scheduling policy's outcome, then the outbox's verdict.
    fn reaction(error: TelegramError) -> Reaction {
        use jobbot_core::config::Pacing;
        use jobbot_core::ids::SessionName;
        use jobbot_core::outbox::{Retry, Verdict, judge_attempt};
        use jobbot_core::scheduling::{
            AgentScheduler, ConnectionState, Decision, Millis, PoolId, Request, SchedulerSettings,
            SendOutcome,
        };
        use jobbot_core::store::{Holdup, OutboxEnd, OutboxFailure};
        use jobbot_core::telegram::RandomId;
        use rand::SeedableRng;

        let mut scheduler = AgentScheduler::new(SchedulerSettings::default());
        let agents: Vec<_> = (0..2)
            .map(|index| {
                let session = SessionName::parse(&format!("agent_{index}")).unwrap();
                let agent = scheduler.add_agent(session, Pacing::default(), Millis::ZERO);
                scheduler.set_connection_state(agent, ConnectionState::Ready);
                agent
            })
            .collect();
        scheduler.set_pool(PoolId(0), &agents).unwrap();
        let request = Request::first_contact();
        let now = Millis(1_000);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let Decision::Send(agent) = scheduler.pick(PoolId(0), &request, now, &mut rng) else {
            panic!("no agent picked");
        };
        let action = scheduler.on_outcome(agent, &request, SendOutcome::Failed(error.clone()), now);
        let session = scheduler.agent(agent).unwrap().session().clone();
        let dead = matches!(
            scheduler.agent(agent).unwrap().connection(),
            ConnectionState::Dead { .. }
        );
        match judge_attempt(&session, RandomId(7), Err(error), action, None) {
            Verdict::Sent { .. } => Reaction::Delivered,
            Verdict::Retry {
                holdup: Holdup::InDoubt { .. },
                retry: Retry::SameAgentAfterReconnect,
            } => Reaction::InDoubtOnThisAccount,
            Verdict::Retry {
                holdup: Holdup::Refused { .. },
                retry: Retry::Now,
            } if dead => Reaction::AccountDeadOtherAccountNow,
            Verdict::Retry {
                holdup: Holdup::Refused { .. },
                retry: Retry::Now,
            } => Reaction::OtherAccountNow,
            Verdict::End(OutboxEnd::Failed {
                failure: OutboxFailure::Recipient { .. },
            }) => Reaction::EndsForRecipient,
            Verdict::End(OutboxEnd::Failed {
                failure: OutboxFailure::GaveUp { .. },
            }) => Reaction::EndsForChat,
            other => panic!("unexpected verdict {other:?}"),
        }
    }

    /// Every error the issue lists, as Telegram writes it on the wire and grammers parses it
    /// (`RpcError::from` the TL `rpc_error`), to jobbot's type, its scope, and what the engine
    /// does with a send that failed with it.
    #[test]
    fn telegram_errors_are_classified_and_judged() {
        use Reaction::*;
        use grammers_tl_types as tl;
        use jobbot_core::telegram::ErrorScope;

        let table: &[(i32, &str, TelegramError, ErrorScope, Reaction)] = &[
            (
                500,
                "RANDOM_ID_DUPLICATE",
                TelegramError::RandomIdDuplicate,
                ErrorScope::Delivered,
                Delivered,
            ),
            (
                403,
                "ALLOW_PAYMENT_REQUIRED_250",
                TelegramError::PaymentRequired { stars: 250 },
                ErrorScope::Recipient,
                EndsForRecipient,
            ),
            (
                400,
                "PEER_ID_INVALID",
                TelegramError::PeerInvalid,
                ErrorScope::Recipient,
                EndsForRecipient,
            ),
            (
                400,
                "MSG_ID_INVALID",
                TelegramError::PeerInvalid,
                ErrorScope::Recipient,
                EndsForRecipient,
            ),
            (
                400,
                "INPUT_USER_DEACTIVATED",
                TelegramError::RecipientDeactivated,
                ErrorScope::Recipient,
                EndsForRecipient,
            ),
            (
                400,
                "USER_IS_BOT",
                TelegramError::NotAUser,
                ErrorScope::Recipient,
                EndsForRecipient,
            ),
            (
                403,
                "USER_PRIVACY_RESTRICTED",
                TelegramError::PrivacyRestricted,
                ErrorScope::Recipient,
                EndsForRecipient,
            ),
            (
                400,
                "MESSAGE_TOO_LONG",
                TelegramError::MessageTooLong,
                ErrorScope::Recipient,
                EndsForRecipient,
            ),
            (
                400,
                "MEDIA_CAPTION_TOO_LONG",
                TelegramError::MessageTooLong,
                ErrorScope::Recipient,
                EndsForRecipient,
            ),
            (
                400,
                "MEDIA_EMPTY",
                TelegramError::MediaEmpty,
                ErrorScope::Recipient,
                EndsForRecipient,
            ),
            (
                400,
                "FILE_REFERENCE_EXPIRED",
                TelegramError::FileReferenceExpired,
                ErrorScope::Recipient,
                EndsForRecipient,
            ),
            // The n-th file of a request (core.telegram.org/api/file_reference: "FILE_REFERENCE_%d_EXPIRED");
            // grammers moves the number into `value`.
            (
                400,
                "FILE_REFERENCE_0_EXPIRED",
                TelegramError::FileReferenceExpired,
                ErrorScope::Recipient,
                EndsForRecipient,
            ),
            (
                400,
                "FILE_REFERENCE_INVALID",
                TelegramError::FileReferenceExpired,
                ErrorScope::Recipient,
                EndsForRecipient,
            ),
            (
                400,
                "VOICE_MESSAGES_FORBIDDEN",
                TelegramError::MediaForbidden {
                    code: "VOICE_MESSAGES_FORBIDDEN".into(),
                },
                ErrorScope::Recipient,
                EndsForRecipient,
            ),
            (
                403,
                "CHAT_SEND_PHOTOS_FORBIDDEN",
                TelegramError::MediaForbidden {
                    code: "CHAT_SEND_PHOTOS_FORBIDDEN".into(),
                },
                ErrorScope::Recipient,
                EndsForRecipient,
            ),
            (
                403,
                "CHAT_SEND_PLAIN_FORBIDDEN",
                TelegramError::ChatForbidden {
                    code: "CHAT_SEND_PLAIN_FORBIDDEN".into(),
                },
                ErrorScope::Chat,
                EndsForChat,
            ),
            (
                400,
                "USER_CHANNELS_TOO_MUCH",
                TelegramError::UserInTooManyChannels,
                ErrorScope::Recipient,
                EndsForRecipient,
            ),
            (
                400,
                "YOU_BLOCKED_USER",
                TelegramError::YouBlockedUser,
                ErrorScope::Account,
                OtherAccountNow,
            ),
            (
                400,
                "CHANNELS_TOO_MUCH",
                TelegramError::TooManyChannels,
                ErrorScope::Account,
                OtherAccountNow,
            ),
            (
                420,
                "FLOOD_WAIT_31",
                TelegramError::FloodWait { seconds: 31 },
                ErrorScope::Account,
                OtherAccountNow,
            ),
            (
                400,
                "PEER_FLOOD",
                TelegramError::PeerFlood,
                ErrorScope::Account,
                OtherAccountNow,
            ),
            (
                400,
                "TOPIC_CLOSED",
                TelegramError::TopicClosed,
                ErrorScope::Chat,
                EndsForRecipient,
            ),
            (
                403,
                "CHAT_SEND_PLAIN_FORBIDDEN",
                forbidden("CHAT_SEND_PLAIN_FORBIDDEN"),
                ErrorScope::Chat,
                EndsForChat,
            ),
            (
                400,
                "CHAT_RESTRICTED",
                forbidden("CHAT_RESTRICTED"),
                ErrorScope::Chat,
                EndsForChat,
            ),
            (
                400,
                "CHANNEL_INVALID",
                forbidden("CHANNEL_INVALID"),
                ErrorScope::Chat,
                EndsForChat,
            ),
            (
                400,
                "INVITE_REQUEST_SENT",
                TelegramError::JoinRequestSent,
                ErrorScope::Chat,
                EndsForChat,
            ),
            (
                500,
                "INTERNAL",
                TelegramError::ServerError { code: 500 },
                ErrorScope::Temporary,
                InDoubtOnThisAccount,
            ),
            (
                500,
                "INTERDC_2_CALL_ERROR",
                TelegramError::ServerError { code: 500 },
                ErrorScope::Temporary,
                InDoubtOnThisAccount,
            ),
            (
                -503,
                "Timeout",
                TelegramError::ServerError { code: -503 },
                ErrorScope::Temporary,
                InDoubtOnThisAccount,
            ),
            (
                303,
                "NETWORK_MIGRATE_4",
                TelegramError::WrongDc { dc: 4 },
                ErrorScope::Temporary,
                OtherAccountNow,
            ),
            (
                303,
                "USER_MIGRATE_2",
                TelegramError::WrongDc { dc: 2 },
                ErrorScope::Temporary,
                OtherAccountNow,
            ),
            (
                401,
                "AUTH_KEY_INVALID",
                dead(DeadReason::AuthKeyInvalid),
                ErrorScope::Account,
                AccountDeadOtherAccountNow,
            ),
            (
                401,
                "AUTH_KEY_UNREGISTERED",
                dead(DeadReason::Unregistered),
                ErrorScope::Account,
                AccountDeadOtherAccountNow,
            ),
            (
                401,
                "USER_DEACTIVATED_BAN",
                dead(DeadReason::Banned),
                ErrorScope::Account,
                AccountDeadOtherAccountNow,
            ),
        ];
        for (code, message, expected, scope, judged) in table {
            let error = InvocationError::Rpc(RpcError::from(tl::types::RpcError {
                error_code: *code,
                error_message: (*message).into(),
            }));
            let mapped = map_invocation_error(&error);
            assert_eq!(&mapped, expected, "{message}");
            assert_eq!(mapped.scope(), *scope, "{message}");
            assert_eq!(reaction(mapped), *judged, "{message}");
        }
        // A dropped connection is not Telegram's answer: the send may have gone out.
        assert_eq!(
            reaction(map_invocation_error(&InvocationError::Io(io::Error::from(
                io::ErrorKind::ConnectionReset
            )))),
            InDoubtOnThisAccount
        );
    }

    #[test]
    fn login_errors_from_the_wire() {
        use grammers_tl_types as tl;
        for (code, message, expected) in [
            (400, "PHONE_NUMBER_FLOOD", LoginError::PhoneNumberFlood),
            (400, "PHONE_PASSWORD_FLOOD", LoginError::PasswordFlood),
            (400, "SRP_ID_INVALID", LoginError::PasswordCheckExpired),
            (
                401,
                "AUTH_KEY_INVALID",
                LoginError::AccountDead {
                    reason: DeadReason::AuthKeyInvalid,
                },
            ),
        ] {
            let error = InvocationError::Rpc(RpcError::from(tl::types::RpcError {
                error_code: code,
                error_message: message.into(),
            }));
            assert_eq!(map_login_error(&error), expected, "{message}");
        }
    }

    #[test]
    fn invocation_errors_map_to_login_errors() {
        let check = |input: InvocationError, expected: LoginError| {
            assert_eq!(map_login_error(&input), expected, "{input:?}");
        };
        check(
            rpc(400, "PHONE_NUMBER_INVALID", None),
            LoginError::InvalidPhone,
        );
        check(
            rpc(400, "PHONE_NUMBER_BANNED", None),
            LoginError::PhoneBanned,
        );
        check(
            rpc(400, "PHONE_NUMBER_UNOCCUPIED", None),
            LoginError::SignUpRequired,
        );
        check(
            rpc(400, "PHONE_CODE_INVALID", None),
            LoginError::InvalidCode,
        );
        check(rpc(400, "PHONE_CODE_EMPTY", None), LoginError::InvalidCode);
        check(
            rpc(400, "PHONE_CODE_EXPIRED", None),
            LoginError::CodeExpired,
        );
        check(
            rpc(400, "PASSWORD_HASH_INVALID", None),
            LoginError::InvalidPassword,
        );
        check(
            rpc(400, "SEND_CODE_UNAVAILABLE", None),
            LoginError::ResendUnavailable,
        );
        check(
            rpc(420, "FLOOD_WAIT", Some(300)),
            LoginError::FloodWait { seconds: 300 },
        );
        check(
            rpc(420, "FLOOD_PREMIUM_WAIT", Some(7)),
            LoginError::FloodWait { seconds: 7 },
        );
        check(
            rpc(401, "USER_DEACTIVATED_BAN", None),
            LoginError::AccountDead {
                reason: DeadReason::Banned,
            },
        );
        check(
            InvocationError::Io(io::Error::from(io::ErrorKind::ConnectionRefused)),
            LoginError::Network {
                message: "request error: connection refused".into(),
            },
        );
        check(
            rpc(400, "API_ID_INVALID", None),
            LoginError::Other {
                message: "400 API_ID_INVALID".into(),
            },
        );
    }
}
