//! Adaptive per-account limits: the rate jobbot learns for each account and each limited Telegram
//! method from the only signals Telegram gives (FloodWait, `PEER_FLOOD`, and their absence).
//!
//! Telegram publishes no limits and they differ per account (age, premium, spam score) and over
//! time, so a configured rate is only a *ceiling* and a starting guess: an account whose real limit
//! is 5 % lower floods with every burst. This is the setting of congestion control with loss
//! signals, and the rule is borrowed from it:
//!
//! * **Multiplicative decrease on a violation** (Jacobson, *Congestion Avoidance and Control*,
//!   SIGCOMM 1988; Chiu & Jain, *Analysis of the Increase and Decrease Algorithms for Congestion
//!   Avoidance in Computer Networks*, 1989: additive increase with multiplicative decrease is the
//!   linear rule that converges to the efficient, fair point). A FloodWait at rate `R` sets the
//!   rate to `max(proven, DECREASE × R)`, where `DECREASE` is [`DECREASE_SHORT_WAIT`] for a wait of
//!   up to [`SHORT_WAIT_SECONDS`] and [`DECREASE_LONG_WAIT`] for a longer one: Telegram lengthens
//!   the wait on repeated violations, so a long wait says the account has been over its limit for a
//!   while and the step back must be larger. The allowed burst drops to 1, so an account never gets
//!   a full burst right after a flood wait.
//! * **Binary search between the proven and the flooded rate** (BIC-TCP, Xu, Harfoush & Rhee,
//!   INFOCOM 2004; CUBIC, Ha, Rhee & Xu 2008, keep the same `W_max` memory): the lowest rate that
//!   drew a FloodWait is remembered as `flooded`, the highest rate sustained cleanly as `proven`.
//!   After a step of sustained clean calls the rate moves half way to `flooded`; within
//!   [`CONVERGED_FRACTION`] of it, it stays. Plain AIMD would saw between half the limit and the
//!   limit (on average 75 % of it); the search settles within a few percent below it.
//! * **Careful increase when nothing is known above** (TCP congestion avoidance; BIC's "max
//!   probing"): with no remembered flood (at the start, or once [`FORGET_FLOOD_AFTER_MS`] passed
//!   since the last one, since limits change) the rate grows by [`INCREASE_FRACTION`] of itself
//!   per step, up to the ceiling. A step proportional to the rate probes an account limited to
//!   4/min as gently as one limited to 40/min. This is the periodic probe that finds a limit that
//!   rose; it costs about one flood wait per forget period.
//! * **A step needs evidence**: [`STEP_CALLS`] clean calls made *at pace* (the limiter was not
//!   full, so the calls actually ran at the learned rate: RFC 7661's congestion window validation
//!   grows only a window that is used) and [`STEP_MS`] since the last change. At a rate too low
//!   to make `STEP_CALLS` calls in `STEP_MS` (a resolve rate cut to its floor of 0.3 a minute
//!   would need 67 minutes of calls at pace) the step needs the calls the rate makes in
//!   `STEP_MS`, at least [`MIN_STEP_CALLS`]: TCP grows its window once per round trip whatever
//!   the window (RFC 5681 §3.1), not once per fixed number of packets, so a class flooded down
//!   to its floor climbs back in about ten minutes of use instead of hours. A rate a little above
//!   the true one empties Telegram's bucket only slowly, so the evidence period is long enough
//!   for a probe about 7 % too high to be caught before it is believed.
//! * **Bounds**: never above the configured ceiling, never below [`FLOOR_FRACTION`] of it (at least
//!   [`MIN_FLOOR_MILLI_PER_MINUTE`]): a run of flood waits must not silence an account for good.
//! * A FloodWait that arrives while the account is already in one answers a call picked before the
//!   first one was known; it is not a new violation (TCP's one reduction per window,
//!   RFC 6582). The caller says which it is. After a restart the end of a running wait is not
//!   known (only the learned rates are stored), so the first FloodWait of a class restored with
//!   a remembered flood, before any clean call, is taken as that flood's and cuts nothing;
//!   counted as new at every restart, it took a restarted account's resolve rate to the floor.
//!
//! `PEER_FLOOD` is a different signal: the account exceeded its rolling daily budget of first
//! messages to strangers (telegram.org/faq_spam), and is restricted for a while. [`AdaptiveBudget`]
//! reads it with the same care as a loss signal:
//!
//! * **The budget is what Telegram counted**: the first messages that *went through* in the last
//!   24 h (the chats the account actually started), not the attempts, some of which failed for
//!   other reasons (a flood wait on the resolve, a dropped connection) and started nothing. The
//!   budget drops to that number, and by [`BUDGET_DECREASE`] if the account was refused at or
//!   under the budget it had already learned (the budget fell). It grows back by one per
//!   [`BUDGET_INCREASE_AFTER_MS`] without a refusal, because a `PEER_FLOOD` costs a day or more of
//!   first messages.
//! * **One reduction per refusal** (RFC 6582, as for flood waits): a `PEER_FLOOD` that answers a
//!   call picked before the account's pause began is not new information; cutting the budget again
//!   for each of them would take it below what the account proved it can do.
//! * **A refusal before anything went through is the restriction still running, not a budget of
//!   zero**: the pause was shorter than Telegram's restriction ("longer for repeated offences",
//!   telegram.org/faq_spam). The budget stays, and the pause doubles, as a retransmission timer
//!   backs off when the timer expires with no answer (RFC 6298 §5.5, binary exponential back-off),
//!   up to [`MAX_PAUSE_DOUBLINGS`] doublings; the first first message that goes through again
//!   resets it (RFC 6298 §5.7: a new measurement replaces the backed-off value). A first refusal
//!   with nothing through in the last day (a restriction from before) changes the budget neither.
//!
//! Everything here is a pure function of the state, the outcome and `now`.

