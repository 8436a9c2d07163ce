//! The pure core of jobbot.
//!
//! Everything here is a function of its inputs: configuration parsing, migration and validation,
//! typed identifiers, and the port (`telegram`) that the Telegram back-ends implement. Nothing in
//! this crate opens a file, a socket or reads the clock; callers pass `now` and data in.

pub mod ai;
pub mod catch_up;
pub mod cluster;
pub mod config;
pub mod contacts;
pub mod doctor;
pub mod filters;
pub mod ids;
pub mod legacy_session;
pub mod login;
pub mod notification;
pub mod outbox;
pub mod peer_cache;
pub mod scheduling;
pub mod store;
pub mod telegram;
pub mod template;
pub mod workflow;
