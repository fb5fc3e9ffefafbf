//! The driver of one WebSocket connection: socket, liveness machine, mailbox, timer.
//!
//! A connection is one task that polls, in this order, until the liveness machine says
//! it is over:
//! 1. everything the socket holds (so a Pong waiting in the buffer counts before any
//!    deadline is judged), answering heartbeat conventions and passing data to the
//!    [`Endpoint`];
//! 2. the mailbox's signals (slow consumer, shutdown), which start a close;
//! 3. the liveness deadline and the actions it yields;
//! 4. writes: replies first, then mailbox items, gathered into batches and only as
//!    fast as the kernel takes them. A client that stops reading fills its mailbox
//!    and is closed as a slow consumer; its backlog is dropped, not kept.
//!
//! Reading pauses while too many replies wait to be written, so a client that floods
//! requests without reading the answers is slowed by TCP, not buffered for.
//!
//! The timer is re-armed lazily: traffic only moves the deadline later, so the timer
//! fires at the old deadline, finds nothing due, and is set to the new one. A busy
//! connection thus costs no timer work per frame.
//!
//! The decisions are the [`Handler`]'s (in `handler.rs`), which reads no clock and
//! writes into any [`FrameSink`](handler::FrameSink): the socket here, a list in the tests of `pair`, which
//! step a client's connection machine against it on synthetic time.

use std::collections::VecDeque;
use std::future::Future;
use std::ops::ControlFlow;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{self, Poll, ready};
use std::time::{Instant, SystemTime};

use heartwire_core::DisconnectReason;
use heartwire_core::protocol::session_name;

use std::os::fd::OwnedFd;

use tokio::sync::oneshot;

use super::auth::Identity;
use super::endpoint::kind::EndpointKind;
use super::endpoint::{Context, Endpoint, Outgoing};
use super::handover::state::ConnectionState;
use super::handover::{Handover, Parked, Verdict};
use super::slot::Slot;
use super::timers::Tick;
use super::websocket::{Socket, SocketState};

mod handler;
mod rare;

use handler::{FrameSink, Handler, Resumed};

/// Replies that may wait to be written before reading pauses.
const REPLY_HIGH_WATER: usize = 32;
/// Socket reads per wake-up before the task yields to others.
const READ_BUDGET: usize = 4;
/// Batches written per wake-up before the task yields to others.
const WRITE_BUDGET: usize = 16;
/// Rounds of the poll loop per wake-up before the task yields to others.
const ROUND_BUDGET: usize = 8;
/// How long a connection asked to pause for a live upgrade waits for the answers to
/// its requests before it says it stays (the upgrade waits twice as long).
const PAUSE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// Takes over a connection another process handed over (a live upgrade): `state`
/// is what it was when that process paused it, `stream` its socket. The endpoint
/// is made by `endpoint` once the connection has its mailbox.
pub(crate) fn resume<E: Endpoint>(
    stream: tokio::net::TcpStream,
    state: ConnectionState,
    endpoint: impl FnOnce(&Context) -> E,
    mut slot: Slot,
) -> ConnectionTask<E> {
    let max_message_size = slot.server().config.limits.max_message_size;
    let identity = state.identity.map(Box::new);
    let user = identity
        .as_ref()
        .map(|identity| Arc::from(identity.user.as_str()));
    slot.adopt(state.session, E::KIND, user);
    let socket_state = SocketState {
        reader: state.reader,
        unsent: state.unsent,
        deflate: state.deflate,
    };
    let now = Instant::now();
    let handler = Handler::resume(
        endpoint,
        Context::new(slot, identity),
        Resumed {
            liveness: state.liveness,
            incomplete_for: state.incomplete_for,
            rate: state.rate,
        },
        now,
    );
    let connection = Connection {
        socket: Socket::resume(stream, socket_state, max_message_size),
        armed: None,
        handler,
    };
    ConnectionTask { connection }
}

