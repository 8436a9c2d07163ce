//! `jobbot bench pick`: the cost of one scheduling decision in a large pool, with a naive
//! full-scan least-loaded pick over the same agents as the baseline in the same run.
//!
//! Both loops pick and report the outcome at once, advancing the clock between picks so that the
//! offered rate is 30 % of the pool's paced capacity (1 ms per pick at 10,000 agents at 20/min):
//! most agents hold a permit, which is the pool's normal working state. Times are medians of
//! several batches measured with `std::time::Instant`; they mean something only in a release
//! build, and nothing asserts on them.

use std::cmp::Reverse;
use std::hint::black_box;
use std::time::Instant;

use jobbot_core::config::Pacing;
use jobbot_core::ids::SessionName;
use jobbot_core::scheduling::{
    AgentScheduler, ConnectionState, Decision, Gcra, Millis, PoolId, Request, SchedulerSettings,
    SendKind, SendOutcome,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;

const BATCHES: u64 = 10;
/// The naive scan is about a hundred times slower: a tenth of the picks times it well enough.
const NAIVE_SHARE: u64 = 10;
const POOL: PoolId = PoolId(1);
/// Offered sends as a share of the pool's paced capacity, in percent.
const LOAD_PERCENT: u64 = 30;

#[derive(Debug, Clone, Serialize)]
pub struct PickReport {
    pub agents: u32,
    /// Picks timed for the scheduler; the naive scan gets `naive_iterations`.
    pub iterations: u64,
    pub naive_iterations: u64,
    pub batches: u64,
    /// Simulated time between picks.
    pub step_ms: u64,
    pub release_build: bool,
    /// `AgentScheduler::pick` + `on_outcome`, median over batches.
    pub scheduler_ns_per_pick: f64,
    /// Full scan for the least-loaded agent with a permit + its outcome, median over batches.
    pub naive_scan_ns_per_pick: f64,
    /// `naive_scan_ns_per_pick / scheduler_ns_per_pick`.
    pub speedup: f64,
    /// Picks that found an agent (every one, at this load).
    pub scheduler_sends: u64,
    pub naive_scan_sends: u64,
}

pub fn run(agents: u32, iterations: u64) -> PickReport {
    let agents = agents.max(1);
    let per_batch = (iterations / BATCHES).max(1);
    let pacing = Pacing::default();
    // Capacity is agents × rate per minute; picks come every `step` ms for LOAD_PERCENT of it.
    let step_ms = (60_000 * 100
        / (LOAD_PERCENT * u64::from(pacing.messages_per_minute.max(1)) * u64::from(agents)))
    .max(1);
    let (scheduler_times, scheduler_sends) =
        time_batches(per_batch, step_ms, scheduler_picker(agents, pacing));
    let naive_per_batch = (per_batch / NAIVE_SHARE).max(1);
    let (naive_times, naive_scan_sends) =
        time_batches(naive_per_batch, step_ms, naive_picker(agents, pacing));
    let scheduler_ns = median(scheduler_times);
    let naive_ns = median(naive_times);
    PickReport {
        agents,
        iterations: per_batch * BATCHES,
        naive_iterations: naive_per_batch * BATCHES,
        batches: BATCHES,
        step_ms,
        release_build: !cfg!(debug_assertions),
        scheduler_ns_per_pick: scheduler_ns,
        naive_scan_ns_per_pick: naive_ns,
        speedup: naive_ns / scheduler_ns,
        scheduler_sends,
        naive_scan_sends,
    }
}

/// Runs `pick_at` at `per_batch` instants `step_ms` apart, `BATCHES` times: ns per pick of each
/// batch, and how many picks found an agent.
fn time_batches(
    per_batch: u64,
    step_ms: u64,
    mut pick_at: impl FnMut(Millis) -> bool,
) -> (Vec<f64>, u64) {
    let mut now = Millis(1_000_000);
    let mut sends = 0;
    let times = (0..BATCHES)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..per_batch {
                sends += u64::from(pick_at(now));
                now = Millis(now.0 + step_ms);
            }
            started.elapsed().as_nanos() as f64 / per_batch as f64
        })
        .collect();
    (times, sends)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn scheduler_picker(agents: u32, pacing: Pacing) -> impl FnMut(Millis) -> bool {
    let mut scheduler = AgentScheduler::new(SchedulerSettings::default());
    let keys: Vec<_> = (0..agents)
        .map(|index| {
            let session = SessionName::parse(&format!("agent_{index:05}")).expect("valid name");
            let key = scheduler.add_agent(session, pacing, Millis::ZERO);
            scheduler.set_connection_state(key, ConnectionState::Ready);
            key
        })
        .collect();
    scheduler.set_pool(POOL, &keys).expect("agents exist");
    let mut rng = StdRng::seed_from_u64(7);
    let request = Request::new(SendKind::Reply);
    move |now| match scheduler.pick(POOL, &request, now, &mut rng) {
        Decision::Send(agent) => {
            black_box(scheduler.on_outcome(agent, &request, SendOutcome::Sent, now));
            true
        }
        other => {
            black_box(other);
            false
        }
    }
}

/// What a straightforward pool keeps per agent for a least-loaded pick.
struct NaiveAgent {
    ready: bool,
    flood_wait_until: Millis,
    gcra: Gcra,
    in_flight: u32,
}

/// The obvious alternative: scan every agent, keep those that may send now, take the one with
/// the fewest sends in flight and then the most pacing headroom.
fn naive_picker(agents: u32, pacing: Pacing) -> impl FnMut(Millis) -> bool {
    let mut pool: Vec<NaiveAgent> = (0..agents)
        .map(|_| NaiveAgent {
            ready: true,
            flood_wait_until: Millis::ZERO,
            gcra: Gcra::new(pacing.messages_per_minute, pacing.burst),
            in_flight: 0,
        })
        .collect();
    move |now| {
        let chosen = pool
            .iter()
            .enumerate()
            .filter(|(_, agent)| {
                agent.ready && agent.flood_wait_until <= now && agent.gcra.check(now).is_ok()
            })
            .min_by_key(|(_, agent)| (agent.in_flight, Reverse(agent.gcra.headroom(now))))
            .map(|(index, _)| index);
        let Some(index) = black_box(chosen) else {
            return false;
        };
        let agent = &mut pool[index];
        agent.gcra.take(now);
        agent.in_flight += 1;
        // The outcome: delivered.
        agent.in_flight -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_benchmark_load_every_pick_finds_an_agent() {
        for agents in [1, 7, 50] {
            let report = run(agents, 2_000);
            assert_eq!(report.agents, agents);
            assert_eq!(report.iterations, 2_000);
            assert_eq!(report.scheduler_sends, report.iterations, "{report:?}");
            assert_eq!(report.naive_iterations, 200);
            assert_eq!(
                report.naive_scan_sends, report.naive_iterations,
                "{report:?}"
            );
        }
    }
}