use serde::{Deserialize, Serialize};

use super::Millis;

/// Rates are kept in thousandths of a call per minute, so that 0.5/min and 19.5/min are exact.
pub const MILLI: u32 = 1_000;
/// Multiplicative decrease after a FloodWait of up to [`SHORT_WAIT_SECONDS`] (TCP's halving).
pub const DECREASE_SHORT_WAIT: (u32, u32) = (1, 2);
/// Multiplicative decrease after a longer FloodWait (an escalated penalty).
pub const DECREASE_LONG_WAIT: (u32, u32) = (1, 4);
/// Waits up to this long are a first violation's; longer ones are escalations or severe methods.
pub const SHORT_WAIT_SECONDS: u32 = 120;
/// A violation at or under the proven rate: that proof was wrong (the limit fell, or the
/// evidence was too short); step just under the flooded rate.
pub const DECREASE_UNDER_PROVEN: (u32, u32) = (9, 10);
/// The search stops when the rate is within this fraction of the flooded rate. A twelfth rather
/// than a sixteenth: each probe above the truth costs a flood wait that Telegram lengthens on
/// repetition, and the last, smallest probes gained less than their waits cost (`jobbot bench
/// pool`, five worlds: at a ceiling twice the truth 0.865–0.937 of the capacity instead of
/// 0.844–0.931, nowhere worse by more than 0.004).
pub const CONVERGED_FRACTION: (u32, u32) = (1, 12);
/// Increase per step, as a fraction of the current rate, when no flood is remembered.
pub const INCREASE_FRACTION: (u32, u32) = (1, 16);
/// Clean calls at pace needed for a step, at a rate that makes at least this many in
/// [`STEP_MS`].
pub const STEP_CALLS: u32 = 20;
/// Clean calls at pace needed for a step at a rate too low to make [`STEP_CALLS`] in [`STEP_MS`]:
/// a step then needs the calls the rate makes in `STEP_MS`, and at least this many.
pub const MIN_STEP_CALLS: u32 = 3;
/// Time since the last change needed for a step.
pub const STEP_MS: u64 = 5 * 60_000;
/// A remembered flood is forgotten after this long without another, so a limit that rose is found.
pub const FORGET_FLOOD_AFTER_MS: u64 = 120 * 60_000;
/// The floor, as a fraction of the ceiling.
pub const FLOOR_FRACTION: (u32, u32) = (1, 20);
/// The floor never goes under this (0.2 calls a minute).
pub const MIN_FLOOR_MILLI_PER_MINUTE: u32 = 200;
/// `PEER_FLOOD` at or under the learned budget multiplies it by this.
pub const BUDGET_DECREASE: (u32, u32) = (3, 4);
/// One more first message a day after this long without `PEER_FLOOD`.
pub const BUDGET_INCREASE_AFTER_MS: u64 = 7 * 24 * 3_600_000;
/// The `PEER_FLOOD` pause doubles at most this many times (the configured pause × 16).
pub const MAX_PAUSE_DOUBLINGS: u32 = 4;

/// The limited classes of call: one learned rate per account and class. Telegram's 420 FLOOD is
/// per method (core.telegram.org/api/errors), so the classes follow methods: a message to a known
/// peer, a first message to a stranger and a channel post are all `messages.sendMessage` and
/// share one bucket in Telegram, so they share [`CallClass::SendMessage`]; what sets first
/// messages apart is their daily budget ([`AdaptiveBudget`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallClass {
    SendMessage,
    ResolveUsername,
    JoinChannel,
    CreateForumTopic,
    /// `channels.createChannel` (the one-click setup's output channel and CRM group).
    CreateChannel,
}

impl CallClass {
    pub const ALL: [Self; 5] = [
        Self::SendMessage,
        Self::ResolveUsername,
        Self::JoinChannel,
        Self::CreateForumTopic,
        Self::CreateChannel,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SendMessage => "send_message",
            Self::ResolveUsername => "resolve_username",
            Self::JoinChannel => "join_channel",
            Self::CreateForumTopic => "create_forum_topic",
            Self::CreateChannel => "create_channel",
        }
    }
}

/// What the operator configured for a class: the ceiling and starting guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateCeiling {
    pub milli_per_minute: u32,
    pub burst: u32,
}

impl RateCeiling {
    pub fn per_minute(per_minute: u32, burst: u32) -> Self {
        Self {
            milli_per_minute: per_minute.max(1).saturating_mul(MILLI),
            burst: burst.max(1),
        }
    }

    pub fn floor(self) -> u32 {
        scale(self.milli_per_minute, FLOOR_FRACTION)
            .max(MIN_FLOOR_MILLI_PER_MINUTE)
            .min(self.milli_per_minute)
    }
}

