//! The scenarios about a path that works: whether Pings pass it, what latency does to
//! the heartbeat, and whether the heartbeat keeps a path open that cuts quiet
//! connections.

use std::time::{Duration, Instant};

use super::probe;
use super::scripted::Change;
use super::verdict::{Bound, Figure, Row, Verdict, show_time};
use super::{Context, Scenario};
use crate::fault::{Direction, Fault};

/// How long the stream runs under latency, to collect round trips.
pub(super) const STREAM_UNDER_LATENCY: Duration = Duration::from_secs(2);
/// How often the idle-cut scenario reads the proxy's connections.
const POLL: Duration = Duration::from_millis(25);

/// A Ping of ours is answered through the path, and the server's Ping reaches a
/// silent client.
pub(super) async fn pings(cx: &mut Context) -> Vec<Row> {
    const NAME: &str = Scenario::Pings.name();
    let (interval, timeout, tolerance) = (
        cx.server.ping_interval,
        cx.server.ping_timeout,
        cx.settings.tolerance,
    );
    let answered = "a Ping is answered through the path";
    let mut socket = match probe::open(
        &cx.settings.proxied,
        cx.settings.token.as_deref(),
        cx.reopen_within(),
    )
    .await
    {
        Ok((socket, _)) => socket,
        Err(err) => {
            return vec![
                Row::timing(NAME, answered, None, timeout, tolerance)
                    .with_note(format!("no connection through the proxy: {err}")),
            ];
        }
    };
    let sent = Instant::now();
    let round_trip = probe::ping_pong(&mut socket, timeout + tolerance).await;
    let pinged = probe::server_ping(&mut socket, interval + timeout + tolerance).await;
    let _ = socket.close(None).await;
    vec![
        Row::timing(NAME, answered, round_trip, timeout, tolerance),
        // The server counts the silence from our Ping's arrival, and its own Ping
        // takes the way back: one round trip covers both.
        Row::timing(
            NAME,
            "the server's Ping reaches a silent client",
            pinged.map(|at| at - sent),
            interval + round_trip.unwrap_or_default(),
            tolerance,
        ),
    ]
}

/// Messages and heartbeats cross a slow path: the round trips seen, and no false
/// death while streaming or while quiet.
pub(super) async fn latency(cx: &mut Context) -> Vec<Row> {
    const NAME: &str = Scenario::Latency.name();
    let (delay, jitter) = (cx.settings.latency, cx.settings.jitter);
    let started = Instant::now();
    cx.proxy.set(Fault::Latency {
        ms: delay.as_millis() as u64,
        jitter_ms: jitter.as_millis() as u64,
        direction: Direction::Both,
    });
    let first = cx.client.start_publishing();
    tokio::time::sleep(STREAM_UNDER_LATENCY).await;
    let numbers = cx.client.stop_publishing(first).await;
    cx.client.settle(&numbers, cx.settle_within()).await;
    // Quiet now: only heartbeats cross, each Ping answered one slow round trip later.
    let quiet = cx.heartbeat() + 2 * (delay + jitter) + cx.settings.tolerance;
    tokio::time::sleep(quiet).await;
    cx.proxy.set(Fault::None);

    let downs = cx.client.count(started, is_down) as u64;
    let trips = cx.client.round_trips(&numbers);
    let lost = cx.client.tally(&numbers).lost;
    let median = trips.get(trips.len() / 2).copied();
    let slowest = if lost == 0 {
        trips.last().copied()
    } else {
        None
    };
    let mut slowest_row = Row::timing(
        NAME,
        "the slowest message round trip fits the ping timeout",
        slowest,
        cx.server.ping_timeout,
        cx.settings.tolerance,
    );
    if lost > 0 {
        slowest_row = slowest_row.with_note(format!("{lost} messages never came back"));
    }
    let mut rows = vec![
        Row::info(
            NAME,
            "median message round trip",
            median.map_or(Figure::Missing, Figure::Time),
        )
        .with_note(format!(
            "the proxy adds {} to {} each way",
            show_time(delay),
            show_time(delay + jitter)
        )),
        slowest_row,
        Row::count(NAME, "disconnects while streaming, then quiet", downs, 0),
    ];
    if downs > 0 && !cx.client.wait_open(cx.reopen_within()).await {
        rows.push(cx.not_back(NAME));
    }
    rows
}

/// The path closes connections quiet for `--idle-cut`: the heartbeat must keep it
/// busy. The figure is the longest silence seen on the client's connection.
pub(super) async fn idle_cut(cx: &mut Context) -> Vec<Row> {
    const NAME: &str = Scenario::IdleCut.name();
    let after = cx.settings.idle_cut;
    // The client's connection is the newest one through the proxy.
    let Some(watched) = cx.proxy.connections().iter().map(|c| c.id).max() else {
        return vec![cx.not_back(NAME)];
    };
    let started = Instant::now();
    cx.proxy.set(Fault::IdleCut {
        after_ms: after.as_millis() as u64,
    });
    let end = started + after + cx.server.ping_interval + cx.settings.tolerance;
    let mut longest = Duration::ZERO;
    while Instant::now() < end {
        let connections = cx.proxy.connections();
        let Some(connection) = connections.iter().find(|c| c.id == watched) else {
            // Closed: the client hears of it at once.
            let within = cx.server.ping_timeout + cx.settings.tolerance;
            cx.client.wait_for(started, within, is_down).await;
            break;
        };
        longest = longest.max(connection.quiet.min(started.elapsed()));
        tokio::time::sleep(POLL).await;
    }
    cx.proxy.set(Fault::None);
    let cut = cx.client.count(started, is_down) > 0;
    let mut row = Row {
        scenario: NAME,
        check: format!(
            "the heartbeat keeps open a path that cuts after {}",
            show_time(after)
        ),
        measured: Figure::Time(if cut { longest.max(after) } else { longest }),
        bound: Bound::Below(after),
        verdict: if cut { Verdict::Fail } else { Verdict::Pass },
        note: None,
    };
    if cut {
        row = row.with_note(format!(
            "the connection was cut after {} of silence: the server pings only after {} \
             of silence; set its ping interval well below the cut",
            show_time(after),
            show_time(cx.server.ping_interval)
        ));
    }
    let mut rows = vec![row];
    if cut && !cx.client.wait_open(cx.reopen_within()).await {
        rows.push(cx.not_back(NAME));
    }
    rows
}

pub(super) fn is_down(change: &Change) -> bool {
    matches!(change, Change::Down(_))
}
