//! Update positions and catch-up, as Telegram keeps them per account
//! (core.telegram.org/api/updates): every update to an account gets the next position (`pts`),
//! and a client that comes back with a saved position gets what it missed
//! (`updates.getDifference`), up to a limit past which Telegram answers
//! `updates.differenceTooLong` and the gap is lost.
//!
//! The simulator keeps the saved position with the session (where the real back-end keeps it,
//! in the session file): a connection's checkpoints ([`jobbot_core::telegram::Checkpoint`]) mark
//! positions in its stream, and committing one saves it. A new connection of the session catches
//! up from the saved position, so events after the last commit are delivered again (at least
//! once), and a session that never saved one starts from "now", as after `updates.getState`.
//!
//! Channels and supergroups have positions of their own, caught up one by one with
//! `updates.getChannelDifference` (core.telegram.org/api/updates, "Channels"). Two of its answers
//! are modelled, with what the back-end must do about them:
//! - a flood wait (420 `FLOOD_WAIT_X`, which Telegram gives per method and input parameters,
//!   core.telegram.org/api/errors): that channel's catch-up waits X seconds, and its live updates
//!   wait behind it (a channel's updates are delivered in order), while every other channel and
//!   private chat keeps flowing. While it waits, no checkpoint passes the position the catch-up
//!   started from, so a crash meanwhile loses nothing;
//! - `updates.channelDifferenceTooLong`, when more than [`crate::SimParams::channel_difference_limit`]
//!   updates are missing ("the provided pts + limit < remote pts … the client has to resolve the
//!   update gap", core.telegram.org/constructor/updates.channelDifferenceTooLong), or when the
//!   account's log no longer holds them: the gap is filled from the channel's history
//!   (`messages.getHistory`, "fetch older messages", same page) after the last message of the
//!   channel the session had committed, so nothing is lost. History holds messages, not edits:
//!   an edit made meanwhile arrives as the message's current text.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use jobbot_core::ids::{ChatId, ChatKind, SessionName};
use jobbot_core::telegram::{AccountEvent, Checkpoint};
use tokio::time::{Duration, Instant};

use crate::world::{ConnectionId, WorldState};

/// An account's update log: the last updates with their positions. Saved with the world, so a
/// simulator that restarts still lets its clients catch up.
#[derive(Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct UpdateLog {
    /// The position of the newest update (0: none yet).
    pub(crate) pts: u64,
    entries: VecDeque<(u64, AccountEvent)>,
}

impl UpdateLog {
    /// Appends an update and returns its position, keeping at most `limit` entries.
    pub(crate) fn append(&mut self, event: AccountEvent, limit: usize) -> u64 {
        self.pts += 1;
        self.entries.push_back((self.pts, event));
        while self.entries.len() > limit.max(1) {
            self.entries.pop_front();
        }
        self.pts
    }

    /// The updates after `position` that the log still holds.
    pub(crate) fn after(&self, position: u64) -> impl Iterator<Item = &(u64, AccountEvent)> {
        self.entries.iter().filter(move |(pts, _)| *pts > position)
    }

    /// Whether updates after `position` fell out of the log.
    pub(crate) fn lost_after(&self, position: u64) -> bool {
        self.entries
            .front()
            .map_or(self.pts > position, |(oldest, _)| *oldest > position + 1)
    }
}

/// The channel or supergroup an update belongs to, if it is one (its own update box).
pub(crate) fn channel_of(event: &AccountEvent) -> Option<ChatId> {
    match event {
        AccountEvent::NewMessage(message) | AccountEvent::MessageEdited(message)
            if message.chat.kind() == ChatKind::Channel =>
        {
            Some(message.chat)
        }
        _ => None,
    }
}

/// A channel whose catch-up waits out a flood wait.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deferred {
    /// The position the connection's catch-up started from.
    pub(crate) since: u64,
    pub(crate) until: Instant,
}

/// A connection's view of its account's log.
#[derive(Default)]
pub(crate) struct StreamPosition {
    /// The position of the last update put into this connection's stream.
    pub(crate) delivered: u64,
    /// Checkpoints handed out and not yet committed, with their positions.
    pub(crate) checkpoints: BTreeMap<u64, u64>,
    /// Channels whose catch-up waits out a flood wait; their updates are held until then.
    pub(crate) deferred: BTreeMap<ChatId, Deferred>,
}

