//! The accept loop: TCP connections in, HTTP/1.1 served with a handshake deadline.
//!
//! axum's own `serve` has no deadline for a client that connects and never finishes
//! its request; hyper's `header_read_timeout` gives one, so connections are served
//! here with hyper directly.
//!
//! The listen queue is raised to [`LISTEN_BACKLOG`] (the kernel caps it at
//! `net.core.somaxconn`): after a restart every client comes back within the same
//! second or two, and tokio's default of 1024 overflows, which costs each dropped
//! client a SYN retransmission (a second or more) instead of a connection.
//!
//! Each request carries a [`Cut`] of its connection: a streamed response (`/sse`)
//! whose client stopped reading is no longer polled, so it cannot end by itself; its
//! handler cuts the connection instead.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Connections the kernel may hold, handshake done, before the server accepts them.
const LISTEN_BACKLOG: i32 = 4096;

/// Pause after an accept error (out of file descriptors, say) before trying again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Drops the HTTP connection of the request that carries it (a request extension).
#[derive(Debug, Clone)]
pub(crate) struct Cut(CancellationToken);

impl Cut {
    /// Drops the connection at once: its socket is closed, whatever it was doing.
    pub(crate) fn now(&self) {
        self.0.cancel();
    }
}

/// Accepts and serves connections until `shutdown` completes.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    handshake_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    // Linux applies a second listen() to a listening socket as a new backlog.
    if let Err(err) = socket2::SockRef::from(&listener).listen(LISTEN_BACKLOG) {
        tracing::warn!(%err, "cannot raise the listen backlog");
    }
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(handshake_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        // Heartbeats and small messages must not wait for Nagle's algorithm.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%err, "cannot set TCP_NODELAY");
        }
        // Requests know their peer's address, as axum's `ConnectInfo`, and can cut
        // their connection.
        let cut = CancellationToken::new();
        let request_cut = Cut(cut.clone());
        let service = router
            .clone()
            .map_request(move |mut request: axum::extract::Request<_>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request.extensions_mut().insert(request_cut.clone());
                request
            });
        let connection = http
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
            .with_upgrades();
        tokio::spawn(async move {
            tokio::select! {
                result = connection => if let Err(err) = result {
                    tracing::debug!(%err, "HTTP connection ended with an error");
                },
                () = cut.cancelled() => tracing::debug!("HTTP connection cut"),
            }
        });
    }
}
