//! An account's username → peer cache, kept with its session: the decisions, as functions of the
//! cache and `now`. Both Telegram back-ends (the grammers adapter and the simulator) keep one per
//! session.
//!
//! Why it is stored: `contacts.resolveUsername` is the call Telegram limits hardest (long flood
//! waits, reports of 15–18 h bans after bursts of resolves), so a reconnect or a crash loop must
//! not repeat the resolves it already made. Telegram asks clients to persist what they learn about
//! peers ("peer information (or at the very least the id+access hash) must be persisted to a
//! database and never deleted", core.telegram.org/api/peers), and an access hash is valid only
//! with the session that received it ("Access hashes may not be reused across different accounts
//! or different sessions of the same account", same page), hence one cache per session.
//!
//! Why it ages: a user's id and this session's access hash for it never change, but a username
//! can change hands. A mapping older than [`USERNAME_MAX_AGE`] is resolved again before it is
//! used to write to someone; it is still kept (up to [`USERNAME_FORGET_AFTER`]) to answer
//! "which username did this chat have", which the fallbacks for an unknown chat use.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::{ChatId, Username};
use crate::telegram::Peer;

/// How long a resolved username is used without asking Telegram again: long enough that
/// restarts and reconnects within a day never repeat a resolve, short enough that a username
/// that changed hands is followed within a day. A policy, not a Telegram limit.
pub const USERNAME_MAX_AGE_SECS: i64 = 24 * 60 * 60;
/// [`USERNAME_MAX_AGE_SECS`] as a `Duration`, for display.
pub const USERNAME_MAX_AGE: std::time::Duration =
    std::time::Duration::from_secs(USERNAME_MAX_AGE_SECS as u64);
/// After this, an entry is dropped altogether (so the session file does not grow forever).
pub const USERNAME_FORGET_AFTER_SECS: i64 = 30 * 24 * 60 * 60;
/// [`USERNAME_FORGET_AFTER_SECS`] as a `Duration`.
pub const USERNAME_FORGET_AFTER: std::time::Duration =
    std::time::Duration::from_secs(USERNAME_FORGET_AFTER_SECS as u64);

/// One resolved username: the peer with this session's access hash, and when (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedPeer {
    pub peer: Peer,
    pub resolved_at: i64,
}

/// A session's resolved usernames.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UsernameCache {
    entries: BTreeMap<Username, CachedPeer>,
}

impl UsernameCache {
    /// The peer `username` resolved to, if that was at most [`USERNAME_MAX_AGE_SECS`] ago. An
    /// entry dated after `now` (the clock went back) is not trusted either.
    pub fn fresh(&self, username: &Username, now: i64) -> Option<&Peer> {
        let entry = self.entries.get(username)?;
        let age = now.checked_sub(entry.resolved_at)?;
        ((0..=USERNAME_MAX_AGE_SECS).contains(&age)).then_some(&entry.peer)
    }

    /// Records a resolve made at `now`, and forgets entries past [`USERNAME_FORGET_AFTER_SECS`].
    pub fn insert(&mut self, username: &Username, peer: Peer, now: i64) {
        self.entries
            .retain(|_, entry| now.saturating_sub(entry.resolved_at) <= USERNAME_FORGET_AFTER_SECS);
        self.entries.insert(
            username.clone(),
            CachedPeer {
                peer,
                resolved_at: now,
            },
        );
    }

    /// The usernames a peer was resolved from, fresh or not: how an unknown chat may still be
    /// found by resolving its username again.
    pub fn usernames_of(&self, id: ChatId) -> impl Iterator<Item = &Username> {
        self.entries
            .iter()
            .filter(move |(_, entry)| entry.peer.id() == id)
            .map(|(username, _)| username)
    }

    /// Whether any entry says this peer is a bot.
    pub fn is_bot(&self, id: ChatId) -> bool {
        self.entries
            .values()
            .any(|entry| entry.peer.id() == id && entry.peer.kind == crate::telegram::PeerKind::Bot)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> impl Iterator<Item = (&Username, &CachedPeer)> {
        self.entries.iter()
    }

    /// Builds a cache from stored entries (a session file), keeping the newest per username.
    pub fn from_entries(entries: impl IntoIterator<Item = (Username, CachedPeer)>) -> Self {
        let mut cache = Self::default();
        for (username, entry) in entries {
            match cache.entries.get(&username) {
                Some(existing) if existing.resolved_at >= entry.resolved_at => {}
                _ => {
                    cache.entries.insert(username, entry);
                }
            }
        }
        cache
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telegram::{PeerKind, PeerRef};

    fn peer(id: i64, kind: PeerKind) -> Peer {
        Peer {
            peer: PeerRef {
                id: ChatId::user(id).unwrap(),
                access_hash: id * 7,
            },
            kind,
            username: None,
            name: "x".into(),
            last_name: None,
        }
    }

    fn name(text: &str) -> Username {
        Username::parse(text).unwrap()
    }

    #[test]
    fn an_entry_is_fresh_for_its_age_limit_only() {
        let mut cache = UsernameCache::default();
        cache.insert(&name("Alice_1"), peer(1, PeerKind::User), 1_000);
        assert!(
            cache.fresh(&name("alice_1"), 1_000).is_some(),
            "case-insensitive"
        );
        assert!(
            cache
                .fresh(&name("alice_1"), 1_000 + USERNAME_MAX_AGE_SECS)
                .is_some()
        );
        assert!(
            cache
                .fresh(&name("alice_1"), 1_001 + USERNAME_MAX_AGE_SECS)
                .is_none(),
            "stale: resolve again"
        );
        assert!(
            cache.fresh(&name("alice_1"), 999).is_none(),
            "dated in the future"
        );
        // A stale entry still names the username of its peer.
        assert_eq!(
            cache
                .usernames_of(ChatId::user(1).unwrap())
                .collect::<Vec<_>>(),
            [&name("alice_1")]
        );
    }

    #[test]
    fn old_entries_are_forgotten_and_the_cache_round_trips_through_json() {
        let mut cache = UsernameCache::default();
        cache.insert(&name("old_one"), peer(1, PeerKind::Bot), 0);
        cache.insert(&name("new_one"), peer(2, PeerKind::User), 10);
        assert!(cache.is_bot(ChatId::user(1).unwrap()));
        cache.insert(
            &name("newest"),
            peer(3, PeerKind::User),
            USERNAME_FORGET_AFTER_SECS + 5,
        );
        assert_eq!(cache.len(), 2, "the entry from 0 is forgotten");
        let text = serde_json::to_string(&cache).unwrap();
        let back: UsernameCache = serde_json::from_str(&text).unwrap();
        assert_eq!(back, cache);
        let rebuilt = UsernameCache::from_entries(
            cache
                .entries()
                .map(|(username, entry)| (username.clone(), entry.clone())),
        );
        assert_eq!(rebuilt, cache);
    }
}
