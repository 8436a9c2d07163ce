//! The generic cell rate algorithm (GCRA): a token bucket kept as one timestamp.
//!
//! With emission interval `T = 60 s / messages_per_minute` and tolerance `tau = T * (burst - 1)`,
//! a send at `now` conforms when `now >= tat - tau`, and taking it moves the theoretical arrival
//! time to `max(tat, now) + T`. This is exactly a bucket of `burst` tokens refilled one per `T`
//! (docs.rs/governor `_guide`; redis-cell `CL.THROTTLE`), but it needs no refill timer and gives
//! the exact instant the next send conforms, which is what lets the pool sleep precisely instead
//! of polling or backing off blindly.
//!
//! The guarantee the tests check: over any interval of length `W`, at most
//! `burst + floor(W / T)` sends conform.

use serde::{Deserialize, Serialize};

use super::Millis;

const MILLIS_PER_MINUTE: u64 = 60_000;

/// A per-agent pacing limiter. All arithmetic is in whole milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gcra {
    /// `T`: the steady-state spacing between sends.
    emission_interval_ms: u64,
    /// `tau = T * (burst - 1)`: how far ahead of the steady rate a burst may run.
    tolerance_ms: u64,
    burst: u32,
    /// Theoretical arrival time: when the bucket would be full again if nothing more were sent.
    tat: Millis,
    /// `tat` right after the last take, while nothing has changed it since: that take can be
    /// given back exactly ([`Gcra::give_back`]).
    #[serde(skip)]
    last_take: Option<Millis>,
}

impl Gcra {
    /// A limiter for `messages_per_minute` with bursts of up to `burst` back-to-back sends.
    ///
    /// `T` is rounded *up* to a whole millisecond so the enforced rate is never above the
    /// configured one (20/min gives exactly 3000 ms). Zero values are treated as 1: configuration
    /// validation refuses them, and a limiter that divides by zero or never conforms would only
    /// turn a config mistake into a stuck pool.
    pub fn new(messages_per_minute: u32, burst: u32) -> Self {
        let per_minute = u64::from(messages_per_minute.max(1));
        Self::with_interval_ms(MILLIS_PER_MINUTE.div_ceil(per_minute), burst)
    }

    /// A limiter that spaces sends `emission_interval_ms` apart (at least 1 ms), for a learned
    /// rate that is not a whole number per minute.
    pub fn with_interval_ms(emission_interval_ms: u64, burst: u32) -> Self {
        let burst = burst.max(1);
        let emission_interval_ms = emission_interval_ms.max(1);
        Self {
            emission_interval_ms,
            tolerance_ms: emission_interval_ms * u64::from(burst - 1),
            burst,
            tat: Millis::ZERO,
            last_take: None,
        }
    }

    /// The same limiter at a new rate, for a pacing edit at runtime. The tokens already used
    /// stay used (re-priced at the new interval), so an edit never hands out a fresh burst.
    pub fn with_rate(self, messages_per_minute: u32, burst: u32, now: Millis) -> Self {
        self.repriced(Self::new(messages_per_minute, burst), now)
    }

    /// [`Self::with_rate`] for an interval in milliseconds.
    pub fn with_interval(self, emission_interval_ms: u64, burst: u32, now: Millis) -> Self {
        self.repriced(Self::with_interval_ms(emission_interval_ms, burst), now)
    }

    fn repriced(self, mut changed: Self, now: Millis) -> Self {
        let debt_ms = self.tat.0.saturating_sub(now.0);
        let tokens_used = debt_ms.div_ceil(self.emission_interval_ms);
        changed.tat = Millis(now.0 + tokens_used * changed.emission_interval_ms);
        changed
    }

    pub fn emission_interval_ms(&self) -> u64 {
        self.emission_interval_ms
    }

    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Whether a send conforms at `now`, without taking it. `Err(at)` is the exact earliest
    /// instant it will conform if nothing else is sent meanwhile; `at > now` always.
    pub fn check(&self, now: Millis) -> Result<(), Millis> {
        let earliest = self.earliest();
        if now >= earliest {
            Ok(())
        } else {
            Err(earliest)
        }
    }

