//! The rate-limited calls other than sends (issue #12 item 2): resolving a username, joining a
//! channel, creating a forum topic. Each account has one limiter, one flood wait and one learned
//! rate per class ([`CallClass`]), in the same [`AgentScheduler`](super::AgentScheduler) table as
//! its sends, because Telegram limits each method per account (core.telegram.org/api/errors, 420
//! FLOOD): a flood wait on `contacts.resolveUsername` says nothing about `messages.sendMessage`,
//! and must neither lower the send rate nor stop the account's sends.
//!
//! # Ceilings
//!
//! Sends have the operator's `agent_pacing` / per-agent `pacing` as their ceiling. The other
//! classes have the conservative defaults below. Telegram publishes none of these numbers, so
//! they are starting guesses that the learner ([`AdaptiveRate`]) lowers per account on the first
//! FloodWait, never figures copied from the simulator:
//!
//! * `contacts.resolveUsername`: 6 a minute, burst 3 — the spacing jobbot's monitor used before
//!   (one resolve per 10 s). Telethon's `get_entity` docstring says flood waits start "around
//!   50 usernames in a short period of time", and the telethon-floodgate README reports "160+
//!   auth.resolveUsername calls in seconds escalated into 15–18 hour bans"; 6 a minute in bursts
//!   of 3 stays far under both.
//! * channel joins: 3 per 5 minutes (0.6 a minute), burst 3 — telethon-floodgate's
//!   `channel_lifecycle` gate, set by the same team after their incidents.
//! * `messages.createForumTopic`: 2 a minute, burst 3 — no published or reported figure; jobbot
//!   creates one topic per new contact, and new contacts come at the first-message rate (tens a
//!   day per account), so this leaves room while staying well under the send rate.
//! * `channels.createChannel`: 2 per 10 minutes (0.2 a minute), burst 2 — no published figure;
//!   users report flood waits after creating a handful of chats in a row ("A wait of X seconds is
//!   required (caused by channels.CreateChannel)") and `CHANNELS_TOO_MUCH` at the account's chat
//!   limit. jobbot creates chats only in the one-click setup, two at a time (the output channel
//!   and the CRM group), so the burst is two and the pace is slow. Inviting members
//!   (`channels.inviteToChannel`) is paced as a join: it adds members as joining does.

use serde::{Deserialize, Serialize};

use super::{AdaptiveRate, CallClass, Gcra, Millis, RateCeiling};

/// The default ceiling of a class other than [`CallClass::SendMessage`] (whose ceiling is the
/// configured pacing); see the module documentation for where each number comes from.
pub fn default_call_ceiling(class: CallClass) -> Option<RateCeiling> {
    match class {
        CallClass::SendMessage => None,
        CallClass::ResolveUsername => Some(RateCeiling::per_minute(6, 3)),
        CallClass::JoinChannel => Some(RateCeiling {
            milli_per_minute: 600,
            burst: 3,
        }),
        CallClass::CreateForumTopic => Some(RateCeiling::per_minute(2, 3)),
        CallClass::CreateChannel => Some(RateCeiling {
            milli_per_minute: 200,
            burst: 2,
        }),
    }
}

/// The classes with a limiter of their own beside the send limiter, in index order.
pub(super) const OTHER_CLASSES: [CallClass; 4] = [
    CallClass::ResolveUsername,
    CallClass::JoinChannel,
    CallClass::CreateForumTopic,
    CallClass::CreateChannel,
];

/// The index of a class in [`OTHER_CLASSES`]; `None` for sends.
pub(super) fn other_index(class: CallClass) -> Option<usize> {
    OTHER_CLASSES.iter().position(|known| *known == class)
}

/// The learned rates of the classes other than sends, as stored with
/// [`LearnedLimits`](super::LearnedLimits). `None`: nothing stored for that class (a row written
/// before these were learned); it starts at its ceiling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearnedCalls {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve_username: Option<AdaptiveRate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_channel: Option<AdaptiveRate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_forum_topic: Option<AdaptiveRate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_channel: Option<AdaptiveRate>,
}

impl LearnedCalls {
    /// Every class at its default ceiling.
    pub fn new(now: Millis) -> Self {
        let mut calls = Self::default();
        for class in OTHER_CLASSES {
            if let (Some(ceiling), Some(slot)) = (default_call_ceiling(class), calls.slot(class)) {
                *slot = Some(AdaptiveRate::new(ceiling, now));
            }
        }
        calls
    }

    /// Every learned rate passed through `f`.
    pub(super) fn map_rates(self, f: impl Fn(AdaptiveRate) -> AdaptiveRate) -> Self {
        Self {
            resolve_username: self.resolve_username.map(&f),
            join_channel: self.join_channel.map(&f),
            create_forum_topic: self.create_forum_topic.map(&f),
            create_channel: self.create_channel.map(&f),
        }
    }

