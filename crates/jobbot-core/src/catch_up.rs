//! Gaps in a channel's messages, and when to fill them from its history: the decisions, as
//! functions of the marks and `now`.
//!
//! When a client has missed more of a channel than one `updates.getChannelDifference` returns,
//! Telegram answers `updates.channelDifferenceTooLong` and "the client has to resolve the update
//! gap" itself, for instance by fetching the messages with `messages.getHistory`
//! (core.telegram.org/constructor/updates.channelDifferenceTooLong). grammers 0.11 only moves
//! its position past such a gap, so the adapter notices it instead: a channel's message ids
//! grow one by one, so a message whose id is more than one past the last one delivered means
//! messages were skipped (or deleted: then the history has nothing more to give, at the cost of
//! one call). The gap is filled from the history before the new message is delivered.
//!
//! A mark is the highest id up to which everything of the channel was delivered; it is saved
//! with the update position at each committed checkpoint, so a gap found after a restart starts
//! where the last run's handled messages end. A fill that fails (a flood wait on
//! `messages.getHistory`) leaves the mark where the gap starts and is tried again at the next
//! message after the wait; messages delivered meanwhile are delivered again then (at least once:
//! the consumers absorb repeats by their stored keys).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What to do before delivering a channel's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapStep {
    /// Nothing is missing (or a fill must wait): deliver it.
    Deliver,
    /// Messages after this id are missing: fetch them from the history first.
    FillAfter(i32),
}

/// Per channel (by its bare id), the marks and the fills waiting out a flood wait.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelMarks {
    marks: BTreeMap<i64, i32>,
    /// Unix seconds until which a channel's fill may not be tried.
    #[serde(skip)]
    blocked: BTreeMap<i64, i64>,
}

impl ChannelMarks {
    pub fn from_stored(marks: BTreeMap<i64, i32>) -> Self {
        Self {
            marks,
            blocked: BTreeMap::new(),
        }
    }

    /// What is saved with the update position.
    pub fn stored(&self) -> &BTreeMap<i64, i32> {
        &self.marks
    }

    pub fn mark(&self, channel: i64) -> Option<i32> {
        self.marks.get(&channel).copied()
    }

    /// Message `id` of `channel` is about to be delivered.
    pub fn on_message(&self, channel: i64, id: i32, now: i64) -> GapStep {
        match self.marks.get(&channel) {
            Some(&mark) if id > mark.saturating_add(1) => {
                if self.blocked.get(&channel).is_some_and(|until| *until > now) {
                    GapStep::Deliver
                } else {
                    GapStep::FillAfter(mark)
                }
            }
            // The first message seen of a channel starts its mark; earlier ones were before this
            // session's time.
            _ => GapStep::Deliver,
        }
    }

    /// Message `id` was delivered: the mark moves to it unless a gap before it is still open.
    pub fn delivered(&mut self, channel: i64, id: i32) {
        match self.marks.get_mut(&channel) {
            None => {
                self.marks.insert(channel, id);
            }
            Some(mark) if id <= mark.saturating_add(1) => *mark = (*mark).max(id),
            Some(_) => {}
        }
    }

    /// Everything of `channel` up to `up_to` was delivered (a fill went that far: the history
    /// had no other message in between).
    pub fn filled(&mut self, channel: i64, up_to: i32) {
        let mark = self.marks.entry(channel).or_insert(up_to);
        *mark = (*mark).max(up_to);
        self.blocked.remove(&channel);
    }

    /// A fill stopped on a flood wait: not tried again before `until` (Unix seconds).
    pub fn fill_blocked(&mut self, channel: i64, until: i64) {
        self.blocked.insert(channel, until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_messages_move_the_mark_and_a_jump_asks_for_a_fill() {
        let mut marks = ChannelMarks::default();
        assert_eq!(marks.on_message(7, 10, 0), GapStep::Deliver, "first seen");
        marks.delivered(7, 10);
        assert_eq!(marks.on_message(7, 11, 0), GapStep::Deliver);
        marks.delivered(7, 11);
        assert_eq!(marks.on_message(7, 11, 0), GapStep::Deliver, "a repeat");
        assert_eq!(marks.on_message(7, 200, 0), GapStep::FillAfter(11));
        // The fill delivered 12..=150 (the rest were deleted): the gap is closed.
        marks.filled(7, 199);
        marks.delivered(7, 200);
        assert_eq!(marks.mark(7), Some(200));
        assert_eq!(
            marks.on_message(8, 5, 0),
            GapStep::Deliver,
            "another channel"
        );
    }

    #[test]
    fn a_blocked_fill_keeps_the_gap_open_until_it_is_tried_again() {
        let mut marks = ChannelMarks::from_stored(BTreeMap::from([(7, 10)]));
        assert_eq!(marks.on_message(7, 50, 100), GapStep::FillAfter(10));
        // The fill got through 20, then a flood wait of 60 s.
        marks.filled(7, 20);
        marks.fill_blocked(7, 160);
        assert_eq!(marks.on_message(7, 50, 120), GapStep::Deliver);
        marks.delivered(7, 50);
        assert_eq!(marks.mark(7), Some(20), "the gap after 20 stays open");
        assert_eq!(marks.on_message(7, 51, 160), GapStep::FillAfter(20));
        let stored = serde_json::to_string(&marks).unwrap();
        assert_eq!(stored, r#"{"marks":{"7":20}}"#);
    }
}
