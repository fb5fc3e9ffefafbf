//! A peer of heartwire's benchmarks: the same server as the tokio-tungstenite floor,
//! written with `fastwebsockets` (hyper for the upgrade, as its documentation does).
//!
//! `heartwire-bench-fastws PORT` serves, on 127.0.0.1:PORT:
//! - `/echo`: every data frame is sent back as it came;
//! - `/broadcast`: every data frame is sent to every other `/broadcast` connection.
//!
//! Like the other peers it pings each connection every `PING_INTERVAL_MS` (default
//! 1000) and drops one silent for longer than that plus `PING_TIMEOUT_MS` (default
//! 1000). fastwebsockets' reads are not cancel-safe, so each connection is two tasks:
//! one reads (and answers Pings and Closes through the shared write half), the other
//! writes broadcasts and Pings.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fastwebsockets::{
    Frame, OpCode, Payload, WebSocketError, WebSocketRead, WebSocketWrite, upgrade,
};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, broadcast};

/// Messages a slow `/broadcast` connection may fall behind before it misses some.
const BROADCAST_BACKLOG: usize = 4096;

/// A broadcast message: the connection that sent it (not sent back to it), its opcode
/// and payload.
type Broadcast = (u64, OpCode, Bytes);

type Stream = TokioIo<hyper::upgrade::Upgraded>;
type Writer = Mutex<WebSocketWrite<WriteHalf<Stream>>>;

/// What every connection shares.
struct Hub {
    sender: broadcast::Sender<Broadcast>,
    interval: Duration,
    silence_limit: Duration,
    started: Instant,
    next_id: AtomicU64,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|port| port.parse().ok())
        .unwrap_or(9006);
    let interval = millis_from_env("PING_INTERVAL_MS");
    let hub = Arc::new(Hub {
        sender: broadcast::channel(BROADCAST_BACKLOG).0,
        interval,
        silence_limit: interval + millis_from_env("PING_TIMEOUT_MS"),
        started: Instant::now(),
        next_id: AtomicU64::new(0),
    });
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let hub = hub.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| upgrade_request(request, hub.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

/// Answers the upgrade of `/echo` or `/broadcast` and starts the connection's tasks.
async fn upgrade_request(
    mut request: Request<Incoming>,
    hub: Arc<Hub>,
) -> Result<Response<Empty<Bytes>>, Infallible> {
    let broadcasting = match request.uri().path() {
        "/echo" => false,
        "/broadcast" => true,
        _ => return Ok(status(StatusCode::NOT_FOUND)),
    };
    match upgrade::upgrade(&mut request) {
        Ok((response, upgraded)) => {
            tokio::spawn(async move {
                if let Ok(ws) = upgraded.await {
                    let (reader, writer) = ws.split(tokio::io::split);
                    serve(reader, Arc::new(Mutex::new(writer)), broadcasting, hub).await;
                }
            });
            Ok(response)
        }
        Err(_) => Ok(status(StatusCode::BAD_REQUEST)),
    }
}

fn status(code: StatusCode) -> Response<Empty<Bytes>> {
    let mut response = Response::new(Empty::new());
    *response.status_mut() = code;
    response
}

/// One connection: its reader runs as a task of its own; this task writes broadcasts and
/// Pings until the reader ends or the peer is silent too long.
async fn serve(
    reader: WebSocketRead<ReadHalf<Stream>>,
    writer: Arc<Writer>,
    broadcasting: bool,
    hub: Arc<Hub>,
) {
    let id = hub.next_id.fetch_add(1, Ordering::Relaxed);
    let last_heard = Arc::new(AtomicU64::new(hub.now_ms()));
    let mut inbox = broadcasting.then(|| hub.sender.subscribe());
    let mut reading = tokio::spawn(read(
        reader,
        writer.clone(),
        hub.clone(),
        broadcasting.then_some(id),
        last_heard.clone(),
    ));
    let mut ticks = tokio::time::interval(hub.interval);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = &mut reading => return,
            received = async { inbox.as_mut().expect("a /broadcast connection").recv().await }, if broadcasting => match received {
                Ok((from, opcode, payload)) if from != id => {
                    let frame = Frame::new(true, opcode, None, Payload::Borrowed(&payload));
                    if writer.lock().await.write_frame(frame).await.is_err() {
                        break;
                    }
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = ticks.tick() => {
                let silent = hub.now_ms().saturating_sub(last_heard.load(Ordering::Relaxed));
                if u128::from(silent) > hub.silence_limit.as_millis() {
                    break;
                }
                let ping = Frame::new(true, OpCode::Ping, None, Payload::Borrowed(&[]));
                if writer.lock().await.write_frame(ping).await.is_err() {
                    break;
                }
            }
        }
    }
    reading.abort();
}

/// Reads frames until the connection ends: echoes data frames back, or hands them to the
/// hub as those of connection `broadcast_id`.
async fn read(
    mut reader: WebSocketRead<ReadHalf<Stream>>,
    writer: Arc<Writer>,
    hub: Arc<Hub>,
    broadcast_id: Option<u64>,
    last_heard: Arc<AtomicU64>,
) -> Result<(), WebSocketError> {
    let shared: &Writer = &writer;
    let mut obligated = move |frame| async move { shared.lock().await.write_frame(frame).await };
    loop {
        let frame = reader.read_frame(&mut obligated).await?;
        last_heard.store(hub.now_ms(), Ordering::Relaxed);
        match frame.opcode {
            OpCode::Text | OpCode::Binary => match broadcast_id {
                Some(id) => {
                    let payload = Bytes::copy_from_slice(&frame.payload);
                    let _ = hub.sender.send((id, frame.opcode, payload));
                }
                None => {
                    // Sent as it came, but unmasked: a server's frames carry no mask.
                    let echo = Frame::new(frame.fin, frame.opcode, None, frame.payload);
                    writer.lock().await.write_frame(echo).await?;
                }
            },
            OpCode::Close => return Ok(()),
            _ => {}
        }
    }
}

impl Hub {
    /// Milliseconds since the server started.
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// A duration in milliseconds from the environment, 1 s when unset.
fn millis_from_env(name: &str) -> Duration {
    std::env::var(name)
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(Duration::from_secs(1), Duration::from_millis)
}
