//! A server-side WebSocket over a TCP (or TLS) stream that holds no buffer of its own
//! while it is idle.
//!
//! Reads go into one buffer per worker thread ([`READ_BUFFER_SIZE`]); the
//! [`Reader`] decodes the frames where they lie and keeps only an incomplete frame's
//! bytes. Writes are gathered into one buffer per worker thread, lent to the socket
//! as its [`Socket::unsent`] for one round of writing, and handed to the kernel at
//! once. A socket keeps a vector of its own only while the kernel cannot take
//! everything, which is also what tells the connection to stop queueing more; a
//! connection whose writes the kernel takes whole allocates nothing to write.
//!
//! With permessage-deflate agreed, data frames of at least the configured size go
//! out compressed; a message that many connections receive comes compressed
//! already, done once for all of them.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::ops::ControlFlow;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use heartwire_core::DisconnectReason;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::deflate::{self, Agreement};
use super::reader::Reader;
use crate::handover::state::{DeflateState, ReaderState};
use crate::stream::Stream;

/// What a socket holds besides its stream, as a live upgrade hands it over.
#[derive(Debug)]
pub(crate) struct SocketState {
    /// What the reader keeps between reads.
    pub(crate) reader: ReaderState,
    /// Encoded frames the kernel has not taken.
    pub(crate) unsent: Vec<u8>,
    /// permessage-deflate as agreed.
    pub(crate) deflate: Option<DeflateState>,
}

/// Bytes taken from the kernel per read, into a buffer shared by every connection
/// of a worker thread.
pub(crate) const READ_BUFFER_SIZE: usize = 64 * 1024;

/// Encoded frames gathered before they are handed to the kernel in one write.
pub(crate) const WRITE_BATCH_SIZE: usize = 64 * 1024;

/// The largest write buffer a worker thread keeps between rounds; one grown larger
/// (a large message went through it) is freed.
const KEPT_WRITE_CAPACITY: usize = 2 * WRITE_BATCH_SIZE;

thread_local! {
    static READ_BUFFER: RefCell<Box<[u8]>> =
        RefCell::new(vec![0; READ_BUFFER_SIZE].into_boxed_slice());
    /// The worker thread's write buffer while no socket borrows it.
    static WRITE_BUFFER: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// What a connection's transport is set up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settings {
    /// The largest message taken from the client, inflated.
    pub(crate) max_message_size: usize,
    /// permessage-deflate, when agreed.
    pub(crate) deflate: Option<Deflate>,
}

/// permessage-deflate as agreed with one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deflate {
    /// What was agreed.
    pub(crate) agreement: Agreement,
    /// Messages shorter than this go out uncompressed (32 bits: every socket holds
    /// one, and a larger threshold compresses nothing anyway).
    pub(crate) min_size: u32,
}

impl Deflate {
    /// permessage-deflate as agreed, compressing messages of `min_size` bytes and more.
    pub(crate) fn new(agreement: Agreement, min_size: usize) -> Self {
        Self {
            agreement,
            min_size: u32::try_from(min_size).unwrap_or(u32::MAX),
        }
    }

    /// Whether a message of `len` bytes goes out compressed.
    fn compresses(self, len: usize) -> bool {
        u32::try_from(len).is_ok_and(|len| len >= self.min_size)
    }
}

/// One WebSocket connection's transport. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct Socket {
    stream: Stream,
    reader: Reader,
    deflate: Option<Deflate>,
    /// Encoded frames not yet taken by the kernel.
    unsent: Vec<u8>,
    /// A close frame has been queued: nothing may follow it.
    close_queued: bool,
}

impl Socket {
    /// Wraps an upgraded stream; `early_input` is what the client sent right after
    /// its handshake request.
    pub(crate) fn new(stream: Stream, early_input: Bytes, settings: Settings) -> Self {
        let inflates = settings.deflate.is_some();
        Self {
            stream,
            reader: Reader::with_input(settings.max_message_size, inflates, &early_input),
            deflate: settings.deflate,
            unsent: Vec::new(),
            close_queued: false,
        }
    }

