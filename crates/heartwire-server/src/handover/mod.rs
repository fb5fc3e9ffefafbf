//! Live upgrade: a running server hands its listening socket and its WebSocket
//! connections to a new process, and clients see nothing — no close, no reconnect,
//! no gap.
//!
//! The old process listens on a Unix socket (`--upgrade-socket`); the new one
//! connects to it (`--take-over`). Then, over that socket ([`wire`], in the versioned
//! format of [`state`]):
//! 1. the old process stops accepting and sends the format's version with the
//!    listening socket; the new one answers `ready`, or `refuse` when it does not
//!    know the version — it keeps the listening socket and the old process closes
//!    its connections with 1012 as at shutdown, so clients come back and resume;
//! 2. the old process asks every WebSocket connection to pause: each task, between
//!    two polls, queues what waits (replies and mailbox items) into its unsent bytes
//!    and offers its state and lends its socket ([`Parked`]: its own descriptor, out of
//!    the reactor, so a handover needs no descriptor more per connection), or says it
//!    stays ([`Answer::Stays`]):
//!    over TLS (rustls does not export its session keys), closing, or on an endpoint
//!    that is not handed over (`/ws/{facility}`), as are event streams (`/sse`);
//! 3. it sends the in-process broker's channels (epoch, seq, history) and each
//!    connection with its socket ([`send`]); the new process restores the channels,
//!    builds each connection from its state, subscribes it again from the position
//!    of the last message it was sent, and answers `adopted` ([`adopt`]);
//! 4. the old process answers `commit`, lets go of the connections and ends, after
//!    closing with 1012 those that stayed; the new process starts driving them, and
//!    accepting.
//!
//! If the new process refuses, fails, or does not answer within [`CONFIRM_TIMEOUT`],
//! the old one gives every paused connection its socket back, and accepts again: nothing
//! was lost, since a paused connection neither reads nor writes, and its mailbox keeps
//! what is delivered meanwhile. The new process drives nothing before `commit`.

pub(crate) mod adopt;
mod notify;
pub(crate) mod send;
pub(crate) mod state;
mod wire;

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

use state::ConnectionState;

/// How long the old process waits for the new one at each step, and the connections
/// for their answers; past it, the old process goes on serving.
pub(crate) const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// What a server shares with its connections for a live upgrade: whether it accepts,
/// and where paused connections offer themselves.
#[derive(Debug)]
pub(crate) struct Handover {
    /// Whether the listener accepts: not while a handover is under way.
    accepting: watch::Sender<bool>,
    /// Where the answers of the connections go, while a handover asks for them.
    answers: Mutex<Option<mpsc::UnboundedSender<Answer>>>,
}

impl Default for Handover {
    fn default() -> Self {
        Self {
            accepting: watch::Sender::new(true),
            answers: Mutex::default(),
        }
    }
}

/// A connection's answer to a handover.
#[derive(Debug)]
pub(crate) enum Answer {
    /// It paused, and offers itself.
    Parked(Box<Parked>),
    /// It is not handed over: it waits, without reading, to be told to go on here or
    /// to stop reading for good (the shutdown then closes it with 1012). It must not
    /// publish into this process's broker once the channels have moved.
    Stays(oneshot::Sender<Verdict>),
}

/// A paused connection: its state, its socket's descriptor (its own, lent), and
/// where to tell it whether it was handed over. Dropped without
/// [`moved`](Self::moved) — the handover failed, gave up or never asked — it gives
/// the descriptor back with [`Verdict::Resume`], so that no path loses a connection.
#[derive(Debug)]
pub(crate) struct Parked {
    pub(crate) state: ConnectionState,
    fd: Option<OwnedFd>,
    verdict: Option<oneshot::Sender<Verdict>>,
}

impl Parked {
    /// A connection paused with `state`, lending `fd`; and the verdict it waits for.
    pub(crate) fn new(state: ConnectionState, fd: OwnedFd) -> (Self, oneshot::Receiver<Verdict>) {
        let (verdict, answer) = oneshot::channel();
        let parked = Self {
            state,
            fd: Some(fd),
            verdict: Some(verdict),
        };
        (parked, answer)
    }

    /// The socket to send to the new process.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_ref().expect("lent until dropped").as_fd()
    }

    /// The new process holds the connection (and its own descriptor of the socket):
    /// this process's descriptor is closed, and the connection told to end.
    pub(crate) fn moved(mut self) {
        drop(self.fd.take());
        if let Some(verdict) = self.verdict.take() {
            let _ = verdict.send(Verdict::Moved);
        }
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        if let Some(verdict) = self.verdict.take() {
            let _ = verdict.send(Verdict::Resume(self.fd.take()));
        }
    }
}

/// What a paused connection is told.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// The handover failed: go on, with the socket's descriptor given back if it was
    /// lent (`None` for a connection that stayed).
    Resume(Option<OwnedFd>),
    /// The new process drives the connection now: end without a word.
    Moved,
    /// The upgrade is done but this connection stayed: read nothing more, and close
    /// with 1012 when the shutdown says so.
    Close,
}

impl Handover {
    /// A paused connection offers itself. Without a handover asking (it gave up), the
    /// verdict's sender is dropped and the connection goes on.
    pub(crate) fn park(&self, parked: Parked) {
        if let Some(answers) = &*self.answers.lock() {
            let _ = answers.send(Answer::Parked(Box::new(parked)));
        }
    }

    /// A connection asked to pause is not handed over: returns the verdict to wait
    /// for, unless no handover asks any more.
    pub(crate) fn stays(&self) -> Option<oneshot::Receiver<Verdict>> {
        let answers = self.answers.lock();
        let (verdict, answer) = oneshot::channel();
        answers.as_ref()?.send(Answer::Stays(verdict)).ok()?;
        Some(answer)
    }

    /// Accepts the next connection, waiting while a handover is under way.
    pub(crate) async fn accept(
        &self,
        listener: &TcpListener,
    ) -> io::Result<(TcpStream, SocketAddr)> {
        let mut accepting = self.accepting.subscribe();
        loop {
            if accepting.wait_for(|open| *open).await.is_err() {
                return std::future::pending().await;
            }
            tokio::select! {
                accepted = listener.accept() => return accepted,
                _ = accepting.wait_for(|open| !*open) => {}
            }
        }
    }

    fn set_accepting(&self, accepting: bool) {
        self.accepting.send_replace(accepting);
    }

    /// Starts collecting the answers of the connections about to be asked.
    fn collect(&self) -> mpsc::UnboundedReceiver<Answer> {
        let (sender, receiver) = mpsc::unbounded_channel();
        *self.answers.lock() = Some(sender);
        receiver
    }

    /// Stops collecting answers.
    fn stop_collecting(&self) {
        *self.answers.lock() = None;
    }
}
