//! `jobbot bench`: measurements on the simulator and of the scheduling policy.
//!
//! - [`pool`]: the agent pool on accounts with drawn limits jobbot is not told (steady load,
//!   ceiling sweep, first messages, churn, bursts), the seed's algorithm against jobbot's
//!   engine, on paused time.
//! - [`pick`]: the cost of one pick at 10,000 agents against a naive full scan.
//! - [`store`]: SQLite commits on disk when they return (`synchronous=FULL`) against `NORMAL`.
//! - [`cluster`]: one pool run by 1, 2 and 3 `jobbot run` nodes on PostgreSQL against
//!   `jobbot sim serve`, on real time: delivered / true capacity, store round trips per message.
//!
//! Each benchmark builds its own runtimes (paused time for the pool), so the command runs them
//! on a blocking thread, away from the process's multi-threaded runtime.

mod cluster;
mod pick;
mod pool;
pub mod store;

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use jobbot_sim::SimParams;
use serde::Serialize;

pub use cluster::{ClusterBenchPlan, run as run_cluster};
pub use pool::{Policy, Scenario, WorldSpec};

/// The JSON written by `bench pool --json FILE`, for scripts that compare runs.
#[derive(Debug, Serialize)]
pub struct PoolBenchReport {
    pub simulator: SimParams,
    pub world: WorldSpec,
    pub scenarios: Vec<ScenarioReport>,
}

#[derive(Debug, Serialize)]
pub struct ScenarioReport {
    pub name: &'static str,
    pub results: Vec<pool::PoolResult>,
}

/// What `bench pool` runs.
#[derive(Debug, Clone)]
pub struct PoolBenchPlan {
    pub world: WorldSpec,
    pub scenarios: Vec<Scenario>,
    /// `steady`: pool sizes and simulated minutes.
    pub steady_agents: Vec<u32>,
    pub steady_minutes: u32,
    /// `sweep`: jobbot's ceiling as multiples of the median true limit, and simulated minutes.
    pub sweep_factors: Vec<f64>,
    pub sweep_minutes: u32,
    /// `cold`: simulated minutes.
    pub cold_minutes: u32,
    /// `churn` and `burst`: simulated minutes.
    pub churn_minutes: u32,
    pub burst_minutes: u32,
    pub policies: Vec<Policy>,
    /// Runs at a time, each on its own thread.
    pub jobs: usize,
}

