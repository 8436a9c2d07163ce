//! Saving and loading a whole world, so a simulator running in its own process (`jobbot sim
//! serve`) keeps its Telegram across restarts.
//!
//! The world is serialised with serde as JSON, a self-describing format, so a state file written
//! before a field existed still loads: every record is derived with serde, fields added later carry
//! `#[serde(default)]` (or the whole struct has a `Default` and `#[serde(default)]`), and unknown
//! fields are ignored. What cannot outlive the process is not saved: live connections, session
//! locks and their event channels (a restart closes every connection, as a Telegram data-centre
//! restart would).
//!
//! Instants (flood waits, cold-DM windows, login codes) are monotonic-clock values that mean
//! nothing in another process, so they are written as signed milliseconds relative to the moment
//! of saving, through [`instant`], [`option_instant`] and [`instants`] (`#[serde(with = …)]`).
//! Those helpers read the time base from a thread-local that [`SimWorld::save_state`] and
//! [`SimWorld::load_state`] set around the (synchronous) serde call; outside them they fail with
//! an error instead of writing a meaningless number. On loading, the time the server was down
//! (wall clock between saving and loading) has passed for the world too: flood waits that ended
//! meanwhile are over, and message dates continue from the wall clock.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::time::{Duration, Instant};

use crate::world::{SimWorld, WorldState};

/// The version of the state file's layout. Additive changes (new fields with defaults) keep it;
/// only a change that old files cannot be read under bumps it.
const FORMAT: u32 = 1;

/// Why a saved world could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("the saved world is not valid: {0}")]
    Invalid(#[from] serde_json::Error),
    #[error("the saved world has format {found}; this jobbot reads format {FORMAT}")]
    Format { found: u32 },
}

#[derive(Serialize, Deserialize)]
struct Snapshot<W> {
    format: u32,
    /// Wall-clock Unix milliseconds at saving, to age the world by the time it was not running.
    saved_at_unix_ms: i64,
    /// How long the world had existed at saving (its clock is `start_unix_time` plus this).
    world_elapsed_ms: u64,
    /// The generator's next seed: the live world is reseeded with it at saving, so a loaded world
    /// draws what the running one would have drawn.
    rng_seed: u64,
    world: W,
}

impl SimWorld {
    /// The whole world as JSON (see the module documentation for what is kept).
    pub fn save_state(&self) -> serde_json::Value {
        self.with(|world| {
            let now = Instant::now();
            let rng_seed: u64 = world.rng.random();
            world.rng = StdRng::seed_from_u64(rng_seed);
            let snapshot = Snapshot {
                format: FORMAT,
                saved_at_unix_ms: wall_clock_unix_ms(),
                world_elapsed_ms: millis(now.duration_since(world.started_at)),
                rng_seed,
                world: &*world,
            };
            with_time_base(now, || serde_json::to_value(&snapshot))
                .expect("a world always serialises: its maps have string or integer keys")
        })
    }

    /// A world from [`SimWorld::save_state`]'s JSON. Its clock continues from the saved time plus
    /// the wall-clock time since saving; it has no connections, and every session is unlocked.
    pub fn load_state(saved: serde_json::Value) -> Result<SimWorld, LoadError> {
        #[derive(Deserialize)]
        struct Format {
            format: u32,
        }
        let Format { format } = Format::deserialize(&saved)?;
        if format != FORMAT {
            return Err(LoadError::Format { found: format });
        }
        let now = Instant::now();
        let saved_at = i64::deserialize(&saved["saved_at_unix_ms"])?;
        let down_for =
            Duration::from_millis(wall_clock_unix_ms().saturating_sub(saved_at).max(0) as u64);
        // The saving moment, on this process's clock: instants were written relative to it.
        let base = now.checked_sub(down_for).unwrap_or(now);
        let snapshot: Snapshot<WorldState> =
            with_time_base(base, || serde_json::from_value(saved))?;
        let mut world = snapshot.world;
        world.rng = StdRng::seed_from_u64(snapshot.rng_seed);
        let elapsed = Duration::from_millis(snapshot.world_elapsed_ms);
        match base.checked_sub(elapsed) {
            Some(started_at) => world.started_at = started_at,
            None => {
                // The monotonic clock cannot reach that far back: move the world's epoch instead.
                world.started_at = base;
                world.params.start_unix_time += elapsed.as_secs() as i64;
            }
        }
        let closed_at = world.unix_millis(base);
        world.history.close_all(closed_at);
        Ok(SimWorld::from_state(world))
    }
}

