//! The floor of heartwire's benchmarks: the least a tokio-tungstenite server can do.
//!
//! `heartwire-bench-floor PORT` serves, on 127.0.0.1:PORT, with tokio-tungstenite's
//! default buffers:
//! - `/echo`: every data frame is sent back as it came;
//! - `/broadcast`: every data frame is sent to every other `/broadcast` connection.
//!
//! Like the other peers it pings each connection every `PING_INTERVAL_MS` (default
//! 1000) and drops one silent for longer than that plus `PING_TIMEOUT_MS` (default
//! 1000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

/// Messages a slow `/broadcast` connection may fall behind before it misses some.
const BROADCAST_BACKLOG: usize = 4096;

/// A broadcast message and the connection that sent it (not sent back to it).
type Broadcast = (u64, Message);

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|port| port.parse().ok())
        .unwrap_or(9004);
    let interval = millis_from_env("PING_INTERVAL_MS");
    let silence_limit = interval + millis_from_env("PING_TIMEOUT_MS");
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let (hub, _) = broadcast::channel::<Broadcast>(BROADCAST_BACKLOG);
    let hub = Arc::new(hub);
    let mut next_id = 0u64;
    loop {
        let (stream, _) = listener.accept().await?;
        next_id += 1;
        tokio::spawn(serve(stream, next_id, hub.clone(), interval, silence_limit));
    }
}

async fn serve(
    stream: TcpStream,
    id: u64,
    hub: Arc<broadcast::Sender<Broadcast>>,
    interval: Duration,
    silence_limit: Duration,
) {
    let _ = stream.set_nodelay(true);
    let mut path = String::new();
    // The error type is tungstenite's, fixed by its callback signature.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| {
        path = request.uri().path().to_owned();
        Ok(response)
    };
    let Ok(mut socket) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let broadcasting = path == "/broadcast";
    let mut inbox = broadcasting.then(|| hub.subscribe());
    let mut ticks = tokio::time::interval(interval);
    ticks.tick().await;
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            frame = socket.next() => match frame {
                Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
                    last_heard = Instant::now();
                    if broadcasting {
                        let _ = hub.send((id, message));
                    } else if socket.send(message).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => last_heard = Instant::now(),
            },
            received = async { inbox.as_mut().expect("a /broadcast connection").recv().await }, if broadcasting => match received {
                Ok((from, message)) if from != id => {
                    if socket.send(message).await.is_err() {
                        return;
                    }
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = ticks.tick() => {
                if last_heard.elapsed() > silence_limit {
                    return;
                }
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// A duration in milliseconds from the environment, 1 s when unset.
fn millis_from_env(name: &str) -> Duration {
    std::env::var(name)
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(Duration::from_secs(1), Duration::from_millis)
}
