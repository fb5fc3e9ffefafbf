//! The client's task: picks a server, opens it, runs the connection, and after
//! every end decides — with the reconnect rules and the reconnect policy — whether
//! and when to try again. What one connection hands on to the next (positions,
//! publishes awaiting their ack, the servers' health) is core's [`Carried`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use heartwire_core::client::{Carried, ClientConnection, ConnectionConfig};
use heartwire_core::reconnect::{self, Retry};
use heartwire_core::{Backoff, Delay, DisconnectReason, Failover};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::sync::mpsc;

use super::attempt::{self, Socket};
use super::config::ClientConfig;
use super::connection::{Connection, Outcome};
use super::event::{ClosedReason, Event};
use super::state::ClientState;

/// What happens after a connection or an attempt ended.
enum Next {
    Retry { delay: Duration, attempt: u32 },
    Stop(ClosedReason),
}

/// Runs the client until it stops for good, then sends [`Event::Closed`].
pub(crate) async fn run(
    config: ClientConfig,
    state: Arc<ClientState>,
    events: mpsc::Sender<Event>,
) {
    let mut rng = match config.jitter_seed {
        Some(seed) => SmallRng::seed_from_u64(seed),
        None => SmallRng::from_os_rng(),
    };
    let mut backoff = Backoff::new(config.backoff);
    let mut carried = Carried::new(Failover::new(config.servers.len(), config.fail_back_after));
    let mut switch_to: Option<(usize, Socket)> = None;
    let mut opened = false;
    let closed = loop {
        if state.stop.is_cancelled() {
            break ClosedReason::ByCaller;
        }
        let (index, socket) = match switch_to.take() {
            Some(open) => open,
            None => {
                let Some(index) = carried.failover().pick(Instant::now()) else {
                    break ClosedReason::NoUsableServer("every server refused".into());
                };
                let url = &config.servers[index];
                let connecting = Event::Connecting {
                    url: url.clone(),
                    attempt: backoff.attempt(),
                };
                if events.send(connecting).await.is_err() {
                    break ClosedReason::ByCaller;
                }
                let result = tokio::select! {
                    result = attempt::open(url, &config) => result,
                    () = state.stop.cancelled() => break ClosedReason::ByCaller,
                };
                match result {
                    Ok(socket) => (index, socket),
                    Err(err) => {
                        let now = Instant::now();
                        // A host name that never resolved is most likely mistyped.
                        let rule = if err.permanent || (err.unresolved && !opened) {
                            carried.failover_mut().handle_refused(index, now);
                            if carried.failover().pick(now).is_none() {
                                break ClosedReason::NoUsableServer(err.reason);
                            }
                            Retry::Backoff
                        } else {
                            carried.failover_mut().handle_failure(index, now);
                            err.retry_after.map_or(Retry::Backoff, Retry::After)
                        };
                        match schedule(&mut backoff, &mut rng, rule, &err.reason) {
                            Next::Retry { delay, attempt } => {
                                if !wait(&events, &state, attempt, delay, err.reason).await {
                                    break ClosedReason::ByCaller;
                                }
                                continue;
                            }
                            Next::Stop(reason) => break reason,
                        }
                    }
                }
            }
        };
        opened = true;
        carried.failover_mut().handle_success(index);
        let now = Instant::now();
        backoff.handle_connected(now);
        let subscriptions = state.subscriptions();
        let mut machine = ClientConnection::new(
            connection_config(&config),
            carried,
            index,
            subscriptions,
            now,
        );
        let connection = Connection {
            config: &config,
            state: &state,
            events: &events,
        };
        let outcome = connection.run(&mut machine, socket).await;
        carried = machine.into_carried();
        let now = Instant::now();
        backoff.handle_disconnected(now);
        match outcome {
            Outcome::Switch { server, socket } => {
                backoff.handle_connected(now);
                switch_to = Some((server, *socket));
            }
            Outcome::CallerGone => break ClosedReason::ByCaller,
            Outcome::Ended {
                reason: DisconnectReason::LocalClose,
                ..
            } => break ClosedReason::ByCaller,
            Outcome::Ended {
                reason,
                retry_after,
            } => {
                carried.failover_mut().handle_failure(index, now);
                let rule = match (reconnect::rule_for(&reason), retry_after) {
                    (Retry::Never, _) => break ClosedReason::DoNotComeBack(reason),
                    (_, Some(hint)) => Retry::After(hint),
                    (rule, None) => rule,
                };
                if reconnect::is_server_restart(&reason, retry_after.is_some()) {
                    backoff.handle_server_restart();
                }
                let text = reason.to_string();
                match schedule(&mut backoff, &mut rng, rule, &text) {
                    Next::Retry { delay, attempt } => {
                        if !wait(&events, &state, attempt, delay, text).await {
                            break ClosedReason::ByCaller;
                        }
                    }
                    Next::Stop(reason) => break reason,
                }
            }
        }
    };
    state.stop.cancel();
    let _ = events.send(Event::Closed { reason: closed }).await;
}

/// The settings of every connection, from the client's.
fn connection_config(config: &ClientConfig) -> ConnectionConfig {
    ConnectionConfig {
        ping_interval: config.ping_interval,
        ping_timeout: config.ping_timeout,
        close_timeout: config.close_timeout,
        unavailable_hold: match config.backoff.delay {
            Delay::Fixed(delay) | Delay::Exponential { base: delay, .. } => delay,
        },
    }
}

/// The delay before the next attempt under `rule`, or why there is none.
fn schedule(backoff: &mut Backoff, rng: &mut SmallRng, rule: Retry, last: &str) -> Next {
    let now = Instant::now();
    let next = match rule {
        Retry::Never => None,
        Retry::Backoff => backoff
            .next_delay(now, rng)
            .map(|delay| (delay, backoff.attempt())),
        Retry::After(delay) => backoff.next_attempt(now).map(|attempt| (delay, attempt)),
        // The next attempt asks the token provider again, as every attempt does.
        Retry::FreshToken => backoff
            .next_fresh_token(now, rng)
            .map(|delay| (delay, backoff.attempt())),
    };
    match next {
        Some((delay, attempt)) => Next::Retry { delay, attempt },
        None => Next::Stop(ClosedReason::GaveUp {
            attempts: backoff.attempt(),
            last: last.to_owned(),
        }),
    }
}

/// Announces the next attempt and waits for it; `false` when the client is closed
/// meanwhile.
async fn wait(
    events: &mpsc::Sender<Event>,
    state: &ClientState,
    attempt: u32,
    delay: Duration,
    reason: String,
) -> bool {
    let reconnecting = Event::Reconnecting {
        attempt,
        delay,
        reason,
    };
    if events.send(reconnecting).await.is_err() {
        return false;
    }
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        () = state.stop.cancelled() => false,
    }
}