    /// The first instant a send conforms (may be in the past).
    pub fn earliest(&self) -> Millis {
        Millis(self.tat.0.saturating_sub(self.tolerance_ms))
    }

    /// Takes one send at `now`. The caller checks first; taking a non-conforming send still
    /// advances `tat` (the send happened, so the limiter must account for it).
    pub fn take(&mut self, now: Millis) {
        self.tat = Millis(self.tat.max(now).0 + self.emission_interval_ms);
        self.last_take = Some(self.tat);
    }

    /// Counts the permit last taken as if it had been taken `by_ms` later: the call it was taken
    /// for came back that long after the take, and Telegram counted it at some instant in
    /// between that jobbot cannot see (after the store's write, the "typing…" pause, the trip
    /// there). Counting it at the latest such instant keeps every later permit conforming at
    /// Telegram's bucket whatever the call's delay was; counted at the take, a later call that
    /// travels faster than this one reaches Telegram less than `T` after it, and a limiter
    /// paced exactly at an account's limit with a burst of one floods about every other call.
    ///
    /// Moving `tat` by the delay is exact when the permit was taken from an idle limiter (the
    /// delayed take gives `max(tat, now + delay) + T`), and above the exact value otherwise (a
    /// take within a burst moved `tat` by `T` whenever it happened): it never under-counts.
    pub fn count_later(&mut self, by_ms: u64) {
        self.tat = Millis(self.tat.0.saturating_add(by_ms));
        self.last_take = None;
    }

    /// Gives back the permit of the last take, whose call never reached Telegram (another node
    /// had claimed the message, the account's connection was gone): `true` if it was given
    /// back. Only the last take can be, and only while nothing changed the limiter since (no
    /// other take, no re-pricing): undoing an earlier one would need the history GCRA does not
    /// keep, and an approximate undo could under-count. The undo is exact: a take from a limiter
    /// with debt moved `tat` by `T`, and one from an idle limiter left `tat` at `now + T`,
    /// whose undo (`now`) means "full from now", as before it.
    pub fn give_back(&mut self) -> bool {
        if self.last_take != Some(self.tat) {
            return false;
        }
        self.tat = Millis(self.tat.0.saturating_sub(self.emission_interval_ms));
        self.last_take = None;
        true
    }

    /// Treats the bucket as emptied at `now` (unless it is emptier already): the next permit
    /// comes one interval later, with no burst. For an account another process used until now
    /// (a node that held its lease, a run before a crash), whose calls Telegram may have counted
    /// a moment ago: starting it full invites a flood wait on the first burst.
    pub fn assume_empty(&mut self, now: Millis) {
        let empty = Millis(now.0 + self.emission_interval_ms + self.tolerance_ms);
        self.tat = self.tat.max(empty);
        self.last_take = None;
    }

    /// Checks and takes in one step.
    pub fn try_take(&mut self, now: Millis) -> Result<(), Millis> {
        self.check(now)?;
        self.take(now);
        Ok(())
    }

