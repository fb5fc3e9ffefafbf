//! The accept loop: TCP connections in, HTTP/1.1 served with a handshake deadline.
//!
//! axum's own `serve` has no deadline for a client that connects and never finishes
//! its request; hyper's `header_read_timeout` gives one, so connections are served
//! here with hyper directly.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// Pause after an accept error (out of file descriptors, say) before trying again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Accepts and serves connections until `shutdown` completes.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    handshake_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(handshake_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
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
        let connection = http
            .serve_connection(
                TokioIo::new(stream),
                TowerToHyperService::new(router.clone()),
            )
            .with_upgrades();
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%err, "HTTP connection ended with an error");
            }
        });
    }
}
