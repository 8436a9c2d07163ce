//! The fate of an outbox message after each attempt, as pure decisions: what the dispatcher
//! records and does next, given the attempt's result and what the scheduling policy said.
//!
//! The rules that keep a message from being lost or sent twice live here, with their tests:
//! - a delivery is recorded as sent, including `RANDOM_ID_DUPLICATE` (an earlier attempt with
//!   the same `random_id` is on its way), whose message id Telegram does not name;
//! - an attempt that may have been delivered (the connection dropped mid-send) stays with its
//!   agent and its `random_id`, however the policy would fail it over; if that account is gone
//!   (removed, removed from the channel, dead) the message ends in a state that says so;
//! - a refusal (flood wait, `PEER_FLOOD`, a dead session …) frees the message for other agents;
//! - a recipient-level refusal or the policy giving up ends the message with its typed reason.

use crate::ids::SessionName;
use crate::scheduling::{Millis, OutcomeAction};
use crate::store::{AccountGone, Holdup, InDoubt, OutboxEnd, OutboxFailure, Unavailable};
use crate::telegram::{RandomId, SentMessage, TelegramError};

/// What to do with a message after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Delivered; `message` is `None` when Telegram did not name it (`RANDOM_ID_DUPLICATE`).
    Sent { message: Option<SentMessage> },
    /// Still pending: record `holdup`, then retry as `retry` says.
    Retry { holdup: Holdup, retry: Retry },
    /// Ended without delivery.
    End(OutboxEnd),
}

/// When and where a pending message is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// At once, by whichever agent the policy picks (it avoids this one as its cooldowns say).
    Now,
    /// Not before `at` (a conversation's agent cooling down, a chat's slow mode).
    At(Millis),
    /// Only on the same agent, once it is connected again: the attempt may have been delivered,
    /// and only a repeat with the same `random_id` on the same account is safe.
    SameAgentAfterReconnect,
}

/// The verdict on one attempt on `agent` with `random_id`. `action` is what the policy said
/// ([`crate::scheduling::AgentScheduler::on_outcome`]); `agent_gone` says whether the account is
/// gone for this message (removed from the configuration or from the channel), which the policy
/// may not know in those words.
pub fn judge_attempt(
    agent: &SessionName,
    random_id: RandomId,
    result: Result<SentMessage, TelegramError>,
    action: OutcomeAction,
    agent_gone: Option<AccountGone>,
) -> Verdict {
    let error = match result {
        Ok(message) => {
            return Verdict::Sent {
                message: Some(message),
            };
        }
        Err(TelegramError::RandomIdDuplicate) => return Verdict::Sent { message: None },
        Err(error) => error,
    };
    if may_have_been_delivered(&error) {
        // Never moved to another account, whatever the policy says: the account that may have
        // sent it is the only one that can repeat it safely.
        return match agent_gone {
            Some(account) => Verdict::End(OutboxEnd::Failed {
                failure: OutboxFailure::InDoubtAccountGone {
                    agent: agent.clone(),
                    random_id,
                    account,
                },
            }),
            None => Verdict::Retry {
                holdup: Holdup::InDoubt {
                    agent: agent.clone(),
                    error,
                },
                retry: Retry::SameAgentAfterReconnect,
            },
        };
    }
    let refused = |error: TelegramError| Holdup::Refused {
        agent: agent.clone(),
        error,
    };
    match action {
        OutcomeAction::Done | OutcomeAction::RetryOtherAgent => Verdict::Retry {
            holdup: refused(error),
            retry: Retry::Now,
        },
        OutcomeAction::RetrySameAgentAfter { at } | OutcomeAction::RetryChatAfter { at } => {
            Verdict::Retry {
                holdup: refused(error),
                retry: Retry::At(at),
            }
        }
        // The policy says "in doubt" only for errors `may_have_been_delivered` already took.
        OutcomeAction::RetrySameAgentAfterReconnect => Verdict::Retry {
            holdup: Holdup::InDoubt {
                agent: agent.clone(),
                error,
            },
            retry: Retry::SameAgentAfterReconnect,
        },
        OutcomeAction::FailRecipient { error } => Verdict::End(OutboxEnd::Failed {
            failure: OutboxFailure::Recipient {
                agent: agent.clone(),
                error,
            },
        }),
        OutcomeAction::FailPermanently { reason } => Verdict::End(OutboxEnd::Failed {
            failure: OutboxFailure::GaveUp {
                agent: agent.clone(),
                reason,
            },
        }),
    }
}

/// Whether Telegram may have delivered a send that failed this way: when the connection
/// dropped before the answer came back, and when Telegram itself says it failed inside and does
/// not know (5xx, -503 `Timeout`, core.telegram.org/api/errors). Every other error is Telegram's
/// answer, and an answer that is an error means nothing was sent.
pub fn may_have_been_delivered(error: &TelegramError) -> bool {
    matches!(
        error,
        TelegramError::Network { .. } | TelegramError::ServerError { .. }
    )
}

