//! The node's one Redis pub/sub connection: it subscribes once per channel (never per
//! connection), hands every message to [`Channels`](super::channels::Channels), and survives Redis.
//!
//! When the connection is lost the node is marked down (`/healthz` says "degraded",
//! publishes are refused with `unavailable`), live messages of every channel wait,
//! and the task reconnects with full-jitter backoff. Once back, it subscribes to every
//! channel again and resyncs each from the stream (see [`super::channels`]), then
//! marks the node up. A PING after [`PROBE_EVERY`] of silence finds a Redis that
//! stopped answering without closing the connection; pushed messages count as an
//! answer, so a busy connection is never probed.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use heartwire_core::backoff::{Backoff, BackoffConfig, Delay};
use rand::SeedableRng;
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::{mpsc, oneshot};

use super::presence::rejoin;
use super::resync::resync;
use super::shared::{PROBE_EVERY, Shared};

/// A request to the pub/sub task.
#[derive(Debug)]
pub(super) enum Command {
    /// Subscribe to these Redis channels; answer once they are in place.
    Subscribe(Vec<String>, oneshot::Sender<()>),
    /// Unsubscribe from these Redis channels, unless a subscriber came back meanwhile.
    Unsubscribe(Arc<str>, Vec<String>),
}

/// The reconnect policy towards Redis: full jitter from 100 ms up to 5 s.
fn backoff() -> Backoff {
    Backoff::new(BackoffConfig {
        delay: Delay::Exponential {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(5),
        },
        ..BackoffConfig::default()
    })
}

/// Runs the pub/sub connection until the broker is dropped.
pub(super) async fn run(shared: Arc<Shared>, mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut backoff = backoff();
    let mut rng = rand::rngs::SmallRng::from_os_rng();
    let mut was_connected = false;
    loop {
        let connected = tokio::time::timeout(PROBE_EVERY * 2, shared.open_pubsub()).await;
        let pubsub = match connected {
            Ok(Ok(pubsub)) => pubsub,
            Ok(Err(err)) => {
                tracing::warn!(%err, "cannot reach Redis");
                let delay = backoff
                    .next_delay(Instant::now(), &mut rng)
                    .unwrap_or(PROBE_EVERY);
                tokio::time::sleep(delay).await;
                continue;
            }
            Err(_) => {
                tracing::warn!("Redis did not answer the connection in time");
                continue;
            }
        };
        if !commands_answer(&shared).await {
            continue;
        }
        backoff.handle_connected(Instant::now());
        let (mut sink, stream) = pubsub.split();
        let (generation, to_resync) = shared.channels().begin_resync();
        let names = shared.channels().all_pubsub_names();
        let mut subscribed: HashSet<String> = HashSet::new();
        if !names.is_empty() {
            if let Err(err) = sink.subscribe(&names).await {
                tracing::warn!(%err, "cannot subscribe again after reconnecting");
                backoff.handle_disconnected(Instant::now());
                continue;
            }
            subscribed.extend(names);
        }
        if was_connected {
            shared.count_reconnect();
            tracing::info!(
                channels = to_resync.len(),
                "reconnected to Redis; resyncing channels"
            );
        }
        was_connected = true;
        if let Err(err) = shared.refresh_node().await {
            tracing::warn!(%err, "cannot refresh the node's liveness key");
        }
        tokio::spawn(rejoin(shared.clone()));
        for (channel, position) in to_resync {
            tokio::spawn(resync(shared.clone(), channel, generation, position));
        }
        shared.set_up(true);
        let ended = serve(&shared, &mut sink, stream, &mut commands, &mut subscribed).await;
        shared.set_up(false);
        backoff.handle_disconnected(Instant::now());
        match ended {
            Ended::Lost(reason) => tracing::warn!(%reason, "lost the Redis pub/sub connection"),
            Ended::BrokerDropped => return,
        }
    }
}

