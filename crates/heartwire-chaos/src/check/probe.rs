//! A bare WebSocket to the server: its `hello` tells the check the server's ping
//! interval and timeout (the bounds of every verdict), and through the proxy it shows
//! whether WebSocket Pings pass the path each way.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use heartwire_core::protocol::ServerFrame;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::AUTHORIZATION;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};
use url::Url;

use crate::Error;

/// A bare WebSocket.
pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the server's `hello` said.
#[derive(Debug, Clone)]
pub(crate) struct ServerInfo {
    pub(crate) name: String,
    pub(crate) ping_interval: Duration,
    pub(crate) ping_timeout: Duration,
}

const PING_PAYLOAD: &[u8] = b"heartwire chaos check";

/// Connects to `url` and reads its `hello`, all within `within`.
pub(crate) async fn open(
    url: &Url,
    token: Option<&str>,
    within: Duration,
) -> Result<(Socket, ServerInfo), Error> {
    let unreachable = |reason: String| Error::Unreachable {
        url: url.to_string(),
        reason,
    };
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|err| unreachable(err.to_string()))?;
    if let Some(token) = token {
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| unreachable("the token cannot go in a header".into()))?;
        request.headers_mut().insert(AUTHORIZATION, value);
    }
    let opening = async {
        let (mut socket, _) = connect_async(request)
            .await
            .map_err(|err| unreachable(err.to_string()))?;
        let first = loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) => break text.to_string(),
                Some(Ok(Message::Close(close))) => break format!("a close frame: {close:?}"),
                Some(Ok(_)) => continue,
                Some(Err(err)) => return Err(unreachable(err.to_string())),
                None => break "the connection ended".to_owned(),
            }
        };
        match ServerFrame::parse(&first) {
            Ok(ServerFrame::Hello {
                ping_interval_ms,
                ping_timeout_ms,
                server,
                ..
            }) => Ok((
                socket,
                ServerInfo {
                    name: server,
                    ping_interval: Duration::from_millis(ping_interval_ms),
                    ping_timeout: Duration::from_millis(ping_timeout_ms),
                },
            )),
            _ => Err(Error::NotHeartwire {
                url: url.to_string(),
                first: shorten(&first),
            }),
        }
    };
    tokio::time::timeout(within, opening)
        .await
        .map_err(|_| unreachable(format!("no hello within {within:?}")))?
}

/// Sends a Ping and waits for its Pong: the round trip, or `None` after `within`.
pub(crate) async fn ping_pong(socket: &mut Socket, within: Duration) -> Option<Duration> {
    let sent = Instant::now();
    socket
        .send(Message::Ping(Bytes::from_static(PING_PAYLOAD)))
        .await
        .ok()?;
    let answered = async {
        while let Some(Ok(message)) = socket.next().await {
            if matches!(&message, Message::Pong(payload) if payload.as_ref() == PING_PAYLOAD) {
                return Some(sent.elapsed());
            }
        }
        None
    };
    tokio::time::timeout(within, answered).await.ok().flatten()
}

/// Stays silent and waits for the server's Ping: when it came, or `None` after
/// `within`.
pub(crate) async fn server_ping(socket: &mut Socket, within: Duration) -> Option<Instant> {
    let pinged = async {
        while let Some(Ok(message)) = socket.next().await {
            if matches!(message, Message::Ping(_)) {
                return Some(Instant::now());
            }
        }
        None
    };
    tokio::time::timeout(within, pinged).await.ok().flatten()
}

fn shorten(text: &str) -> String {
    const MAX: usize = 80;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}
