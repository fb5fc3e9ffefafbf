//! Scenario 1 and 2: idle connections with heartbeats on.
//!
//! For each count: server RSS before and after the connections open (the delta over N
//! is the user-space cost of a connection) and connects per second over every
//! generator process. At the last count, the heartbeat cost: server CPU time (the
//! scheduler's run time of its threads) over a window divided by the heartbeats
//! answered in it, and the connections lost, which must be none.

use std::time::Instant;

use super::RunArgs;
use crate::figures::{Better, Figures};
use crate::fleet::Fleet;
use crate::server::ServerProcess;
use crate::wire::OPEN_CONCURRENCY;

/// The first source address of the idle generator processes.
const FIRST_SOURCE: u8 = 2;

pub(super) async fn measure(args: &RunArgs, figures: &mut Figures) -> anyhow::Result<()> {
    let Some(&last) = args.idle.last() else {
        return Ok(());
    };
    for &count in &args.idle {
        let server = args.start_server().await?;
        tokio::time::sleep(args.settle).await;
        let before = server.rss_bytes()?;
        let (mut fleet, opened) = Fleet::open(
            args.target()?,
            count,
            args.per_process,
            FIRST_SOURCE,
            OPEN_CONCURRENCY,
        )
        .await?;
        tokio::time::sleep(args.settle).await;
        let after = server.rss_bytes()?;
        if opened.connected == 0 {
            figures.missing(
                &format!("idle_bytes_per_conn_{count}"),
                "B",
                Better::Lower,
                "no connection opened",
            );
        } else {
            let per_connection = after.saturating_sub(before) as f64 / opened.connected as f64;
            figures.add(
                &format!("idle_bytes_per_conn_{count}"),
                per_connection,
                "B",
                Better::Lower,
            );
            figures.add(
                &format!("connects_per_sec_{count}"),
                opened.connected as f64 / opened.secs,
                "1/s",
                Better::Higher,
            );
        }
        if opened.failed > 0 {
            figures.add(
                &format!("failed_connects_{count}"),
                opened.failed as f64,
                "",
                Better::Lower,
            );
        }
        if count == last {
            heartbeat_cost(args, &server, &mut fleet, figures, "").await?;
        }
        fleet.close().await;
        server.kill().await?;
    }
    Ok(())
}

/// Server CPU per heartbeat answered over the heartbeat window, heartbeats per second,
/// and the connections lost; each figure's name ends with `suffix`.
pub(super) async fn heartbeat_cost(
    args: &RunArgs,
    server: &ServerProcess,
    fleet: &mut Fleet,
    figures: &mut Figures,
    suffix: &str,
) -> anyhow::Result<()> {
    let start = fleet.counters().await?;
    let cpu_start = server.cpu()?;
    let started = Instant::now();
    tokio::time::sleep(args.heartbeat_window).await;
    let end = fleet.counters().await?;
    let cpu = server.cpu()?.saturating_sub(cpu_start);
    let secs = started.elapsed().as_secs_f64();
    let beats = end.heartbeats - start.heartbeats;
    if beats == 0 {
        figures.missing(
            &format!("heartbeat_cpu_us{suffix}"),
            "µs",
            Better::Lower,
            "no heartbeat in the window",
        );
    } else {
        let micros = cpu.as_secs_f64() * 1e6 / beats as f64;
        figures.add(
            &format!("heartbeat_cpu_us{suffix}"),
            micros,
            "µs",
            Better::Lower,
        );
    }
    figures.add(
        &format!("heartbeats_per_sec{suffix}"),
        beats as f64 / secs,
        "1/s",
        Better::Higher,
    );
    figures.add(
        &format!("false_disconnects{suffix}"),
        end.disconnects as f64,
        "",
        Better::Lower,
    );
    Ok(())
}
