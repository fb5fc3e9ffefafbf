//! What heartwire's integration tests share: an in-process server on a free loopback
//! port, WebSocket clients with bounded waits, and a `/metrics` reader.
//!
//! - [`certs`]: a private CA and server certificates made by `openssl`, for TLS;
//! - [`client`]: waiting on a client's events, and the chaos proxy in front of a server;
//! - [`netns`]: two network namespaces joined by a veth pair, and the path between
//!   them dropped silently in either direction (the half-open tests);
//! - [`timed`]: child processes whose output lines are stamped as they arrive;
//! - [`peer`]: third-party peers (Python `websockets`, Node `ws`) run as processes;
//! - [`redis`]: `redis-server` processes and nodes on the Redis broker;
//! - [`redis_cluster`] and [`redis_sentinel`]: a Redis Cluster, and a master
//!   watched by sentinels ([`redis_process`] runs their processes);
//! - [`redis_tls`]: a `redis-server` that speaks only TLS;
//! - [`sse`]: a raw client of the `/sse` event stream;
//! - [`stream`]: numbered streams over many channels, and the judge of what
//!   subscribers received;
//! - [`tokens`]: keys and JWTs made by PyJWT, for the tests of token verification.

pub mod certs;
pub mod client;
pub mod netns;
pub mod peer;
pub mod redis;
pub mod redis_cluster;
pub mod redis_process;
pub mod redis_sentinel;
pub mod redis_tls;
pub mod sse;
pub mod stream;
pub mod timed;
pub mod tokens;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use heartwire_core::protocol::{ClientFrame, ServerFrame};
use heartwire_server::{Broker, LivenessTiming, MemoryBroker, Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

/// The longest any single wait in a test may take before it fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A WebSocket client of the tests.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A server running in this process until dropped or shut down.
#[derive(Debug)]
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server on 127.0.0.1 with `config` (its `listen` is replaced by a free port).
    pub async fn start(config: ServerConfig) -> Self {
        let broker = Arc::new(MemoryBroker::new(config.retention).with_holdings(config.holdings));
        Self::start_with_broker(config, broker).await
    }

    /// Starts a server on 127.0.0.1 that fans out through `broker`.
    pub async fn start_with_broker(config: ServerConfig, broker: Arc<dyn Broker>) -> Self {
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..config
        };
        let server = Server::bind_with_broker(config, broker)
            .await
            .expect("bind a loopback port");
        let addr = server.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async move {
                    let _ = stopped.await;
                })
                .await
                .expect("server runs");
        });
        Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The `ws://` URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// The `wss://` URL of `path` on this server, by the name `localhost` (for a
    /// server with a certificate from [`certs::TestCa::localhost`]).
    pub fn wss_url(&self, path: &str) -> String {
        format!("wss://localhost:{}{path}", self.addr.port())
    }

    /// Signals shutdown and waits for `run` to return.
    pub async fn shut_down(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(PATIENCE * 2, self.task.take().unwrap())
            .await
            .expect("server stops in time")
            .expect("server task does not panic");
    }

    /// The value of one Prometheus series, e.g. `heartwire_disconnects_total{reason="ping_timeout"}`.
    pub async fn metric(&self, series: &str) -> f64 {
        metric(self.addr, series).await
    }

    /// Polls a metric until it reaches `at_least`, failing after [`PATIENCE`].
    pub async fn wait_for_metric(&self, series: &str, at_least: f64) -> f64 {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let value = self.metric(series).await;
            if value >= at_least {
                return value;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{series} stayed at {value}, wanted {at_least}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Polls `/healthz` until its `status` is `word`, failing after [`PATIENCE`]; returns
/// how long it took.
pub async fn wait_for_health(server: &TestServer, word: &str) -> Duration {
    let start = tokio::time::Instant::now();
    loop {
        let body = http_get(server.addr, "/healthz").await;
        let health: serde_json::Value = serde_json::from_str(&body).expect("/healthz is JSON");
        if health["status"] == word {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < PATIENCE,
            "/healthz stayed {health}, wanted {word}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A config with short heartbeat intervals for tests.
pub fn fast_config(ping_interval_ms: u64, ping_timeout_ms: u64) -> ServerConfig {
    ServerConfig {
        liveness: LivenessTiming {
            ping_interval: Duration::from_millis(ping_interval_ms),
            ping_timeout: Duration::from_millis(ping_timeout_ms),
            close_timeout: Duration::from_millis(500),
        },
        ..ServerConfig::default()
    }
}

/// A plain HTTP/1.0 GET, returning the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    let response = http_request(addr, &format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n")).await;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// The value of one Prometheus series in the `/metrics` of the server at `addr`.
pub async fn metric(addr: SocketAddr, series: &str) -> f64 {
    let body = http_get(addr, "/metrics").await;
    body.lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .unwrap_or_else(|| panic!("no series {series} in:\n{body}"))
        .trim()
        .parse()
        .unwrap()
}

/// Sends raw request bytes and returns the whole response.
pub async fn http_request(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut response))
        .await
        .expect("response in time")
        .unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

/// Opens a WebSocket to `url`, failing the test after [`PATIENCE`].
pub async fn connect(url: &str) -> Socket {
    let (socket, _) = tokio::time::timeout(PATIENCE, connect_async(url))
        .await
        .expect("connect in time")
        .unwrap_or_else(|err| panic!("connect to {url}: {err}"));
    socket
}

/// Opens a WebSocket to `url` with extra request `headers` (`Origin`, `Cookie`,
/// `Authorization`…), failing the test after [`PATIENCE`].
pub async fn connect_with(url: &str, headers: &[(&str, &str)]) -> Socket {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
    let mut request = url.into_client_request().expect("a WebSocket URL");
    for (name, value) in headers {
        request.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
            HeaderValue::from_str(value).expect("a header value"),
        );
    }
    let (socket, _) = tokio::time::timeout(PATIENCE, connect_async(request))
        .await
        .expect("connect in time")
        .unwrap_or_else(|err| panic!("connect to {url}: {err}"));
    socket
}

/// The close frame a refused connection gets as its first and only frame: its code
/// and reason. Fails the test when anything else comes first (a `hello`, data).
pub async fn expect_refusal(socket: &mut Socket) -> (u16, String) {
    let first = tokio::time::timeout(PATIENCE, socket.next())
        .await
        .expect("a frame in time");
    match first {
        Some(Ok(Message::Close(Some(frame)))) => {
            // Reading on answers the close and sees the server hang up.
            while let Ok(Some(Ok(_))) = tokio::time::timeout(PATIENCE, socket.next()).await {}
            (frame.code.into(), frame.reason.to_string())
        }
        other => panic!("expected a close frame first, got {other:?}"),
    }
}

/// Connects to `/ws` and reads the hello.
pub async fn connect_native(server: &TestServer) -> (Socket, String) {
    let mut socket = connect(&server.url("/ws")).await;
    match next_frame(&mut socket).await {
        ServerFrame::Hello { session, .. } => (socket, session),
        other => panic!("expected hello, got {other:?}"),
    }
}

/// Connects to `/ws` of `server`, reads the hello, then answers nothing (reading the
/// raw TCP stream) until the server hangs up, failing after [`PATIENCE`]. Returns the
/// session the server reaped.
pub async fn silent_client(server: &TestServer) -> String {
    let (socket, session) = connect_native(server).await;
    let mut tcp = socket.into_inner();
    let mut sink = vec![0u8; 4096];
    tokio::time::timeout(PATIENCE, async {
        while let Ok(1..) = tcp.read(&mut sink).await {}
    })
    .await
    .expect("the server drops the silent client");
    session
}

/// The next data message (control frames are skipped), failing after [`PATIENCE`].
pub async fn next_message(socket: &mut Socket) -> Message {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .expect("a message in time")
            .expect("socket still open")
            .expect("no transport error");
        if !matches!(message, Message::Ping(_) | Message::Pong(_)) {
            return message;
        }
    }
}

/// The next text frame, skipping Pings and Pongs.
pub async fn next_text(socket: &mut Socket) -> String {
    match next_message(socket).await {
        Message::Text(text) => text.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// The next text frame, parsed as a native envelope.
pub async fn next_frame(socket: &mut Socket) -> ServerFrame {
    let text = next_text(socket).await;
    ServerFrame::parse(&text).unwrap_or_else(|err| panic!("bad frame {text}: {err}"))
}

/// Sends a native envelope.
pub async fn send(socket: &mut Socket, frame: &ClientFrame) {
    socket.send(Message::text(frame.encode())).await.unwrap();
}

/// Sends a subscribe to `channel`, from now, without waiting for the answer.
pub async fn ask_to_subscribe(socket: &mut Socket, channel: &str) {
    send(
        socket,
        &ClientFrame::Subscribe {
            channel: channel.into(),
            since: None,
        },
    )
    .await;
}

/// Subscribes to `channel` and waits for the `subscribed` answer.
pub async fn subscribe(socket: &mut Socket, channel: &str) {
    ask_to_subscribe(socket, channel).await;
    match next_frame(socket).await {
        ServerFrame::Subscribed { channel: got, .. } if got == channel => {}
        other => panic!("expected subscribed to {channel}, got {other:?}"),
    }
}

/// Reads until the server's close frame, finishes the close handshake, and returns
/// the frame's code and reason.
pub async fn expect_close(socket: &mut Socket) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let closed = match tokio::time::timeout_at(deadline, socket.next())
            .await
            .expect("close in time")
        {
            Some(Ok(Message::Close(Some(frame)))) => (frame.code.into(), frame.reason.to_string()),
            Some(Ok(Message::Close(None))) => (1005, String::new()),
            Some(Ok(_)) => continue,
            Some(Err(err)) => panic!("transport error before the close frame: {err}"),
            None => panic!("socket ended without a close frame"),
        };
        // Reading on sends the answering close frame and sees the server hang up.
        while let Ok(Some(Ok(_))) = tokio::time::timeout_at(deadline, socket.next()).await {}
        return closed;
    }
}
