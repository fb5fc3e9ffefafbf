//! `heartwire bench overload`: what overload admission buys the connections a node
//! already holds. The same server is started twice, with admission off and on; each
//! time a few hundred established connections ping it every 100 ms through `/ws`
//! (`{"op":"ping"}`, answered `pong`) while a flood of clients, more than it can take,
//! connects over and over for a window (each holds its connection a moment, drops
//! it and comes back; a client answered 503 waits its `Retry-After`, as clients
//! should). Figures, per mode: the round trip of the established connections (p50,
//! p99, highest) over the window, the flood's upgrades and refusals, and the server's
//! own count of overload refusals by reason. Printed as a Markdown table.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpSocket;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::histogram::Histogram;
use crate::server::ServerProcess;
use crate::wire::{Socket, Sources};

/// How often an established connection pings.
const PING_EVERY: Duration = Duration::from_millis(100);
/// A pong later than this is recorded as this.
const PONG_PATIENCE: Duration = Duration::from_secs(10);
/// The longest a flood client's attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Sources of the flood, so that its churn does not run out of ephemeral ports.
const SOURCES: Sources = Sources {
    first: 1,
    count: 16,
};

/// Options of `heartwire bench overload`.
#[derive(Debug, clap::Args)]
pub(crate) struct OverloadArgs {
    /// Established connections whose round trip is measured
    #[arg(long, default_value_t = 200)]
    established: usize,
    /// Flood clients connecting over and over
    #[arg(long, default_value_t = 3000)]
    flood: usize,
    /// How long the flood lasts (the round trips are measured over it)
    #[arg(long, value_parser = humantime::parse_duration, default_value = "20s")]
    window: Duration,
    /// How long a flood client holds its connection before it drops it and comes back
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    hold: Duration,
    /// The server's options with admission on (the defaults, unless given)
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    on: String,
    /// The server's options with admission off
    #[arg(
        long,
        default_value = "--max-pending-handshakes 0 --overload-max-lag 0",
        allow_hyphen_values = true
    )]
    off: String,
}

/// What the flood did.
#[derive(Default)]
struct Flood {
    upgraded: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
}

pub(crate) fn run(args: OverloadArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(async {
        let mut table = String::from(
            "| admission | established p50 ms | p99 ms | highest ms | pings | flood upgrades | flood refused (503) | flood failed | server: overload_handshakes | overload_lag | overload_memory |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for (mode, options) in [("off", &args.off), ("on", &args.on)] {
            eprintln!("overload: admission {mode} ({options})");
            table.push_str(&measure(&args, mode, options).await?);
        }
        println!("{table}");
        anyhow::Ok(())
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    outcome
}

/// One mode: a fresh server, the established connections, the flood; one table row.
async fn measure(args: &OverloadArgs, mode: &str, options: &str) -> anyhow::Result<String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let program = std::env::current_exe().context("cannot find this program")?;
    let command = format!(
        "'{}' serve --listen 127.0.0.1:{port} --max-connections 1000000 \
         --max-connections-per-ip 0 --accept-rate 0/s {options}",
        program.display()
    );
    let log = std::env::temp_dir().join(format!("heartwire-overload-{mode}.log"));
    let server = ServerProcess::start(&command, port, &log).await?;
    let address = SocketAddr::from(([127, 0, 0, 1], port));

    let rtt = Arc::new(Histogram::new());
    // The established connections live on a runtime of their own, so that their pings
    // never queue behind the flood's tasks in this process's scheduler.
    let (ready, window_end) = tokio::sync::oneshot::channel();
    let pinger = {
        let (rtt, count, window) = (rtt.clone(), args.established, args.window);
        std::thread::spawn(move || established(address, count, window, rtt, ready))
    };
    let Ok(window_end) = window_end.await else {
        return Err(join(pinger)
            .err()
            .unwrap_or_else(|| anyhow::anyhow!("the established connections did not start")));
    };
    let flood = Arc::new(Flood::default());
    let clients: Vec<_> = (0..args.flood)
        .map(|index| {
            tokio::spawn(flood_client(
                address,
                SOURCES.nth(index),
                args.hold,
                flood.clone(),
                window_end,
            ))
        })
        .collect();
    for task in clients {
        task.await?;
    }
    tokio::task::spawn_blocking(move || join(pinger)).await??;
    let mut refusals = Vec::new();
    for reason in ["overload_handshakes", "overload_lag", "overload_memory"] {
        let series = format!("heartwire_refused_total{{reason=\"{reason}\"}}");
        refusals.push(server.metric(&series).await.unwrap_or(f64::NAN));
    }
    server.kill().await?;
    let ms = |quantile: f64| {
        rtt.quantile(quantile)
            .map_or(f64::NAN, |rtt| rtt.as_secs_f64() * 1000.0)
    };
    Ok(format!(
        "| {mode} | {:.1} | {:.1} | {:.0} | {} | {} | {} | {} | {} | {} | {} |\n",
        ms(0.5),
        ms(0.99),
        ms(1.0),
        rtt.count(),
        flood.upgraded.load(Ordering::Relaxed),
        flood.refused.load(Ordering::Relaxed),
        flood.failed.load(Ordering::Relaxed),
        refusals[0],
        refusals[1],
        refusals[2],
    ))
}

/// Opens `count` connections, tells `ready` when the window ends, and pings on each
/// until then (on a runtime of this thread's own).
fn established(
    server: SocketAddr,
    count: usize,
    window: Duration,
    rtt: Arc<Histogram>,
    ready: tokio::sync::oneshot::Sender<Instant>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut sockets = Vec::with_capacity(count);
        for index in 0..count {
            let socket = open(server, SOURCES.nth(index))
                .await
                .context("an established connection did not open")?;
            sockets.push(socket);
        }
        let end = Instant::now() + window;
        let _ = ready.send(end);
        let pingers: Vec<_> = sockets
            .into_iter()
            .map(|socket| tokio::spawn(ping(socket, rtt.clone(), end)))
            .collect();
        for pinger in pingers {
            pinger.await?;
        }
        anyhow::Ok(())
    })
}