impl Default for PoolBenchPlan {
    fn default() -> Self {
        Self {
            world: WorldSpec::default(),
            scenarios: Scenario::ALL.to_vec(),
            steady_agents: vec![3, 10, 100],
            steady_minutes: 360,
            sweep_factors: vec![0.5, 0.9, 1.0, 1.25, 2.0],
            sweep_minutes: 180,
            cold_minutes: 24 * 60,
            churn_minutes: 180,
            burst_minutes: 180,
            policies: Policy::ALL.to_vec(),
            jobs: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

/// The runs of one scenario.
fn scenario_runs(plan: &PoolBenchPlan, scenario: Scenario) -> Vec<pool::RunSpec> {
    let default_ceiling = jobbot_core::config::Pacing::default().messages_per_minute;
    match scenario {
        Scenario::Steady => plan
            .steady_agents
            .iter()
            .map(|&agents| pool::RunSpec {
                scenario,
                agents,
                minutes: plan.steady_minutes,
                ceiling_per_min: default_ceiling,
            })
            .collect(),
        Scenario::Sweep => plan
            .sweep_factors
            .iter()
            .map(|&factor| pool::RunSpec {
                scenario,
                agents: 10,
                minutes: plan.sweep_minutes,
                ceiling_per_min: (factor * plan.world.limit_median).round().max(1.0) as u32,
            })
            .collect(),
        Scenario::Cold => vec![pool::RunSpec {
            scenario,
            agents: 10,
            minutes: plan.cold_minutes,
            ceiling_per_min: default_ceiling,
        }],
        Scenario::Churn => vec![pool::RunSpec {
            scenario,
            agents: 20,
            minutes: plan.churn_minutes,
            ceiling_per_min: default_ceiling,
        }],
        Scenario::Burst => vec![pool::RunSpec {
            scenario,
            agents: 10,
            minutes: plan.burst_minutes,
            ceiling_per_min: default_ceiling,
        }],
    }
}

/// Runs every scenario of `plan` with every policy, prints the table to `out` in plan order as
/// rows finish, and writes the JSON report to `json` if given.
///
/// The runs are independent (each has its own world and its own paused-time runtime), so
/// `plan.jobs` threads take them from a queue, the costliest first (longest processing time
/// first keeps the last thread from finishing long after the others). A row's `wall_clock_s` is
/// then measured with the other threads running.
pub fn run_pool(
    plan: &PoolBenchPlan,
    json: Option<&Path>,
    out: &mut impl Write,
) -> anyhow::Result<PoolBenchReport> {
    let simulator = plan.world.params();
    describe(&simulator, out)?;
    writeln!(out, "{}", table_header())?;
    let runs: Vec<(Scenario, pool::RunSpec, Policy)> = plan
        .scenarios
        .iter()
        .flat_map(|&scenario| {
            scenario_runs(plan, scenario)
                .into_iter()
                .flat_map(move |spec| {
                    plan.policies
                        .iter()
                        .map(move |&policy| (scenario, spec, policy))
                })
        })
        .collect();
    let mut by_cost: Vec<usize> = (0..runs.len()).collect();
    by_cost.sort_by(|a, b| run_cost(&runs[*b].1).total_cmp(&run_cost(&runs[*a].1)));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut finished: Vec<Option<pool::PoolResult>> = runs.iter().map(|_| None).collect();
    let mut printed = 0;
    let mut failure = None;
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let (sender, receiver) = std::sync::mpsc::channel();
        for _ in 0..plan.jobs.clamp(1, runs.len().max(1)) {
            let sender = sender.clone();
            let (runs, by_cost, next) = (&runs, &by_cost, &next);
            scope.spawn(move || {
                loop {
                    let taken = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&index) = by_cost.get(taken) else {
                        return;
                    };
                    let (scenario, spec, policy) = runs[index];
                    let result = pool::run(&plan.world, spec, policy).with_context(|| {
                        format!(
                            "the {} run of {} with {} agents",
                            policy.name(),
                            scenario.name(),
                            spec.agents
                        )
                    });
                    let failed = result.is_err();
                    if sender.send((index, result)).is_err() || failed {
                        // Stop the others taking more work: the run is lost anyway.
                        next.store(usize::MAX / 2, std::sync::atomic::Ordering::Relaxed);
                        return;
                    }
                }
            });
        }
        drop(sender);
        for (index, result) in receiver {
            match result {
                Ok(result) => finished[index] = Some(result),
                Err(error) => {
                    failure.get_or_insert(error);
                }
            }
            while let Some(Some(result)) = finished.get(printed) {
                writeln!(out, "{}", table_row(result))?;
                out.flush()?;
                printed += 1;
            }
        }
        Ok(())
    })?;
    if let Some(error) = failure {
        return Err(error);
    }
    let mut finished = finished.into_iter();
    let mut scenarios: Vec<ScenarioReport> = Vec::new();
    for (scenario, ..) in &runs {
        let result = finished
            .next()
            .flatten()
            .context("a run ended without a result")?;
        match scenarios.last_mut() {
            Some(report) if report.name == scenario.name() => report.results.push(result),
            _ => scenarios.push(ScenarioReport {
                name: scenario.name(),
                results: vec![result],
            }),
        }
    }
    let report = PoolBenchReport {
        simulator,
        world: plan.world,
        scenarios,
    };
    if let Some(path) = json {
        write_json(&report, path, out)?;
    }
    Ok(report)
}