/// Opens a connection of `identity` (`None`: anonymous) on `socket`: the endpoint
/// greets and subscribes, and the returned task drives the connection until it ends.
pub(crate) fn start<E: Endpoint>(
    socket: Socket,
    endpoint: E,
    identity: Option<Box<Identity>>,
    mut slot: Slot,
) -> ConnectionTask<E> {
    let user = identity
        .as_ref()
        .map(|identity| Arc::from(identity.user.as_str()));
    slot.open(E::KIND, user);
    let now = Instant::now();
    let connection = Connection {
        socket,
        armed: None,
        handler: Handler::open(endpoint, Context::new(slot, identity), now),
    };
    ConnectionTask { connection }
}

/// A connection's task: the connection, nothing else, since an idle connection's
/// memory is mostly this. When the task ends, its slot is given back and the
/// connection unregistered.
pub(crate) struct ConnectionTask<E> {
    connection: Connection<E>,
}

impl<E: Endpoint> Future for ConnectionTask<E> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut task::Context<'_>) -> Poll<()> {
        let rare = self.connection.handler.rare.existing_mut();
        if let Some(parked) = rare.and_then(|rare| rare.parked.as_mut()) {
            let verdict = ready!(Pin::new(parked).poll(cx));
            self.connection.handler.rare.get_mut().parked = None;
            match verdict {
                Ok(Verdict::Resume(Some(fd))) => {
                    if let Err(err) = self.connection.socket.give_back(fd) {
                        // Reading the lent stream fails next, which ends the connection.
                        tracing::warn!(%err, "live upgrade: a socket given back could not be polled again");
                    }
                }
                // Stayed, and goes on; or no handover asked any more.
                Ok(Verdict::Resume(None)) | Err(_) => {}
                Ok(Verdict::Close) => {
                    // The channels have moved: nothing more is read (nor published
                    // here); the shutdown that follows closes the connection with 1012.
                    self.connection.handler.reading = false;
                }
                Ok(Verdict::Moved) => {
                    let handler = &mut self.connection.handler;
                    handler.endpoint.on_close(&mut handler.context);
                    handler.context.log_end(&"handed over to the new process");
                    // The socket was lent and is closed in this process: the new
                    // process holds its own descriptor.
                    return Poll::Ready(());
                }
            }
        }
        let handler = &mut self.connection.handler;
        if handler.context.mailbox().take_handover_ask() {
            handler.rare.get_mut().pausing = Some(Instant::now());
        }
        if let Some(since) = handler.rare.get().and_then(|rare| rare.pausing) {
            // Reading stops until the answers its requests wait for are in.
            let waits = self.connection.handler.endpoint.awaits_answers()
                && since.elapsed() < PAUSE_PATIENCE;
            if !waits {
                self.connection.handler.rare.get_mut().pausing = None;
                let context = &self.connection.handler.context;
                let server = context.server().clone();
                let address = context.address();
                if let Some(parked) = self.connection.park(address, &server.handover) {
                    self.connection.handler.rare.get_mut().parked = Some(parked);
                    return self.poll(cx);
                }
            }
        }
        let reason = ready!(self.connection.poll_drive(cx));
        let handler = &mut self.connection.handler;
        handler.endpoint.on_close(&mut handler.context);
        handler.context.server().metrics.disconnected(&reason);
        if let Some(silent_for) = handler.liveness.detected_after() {
            // Reaped for silence: its client may report the session when it is back.
            let session = (E::KIND == EndpointKind::Native)
                .then(|| session_name(handler.context.mailbox().id()));
            let server = &handler.context.server();
            let liveness = &server.metrics.liveness;
            liveness.reaped(session, silent_for, Instant::now(), &*server.broker);
        }
        handler.context.log_end(&reason);
        // The task drops its future now, and with it the slot.
        Poll::Ready(())
    }
}

/// Where reading stopped in one round.
enum Reading {
    /// The socket has nothing more for now, or reading is over.
    Idle,
    /// Too many replies wait to be written; the rest of what was read stays undecoded.
    Paused,
    /// The read budget ran out with more to read.
    OutOfBudget,
}

struct Connection<E> {
    socket: Socket,
    /// The tick the server's timers wake this connection at, while it has not come.
    armed: Option<Tick>,
    handler: Handler<E>,
}

impl<E> Drop for Connection<E> {
    fn drop(&mut self) {
        if let Some(tick) = self.armed {
            let context = &self.handler.context;
            context.server().timers.cancel(context.mailbox().id(), tick);
        }
    }
}

