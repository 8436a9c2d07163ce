//! The account's update receiver: grammers' `MessageBoxes` (gap detection, `getDifference`,
//! `getChannelDifference`) driven the way grammers' own `UpdatesReceiver` drives them, with one
//! difference that catch-up needs (ARCHITECTURE.md, "Catch-up"): a flood wait on one channel's
//! difference holds that channel alone. grammers returns such an error to the caller with the
//! channel still first in line, so every update — of every other channel and of private chats —
//! waited for the one channel's wait. Here the channel's difference is ended for now (its pts
//! untouched, so nothing is skipped), the channel is held until the wait is over, and then its
//! difference is asked for again, from where it stood.
//!
//! Telegram's rules followed (core.telegram.org/api/updates): differences start from the saved
//! position; `updates.getChannelDifference` takes at most 100 messages per call for a user account
//! (100,000 for a bot); `PERSISTENT_TIMESTAMP_OUTDATED` and 500s are temporary ("try again
//! later"); `CHANNEL_PRIVATE` (like the other refusals jobbot types as `ChatForbidden`) means the
//! account can no longer read the channel.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use grammers_client::{InvocationError, tl};
use grammers_session::types::{UpdateState, UpdatesState};
use grammers_session::updates::{MessageBoxes, PrematureEndReason, UpdateAndPeers, UpdatesLike};
use jobbot_core::telegram::TelegramError;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::errors::map_invocation_error;

/// A channel whose difference failed for a reason that is neither the connection's nor the
/// account's is asked again after this long, not at every poll.
pub const CHANNEL_RETRY: Duration = Duration::from_secs(60);

/// The position of a session that had none: the account's state now, no channel yet (channels
/// join it as their updates arrive).
pub fn starting_position(state: &tl::types::updates::State) -> UpdateState {
    UpdateState::All(UpdatesState {
        pts: state.pts,
        qts: state.qts,
        date: state.date,
        seq: state.seq,
        channels: Vec::new(),
    })
}

/// The channels of one account whose catch-up waits, each until its instant. Kept by the
/// connector for each session, so a reconnect (a new receiver) does not ask a held channel again
/// before its wait is over, which would only extend it. Not stored: after a restart a held
/// channel is asked once more.
#[derive(Debug, Default, Clone)]
pub struct Holds(Arc<Mutex<HashMap<i64, Instant>>>);

impl Holds {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Instant>> {
        // A panic while holding this lock leaves a map that is still whole.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn holds(&self, channel: i64) -> bool {
        self.lock()
            .get(&channel)
            .is_some_and(|until| *until > Instant::now())
    }

    fn hold(&self, channel: i64, until: Instant) {
        self.lock().insert(channel, until);
    }

    /// Forgets the holds that are over and returns their channels.
    fn take_due(&self) -> Vec<i64> {
        let now = Instant::now();
        let mut held = self.lock();
        let due: Vec<i64> = held
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(channel, _)| *channel)
            .collect();
        for channel in &due {
            held.remove(channel);
        }
        due
    }

    fn earliest(&self) -> Option<Instant> {
        self.lock().values().copied().min()
    }
}

/// What the receiver asks Telegram: the account's client in production, a script in tests.
#[async_trait]
pub trait DifferenceSource: Send + Sync {
    /// `updates.getState`, for an account without a saved position, which the source also saves
    /// as the session's starting position. `None` when it cannot be had now (the position is
    /// then learnt from the updates, as grammers does).
    async fn fresh_state(&self) -> Option<tl::types::updates::State>;
    /// `updates.getDifference`.
    async fn difference(
        &self,
        request: &tl::functions::updates::GetDifference,
    ) -> Result<tl::enums::updates::Difference, InvocationError>;
    /// `updates.getChannelDifference` for the skeleton `request` (channel id and pts; the source
    /// fills in the access hash and the limit). `Ok(None)`: the session knows no access hash for
    /// the channel, so its difference cannot be asked for.
    async fn channel_difference(
        &self,
        request: tl::functions::updates::GetChannelDifference,
    ) -> Result<Option<tl::enums::updates::ChannelDifference>, InvocationError>;
}

