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

// ----- String sessions -----

/// Production DCs' IPv4 addresses, as Pyrogram connects to them
/// (`pyrogram/session/internals/data_center.py`, `DataCenter.PROD`), on port 443.
const PRODUCTION_DCS: [(i32, &str); 5] = [
    (1, "149.154.175.53"),
    (2, "149.154.167.51"),
    (3, "149.154.175.100"),
    (4, "149.154.167.91"),
    (5, "91.108.56.130"),
];
/// Test DCs' (`DataCenter.TEST`; core.telegram.org/api/auth#test-accounts), on port 80.
const TEST_DCS: [(i32, &str); 3] = [
    (1, "149.154.175.10"),
    (2, "149.154.167.40"),
    (3, "149.154.175.117"),
];

/// The address and port Pyrogram connects to for `dc_id` (Pyrogram stores none).
pub fn pyrogram_dc_address(dc_id: i32, test_mode: bool) -> Option<(&'static str, u16)> {
    let (table, port): (&[(i32, &str)], u16) = if test_mode {
        (&TEST_DCS, 80)
    } else {
        (&PRODUCTION_DCS, 443)
    };
    table
        .iter()
        .find(|(id, _)| *id == dc_id)
        .map(|(_, address)| (*address, port))
}

/// Why a string is not a session string. Never carries the string or any part of it: it holds
/// the account's key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionStringError {
    #[error("the session string is not base64")]
    NotBase64,
    #[error(
        "the session string is neither a Telethon StringSession nor a Pyrogram session string (it decodes to {0} bytes)"
    )]
    UnknownLayout(usize),
    #[error("the session string names DC {0}, which is not a Telegram data center")]
    UnknownDc(i32),
}

/// Reads a string session, as the Python libraries export them:
/// - Telethon's `StringSession` (`telethon/sessions/string.py`, version `1`): `"1"` then the
///   URL-safe base64 of `>B4sH256s` (DC id, IPv4 address, port, auth key) or `>B16sH256s`
///   (IPv6);
/// - Pyrogram's session string (`pyrogram/storage/storage.py`), URL-safe base64 without padding
///   of `>BI?256sQ?` (DC id, API id, test mode, auth key, user id, bot; Pyrogram 2), or of the
///   1.x layouts `>B?256sI?` and `>B?256sQ?` (no API id; 32- or 64-bit user id). Its address is
///   Pyrogram's for the DC ([`pyrogram_dc_address`]).
///
/// A string session holds no peers and no update position.
pub fn parse_session_string(text: &str) -> Result<LegacySession, SessionStringError> {
    let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    match text.strip_prefix('1') {
        Some(rest) => telethon_string(&decode(rest)?),
        None => pyrogram_string(&decode(&text)?),
    }
}

fn decode(text: &str) -> Result<Vec<u8>, SessionStringError> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .or_else(|_| URL_SAFE.decode(text))
        .map_err(|_| SessionStringError::NotBase64)
}

fn key_at(bytes: &[u8], at: usize) -> AuthKey {
    let mut key = [0u8; 256];
    key.copy_from_slice(&bytes[at..at + 256]);
    AuthKey(key)
}

fn session(
    dc_id: i32,
    address: String,
    port: u16,
    key: AuthKey,
    user: Option<i64>,
) -> LegacySession {
    LegacySession {
        dc_id,
        server_address: address,
        port,
        auth_key: key,
        entities: Vec::new(),
        update_state: None,
        channel_states: Vec::new(),
        user_id: user.filter(|id| *id > 0),
    }
}

fn telethon_string(bytes: &[u8]) -> Result<LegacySession, SessionStringError> {
    let ip_len = match bytes.len() {
        263 => 4,
        275 => 16,
        other => return Err(SessionStringError::UnknownLayout(other)),
    };
    let ip = &bytes[1..1 + ip_len];
    let address = if ip_len == 4 {
        std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]).to_string()
    } else {
        let octets: [u8; 16] = ip.try_into().expect("16 bytes");
        std::net::Ipv6Addr::from(octets).to_string()
    };
    let port = u16::from_be_bytes([bytes[1 + ip_len], bytes[2 + ip_len]]);
    Ok(session(
        i32::from(bytes[0]),
        address,
        port,
        key_at(bytes, 3 + ip_len),
        None,
    ))
}