impl<E: Endpoint> Connection<E> {
    /// Pauses for a live upgrade, between two polls: queues what waits (replies,
    /// mailbox items) into the unsent bytes, and offers the connection's state and
    /// socket to `handover`. A connection that is not handed over (over TLS,
    /// closing, or on an endpoint that is not) says it stays, and waits too, reading
    /// nothing. Returns the verdict to wait for; `None` when no handover asks any more.
    fn park(
        &mut self,
        address: std::net::IpAddr,
        handover: &Handover,
    ) -> Option<oneshot::Receiver<Verdict>> {
        let Some((state, fd)) = self.offer(address) else {
            return handover.stays();
        };
        let (parked, answer) = Parked::new(state, fd);
        handover.park(parked);
        Some(answer)
    }

    /// The connection's state and its socket's descriptor, lent, when it can be handed
    /// over. Everything that can say no is asked before the socket is lent.
    fn offer(&mut self, address: std::net::IpAddr) -> Option<(ConnectionState, OwnedFd)> {
        let now = Instant::now();
        let handler = &mut self.handler;
        if !handler.reading || handler.liveness.is_closing() || handler.liveness.is_over() {
            return None;
        }
        // Checked before anything is queued, so a connection that stays loses nothing.
        handler.endpoint.hand_over()?;
        self.socket.hand_over()?;
        handler.gather(&mut Everything(&mut self.socket));
        // Taken after the gather: the positions then count every message queued into
        // the unsent bytes, and a confirmation queued there too. Taken before, a
        // subscription confirmed by an item still in the mailbox went over with no
        // position, and the new process subscribed it afresh, past the messages
        // published meanwhile.
        let endpoint = handler.endpoint.hand_over()?;
        let socket = self.socket.hand_over()?;
        let liveness = handler.liveness.snapshot(now)?;
        let state = ConnectionState {
            session: handler.context.mailbox().id(),
            address,
            identity: handler.context.identity.as_deref().cloned(),
            endpoint,
            liveness,
            incomplete_for: handler.incomplete_for(now),
            rate: handler.rate_state(now),
            deflate: socket.deflate,
            reader: socket.reader,
            unsent: socket.unsent,
        };
        match self.socket.lend()? {
            Ok(fd) => Some((state, fd)),
            Err(err) => {
                // Reading the lent stream fails next, which ends the connection.
                tracing::warn!(%err, "live upgrade: a socket could not be taken out of the reactor");
                None
            }
        }
    }

    fn poll_drive(&mut self, cx: &mut task::Context<'_>) -> Poll<DisconnectReason> {
        self.handler.context.mailbox().register(cx);
        for _ in 0..ROUND_BUDGET {
            let now = Instant::now();
            let wall = SystemTime::now();
            let reading = self.poll_read(cx, now);
            self.handler.advance(now, wall);
            let write_budget_left = self.poll_write(cx);
            if let Some(reason) = self.handler.take_ended() {
                return Poll::Ready(reason);
            }
            if self.handler.liveness.is_over() {
                continue;
            }
            if !self.arm_timer(cx, now, wall) {
                continue;
            }
            match reading {
                Reading::OutOfBudget => break,
                // The replies that paused reading are written: read on.
                Reading::Paused if self.handler.context.replies.len() < REPLY_HIGH_WATER => {
                    continue;
                }
                Reading::Paused | Reading::Idle => {}
            }
            if !write_budget_left {
                break;
            }
            if self.handler.context.replies.is_empty() {
                // An idle connection keeps no reply queue.
                self.handler.context.replies = VecDeque::new();
            }
            return Poll::Pending;
        }
        // Out of budget with work left: let other connections, timers and I/O
        // readiness go first, as `tokio::task::yield_now` does. (A plain self-wake
        // would be polled again before the runtime looks at I/O.)
        let _ = pin!(tokio::task::yield_now()).poll(cx);
        Poll::Pending
    }