/// Writes a benchmark's report as JSON to `path`, saying so on `out`.
fn write_json(report: &impl Serialize, path: &Path, out: &mut impl Write) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(path, text + "\n")
        .with_context(|| format!("could not write {}", path.display()))?;
    writeln!(out, "JSON written to {}", path.display())?;
    Ok(())
}

/// A run's relative cost, for ordering: the messages it is offered (agent-minutes times the load
/// per agent; `cold` offers a few a day).
fn run_cost(spec: &pool::RunSpec) -> f64 {
    let load = match spec.scenario {
        Scenario::Cold => 0.001,
        Scenario::Burst => 0.5,
        Scenario::Steady | Scenario::Sweep | Scenario::Churn => 2.0,
    };
    f64::from(spec.agents) * f64::from(spec.minutes) * load
}

/// Times picks at `agents` agents and prints the result.
pub fn run_pick(agents: u32, iterations: u64, out: &mut impl Write) -> anyhow::Result<()> {
    if cfg!(debug_assertions) {
        writeln!(
            out,
            "warning: a debug build; run `cargo run --release -p jobbot -- bench pick` for meaningful times"
        )?;
    }
    let report = pick::run(agents, iterations);
    writeln!(
        out,
        "{} agents in one pool, {} picks ({} for the naive scan) in {} batches, {} ms of simulated time between picks (30 % of paced capacity)",
        report.agents, report.iterations, report.naive_iterations, report.batches, report.step_ms
    )?;
    writeln!(
        out,
        "AgentScheduler::pick + on_outcome:          {:>10.1} ns per pick (median of batches)",
        report.scheduler_ns_per_pick
    )?;
    writeln!(
        out,
        "naive full-scan least-loaded pick + outcome: {:>10.1} ns per pick (median of batches)",
        report.naive_scan_ns_per_pick
    )?;
    writeln!(
        out,
        "the naive scan costs {:.1}× the scheduler's pick",
        report.speedup
    )?;
    writeln!(out, "{}", serde_json::to_string(&report)?)?;
    Ok(())
}

fn describe(simulator: &SimParams, out: &mut impl Write) -> anyhow::Result<()> {
    let send = simulator.send_messages;
    let resolve = simulator.resolve_username;
    let spread = simulator.account_limits.unwrap_or_default();
    writeln!(
        out,
        "world (seed {:#x}): per account, sendMessage limit log-normal median {}/min sigma {} \
         (clamped to median/4..median*4), burst {}..={}, first flood wait {}..={} s doubling up to \
         {} s while violations are remembered {}..={} s; first-message budget log-normal median \
         {}/day sigma {}; PEER_FLOOD {} h doubling; resolveUsername {}/min burst {}; latency \
         {}+0..{} ms",
        simulator.seed,
        spread.send_median_per_minute,
        spread.send_spread,
        spread.burst_range.0,
        spread.burst_range.1,
        spread.first_wait_range.0,
        spread.first_wait_range.1,
        send.max_wait_seconds,
        spread.violation_memory_range.0,
        spread.violation_memory_range.1,
        spread.budget_median,
        spread.budget_spread,
        simulator.peer_flood_hours,
        resolve.per_minute,
        resolve.burst,
        simulator.call_latency_ms,
        simulator.call_latency_jitter_ms,
    )?;
    let pacing = jobbot_core::config::Pacing::default();
    writeln!(
        out,
        "jobbot is not told the drawn limits: configured {}/min burst {} and {} first messages a \
         day per agent (the ceiling; sweep changes the rate). steady/sweep: warm recipients at 2x \
         the true capacity; cold: a new recruiter per message at 1.5x the drawn budgets; churn: \
         20 agents shared by 3 channels at 2x, 10 % banned at random moments, connections \
         dropped about once an agent-hour; burst: 0.2x with a 2-minute spike at 5x every 30 min. \
         Seed: min flood_wait_until, 3 attempts, 2^attempt s sleeps, then dropped; \
         seed-telethon also sleeps through flood waits <= 60 s inside the call",
        pacing.messages_per_minute, pacing.burst, pacing.cold_dms_per_day
    )?;
    writeln!(out)?;
    Ok(())
}

