//! A session written by the original system (Telethon), as plain data: what jobbot takes over
//! so an account logged in there need not log in again (no codes, no 2FA, no login flood).
//!
//! Reading the file (SQLite) is `jobbot-store`'s; turning this into a jobbot session is
//! `jobbot-telegram`'s. The auth key is the account's credential: `Debug` never shows it, and
//! [`AuthKey::id`] is the only thing about it that may be displayed.

use std::fmt;

use sha1::{Digest, Sha1};

/// A 2048-bit MTProto authorization key.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthKey(pub [u8; 256]);

impl AuthKey {
    /// The key's identifier as MTProto defines it: "the 64 lower-order bits of the SHA1 hash of
    /// the authorization key" (core.telegram.org/mtproto/description, `auth_key_id`), i.e. the
    /// last 8 bytes of the digest read as a little-endian integer. It names the key; it does not
    /// reveal it.
    pub fn id(&self) -> AuthKeyId {
        let digest = Sha1::digest(self.0);
        let mut low = [0u8; 8];
        low.copy_from_slice(&digest[12..20]);
        AuthKeyId(u64::from_le_bytes(low))
    }
}

impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthKey(id {})", self.id())
    }
}

/// An auth key's identifier, shown as 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AuthKeyId(pub u64);

impl fmt::Display for AuthKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Everything a Telethon (or Pyrogram) session holds that jobbot uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacySession {
    /// The home data center.
    pub dc_id: i32,
    /// Its address as the session saved it (an IPv4 or IPv6 literal).
    pub server_address: String,
    pub port: u16,
    pub auth_key: AuthKey,
    /// Peers the account has seen, with its own access hashes.
    pub entities: Vec<LegacyEntity>,
    /// The account's update position (`update_state` row 0), if saved.
    pub update_state: Option<LegacyUpdateState>,
    /// Channels' own positions: (bare channel id, pts).
    pub channel_states: Vec<(i64, i32)>,
    /// The logged-in account's user id, where the file says it (Pyrogram's `sessions.user_id`;
    /// Telethon keeps none).
    pub user_id: Option<i64>,
}

/// A row of Telethon's `entities` table. `id` is "marked" as the Bot API writes it: users
/// positive, basic groups negative, channels and supergroups `-100…`.
#[derive(Clone, PartialEq, Eq)]
pub struct LegacyEntity {
    pub id: i64,
    pub access_hash: i64,
    pub username: Option<String>,
    pub name: Option<String>,
    /// When Telethon last saw it (its `date` column, Unix seconds); `None` where it wrote 0.
    pub seen_at: Option<i64>,
}

impl fmt::Debug for LegacyEntity {
    // The access hash is an account's credential for the peer.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LegacyEntity")
            .field("id", &self.id)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegacyUpdateState {
    pub pts: i32,
    pub qts: i32,
    /// Unix seconds.
    pub date: i32,
    pub seq: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key id agrees with grammers' (`AuthKey::from_bytes`: `key_id = sha[12..20]`) and with
    /// the MTProto definition; `Debug` shows only the id.
    #[test]
    fn the_key_id_is_the_low_64_bits_of_its_sha1() {
        let key = AuthKey([7u8; 256]);
        let digest = Sha1::digest([7u8; 256]);
        let expected = u64::from_le_bytes(digest[12..20].try_into().unwrap());
        assert_eq!(key.id(), AuthKeyId(expected));
        let shown = format!("{key:?}");
        assert_eq!(shown, format!("AuthKey(id {expected:016x})"));
        assert!(!shown.contains("0707"), "{shown}");
    }
}
