//! What a session knows about peers, and the rule that it can address only those.
//!
//! Telegram identifies a user or a channel in a call by its id *and* an access hash
//! (`inputPeerUser`, `inputPeerChannel`), and the hash is handed out only in answers and updates
//! that show the peer: a resolve, the dialogs, an incoming message, a join (core.telegram.org/api/peers,
//! "Peer info database": the `access_hash` is "required to interact with peers in the API", and
//! clients must persist it). "Access hashes may not be reused across different accounts or
//! different sessions of the same account" (same page), so the simulator keeps the peers each
//! *session* has seen, as the session file's peer cache does, and refuses a peer that session has
//! not seen, however the caller got its hash.
//!
//! A person seen only as the author of a message in a group or a channel arrives as a `min`
//! constructor, whose hash "can't be used to generate a typical inputPeerUser constructor to send
//! messages" (core.telegram.org/api/min): such a sender is not learnt. A private message carries
//! the full user.
//!
//! When a chat the caller names by id only (a post, a topic) is not in the session's cache, the
//! back-end looks for it as the grammers adapter does before failing with
//! `CHAT_NOT_KNOWN_TO_ACCOUNT`: the dialogs (a member finds it there), then the chat's public
//! username if the session ever resolved it. `channels.getChannels` with no access hash, which
//! the adapter tries too, is modelled as failing: a user account gets no "ambient" access to a
//! channel (grammers' `PeerAuth::default` works "only where Telegram allows it (bots, …)").

use std::collections::BTreeSet;

use jobbot_core::ids::{ChatId, ChatKind, SessionName, Username};
use jobbot_core::telegram::{AccountEvent, MessageAuthor, Peer, PeerRef, TelegramError};
use tokio::time::Instant;

use crate::world::{ConnectionId, SessionRecord, WorldState};

/// Dialogs loaded once after a login to fill a new session's cache: jobbot's login warm-up
/// (`jobbot-telegram`'s `login.rs`), one page of `messages.getDialogs` (at most 100 per call,
/// core.telegram.org/method/messages.getDialogs). An account in more chats knows the older ones
/// only once something shows them again.
pub(crate) const DIALOG_WARMUP: usize = 100;

impl WorldState {
    pub(crate) fn session_of(&self, connection: ConnectionId) -> Option<SessionName> {
        self.connections
            .get(&connection)
            .map(|record| record.session.clone())
    }

    /// Every logged-in session of `user` learns `peers`: an update that shows them reaches each
    /// session, live or by `updates.getDifference`, whose answers carry the users and chats they
    /// mention (core.telegram.org/api/updates).
    pub(crate) fn learn(&mut self, user: ChatId, peers: &[ChatId]) {
        for session in self.sessions.values_mut() {
            if session.user == Some(user)
                && session.dead.is_none()
                && let Some(known) = &mut session.known_peers
            {
                known.extend(peers.iter().copied());
            }
        }
    }

    /// The peers an update shows in full: the chat of a message (the chat constructor comes with
    /// it), and the author of a private message (a full user); not the author of a group message
    /// (a `min` user).
    pub(crate) fn peers_shown_by(event: &AccountEvent) -> Vec<ChatId> {
        match event {
            AccountEvent::NewMessage(message) | AccountEvent::MessageEdited(message) => {
                let mut peers = vec![message.chat];
                if message.chat.kind() == ChatKind::User
                    && let Some(sender) = &message.sender
                {
                    peers.push(sender.id);
                }
                peers
            }
            _ => Vec::new(),
        }
    }

    /// A fresh session's cache after the login's dialog warm-up: the [`DIALOG_WARMUP`] chats and
    /// private chats with the newest messages.
    pub(crate) fn warm_up(&mut self, session: &SessionName, user: ChatId) {
        let mut dialogs: Vec<(i64, ChatId)> = self
            .chats
            .values()
            .filter(|chat| chat.members.contains(&user))
            .map(|chat| (chat.messages.last().map_or(0, |m| m.date), chat.id))
            .collect();
        let mut partners: Vec<(i64, ChatId)> = Vec::new();
        for message in &self.user(user).private_box {
            match partners.iter_mut().find(|(_, id)| *id == message.chat) {
                Some(entry) => entry.0 = entry.0.max(message.date),
                None => partners.push((message.date, message.chat)),
            }
        }
        dialogs.extend(partners);
        dialogs.sort_by(|a, b| b.cmp(a));
        let known: BTreeSet<ChatId> = dialogs
            .into_iter()
            .take(DIALOG_WARMUP)
            .map(|(_, id)| id)
            .chain(std::iter::once(user))
            .collect();
        if let Some(record) = self.sessions.get_mut(session) {
            record.known_peers = Some(known);
        }
    }

    fn session_record(&self, connection: ConnectionId) -> Option<&SessionRecord> {
        self.connections
            .get(&connection)
            .and_then(|record| self.sessions.get(&record.session))
    }

    fn session_knows(&self, connection: ConnectionId, peer: ChatId) -> bool {
        self.session_record(connection).is_some_and(|record| {
            record
                .known_peers
                .as_ref()
                .is_none_or(|known| known.contains(&peer))
        })
    }

    fn session_learns(&mut self, connection: ConnectionId, peers: &[ChatId]) {
        if let Some(session) = self.session_of(connection)
            && let Some(record) = self.sessions.get_mut(&session)
            && let Some(known) = &mut record.known_peers
        {
            known.extend(peers.iter().copied());
        }
    }