/// Whether the command connection answers a PING: it may still hold a socket to
/// the Redis that went away, and finds out (and reconnects) on its first command.
async fn commands_answer(shared: &Shared) -> bool {
    for _ in 0..3 {
        match tokio::time::timeout(PROBE_EVERY, shared.ping_commands()).await {
            Ok(Ok(_)) => return true,
            Ok(Err(err)) => tracing::debug!(%err, "command connection not back yet"),
            Err(_) => tracing::debug!("command connection did not answer in time"),
        }
    }
    false
}

enum Ended {
    Lost(String),
    BrokerDropped,
}

async fn serve(
    shared: &Shared,
    sink: &mut PubSubSink,
    mut stream: PubSubStream,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    subscribed: &mut HashSet<String>,
) -> Ended {
    let mut probe = tokio::time::interval(PROBE_EVERY);
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else {
                    return Ended::Lost("the connection closed".into());
                };
                last_heard = Instant::now();
                deliver(shared, &message);
            }
            command = commands.recv() => match command {
                None => return Ended::BrokerDropped,
                Some(Command::Subscribe(names, done)) => {
                    // A channel left before this command came has nothing to subscribe.
                    let missing: Vec<String> = {
                        let channels = shared.channels();
                        names
                            .into_iter()
                            .filter(|name| !subscribed.contains(name) && channels.wants(name))
                            .collect()
                    };
                    if !missing.is_empty() {
                        let request = sink.subscribe(&missing);
                        match reading_meanwhile(request, &mut stream, shared, &mut last_heard).await {
                            Ok(Ok(())) => subscribed.extend(missing),
                            // The channel is in `Channels`: the reconnect subscribes it.
                            Ok(Err(err)) => return Ended::Lost(err.to_string()),
                            Err(ended) => return ended,
                        }
                    }
                    let _ = done.send(());
                }
                Some(Command::Unsubscribe(channel, names)) => {
                    if !shared.channels().contains(&channel) {
                        let request = sink.unsubscribe(&names);
                        match reading_meanwhile(request, &mut stream, shared, &mut last_heard).await {
                            Ok(Ok(())) => {
                                for name in &names {
                                    subscribed.remove(name);
                                }
                            }
                            Ok(Err(err)) => return Ended::Lost(err.to_string()),
                            Err(ended) => return ended,
                        }
                    }
                }
            },
            _ = probe.tick() => {
                // Pushed messages prove the connection alive: probe only after silence.
                if last_heard.elapsed() < PROBE_EVERY {
                    continue;
                }
                let ping = tokio::time::timeout(PROBE_EVERY, sink.ping::<redis::Value>());
                match reading_meanwhile(ping, &mut stream, shared, &mut last_heard).await {
                    Ok(Ok(Ok(_))) => {}
                    Ok(Ok(Err(err))) => return Ended::Lost(err.to_string()),
                    Ok(Err(_)) => return Ended::Lost("Redis did not answer a PING in time".into()),
                    Err(ended) => return ended,
                }
            }
        }
    }
}

/// Hands one pushed message to the channels of this node.
fn deliver(shared: &Shared, message: &redis::Msg) {
    let bytes = message.get_payload_bytes().to_vec();
    let text = String::from_utf8(bytes)
        .unwrap_or_else(|invalid| String::from_utf8_lossy(invalid.as_bytes()).into_owned());
    shared
        .channels()
        .on_pubsub(message.get_channel_name(), text);
}

/// Awaits a request on the pub/sub connection while still reading what Redis pushes:
/// the request's reply comes after every message pushed before it, so a flood left
/// unread would hold the reply back and make a live connection look dead.
async fn reading_meanwhile<T>(
    request: impl std::future::Future<Output = T>,
    stream: &mut PubSubStream,
    shared: &Shared,
    last_heard: &mut Instant,
) -> Result<T, Ended> {
    let mut request = std::pin::pin!(request);
    loop {
        tokio::select! {
            reply = &mut request => return Ok(reply),
            message = stream.next() => match message {
                Some(message) => {
                    *last_heard = Instant::now();
                    deliver(shared, &message);
                }
                None => return Err(Ended::Lost("the connection closed".into())),
            },
        }
    }
}
