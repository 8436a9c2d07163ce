//! `jobbot bench`: measurements on the simulator and of the scheduling policy.
//!
//! - [`pool`]: the agent pool at twice its safe load for a simulated hour, the seed's algorithm
//!   against jobbot's engine, on paused time.
//! - [`pick`]: the cost of one pick at 10,000 agents against a naive full scan.
//! - [`store`]: SQLite commits on disk when they return (`synchronous=FULL`) against `NORMAL`.
//!
//! Each benchmark builds its own runtimes (paused time for the pool), so the command runs them
//! on a blocking thread, away from the process's multi-threaded runtime.

mod pick;
mod pool;
pub mod store;

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use jobbot_sim::SimParams;
use serde::Serialize;

pub use pool::Policy;

/// The JSON written by `bench pool --json FILE`, for scripts that compare runs.
#[derive(Debug, Serialize)]
pub struct PoolBenchReport {
    pub simulator: SimParams,
    pub workload: pool::Workload,
    pub results: Vec<pool::PoolResult>,
}

/// Runs both policies for each pool size, prints the table to `out` as each size finishes, and
/// writes the JSON report to `json` if given.
pub fn run_pool(
    agent_counts: &[u32],
    minutes: u32,
    json: Option<&Path>,
    out: &mut impl Write,
) -> anyhow::Result<PoolBenchReport> {
    let simulator = SimParams::default();
    let workload = pool::workload(minutes, &simulator);
    describe(&simulator, &workload, out)?;
    writeln!(out, "{}", table_header())?;
    let mut results = Vec::new();
    for &agents in agent_counts {
        for policy in Policy::ALL {
            let result = pool::run(policy, agents, minutes)
                .with_context(|| format!("the {} run with {agents} agents", policy.name()))?;
            writeln!(out, "{}", table_row(&result))?;
            out.flush()?;
            results.push(result);
        }
    }
    let report = PoolBenchReport {
        simulator,
        workload,
        results,
    };
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("could not write {}", path.display()))?;
        writeln!(out, "JSON written to {}", path.display())?;
    }
    Ok(report)
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

fn describe(
    simulator: &SimParams,
    workload: &pool::Workload,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let send = simulator.send_messages;
    let resolve = simulator.resolve_username;
    writeln!(
        out,
        "simulator (SimParams::default): sendMessage {}/min burst {}, flood wait {} s doubling up to {} s \
         (violations remembered {} s); resolveUsername {}/min burst {}; latency {}+0..{} ms; \
         cold-DM budget {}/day; seed {:#x}",
        send.per_minute,
        send.burst,
        send.first_wait_seconds,
        send.max_wait_seconds,
        send.violation_memory_seconds,
        resolve.per_minute,
        resolve.burst,
        simulator.call_latency_ms,
        simulator.call_latency_jitter_ms,
        simulator.cold_dm_daily_budget,
        simulator.seed,
    )?;
    writeln!(
        out,
        "workload: {} simulated minutes, {} arrivals at {}× (agents × {}/min); {}",
        workload.minutes,
        workload.arrivals,
        workload.overload_factor,
        workload.safe_rate_per_agent_per_min,
        workload.description
    )?;
    writeln!(
        out,
        "jobbot pacing: {}/min burst {} per agent; seed policy: min flood_wait_until, 3 attempts, \
         2^attempt s sleeps when no agent, dropped after the last",
        workload.jobbot_pacing.messages_per_minute, workload.jobbot_pacing.burst
    )?;
    writeln!(out)?;
    Ok(())
}

fn table_header() -> String {
    format!(
        "{:<7} {:>6} {:>9} {:>13} {:>6} {:>11} {:>8} {:>10} {:>10} {:>8}",
        "policy",
        "agents",
        "limit/min",
        "delivered/min",
        "ratio",
        "flood waits",
        "dropped",
        "p50 wait s",
        "p99 wait s",
        "real s"
    )
}

fn table_row(result: &pool::PoolResult) -> String {
    let seconds = |value: Option<f64>| value.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
    format!(
        "{:<7} {:>6} {:>9.0} {:>13.1} {:>6.3} {:>11} {:>8} {:>10} {:>10} {:>8.1}",
        result.policy.name(),
        result.agents,
        result.limit_per_min,
        result.delivered_per_min,
        result.ratio,
        result.flood_waits,
        result.dropped,
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
        run_pool(&[1], 1, Some(&path), &mut out).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            json["simulator"]["send_messages"]["per_minute"],
            serde_json::json!(20)
        );
        let results = json["results"].as_array().unwrap();
        let policies: Vec<&str> = results
            .iter()
            .map(|r| r["policy"].as_str().unwrap())
            .collect();
        assert_eq!(policies, ["seed", "jobbot"]);
        for result in results {
            for key in [
                "agents",
                "limit_per_min",
                "delivered_per_min",
                "ratio",
                "flood_waits",
                "dropped",
                "p50_wait_s",
                "p99_wait_s",
                "queued_at_end",
            ] {
                assert!(result.get(key).is_some(), "{key} missing in {result}");
            }
        }
        let printed = String::from_utf8(out).unwrap();
        assert!(printed.contains("delivered/min"), "{printed}");
        assert_eq!(
            printed.lines().filter(|l| l.starts_with("seed ")).count(),
            1
        );
    }
}