/// Updates in order, gaps resolved, one channel's flood wait holding that channel only.
pub struct Receiver<S> {
    source: S,
    boxes: MessageBoxes,
    updates: mpsc::Receiver<UpdatesLike>,
    buffer: VecDeque<UpdateAndPeers>,
    should_get_state: bool,
    held: Holds,
}

impl<S: DifferenceSource> Receiver<S> {
    /// A receiver that catches up from `position` (the session's saved one). `logged_in`: whether
    /// the session has an account at all (a fresh position is only asked for one that has).
    /// `held`: the account's channels still waiting from an earlier connection.
    pub fn new(
        source: S,
        position: UpdatesState,
        logged_in: bool,
        updates: mpsc::Receiver<UpdatesLike>,
        held: Holds,
    ) -> Self {
        let boxes = MessageBoxes::load(position);
        let should_get_state = boxes.is_empty() && logged_in;
        Self {
            source,
            boxes,
            updates,
            buffer: VecDeque::new(),
            should_get_state,
            held,
        }
    }

    /// The next batch of updates (each with its position) and the peers that came with them.
    /// An error is the connection's or the account's (or a flood wait on the account-wide
    /// difference); a channel's own trouble is never returned, it holds that channel.
    pub async fn next(&mut self) -> Result<UpdateAndPeers, InvocationError> {
        if self.should_get_state {
            // Cleared after the call: a `next` dropped during it asks again.
            let state = self.source.fresh_state().await;
            self.should_get_state = false;
            if let Some(state) = state {
                self.boxes.set_state(state);
            }
        }
        loop {
            if let Some(batch) = self.buffer.pop_front() {
                return Ok(batch);
            }
            self.release_held();
            let deadline = self.boxes.check_deadlines();
            if let Some(request) = self.boxes.get_difference() {
                let answer = self.source.difference(&request).await?;
                self.buffer.push_back(self.boxes.apply_difference(answer));
                continue;
            }
            if let Some(request) = self.boxes.get_channel_difference() {
                self.channel_difference(request).await?;
                continue;
            }
            let deadline = Instant::from_std(deadline);
            let wake = self
                .held
                .earliest()
                .map_or(deadline, |held| held.min(deadline));
            match tokio::time::timeout_at(wake, self.updates.recv()).await {
                Ok(Some(updates)) => {
                    if let Ok(batch) = self.boxes.process_updates(updates) {
                        self.buffer.push_back(batch);
                    }
                }
                Ok(None) => return Err(InvocationError::Dropped("updates channel was closed")),
                Err(_) => {}
            }
        }
    }

    /// Asks for one channel's difference and applies it; on a channel's own trouble, ends it for
    /// now and holds the channel.
    async fn channel_difference(
        &mut self,
        request: tl::functions::updates::GetChannelDifference,
    ) -> Result<(), InvocationError> {
        let tl::enums::InputChannel::Channel(channel) = &request.channel else {
            // The message box names channels by id only; nothing else can be asked for.
            self.boxes
                .end_channel_difference(PrematureEndReason::Banned);
            return Ok(());
        };
        let channel = channel.channel_id;
        if self.held.holds(channel) {
            // A new update of a held channel showed a gap: it is filled when the hold ends.
            self.boxes
                .end_channel_difference(PrematureEndReason::TemporaryServerIssues);
            return Ok(());
        }
        let error = match self.source.channel_difference(request).await {
            Ok(Some(answer)) => {
                self.buffer
                    .push_back(self.boxes.apply_channel_difference(answer));
                return Ok(());
            }
            Ok(None) => {
                tracing::warn!(target: "telegram", channel, "cannot fetch a channel's difference: its access hash is not in the session");
                self.boxes
                    .end_channel_difference(PrematureEndReason::Banned);
                return Ok(());
            }
            Err(error) => error,
        };
        let hold = match map_invocation_error(&error) {
            TelegramError::Network { .. } | TelegramError::AccountDead { .. } => return Err(error),
            // CHANNEL_PRIVATE, USER_BANNED_IN_CHANNEL, CHANNEL_INVALID…: this account cannot read
            // the channel (any more); asking again would be refused again.
            TelegramError::ChatForbidden { code } => {
                tracing::info!(target: "telegram", channel, %code, "the account can no longer read the channel; its updates are no longer fetched");
                self.boxes
                    .end_channel_difference(PrematureEndReason::Banned);
                return Ok(());
            }
            TelegramError::FloodWait { seconds } => Duration::from_secs(u64::from(seconds)),
            other => {
                tracing::warn!(target: "telegram", channel, error = %other, "fetching a channel's difference failed; trying it again later");
                CHANNEL_RETRY
            }
        };
        tracing::info!(target: "telegram", channel, hold_s = hold.as_secs(), "a channel's catch-up waits; the other updates go on");
        self.held.hold(channel, Instant::now() + hold);
        self.boxes
            .end_channel_difference(PrematureEndReason::TemporaryServerIssues);
        Ok(())
    }

