//! The engine's clock: tokio time, so paused-time tests and benchmarks drive it, mapped to the
//! scheduler's [`Millis`] and to wall-clock [`UnixMillis`] for what is stored.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jobbot_core::scheduling::Millis;
use jobbot_core::store::UnixMillis;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct EngineClock {
    origin: Instant,
    origin_unix: UnixMillis,
}

impl EngineClock {
    /// Starts at the current tokio instant and the system's wall clock.
    pub fn start() -> Self {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Self::starting_at(UnixMillis(
            i64::try_from(unix.as_millis()).unwrap_or(i64::MAX),
        ))
    }

    /// Starts at the current tokio instant, calling it `origin_unix` (tests and benchmarks pick a
    /// fixed wall-clock start so runs are reproducible).
    pub fn starting_at(origin_unix: UnixMillis) -> Self {
        Self {
            origin: Instant::now(),
            origin_unix,
        }
    }

    /// Scheduler time: milliseconds since the clock started.
    pub fn now(&self) -> Millis {
        Millis::from_duration(self.origin.elapsed())
    }

    pub fn now_unix(&self) -> UnixMillis {
        self.to_unix(self.now())
    }

    pub fn to_unix(&self, at: Millis) -> UnixMillis {
        UnixMillis(
            self.origin_unix
                .0
                .saturating_add(i64::try_from(at.0).unwrap_or(i64::MAX)),
        )
    }

    /// Scheduler time of a wall-clock instant (instants before the start map to the start).
    pub fn from_unix(&self, at: UnixMillis) -> Millis {
        Millis(u64::try_from(at.0.saturating_sub(self.origin_unix.0)).unwrap_or(0))
    }

    /// The tokio instant to sleep until for a scheduler instant.
    pub fn instant(&self, at: Millis) -> Instant {
        self.origin + at.as_duration()
    }
}
