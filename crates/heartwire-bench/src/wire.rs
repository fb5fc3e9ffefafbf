//! Opening benchmark connections: TCP from a chosen 127.0.0.x source (each source has
//! its own ephemeral port range), TLS when the target has a CA to trust, the WebSocket
//! handshake with small buffers (with a JWT in the `token` query parameter when the target
//! has one), then the dialect's opening exchange.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::dialect::{Dialect, Role};

/// An open benchmark connection.
pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The name a TLS server's certificate must hold (the server listens on 127.0.0.1).
const TLS_NAME: &str = "localhost";

/// The longest a connection may take to open, handshake and opening exchange included.
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);
/// The generator's read buffer: frames here are small, and 19k connections share one
/// process.
const READ_BUFFER: usize = 4096;
/// Connections opening at the same time from one process, unless a scenario says otherwise.
pub(crate) const OPEN_CONCURRENCY: usize = 256;

/// The server under test.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub(crate) port: u16,
    pub(crate) dialect: Dialect,
    /// TLS (`wss://localhost`), when the server speaks it.
    pub(crate) tls: Option<Tls>,
    /// The JWT every connection presents, when the server verifies them.
    pub(crate) token: Option<Token>,
}

/// A JWT minted before the run, and the file it was read from (which generator
/// processes are given).
#[derive(Clone)]
pub(crate) struct Token {
    pub(crate) file: PathBuf,
    value: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token").field("file", &self.file).finish()
    }
}

impl Token {
    /// Reads the token in `file` (surrounding whitespace is not part of it).
    pub(crate) fn read(file: &Path) -> anyhow::Result<Self> {
        let value = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the token file {}", file.display()))?
            .trim()
            .to_owned();
        anyhow::ensure!(
            !value.is_empty(),
            "the token file {} is empty",
            file.display()
        );
        Ok(Self {
            file: file.to_owned(),
            value,
        })
    }
}

/// TLS to the server: the CA its certificate chains to, and the connector that
/// trusts it.
#[derive(Clone)]
pub(crate) struct Tls {
    pub(crate) ca: PathBuf,
    connector: TlsConnector,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("ca", &self.ca).finish()
    }
}

impl Tls {
    /// Trusts only the CA certificates of the PEM file `ca` (rustls with ring).
    pub(crate) fn trusting(ca: &Path) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca)
            .with_context(|| format!("cannot read the CA file {}", ca.display()))?
        {
            roots.add(cert.context("not a PEM certificate")?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            ca: ca.to_owned(),
            connector: TlsConnector::from(Arc::new(config)),
        })
    }
}

/// Which 127.0.0.x a connection comes from.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sources {
    pub(crate) first: u8,
    pub(crate) count: u8,
}

impl Sources {
    /// The source of the `index`th connection.
    pub(crate) fn nth(self, index: usize) -> Ipv4Addr {
        let offset = u8::try_from(index % usize::from(self.count.max(1))).unwrap_or(0);
        Ipv4Addr::new(127, 0, 0, self.first.saturating_add(offset))
    }
}

/// Opens a connection for `role` from `source`.
pub(crate) async fn open(target: &Target, role: Role, source: Ipv4Addr) -> anyhow::Result<Socket> {
    tokio::time::timeout(OPEN_TIMEOUT, open_now(target, role, source))
        .await
        .context("opening timed out")?
}

async fn open_now(target: &Target, role: Role, source: Ipv4Addr) -> anyhow::Result<Socket> {
    let socket = TcpSocket::new_v4()?;
    socket
        .bind(SocketAddr::from((source, 0)))
        .with_context(|| format!("cannot bind {source}"))?;
    let server = SocketAddr::from((Ipv4Addr::LOCALHOST, target.port));
    let stream = socket.connect(server).await.context("TCP connect failed")?;
    stream.set_nodelay(true)?;
    let path = match &target.token {
        None => target.dialect.path(role).to_owned(),
        Some(token) => {
            let path = target.dialect.path(role);
            let joint = if path.contains('?') { '&' } else { '?' };
            format!("{path}{joint}token={}", token.value)
        }
    };
    let (stream, url) = match &target.tls {
        None => (
            MaybeTlsStream::Plain(stream),
            format!("ws://127.0.0.1:{}{path}", target.port),
        ),
        Some(tls) => {
            let name = ServerName::try_from(TLS_NAME)?;
            let stream = tls
                .connector
                .connect(name, stream)
                .await
                .context("TLS handshake failed")?;
            (
                MaybeTlsStream::Rustls(stream),
                format!("wss://{TLS_NAME}:{}{path}", target.port),
            )
        }
    };
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config))
        .await
        .context("WebSocket handshake failed")?;
    for _ in 0..target.dialect.greetings(role) {
        next_text(&mut ws).await?;
    }
    for frame in target.dialect.opening(role) {
        ws.send(Message::text(frame)).await?;
        next_text(&mut ws).await?;
    }
    Ok(ws)
}

/// The next text frame; Pings on the way are answered by the WebSocket layer.
async fn next_text(ws: &mut Socket) -> anyhow::Result<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text.to_string()),
            Some(Ok(Message::Close(frame))) => anyhow::bail!("closed while opening: {frame:?}"),
            Some(Ok(_)) => {}
            Some(Err(err)) => return Err(err.into()),
            None => anyhow::bail!("closed while opening"),
        }
    }
}

/// Opens `count` connections for `role` in this process, 256 at a time; returns the
/// ones that opened and reports the first failure.
pub(crate) async fn open_many(
    target: Target,
    role: Role,
    count: usize,
    sources: Sources,
) -> Vec<Socket> {
    let bar = super::progress::bar(u64::try_from(count).unwrap_or(u64::MAX), "connecting");
    let opened = futures_util::stream::iter(0..count)
        .map(|index| open(&target, role, sources.nth(index)))
        .buffer_unordered(OPEN_CONCURRENCY)
        .inspect(|_| bar.inc(1))
        .collect::<Vec<_>>()
        .await;
    bar.finish_and_clear();
    let mut sockets = Vec::with_capacity(count);
    let mut failed = 0;
    for result in opened {
        match result {
            Ok(socket) => sockets.push(socket),
            Err(err) => {
                if failed == 0 {
                    eprintln!("bench: a connection failed: {err:#}");
                }
                failed += 1;
            }
        }
    }
    if failed > 0 {
        eprintln!("bench: {failed} of {count} connections failed");
    }
    sockets
}
