//! Small fixed-memory counters of recent sends, and the exact rolling window of cold DMs.

use std::collections::VecDeque;

use super::Millis;

/// Sends per bucket in a ring of `N` buckets of `width_ms` each: O(1) per send, O(N) per read,
/// fixed memory. A read covers the current (partial) bucket and the `N - 1` before it, so it is
/// exact to within one bucket width: good enough for a status page and a tie-break, which is all
/// these counts are for. Pacing decisions never read them (they use the GCRA and the exact
/// cold-DM window).
#[derive(Debug, Clone)]
struct BucketRing<const N: usize> {
    width_ms: u64,
    /// `(bucket number since the epoch, sends in it)`; a slot whose number is too old is stale.
    buckets: [(u64, u32); N],
}

impl<const N: usize> BucketRing<N> {
    fn new(width_ms: u64) -> Self {
        Self {
            width_ms,
            buckets: [(0, 0); N],
        }
    }

    fn record(&mut self, now: Millis) {
        let bucket = now.0 / self.width_ms;
        let slot = &mut self.buckets[(bucket % N as u64) as usize];
        if slot.0 != bucket {
            *slot = (bucket, 0);
        }
        slot.1 = slot.1.saturating_add(1);
    }

    fn total(&self, now: Millis) -> u32 {
        let current = now.0 / self.width_ms;
        self.buckets
            .iter()
            .filter(|(bucket, _)| *bucket <= current && current - bucket < N as u64)
            .map(|(_, count)| *count)
            .fold(0u32, u32::saturating_add)
    }
}

/// Successful sends in the last minute, hour and day (each within one bucket of exact).
#[derive(Debug, Clone)]
pub(super) struct RecentSends {
    minute: BucketRing<12>,
    hour: BucketRing<12>,
    day: BucketRing<24>,
}

impl RecentSends {
    pub(super) fn new() -> Self {
        Self {
            minute: BucketRing::new(5_000),
            hour: BucketRing::new(5 * 60_000),
            day: BucketRing::new(60 * 60_000),
        }
    }

    pub(super) fn record(&mut self, now: Millis) {
        self.minute.record(now);
        self.hour.record(now);
        self.day.record(now);
    }

    pub(super) fn last_minute(&self, now: Millis) -> u32 {
        self.minute.total(now)
    }

    pub(super) fn last_hour(&self, now: Millis) -> u32 {
        self.hour.total(now)
    }

    pub(super) fn last_day(&self, now: Millis) -> u32 {
        self.day.total(now)
    }
}

/// The cold DMs of the last 24 hours, exactly, for the daily cap.
///
/// A rolling window rather than calendar days: with a calendar reset an agent may send its whole
/// cap at 23:59 and again at 00:00, twice the budget within minutes, which is exactly the "sudden
/// spike" Telegram's spam heuristics punish with `PEER_FLOOD`. A rolling window also has no time
/// zone to configure. Only the newest `cap` timestamps can ever matter to "are there `cap` sends
/// in the window?", so memory is bounded by the cap (40 by default).
#[derive(Debug, Clone, Default)]
pub(super) struct ColdDmWindow {
    sent_at: VecDeque<Millis>,
}

pub(super) const COLD_DM_WINDOW_MS: u64 = 24 * 60 * 60_000;

impl ColdDmWindow {
    pub(super) fn record(&mut self, now: Millis, cap: u32) {
        self.sent_at.push_back(now);
        self.truncate(cap);
    }

    /// Takes back the newest entry: a first message counted when it was picked that never reached
    /// `messages.sendMessage` (its resolve failed, or it was not attempted) started no chat. The
    /// entries are interchangeable but for their instants; the newest may belong to a later
    /// pick, so the window can free up to the time between two picks in flight earlier than
    /// exact, while Telegram counts a chat when the message is sent, after its pick anyway.
    pub(super) fn forget_newest(&mut self) {
        self.sent_at.pop_back();
    }

    /// Keeps only the newest `cap` entries (also after the cap is lowered).
    pub(super) fn truncate(&mut self, cap: u32) {
        while self.sent_at.len() > cap as usize {
            self.sent_at.pop_front();
        }
    }

    /// Cold DMs sent in `(now - 24 h, now]`, at most `cap`.
    pub(super) fn count(&self, now: Millis) -> u32 {
        let in_window = self
            .sent_at
            .iter()
            .filter(|at| at.0 + COLD_DM_WINDOW_MS > now.0)
            .count();
        u32::try_from(in_window).unwrap_or(u32::MAX)
    }

    /// The instant from which a cold DM fits under `cap` (`ZERO` when it already fits whatever
    /// the time, `NEVER` for a cap of zero). It only changes when a cold DM is recorded or the
    /// cap changes, so the scheduler can cache it.
    pub(super) fn fits_from(&self, cap: u32) -> Millis {
        if cap == 0 {
            return Millis::NEVER;
        }
        let cap = cap as usize;
        if self.sent_at.len() < cap {
            return Millis::ZERO;
        }
        Millis(self.sent_at[self.sent_at.len() - cap].0 + COLD_DM_WINDOW_MS)
    }

    /// When the next cold DM fits under `cap`: `None` if it fits now, `Some(at)` (exact) if the
    /// window is full, and `Some(Millis::NEVER)` for a cap of zero.
    pub(super) fn blocked_until(&self, now: Millis, cap: u32) -> Option<Millis> {
        // The window holds `cap` or more sends while the `cap`-th newest is younger than 24 h.
        let fits_from = self.fits_from(cap);
        (fits_from > now).then_some(fits_from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_sends_forget_old_buckets() {
        let mut sends = RecentSends::new();
        let check = |sends: &RecentSends, at: u64, minute: u32, hour: u32, day: u32| {
            let now = Millis(at);
            assert_eq!(
                (
                    sends.last_minute(now),
                    sends.last_hour(now),
                    sends.last_day(now)
                ),
                (minute, hour, day),
                "at {at} ms"
            );
        };
        sends.record(Millis(0));
        sends.record(Millis(1_000));
        check(&sends, 1_000, 2, 2, 2);
        check(&sends, 59_999, 2, 2, 2);
        check(&sends, 60_000, 0, 2, 2);
        sends.record(Millis(30 * 60_000));
        check(&sends, 30 * 60_000, 1, 3, 3);
        check(&sends, 65 * 60_000, 0, 1, 3);
        check(&sends, 25 * 60 * 60_000, 0, 0, 0);
    }

    #[test]
    fn cold_dm_window_frees_a_slot_exactly_24_hours_after_the_send_that_filled_it() {
        let mut window = ColdDmWindow::default();
        let cap = 2;
        window.record(Millis(1_000), cap);
        assert_eq!(window.blocked_until(Millis(1_000), cap), None);
        window.record(Millis(5_000), cap);
        assert_eq!(window.count(Millis(5_000)), 2);
        assert_eq!(
            window.blocked_until(Millis(5_000), cap),
            Some(Millis(1_000 + COLD_DM_WINDOW_MS))
        );
        assert_eq!(
            window.blocked_until(Millis(1_000 + COLD_DM_WINDOW_MS), cap),
            None
        );
        assert_eq!(window.count(Millis(1_000 + COLD_DM_WINDOW_MS)), 1);
        assert_eq!(window.blocked_until(Millis(0), 0), Some(Millis::NEVER));
        window.truncate(1);
        assert_eq!(
            window.blocked_until(Millis(5_000), 1),
            Some(Millis(5_000 + COLD_DM_WINDOW_MS))
        );
    }
}