fn pyrogram_string(bytes: &[u8]) -> Result<LegacySession, SessionStringError> {
    let be = |range: std::ops::Range<usize>| {
        bytes[range]
            .iter()
            .fold(0u64, |value, byte| (value << 8) | u64::from(*byte))
    };
    let (test_mode, key_at_byte, user) = match bytes.len() {
        // >BI?256sQ? (Pyrogram 2)
        271 => (bytes[5] != 0, 6, be(262..270)),
        // >B?256sQ? (1.x, 64-bit user ids)
        267 => (bytes[1] != 0, 2, be(258..266)),
        // >B?256sI? (1.x)
        263 => (bytes[1] != 0, 2, be(258..262)),
        other => return Err(SessionStringError::UnknownLayout(other)),
    };
    let dc_id = i32::from(bytes[0]);
    let (address, port) =
        pyrogram_dc_address(dc_id, test_mode).ok_or(SessionStringError::UnknownDc(dc_id))?;
    Ok(session(
        dc_id,
        address.to_owned(),
        port,
        key_at(bytes, key_at_byte),
        i64::try_from(user).ok(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> AuthKey {
        let mut key = [0u8; 256];
        for (index, byte) in key.iter_mut().enumerate() {
            *byte = (index * 29 + 3) as u8;
        }
        AuthKey(key)
    }

    fn url_safe(bytes: &[u8], padded: bool) -> String {
        use base64::Engine as _;
        use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
        if padded {
            URL_SAFE.encode(bytes)
        } else {
            URL_SAFE_NO_PAD.encode(bytes)
        }
    }

    /// Packed as Telethon's `StringSession.save` does: `">B4sH256s"` after a `"1"`.
    #[test]
    fn a_telethon_string_session_reads_with_its_address_and_key() {
        let mut packed = vec![2u8, 149, 154, 167, 51];
        packed.extend_from_slice(&443u16.to_be_bytes());
        packed.extend_from_slice(&key().0);
        for padded in [true, false] {
            let text = format!("1{}", url_safe(&packed, padded));
            let session = parse_session_string(&text).unwrap();
            assert_eq!(
                (session.dc_id, session.server_address.as_str(), session.port),
                (2, "149.154.167.51", 443)
            );
            assert_eq!(session.auth_key.id(), key().id());
            assert_eq!(session.user_id, None);
        }
        // IPv6: `">B16sH256s"`.
        let mut packed = vec![4u8];
        packed.extend_from_slice(
            &"2001:67c:4e8:f004::a"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        packed.extend_from_slice(&443u16.to_be_bytes());
        packed.extend_from_slice(&key().0);
        let session = parse_session_string(&format!("1{}", url_safe(&packed, true))).unwrap();
        assert_eq!(session.server_address, "2001:67c:4e8:f004::a");
    }

    /// Packed as Pyrogram exports them, in its three layouts.
    #[test]
    fn pyrogram_session_strings_read_in_all_three_layouts() {
        let user: u64 = 5_000_999;
        // Pyrogram 2: >BI?256sQ? (DC 2, API id 12345, production).
        let mut v2 = vec![2u8];
        v2.extend_from_slice(&12_345u32.to_be_bytes());
        v2.push(0);
        v2.extend_from_slice(&key().0);
        v2.extend_from_slice(&user.to_be_bytes());
        v2.push(0);
        // 1.x: >B?256sQ? on a test DC, and >B?256sI?.
        let mut old64 = vec![2u8, 1];
        old64.extend_from_slice(&key().0);
        old64.extend_from_slice(&user.to_be_bytes());
        old64.push(0);
        let mut old = vec![4u8, 0];
        old.extend_from_slice(&key().0);
        old.extend_from_slice(&(user as u32).to_be_bytes());
        old.push(0);
        for (packed, address) in [
            (v2, ("149.154.167.51", 443)),
            (old64, ("149.154.167.40", 80)),
            (old, ("149.154.167.91", 443)),
        ] {
            let session = parse_session_string(&url_safe(&packed, false)).unwrap();
            assert_eq!((session.server_address.as_str(), session.port), address);
            assert_eq!(session.auth_key.id(), key().id());
            assert_eq!(session.user_id, Some(5_000_999));
        }
    }

    #[test]
    fn anything_else_is_refused_without_showing_it() {
        let secret = "1AAAAsecretsecret";
        let error = parse_session_string(secret).unwrap_err().to_string();
        assert!(!error.contains("secret"), "{error}");
        assert_eq!(
            parse_session_string("not base64!"),
            Err(SessionStringError::NotBase64)
        );
        assert_eq!(
            parse_session_string(&url_safe(&[1, 2, 3], false)),
            Err(SessionStringError::UnknownLayout(3))
        );
        let mut unknown_dc = vec![9u8, 0];
        unknown_dc.extend_from_slice(&key().0);
        unknown_dc.extend_from_slice(&[0, 0, 0, 1, 0]);
        assert_eq!(
            parse_session_string(&url_safe(&unknown_dc, false)),
            Err(SessionStringError::UnknownDc(9))
        );
    }

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
