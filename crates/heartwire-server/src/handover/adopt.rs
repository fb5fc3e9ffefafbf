//! The new process's side of a live upgrade (`--take-over`): it takes the listening
//! socket, the channels and the connections, builds each connection's task from its
//! state, and drives them only once the old process has let go (`commit`).

use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use tokio::net::TcpStream;

use super::CONFIRM_TIMEOUT;
use super::state::{ChannelState, ConnectionState, EndpointState, Message, OLDEST_READ, VERSION};
use super::wire::{Wire, blocking};
use crate::broker::Broker;
use crate::connection;
use crate::endpoint::echo::Echo;
use crate::endpoint::native::Native;
use crate::endpoint::ws4redis::Ws4Redis;
use crate::error::Error;
use crate::slot::Slot;
use crate::state::ServerState;
use crate::websocket::{Socket, SocketState};

/// A connection as the old process sent it, with its socket.
type Offered = (ConnectionState, OwnedFd);

/// A connection's task, whichever its endpoint.
type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A handover begun: the old process sent its listening socket.
#[derive(Debug)]
pub(crate) struct Begun {
    wire: Wire,
    version: u32,
    path: PathBuf,
}

fn failed(path: &Path) -> impl Fn(io::Error) -> Error + '_ {
    move |source| Error::TakeOver {
        path: path.to_owned(),
        source,
    }
}

/// Waits until `broker` reaches its other nodes (Redis), before anything is asked of
/// the old process: a connection taken over subscribes again at once, and a
/// subscription made while Redis is unreachable would tell its client so.
pub(crate) async fn broker_ready(broker: &dyn Broker, path: &Path) -> Result<(), Error> {
    let deadline = tokio::time::Instant::now() + CONFIRM_TIMEOUT;
    while !broker.health().up {
        if tokio::time::Instant::now() >= deadline {
            return Err(failed(path)(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the {} broker is not connected", broker.name()),
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Connects to the upgrade socket at `path`; returns the listening socket the old
/// process sent.
pub(crate) async fn begin(path: &Path) -> Result<(Begun, std::net::TcpListener), Error> {
    let stream = UnixStream::connect(path).map_err(failed(path))?;
    // The old process may take up to CONFIRM_TIMEOUT to pause its connections before
    // it sends them: this side waits longer.
    let wire = Wire::new(stream, 3 * CONFIRM_TIMEOUT).map_err(failed(path))?;
    let (wire, (message, fd)) = blocking(wire, Wire::receive).await.map_err(failed(path))?;
    let (Message::Begin { version }, Some(fd)) = (message, fd) else {
        return Err(failed(path)(io::Error::new(
            io::ErrorKind::InvalidData,
            "the old process did not begin with its listening socket",
        )));
    };
    let listener = std::net::TcpListener::from(fd);
    listener.set_nonblocking(true).map_err(failed(path))?;
    let begun = Begun {
        wire,
        version,
        path: path.to_owned(),
    };
    Ok((begun, listener))
}

/// Takes the connections over into `state`: refuses a version this build does not
/// read (the old process then closes its connections with 1012, and this one only
/// takes the listening socket), else adopts them all, confirms, and once the old
/// process commits, drives them.
pub(crate) async fn adopt(begun: Begun, state: &Arc<ServerState>) -> Result<(), Error> {
    let Begun {
        wire,
        version,
        path,
    } = begun;
    // Under systemd this process becomes the main one before the old one may exit
    // (after the handover, or after closing its connections when the version is refused).
    if let Err(err) = super::notify::main_pid() {
        tracing::warn!(%err, "cannot tell systemd the new main process (NOTIFY_SOCKET)");
    }
    if !(OLDEST_READ..=VERSION).contains(&version) {
        let reason = format!(
            "this build reads handover versions {OLDEST_READ} to {VERSION}, the running server speaks {version}"
        );
        tracing::warn!(%reason, "live upgrade refused: taking the listening socket only");
        let refuse = Message::Refuse { reason };
        blocking(wire, move |wire| wire.send(&refuse, None))
            .await
            .map_err(failed(&path))?;
        return Ok(());
    }
    let (wire, (channels, connections)) =
        blocking(wire, receive_all).await.map_err(failed(&path))?;
    state.broker.adopt_channels(channels);
    let count = connections.len();
    let tasks: Vec<Task> = connections
        .into_iter()
        .map(|(connection, fd)| adopt_one(state, connection, fd))
        .collect::<io::Result<_>>()
        .map_err(failed(&path))?;
    blocking(wire, move |wire| {
        wire.send(&Message::Adopted { connections: count }, None)?;
        match wire.receive()?.0 {
            Message::Commit => Ok(()),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected the commit, got {other:?}"),
            )),
        }
    })
    .await
    .map_err(failed(&path))?;
    for task in tasks {
        tokio::spawn(task);
    }
    tracing::info!(connections = count, "live upgrade: took over");
    Ok(())
}

/// Answers `ready`, then receives the channels and every connection until `end`.
fn receive_all(wire: &mut Wire) -> io::Result<(Vec<ChannelState>, Vec<Offered>)> {
    wire.send(&Message::Ready, None)?;
    let channels = match wire.receive()?.0 {
        Message::Channels(channels) => channels,
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected the channels, got {other:?}"),
            ));
        }
    };
    let mut connections = Vec::new();
    loop {
        match wire.receive()? {
            (Message::Connection(connection), Some(fd)) => connections.push((*connection, fd)),
            (Message::End, _) => return Ok((channels, connections)),
            (other, _) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("expected a connection, got {other:?}"),
                ));
            }
        }
    }
}

/// Builds the task of one connection from its state and socket. One this server
/// cannot hold (its limits are lower than the old one's) is closed with 1012, as
/// at a restart.
fn adopt_one(
    state: &Arc<ServerState>,
    mut connection: ConnectionState,
    fd: OwnedFd,
) -> io::Result<Task> {
    let stream = std::net::TcpStream::from(fd);
    stream.set_nonblocking(true)?;
    let stream = TcpStream::from_std(stream)?;
    let slot = Slot::reserve(state, connection.address).ok();
    let slot = match (slot, &connection.identity) {
        (Some(mut slot), Some(identity)) => slot.claim_user(&identity.user).then_some(slot),
        (slot, None) => slot,
        (None, Some(_)) => None,
    };
    let Some(slot) = slot else {
        return Ok(Box::pin(close_with_1012(state, stream, connection)));
    };
    let endpoint = std::mem::replace(&mut connection.endpoint, EndpointState::Echo);
    Ok(match endpoint {
        EndpointState::Native { subscriptions } => Box::pin(connection::resume(
            stream,
            connection,
            |context| Native::resume(subscriptions, context),
            slot,
        )),
        EndpointState::Echo => Box::pin(connection::resume(stream, connection, |_| Echo, slot)),
        EndpointState::Ws4Redis(socket) => Box::pin(connection::resume(
            stream,
            connection,
            |context| Ws4Redis::resume(socket, context),
            slot,
        )),
    })
}

/// Closes a connection this server cannot hold with 1012, after what it was owed.
fn close_with_1012(
    state: &ServerState,
    stream: TcpStream,
    connection: ConnectionState,
) -> impl Future<Output = ()> + Send + 'static {
    let config = &state.config;
    let socket_state = SocketState {
        reader: connection.reader,
        unsent: connection.unsent,
        deflate: connection.deflate,
    };
    let socket = Socket::resume(stream, socket_state, config.limits.max_message_size);
    let timeout = config.liveness.close_timeout;
    socket.close_at_once(1012, "server restarting; reconnect", timeout)
}
