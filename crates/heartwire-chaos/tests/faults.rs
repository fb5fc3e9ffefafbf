//! Each fault of the proxy over loopback sockets: a test client connects through the
//! proxy to a listener of the test, which holds the upstream end, so both ends of
//! every connection are in the test's hands.
//!
//! - none forwards every byte and each half-close, both ways;
//! - a blackhole stops the bytes of its direction only, for good, with both sockets
//!   open; new connections flow once it is off;
//! - latency delays each chunk by `ms` to `ms + jitter_ms`, in order, in its direction
//!   only;
//! - bandwidth paces a transfer to its rate;
//! - reset sends RST to both ends, and to new connections while on;
//! - idle-cut closes a quiet connection `after_ms` after its last byte (or after the
//!   cut started) and leaves a busy one alone.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use heartwire_chaos::{ConnectionInfo, Direction, Fault, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The longest any single wait may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(10);
/// Scheduling slack on a shared 2-core machine.
const SLACK: Duration = Duration::from_millis(1000);
/// How long a socket is watched to show that nothing arrives on it, once the proxy's
/// counters say the bytes were already thrown away.
const NOTHING_WITHIN: Duration = Duration::from_millis(200);

/// A proxy in front of a listener of the test.
struct Rig {
    proxy: Proxy,
    upstream: TcpListener,
}

/// Both ends of one proxied connection.
struct Pair {
    client: TcpStream,
    server: TcpStream,
}

impl Rig {
    async fn start() -> Self {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = upstream.local_addr().unwrap().to_string();
        let proxy = Proxy::bind(loopback(), target).await.unwrap();
        Self { proxy, upstream }
    }

    async fn pair(&self) -> Pair {
        let client = TcpStream::connect(self.proxy.local_addr()).await.unwrap();
        let (server, _) = tokio::time::timeout(PATIENCE, self.upstream.accept())
            .await
            .expect("the proxy connects upstream")
            .unwrap();
        client.set_nodelay(true).unwrap();
        server.set_nodelay(true).unwrap();
        Pair { client, server }
    }

