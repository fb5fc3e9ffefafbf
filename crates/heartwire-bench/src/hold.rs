//! `heartwire bench hold`: a generator process. It opens its share of connections,
//! keeps them alive (answering every heartbeat), counts heartbeats and disconnects,
//! and obeys one-line orders on stdin:
//! - `report`: print the counters;
//! - `ping`: send a Ping on every connection now, print how many went out (used just
//!   before this process is frozen, so the server's last sign of life is known);
//! - end of input: exit, closing every connection.
//!
//! Every answer is one JSON line on stdout ([`WorkerLine`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;

use super::dialect::{Dialect, Inbound, Role};
use super::wire::{self, Socket, Sources, Target};

/// How often the opening is checked; progress is reported every `PROGRESS_EVERY` checks.
const CHECK_EVERY: Duration = Duration::from_millis(5);
const PROGRESS_EVERY: u32 = 100;
/// The longest the `ping` order waits for the Pings to go out.
const PING_ORDER_TIMEOUT: Duration = Duration::from_secs(5);

/// Options of `heartwire bench hold`.
#[derive(Debug, clap::Args)]
pub(crate) struct HoldArgs {
    /// The server's port on 127.0.0.1
    #[arg(long)]
    port: u16,
    #[arg(long, value_enum)]
    dialect: Dialect,
    /// Connections to open
    #[arg(long)]
    connections: usize,
    /// The first source address is 127.0.0.FIRST
    #[arg(long)]
    first_source: u8,
    /// Source addresses to spread the connections over
    #[arg(long)]
    sources: u8,
    /// Connections opening at the same time
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Connect with TLS, trusting only the CA in this PEM file
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<std::path::PathBuf>,
    /// Present the JWT in this file on every connection
    #[arg(long, value_name = "FILE")]
    token_file: Option<std::path::PathBuf>,
}

/// One line a generator process prints.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum WorkerLine {
    /// Connections open so far.
    Progress { connected: u64 },
    /// Every connection was tried.
    Ready {
        connected: u64,
        failed: u64,
        secs: f64,
        first_error: Option<String>,
    },
    /// Heartbeats answered and connections lost since the start.
    Counters { heartbeats: u64, disconnects: u64 },
    /// Pings sent for the `ping` order.
    Pinged { count: u64 },
}

#[derive(Default)]
struct Counters {
    connected: AtomicU64,
    failed: AtomicU64,
    heartbeats: AtomicU64,
    disconnects: AtomicU64,
    pinged: AtomicU64,
}

pub(crate) fn run(args: HoldArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(hold_all(args))
}

async fn hold_all(args: HoldArgs) -> anyhow::Result<()> {
    let target = Target {
        port: args.port,
        dialect: args.dialect,
        tls: args
            .tls_ca
            .as_deref()
            .map(wire::Tls::trusting)
            .transpose()?,
        token: args
            .token_file
            .as_deref()
            .map(wire::Token::read)
            .transpose()?,
    };
    let sources = Sources {
        first: args.first_source,
        count: args.sources,
    };
    let counters = Arc::new(Counters::default());
    let (orders, _) = watch::channel(0u64);
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let (errors, mut first_error) = tokio::sync::mpsc::channel::<String>(1);
    let started = Instant::now();
    for index in 0..args.connections {
        let counters = counters.clone();
        let orders = orders.subscribe();
        let gate = gate.clone();
        let errors = errors.clone();
        let target = target.clone();
        tokio::spawn(async move {
            let permit = gate.acquire_owned().await;
            match wire::open(&target, Role::Idle, sources.nth(index)).await {
                Ok(socket) => {
                    drop(permit);
                    counters.connected.fetch_add(1, Ordering::Relaxed);
                    hold(socket, target.dialect, &counters, orders).await;
                }
                Err(err) => {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    let _ = errors.try_send(format!("{err:#}"));
                }
            }
        });
    }
    drop(errors);
    let total = u64::try_from(args.connections)?;
    for check in 0.. {
        let connected = counters.connected.load(Ordering::Relaxed);
        let failed = counters.failed.load(Ordering::Relaxed);
        if connected + failed >= total {
            say(&WorkerLine::Ready {
                connected,
                failed,
                secs: started.elapsed().as_secs_f64(),
                first_error: first_error.try_recv().ok(),
            });
            break;
        }
        if check % PROGRESS_EVERY == 0 {
            say(&WorkerLine::Progress { connected });
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(order) = lines.next_line().await? {
        match order.trim() {
            "report" => say(&WorkerLine::Counters {
                heartbeats: counters.heartbeats.load(Ordering::Relaxed),
                disconnects: counters.disconnects.load(Ordering::Relaxed),
            }),
            "ping" => {
                let before = counters.pinged.load(Ordering::Relaxed);
                orders.send_modify(|generation| *generation += 1);
                let open = counters.connected.load(Ordering::Relaxed)
                    - counters.disconnects.load(Ordering::Relaxed);
                let deadline = Instant::now() + PING_ORDER_TIMEOUT;
                while counters.pinged.load(Ordering::Relaxed) - before < open
                    && Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                let count = counters.pinged.load(Ordering::Relaxed) - before;
                say(&WorkerLine::Pinged { count });
            }
            other => anyhow::bail!("unknown order {other:?}"),
        }
    }
    Ok(())
}

fn say(line: &WorkerLine) {
    println!(
        "{}",
        serde_json::to_string(line).expect("worker lines serialize")
    );
}

/// Keeps one connection alive until it ends or the process does.
async fn hold(
    mut socket: Socket,
    dialect: Dialect,
    counters: &Counters,
    mut orders: watch::Receiver<u64>,
) {
    loop {
        tokio::select! {
            frame = socket.next() => match frame {
                Some(Ok(Message::Ping(_))) => {
                    counters.heartbeats.fetch_add(1, Ordering::Relaxed);
                    // The Pong is queued; send it now.
                    if socket.flush().await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Text(text))) => {
                    if dialect.inbound(&text) == Inbound::Heartbeat {
                        counters.heartbeats.fetch_add(1, Ordering::Relaxed);
                        let answer = Message::text(dialect.heartbeat_answer());
                        if socket.send(answer).await.is_err() {
                            break;
                        }
                    }
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            changed = orders.changed() => {
                if changed.is_err() {
                    return;
                }
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
                counters.pinged.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    counters.disconnects.fetch_add(1, Ordering::Relaxed);
}