impl StreamPosition {
    /// The position a checkpoint may save now: what was delivered, but never past the start of a
    /// catch-up still waiting.
    fn committable(&self) -> u64 {
        self.deferred
            .values()
            .map(|deferred| deferred.since)
            .fold(self.delivered, u64::min)
    }
}

/// What a new connection starts with.
pub(crate) struct CatchUp {
    pub(crate) events: Vec<AccountEvent>,
    /// The position delivered once `events` are in the stream.
    pub(crate) delivered: u64,
    pub(crate) deferred: BTreeMap<ChatId, Deferred>,
}

impl WorldState {
    /// Puts a checkpoint into the connection's stream after what it delivered so far.
    pub(crate) fn request_checkpoint(&mut self, connection: ConnectionId) {
        self.next_checkpoint += 1;
        let id = self.next_checkpoint;
        let Some(record) = self.connections.get_mut(&connection) else {
            return;
        };
        let position = record.position.committable();
        if record
            .events
            .try_send(AccountEvent::Checkpoint(Checkpoint(id)))
            .is_ok()
        {
            record.position.checkpoints.insert(id, position);
        }
    }

    /// Saves a checkpoint's position with the connection's session; earlier checkpoints of the
    /// connection are covered by it. Unknown checkpoints (another connection's, one committed
    /// already, or a closed connection's) are ignored, as the port allows.
    pub(crate) fn commit_checkpoint(&mut self, connection: ConnectionId, checkpoint: Checkpoint) {
        let Some(record) = self.connections.get_mut(&connection) else {
            return;
        };
        let Some(position) = record.position.checkpoints.remove(&checkpoint.0) else {
            return;
        };
        record
            .position
            .checkpoints
            .retain(|id, _| *id > checkpoint.0);
        let session = record.session.clone();
        let user = record.user;
        let Some(saved) = self
            .sessions
            .get(&session)
            .map(|record| record.saved_position)
        else {
            return;
        };
        let from = saved.unwrap_or(0);
        // The last message of each channel up to the saved position: where a history fill starts.
        let mut marks: BTreeMap<ChatId, i32> = BTreeMap::new();
        for (pts, event) in self.user(user).updates.after(from) {
            if *pts > position {
                break;
            }
            if let (Some(chat), AccountEvent::NewMessage(message)) = (channel_of(event), event) {
                let mark = marks.entry(chat).or_default();
                *mark = (*mark).max(message.message_id);
            }
        }
        if let Some(record) = self.sessions.get_mut(&session) {
            record.saved_position = Some(from.max(position));
            for (chat, id) in marks {
                let mark = record.channel_marks.entry(chat).or_default();
                *mark = (*mark).max(id);
            }
        }
    }

    /// What a new connection of `user`'s session starts with: the updates after the session's
    /// saved position (`updates.getDifference`, then `updates.getChannelDifference` per channel),
    /// or none and the current position saved when the session never saved one
    /// (`updates.getState`). A channel whose difference answers a flood wait is deferred (see the
    /// module's notes); one whose gap is too long is filled from its history.
    pub(crate) fn catch_up(
        &mut self,
        session: &SessionName,
        user: ChatId,
        now: Instant,
    ) -> CatchUp {
        let newest = self.user(user).updates.pts;
        let record = self
            .sessions
            .get_mut(session)
            .expect("connections open on existing sessions");
        let Some(saved) = record.saved_position else {
            record.saved_position = Some(newest);
            return CatchUp {
                events: Vec::new(),
                delivered: newest,
                deferred: BTreeMap::new(),
            };
        };
        let entries: Vec<(u64, AccountEvent)> =
            self.user(user).updates.after(saved).cloned().collect();
        let mut channels: BTreeSet<ChatId> = entries
            .iter()
            .filter_map(|(_, event)| channel_of(event))
            .collect();
        if self.user(user).updates.lost_after(saved) {
            // Updates fell out of the log: every channel the session had a position in may have
            // a gap.
            let marks = self.sessions[session].channel_marks.clone();
            channels.extend(marks.into_keys().filter(|chat| {
                self.chats
                    .get(chat)
                    .is_some_and(|record| record.members.contains(&user))
            }));
        }
        let mut deferred = BTreeMap::new();
        let mut filled = BTreeMap::new();
        for chat in channels {
            if let Some(seconds) = self.user_mut(user).limits.catch_up_floods.remove(&chat) {
                self.user_mut(user).counters.catch_up_flood_waits += 1;
                deferred.insert(
                    chat,
                    Deferred {
                        since: saved,
                        until: now + Duration::from_secs(u64::from(seconds)),
                    },
                );
            } else if let Some(fill) = self.history_fill(session, user, chat, saved) {
                filled.insert(chat, fill);
            }
        }
        let mut events = Vec::new();
        for (_, event) in entries {
            match channel_of(&event) {
                Some(chat) if deferred.contains_key(&chat) => {}
                Some(chat) if filled.contains_key(&chat) => {
                    events.extend(filled.remove(&chat).unwrap_or_default());
                    filled.insert(chat, Vec::new());
                }
                _ => events.push(event),
            }
        }
        for (_, fill) in filled {
            events.extend(fill);
        }
        CatchUp {
            events,
            delivered: newest,
            deferred,
        }
    }