    /// How many sends would conform back to back at `now`: `0..=burst`. The least-busy score
    /// prefers agents with more headroom, so bursts are spread instead of drained one by one.
    pub fn headroom(&self, now: Millis) -> u32 {
        let start = self.tat.max(now).0;
        let limit = now.0 + self.tolerance_ms;
        if limit < start {
            return 0;
        }
        let sends = (limit - start) / self.emission_interval_ms + 1;
        u32::try_from(sends).unwrap_or(u32::MAX).min(self.burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twenty_per_minute_with_burst_three_lets_three_through_then_one_every_three_seconds() {
        let mut gcra = Gcra::new(20, 3);
        let now = Millis(1_000_000);
        assert_eq!(gcra.headroom(now), 3);
        for expected_headroom_after in [2, 1, 0] {
            assert_eq!(gcra.try_take(now), Ok(()));
            assert_eq!(gcra.headroom(now), expected_headroom_after);
        }
        let earliest = gcra.check(now).unwrap_err();
        assert_eq!(earliest, Millis(now.0 + 3_000));
        assert_eq!(gcra.check(Millis(earliest.0 - 1)), Err(earliest));
        assert_eq!(gcra.try_take(earliest), Ok(()));
        assert_eq!(gcra.check(earliest), Err(Millis(earliest.0 + 3_000)));
    }

    #[test]
    fn headroom_refills_one_token_per_interval_up_to_burst() {
        let mut gcra = Gcra::new(20, 3);
        let start = Millis(0);
        for _ in 0..3 {
            gcra.take(start);
        }
        let check =
            |at: u64, expected: u32| assert_eq!(gcra.headroom(Millis(at)), expected, "at {at} ms");
        check(0, 0);
        check(2_999, 0);
        check(3_000, 1);
        check(5_999, 1);
        check(6_000, 2);
        check(9_000, 3);
        check(1_000_000, 3);
    }

    #[test]
    fn emission_interval_rounds_up_and_zero_values_are_clamped() {
        let check = |per_minute: u32, burst: u32, interval: u64, tolerance: u64| {
            let gcra = Gcra::new(per_minute, burst);
            assert_eq!(
                (gcra.emission_interval_ms, gcra.tolerance_ms),
                (interval, tolerance),
                "{per_minute}/min burst {burst}"
            );
        };
        check(20, 3, 3_000, 6_000);
        check(7, 1, 8_572, 0);
        check(0, 0, 60_000, 0);
        check(60_000, 2, 1, 1);
        check(u32::MAX, 1, 1, 0);
    }

    #[test]
    fn an_emptied_bucket_gives_its_next_permit_one_interval_later_without_a_burst() {
        let now = Millis(50_000);
        let mut gcra = Gcra::new(20, 3);
        gcra.assume_empty(now);
        assert_eq!(gcra.headroom(now), 0);
        assert_eq!(gcra.earliest(), Millis(now.0 + 3_000));
        assert_eq!(gcra.headroom(Millis(now.0 + 3_000)), 1);
        // A bucket already emptier stays as it is.
        let mut busy = Gcra::new(20, 1);
        busy.take(now);
        busy.take(now);
        busy.assume_empty(now);
        assert_eq!(busy.earliest(), Millis(now.0 + 6_000));
    }

    #[test]
    fn only_the_last_take_is_given_back_and_exactly() {
        let now = Millis(100_000);
        // From an idle limiter: given back, it is as it was (three sends at once again).
        let mut idle = Gcra::new(20, 3);
        idle.take(now);
        assert!(idle.give_back());
        assert_eq!(idle.headroom(now), 3);
        assert!(!idle.give_back(), "given back twice");
        // From a limiter in debt: the take's interval is returned, no more.
        let mut busy = Gcra::new(20, 1);
        busy.take(now);
        busy.take(Millis(now.0 + 3_000));
        assert!(busy.give_back());
        assert_eq!(busy.earliest(), Millis(now.0 + 3_000));
        // Not once another take, or a later count, came after it.
        let mut later = Gcra::new(20, 3);
        later.take(now);
        later.take(now);
        later.count_later(10);
        assert!(!later.give_back());
        assert_eq!(later.earliest(), Millis(now.0 + 10));
    }

    #[test]
    fn changing_the_rate_keeps_history_so_no_fresh_burst_is_granted() {
        let mut gcra = Gcra::new(20, 3);
        for _ in 0..3 {
            gcra.take(Millis(0));
        }
        let check = |per_minute: u32, burst: u32, headroom: u32, earliest: u64| {
            let changed = gcra.with_rate(per_minute, burst, Millis(0));
            assert_eq!(
                changed.headroom(Millis(0)),
                headroom,
                "{per_minute}/min burst {burst}"
            );
            assert_eq!(
                changed.earliest(),
                Millis(earliest),
                "{per_minute}/min burst {burst}"
            );
        };
        check(10, 3, 0, 6_000);
        check(10, 5, 2, 0);
        check(60, 1, 0, 3_000);
    }
}
