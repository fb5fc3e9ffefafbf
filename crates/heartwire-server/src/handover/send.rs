//! The old process's side of a live upgrade: the Unix socket it listens on
//! (`--upgrade-socket`), and the handover to a process that connects to it.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tokio::net::UnixListener;
use tokio::sync::oneshot;

use super::state::{Message, VERSION};
use super::wire::{Wire, blocking};
use super::{Answer, CONFIRM_TIMEOUT, Parked, Verdict};
use crate::error::Error;
use crate::state::ServerState;

/// The listening Unix socket, removed when dropped unless another process has
/// put its own at the same path since.
#[derive(Debug)]
pub(crate) struct UpgradeSocket {
    listener: UnixListener,
    path: PathBuf,
    inode: (u64, u64),
}

impl UpgradeSocket {
    /// Listens at `path` (mode 0600), replacing a socket left there.
    pub(crate) fn bind(path: &Path) -> Result<Self, Error> {
        let failed = |source: io::Error| Error::UpgradeSocket {
            path: path.to_owned(),
            source,
        };
        match std::fs::remove_file(path) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(failed(err)),
            _ => {}
        }
        let listener = UnixListener::bind(path).map_err(failed)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(failed)?;
        let meta = std::fs::metadata(path).map_err(failed)?;
        Ok(Self {
            listener,
            path: path.to_owned(),
            inode: (meta.dev(), meta.ino()),
        })
    }
}

impl Drop for UpgradeSocket {
    fn drop(&mut self) {
        let ours =
            std::fs::metadata(&self.path).is_ok_and(|meta| (meta.dev(), meta.ino()) == self.inode);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Serves handovers on `socket` until one succeeds (or falls back to 1012), then
/// returns: the server then closes what stayed and ends. `listener` is the listening
/// TCP socket to hand over.
pub(crate) async fn serve(socket: UpgradeSocket, state: Arc<ServerState>, listener: OwnedFd) {
    loop {
        let stream = match socket.listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                tracing::warn!(%err, "upgrade socket: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let wire = match stream
            .into_std()
            .and_then(|stream| Wire::new(stream, CONFIRM_TIMEOUT))
        {
            Ok(wire) => wire,
            Err(err) => {
                tracing::warn!(%err, "upgrade socket: cannot use the connection");
                continue;
            }
        };
        let started = Instant::now();
        match hand_over(wire, &state, &listener).await {
            Outcome::Committed {
                connections,
                stayed,
            } => {
                tracing::info!(
                    connections,
                    stayed,
                    millis = started.elapsed().as_millis() as u64,
                    "live upgrade: handed over to the new process"
                );
                return;
            }
            Outcome::Refused(reason) => {
                tracing::warn!(%reason, "live upgrade refused: closing connections with 1012 instead");
                return;
            }
            Outcome::Failed(err) => {
                tracing::warn!(%err, "live upgrade failed: this process goes on serving");
                state.handover.set_accepting(true);
            }
        }
    }
}

/// How a handover ended.
enum Outcome {
    /// The new process drives the connections.
    /// `stayed`: the connections that could not move and get 1012.
    Committed { connections: usize, stayed: usize },
    /// The new process took the listening socket but not the connections.
    Refused(String),
    /// Nothing was handed over; this process goes on.
    Failed(io::Error),
}

async fn hand_over(wire: Wire, state: &Arc<ServerState>, listener: &OwnedFd) -> Outcome {
    let handover = &state.handover;
    handover.set_accepting(false);
    let listener = match listener.try_clone() {
        Ok(listener) => listener,
        Err(err) => return Outcome::Failed(err),
    };
    let begun = blocking(wire, move |wire| {
        wire.send(&Message::Begin { version: VERSION }, Some(listener.as_fd()))?;
        wire.receive()
    })
    .await;
    let wire = match begun {
        Ok((wire, (Message::Ready, _))) => wire,
        Ok((_, (Message::Refuse { reason }, _))) => return Outcome::Refused(reason),
        Ok((_, (other, _))) => return Outcome::Failed(unexpected(&other)),
        Err(err) => return Outcome::Failed(err),
    };
    let (parked, stayed) = pause_connections(state).await;
    let connections = parked.len();
    let stayed_count = stayed.len();
    let handed_over = parked.iter().map(|parked| parked.state.session).collect();
    let channels = state.broker.hand_over_channels(&handed_over);
    let sent = blocking(wire, move |wire| {
        Ok((send_all(wire, channels, &parked), parked))
    })
    .await;
    let (sent, parked) = match sent {
        Ok((_, (sent, parked))) => (sent, parked),
        // The step panicked: dropped as it unwound, the connections it held have
        // their sockets back.
        Err(err) => (Err(err), Vec::new()),
    };
    match sent {
        Ok(()) => {
            for parked in parked {
                parked.moved();
            }
            for verdict in stayed {
                let _ = verdict.send(Verdict::Close);
            }
            Outcome::Committed {
                connections,
                stayed: stayed_count,
            }
        }
        Err(err) => {
            state.broker.keep_channels();
            // Dropped, each paused connection has its socket back and goes on.
            drop(parked);
            for verdict in stayed {
                let _ = verdict.send(Verdict::Resume(None));
            }
            Outcome::Failed(err)
        }
    }
}

/// Asks every WebSocket connection to pause, and waits for their answers (at most
/// [`CONFIRM_TIMEOUT`]: a connection that has not answered by then stays): those
/// handed over, and the verdicts awaited by those that stay.
async fn pause_connections(state: &ServerState) -> (Vec<Parked>, Vec<oneshot::Sender<Verdict>>) {
    let handover = &state.handover;
    let mut answers = handover.collect();
    let asked = state.registry.ask_handover();
    let mut parked = Vec::with_capacity(asked);
    let mut stayed = Vec::new();
    let collected = tokio::time::timeout(CONFIRM_TIMEOUT, async {
        for _ in 0..asked {
            match answers.recv().await {
                Some(Answer::Parked(one)) => parked.push(*one),
                Some(Answer::Stays(verdict)) => stayed.push(verdict),
                None => break,
            }
        }
    })
    .await;
    handover.stop_collecting();
    if collected.is_err() {
        tracing::warn!(
            asked,
            parked = parked.len(),
            "live upgrade: not every connection answered"
        );
    }
    // Offers that came after the wait are told to go on when dropped here.
    answers.close();
    (parked, stayed)
}

/// Sends the channels and every connection, waits for `adopted`, and commits.
fn send_all(
    wire: &mut Wire,
    channels: Vec<super::state::ChannelState>,
    parked: &[Parked],
) -> io::Result<()> {
    wire.send(&Message::Channels(channels), None)?;
    let count = parked.len();
    for parked in parked {
        wire.send(
            &Message::Connection(Box::new(parked.state.clone())),
            Some(parked.fd()),
        )?;
    }
    wire.send(&Message::End, None)?;
    match wire.receive()?.0 {
        Message::Adopted { connections } if connections == count => {}
        other => return Err(unexpected(&other)),
    }
    wire.send(&Message::Commit, None)
}

fn unexpected(message: &Message) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unexpected handover message: {message:?}"),
    )
}
