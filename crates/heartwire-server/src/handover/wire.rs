//! The framing of the handover's Unix socket: each [`Message`] is a 4-byte
//! big-endian length and its JSON, and a message that carries a file descriptor (the
//! listening socket, a connection's socket) sends it with `SCM_RIGHTS` in the same
//! `sendmsg` as its first bytes. Descriptors arrive in the order they were sent, so
//! the receiver pairs each such message with the next descriptor it got.
//!
//! The socket is blocking, with a timeout on every read: the handover runs on a
//! blocking thread of its own on both sides.

use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use super::state::Message;

/// The largest message taken (a connection with a full write batch and a large
/// fragmented message is far below it).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// One end of the handover's socket.
#[derive(Debug)]
pub(crate) struct Wire {
    socket: UnixStream,
    /// Bytes received and not yet taken as a message.
    received: Vec<u8>,
    /// Descriptors received and not yet taken.
    fds: VecDeque<OwnedFd>,
}

impl Wire {
    /// Wraps a connected socket; every read gives up after `timeout`.
    pub(crate) fn new(socket: UnixStream, timeout: Duration) -> io::Result<Self> {
        socket.set_nonblocking(false)?;
        socket.set_read_timeout(Some(timeout))?;
        Ok(Self {
            socket,
            received: Vec::new(),
            fds: VecDeque::new(),
        })
    }

    /// Sends `message`, with `fd` when given.
    pub(crate) fn send(&mut self, message: &Message, fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
        let json = serde_json::to_vec(message).map_err(io::Error::other)?;
        let mut bytes = Vec::with_capacity(4 + json.len());
        bytes.extend_from_slice(
            &u32::try_from(json.len())
                .map_err(io::Error::other)?
                .to_be_bytes(),
        );
        bytes.extend_from_slice(&json);
        let sent = match fd {
            Some(fd) => {
                let fds = [fd];
                let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
                let mut control = SendAncillaryBuffer::new(&mut space);
                control.push(SendAncillaryMessage::ScmRights(&fds));
                rustix::net::sendmsg(
                    &self.socket,
                    &[IoSlice::new(&bytes)],
                    &mut control,
                    SendFlags::NOSIGNAL,
                )?
            }
            None => 0,
        };
        self.socket.write_all(&bytes[sent..])
    }

    /// Receives the next message, and the descriptor that came with it when it
    /// carries one ([`Message::carries_fd`]).
    pub(crate) fn receive(&mut self) -> io::Result<(Message, Option<OwnedFd>)> {
        loop {
            if let Some(message) = self.take_message()? {
                let fd = if message.carries_fd() {
                    // The descriptor came with the message's first bytes.
                    Some(self.fds.pop_front().ok_or_else(|| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            "a message came without its socket",
                        )
                    })?)
                } else {
                    None
                };
                return Ok((message, fd));
            }
            self.fill()?;
        }
    }

    /// The first complete message of what was received, if there is one.
    fn take_message(&mut self) -> io::Result<Option<Message>> {
        let Some(header) = self.received.first_chunk::<4>() else {
            return Ok(None);
        };
        let length = u32::from_be_bytes(*header) as usize;
        if length > MAX_MESSAGE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "handover message too large",
            ));
        }
        if self.received.len() < 4 + length {
            return Ok(None);
        }
        let message = serde_json::from_slice(&self.received[4..4 + length]);
        self.received.drain(..4 + length);
        message
            .map(Some)
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))
    }

    /// Reads more bytes and the descriptors that come with them.
    fn fill(&mut self) -> io::Result<()> {
        let mut buffer = vec![0; 64 * 1024];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(8))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let received = rustix::net::recvmsg(
            &self.socket,
            &mut [IoSliceMut::new(&mut buffer)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )?;
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = message {
                self.fds.extend(fds);
            }
        }
        let read = received.bytes;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the other process closed the handover socket",
            ));
        }
        self.received.extend_from_slice(&buffer[..read]);
        Ok(())
    }
}

/// Runs `step` on the wire on a blocking thread, and gives the wire back with its result.
pub(super) async fn blocking<T: Send + 'static>(
    mut wire: Wire,
    step: impl FnOnce(&mut Wire) -> io::Result<T> + Send + 'static,
) -> io::Result<(Wire, T)> {
    tokio::task::spawn_blocking(move || {
        let result = step(&mut wire)?;
        Ok((wire, result))
    })
    .await
    .map_err(io::Error::other)?
}
