//! The accept loop: TCP connections in, TLS when the server has a certificate, HTTP/1.1
//! served with a handshake deadline.
//!
//! axum's own `serve` has no deadline for a client that connects and never finishes
//! its request; hyper's `header_read_timeout` gives one, so connections are served
//! here with hyper directly. With TLS, the TLS handshake and the HTTP request share
//! that deadline (`--handshake-timeout`): a client that connects and stays silent
//! holds a socket for no longer than it would without TLS. A client that speaks plain
//! HTTP to the TLS port is answered with HTTP 400 and a sentence, then closed.
//!
//! The listen queue is raised to [`LISTEN_BACKLOG`] (the kernel caps it at
//! `net.core.somaxconn`): after a restart every client comes back within the same
//! second or two, and tokio's default of 1024 overflows, which costs each dropped
//! client a SYN retransmission (a second or more) instead of a connection.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::stream::Stream;
use crate::tls::Tls;

/// Connections the kernel may hold, handshake done, before the server accepts them.
const LISTEN_BACKLOG: i32 = 4096;

/// Pause after an accept error (out of file descriptors, say) before trying again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// The first byte of every TLS handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Reads of at most 1 KiB taken from a plain-text client after its answer, until it
/// closes (all within the handshake timeout).
const PLAIN_TEXT_READS: usize = 16;

/// The answer to plain HTTP on the TLS port.
const PLAIN_HTTP_ON_TLS: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
    Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: 61\r\n\r\n\
    This port speaks TLS: connect with https:// or wss:// instead";

/// Accepts and serves connections until `shutdown` completes.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<Tls>>,
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
        // Requests know their peer's address, as axum's `ConnectInfo`.
        let service = router
            .clone()
            .map_request(move |mut request: axum::extract::Request<_>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            });
        match &tls {
            None => {
                let connection = http
                    .serve_connection(
                        TokioIo::new(Stream::Plain(stream)),
                        TowerToHyperService::new(service),
                    )
                    .with_upgrades();
                tokio::spawn(async move {
                    if let Err(err) = connection.await {
                        tracing::debug!(%err, "HTTP connection ended with an error");
                    }
                });
            }
            Some(tls) => {
                let tls = tls.clone();
                let mut http = http.clone();
                tokio::spawn(async move {
                    let started = Instant::now();
                    let Some(stream) = tls_handshake(&tls, stream, peer, handshake_timeout).await
                    else {
                        return;
                    };
                    // What is left of the deadline is the HTTP request's.
                    let left = handshake_timeout.saturating_sub(started.elapsed());
                    http.header_read_timeout(left.max(Duration::from_millis(1)));
                    let connection = http
                        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                        .with_upgrades();
                    if let Err(err) = connection.await {
                        tracing::debug!(%err, "HTTP connection ended with an error");
                    }
                });
            }
        }
    }
}

/// The TLS handshake of `stream`, bounded by `timeout`; `None` when it failed, timed
/// out, or the client spoke plain HTTP (answered with 400).
async fn tls_handshake(
    tls: &Tls,
    mut stream: TcpStream,
    peer: SocketAddr,
    timeout: Duration,
) -> Option<Stream> {
    let handshake = async {
        let mut first = [0u8; 1];
        match stream.peek(&mut first).await {
            Ok(0) | Err(_) => return None,
            Ok(_) if first[0] != TLS_HANDSHAKE_RECORD => {
                tracing::debug!(%peer, "plain text on the TLS port");
                let _ = stream.write_all(PLAIN_HTTP_ON_TLS).await;
                let _ = stream.shutdown().await;
                // Take what the client sent (its request) before closing: closing with
                // unread bytes resets the connection, which may discard the answer.
                let mut sink = [0u8; 1024];
                for _ in 0..PLAIN_TEXT_READS {
                    if matches!(stream.read(&mut sink).await, Ok(0) | Err(_)) {
                        break;
                    }
                }
                return None;
            }
            Ok(_) => {}
        }
        match tls.acceptor().accept(stream).await {
            Ok(stream) => Some(Stream::Tls(Box::new(stream))),
            Err(err) => {
                tracing::debug!(%peer, %err, "TLS handshake failed");
                None
            }
        }
    };
    match tokio::time::timeout(timeout, handshake).await {
        Ok(stream) => stream,
        Err(_) => {
            tracing::debug!(%peer, "no TLS handshake within the handshake timeout");
            None
        }
    }
}
