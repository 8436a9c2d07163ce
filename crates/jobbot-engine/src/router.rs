//! The engine's lossless Telegram event stream and its fan-out to the consumers that take
//! updates in (monitoring, the CRM), with the acknowledgements that let an account save its
//! update position.
//!
//! Saving a position is safe only once every event before it was handled durably by every
//! consumer; otherwise a crash would skip the events in between (they would never be delivered
//! again). So an account's [`AccountEvent::Checkpoint`] travels through the stream like any
//! event, each consumer takes events one at a time, and asking for the next event
//! ([`TelegramEvents::recv`]) says it is done with the previous one. When every consumer has
//! passed the checkpoint, the checkpoint's owner commits it. A consumer that crashed mid-event
//! never passes it ([`TelegramEvents::recover`]): from then on nothing is committed in this
//! process, and the next start replays from the last committed position.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use jobbot_core::ids::SessionName;
use jobbot_core::telegram::AccountEvent;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// One event of the stream, with the acknowledgement its checkpoint waits for.
#[derive(Debug)]
pub(crate) struct Routed {
    pub session: SessionName,
    pub event: AccountEvent,
    pub ack: Option<Arc<CheckpointAck>>,
}

/// What a checkpoint's commit waits for: one pass per consumer.
pub(crate) struct CheckpointAck {
    remaining: AtomicUsize,
    gate: Arc<CommitGate>,
    commit: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for CheckpointAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointAck")
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

impl CheckpointAck {
    /// An acknowledgement that commits once `consumers` passes arrived, unless the gate closed.
    pub(crate) fn new(
        consumers: usize,
        gate: Arc<CommitGate>,
        commit: impl Fn() + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            remaining: AtomicUsize::new(consumers),
            gate,
            commit: Box::new(commit),
        })
    }

    /// One consumer is past the checkpoint.
    fn pass(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 && self.gate.is_open() {
            (self.commit)();
        }
    }
}

/// Closes for good when a consumer loses an event (it crashed while handling it): no later
/// checkpoint may then be committed in this process, since it would skip the lost event.
#[derive(Debug, Default)]
pub struct CommitGate {
    closed: AtomicBool,
}

impl CommitGate {
    pub(crate) fn is_open(&self) -> bool {
        !self.closed.load(Ordering::Acquire)
    }

    fn close(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            tracing::warn!(target: "telegram", "an event was lost by a crashed consumer: update positions are no longer saved until the next start, which catches up from the last one saved");
        }
    }
}

/// A consumer's share of the stream. Take events with [`recv`](Self::recv), one at a time,
/// handling each durably before asking for the next.
#[derive(Debug)]
pub struct TelegramEvents {
    receiver: mpsc::UnboundedReceiver<Routed>,
    /// An event was handed out and not yet declared handled (by the next `recv`).
    handling: bool,
    /// The acknowledgement of that event, if it is a checkpoint.
    ack: Option<Arc<CheckpointAck>>,
    gate: Arc<CommitGate>,
}

impl TelegramEvents {
    pub(crate) fn new(receiver: mpsc::UnboundedReceiver<Routed>, gate: Arc<CommitGate>) -> Self {
        Self {
            receiver,
            handling: false,
            ack: None,
            gate,
        }
    }

    /// The next event. Calling it says the previous one was handled durably. Cancel-safe: a
    /// `recv` dropped before it returns loses nothing.
    pub async fn recv(&mut self) -> Option<(SessionName, AccountEvent)> {
        self.handling = false;
        if let Some(ack) = self.ack.take() {
            ack.pass();
        }
        let routed = self.receiver.recv().await?;
        self.handling = true;
        self.ack = routed.ack;
        Some((routed.session, routed.event))
    }

    /// Called by a consumer that starts again after a failure: the event it was handling may be
    /// lost, so no position after it may be saved in this process.
    pub fn recover(&mut self) {
        if self.handling {
            self.handling = false;
            self.ack = None;
            self.gate.close();
        }
    }
}

