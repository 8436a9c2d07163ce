//! The real Telegram back-end of jobbot's port: MTProto user accounts through grammers 0.11.
//!
//! This is the only crate that names grammers types. It implements
//! [`jobbot_core::telegram::AccountConnector`] ([`GrammersConnector`]), the accounts it opens
//! ([`TelegramAccount`](jobbot_core::telegram::TelegramAccount)) and logins
//! ([`LoginBackend`](jobbot_core::telegram::LoginBackend)), on session files of its own
//! ([`session_store`]).

pub mod account;
pub mod connector;
pub mod convert;
pub mod errors;
pub mod legacy;
pub mod login;
pub mod session_store;
pub mod updates;

pub use account::GrammersAccount;
pub use connector::{
    ConfigError, GrammersConfig, GrammersConnector, SurfaceFloodWaits, TelegramServers,
    VaultSessions,
};
pub use login::GrammersLogin;
pub use session_store::{SessionKey, SessionStore, SessionStoreError, SessionSummary};
