//! The fault proxy: accepts TCP connections, opens one to the upstream for each, and
//! forwards between them through the fault in force.
//!
//! A [`Proxy`] runs until dropped; its [`ProxyHandle`]s switch the fault and list the
//! connections from anywhere (the control API holds one). The upstream is a
//! `host:port` resolved again for every connection. A connection accepted while
//! `reset` is on is reset at once, without reaching the upstream; any other connection
//! is connected upstream first (within [`UPSTREAM_CONNECT_TIMEOUT`], otherwise the
//! client's socket is closed) and then gets the fault in force from its first byte.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::connection;
use crate::fault::Fault;
use crate::switch::Switch;
use crate::traffic::{ConnectionInfo, Traffic};

/// How long the proxy tries to reach the upstream for one connection.
pub const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after an accept error (out of file descriptors, say) before trying again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// A running fault proxy; it stops, and closes its connections, when dropped.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    handle: ProxyHandle,
    stop: CancellationToken,
}

/// Switches the fault of a [`Proxy`] and lists its connections; cheap to clone.
#[derive(Debug, Clone)]
pub struct ProxyHandle {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    switch: Switch,
    upstream: String,
    connections: Mutex<BTreeMap<u64, Arc<Traffic>>>,
    accepted: AtomicU64,
}

impl Proxy {
    /// Listens on `listen` and forwards each connection to `upstream` (`host:port`),
    /// with no fault.
    pub async fn bind(listen: SocketAddr, upstream: impl Into<String>) -> Result<Self, Error> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| Error::Listen {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Listen {
            addr: listen,
            source,
        })?;
        let handle = ProxyHandle {
            shared: Arc::new(Shared {
                switch: Switch::new(Fault::None),
                upstream: upstream.into(),
                connections: Mutex::default(),
                accepted: AtomicU64::new(0),
            }),
        };
        let stop = CancellationToken::new();
        tokio::spawn(accept(listener, Arc::clone(&handle.shared), stop.clone()));
        Ok(Self { addr, handle, stop })
    }

    /// Where clients connect.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle that switches faults and lists connections.
    pub fn handle(&self) -> ProxyHandle {
        self.handle.clone()
    }

    /// Puts `fault` in force, for the connections open now and those to come.
    pub fn set(&self, fault: Fault) {
        self.handle.set(fault);
    }

    /// The fault in force.
    pub fn fault(&self) -> Fault {
        self.handle.fault()
    }

    /// The connections open now, oldest first.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        self.handle.connections()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl ProxyHandle {
    /// Puts `fault` in force, for the connections open now and those to come.
    pub fn set(&self, fault: Fault) {
        tracing::debug!(%fault, "fault switched");
        self.shared.switch.set(fault);
    }

    /// The fault in force.
    pub fn fault(&self) -> Fault {
        self.shared.switch.fault()
    }

    /// The connections open now, oldest first.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        let now = Instant::now();
        lock(&self.shared.connections)
            .values()
            .map(|traffic| traffic.snapshot(now))
            .collect()
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let (client, peer) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let setting = shared.switch.watch();
        let (birth, resetting) = {
            let now = setting.borrow();
            (now.birth(), now.fault == Fault::Reset)
        };
        if resetting {
            connection::reset(&client);
            continue;
        }
        let id = shared.accepted.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::clone(&shared);
        let stop = stop.clone();
        tokio::spawn(async move {
            let upstream = tokio::select! {
                () = stop.cancelled() => return,
                connected = tokio::time::timeout(
                    UPSTREAM_CONNECT_TIMEOUT,
                    TcpStream::connect(shared.upstream.as_str()),
                ) => match connected {
                    Ok(Ok(upstream)) => upstream,
                    Ok(Err(err)) => {
                        tracing::warn!(upstream = %shared.upstream, %err, "cannot reach the upstream");
                        return;
                    }
                    Err(_) => {
                        tracing::warn!(upstream = %shared.upstream, "the upstream did not answer in time");
                        return;
                    }
                },
            };
            // Heartbeats and small frames must not wait for Nagle's algorithm.
            for stream in [&client, &upstream] {
                if let Err(err) = stream.set_nodelay(true) {
                    tracing::debug!(%err, "cannot set TCP_NODELAY");
                }
            }
            let traffic = Arc::new(Traffic::new(id, peer, Instant::now()));
            lock(&shared.connections).insert(id, Arc::clone(&traffic));
            tracing::debug!(id, %peer, "connection open");
            connection::run(client, upstream, setting, birth, traffic, stop).await;
            lock(&shared.connections).remove(&id);
            tracing::debug!(id, %peer, "connection closed");
        });
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