    /// Channels whose wait is over get their difference asked for again (`updateChannelTooLong`
    /// without a pts is what tells the message box to, from the pts it kept).
    fn release_held(&mut self) {
        let due = self.held.take_due();
        if due.is_empty() {
            return;
        }
        let resume = tl::types::Updates {
            updates: due
                .into_iter()
                .map(|channel_id| {
                    tl::types::UpdateChannelTooLong {
                        channel_id,
                        pts: None,
                    }
                    .into()
                })
                .collect(),
            users: Vec::new(),
            chats: Vec::new(),
            date: 0,
            seq: 0,
        };
        // Nothing in it can be a gap (no seq, no pts); the batch it returns is empty.
        let _ = self
            .boxes
            .process_updates(UpdatesLike::Updates(resume.into()));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use grammers_session::types::ChannelState;

    use super::*;
    use crate::errors::tests::rpc;

    const A: i64 = 1_000_000_001;
    const B: i64 = 1_000_000_002;

    /// What the script answers a channel's difference.
    enum Answer {
        Messages { pts: i32, ids: Vec<i32> },
        Fail(InvocationError),
    }

    /// A Telegram that answers each channel's differences from a list, and records when it was
    /// asked (on tokio's paused clock; the message box keeps its own deadlines on the wall clock,
    /// so these tests make no gap that would wait on one).
    #[derive(Default)]
    struct Script {
        answers: Mutex<HashMap<i64, VecDeque<Answer>>>,
        asked: Mutex<Vec<(i64, Instant)>>,
    }

    impl Script {
        fn answer(self, channel: i64, answer: Answer) -> Self {
            self.answers
                .lock()
                .unwrap()
                .entry(channel)
                .or_default()
                .push_back(answer);
            self
        }

        /// When `channel`'s difference was asked for, in order.
        fn asked(&self, channel: i64) -> Vec<Instant> {
            self.asked
                .lock()
                .unwrap()
                .iter()
                .filter(|(asked, _)| *asked == channel)
                .map(|(_, at)| *at)
                .collect()
        }
    }

    #[async_trait]
    impl DifferenceSource for &Script {
        async fn fresh_state(&self) -> Option<tl::types::updates::State> {
            None
        }

        async fn difference(
            &self,
            request: &tl::functions::updates::GetDifference,
        ) -> Result<tl::enums::updates::Difference, InvocationError> {
            Ok(tl::types::updates::DifferenceEmpty {
                date: request.date,
                seq: 1,
            }
            .into())
        }

        async fn channel_difference(
            &self,
            request: tl::functions::updates::GetChannelDifference,
        ) -> Result<Option<tl::enums::updates::ChannelDifference>, InvocationError> {
            let tl::enums::InputChannel::Channel(channel) = &request.channel else {
                panic!("a channel difference names its channel");
            };
            let channel = channel.channel_id;
            self.asked.lock().unwrap().push((channel, Instant::now()));
            let answer = self
                .answers
                .lock()
                .unwrap()
                .get_mut(&channel)
                .and_then(VecDeque::pop_front);
            match answer {
                Some(Answer::Messages { pts, ids }) => Ok(Some(
                    tl::types::updates::ChannelDifference {
                        r#final: true,
                        pts,
                        timeout: None,
                        new_messages: ids.into_iter().map(|id| message(channel, id)).collect(),
                        other_updates: Vec::new(),
                        chats: Vec::new(),
                        users: Vec::new(),
                    }
                    .into(),
                )),
                Some(Answer::Fail(error)) => Err(error),
                None => Ok(Some(
                    tl::types::updates::ChannelDifferenceEmpty {
                        r#final: true,
                        pts: request.pts,
                        timeout: None,
                    }
                    .into(),
                )),
            }
        }
    }

    fn message(channel_id: i64, id: i32) -> tl::enums::Message {
        tl::types::MessageEmpty {
            id,
            peer_id: Some(tl::types::PeerChannel { channel_id }.into()),
        }
        .into()
    }

    /// Telegram's push that a channel has more than it can send (`updateChannelTooLong`): the
    /// receiver must fetch the channel's difference.
    fn too_long(channel_id: i64) -> UpdatesLike {
        pushed_alone(
            tl::types::UpdateChannelTooLong {
                channel_id,
                pts: None,
            }
            .into(),
        )
    }

    /// One update as Telegram pushes it on the connection (no seq: no account-wide order).
    fn pushed_alone(update: tl::enums::Update) -> UpdatesLike {
        UpdatesLike::Updates(
            tl::types::Updates {
                updates: vec![update],
                users: Vec::new(),
                chats: Vec::new(),
                date: 2,
                seq: 0,
            }
            .into(),
        )
    }

    /// A new message of `channel` as Telegram pushes it: `pts` after it, one event.
    fn pushed(channel: i64, id: i32, pts: i32) -> UpdatesLike {
        pushed_alone(
            tl::types::UpdateNewChannelMessage {
                message: message(channel, id),
                pts,
                pts_count: 1,
            }
            .into(),
        )
    }

    /// A session saved with the common box at pts 5 and the channels at 10 (A) and 20 (B).
    fn saved() -> UpdatesState {
        UpdatesState {
            pts: 5,
            qts: 0,
            date: 1,
            seq: 1,
            channels: vec![
                ChannelState { id: A, pts: 10 },
                ChannelState { id: B, pts: 20 },
            ],
        }
    }

    /// The (channel, message id) of each new message in the next batch.
    async fn next_messages<S: DifferenceSource>(receiver: &mut Receiver<S>) -> Vec<(i64, i32)> {
        let (updates, _, _) = receiver.next().await.expect("a batch");
        updates
            .into_iter()
            .filter_map(|(update, _)| match update {
                tl::enums::Update::NewChannelMessage(new) => match new.message {
                    tl::enums::Message::Empty(empty) => match empty.peer_id {
                        Some(tl::enums::Peer::Channel(peer)) => Some((peer.channel_id, empty.id)),
                        _ => None,
                    },
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    async fn messages_until<S: DifferenceSource>(
        receiver: &mut Receiver<S>,
        count: usize,
    ) -> Vec<(i64, i32)> {
        let mut seen = Vec::new();
        while seen.len() < count {
            seen.extend(next_messages(receiver).await);
        }
        seen
    }

    /// grammers returned a flood wait on one channel's catch-up to the caller with that channel
    /// still first in line, so everything waited for it. Here the other channel's missed
    /// messages and its new ones arrive during the wait; the flooded channel is not asked again
    /// before the wait is over — not even when Telegram says it has more — and is then caught up
    /// from where it stood.
    #[tokio::test(start_paused = true)]
    async fn a_flood_wait_on_one_channels_catch_up_holds_that_channel_only() {
        let script = Script::default()
            .answer(A, Answer::Fail(rpc(420, "FLOOD_WAIT", Some(300))))
            .answer(
                A,
                Answer::Messages {
                    pts: 12,
                    ids: vec![11, 12],
                },
            )
            .answer(
                B,
                Answer::Messages {
                    pts: 21,
                    ids: vec![21],
                },
            );
        let (push, updates) = mpsc::channel(8);
        let start = Instant::now();
        let mut receiver = Receiver::new(&script, saved(), true, updates, Holds::default());

        assert_eq!(messages_until(&mut receiver, 1).await, vec![(B, 21)]);
        push.send(too_long(A)).await.unwrap();
        push.send(pushed(B, 22, 22)).await.unwrap();
        assert_eq!(messages_until(&mut receiver, 1).await, vec![(B, 22)]);
        assert!(Instant::now() < start + Duration::from_secs(300));

        assert_eq!(
            messages_until(&mut receiver, 2).await,
            vec![(A, 11), (A, 12)]
        );
        let asked_a = script.asked(A);
        assert_eq!(asked_a.len(), 2, "asked during the wait: {asked_a:?}");
        assert!(asked_a[1] >= asked_a[0] + Duration::from_secs(300));
    }

    /// A channel's other trouble holds it for [`CHANNEL_RETRY`] instead of being retried at every
    /// poll (Telegram's "try again later"); `CHANNEL_PRIVATE` ends its catch-up for good; a network error is the connection's,
    /// returned to the caller with the channel still in line.
    #[tokio::test(start_paused = true)]
    async fn a_channels_own_trouble_stays_with_the_channel() {
        let script = Script::default()
            .answer(
                A,
                Answer::Fail(rpc(500, "PERSISTENT_TIMESTAMP_OUTDATED", None)),
            )
            .answer(
                A,
                Answer::Messages {
                    pts: 11,
                    ids: vec![11],
                },
            )
            .answer(B, Answer::Fail(rpc(400, "CHANNEL_PRIVATE", None)));
        let (_push, updates) = mpsc::channel(8);
        let start = Instant::now();
        let mut receiver = Receiver::new(&script, saved(), true, updates, Holds::default());
        assert_eq!(messages_until(&mut receiver, 1).await, vec![(A, 11)]);
        assert!(Instant::now() >= start + CHANNEL_RETRY);
        let asked_b = script.asked(B).len();
        assert_eq!(
            asked_b, 1,
            "a channel the account cannot read is not asked again"
        );
        assert!(
            receiver
                .boxes
                .session_state()
                .channels
                .iter()
                .all(|channel| channel.id != B),
            "nor kept in the message box"
        );

        let script = Script::default()
            .answer(
                A,
                Answer::Fail(InvocationError::Io(std::io::Error::other("reset"))),
            )
            .answer(
                A,
                Answer::Messages {
                    pts: 11,
                    ids: vec![11],
                },
            );
        let (_push, updates) = mpsc::channel(8);
        let mut receiver = Receiver::new(&script, saved(), true, updates, Holds::default());
        let error = loop {
            // The account-wide difference (empty) comes first.
            if let Err(error) = receiver.next().await {
                break error;
            }
        };
        assert!(matches!(error, InvocationError::Io(_)), "{error}");
        assert_eq!(messages_until(&mut receiver, 1).await, vec![(A, 11)]);
    }

    /// A reconnect builds a new receiver, which starts by asking every channel's difference; a
    /// channel still in its flood wait from the last connection waits it out first.
    #[tokio::test(start_paused = true)]
    async fn a_channels_hold_outlives_the_connection() {
        let script = Script::default()
            .answer(A, Answer::Fail(rpc(420, "FLOOD_WAIT", Some(300))))
            .answer(
                A,
                Answer::Messages {
                    pts: 11,
                    ids: vec![11],
                },
            )
            .answer(
                B,
                Answer::Messages {
                    pts: 21,
                    ids: vec![21],
                },
            );
        let holds = Holds::default();
        let (_push, updates) = mpsc::channel(8);
        let mut first = Receiver::new(&script, saved(), true, updates, holds.clone());
        assert_eq!(messages_until(&mut first, 1).await, vec![(B, 21)]);
        drop(first);

        let (_push, updates) = mpsc::channel(8);
        let mut second = Receiver::new(&script, saved(), true, updates, holds);
        assert_eq!(messages_until(&mut second, 1).await, vec![(A, 11)]);
        let asked_a = script.asked(A);
        assert_eq!(asked_a.len(), 2, "asked during the wait: {asked_a:?}");
        assert!(asked_a[1] >= asked_a[0] + Duration::from_secs(300));
    }
}
