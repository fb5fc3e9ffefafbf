//! The part of a connection that others hold: a bounded queue of what is to be
//! sent to it, and the signals that wake it.
//!
//! The broker delivers into a [`Mailbox`] without ever waiting: when the queue is
//! full, the client is not reading, so the connection is marked a slow consumer and
//! woken to close itself. The server's shutdown reaches every connection the same way.
//! The queue allocates only while it holds something, so an idle connection costs a
//! few words here.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Context;

use futures_util::task::AtomicWaker;
use heartwire_core::ErrorCode;
use parking_lot::Mutex;

use crate::auth::{Refusal, Verified};
use crate::id::ConnectionId;
use crate::publication::Publication;

/// Something to be sent to one connection.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A message on a channel the connection subscribed to.
    Message(Arc<Publication>),
    /// A subscription is in place; `seq` is the channel's latest sequence number.
    Subscribed {
        /// The channel.
        channel: Arc<str>,
        /// The channel's latest sequence number.
        seq: u64,
        /// The channel's epoch.
        epoch: Arc<str>,
        /// Whether the messages missed since the asked position follow (only when a
        /// position was asked for).
        recovered: Option<bool>,
    },
    /// A publish with an id was accepted as message `seq`.
    Ack {
        /// The publish's id.
        id: String,
        /// The sequence number the message got.
        seq: u64,
        /// The channel's epoch, in which `seq` counts.
        epoch: Arc<str>,
        /// The id had been published before: nothing was published again.
        duplicate: bool,
    },
    /// The members of a channel, answering a `presence` request.
    Presence {
        /// The channel.
        channel: Arc<str>,
        /// The subscribed connections, on every node, in the order of their sessions.
        members: Vec<Member>,
    },
    /// Someone joined (`joined`) or left a channel with presence: an anonymous
    /// connection that subscribed or left, or a user whose first connection
    /// subscribed or whose last one left.
    PresenceChange {
        /// The channel.
        channel: Arc<str>,
        /// The connection that joined or left, and its user.
        member: Member,
        /// Whether it joined (else it left).
        joined: bool,
    },
    /// A request of this connection failed.
    Error {
        /// What kind of failure.
        code: ErrorCode,
        /// A sentence naming it.
        reason: String,
        /// The id of the publish that failed, if it had one.
        id: Option<String>,
    },
    /// The application ended a subscription through the server API.
    Unsubscribe {
        /// The channel.
        channel: Arc<str>,
    },
    /// The token of a `refresh` was verified, or refused.
    Refreshed(Box<Result<Verified, Refusal>>),
}

/// A member of a channel with presence: a connection, and its user when it was
/// identified.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Member {
    /// The connection.
    pub session: ConnectionId,
    /// The connection's user; `None` when anonymous.
    pub user: Option<Arc<str>>,
}

/// A signal that ends the connection, checked before anything else in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Signal {
    /// The queue overflowed: the client does not read.
    SlowConsumer,
    /// The server shuts down; the client may come back after this many milliseconds.
    Shutdown { reconnect_after_ms: u64 },
    /// The application disconnects it through the server API, with this close code
    /// and reason.
    Disconnect { code: u16, reason: Arc<str> },
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Outbound>,
    /// Boxed: few connections ever get one, and every connection has a mailbox.
    signal: Option<Box<Signal>>,
}

/// A connection's bounded inbound queue and wake-up. See the [module docs](self).
#[derive(Debug)]
pub struct Mailbox {
    id: ConnectionId,
    capacity: usize,
    state: Mutex<State>,
    waker: AtomicWaker,
    /// A live upgrade asks the connection to pause and hand itself over; unlike a
    /// signal, deliveries go on (kept for the connection if the upgrade fails). Read
    /// at every wake of the connection, so it is an atomic, not behind the lock.
    handover: AtomicBool,
}

impl Mailbox {
    pub(crate) fn new(id: ConnectionId, capacity: usize) -> Self {
        Self {
            id,
            capacity,
            state: Mutex::default(),
            waker: AtomicWaker::new(),
            handover: AtomicBool::new(false),
        }
    }

    /// The connection this mailbox belongs to.
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// Queues `item` for the connection. Returns `false`, and marks the connection a
    /// slow consumer, when the queue is full or the connection is ending.
    pub fn deliver(&self, item: Outbound) -> bool {
        self.deliver_all([item])
    }