    /// The peer, if `to` is one this connection's session has seen, with this account's own
    /// access hash; `PEER_ID_INVALID` otherwise (a hash from another account or another session,
    /// a made-up id, a `min` user).
    pub(crate) fn check_access_hash(
        &self,
        connection: ConnectionId,
        account: ChatId,
        to: PeerRef,
    ) -> Result<Peer, TelegramError> {
        if !self.session_knows(connection, to.id) {
            return Err(TelegramError::PeerInvalid);
        }
        match self.peer_seen_by(account, to.id) {
            Some(peer) if peer.peer.access_hash == to.access_hash => Ok(peer),
            _ => Err(TelegramError::PeerInvalid),
        }
    }

    /// The chat's input peer for a call that names it by id: from the session's cache, else
    /// found through the dialogs or its username (see the module's notes), else
    /// `CHAT_NOT_KNOWN_TO_ACCOUNT`.
    pub(crate) fn input_chat(
        &mut self,
        connection: ConnectionId,
        account: ChatId,
        chat: ChatId,
        now: Instant,
    ) -> Result<(), TelegramError> {
        if self.session_knows(connection, chat) {
            return Ok(());
        }
        self.user_mut(account).counters.peer_fallbacks += 1;
        // The dialogs: every chat the account is in.
        if self
            .chats
            .get(&chat)
            .is_some_and(|record| record.members.contains(&account))
        {
            self.session_learns(connection, &[chat]);
            return Ok(());
        }
        // A username this session once resolved to the chat: resolve it again.
        let usernames: Vec<Username> = self
            .session_record(connection)
            .map(|record| record.usernames.usernames_of(chat).cloned().collect())
            .unwrap_or_default();
        for username in usernames {
            if self.resolve_uncached(connection, account, &username, now)? == chat {
                return Ok(());
            }
        }
        Err(TelegramError::ChatForbidden {
            code: "CHAT_NOT_KNOWN_TO_ACCOUNT".to_owned(),
        })
    }

    /// `users.getUsers` with `inputUserFromMessage` (core.telegram.org/api/min): the author of
    /// a group message, with this account's own access hash, learnt by the session. The group is
    /// found as a call naming it by id finds it (`input_chat`), else by its public username
    /// (one resolve, through the session's cache). A private group is visible to its members only
    /// (`CHANNEL_PRIVATE`, as `channels.getChannels` answers with `channelForbidden`); a message
    /// that is not there or not by that user leaves nothing to name the user by (`USER_ID_INVALID`,
    /// which the port calls `PeerInvalid`).
    pub(crate) fn resolve_message_author(
        &mut self,
        connection: ConnectionId,
        account: ChatId,
        author: &MessageAuthor,
        now: Instant,
    ) -> Result<Peer, TelegramError> {
        let found = match self.input_chat(connection, account, author.chat, now) {
            Err(TelegramError::ChatForbidden { .. }) if author.chat_username.is_some() => {
                let username = author.chat_username.as_ref().expect("checked above");
                self.resolve_with_cache(connection, account, username, now)? == author.chat
            }
            found => found.map(|()| true)?,
        };
        let Some(record) = self.chats.get(&author.chat).filter(|_| found) else {
            return Err(TelegramError::ChatForbidden {
                code: "CHAT_NOT_KNOWN_TO_ACCOUNT".to_owned(),
            });
        };
        if record.username.is_none() && !record.members.contains(&account) {
            return Err(TelegramError::ChatForbidden {
                code: "CHANNEL_PRIVATE".to_owned(),
            });
        }
        let by_the_user = record.messages.iter().any(|message| {
            message.message_id == author.message_id
                && !message.is_service
                && message.sender == Some(author.user)
        });
        if !by_the_user || !self.users.contains_key(&author.user) {
            return Err(TelegramError::PeerInvalid);
        }
        self.session_learns(connection, &[author.user]);
        Ok(self
            .peer_seen_by(account, author.user)
            .expect("checked to be a user of the world"))
    }

    /// `contacts.resolveUsername` behind the session's cache ([`jobbot_core::peer_cache`]): a
    /// fresh hit costs nothing; a miss or a stale entry reaches Telegram and spends the resolve
    /// limit; "not found" is not cached, so asking again costs again.
    pub(crate) fn resolve_with_cache(
        &mut self,
        connection: ConnectionId,
        account: ChatId,
        username: &Username,
        now: Instant,
    ) -> Result<ChatId, TelegramError> {
        let unix = self.unix_time(now);
        let cached = self
            .session_record(connection)
            .and_then(|record| record.usernames.fresh(username, unix))
            .map(Peer::id);
        if let Some(id) = cached {
            return Ok(id);
        }
        self.resolve_uncached(connection, account, username, now)
    }

    fn resolve_uncached(
        &mut self,
        connection: ConnectionId,
        account: ChatId,
        username: &Username,
        now: Instant,
    ) -> Result<ChatId, TelegramError> {
        let params = self.params.resolve_username;
        let found = self.usernames.get(username).copied();
        let user = self.user_mut(account);
        user.counters.resolves += 1;
        user.limits.resolve.take(&params, now).map_err(|seconds| {
            user.counters.resolve_flood_waits += 1;
            TelegramError::FloodWait { seconds }
        })?;
        let id = found.ok_or(TelegramError::UsernameNotFound)?;
        let peer = self
            .peer_seen_by(account, id)
            .expect("usernames point into the world");
        let unix = self.unix_time(now);
        self.session_learns(connection, &[id]);
        if let Some(session) = self.session_of(connection)
            && let Some(record) = self.sessions.get_mut(&session)
        {
            record.usernames.insert(username, peer, unix);
        }
        Ok(id)
    }
}