/// The learned rate of one class of call on one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdaptiveRate {
    /// The rate calls are paced at now, thousandths per minute.
    milli_per_minute: u32,
    /// The burst allowed now: 1 right after a flood wait, back to the ceiling's step by step.
    burst: u32,
    /// The highest rate sustained cleanly (0: none yet).
    proven: u32,
    /// The lowest rate that drew a FloodWait and is still remembered.
    flooded: Option<u32>,
    #[serde(skip)]
    clean_calls: u32,
    /// Scheduler time of the last change (not stored: another process's epoch; a restart only
    /// delays the next step, which is the safe side).
    #[serde(skip)]
    changed_at: Millis,
    /// Scheduler time at which the remembered flood is forgotten.
    #[serde(skip)]
    forget_at: Millis,
    /// In a copy for the store ([`LearnedLimits::for_storage`]): how long the remembered flood
    /// had left to be remembered when the copy was made, so that a restart keeps the deadline
    /// (restarted with every restart, a process restarted more often than every
    /// [`FORGET_FLOOD_AFTER_MS`] never probed above an old flood again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    forget_in_ms: Option<u64>,
    /// Restored with a remembered flood and no outcome seen since: the first FloodWait may be
    /// the stored one still running (its end is not stored), so it is not a new violation.
    #[serde(skip)]
    restored_flooded: bool,
}

/// What a learner did with an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Unchanged,
    /// The rate or burst changed: re-pace with [`AdaptiveRate::milli_per_minute`] and
    /// [`AdaptiveRate::burst`].
    Changed,
}

impl AdaptiveRate {
    /// Starts at the ceiling: the operator's figure is the first guess.
    pub fn new(ceiling: RateCeiling, now: Millis) -> Self {
        Self {
            milli_per_minute: ceiling.milli_per_minute,
            burst: ceiling.burst,
            proven: 0,
            flooded: None,
            clean_calls: 0,
            changed_at: now,
            forget_at: now.after(FORGET_FLOOD_AFTER_MS),
            restored_flooded: false,
            forget_in_ms: None,
        }
    }

    pub fn milli_per_minute(&self) -> u32 {
        self.milli_per_minute
    }

    pub fn burst(&self) -> u32 {
        self.burst
    }

    pub fn flooded(&self) -> Option<u32> {
        self.flooded
    }

    pub fn proven(&self) -> u32 {
        self.proven
    }

    /// The steady spacing of calls at the learned rate, rounded up (never faster than learned).
    pub fn emission_interval_ms(&self) -> u64 {
        (60_000 * u64::from(MILLI)).div_ceil(u64::from(self.milli_per_minute.max(1)))
    }

    /// A state restored from the store, re-bounded by today's ceiling. `since_stored_ms` is the
    /// wall-clock time since the copy was made ([`LearnedLimits::for_storage`]); the remembered
    /// flood keeps its deadline across the restart. A copy stored without it (older rows)
    /// remembers its flood for a whole [`FORGET_FLOOD_AFTER_MS`] from `now`.
    pub fn restored(self, ceiling: RateCeiling, now: Millis, since_stored_ms: Option<u64>) -> Self {
        let forget_in = match (self.forget_in_ms, since_stored_ms) {
            (Some(left), Some(elapsed)) => left.saturating_sub(elapsed),
            _ => FORGET_FLOOD_AFTER_MS,
        };
        let mut restored = Self {
            clean_calls: 0,
            changed_at: now,
            forget_at: now.after(forget_in),
            restored_flooded: self.flooded.is_some(),
            forget_in_ms: None,
            ..self
        };
        restored.bound(ceiling);
        restored
    }

    /// A copy for the store at `now`: the flood's deadline as the time it has left.
    fn for_storage(self, now: Millis) -> Self {
        Self {
            forget_in_ms: self.flooded.map(|_| self.forget_at.0.saturating_sub(now.0)),
            ..self
        }
    }

    /// Applies a new ceiling (a configuration edit): the learned rate never exceeds it. A raised
    /// ceiling is not jumped to: the learner grows into it.
    pub fn set_ceiling(&mut self, ceiling: RateCeiling) -> Change {
        let before = *self;
        self.bound(ceiling);
        if before == *self {
            Change::Unchanged
        } else {
            Change::Changed
        }
    }

    /// A FloodWait of `wait_seconds` answered a call made at `now`. `violation` is false when the
    /// account was already in a flood wait (a call from before it was known): such answers are
    /// not new information.
    pub fn on_flood_wait(
        &mut self,
        ceiling: RateCeiling,
        wait_seconds: u32,
        violation: bool,
        now: Millis,
    ) -> Change {
        // The first answer after a restart with a flood remembered: the wait it reports may be
        // the one that flood started (the process died during it, and its end is not stored).
        // Counted again at every restart, it cut a rate that was already cut once per restart
        // down to the floor (RFC 6582: one reduction per loss event).
        if std::mem::take(&mut self.restored_flooded) || !violation {
            return Change::Unchanged;
        }
        let rate = self.milli_per_minute;
        let next = if self.proven >= rate {
            self.proven = scale(rate, DECREASE_UNDER_PROVEN);
            self.proven
        } else {
            let factor = if wait_seconds <= SHORT_WAIT_SECONDS {
                DECREASE_SHORT_WAIT
            } else {
                DECREASE_LONG_WAIT
            };
            scale(rate, factor).max(self.proven)
        };
        self.flooded = Some(rate);
        self.milli_per_minute = next;
        self.burst = 1;
        self.clean_calls = 0;
        self.changed_at = now;
        self.forget_at = now.after(FORGET_FLOOD_AFTER_MS);
        self.bound(ceiling);
        Change::Changed
    }

