//! What the `jobbot` binary shares with its integration tests: starting `jobbot sim serve` and
//! `jobbot run` as child processes that die with their owner ([`processes`]), and reading a
//! cluster's leases and connections from outside ([`cluster`]). The command itself lives in
//! `main.rs` and its modules; `jobbot bench cluster` and the tests that run real processes
//! (`tests/sim_serve.rs`, `tests/crash.rs`) use these the same way.

pub mod cluster;
pub mod processes;
