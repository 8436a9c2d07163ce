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

use std::collections::{BTreeMap, VecDeque};

use jobbot_core::ids::ChatId;
use jobbot_core::telegram::{AccountEvent, Checkpoint};

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
}

/// A connection's view of its account's log.
#[derive(Default)]
pub(crate) struct StreamPosition {
    /// The position of the last update put into this connection's stream.
    pub(crate) delivered: u64,
    /// Checkpoints handed out and not yet committed, with their positions.
    pub(crate) checkpoints: BTreeMap<u64, u64>,
}

impl WorldState {
    /// Puts a checkpoint into the connection's stream after what it delivered so far.
    pub(crate) fn request_checkpoint(&mut self, connection: ConnectionId) {
        self.next_checkpoint += 1;
        let id = self.next_checkpoint;
        let Some(record) = self.connections.get_mut(&connection) else {
            return;
        };
        let position = record.position.delivered;
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
        if let Some(session) = self.sessions.get_mut(&session) {
            session.saved_position = Some(session.saved_position.unwrap_or(0).max(position));
        }
    }

    /// What a new connection of `user`'s session starts with: the updates after the session's
    /// saved position (`updates.getDifference`), or none and the current position saved when the
    /// session never saved one (`updates.getState`). Returns the updates and the position the
    /// connection has delivered once they are in its stream.
    pub(crate) fn catch_up(
        &mut self,
        session: &jobbot_core::ids::SessionName,
        user: ChatId,
    ) -> (Vec<AccountEvent>, u64) {
        let newest = self.user(user).updates.pts;
        let record = self
            .sessions
            .get_mut(session)
            .expect("connections open on existing sessions");
        match record.saved_position {
            None => {
                record.saved_position = Some(newest);
                (Vec::new(), newest)
            }
            Some(saved) => (
                self.user(user)
                    .updates
                    .after(saved)
                    .map(|(_, event)| event.clone())
                    .collect(),
                newest,
            ),
        }
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
