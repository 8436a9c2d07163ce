//! An in-process Telegram world on tokio time, implementing jobbot's Telegram port.
//!
//! [`SimWorld`] holds users, bots, channels, forum groups, sessions and messages;
//! [`SimConnector`] opens its sessions as [`jobbot_core::telegram::TelegramAccount`]s and logs
//! them in through [`jobbot_core::telegram::LoginBackend`]. Every call waits a simulated round
//! trip with `tokio::time::sleep`, and every limit is measured on `tokio::time::Instant`, so tests
//! and benchmarks on paused time run hours of traffic in seconds. Randomness comes only from a
//! generator seeded by [`SimParams::seed`].
//!
//! The world models Telegram's documented and observed behaviour, not a friendlier one: flood
//! waits per method that grow on repeat, `PEER_FLOOD` after too many chats with strangers,
//! privacy refusals, per-account access hashes, `random_id` deduplication, one owner per
//! session and `AUTH_KEY_DUPLICATED` for a copied session. Each rule says where it comes from.
//!
//! [`contract`] is a suite written only against the port, run here against the simulator
//! ([`fixture::SimFixture`]) and reusable against real Telegram.
//!
//! For a simulator in its own process (`jobbot sim serve`, crate `jobbot-sim-remote`): a world
//! saves and loads itself ([`SimWorld::save_state`]), records every connection
//! ([`SimWorld::connection_history`]), and offers fallible administration with serialisable
//! inputs ([`admin`]); [`scenario`] holds the demo's world and its scripted activity.

mod account;
pub mod admin;
mod connector;
pub mod contract;
pub mod fixture;
mod history;
mod limits;
mod login;
mod media;
mod params;
mod peers;
mod persist;
pub mod scenario;
mod updates;
mod world;

pub use account::SimAccount;
pub use connector::SimConnector;
pub use history::ConnectionEntry;
pub use login::{QrScanError, SimLoginBackend};
pub use media::{MAX_UPLOAD_BYTES, SimMedia};
pub use params::{AccountLimitDraw, AccountLimitSpread, RateLimitParams, SimParams};
pub use persist::LoadError;
pub use world::{AccountCounters, ChatCall, MessageRecord, NewUser, SimWorld};