    /// The proxy's record of its only connection, once `ready` holds for it.
    async fn until(&self, what: &str, ready: impl Fn(&ConnectionInfo) -> bool) -> ConnectionInfo {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let [only] = self.proxy.connections().as_slice() {
                if ready(only) {
                    return only.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {:?}",
                self.proxy.connections()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn blackhole(direction: Direction) -> Fault {
    Fault::Blackhole { direction }
}

async fn read_exactly(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut bytes))
        .await
        .expect("the bytes arrive")
        .unwrap();
    bytes
}

/// Fails unless `stream` stays open and silent for [`NOTHING_WITHIN`].
async fn assert_silent(stream: &mut TcpStream, what: &str) {
    let mut byte = [0; 1];
    match tokio::time::timeout(NOTHING_WITHIN, stream.read(&mut byte)).await {
        Err(_) => {}
        Ok(Ok(0)) => panic!("{what}: the socket was closed"),
        Ok(read) => panic!("{what}: something arrived: {read:?}"),
    }
}

async fn assert_flows(pair: &mut Pair, up: bool, down: bool) {
    if up {
        pair.client.write_all(b"up").await.unwrap();
        assert_eq!(read_exactly(&mut pair.server, 2).await, b"up");
    }
    if down {
        pair.server.write_all(b"down").await.unwrap();
        assert_eq!(read_exactly(&mut pair.client, 4).await, b"down");
    }
}

#[tokio::test]
async fn none_forwards_every_byte_and_each_half_close() {
    let rig = Rig::start().await;
    let mut pair = rig.pair().await;
    let sent_up: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let sent_down: Vec<u8> = sent_up.iter().rev().copied().collect();
    let Pair { client, server } = &mut pair;
    let (mut client_read, mut client_write) = client.split();
    let (mut server_read, mut server_write) = server.split();
    let mut got_up = Vec::new();
    let mut got_down = Vec::new();
    let transfer = async {
        tokio::join!(
            async {
                client_write.write_all(&sent_up).await.unwrap();
                client_write.shutdown().await.unwrap();
            },
            async {
                server_write.write_all(&sent_down).await.unwrap();
                server_write.shutdown().await.unwrap();
            },
            async { server_read.read_to_end(&mut got_up).await.unwrap() },
            async { client_read.read_to_end(&mut got_down).await.unwrap() },
        )
    };
    tokio::time::timeout(PATIENCE, transfer)
        .await
        .expect("the transfer ends");
    assert!(
        got_up == sent_up,
        "up: {} bytes of {}",
        got_up.len(),
        sent_up.len()
    );
    assert!(
        got_down == sent_down,
        "down: {} of {}",
        got_down.len(),
        sent_down.len()
    );
    // Both ends finished: the proxy forgets the connection.
    let deadline = Instant::now() + PATIENCE;
    while !rig.proxy.connections().is_empty() {
        assert!(Instant::now() < deadline, "the connection lingers");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_blackhole_stops_its_direction_only_and_keeps_the_sockets_open() {
    for (direction, up_stops, down_stops) in [
        (Direction::Up, true, false),
        (Direction::Down, false, true),
        (Direction::Both, true, true),
    ] {
        let rig = Rig::start().await;
        let mut pair = rig.pair().await;
        assert_flows(&mut pair, true, true).await;
        rig.proxy.set(blackhole(direction));

        pair.client.write_all(b"lost?").await.unwrap();
        pair.server.write_all(b"gone?").await.unwrap();
        let info = rig
            .until("the proxy read both", |c| {
                c.up.forwarded + c.up.discarded == 2 + 5
                    && c.down.forwarded + c.down.discarded == 4 + 5
            })
            .await;
        assert_eq!(
            info.up.discarded,
            if up_stops { 5 } else { 0 },
            "{direction:?}"
        );
        assert_eq!(
            info.down.discarded,
            if down_stops { 5 } else { 0 },
            "{direction:?}"
        );
        if up_stops {
            assert_silent(&mut pair.server, "upstream end").await;
        } else {
            assert_eq!(read_exactly(&mut pair.server, 5).await, b"lost?");
        }
        if down_stops {
            assert_silent(&mut pair.client, "client end").await;
        } else {
            assert_eq!(read_exactly(&mut pair.client, 5).await, b"gone?");
        }
        // The open direction still flows: the connection is alive.
        assert_flows(&mut pair, !up_stops, !down_stops).await;

        // Lifted: the old connection stays cut, a new one flows both ways.
        rig.proxy.set(Fault::None);
        if up_stops {
            pair.client.write_all(b"x").await.unwrap();
            rig.until("the proxy read it", |c| c.up.discarded == 6)
                .await;
            assert_silent(&mut pair.server, "upstream end after none").await;
        }
        if down_stops {
            pair.server.write_all(b"y").await.unwrap();
            rig.until("the proxy read it", |c| c.down.discarded == 6)
                .await;
            assert_silent(&mut pair.client, "client end after none").await;
        }
        drop(pair);
        let deadline = Instant::now() + PATIENCE;
        while !rig.proxy.connections().is_empty() {
            assert!(Instant::now() < deadline, "the closed connection lingers");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut fresh = rig.pair().await;
        assert_flows(&mut fresh, true, true).await;
    }
}

#[tokio::test]
async fn latency_delays_each_chunk_within_its_bounds_and_in_order() {
    const MS: u64 = 100;
    const JITTER_MS: u64 = 50;
    let rig = Rig::start().await;
    let mut pair = rig.pair().await;
    rig.proxy.set(Fault::Latency {
        ms: MS,
        jitter_ms: JITTER_MS,
        direction: Direction::Up,
    });
    let least = Duration::from_millis(MS);
    let most = Duration::from_millis(MS + JITTER_MS) + SLACK;
    for round in 0..5u8 {
        let sent = Instant::now();
        pair.client.write_all(&[round]).await.unwrap();
        assert_eq!(read_exactly(&mut pair.server, 1).await, [round]);
        let took = sent.elapsed();
        assert!(took >= least && took <= most, "round {round}: {took:?}");
    }
    // Many chunks with jitter between them arrive whole and in order.
    let sent: Vec<u8> = (0..=255).collect();
    for chunk in sent.chunks(8) {
        pair.client.write_all(chunk).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(read_exactly(&mut pair.server, sent.len()).await, sent);
    // The other direction is not delayed.
    let started = Instant::now();
    pair.server.write_all(b"fast").await.unwrap();
    assert_eq!(read_exactly(&mut pair.client, 4).await, b"fast");
    assert!(
        started.elapsed() < least,
        "down took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn bandwidth_paces_a_transfer_to_its_rate() {
    const RATE: u64 = 50_000;
    const BYTES: usize = 100_000;
    let rig = Rig::start().await;
    let mut pair = rig.pair().await;
    rig.proxy.set(Fault::Bandwidth {
        bytes_per_sec: RATE,
        direction: Direction::Both,
    });
    let sent = vec![7u8; BYTES];
    let started = Instant::now();
    let (written, received) = tokio::join!(
        pair.client.write_all(&sent),
        read_exactly(&mut pair.server, BYTES)
    );
    written.unwrap();
    let took = started.elapsed();
    assert_eq!(received, sent);
    let floor = Duration::from_secs_f64(BYTES as f64 / RATE as f64);
    assert!(
        took >= floor,
        "{BYTES} bytes in {took:?}, faster than {RATE} B/s"
    );
    assert!(
        took <= floor + SLACK,
        "{BYTES} bytes in {took:?}, at {RATE} B/s"
    );
}

#[tokio::test]
async fn reset_sends_rst_to_both_ends_and_to_new_connections() {
    let rig = Rig::start().await;
    let mut pair = rig.pair().await;
    assert_flows(&mut pair, true, true).await;
    rig.proxy.set(Fault::Reset);
    for (end, stream) in [("client", &mut pair.client), ("upstream", &mut pair.server)] {
        let mut byte = [0; 1];
        let read = tokio::time::timeout(PATIENCE, stream.read(&mut byte))
            .await
            .expect("the reset arrives");
        let kind = read.expect_err(end).kind();
        assert_eq!(kind, std::io::ErrorKind::ConnectionReset, "{end}");
    }
    // A new connection while the reset is on is reset at once.
    let mut late = TcpStream::connect(rig.proxy.local_addr()).await.unwrap();
    let mut byte = [0; 1];
    let read = tokio::time::timeout(PATIENCE, late.read(&mut byte))
        .await
        .expect("the reset arrives");
    assert_eq!(
        read.unwrap_err().kind(),
        std::io::ErrorKind::ConnectionReset
    );

    rig.proxy.set(Fault::None);
    let mut fresh = rig.pair().await;
    assert_flows(&mut fresh, true, true).await;
}

#[tokio::test]
async fn idle_cut_closes_a_quiet_connection_and_spares_a_busy_one() {
    const AFTER: Duration = Duration::from_millis(300);
    let rig = Rig::start().await;
    let mut quiet = rig.pair().await;
    // Quiet for longer than the cut before it starts: it counts from its start.
    tokio::time::sleep(AFTER + AFTER / 2).await;
    let started = Instant::now();
    rig.proxy.set(Fault::IdleCut {
        after_ms: AFTER.as_millis() as u64,
    });
    let mut byte = [0; 1];
    let read = tokio::time::timeout(PATIENCE, quiet.client.read(&mut byte))
        .await
        .expect("the cut comes");
    let took = started.elapsed();
    assert_eq!(read.unwrap(), 0, "closed with a FIN");
    assert!(took >= AFTER && took <= AFTER + SLACK, "cut after {took:?}");
    let read = tokio::time::timeout(PATIENCE, quiet.server.read(&mut byte)).await;
    assert_eq!(read.expect("the upstream end is closed too").unwrap(), 0);

    // A byte every AFTER / 3 keeps a connection open through three cuts' worth.
    let mut busy = rig.pair().await;
    let until = Instant::now() + 3 * AFTER;
    let mut sent = 0;
    let last_byte = loop {
        let written = Instant::now();
        busy.client.write_all(&[sent]).await.unwrap();
        assert_eq!(read_exactly(&mut busy.server, 1).await, [sent]);
        sent += 1;
        if written >= until {
            break written;
        }
        tokio::time::sleep(AFTER / 3).await;
    };
    // Once quiet, it is cut too.
    let read = tokio::time::timeout(PATIENCE, busy.client.read(&mut byte)).await;
    assert_eq!(read.expect("the cut comes").unwrap(), 0);
    let took = last_byte.elapsed();
    assert!(
        took >= AFTER && took <= AFTER + SLACK,
        "cut {took:?} after the last byte"
    );
}