/// The outcome of the established connections' thread.
fn join(thread: std::thread::JoinHandle<anyhow::Result<()>>) -> anyhow::Result<()> {
    thread
        .join()
        .map_err(|_| anyhow::anyhow!("the established connections' thread panicked"))?
}

/// Opens `/ws` from `source` and reads `hello`.
async fn open(server: SocketAddr, source: std::net::Ipv4Addr) -> anyhow::Result<Socket> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    let stream = socket.connect(server).await?;
    stream.set_nodelay(true)?;
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{server}/ws"), stream).await?;
    loop {
        match ws.next().await.context("closed before hello")?? {
            Message::Text(_) => return Ok(ws),
            Message::Close(close) => anyhow::bail!("closed before hello: {close:?}"),
            _ => {}
        }
    }
}

/// Pings every [`PING_EVERY`] until `end`, recording each round trip.
async fn ping(mut ws: Socket, rtt: Arc<Histogram>, end: Instant) {
    let mut next = Instant::now();
    while next < end {
        tokio::time::sleep_until(next).await;
        next += PING_EVERY;
        let sent = Instant::now();
        if ws
            .send(Message::text(r#"{"op":"ping","t":1}"#))
            .await
            .is_err()
        {
            rtt.record(PONG_PATIENCE);
            return;
        }
        let pong = tokio::time::timeout(PONG_PATIENCE, async {
            while let Some(Ok(frame)) = ws.next().await {
                if matches!(&frame, Message::Text(text) if text.contains("\"pong\"")) {
                    return true;
                }
            }
            false
        })
        .await;
        rtt.record(sent.elapsed().min(PONG_PATIENCE));
        if !matches!(pong, Ok(true)) {
            return;
        }
        // A late pong is not followed by a burst: the next ping is a period away.
        next = next.max(Instant::now());
    }
}

/// Connects over and over until `end`: holds each connection for `hold`, and waits
/// out the `Retry-After` of a refusal.
async fn flood_client(
    server: SocketAddr,
    source: std::net::Ipv4Addr,
    hold: Duration,
    flood: Arc<Flood>,
    end: Instant,
) {
    while Instant::now() < end {
        match tokio::time::timeout(ATTEMPT_TIMEOUT, open(server, source)).await {
            Ok(Ok(ws)) => {
                flood.upgraded.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep_until((Instant::now() + hold).min(end)).await;
                drop(ws);
            }
            Ok(Err(err)) => {
                if let Some(wait) = retry_after(&err) {
                    flood.refused.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep_until((Instant::now() + wait).min(end)).await;
                } else {
                    flood.failed.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            Err(_) => {
                flood.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The `Retry-After` of an upgrade answered 503.
fn retry_after(err: &anyhow::Error) -> Option<Duration> {
    let Some(tungstenite::Error::Http(response)) = err.downcast_ref::<tungstenite::Error>() else {
        return None;
    };
    if response.status() != 503 {
        return None;
    }
    let secs = response
        .headers()
        .get("retry-after")?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
}
