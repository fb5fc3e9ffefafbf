//! The scenarios where the connection dies while the stream runs: a blackhole (both
//! ways, or up only), a reset, a server restart. Each measures how long the death
//! took to notice or the way back took, then counts the stream's lost and duplicated
//! messages once the client is back.

use std::ops::RangeInclusive;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::path::is_down;
use super::scripted::Change;
use super::verdict::{Figure, Row, show_time};
use super::{Context, Scenario};
use crate::fault::{Direction, Fault};

/// How long the stream runs before a fault, and again once the client is back.
pub(super) const STREAM_AROUND: Duration = Duration::from_secs(1);

/// The path stops forwarding bytes in `direction`; the sockets stay open.
///
/// Both ways, the client must notice by its own liveness checks. Up only, the server
/// hears nothing from the client and closes the connection after its ping interval
/// and timeout; the close still reaches the client, so the server's detection shows.
pub(super) async fn blackhole(cx: &mut Context, direction: Direction) -> Vec<Row> {
    let (name, check, note) = match direction {
        Direction::Up => (
            Scenario::BlackholeUp.name(),
            "the server notices a client gone silent (its close comes down)",
            None,
        ),
        Direction::Down | Direction::Both => (
            Scenario::Blackhole.name(),
            "the client notices a dead path",
            Some(
                "the server notices too, after its own ping interval and timeout; that shows \
                 only on the server: heartwire_disconnects_total{reason=\"ping_timeout\"}",
            ),
        ),
    };
    let first = cx.client.start_publishing();
    tokio::time::sleep(STREAM_AROUND).await;
    let started = Instant::now();
    cx.proxy.set(Fault::Blackhole { direction });
    let patience = 2 * cx.heartbeat() + cx.settings.tolerance;
    let noticed = cx.client.wait_for(started, patience, is_down).await;
    cx.proxy.set(Fault::None);
    let mut detection = Row::timing(
        name,
        check,
        noticed.map(|(at, _)| at - started),
        cx.heartbeat(),
        cx.settings.tolerance,
    );
    if let Some(note) = note {
        detection = detection.with_note(note);
    }
    let mut rows = vec![detection];
    rows.extend(recover(cx, name, first, started).await);
    rows
}

/// Both sockets of the connection are reset (RST) at once; new connections pass.
pub(super) async fn reset(cx: &mut Context) -> Vec<Row> {
    const NAME: &str = Scenario::Reset.name();
    let first = cx.client.start_publishing();
    tokio::time::sleep(STREAM_AROUND).await;
    let started = Instant::now();
    cx.proxy.set(Fault::Reset);
    cx.proxy.set(Fault::None);
    let patience = cx.heartbeat() + cx.settings.tolerance;
    let back = match cx.client.wait_for(started, patience, is_down).await {
        Some((noticed, _)) => cx
            .client
            .wait_for(noticed, cx.reopen_within(), |change| {
                *change == Change::Open
            })
            .await
            .map(|(at, _)| at - started),
        None => None,
    };
    let mut rows = vec![
        Row::timing(
            NAME,
            "the client is back after a reset",
            back,
            cx.reconnect_bound(),
            cx.settings.tolerance,
        )
        .with_note(format!(
            "bound: the client's first retry waits up to {}, and a handshake gets one ping \
             timeout",
            show_time(super::BACKOFF_BASE)
        )),
    ];
    rows.extend(recover(cx, NAME, first, started).await);
    rows
}

/// `--restart-command` restarts the server while the stream runs.
pub(super) async fn restart(cx: &mut Context, command: &str) -> Vec<Row> {
    const NAME: &str = Scenario::Restart.name();
    let within = cx.settings.restart_within;
    let first = cx.client.start_publishing();
    tokio::time::sleep(STREAM_AROUND).await;
    let started = Instant::now();
    let ran = tokio::time::timeout(
        within,
        tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::null())
            // Standard output carries the table or the JSON.
            .stdout(std::io::stderr())
            .kill_on_drop(true)
            .status(),
    )
    .await;
    let mut failure = match ran {
        Ok(Ok(status)) if status.success() => None,
        Ok(Ok(status)) => Some(format!("the restart command failed ({status})")),
        Ok(Err(err)) => Some(format!("the restart command could not run: {err}")),
        Err(_) => Some(format!(
            "the restart command did not finish within {}",
            show_time(within)
        )),
    };
    let left = within.saturating_sub(started.elapsed());
    let back = match cx.client.wait_for(started, left, is_down).await {
        Some((lost_at, _)) => {
            let left = within.saturating_sub(started.elapsed());
            cx.client
                .wait_for(lost_at, left, |change| *change == Change::Open)
                .await
                .map(|(at, _)| at - started)
        }
        None => {
            failure.get_or_insert_with(|| {
                "the connection never dropped: does the command restart the server behind \
                 the URL?"
                    .to_owned()
            });
            None
        }
    };
    let mut row = Row::timing(
        NAME,
        "the client is back after the restart",
        back,
        within,
        cx.settings.tolerance,
    );
    if let Some(failure) = failure {
        row = row.with_note(failure);
    }
    let mut rows = vec![row];
    rows.extend(recover(cx, NAME, first, started).await);
    rows
}

/// Once the client is back, streams a little longer, stops, waits for the stream to
/// arrive, and counts what was lost and duplicated.
async fn recover(cx: &mut Context, name: &'static str, first: u64, started: Instant) -> Vec<Row> {
    let back = cx.client.wait_open(cx.reopen_within()).await;
    if back {
        tokio::time::sleep(STREAM_AROUND).await;
    }
    let numbers = cx.client.stop_publishing(first).await;
    let mut rows = Vec::new();
    if back {
        cx.client.settle(&numbers, cx.settle_within()).await;
    } else {
        rows.push(cx.not_back(name));
    }
    rows.extend(stream_rows(cx, name, &numbers, started));
    rows
}

/// The lost and duplicated messages of `numbers`. Losses the client was told of (a
/// gap since `started`) are shown, not judged: the server could not replay them and
/// said so.
fn stream_rows(
    cx: &Context,
    name: &'static str,
    numbers: &RangeInclusive<u64>,
    started: Instant,
) -> Vec<Row> {
    let tally = cx.client.tally(numbers);
    let told = cx.client.count(started, |change| *change == Change::Gap) > 0;
    let published = tally.published;
    let lost = if told && tally.lost > 0 {
        Row::info(
            name,
            format!("messages lost of {published}, with a gap event"),
            Figure::Count(tally.lost),
        )
        .with_note("the server could not replay them and told the client (Event::Gap)")
    } else {
        Row::count(name, format!("messages lost of {published}"), tally.lost, 0)
    };
    vec![
        lost,
        Row::count(
            name,
            format!("messages duplicated of {published}"),
            tally.duplicated,
            0,
        ),
    ]
}
