//! Pure rate-limit state: functions of `(state, params, now)`, no clock reads, so they are tested
//! by passing instants in.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use tokio::time::{Duration, Instant};

use crate::params::RateLimitParams;

/// A token bucket with an escalating flood-wait penalty (see [`RateLimitParams`]).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct FloodBucket {
    tokens: f64,
    #[serde(with = "crate::persist::option_instant")]
    last_refill: Option<Instant>,
    #[serde(with = "crate::persist::option_instant")]
    blocked_until: Option<Instant>,
    #[serde(with = "crate::persist::instants")]
    recent_violations: VecDeque<Instant>,
    /// Calls that found the bucket empty and started a new wait (not the answers given during a
    /// wait, which repeat it): the violations a benchmark counts.
    pub(crate) violations: u64,
}

impl FloodBucket {
    /// Blocks the bucket until `until` (or longer, if it is blocked longer already): every call
    /// before then gets the remaining wait. Not a violation: it does not double later waits.
    pub(crate) fn block_until(&mut self, until: Instant) {
        self.blocked_until = Some(self.blocked_until.map_or(until, |known| known.max(until)));
    }

    /// Takes one call from the bucket, or returns the flood wait in seconds. While a wait is
    /// active every call gets the remaining time, as Telegram answers (and as Telethon records in
    /// `_flood_waited_requests`); such calls are not new violations.
    pub(crate) fn take(&mut self, params: &RateLimitParams, now: Instant) -> Result<(), u32> {
        if let Some(until) = self.blocked_until {
            if now < until {
                return Err(whole_seconds_until(now, until));
            }
            self.blocked_until = None;
        }
        let burst = f64::from(params.burst.max(1));
        self.tokens = match self.last_refill {
            None => burst,
            Some(last) => {
                let refilled =
                    now.duration_since(last).as_secs_f64() * f64::from(params.per_minute) / 60.0;
                (self.tokens + refilled).min(burst)
            }
        };
        self.last_refill = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        let memory = Duration::from_secs(u64::from(params.violation_memory_seconds));
        while self
            .recent_violations
            .front()
            .is_some_and(|first| now.duration_since(*first) >= memory)
        {
            self.recent_violations.pop_front();
        }
        self.recent_violations.push_back(now);
        self.violations += 1;
        let doublings = (self.recent_violations.len() - 1).min(32) as u32;
        let seconds = (u64::from(params.first_wait_seconds.max(1)) << doublings)
            .min(u64::from(params.max_wait_seconds.max(1))) as u32;
        self.blocked_until = Some(now + Duration::from_secs(u64::from(seconds)));
        Err(seconds)
    }
}

/// The cold-DM budget and the `PEER_FLOOD` limit of one account.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct ColdDmLimit {
    #[serde(with = "crate::persist::instants")]
    started: VecDeque<Instant>,
    #[serde(with = "crate::persist::option_instant")]
    limited_until: Option<Instant>,
    limits_imposed: u32,
}

impl ColdDmLimit {
    pub(crate) fn is_limited(&self, now: Instant) -> bool {
        self.limited_until.is_some_and(|until| now < until)
    }

    /// Counts the start of a new chat with a stranger. Past the rolling daily budget the account
    /// is limited (`Err`) for `limit_hours`, doubled for every earlier limit (telegram.org/faq_spam).
    pub(crate) fn start_cold_chat(
        &mut self,
        daily_budget: u32,
        limit_hours: u32,
        now: Instant,
    ) -> Result<(), ()> {
        if self.is_limited(now) {
            return Err(());
        }
        let day = Duration::from_secs(86_400);
        while self
            .started
            .front()
            .is_some_and(|first| now.duration_since(*first) >= day)
        {
            self.started.pop_front();
        }
        if self.started.len() >= daily_budget as usize {
            let hours = u64::from(limit_hours.max(1)) << self.limits_imposed.min(16);
            self.limits_imposed += 1;
            self.limited_until = Some(now + Duration::from_secs(hours * 3_600));
            return Err(());
        }
        self.started.push_back(now);
        Ok(())
    }
}