    /// A call went through at `now`. `at_pace` says the limiter was in use (not full) when it was
    /// picked, so the call is evidence about the learned rate.
    pub fn on_clean(&mut self, ceiling: RateCeiling, at_pace: bool, now: Millis) -> Change {
        self.restored_flooded = false;
        if at_pace {
            self.clean_calls = self.clean_calls.saturating_add(1);
        }
        if self.clean_calls < self.step_calls() || now.0.saturating_sub(self.changed_at.0) < STEP_MS
        {
            return Change::Unchanged;
        }
        let before = *self;
        self.clean_calls = 0;
        self.changed_at = now;
        self.proven = self.proven.max(self.milli_per_minute);
        if self.flooded.is_some() && now >= self.forget_at {
            self.flooded = None;
        }
        self.burst = (self.burst + 1).min(ceiling.burst);
        let rate = self.milli_per_minute;
        self.milli_per_minute = match self.flooded {
            Some(flooded) if flooded > rate => {
                let gap = flooded - rate;
                if gap <= scale(flooded, CONVERGED_FRACTION) {
                    rate
                } else {
                    rate + gap / 2
                }
            }
            Some(_) => rate,
            None => rate.saturating_add(scale(rate, INCREASE_FRACTION).max(1)),
        };
        self.bound(ceiling);
        if before.milli_per_minute == self.milli_per_minute && before.burst == self.burst {
            Change::Unchanged
        } else {
            Change::Changed
        }
    }

    /// The clean calls at pace a step needs: [`STEP_CALLS`], or the calls the learned rate makes
    /// in [`STEP_MS`] when that is fewer (at least [`MIN_STEP_CALLS`]).
    pub fn step_calls(&self) -> u32 {
        let in_step = u64::from(self.milli_per_minute) * STEP_MS / 60_000 / u64::from(MILLI);
        (in_step.min(u64::from(STEP_CALLS)) as u32).max(MIN_STEP_CALLS)
    }

    fn bound(&mut self, ceiling: RateCeiling) {
        self.milli_per_minute = self
            .milli_per_minute
            .clamp(ceiling.floor(), ceiling.milli_per_minute);
        self.proven = self.proven.min(ceiling.milli_per_minute);
        self.burst = self.burst.clamp(1, ceiling.burst);
    }
}

/// The learned daily budget of first messages to strangers of one account, and how long its
/// next `PEER_FLOOD` pause lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdaptiveBudget {
    per_day: u32,
    /// Refusals in a row with no first message through in between: the pause is the configured
    /// one doubled for each after the first.
    #[serde(default)]
    refusals_in_a_row: u32,
    /// Scheduler time at which the budget may grow by one: [`BUDGET_INCREASE_AFTER_MS`] after
    /// the last refusal or increase.
    #[serde(skip)]
    grow_at: Millis,
    /// In a copy for the store: how long `grow_at` was away when the copy was made, so that a
    /// restart keeps it (restarted with every restart, a budget cut by a `PEER_FLOOD` never grew
    /// back on a process restarted at least weekly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    grow_in_ms: Option<u64>,
}

impl AdaptiveBudget {
    /// Starts at the configured budget.
    pub fn new(configured: u32, now: Millis) -> Self {
        Self {
            per_day: configured,
            refusals_in_a_row: 0,
            grow_at: now.after(BUDGET_INCREASE_AFTER_MS),
            grow_in_ms: None,
        }
    }

    pub fn per_day(&self) -> u32 {
        self.per_day
    }

    /// How long to stop writing first after a refusal, given the configured pause.
    pub fn pause_ms(&self, configured_hours: u32) -> u64 {
        let doublings = self
            .refusals_in_a_row
            .saturating_sub(1)
            .min(MAX_PAUSE_DOUBLINGS);
        (u64::from(configured_hours) * 3_600_000) << doublings
    }

    /// A budget restored from the store; `since_stored_ms` as for [`AdaptiveRate::restored`].
    pub fn restored(self, configured: u32, now: Millis, since_stored_ms: Option<u64>) -> Self {
        let grow_in = match (self.grow_in_ms, since_stored_ms) {
            (Some(left), Some(elapsed)) => left.saturating_sub(elapsed),
            _ => BUDGET_INCREASE_AFTER_MS,
        };
        Self {
            per_day: self.per_day.min(configured),
            grow_at: now.after(grow_in),
            grow_in_ms: None,
            ..self
        }
    }

    fn for_storage(self, now: Millis) -> Self {
        Self {
            grow_in_ms: Some(self.grow_at.0.saturating_sub(now.0)),
            ..self
        }
    }

    pub fn set_ceiling(&mut self, configured: u32) {
        self.per_day = self.per_day.min(configured);
    }