fn wall_clock_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| millis(elapsed) as i64)
}

fn millis(duration: Duration) -> u64 {
    duration.as_millis().min(u128::from(u64::MAX)) as u64
}

thread_local! {
    static TIME_BASE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Runs `f` with `base` as the instant that saved offsets are relative to.
fn with_time_base<R>(base: Instant, f: impl FnOnce() -> R) -> R {
    struct Reset(Option<Instant>);
    impl Drop for Reset {
        fn drop(&mut self) {
            TIME_BASE.with(|cell| cell.set(self.0));
        }
    }
    let _reset = Reset(TIME_BASE.with(|cell| cell.replace(Some(base))));
    f()
}

fn time_base<E: std::fmt::Display>(error: impl FnOnce(&'static str) -> E) -> Result<Instant, E> {
    TIME_BASE
        .with(Cell::get)
        .ok_or_else(|| error("instants are only (de)serialised by SimWorld::save_state/load_state"))
}

fn to_offset(base: Instant, instant: Instant) -> i64 {
    if instant >= base {
        millis(instant - base) as i64
    } else {
        -(millis(base - instant) as i64)
    }
}

fn from_offset(base: Instant, offset: i64) -> Instant {
    let magnitude = Duration::from_millis(offset.unsigned_abs());
    let shifted = if offset >= 0 {
        base.checked_add(magnitude)
    } else {
        base.checked_sub(magnitude)
    };
    // Out of the monotonic clock's range only for absurd offsets; the base is the best guess.
    shifted.unwrap_or(base)
}

/// `#[serde(with = "crate::persist::instant")]` for an `Instant` field.
pub(crate) mod instant {
    use serde::{Deserialize, Deserializer, Serializer};
    use tokio::time::Instant;

    pub(crate) fn serialize<S: Serializer>(
        value: &Instant,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let base = super::time_base(serde::ser::Error::custom)?;
        serializer.serialize_i64(super::to_offset(base, *value))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Instant, D::Error> {
        let base = super::time_base(serde::de::Error::custom)?;
        Ok(super::from_offset(base, i64::deserialize(deserializer)?))
    }
}

/// `#[serde(with = "crate::persist::option_instant")]` for an `Option<Instant>` field.
pub(crate) mod option_instant {
    use serde::{Deserialize, Deserializer, Serializer};
    use tokio::time::Instant;

    pub(crate) fn serialize<S: Serializer>(
        value: &Option<Instant>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let base = super::time_base(serde::ser::Error::custom)?;
        match value {
            Some(instant) => serializer.serialize_some(&super::to_offset(base, *instant)),
            None => serializer.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Instant>, D::Error> {
        let base = super::time_base(serde::de::Error::custom)?;
        Ok(
            Option::<i64>::deserialize(deserializer)?
                .map(|offset| super::from_offset(base, offset)),
        )
    }
}

/// `#[serde(with = "crate::persist::instants")]` for a `Vec` or `VecDeque` of instants.
pub(crate) mod instants {
    use serde::{Deserialize, Deserializer, Serializer};
    use tokio::time::Instant;

    pub(crate) fn serialize<C, S>(value: &C, serializer: S) -> Result<S::Ok, S::Error>
    where
        for<'a> &'a C: IntoIterator<Item = &'a Instant>,
        S: Serializer,
    {
        let base = super::time_base(serde::ser::Error::custom)?;
        serializer.collect_seq(
            value
                .into_iter()
                .map(|instant| super::to_offset(base, *instant)),
        )
    }

    pub(crate) fn deserialize<'de, C, D>(deserializer: D) -> Result<C, D::Error>
    where
        C: FromIterator<Instant>,
        D: Deserializer<'de>,
    {
        let base = super::time_base(serde::de::Error::custom)?;
        Ok(Vec::<i64>::deserialize(deserializer)?
            .into_iter()
            .map(|offset| super::from_offset(base, offset))
            .collect())
    }
}