    /// The channel's missed messages from its history when its difference is too long (more
    /// than the limit, or no longer in the log); `None` when `updates.getChannelDifference`
    /// answers them itself.
    fn history_fill(
        &mut self,
        session: &SessionName,
        user: ChatId,
        chat: ChatId,
        since: u64,
    ) -> Option<Vec<AccountEvent>> {
        let log = &self.user(user).updates;
        let missed: Vec<i32> = log
            .after(since)
            .filter(|(_, event)| channel_of(event) == Some(chat))
            .filter_map(|(_, event)| match event {
                AccountEvent::NewMessage(message) => Some(message.message_id),
                _ => None,
            })
            .collect();
        let too_long = log.lost_after(since) || missed.len() > self.params.channel_difference_limit;
        if !too_long {
            return None;
        }
        let mark = self.sessions[session]
            .channel_marks
            .get(&chat)
            .copied()
            .or_else(|| missed.first().map(|first| first - 1))
            .unwrap_or(0);
        let record = self.chats.get(&chat)?;
        let messages: Vec<_> = record
            .messages
            .iter()
            .filter(|message| message.message_id > mark)
            .cloned()
            .collect();
        let counters = &mut self.user_mut(user).counters;
        counters.history_fills += 1;
        // messages.getHistory returns at most 100 messages a call.
        counters.history_calls += messages.len().div_ceil(100) as u64;
        Some(
            messages
                .iter()
                .map(|message| AccountEvent::NewMessage(self.chat_incoming(user, message)))
                .collect(),
        )
    }

    /// A deferred channel's catch-up, once its flood wait is over: its updates since the
    /// connection's catch-up started (from its history if too many), in order.
    pub(crate) fn release_deferred(&mut self, connection: ConnectionId, chat: ChatId) {
        let Some(record) = self.connections.get_mut(&connection) else {
            return;
        };
        let Some(deferred) = record.position.deferred.remove(&chat) else {
            return;
        };
        let (session, user) = (record.session.clone(), record.user);
        let events = match self.history_fill(&session, user, chat, deferred.since) {
            Some(fill) => fill,
            None => self
                .user(user)
                .updates
                .after(deferred.since)
                .filter(|(_, event)| channel_of(event) == Some(chat))
                .map(|(_, event)| event.clone())
                .collect(),
        };
        let sender = self.connections[&connection].events.clone();
        for event in events {
            let counters = &mut self.user_mut(user).counters;
            if sender.try_send(event).is_ok() {
                counters.events_delivered += 1;
            } else {
                counters.events_dropped += 1;
            }
        }
    }

    /// Whether an update waits behind its channel's deferred catch-up on this connection.
    pub(crate) fn held_back(&self, connection: ConnectionId, event: &AccountEvent) -> bool {
        channel_of(event).is_some_and(|chat| {
            self.connections
                .get(&connection)
                .is_some_and(|record| record.position.deferred.contains_key(&chat))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_keeps_the_newest_updates_with_their_positions() {
        let mut log = UpdateLog::default();
        for _ in 0..5 {
            log.append(AccountEvent::ConnectionRestored, 3);
        }
        assert_eq!(log.pts, 5);
        let kept: Vec<u64> = log.after(0).map(|(pts, _)| *pts).collect();
        assert_eq!(kept, [3, 4, 5], "the oldest fell out (differenceTooLong)");
        let after: Vec<u64> = log.after(4).map(|(pts, _)| *pts).collect();
        assert_eq!(after, [5]);
    }
}