    /// What another process needs to go on with this socket: `None` over TLS (the
    /// session's keys stay in this process) or once a close frame went either way.
    pub(crate) fn hand_over(&self) -> Option<SocketState> {
        if !matches!(self.stream, Stream::Plain(_)) || self.close_queued {
            return None;
        }
        Some(SocketState {
            reader: self.reader.hand_over()?,
            unsent: self.unsent.clone(),
            deflate: self.deflate.map(|deflate| DeflateState {
                window_bits: deflate.agreement.window_bits,
                min_size: usize::try_from(deflate.min_size).unwrap_or(usize::MAX),
            }),
        })
    }

    /// Lends the TCP socket's descriptor to a live upgrade, taken out of this process's
    /// reactor: the connection's own, not a duplicate, so that a process near its
    /// open-files limit can hand over every connection. Until [`give_back`](Self::give_back)
    /// the socket neither reads nor writes. `None` over TLS; an error loses the socket.
    pub(crate) fn lend(&mut self) -> Option<std::io::Result<OwnedFd>> {
        if !matches!(self.stream, Stream::Plain(_)) {
            return None;
        }
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Lent) else {
            unreachable!("matched above");
        };
        Some(tcp.into_std().map(OwnedFd::from))
    }

    /// Takes back the descriptor lent to a live upgrade that failed, into this
    /// process's reactor (so it must be called within the runtime).
    pub(crate) fn give_back(&mut self, fd: OwnedFd) -> std::io::Result<()> {
        let tcp = TcpStream::from_std(std::net::TcpStream::from(fd))?;
        self.stream = Stream::Plain(tcp);
        Ok(())
    }

    /// Goes on with a socket another process handed over.
    pub(crate) fn resume(stream: TcpStream, state: SocketState, max_message_size: usize) -> Self {
        let deflate = state.deflate.map(|deflate| {
            let agreement = Agreement {
                window_bits: deflate.window_bits,
            };
            Deflate::new(agreement, deflate.min_size)
        });
        Self {
            stream: Stream::Plain(stream),
            reader: Reader::resume(max_message_size, deflate.is_some(), state.reader),
            deflate,
            unsent: state.unsent,
            close_queued: false,
        }
    }

    /// Whether a message has begun and not ended (see [`Reader::holds_incomplete`]).
    pub(crate) fn holds_incomplete(&self) -> bool {
        self.reader.holds_incomplete()
    }

    /// Passes each complete message to `on_message` until it breaks: first those
    /// already read and kept undecoded, else those of one read from the socket.
    /// Returns `false` at the end of the stream.
    pub(crate) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        on_message: &mut impl FnMut(Message) -> ControlFlow<()>,
    ) -> Poll<Result<bool, DisconnectReason>> {
        if self.reader.has_undecoded() {
            self.reader.feed(&mut [], on_message)?;
            return Poll::Ready(Ok(true));
        }
        READ_BUFFER.with_borrow_mut(|buffer| {
            let mut read = ReadBuf::new(buffer);
            match Pin::new(&mut self.stream).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(err)) => {
                    return Poll::Ready(Err(DisconnectReason::Transport(err.to_string())));
                }
                Poll::Ready(Ok(())) => {}
            }
            let length = read.filled().len();
            self.reader.feed(&mut buffer[..length], on_message)?;
            Poll::Ready(Ok(length > 0))
        })
    }

    /// Whether more frames may be queued now: the kernel took everything so far
    /// short of a batch, and no close frame has been queued.
    pub(crate) fn wants_more(&self) -> bool {
        !self.close_queued && self.unsent.len() < WRITE_BATCH_SIZE
    }

    /// Whether frames wait for the kernel to take them.
    pub(crate) fn has_unsent(&self) -> bool {
        !self.unsent.is_empty()
    }

    /// Gathers what is queued next into the worker thread's write buffer, when the
    /// socket holds no vector of its own. Pair it with
    /// [`give_back_write_buffer`](Self::give_back_write_buffer) in the same poll.
    pub(crate) fn borrow_write_buffer(&mut self) {
        if self.unsent.capacity() == 0 {
            self.unsent = WRITE_BUFFER.take();
        }
    }

    /// Gives the socket's vector to the worker thread once the kernel has taken
    /// everything in it; while the kernel has not, the socket keeps it.
    pub(crate) fn give_back_write_buffer(&mut self) {
        if self.unsent.is_empty() && self.unsent.capacity() > 0 {
            let buffer = std::mem::take(&mut self.unsent);
            if buffer.capacity() <= KEPT_WRITE_CAPACITY {
                WRITE_BUFFER.set(buffer);
            }
        }
    }

    /// Encodes a text message that others receive too: `deflated` gives its
    /// compressed form for a window size, made once for all of them.
    pub(crate) fn queue_shared(&mut self, text: &Utf8Bytes, deflated: impl FnOnce(u8) -> Bytes) {
        if self.close_queued {
            return;
        }
        match self.deflate {
            Some(deflate) if deflate.compresses(text.len()) => {
                let payload = deflated(deflate.agreement.window_bits);
                self.encode(OpCode::Data(Data::Text), true, &payload);
            }
            _ => self.encode(OpCode::Data(Data::Text), false, text.as_bytes()),
        }
    }

    /// Encodes `message` to be sent, compressed when that is agreed and worth it.
    /// Whatever follows a close frame is dropped, as RFC 6455 requires.
    pub(crate) fn queue(&mut self, message: &Message) {
        if self.close_queued {
            return;
        }
        let close_payload;
        let (opcode, payload): (OpCode, &[u8]) = match message {
            Message::Text(text) => (OpCode::Data(Data::Text), text.as_bytes()),
            Message::Binary(data) => (OpCode::Data(Data::Binary), data),
            Message::Ping(data) => (OpCode::Control(Control::Ping), data),
            Message::Pong(data) => (OpCode::Control(Control::Pong), data),
            Message::Close(frame) => {
                self.close_queued = true;
                close_payload = frame.as_ref().map(|frame| {
                    let mut payload = u16::from(frame.code).to_be_bytes().to_vec();
                    payload.extend_from_slice(frame.reason.as_bytes());
                    payload
                });
                let payload = close_payload.as_deref().unwrap_or_default();
                (OpCode::Control(Control::Close), payload)
            }
            // Raw frames are never built by the server.
            Message::Frame(_) => return,
        };
        let deflated = match (opcode, self.deflate) {
            (OpCode::Data(_), Some(deflate)) if deflate.compresses(payload.len()) => {
                Some(deflate::deflate(payload, deflate.agreement.window_bits))
            }
            _ => None,
        };
        match deflated {
            Some(deflated) => self.encode(opcode, true, &deflated),
            None => self.encode(opcode, false, payload),
        }
    }

    /// Appends one frame, its first bit of extension (compressed) set or not.
    fn encode(&mut self, opcode: OpCode, compressed: bool, payload: &[u8]) {
        let header = FrameHeader {
            opcode,
            rsv1: compressed,
            ..FrameHeader::default()
        };
        header
            .format(payload.len() as u64, &mut self.unsent)
            .expect("writing to a vector cannot fail");
        self.unsent.extend_from_slice(payload);
    }

    /// Sends a close frame with `code` and `reason` as the only frame, then waits up
    /// to `timeout` for the peer's close (or the end of the stream), dropping
    /// whatever else it sends. The socket closes when this returns.
    pub(crate) async fn close_at_once(mut self, code: u16, reason: &str, timeout: Duration) {
        self.queue(&Message::Close(Some(CloseFrame {
            code: code.into(),
            reason: reason.into(),
        })));
        let handshake = async {
            if poll_fn(|cx| self.poll_write(cx)).await.is_err() {
                return;
            }
            loop {
                let mut answered = false;
                let read = poll_fn(|cx| {
                    self.poll_read(cx, &mut |message| {
                        answered = matches!(message, Message::Close(_));
                        if answered {
                            ControlFlow::Break(())
                        } else {
                            ControlFlow::Continue(())
                        }
                    })
                })
                .await;
                if answered || !matches!(read, Ok(true)) {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(timeout, handshake).await;
    }

    /// Hands queued frames to the kernel until it takes them all (`Ready(Ok)`) or
    /// takes no more for now (`Pending`). On an error what is queued is dropped: the
    /// peer is gone.
    pub(crate) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), DisconnectReason>> {
        while !self.unsent.is_empty() {
            let failed = |reason: String| Poll::Ready(Err(DisconnectReason::Transport(reason)));
            match Pin::new(&mut self.stream).poll_write(cx, &self.unsent) {
                Poll::Ready(Ok(0)) => {
                    self.unsent = Vec::new();
                    return failed("the socket takes no more".into());
                }
                Poll::Ready(Ok(written)) if written == self.unsent.len() => {
                    // Kept for the next frames, or given back to the worker thread.
                    self.unsent.clear();
                }
                Poll::Ready(Ok(written)) => {
                    self.unsent.drain(..written);
                }
                Poll::Ready(Err(err)) => {
                    self.unsent = Vec::new();
                    return failed(err.to_string());
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        // TLS may keep records it could not hand to the kernel yet; TCP keeps nothing.
        match Pin::new(&mut self.stream).poll_flush(cx) {
            Poll::Ready(Err(err)) => Poll::Ready(Err(DisconnectReason::Transport(err.to_string()))),
            ready_or_pending => ready_or_pending.map(|_| Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::task::Poll;

    use bytes::Bytes;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};
    use tokio_tungstenite::tungstenite::Message;

    use super::{Settings, Socket, WRITE_BUFFER};
    use crate::stream::Stream;

    /// A server's socket on loopback, and its client's end.
    async fn connected() -> (Socket, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let settings = Settings {
            max_message_size: 1 << 20,
            deflate: None,
        };
        let socket = Socket::new(Stream::Plain(server), Bytes::new(), settings);
        (socket, client)
    }

    /// The capacity of the worker thread's write buffer, while no socket borrows it.
    fn kept_capacity() -> usize {
        let buffer = WRITE_BUFFER.take();
        let capacity = buffer.capacity();
        WRITE_BUFFER.set(buffer);
        capacity
    }

    #[tokio::test]
    async fn writes_the_kernel_takes_whole_leave_the_socket_no_vector() {
        let (mut socket, mut client) = connected().await;
        for round in 0..3 {
            socket.borrow_write_buffer();
            if round > 0 {
                assert!(socket.unsent.capacity() >= 10, "round {round}: not reused");
            }
            socket.queue(&Message::Ping(Bytes::from_static(b"beat0001")));
            poll_fn(|cx| socket.poll_write(cx)).await.unwrap();
            socket.give_back_write_buffer();
            assert_eq!(socket.unsent.capacity(), 0, "round {round}");
            assert!(kept_capacity() >= 10, "round {round}");
            let mut frame = [0; 10];
            client.read_exact(&mut frame).await.unwrap();
            assert_eq!(frame[..2], [0x89, 8], "round {round}: a Ping of 8 bytes");
            assert_eq!(&frame[2..], b"beat0001", "round {round}");
        }
    }

    #[tokio::test]
    async fn what_the_kernel_leaves_stays_with_the_socket() {
        // The client never reads, so the kernel's buffers fill.
        let (mut socket, _client) = connected().await;
        let message = Message::Binary(Bytes::from(vec![7; 64 * 1024]));
        let mut refused = false;
        for _ in 0..1_000 {
            socket.borrow_write_buffer();
            socket.queue(&message);
            let written = poll_fn(|cx| Poll::Ready(socket.poll_write(cx))).await;
            socket.give_back_write_buffer();
            if written.is_pending() {
                refused = true;
                break;
            }
        }
        assert!(
            refused,
            "the kernel took 64 MB from a client that does not read"
        );
        assert!(socket.has_unsent());
        assert_eq!(kept_capacity(), 0, "the socket's bytes were given away");
        socket.borrow_write_buffer();
        assert!(socket.has_unsent(), "borrowing replaced the bytes left");
    }
}