/// Telegram reports waits in whole seconds, rounded up so that waiting them is always enough.
pub(crate) fn whole_seconds_until(now: Instant, until: Instant) -> u32 {
    let remaining = until.duration_since(now);
    let whole = remaining.as_secs() + u64::from(remaining.subsec_nanos() > 0);
    whole.max(1).min(u64::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: RateLimitParams = RateLimitParams {
        per_minute: 20,
        burst: 5,
        first_wait_seconds: 30,
        max_wait_seconds: 100,
        violation_memory_seconds: 3_600,
    };

    #[test]
    fn bucket_allows_the_burst_then_waits_and_doubles_on_repeat() {
        let start = Instant::now();
        let mut bucket = FloodBucket::default();
        for _ in 0..5 {
            assert_eq!(bucket.take(&LIMIT, start), Ok(()));
        }
        assert_eq!(bucket.take(&LIMIT, start), Err(30));
        // During the wait: the remaining time, not a new violation.
        assert_eq!(
            bucket.take(&LIMIT, start + Duration::from_millis(10_500)),
            Err(20)
        );
        let after = start + Duration::from_secs(30);
        for _ in 0..5 {
            assert_eq!(bucket.take(&LIMIT, after), Ok(()));
        }
        assert_eq!(bucket.take(&LIMIT, after), Err(60));
        let later = after + Duration::from_secs(60);
        for _ in 0..5 {
            assert_eq!(bucket.take(&LIMIT, later), Ok(()));
        }
        assert_eq!(
            bucket.take(&LIMIT, later),
            Err(100),
            "capped at max_wait_seconds"
        );
    }

    #[test]
    fn an_imposed_block_answers_the_remaining_wait_then_lifts_without_counting_a_violation() {
        let start = Instant::now();
        let mut bucket = FloodBucket::default();
        bucket.block_until(start + Duration::from_secs(40));
        assert_eq!(bucket.take(&LIMIT, start), Err(40));
        // A shorter block does not cut a longer one short.
        bucket.block_until(start + Duration::from_secs(5));
        assert_eq!(
            bucket.take(&LIMIT, start + Duration::from_secs(10)),
            Err(30)
        );
        let after = start + Duration::from_secs(40);
        for _ in 0..5 {
            assert_eq!(bucket.take(&LIMIT, after), Ok(()));
        }
        assert_eq!(
            bucket.take(&LIMIT, after),
            Err(30),
            "the first violation: not doubled"
        );
    }

    #[test]
    fn bucket_sustains_its_rate_forever() {
        let start = Instant::now();
        let mut bucket = FloodBucket::default();
        for call in 0..1_000u64 {
            assert_eq!(
                bucket.take(&LIMIT, start + Duration::from_secs(3 * call)),
                Ok(()),
                "call {call}"
            );
        }
    }

    #[test]
    fn violations_are_forgotten_after_the_memory_window() {
        let start = Instant::now();
        let mut bucket = FloodBucket::default();
        let mut first_wait_at = |at: Instant| loop {
            if let Err(seconds) = bucket.take(&LIMIT, at) {
                return seconds;
            }
        };
        assert_eq!(first_wait_at(start), 30);
        assert_eq!(first_wait_at(start + Duration::from_secs(7_200)), 30);
    }

    #[test]
    fn cold_dm_budget_then_limit_that_doubles() {
        let start = Instant::now();
        let mut limit = ColdDmLimit::default();
        for _ in 0..3 {
            assert_eq!(limit.start_cold_chat(3, 24, start), Ok(()));
        }
        assert_eq!(limit.start_cold_chat(3, 24, start), Err(()));
        assert!(limit.is_limited(start + Duration::from_secs(23 * 3_600)));
        let next_day = start + Duration::from_secs(24 * 3_600);
        assert!(!limit.is_limited(next_day));
        for _ in 0..3 {
            assert_eq!(limit.start_cold_chat(3, 24, next_day), Ok(()));
        }
        assert_eq!(limit.start_cold_chat(3, 24, next_day), Err(()));
        assert!(
            limit.is_limited(next_day + Duration::from_secs(47 * 3_600)),
            "a repeat offence lasts twice as long"
        );
    }

    #[test]
    fn waits_round_up_to_whole_seconds() {
        let now = Instant::now();
        let check = |millis: u64, expected: u32| {
            assert_eq!(
                whole_seconds_until(now, now + Duration::from_millis(millis)),
                expected,
                "{millis} ms"
            );
        };
        check(0, 1);
        check(1, 1);
        check(1_000, 1);
        check(1_001, 2);
        check(29_999, 30);
    }
}
