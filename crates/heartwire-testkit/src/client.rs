//! For the client's tests: bounded waits on client events,
//! and a TCP proxy that can blackhole its connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use heartwire_client::{Event, Events};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The next event that `matches`, with the time it arrived; panics after `within`,
/// listing what arrived instead.
pub async fn wait_for(
    events: &mut Events,
    within: Duration,
    what: &str,
    matches: impl Fn(&Event) -> bool,
) -> (Event, Instant) {
    let deadline = tokio::time::Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(event)) if matches(&event) => return (event, Instant::now()),
            Ok(Some(event)) => seen.push(event),
            Ok(None) => panic!("events ended while waiting for {what}; seen: {seen:#?}"),
            Err(_) => panic!("no {what} within {within:?}; seen: {seen:#?}"),
        }
    }
}

/// A TCP proxy in front of `target` whose existing connections can be frozen: bytes
/// stop flowing both ways while the sockets stay open, as with a hung server or a
/// dead path. New connections after [`Proxy::thaw`] flow again.
#[derive(Debug)]
pub struct Proxy {
    /// Where clients connect to reach the target through it.
    pub addr: SocketAddr,
    frozen: Arc<AtomicBool>,
    generation: Arc<std::sync::atomic::AtomicU64>,
}

impl Proxy {
    /// Starts forwarding loopback connections to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let frozen = Arc::new(AtomicBool::new(false));
        let generation = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (flag, generations) = (Arc::clone(&frozen), Arc::clone(&generation));
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let born = generations.load(Ordering::SeqCst);
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                let link = Link {
                    frozen: Arc::clone(&flag),
                    generation: Arc::clone(&generations),
                    born,
                };
                tokio::spawn(link.clone().pump(client_read, server_write));
                tokio::spawn(link.pump(server_read, client_write));
            }
        });
        Self {
            addr,
            frozen,
            generation,
        }
    }

    /// Stops every byte on the connections open now.
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    /// Lets new connections through again; the frozen ones stay frozen.
    pub fn thaw(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.frozen.store(false, Ordering::SeqCst);
    }
}

#[derive(Clone)]
struct Link {
    frozen: Arc<AtomicBool>,
    generation: Arc<std::sync::atomic::AtomicU64>,
    born: u64,
}

impl Link {
    fn blackholed(&self) -> bool {
        self.frozen.load(Ordering::SeqCst) || self.generation.load(Ordering::SeqCst) != self.born
    }

    async fn pump(
        self,
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
    ) {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let Ok(read) = from.read(&mut buffer).await else {
                return;
            };
            if read == 0 {
                return;
            }
            if self.blackholed() {
                // Swallow everything from now on, keeping both sockets open.
                while from.read(&mut buffer).await.is_ok_and(|n| n > 0) {}
                std::future::pending::<()>().await;
            }
            if to.write_all(&buffer[..read]).await.is_err() {
                return;
            }
        }
    }
}