    /// Reads what the socket holds, until it has nothing more, too many replies wait,
    /// or the read budget runs out.
    fn poll_read(&mut self, cx: &mut task::Context<'_>, now: Instant) -> Reading {
        let handler = &mut self.handler;
        if handler
            .rare
            .get()
            .is_some_and(|rare| rare.pausing.is_some())
        {
            return Reading::Idle;
        }
        for _ in 0..READ_BUDGET {
            if !handler.reading || handler.liveness.is_over() {
                return Reading::Idle;
            }
            if handler.context.replies.len() >= REPLY_HIGH_WATER {
                return Reading::Paused;
            }
            let on_message = &mut |message| {
                handler.on_message(message, now);
                if handler.context.replies.len() >= REPLY_HIGH_WATER {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            };
            match self.socket.poll_read(cx, on_message) {
                Poll::Ready(Ok(true)) => {}
                Poll::Ready(Ok(false)) => {
                    handler.reading = false;
                    handler
                        .liveness
                        .handle_transport_end(DisconnectReason::Transport(
                            "connection closed without a close frame".into(),
                        ));
                }
                Poll::Ready(Err(reason)) => {
                    handler.reading = false;
                    handler.start_close(reason, None, now);
                }
                Poll::Pending => return Reading::Idle,
            }
            handler.note_incomplete(self.socket.holds_incomplete(), now);
        }
        Reading::OutOfBudget
    }

    /// Hands replies, then mailbox items, to the socket in batches while the kernel
    /// takes them. Returns `false` when the write budget ran out.
    ///
    /// What the kernel has not taken goes first: while a full batch waits, nothing is
    /// gathered, and the kernel's readiness (registered by the pending write) is what
    /// wakes the task for the rest. Gathering only once the socket has taken
    /// everything means no reply or item is left behind without a wake-up.
    fn poll_write(&mut self, cx: &mut task::Context<'_>) -> bool {
        let handler = &mut self.handler;
        let mut budget_left = false;
        self.socket.borrow_write_buffer();
        for _ in 0..WRITE_BUDGET {
            match self.socket.poll_write(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(reason)) => {
                    handler.context.replies.clear();
                    handler.liveness.handle_transport_end(reason);
                    budget_left = true;
                    break;
                }
                Poll::Pending => {
                    budget_left = true;
                    break;
                }
            }
            if handler.gather(&mut self.socket) == 0 {
                budget_left = true;
                break;
            }
        }
        self.socket.give_back_write_buffer();
        // A close after a read error cannot be answered: once it is out, we are done.
        let written = handler.context.replies.is_empty() && !self.socket.has_unsent();
        if !handler.reading && handler.liveness.is_closing() && written {
            handler
                .liveness
                .handle_transport_end(DisconnectReason::Transport(
                    "closed after a read error".into(),
                ));
            handler.take_actions();
        }
        budget_left
    }

    /// Asks the server's timers to wake the task at the handler's next deadline.
    /// Returns `false` when that deadline has passed already, so the caller goes
    /// round again.
    ///
    /// The wake-up asked for stays while it has not come and the deadline is not
    /// earlier: traffic moves the deadline later, and the task woken early finds
    /// nothing due and asks again. The waker is the task's own: any of its wakers
    /// wakes it.
    fn arm_timer(&mut self, cx: &mut task::Context<'_>, now: Instant, wall: SystemTime) -> bool {
        let Some(deadline) = self.handler.poll_timeout(now, wall) else {
            return true;
        };
        if deadline <= now {
            return false;
        }
        let context = &self.handler.context;
        let timers = &context.server().timers;
        let tick = timers.tick_of(deadline);
        let came = self
            .armed
            .is_some_and(|armed| timers.instant_of(armed) <= now);
        if came || self.armed.is_none_or(|armed| tick < armed) {
            timers.wake_at(context.mailbox().id(), tick, self.armed, cx.waker());
            self.armed = Some(tick);
        }
        true
    }
}

/// A sink that takes every frame: what waits is queued at once before a handover.
struct Everything<'a>(&'a mut Socket);

impl FrameSink for Everything<'_> {
    fn wants_more(&self) -> bool {
        true
    }

    fn queue(&mut self, outgoing: Outgoing) {
        FrameSink::queue(self.0, outgoing);
    }
}

#[cfg(test)]
mod pair;