/// The end of a message in doubt that no agent can take: its account is dead, removed, or no
/// longer one of the channel's agents. `None` while the account may come back (connecting,
/// paused by the operator).
pub fn in_doubt_stuck(in_doubt: &InDoubt, unavailable: &Unavailable) -> Option<OutboxEnd> {
    let account = match unavailable {
        Unavailable::StickyAgentDead { dead_reason, .. } => AccountGone::Dead {
            reason: *dead_reason,
        },
        Unavailable::StickyAgentRemoved { .. } => AccountGone::Removed,
        Unavailable::StickyAgentNotInPool { .. } => AccountGone::RemovedFromChannel,
        _ => return None,
    };
    Some(OutboxEnd::Failed {
        failure: OutboxFailure::InDoubtAccountGone {
            agent: in_doubt.agent.clone(),
            random_id: in_doubt.random_id,
            account,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ChatId;
    use crate::scheduling::FailureReason;
    use crate::telegram::DeadReason;

    fn agent() -> SessionName {
        SessionName::parse("agent_1").unwrap()
    }

    fn sent() -> SentMessage {
        SentMessage {
            chat: ChatId::user(5).unwrap(),
            message_id: 9,
        }
    }

    fn network() -> TelegramError {
        TelegramError::Network {
            message: "reset".into(),
        }
    }

    fn in_doubt_gone(account: AccountGone) -> Verdict {
        Verdict::End(OutboxEnd::Failed {
            failure: OutboxFailure::InDoubtAccountGone {
                agent: agent(),
                random_id: RandomId(77),
                account,
            },
        })
    }

    #[test]
    fn verdicts() {
        let check = |result: Result<SentMessage, TelegramError>,
                     action: OutcomeAction,
                     gone: Option<AccountGone>,
                     expected: Verdict| {
            assert_eq!(
                judge_attempt(&agent(), RandomId(77), result.clone(), action.clone(), gone),
                expected,
                "{result:?} {action:?} {gone:?}"
            );
        };
        let flood = TelegramError::FloodWait { seconds: 30 };
        check(
            Ok(sent()),
            OutcomeAction::Done,
            None,
            Verdict::Sent {
                message: Some(sent()),
            },
        );
        // RANDOM_ID_DUPLICATE is a delivery, even if the account is gone since.
        check(
            Err(TelegramError::RandomIdDuplicate),
            OutcomeAction::Done,
            Some(AccountGone::Removed),
            Verdict::Sent { message: None },
        );
        check(
            Err(network()),
            OutcomeAction::RetrySameAgentAfterReconnect,
            None,
            Verdict::Retry {
                holdup: Holdup::InDoubt {
                    agent: agent(),
                    error: network(),
                },
                retry: Retry::SameAgentAfterReconnect,
            },
        );
        // The policy fails a removed agent's load-balanced message over; a message in doubt
        // never moves.
        check(
            Err(network()),
            OutcomeAction::RetryOtherAgent,
            Some(AccountGone::Removed),
            in_doubt_gone(AccountGone::Removed),
        );
        check(
            Err(network()),
            OutcomeAction::FailPermanently {
                reason: FailureReason::StickyAgentRemoved,
            },
            Some(AccountGone::RemovedFromChannel),
            in_doubt_gone(AccountGone::RemovedFromChannel),
        );
        check(
            Err(flood.clone()),
            OutcomeAction::RetryOtherAgent,
            None,
            Verdict::Retry {
                holdup: Holdup::Refused {
                    agent: agent(),
                    error: flood.clone(),
                },
                retry: Retry::Now,
            },
        );
        check(
            Err(flood.clone()),
            OutcomeAction::RetrySameAgentAfter { at: Millis(5) },
            None,
            Verdict::Retry {
                holdup: Holdup::Refused {
                    agent: agent(),
                    error: flood.clone(),
                },
                retry: Retry::At(Millis(5)),
            },
        );
        // A refusal from an account removed meanwhile is still only a refusal.
        check(
            Err(flood.clone()),
            OutcomeAction::RetryOtherAgent,
            Some(AccountGone::Removed),
            Verdict::Retry {
                holdup: Holdup::Refused {
                    agent: agent(),
                    error: flood,
                },
                retry: Retry::Now,
            },
        );
        check(
            Err(TelegramError::PrivacyRestricted),
            OutcomeAction::FailRecipient {
                error: TelegramError::PrivacyRestricted,
            },
            None,
            Verdict::End(OutboxEnd::Failed {
                failure: OutboxFailure::Recipient {
                    agent: agent(),
                    error: TelegramError::PrivacyRestricted,
                },
            }),
        );
        let dead = FailureReason::StickyAgentDead {
            dead_reason: DeadReason::Banned,
        };
        check(
            Err(TelegramError::AccountDead {
                reason: DeadReason::Banned,
            }),
            OutcomeAction::FailPermanently {
                reason: dead.clone(),
            },
            None,
            Verdict::End(OutboxEnd::Failed {
                failure: OutboxFailure::GaveUp {
                    agent: agent(),
                    reason: dead,
                },
            }),
        );
    }

    #[test]
    fn a_message_in_doubt_ends_only_when_its_account_is_gone() {
        let in_doubt = InDoubt {
            agent: agent(),
            random_id: RandomId(77),
        };
        let check = |unavailable: Unavailable, expected: Option<AccountGone>| {
            assert_eq!(
                in_doubt_stuck(&in_doubt, &unavailable),
                expected.map(|account| match in_doubt_gone(account) {
                    Verdict::End(end) => end,
                    _ => unreachable!(),
                }),
                "{unavailable:?}"
            );
        };
        check(
            Unavailable::StickyAgentDead {
                agent: agent(),
                dead_reason: DeadReason::Revoked,
            },
            Some(AccountGone::Dead {
                reason: DeadReason::Revoked,
            }),
        );
        check(
            Unavailable::StickyAgentRemoved { agent: agent() },
            Some(AccountGone::Removed),
        );
        check(
            Unavailable::StickyAgentNotInPool { agent: agent() },
            Some(AccountGone::RemovedFromChannel),
        );
        check(Unavailable::StickyAgentPaused { agent: agent() }, None);
        check(
            Unavailable::StickyAgentNotConnected { agent: agent() },
            None,
        );
    }
}