    pub fn get(&self, class: CallClass) -> Option<&AdaptiveRate> {
        match class {
            CallClass::SendMessage => None,
            CallClass::ResolveUsername => self.resolve_username.as_ref(),
            CallClass::JoinChannel => self.join_channel.as_ref(),
            CallClass::CreateForumTopic => self.create_forum_topic.as_ref(),
            CallClass::CreateChannel => self.create_channel.as_ref(),
        }
    }

    /// The rate of `class`, started at its ceiling if none is known; `None` for sends (their rate
    /// is [`LearnedLimits::send_message`](super::LearnedLimits::send_message)).
    pub(super) fn rate_mut(&mut self, class: CallClass, now: Millis) -> Option<&mut AdaptiveRate> {
        let ceiling = default_call_ceiling(class)?;
        let slot = self.slot(class)?;
        Some(slot.get_or_insert_with(|| AdaptiveRate::new(ceiling, now)))
    }

    fn slot(&mut self, class: CallClass) -> Option<&mut Option<AdaptiveRate>> {
        match class {
            CallClass::SendMessage => None,
            CallClass::ResolveUsername => Some(&mut self.resolve_username),
            CallClass::JoinChannel => Some(&mut self.join_channel),
            CallClass::CreateForumTopic => Some(&mut self.create_forum_topic),
            CallClass::CreateChannel => Some(&mut self.create_channel),
        }
    }

    /// What an earlier run stored, re-bounded by today's ceilings; classes it did not store start
    /// at their ceiling.
    pub(super) fn restored(self, now: Millis, since_stored_ms: Option<u64>) -> Self {
        let mut restored = Self::default();
        for class in OTHER_CLASSES {
            let rate = match (self.get(class), default_call_ceiling(class)) {
                (Some(rate), Some(ceiling)) => rate.restored(ceiling, now, since_stored_ms),
                (None, Some(ceiling)) => AdaptiveRate::new(ceiling, now),
                (_, None) => continue,
            };
            if let Some(slot) = restored.slot(class) {
                *slot = Some(rate);
            }
        }
        restored
    }
}

/// One account's limiter for one class other than sends. The learned rate lives in the account's
/// [`LearnedLimits`](super::LearnedLimits) (so it is stored with the rest); this paces at it.
#[derive(Debug, Clone, Copy)]
pub(super) struct CallLimiter {
    pub gcra: Gcra,
    pub flood_wait_until: Millis,
    /// Calls reserved at pace whose outcome is still due (see `AgentScheduler::pick`).
    pub at_pace_in_flight: u32,
}

impl CallLimiter {
    pub fn new(rate: &AdaptiveRate) -> Self {
        Self {
            gcra: Gcra::with_interval_ms(rate.emission_interval_ms(), rate.burst()),
            flood_wait_until: Millis::ZERO,
            at_pace_in_flight: 0,
        }
    }

    /// The first instant a call is allowed by this limiter's time-based limits.
    pub fn allowed_from(&self) -> Millis {
        self.flood_wait_until.max(self.gcra.earliest())
    }

    /// Takes a permit at `now` (which the caller checked conforms).
    pub fn take(&mut self, now: Millis) {
        if now.0 < self.gcra.earliest().0 + self.gcra.emission_interval_ms() {
            self.at_pace_in_flight += 1;
        }
        self.gcra.take(now);
    }

    /// Consumes one reservation's "at pace" mark, saying whether it had one.
    pub fn settle(&mut self) -> bool {
        let at_pace = self.at_pace_in_flight > 0;
        self.at_pace_in_flight = self.at_pace_in_flight.saturating_sub(1);
        at_pace
    }

    pub fn repace(&mut self, rate: &AdaptiveRate, now: Millis) {
        self.gcra = self
            .gcra
            .with_interval(rate.emission_interval_ms(), rate.burst(), now);
    }
}

/// The answer of [`AgentScheduler::reserve_call`](super::AgentScheduler::reserve_call).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "decision")]
pub enum CallDecision {
    /// Make the call now: the permit is taken. Report exactly one outcome for it
    /// ([`AgentScheduler::on_call_outcome`](super::AgentScheduler::on_call_outcome)).
    Go,
    /// Not before `at` (a pacing permit or a flood wait of this class).
    WaitUntil {
        at: Millis,
        reason: super::WaitReason,
    },
    /// The account is not connected (or is paused, dead, or not configured): no instant is known.
    NotReady,
}

/// One class's learned rate, for the status page and `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallStatus {
    pub class: CallClass,
    /// The rate the class is paced at now (thousandths of a call a minute).
    pub learned_milli_per_minute: u32,
    /// The ceiling it may grow back to.
    pub ceiling_milli_per_minute: u32,
    pub learned_burst: u32,
    /// Set while a flood wait of this class (with margin) runs.
    pub flood_wait_until: Option<Millis>,
}
