//! The Telegram simulator as its own process.
//!
//! [`server`] runs a `jobbot_sim::SimWorld` on real time behind a JSON-RPC server (jsonrpsee,
//! WebSocket), keeping it in a state file across restarts; [`client`] is a back-end of
//! `jobbot_core::telegram` that talks to it, so several jobbot processes (and their restarts)
//! share one simulated Telegram. [`rpc`] is the wire, declared once for both sides;
//! [`fixture`] runs `jobbot_sim::contract` through the remote back-end.

pub mod client;
pub mod fixture;
pub mod rpc;
pub mod server;

pub use client::{RemoteConnector, parse_sim_url};
pub use server::{RunningServer, ServerOptions, WorldKind};
