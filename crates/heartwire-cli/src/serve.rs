//! `heartwire serve`: flags, config file and environment merged into a server config.

/// Options of `heartwire serve`.
#[derive(clap::Args)]
pub(crate) struct ServeArgs {}

pub(crate) fn run(_args: ServeArgs) -> anyhow::Result<()> {
    Ok(())
}