/// Forwards every event to `consumers` streams until the input ends; a checkpoint is committed
/// once every consumer that still listens has passed it.
pub fn fan_out(
    mut input: TelegramEvents,
    consumers: usize,
) -> (JoinHandle<()>, Vec<TelegramEvents>) {
    let gate = Arc::clone(&input.gate);
    let (senders, outputs): (Vec<_>, Vec<_>) = (0..consumers)
        .map(|_| {
            let (sender, receiver) = mpsc::unbounded_channel::<Routed>();
            (sender, TelegramEvents::new(receiver, Arc::clone(&gate)))
        })
        .unzip();
    let task = tokio::spawn(async move {
        let mut senders = senders;
        loop {
            // Take the next event without passing the previous checkpoint: the consumers pass
            // it (the pass is chained below), not this task.
            let Some(routed) = input.receiver.recv().await else {
                break;
            };
            let listening = senders.len();
            let ack = routed.ack.map(|upstream| {
                CheckpointAck::new(listening, Arc::clone(&gate), move || upstream.pass())
            });
            senders.retain(|sender| {
                sender
                    .send(Routed {
                        session: routed.session.clone(),
                        event: routed.event.clone(),
                        ack: ack.clone(),
                    })
                    .is_ok()
            });
            if let Some(ack) = &ack {
                // A consumer that went away between the count and the send will never pass.
                for _ in senders.len()..listening {
                    ack.pass();
                }
            }
            if senders.is_empty() {
                break;
            }
        }
    });
    (task, outputs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    fn session() -> SessionName {
        SessionName::parse("main").unwrap()
    }

    fn stream() -> (
        mpsc::UnboundedSender<Routed>,
        TelegramEvents,
        Arc<CommitGate>,
    ) {
        let gate = Arc::new(CommitGate::default());
        let (sender, receiver) = mpsc::unbounded_channel();
        (
            sender,
            TelegramEvents::new(receiver, Arc::clone(&gate)),
            gate,
        )
    }

    fn checkpoint(commits: &Arc<AtomicU32>, gate: &Arc<CommitGate>) -> Routed {
        let commits = Arc::clone(commits);
        Routed {
            session: session(),
            event: AccountEvent::Checkpoint(jobbot_core::telegram::Checkpoint(1)),
            ack: Some(CheckpointAck::new(1, Arc::clone(gate), move || {
                commits.fetch_add(1, Ordering::SeqCst);
            })),
        }
    }

    fn event() -> Routed {
        Routed {
            session: session(),
            event: AccountEvent::ConnectionRestored,
            ack: None,
        }
    }

    #[tokio::test]
    async fn a_checkpoint_commits_once_every_consumer_has_passed_it() {
        let commits = Arc::new(AtomicU32::new(0));
        let (sender, input, gate) = stream();
        let (_task, mut outputs) = fan_out(input, 2);
        sender.send(checkpoint(&commits, &gate)).unwrap();
        sender.send(event()).unwrap();
        let (mut first, mut second) = (outputs.remove(0), outputs.remove(0));
        first.recv().await.unwrap();
        second.recv().await.unwrap();
        // Both hold the checkpoint: neither has asked for the next event yet.
        tokio::task::yield_now().await;
        assert_eq!(commits.load(Ordering::SeqCst), 0);
        first.recv().await.unwrap();
        assert_eq!(
            commits.load(Ordering::SeqCst),
            0,
            "one consumer is still busy"
        );
        second.recv().await.unwrap();
        assert_eq!(commits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_consumer_that_crashed_mid_event_stops_every_later_commit() {
        let commits = Arc::new(AtomicU32::new(0));
        let (sender, mut input, gate) = stream();
        sender.send(event()).unwrap();
        sender.send(checkpoint(&commits, &gate)).unwrap();
        input.recv().await.unwrap();
        // The consumer crashed while handling the first event and starts again.
        input.recover();
        input.recv().await.unwrap();
        sender.send(event()).unwrap();
        input.recv().await.unwrap();
        assert_eq!(commits.load(Ordering::SeqCst), 0);
        assert!(!gate.is_open());
    }

    #[tokio::test]
    async fn a_consumer_that_went_away_does_not_hold_checkpoints_back() {
        let commits = Arc::new(AtomicU32::new(0));
        let (sender, input, gate) = stream();
        let (_task, mut outputs) = fan_out(input, 2);
        drop(outputs.pop());
        let mut remaining = outputs.pop().unwrap();
        sender.send(checkpoint(&commits, &gate)).unwrap();
        sender.send(event()).unwrap();
        remaining.recv().await.unwrap();
        remaining.recv().await.unwrap();
        assert_eq!(commits.load(Ordering::SeqCst), 1);
    }
}
