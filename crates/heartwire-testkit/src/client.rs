//! For the client's tests: bounded waits on client events, and the chaos proxy
//! (`heartwire-chaos`) in front of a server, to cut or disturb the path.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use heartwire_client::{Event, Events};

pub use heartwire_chaos::{Direction, Fault, Proxy};

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

/// A chaos proxy on a free loopback port in front of `target`, with no fault yet:
/// tests switch its [`Fault`] to cut, slow or reset the path.
pub async fn proxy_to(target: SocketAddr) -> Proxy {
    Proxy::bind(SocketAddr::from(([127, 0, 0, 1], 0)), target.to_string())
        .await
        .expect("bind a loopback port")
}