fn table_header() -> String {
    format!(
        "{:<7} {:<13} {:>6} {:>5} {:>9} {:>9} {:>6} {:>6} {:>6} {:>7} {:>7} {:>4} {:>7} {:>7} {:>7} {:>5} {:>8} {:>8} {:>7}",
        "scen.",
        "policy",
        "agents",
        "ceil",
        "true/min",
        "deliv/min",
        "ratio",
        "c.shr",
        "floods",
        "fw/a-h",
        "fw/a-h>1",
        "PF",
        "dropped",
        "expired",
        "queued",
        "twice",
        "p50 s",
        "p99 s",
        "real s"
    )
}

fn table_row(result: &pool::PoolResult) -> String {
    let seconds = |value: Option<f64>| value.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
    format!(
        "{:<7} {:<13} {:>6} {:>5} {:>9.1} {:>9.2} {:>6.3} {:>6.3} {:>6} {:>7.2} {:>7} {:>4} {:>7} {:>7} {:>7} {:>5} {:>8} {:>8} {:>7.1}",
        result.scenario.name(),
        result.policy.name(),
        result.agents,
        result.ceiling_per_min,
        result.true_capacity_per_min,
        result.delivered_per_min,
        result.ratio,
        result.ceiling_share,
        result.flood_waits,
        result.flood_waits_per_agent_hour,
        result
            .flood_waits_per_agent_hour_after_first
            .map_or_else(|| "-".to_owned(), |v| format!("{v:.2}")),
        result.peer_floods,
        result.dropped,
        result.expired,
        result.queued_at_end,
        result.sent_twice,
        seconds(result.p50_wait_s),
        seconds(result.p99_wait_s),
        result.wall_clock_s,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_report_has_the_documented_shape() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("bench.json");
        let mut out = Vec::new();
        let plan = PoolBenchPlan {
            scenarios: vec![Scenario::Steady, Scenario::Sweep],
            steady_agents: vec![1],
            steady_minutes: 2,
            sweep_factors: vec![1.0],
            sweep_minutes: 2,
            ..PoolBenchPlan::default()
        };
        run_pool(&plan, Some(&path), &mut out).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(json["simulator"]["account_limits"].is_object(), "{json}");
        let scenarios = json["scenarios"].as_array().unwrap();
        let names: Vec<&str> = scenarios
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["steady", "sweep"]);
        let results = scenarios[0]["results"].as_array().unwrap();
        let policies: Vec<&str> = results
            .iter()
            .map(|r| r["policy"].as_str().unwrap())
            .collect();
        assert_eq!(
            policies,
            ["seed", "seed-telethon", "jobbot-fixed", "jobbot"]
        );
        for result in results {
            for key in [
                "scenario",
                "policy",
                "agents",
                "true_capacity_per_min",
                "delivered_per_min",
                "ratio",
                "ceiling_share",
                "flood_waits",
                "flood_waits_per_agent_hour",
                "flood_waits_per_agent_hour_after_first",
                "peer_floods",
                "dropped",
                "expired",
                "queued_at_end",
                "sent_twice",
                "p50_wait_s",
                "p99_wait_s",
            ] {
                assert!(result.get(key).is_some(), "{key} missing in {result}");
            }
        }
        let printed = String::from_utf8(out).unwrap();
        assert!(printed.contains("deliv/min"), "{printed}");
        assert_eq!(
            printed
                .lines()
                .filter(|l| l.starts_with("steady  seed "))
                .count(),
            1,
            "{printed}"
        );
    }
}
