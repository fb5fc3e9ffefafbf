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
//!
//! Each request carries a [`Cut`] of its connection: a streamed response (`/sse`)
//! whose client stopped reading is no longer polled, so it cannot end by itself; its
//! handler cuts the connection instead.
//!
//! A connection counts as a handshake in flight until its first request is answered
//! ([`PendingHandshake`]): past `--max-pending-handshakes` of them, upgrades are refused
//! (`overload`); past that and [`HTTP_HEADROOM`] more, a new TCP connection is answered
//! 503 before its request is read, as past `--max-connections`, which costs a flood
//! far less than parsing each request to refuse it.
//!
//! Before a connection is served it must pass two bounds: the node's accept rate
//! (`--accept-rate`), and `--max-connections` (plus [`HTTP_HEADROOM`]) counted over
//! the WebSockets, the event streams and the connections that have not upgraded yet
//! (an event stream's connection once: by its slot, see [`Unupgraded`]), so a client
//! cannot hold sockets by never finishing its request. A connection past either is answered HTTP 503 with
//! `Retry-After` and closed, without being parsed. When accepting fails (out of
//! file descriptors, say) the log says so at most once per [`ACCEPT_ERROR_LOG_EVERY`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::admin::sessions::OverTls;
use crate::admission::{LogThrottle, TokenBucket, retry_after_secs};
use crate::overload::Signal;
use crate::state::ServerState;
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

/// Drops the HTTP connection of the request that carries it (a request extension).
#[derive(Debug, Clone)]
pub(crate) struct Cut(CancellationToken);

impl Cut {
    /// Drops the connection at once: its socket is closed, whatever it was doing.
    pub(crate) fn now(&self) {
        self.0.cancel();
    }
}
/// At most one log line per this interval for failing accepts.
const ACCEPT_ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

/// Connections accepted beyond `--max-connections`, so that a node full of WebSockets
/// still answers health checks and scrapes (an upgrade among them gets 503 from its
/// route).
pub(crate) const HTTP_HEADROOM: usize = 8;

/// How long a refused connection is read from before it is closed.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// Refused connections that may linger at once.
const LINGERING_AT_MOST: usize = 64;

/// What a connection refused before its request is read is told.
const BUSY_REASON: &str =
    "server at accept-rate, max-connections or max-pending-handshakes; retry later";

/// The answer to a connection refused before its request is read, asking it to
/// come back after `wait_secs`.
fn busy(wait_secs: u64) -> String {
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: {wait_secs}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{BUSY_REASON}",
        BUSY_REASON.len()
    )
}

/// Accepts and serves connections until `shutdown` completes.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    state: Arc<ServerState>,
    tls: Option<Arc<Tls>>,
    shutdown: impl Future<Output = ()>,
) {
    // Linux applies a second listen() to a listening socket as a new backlog.
    if let Err(err) = socket2::SockRef::from(&listener).listen(LISTEN_BACKLOG) {
        tracing::warn!(%err, "cannot raise the listen backlog");
    }
    let config = &state.config;
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.limits.handshake_timeout);
    let accept_rate = config.rates.accept_rate;
    let mut accept_bucket = TokenBucket::new(
        accept_rate,
        accept_rate.per_second().ceil() as u32,
        Instant::now(),
    );
    let mut accept_errors = LogThrottle::new(ACCEPT_ERROR_LOG_EVERY);
    let lingering = Arc::new(AtomicUsize::new(0));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => return,
            accepted = state.handover.accept(&listener) => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    state.metrics.refused("accept_error");
                    if let Some(left_out) = accept_errors.admit(Instant::now()) {
                        tracing::warn!(%err, left_out, "accept failed (repeats are logged once per 10 s)");
                    }
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let over_rate = accept_bucket
            .as_mut()
            .is_some_and(|bucket| bucket.take(Instant::now()).is_err());
        let held = state.unupgraded.load(Ordering::Acquire) + state.registry.taken();
        let max_pending = config.overload.max_pending_handshakes;
        let pending_past = max_pending > 0
            && state.pending_handshakes.load(Ordering::Acquire) >= max_pending + HTTP_HEADROOM;
        if over_rate || pending_past || held >= config.limits.max_connections + HTTP_HEADROOM {
            if over_rate {
                state.metrics.refused("accept_rate");
            } else if pending_past {
                state.metrics.refused(Signal::Handshakes.label());
            } else {
                state.metrics.rejected_at_capacity.increment(1);
            }
            refuse(stream, &lingering, config.shutdown_spread);
            continue;
        }
        // Heartbeats and small messages must not wait for Nagle's algorithm.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%err, "cannot set TCP_NODELAY");
        }
        // Requests know their peer's address, as axum's `ConnectInfo`, whether they
        // came over TLS, and can cut their connection.
        let cut = CancellationToken::new();
        let request_cut = Cut(cut.clone());
        let over_tls = tls.is_some();
        let handshake = Arc::new(PendingHandshake::count(state.clone()));
        let unupgraded = Unupgraded::count(state.clone());
        let request_unupgraded = unupgraded.clone();
        let service = router
            .clone()
            .map_request(move |mut request: axum::extract::Request<_>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request.extensions_mut().insert(request_cut.clone());
                request.extensions_mut().insert(request_unupgraded.clone());
                if over_tls {
                    request.extensions_mut().insert(OverTls);
                }
                request
            })
            .map_response(move |response: axum::response::Response| {
                handshake.answered();
                response
            });
        let Some(tls) = &tls else {
            let connection = http
                .serve_connection(
                    TokioIo::new(Stream::Plain(stream)),
                    TowerToHyperService::new(service),
                )
                .with_upgrades();
            tokio::spawn(async move {
                tokio::select! {
                    result = connection => if let Err(err) = result {
                        tracing::debug!(%err, "HTTP connection ended with an error");
                    },
                    () = cut.cancelled() => tracing::debug!("HTTP connection cut"),
                }
                unupgraded.stop_counting();
            });
            continue;
        };
        let tls = tls.clone();
        let mut http = http.clone();
        let handshake_timeout = config.limits.handshake_timeout;
        tokio::spawn(async move {
            let started = Instant::now();
            let Some(stream) = tls_handshake(&tls, stream, peer, handshake_timeout).await else {
                return;
            };
            // What is left of the deadline is the HTTP request's.
            let left = handshake_timeout.saturating_sub(started.elapsed());
            http.header_read_timeout(left.max(Duration::from_millis(1)));
            let connection = http
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .with_upgrades();
            tokio::select! {
                result = connection => if let Err(err) = result {
                    tracing::debug!(%err, "HTTP connection ended with an error");
                },
                () = cut.cancelled() => tracing::debug!("HTTP connection cut"),
            }
            unupgraded.stop_counting();
        });
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