    /// Queues a subscription's confirmation and the messages it recovers, all at once.
    ///
    /// The recovered messages may take the queue past its bound once (they are at most
    /// one channel's history); a connection already at its bound is marked a slow
    /// consumer instead. Returns whether the items were queued.
    pub fn deliver_all(&self, items: impl IntoIterator<Item = Outbound>) -> bool {
        let accepted = {
            let mut state = self.state.lock();
            if state.signal.is_some() {
                false
            } else if state.queue.len() >= self.capacity {
                state.signal = Some(Box::new(Signal::SlowConsumer));
                state.queue = VecDeque::new();
                false
            } else {
                state.queue.extend(items);
                true
            }
        };
        self.waker.wake();
        accepted
    }

    /// Asks the connection to close because the server shuts down.
    pub(crate) fn shut_down(&self, reconnect_after_ms: u64) {
        self.state
            .lock()
            .signal
            .get_or_insert_with(|| Box::new(Signal::Shutdown { reconnect_after_ms }));
        self.waker.wake();
    }

    /// Asks the connection to close with `code` and `reason` (the server API's
    /// disconnect).
    pub(crate) fn disconnect(&self, code: u16, reason: Arc<str>) {
        self.state
            .lock()
            .signal
            .get_or_insert_with(|| Box::new(Signal::Disconnect { code, reason }));
        self.waker.wake();
    }

    /// Asks the connection to pause and hand itself over (a live upgrade).
    pub(crate) fn ask_handover(&self) {
        self.handover.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Whether a handover was asked for, forgetting the ask.
    pub(crate) fn take_handover_ask(&self) -> bool {
        self.handover.load(Ordering::Relaxed) && self.handover.swap(false, Ordering::AcqRel)
    }

    /// Registers the connection's task to be woken by the next delivery or signal.
    pub(crate) fn register(&self, cx: &Context<'_>) {
        self.waker.register(cx.waker());
    }

    /// The pending signal, if any.
    pub(crate) fn signal(&self) -> Option<Signal> {
        self.state.lock().signal.as_deref().cloned()
    }

    /// Takes the oldest queued item.
    pub(crate) fn take(&self) -> Option<Outbound> {
        let mut state = self.state.lock();
        let item = state.queue.pop_front();
        if state.queue.is_empty() && state.queue.capacity() > 16 {
            // A burst is over: give its memory back.
            state.queue = VecDeque::new();
        }
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(seq: u64) -> Outbound {
        Outbound::Ack {
            id: String::new(),
            seq,
            epoch: Arc::from("e"),
            duplicate: false,
        }
    }

    #[test]
    fn overflow_marks_a_slow_consumer_and_drops_the_backlog() {
        let mailbox = Mailbox::new(1, 2);
        assert!(mailbox.deliver(ack(1)));
        assert!(mailbox.deliver(ack(2)));
        assert!(!mailbox.deliver(ack(3)));
        assert_eq!(mailbox.signal(), Some(Signal::SlowConsumer));
        assert!(mailbox.take().is_none());
        assert!(!mailbox.deliver(ack(4)));
    }

    #[test]
    fn items_come_out_in_order() {
        let mailbox = Mailbox::new(1, 8);
        for seq in 1..=5 {
            assert!(mailbox.deliver(ack(seq)));
        }
        let seqs: Vec<_> = std::iter::from_fn(|| mailbox.take())
            .map(|item| match item {
                Outbound::Ack { seq, .. } => seq,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_recovery_may_pass_the_bound_once_but_not_when_already_full() {
        let mailbox = Mailbox::new(1, 3);
        assert!(mailbox.deliver_all((1..=10).map(ack)));
        assert_eq!(std::iter::from_fn(|| mailbox.take()).count(), 10);
        for seq in 1..=3 {
            assert!(mailbox.deliver(ack(seq)));
        }
        assert!(!mailbox.deliver_all([ack(4)]));
        assert_eq!(mailbox.signal(), Some(Signal::SlowConsumer));
    }

    #[test]
    fn first_signal_wins() {
        let mailbox = Mailbox::new(1, 1);
        mailbox.shut_down(250);
        assert!(!mailbox.deliver(ack(1)));
        assert_eq!(
            mailbox.signal(),
            Some(Signal::Shutdown {
                reconnect_after_ms: 250
            })
        );
    }
}
