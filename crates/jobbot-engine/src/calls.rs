//! Rate-limited calls other than sends — resolving a username, joining a channel, creating a
//! forum topic — made with a permit of the account's scheduler, so that every call an account
//! makes is paced by the one table that holds its state (ARCHITECTURE.md, "An agent account is
//! one state"). The permit names its class when it is taken, and its outcome is reported as the
//! typed result of the call, so a flood wait is always attributed to the method that got it.

use std::sync::Arc;

use jobbot_core::ids::SessionName;
use jobbot_core::scheduling::{CallClass, Millis, SendOutcome};
use jobbot_core::telegram::{TelegramAccount, TelegramError};
use tokio::sync::mpsc;

use crate::clock::EngineClock;
use crate::dispatcher::Command;

/// One reserved call of one class on one account. Make the call with [`CallPermit::account`],
/// then hand its result to [`CallPermit::report`]; a permit dropped unreported tells the
/// scheduler the call was not made.
pub struct CallPermit {
    session: SessionName,
    class: CallClass,
    account: Arc<dyn TelegramAccount>,
    commands: mpsc::UnboundedSender<Command>,
    reported: bool,
    clock: EngineClock,
    /// When the permit was asked for: the call counts from then to its report.
    taken: Millis,
}

/// Why no permit was given now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallWait {
    /// The account's limiter for that class allows a call from this instant (a pacing permit,
    /// or the end of a flood wait on that method).
    Until(tokio::time::Instant),
    /// The account is not connected (or paused, dead, not configured): no instant is known.
    NotReady,
}

impl CallPermit {
    pub(crate) fn new(
        session: SessionName,
        class: CallClass,
        account: Arc<dyn TelegramAccount>,
        commands: mpsc::UnboundedSender<Command>,
        clock: EngineClock,
        taken: Millis,
    ) -> Self {
        Self {
            session,
            class,
            account,
            commands,
            reported: false,
            clock,
            taken,
        }
    }

    pub fn session(&self) -> &SessionName {
        &self.session
    }

    pub fn class(&self) -> CallClass {
        self.class
    }

    /// The account to make the call on.
    pub fn account(&self) -> &Arc<dyn TelegramAccount> {
        &self.account
    }

    /// Reports how the call went: a flood wait lowers this class's rate on this account, and
    /// clean calls let it grow back.
    pub fn report<T>(mut self, result: &Result<T, TelegramError>) {
        let outcome = match result {
            Ok(_) => SendOutcome::Sent,
            Err(error) => SendOutcome::Failed(error.clone()),
        };
        self.send(outcome);
    }

    fn send(&mut self, outcome: SendOutcome) {
        self.reported = true;
        let _ = self.commands.send(Command::CallOutcome {
            session: self.session.clone(),
            class: self.class,
            outcome,
            taken: self.taken,
            returned: self.clock.now(),
        });
    }
}

impl Drop for CallPermit {
    fn drop(&mut self) {
        if !self.reported {
            self.send(SendOutcome::NotAttempted);
        }
    }
}
