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
    match rpc.name.as_str() {
        "FLOOD_WAIT" | "FLOOD_PREMIUM_WAIT" => TelegramError::FloodWait {
            seconds: wait_seconds(rpc),
        },
        "SLOWMODE_WAIT" => TelegramError::SlowMode {
            seconds: wait_seconds(rpc),
        },
        "PEER_FLOOD" => TelegramError::PeerFlood,
        "USER_PRIVACY_RESTRICTED" | "PRIVACY_PREMIUM_REQUIRED" | "USER_IS_BLOCKED" => {
            TelegramError::PrivacyRestricted
        }
        "USERNAME_NOT_OCCUPIED" | "USERNAME_INVALID" => TelegramError::UsernameNotFound,
        "TOPIC_DELETED" | "MESSAGE_THREAD_INVALID" => TelegramError::TopicDeleted,
        "CHAT_WRITE_FORBIDDEN"
        | "CHANNEL_PRIVATE"
        | "USER_BANNED_IN_CHANNEL"
        | "CHAT_ADMIN_REQUIRED" => TelegramError::ChatForbidden {
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
        "PASSWORD_HASH_INVALID" => LoginError::InvalidPassword,
        "FLOOD_WAIT" | "FLOOD_PREMIUM_WAIT" => LoginError::FloodWait {
            seconds: wait_seconds(rpc),
        },
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
mod tests {
    use std::io;

    use super::*;

    fn rpc(code: i32, name: &str, value: Option<u32>) -> InvocationError {
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
