//! Scenario 4: echo. Each connection keeps a few 20-byte messages in flight and sends
//! a new one for every one that comes back; the figure is the messages that came back
//! per second, over all connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::RunArgs;
use crate::dialect::{Dialect, Inbound, Role};
use crate::figures::{Better, Figures};
use crate::histogram::Histogram;
use crate::payload;
use crate::wire::{self, Socket, Sources};

const MESSAGE_SIZE: usize = 20;
/// Messages each connection keeps in flight.
const IN_FLIGHT: usize = 8;
const SOURCES: Sources = Sources {
    first: 50,
    count: 1,
};

pub(super) async fn measure(args: &RunArgs, figures: &mut Figures) -> anyhow::Result<()> {
    let server = args.start_server().await?;
    let sockets = wire::open_many(args.target()?, Role::Echo, args.echo_connections, SOURCES).await;
    anyhow::ensure!(!sockets.is_empty(), "no echo connection opened");
    let latency = Arc::new(Histogram::new());
    let echoed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + args.echo_window;
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|socket| {
            let latency = latency.clone();
            let echoed = echoed.clone();
            tokio::spawn(echo(socket, args.dialect, deadline, latency, echoed))
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    let secs = started.elapsed().as_secs_f64();
    let count = echoed.load(Ordering::Relaxed);
    figures.add(
        "echo_messages_per_sec",
        count as f64 / secs,
        "1/s",
        Better::Higher,
    );
    if let Some(p99) = latency.quantile(0.99) {
        figures.add("echo_p99_ms", p99.as_secs_f64() * 1e3, "ms", Better::Lower);
    }
    server.kill().await?;
    Ok(())
}

/// Echoes on one connection until `deadline`.
async fn echo(
    mut socket: Socket,
    dialect: Dialect,
    deadline: Instant,
    latency: Arc<Histogram>,
    echoed: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let message = || Message::text(dialect.echo(&payload::stamped(MESSAGE_SIZE)));
    for _ in 0..IN_FLIGHT {
        socket.feed(message()).await?;
    }
    socket.flush().await?;
    let sleep = tokio::time::sleep_until(deadline.into());
    tokio::pin!(sleep);
    loop {
        let frame = tokio::select! {
            () = &mut sleep => return Ok(()),
            frame = socket.next() => frame,
        };
        match frame {
            Some(Ok(Message::Text(text))) => match dialect.inbound(&text) {
                Inbound::Heartbeat => {
                    socket
                        .send(Message::text(dialect.heartbeat_answer()))
                        .await?;
                }
                Inbound::Data(frame) => {
                    if let Some(age) = payload::age(frame) {
                        latency.record(age);
                        echoed.fetch_add(1, Ordering::Relaxed);
                        socket.send(message()).await?;
                    }
                }
            },
            Some(Ok(Message::Ping(_))) => socket.flush().await?,
            Some(Ok(_)) => {}
            Some(Err(err)) => return Err(err.into()),
            None => anyhow::bail!("an echo connection closed"),
        }
    }
}