/// Answers 503 and closes. The socket lingers up to [`REFUSAL_LINGER`], reading what
/// the client sends, so the kernel does not reset the connection (which would drop
/// the answer) for a request left unread; past [`LINGERING_AT_MOST`] refusals at
/// once, a refusal is closed at once.
fn refuse(stream: TcpStream, lingering: &Arc<AtomicUsize>, spread: Duration) {
    let wait = retry_after_secs(1, spread, &mut rand::rng());
    let _ = stream.try_write(busy(wait).as_bytes());
    if lingering.fetch_add(1, Ordering::AcqRel) >= LINGERING_AT_MOST {
        lingering.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    let lingering = lingering.clone();
    tokio::spawn(async move {
        let mut stream = stream;
        let _ = stream.shutdown().await;
        let mut sink = [0; 1024];
        let drain = async {
            for _ in 0..16 {
                if matches!(stream.read(&mut sink).await, Ok(0) | Err(_)) {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(REFUSAL_LINGER, drain).await;
        lingering.fetch_sub(1, Ordering::AcqRel);
    });
}

/// A TCP connection whose first request has not been answered yet (the overload bound
/// `--max-pending-handshakes`), counted until that answer or the connection's end.
struct PendingHandshake {
    state: Arc<ServerState>,
    answered: std::sync::atomic::AtomicBool,
}

impl PendingHandshake {
    fn count(state: Arc<ServerState>) -> Self {
        state.pending_handshakes.fetch_add(1, Ordering::AcqRel);
        Self {
            state,
            answered: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The connection has its first answer: it no longer counts (a later call does
    /// nothing).
    fn answered(&self) {
        if !self.answered.swap(true, Ordering::AcqRel) {
            self.state.pending_handshakes.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for PendingHandshake {
    fn drop(&mut self) {
        self.answered();
    }
}

/// A TCP connection served as HTTP, counted until its upgrade or its end, or until
/// a route takes a slot for it (an event stream, which the registry counts then).
/// Each request carries it (a request extension).
pub(crate) struct Unupgraded {
    state: Arc<ServerState>,
    counted: AtomicBool,
}

impl Unupgraded {
    fn count(state: Arc<ServerState>) -> Arc<Self> {
        state.unupgraded.fetch_add(1, Ordering::AcqRel);
        Arc::new(Self {
            state,
            counted: AtomicBool::new(true),
        })
    }

    /// Stops counting the connection, once: it ended or was upgraded, or a slot
    /// counts it from now on.
    pub(crate) fn stop_counting(&self) {
        if self.counted.swap(false, Ordering::AcqRel) {
            self.state.unupgraded.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Unupgraded {
    fn drop(&mut self) {
        self.stop_counting();
    }
}
