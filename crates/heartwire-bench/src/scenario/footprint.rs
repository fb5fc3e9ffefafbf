//! Idle memory, user space and kernel: for each count, a fresh server, the connections
//! opened `--footprint-concurrency` at a time per generator process, then the growth of
//! the server's RSS per connection and of the kernel's socket memory per socket (both
//! ends of a connection are sockets of this machine, so the kernel's growth is divided
//! by twice the connections).

use super::RunArgs;
use crate::figures::{Better, Figures};
use crate::fleet::Fleet;
use crate::kernel::SocketMemory;

/// The first source address of the generator processes.
const FIRST_SOURCE: u8 = 2;

pub(super) async fn measure(args: &RunArgs, figures: &mut Figures) -> anyhow::Result<()> {
    for &count in &args.footprint {
        let server = args.start_server().await?;
        tokio::time::sleep(args.settle).await;
        let rss_before = server.rss_bytes()?;
        let kernel_before = SocketMemory::sample()?;
        let (fleet, opened) = Fleet::open(
            args.target()?,
            count,
            args.per_process,
            FIRST_SOURCE,
            args.footprint_concurrency,
        )
        .await?;
        tokio::time::sleep(args.settle).await;
        let rss_after = server.rss_bytes()?;
        let kernel_after = SocketMemory::sample()?;
        fleet.close().await;
        server.kill().await?;
        if opened.connected == 0 {
            figures.missing(
                &format!("idle_user_bytes_per_conn_{count}"),
                "B",
                Better::Lower,
                "no connection opened",
            );
            continue;
        }
        let connections = opened.connected as f64;
        figures.add(
            &format!("idle_user_bytes_per_conn_{count}"),
            rss_after.saturating_sub(rss_before) as f64 / connections,
            "B",
            Better::Lower,
        );
        figures.add(
            &format!("idle_kernel_bytes_per_socket_{count}"),
            kernel_after.growth_since(kernel_before) as f64 / (2.0 * connections),
            "B",
            Better::Lower,
        );
        figures.add(
            &format!("footprint_connects_per_sec_{count}"),
            connections / opened.secs,
            "1/s",
            Better::Higher,
        );
        if opened.failed > 0 {
            figures.add(
                &format!("footprint_failed_connects_{count}"),
                opened.failed as f64,
                "",
                Better::Lower,
            );
        }
    }
    Ok(())
}
