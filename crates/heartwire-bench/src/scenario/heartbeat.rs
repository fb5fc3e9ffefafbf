//! The heartbeat's cost at a moderate count: `--heartbeat-connections` idle connections
//! on a fresh server, then its CPU time per Ping round trip over the heartbeat window
//! (see [`super::idle`]), with figure names ending in the count.

use super::RunArgs;
use super::idle::heartbeat_cost;
use crate::figures::Figures;
use crate::fleet::Fleet;
use crate::wire::OPEN_CONCURRENCY;

/// The first source address of the generator processes.
const FIRST_SOURCE: u8 = 2;

pub(super) async fn measure(args: &RunArgs, figures: &mut Figures) -> anyhow::Result<()> {
    let count = args.heartbeat_connections;
    let server = args.start_server().await?;
    let (mut fleet, opened) = Fleet::open(
        args.target()?,
        count,
        args.per_process,
        FIRST_SOURCE,
        OPEN_CONCURRENCY,
    )
    .await?;
    anyhow::ensure!(opened.connected > 0, "no connection opened");
    tokio::time::sleep(args.settle).await;
    let outcome = heartbeat_cost(args, &server, &mut fleet, figures, &format!("_{count}")).await;
    fleet.close().await;
    server.kill().await?;
    outcome
}