    /// `PEER_FLOOD` answered a first message. `delivered_last_day` counts the account's first
    /// messages that went through in the last 24 h; `new_refusal` is false when the account was
    /// already paused for an earlier one (an answer to a call picked before it was known).
    pub fn on_peer_flood(
        &mut self,
        delivered_last_day: u32,
        new_refusal: bool,
        now: Millis,
    ) -> Change {
        if !new_refusal {
            return Change::Unchanged;
        }
        let before = *self;
        self.grow_at = now.after(BUDGET_INCREASE_AFTER_MS);
        self.refusals_in_a_row = self
            .refusals_in_a_row
            .saturating_add(1)
            .min(MAX_PAUSE_DOUBLINGS + 1);
        // With nothing through in the last day the refusal is a restriction that outlasted the
        // pause (or began elsewhere), not a budget of zero: the pause grows, the budget stays.
        if delivered_last_day > 0 {
            self.per_day = if delivered_last_day < self.per_day {
                delivered_last_day
            } else {
                scale(self.per_day, BUDGET_DECREASE)
            }
            .max(1)
            .min(self.per_day);
        }
        if before == *self {
            Change::Unchanged
        } else {
            Change::Changed
        }
    }

    /// Called on a first message that went through: the pause is back to the configured one,
    /// and after a quiet week the budget grows by one.
    pub fn on_clean(&mut self, configured: u32, now: Millis) -> Change {
        let mut change = Change::Unchanged;
        if self.refusals_in_a_row > 0 {
            self.refusals_in_a_row = 0;
            change = Change::Changed;
        }
        if self.per_day >= configured || now < self.grow_at {
            return change;
        }
        self.per_day += 1;
        self.grow_at = now.after(BUDGET_INCREASE_AFTER_MS);
        Change::Changed
    }
}

/// Everything learned about one account, as stored and restored across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearnedLimits {
    pub send_message: AdaptiveRate,
    pub first_messages: AdaptiveBudget,
    /// The rates of the other classes (resolves, joins, topic creation). Absent in rows stored
    /// before they were learned: those classes start at their ceiling.
    #[serde(default)]
    pub calls: super::LearnedCalls,
    /// In a copy for the store: the wall-clock instant (Unix milliseconds) it was made, to
    /// carry the learners' deadlines across a restart. Absent in rows stored before it was kept
    /// (their deadlines restart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_at_unix_ms: Option<i64>,
}

impl LearnedLimits {
    /// The copy to store at `now` (scheduler time), which is `now_unix_ms` on the wall clock:
    /// each deadline (a remembered flood's end, the next growth of the first-message budget) as
    /// the time it has left, so the next process keeps it.
    pub fn for_storage(self, now: Millis, now_unix_ms: i64) -> Self {
        Self {
            send_message: self.send_message.for_storage(now),
            first_messages: self.first_messages.for_storage(now),
            calls: self.calls.map_rates(|rate| rate.for_storage(now)),
            stored_at_unix_ms: Some(now_unix_ms),
        }
    }

    /// Wall-clock milliseconds since this copy was stored, if it says when (never negative: a
    /// clock set back counts as no time).
    pub fn since_stored_ms(&self, now_unix_ms: i64) -> Option<u64> {
        self.stored_at_unix_ms
            .map(|at| u64::try_from(now_unix_ms.saturating_sub(at)).unwrap_or(0))
    }
}

