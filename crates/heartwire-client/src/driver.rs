//! The client's task: picks an endpoint, opens it, runs the connection, and after
//! every end decides — with the reconnect rules and the reconnect policy — whether
//! and when to try again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use heartwire_core::reconnect::{self, Retry};
use heartwire_core::{Backoff, DisconnectReason, Failover};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::sync::mpsc;

use super::attempt::{self, Socket};
use super::config::ClientConfig;
use super::connection::{Connection, Outcome};
use super::event::{ClosedReason, Event};
use super::outbox::Shared;
use super::resume::Positions;
use super::unacked::Unacked;

/// What happens after a connection or an attempt ended.
enum Next {
    Retry { delay: Duration, attempt: u32 },
    Stop(ClosedReason),
}

/// Runs the client until it stops for good, then sends [`Event::Closed`].
pub(crate) async fn run(config: ClientConfig, shared: Arc<Shared>, events: mpsc::Sender<Event>) {
    let mut rng = match config.jitter_seed {
        Some(seed) => SmallRng::seed_from_u64(seed),
        None => SmallRng::from_os_rng(),
    };
    let mut backoff = Backoff::new(config.backoff);
    let mut endpoints = Failover::new(config.endpoints.len(), config.fail_back_after);
    let mut unacked = Unacked::default();
    let mut positions = Positions::default();
    let mut switch_to: Option<(usize, Socket)> = None;
    let closed = loop {
        if shared.stop.is_cancelled() {
            break ClosedReason::ByCaller;
        }
        let (index, socket) = match switch_to.take() {
            Some(open) => open,
            None => {
                let Some(index) = endpoints.pick(Instant::now()) else {
                    break ClosedReason::NoUsableEndpoint("every endpoint refused".into());
                };
                let url = &config.endpoints[index];
                let connecting = Event::Connecting {
                    url: url.clone(),
                    attempt: backoff.attempt(),
                };
                if events.send(connecting).await.is_err() {
                    break ClosedReason::ByCaller;
                }
                let result = tokio::select! {
                    result = attempt::open(url, &config) => result,
                    () = shared.stop.cancelled() => break ClosedReason::ByCaller,
                };
                match result {
                    Ok(socket) => (index, socket),
                    Err(err) => {
                        let now = Instant::now();
                        let rule = if err.permanent {
                            endpoints.handle_refused(index, now);
                            if endpoints.pick(now).is_none() {
                                break ClosedReason::NoUsableEndpoint(err.reason);
                            }
                            Retry::Backoff
                        } else {
                            endpoints.handle_failure(index, now);
                            err.retry_after.map_or(Retry::Backoff, Retry::After)
                        };
                        match schedule(&mut backoff, &mut rng, rule, &err.reason) {
                            Next::Retry { delay, attempt } => {
                                if !wait(&events, &shared, attempt, delay, err.reason).await {
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
        endpoints.handle_success(index);
        backoff.handle_connected(Instant::now());
        let outcome = Connection {
            config: &config,
            shared: &shared,
            events: &events,
            endpoints: &mut endpoints,
            unacked: &mut unacked,
            positions: &mut positions,
            index,
            hold_until: None,
        }
        .run(socket)
        .await;
        let now = Instant::now();
        backoff.handle_disconnected(now);
        match outcome {
            Outcome::FailBack { index, socket } => {
                backoff.handle_connected(now);
                switch_to = Some((index, *socket));
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
                endpoints.handle_failure(index, now);
                let rule = match (reconnect::rule_for(&reason), retry_after) {
                    (Retry::Never, _) => break ClosedReason::DoNotComeBack(reason),
                    (_, Some(hint)) => Retry::After(hint),
                    (rule, None) => rule,
                };
                let text = reason.to_string();
                match schedule(&mut backoff, &mut rng, rule, &text) {
                    Next::Retry { delay, attempt } => {
                        if !wait(&events, &shared, attempt, delay, text).await {
                            break ClosedReason::ByCaller;
                        }
                    }
                    Next::Stop(reason) => break reason,
                }
            }
        }
    };
    shared.stop.cancel();
    let _ = events.send(Event::Closed { reason: closed }).await;
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
    shared: &Shared,
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
        () = shared.stop.cancelled() => false,
    }
}