/// `value × numerator / denominator`, rounded down, without overflow.
fn scale(value: u32, (numerator, denominator): (u32, u32)) -> u32 {
    (u64::from(value) * u64::from(numerator) / u64::from(denominator.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const CEILING: RateCeiling = RateCeiling {
        milli_per_minute: 20_000,
        burst: 3,
    };

    /// Feeds `calls` clean at-pace calls spread over `minutes` from `start`.
    fn clean_for(rate: &mut AdaptiveRate, start: Millis, minutes: u64, calls: u64) -> Millis {
        let step = minutes * 60_000 / calls.max(1);
        let mut now = start;
        for _ in 0..calls {
            now = Millis(now.0 + step);
            rate.on_clean(CEILING, true, now);
        }
        now
    }

    #[test]
    fn a_flood_wait_halves_the_rate_and_allows_no_burst() {
        let mut rate = AdaptiveRate::new(CEILING, Millis(0));
        assert_eq!(rate.milli_per_minute(), 20_000);
        assert_eq!(rate.burst(), 3);
        assert_eq!(
            rate.on_flood_wait(CEILING, 30, true, Millis(1_000)),
            Change::Changed
        );
        assert_eq!(rate.milli_per_minute(), 10_000);
        assert_eq!(rate.burst(), 1, "no full burst after a flood wait");
        assert_eq!(rate.emission_interval_ms(), 6_000);
        assert_eq!(rate.flooded(), Some(20_000));
    }

    #[test]
    fn a_long_wait_cuts_deeper_and_an_answer_from_before_the_wait_changes_nothing() {
        let mut rate = AdaptiveRate::new(CEILING, Millis(0));
        assert_eq!(
            rate.on_flood_wait(CEILING, 30, false, Millis(1)),
            Change::Unchanged
        );
        assert_eq!(rate.milli_per_minute(), 20_000);
        rate.on_flood_wait(CEILING, 3_600, true, Millis(1));
        assert_eq!(rate.milli_per_minute(), 5_000);
    }

    #[test]
    fn the_search_climbs_half_way_to_the_flooded_rate_then_stays_just_under_it() {
        let mut rate = AdaptiveRate::new(CEILING, Millis(0));
        rate.on_flood_wait(CEILING, 30, true, Millis(0));
        let mut now = Millis(0);
        let mut seen = Vec::new();
        for _ in 0..6 {
            now = clean_for(&mut rate, now, 5, 20);
            seen.push(rate.milli_per_minute());
        }
        assert_eq!(seen, [15_000, 17_500, 18_750, 18_750, 18_750, 18_750]);
        assert_eq!(rate.burst(), 3, "the burst comes back one step at a time");
    }

    #[test]
    fn no_step_without_enough_calls_at_pace_or_enough_time() {
        let mut rate = AdaptiveRate::new(CEILING, Millis(0));
        rate.on_flood_wait(CEILING, 30, true, Millis(0));
        for minute in 1..=60 {
            rate.on_clean(CEILING, false, Millis(minute * 60_000));
        }
        assert_eq!(rate.milli_per_minute(), 10_000, "idle calls prove nothing");
        rate.on_flood_wait(CEILING, 30, true, Millis(3_600_000));
        assert_eq!(rate.milli_per_minute(), 5_000);
        for second in 1..=100 {
            rate.on_clean(CEILING, true, Millis(3_600_000 + second * 1_000));
        }
        assert_eq!(
            rate.milli_per_minute(),
            5_000,
            "too soon after the last change"
        );
    }

    #[test]
    fn a_flood_at_a_proven_rate_steps_just_under_it() {
        let mut rate = AdaptiveRate::new(CEILING, Millis(0));
        rate.on_flood_wait(CEILING, 30, true, Millis(0));
        let now = clean_for(&mut rate, Millis(0), 5, 20);
        assert_eq!((rate.milli_per_minute(), rate.proven()), (15_000, 10_000));
        let now = clean_for(&mut rate, now, 5, 20);
        assert_eq!(rate.proven(), 15_000);
        rate.on_flood_wait(CEILING, 30, true, now);
        assert_eq!(rate.milli_per_minute(), 15_000, "back to the proven rate");
        rate.on_flood_wait(CEILING, 60, true, now);
        assert_eq!(rate.milli_per_minute(), 13_500, "the proof was wrong");
    }

    #[test]
    fn the_flood_is_forgotten_after_a_long_clean_spell_and_the_rate_probes_upwards() {
        let mut rate = AdaptiveRate::new(CEILING, Millis(0));
        rate.on_flood_wait(CEILING, 30, true, Millis(0));
        let now = clean_for(&mut rate, Millis(0), 120, 480);
        assert_eq!(rate.flooded(), None);
        let now = clean_for(&mut rate, now, 60, 240);
        assert_eq!(rate.milli_per_minute(), 20_000, "back to the ceiling");
        clean_for(&mut rate, now, 60, 240);
        assert_eq!(rate.milli_per_minute(), 20_000, "never above it");
    }

    #[test]
    fn budget_learns_what_the_account_managed_and_grows_back_slowly() {
        let mut budget = AdaptiveBudget::new(40, Millis(0));
        assert_eq!(budget.on_peer_flood(25, true, Millis(0)), Change::Changed);
        assert_eq!(budget.per_day(), 25);
        assert_eq!(
            budget.on_peer_flood(25, false, Millis(0)),
            Change::Unchanged,
            "an answer to a call picked before the pause is no new refusal"
        );
        assert_eq!(budget.per_day(), 25);
        budget.on_peer_flood(25, true, Millis(1));
        assert_eq!(
            budget.per_day(),
            18,
            "refused within the learned budget: x3/4"
        );
        budget.on_peer_flood(1, true, Millis(2));
        assert_eq!(budget.per_day(), 1, "never below one");
        assert_eq!(
            budget.on_clean(40, Millis(2)),
            Change::Changed,
            "the refusals end"
        );
        assert_eq!(budget.on_clean(40, Millis(3)), Change::Unchanged);
        assert_eq!(
            budget.on_clean(40, Millis(2 + BUDGET_INCREASE_AFTER_MS)),
            Change::Changed
        );
        assert_eq!(budget.per_day(), 2);
    }

    #[test]
    fn a_refusal_before_anything_went_through_doubles_the_pause_and_keeps_the_budget() {
        let mut budget = AdaptiveBudget::new(40, Millis(0));
        assert_eq!(budget.pause_ms(24), 24 * 3_600_000);
        budget.on_peer_flood(25, true, Millis(0));
        assert_eq!(budget.pause_ms(24), 24 * 3_600_000, "a first refusal");
        let after_pause = Millis(24 * 3_600_000);
        assert_eq!(budget.on_peer_flood(0, true, after_pause), Change::Changed);
        assert_eq!(budget.refusals_in_a_row, 2);
        assert_eq!(budget.per_day(), 25, "not a budget of zero");
        assert_eq!(budget.pause_ms(24), 48 * 3_600_000);
        for _ in 0..10 {
            budget.on_peer_flood(0, true, after_pause);
        }
        assert_eq!(budget.pause_ms(24), 16 * 24 * 3_600_000, "bounded");
        assert_eq!(budget.on_clean(40, after_pause), Change::Changed);
        assert_eq!(
            budget.pause_ms(24),
            24 * 3_600_000,
            "reset by a first message through"
        );
        assert_eq!(budget.per_day(), 25);
    }

    #[test]
    fn restoring_keeps_what_was_learned_within_todays_ceiling() {
        let mut rate = AdaptiveRate::new(CEILING, Millis(0));
        rate.on_flood_wait(CEILING, 30, true, Millis(5));
        let json = serde_json::to_string(&rate).unwrap();
        let stored: AdaptiveRate = serde_json::from_str(&json).unwrap();
        let restored = stored.restored(CEILING, Millis(0), None);
        assert_eq!(restored.milli_per_minute(), 10_000);
        assert_eq!(restored.burst(), 1);
        let lower = stored.restored(RateCeiling::per_minute(6, 3), Millis(0), None);
        assert_eq!(lower.milli_per_minute(), 6_000);
    }

    /// Through the store and into a new process (whose scheduler time starts again at 0).
    fn restart(learned: LearnedLimits, stored_at: Millis, wall_since_stored: u64) -> LearnedLimits {
        const STORED_UNIX_MS: i64 = 1_800_000_000_000;
        let json = serde_json::to_string(&learned.for_storage(stored_at, STORED_UNIX_MS)).unwrap();
        let stored: LearnedLimits = serde_json::from_str(&json).unwrap();
        let since = stored.since_stored_ms(STORED_UNIX_MS + wall_since_stored as i64);
        assert_eq!(since, Some(wall_since_stored));
        LearnedLimits {
            send_message: stored.send_message.restored(CEILING, Millis(0), since),
            first_messages: stored.first_messages.restored(40, Millis(0), since),
            calls: stored.calls,
            stored_at_unix_ms: None,
        }
    }

    /// Restarts keep the deadlines: a flood is forgotten [`FORGET_FLOOD_AFTER_MS`] after it
    /// happened and a cut budget grows [`BUDGET_INCREASE_AFTER_MS`] after its cut, however often
    /// the process restarts in between (restarting them with each restart, a process restarted
    /// daily never grew a budget back).
    #[test]
    fn a_restart_keeps_the_deadlines_of_a_remembered_flood_and_of_the_budgets_growth() {
        let minute = 60_000;
        let day = 24 * 60 * minute;
        let mut learned = LearnedLimits {
            send_message: AdaptiveRate::new(CEILING, Millis(0)),
            first_messages: AdaptiveBudget::new(40, Millis(0)),
            calls: crate::scheduling::LearnedCalls::default(),
            stored_at_unix_ms: None,
        };
        learned
            .send_message
            .on_flood_wait(CEILING, 30, true, Millis(10 * minute));
        learned
            .first_messages
            .on_peer_flood(25, true, Millis(10 * minute));
        // Stored 30 minutes after the flood, restarted 60 minutes after that.
        let mut restarted = restart(learned, Millis(40 * minute), 60 * minute);
        assert_eq!(restarted.send_message.flooded(), Some(20_000));
        // 30 more minutes: 120 since the flood. The next step forgets it.
        clean_for(&mut restarted.send_message, Millis(0), 30, 60);
        assert_eq!(
            restarted.send_message.flooded(),
            None,
            "forgotten 120 minutes after the flood, restart included"
        );
        // The budget: restarted every day, it still grows a week after its cut.
        let mut budget = learned.first_messages;
        let mut stored_at = Millis(10 * minute);
        for _ in 0..6 {
            budget = restart(
                LearnedLimits {
                    first_messages: budget,
                    ..learned
                },
                stored_at,
                day,
            )
            .first_messages;
            budget.on_clean(40, Millis(0));
            assert_eq!(budget.per_day(), 25, "not a week yet");
            stored_at = Millis(0);
        }
        // Six restarts a day apart: the seventh day after the cut ends a day after the last.
        assert_eq!(budget.on_clean(40, Millis(day - 1)), Change::Unchanged);
        assert_eq!(budget.on_clean(40, Millis(day)), Change::Changed);
        assert_eq!(budget.per_day(), 26);
        // A row stored before the deadlines were kept restarts them, as it always did.
        let old: AdaptiveBudget = serde_json::from_str(r#"{"per_day":25}"#).unwrap();
        let mut old = old.restored(40, Millis(0), Some(3 * day));
        assert_eq!(
            old.on_clean(40, Millis(BUDGET_INCREASE_AFTER_MS - 1)),
            Change::Unchanged
        );
    }

    /// A simulated account with a true token bucket: the learner must end up delivering close to
    /// the true rate with few flood waits, whatever the true rate under the ceiling.
    fn learn_against(true_per_minute: u32, true_burst: u32, hours: u64) -> (u32, u32, u32) {
        let mut rate = AdaptiveRate::new(CEILING, Millis(0));
        let mut tokens = f64::from(true_burst);
        let mut last = 0u64;
        let mut blocked_until = 0u64;
        let mut next = 0u64;
        let mut floods_after_first_hour = 0;
        let mut sent_last_hour = 0;
        let end = hours * 3_600_000;
        while next < end {
            let now = next;
            if now < blocked_until {
                next = blocked_until + 1_000;
                continue;
            }
            tokens = (tokens + (now - last) as f64 * f64::from(true_per_minute) / 60_000.0)
                .min(f64::from(true_burst));
            last = now;
            if tokens >= 1.0 {
                tokens -= 1.0;
                rate.on_clean(CEILING, true, Millis(now));
                if now >= end - 3_600_000 {
                    sent_last_hour += 1;
                }
            } else {
                if now >= 3_600_000 {
                    floods_after_first_hour += 1;
                }
                blocked_until = now + 30_000;
                rate.on_flood_wait(CEILING, 30, true, Millis(now));
            }
            next = now + rate.emission_interval_ms();
        }
        (
            sent_last_hour,
            floods_after_first_hour,
            rate.milli_per_minute(),
        )
    }

    /// A class cut to its floor (a resolve rate of 0.3 a minute after three long waits) climbs
    /// back after the few calls its rate makes in a step's time, not after `STEP_CALLS` of them
    /// (67 minutes at that rate); at ordinary rates a step still needs `STEP_CALLS`.
    #[test]
    fn a_rate_at_its_floor_needs_only_the_calls_it_makes_in_a_step() {
        let ceiling = RateCeiling::per_minute(6, 3);
        let mut rate = AdaptiveRate::new(ceiling, Millis(0));
        rate.on_flood_wait(ceiling, 600, true, Millis(0));
        rate.on_flood_wait(ceiling, 1_200, true, Millis(1));
        rate.on_flood_wait(ceiling, 2_400, true, Millis(1));
        assert_eq!(rate.milli_per_minute(), ceiling.floor());
        assert_eq!(rate.milli_per_minute(), 300);
        assert_eq!(rate.step_calls(), MIN_STEP_CALLS);
        let interval = rate.emission_interval_ms();
        let mut now = Millis(1);
        for _ in 0..MIN_STEP_CALLS {
            now = Millis(now.0 + interval);
            rate.on_clean(ceiling, true, now);
        }
        assert!(rate.milli_per_minute() > 300, "{rate:?}");
        assert_eq!(
            AdaptiveRate::new(CEILING, Millis(0)).step_calls(),
            STEP_CALLS
        );
        let mut slow = AdaptiveRate::new(RateCeiling::per_minute(2, 1), Millis(0));
        assert_eq!(slow.step_calls(), 10);
        slow.on_clean(RateCeiling::per_minute(2, 1), true, Millis(STEP_MS));
        assert_eq!(slow.milli_per_minute(), 2_000, "one call is no evidence");
    }

    /// After a restart the first FloodWait may be the stored flood's wait still running: it cuts
    /// nothing, however many restarts; a later one, or one after a clean call, does.
    #[test]
    fn the_first_flood_wait_after_a_restart_is_not_counted_again() {
        let ceiling = RateCeiling::per_minute(6, 3);
        let mut rate = AdaptiveRate::new(ceiling, Millis(0));
        rate.on_flood_wait(ceiling, 600, true, Millis(0));
        assert_eq!(rate.milli_per_minute(), 1_500);
        for restart in 1..=30 {
            let stored: AdaptiveRate =
                serde_json::from_str(&serde_json::to_string(&rate).unwrap()).unwrap();
            rate = stored.restored(ceiling, Millis(0), None);
            assert_eq!(
                rate.on_flood_wait(ceiling, 600, true, Millis(1)),
                Change::Unchanged,
                "restart {restart}"
            );
        }
        assert_eq!(rate.milli_per_minute(), 1_500);
        assert_eq!(
            rate.on_flood_wait(ceiling, 600, true, Millis(2)),
            Change::Changed
        );
        let mut clean_first = rate.restored(ceiling, Millis(0), None);
        clean_first.on_clean(ceiling, true, Millis(1));
        assert_eq!(
            clean_first.on_flood_wait(ceiling, 600, true, Millis(2)),
            Change::Changed
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn the_learned_rate_stays_within_floor_and_ceiling(
            events in proptest::collection::vec((any::<bool>(), 0u32..100_000, any::<bool>()), 0..400),
        ) {
            let mut rate = AdaptiveRate::new(CEILING, Millis(0));
            let mut now = 0u64;
            for (flood, wait, at_pace) in events {
                now += 20_000;
                if flood {
                    rate.on_flood_wait(CEILING, wait, true, Millis(now));
                    prop_assert_eq!(rate.burst(), 1);
                } else {
                    rate.on_clean(CEILING, at_pace, Millis(now));
                }
                prop_assert!(rate.milli_per_minute() <= CEILING.milli_per_minute);
                prop_assert!(rate.milli_per_minute() >= CEILING.floor());
                prop_assert!(rate.burst() >= 1 && rate.burst() <= CEILING.burst);
            }
        }

    }

    /// Every true rate from 4 to 20 a minute under a ceiling of 20, and every burst from 3 to 8
    /// (all the combinations, so the check is exhaustive and deterministic).
    #[test]
    fn against_a_true_bucket_the_learner_converges_near_the_limit() {
        for true_per_minute in 4u32..=20 {
            for true_burst in 3u32..=8 {
                let (sent_last_hour, floods_after_first_hour, _) =
                    learn_against(true_per_minute, true_burst, 6);
                let capacity = f64::from(true_per_minute) * 60.0;
                assert!(
                    f64::from(sent_last_hour) >= 0.85 * capacity,
                    "{true_per_minute}/min burst {true_burst}: {sent_last_hour} of {capacity} in the last hour"
                );
                // About one flood wait an hour after the first: the periodic probe and the one
                // it may cost on the way back (6 over hours 2 to 6 at worst).
                assert!(
                    floods_after_first_hour <= 6,
                    "{true_per_minute}/min burst {true_burst}: {floods_after_first_hour} floods after the first hour"
                );
            }
        }
    }
}
