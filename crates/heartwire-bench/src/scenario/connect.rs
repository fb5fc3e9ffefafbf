//! Connects per second by kind of credential, on one server: anonymous, then each
//! `--connect-token NAME=FILE` (a JWT minted before the run). Each round opens
//! `--connect-connections` connections (each waits for `hello`) and closes them; the
//! kinds take turns for two rounds and the better round of each counts, so a kind is
//! not favoured by when it ran on the shared machine.

use std::path::Path;

use anyhow::Context;

use super::RunArgs;
use crate::figures::{Better, Figures};
use crate::fleet::Fleet;
use crate::wire::{OPEN_CONCURRENCY, Token};

/// The first source address of the generator processes.
const FIRST_SOURCE: u8 = 2;
/// Rounds of every kind.
const ROUNDS: usize = 2;

pub(super) async fn measure(args: &RunArgs, figures: &mut Figures) -> anyhow::Result<()> {
    let mut kinds = vec![("anonymous".to_owned(), None)];
    for spec in &args.connect_token {
        let (name, file) = spec
            .split_once('=')
            .with_context(|| format!("--connect-token {spec:?} is not NAME=FILE"))?;
        kinds.push((name.to_owned(), Some(Token::read(Path::new(file))?)));
    }
    let server = args.start_server().await?;
    tokio::time::sleep(args.settle).await;
    let mut best = vec![None::<(f64, u64)>; kinds.len()];
    for _ in 0..ROUNDS {
        for ((_, token), best) in kinds.iter().zip(&mut best) {
            let mut target = args.target()?;
            target.token = token.clone();
            let (fleet, opened) = Fleet::open(
                target,
                args.connect_connections,
                args.per_process,
                FIRST_SOURCE,
                OPEN_CONCURRENCY,
            )
            .await?;
            fleet.close().await;
            // Time for the server to see the closes before the next round.
            tokio::time::sleep(args.settle).await;
            let rate = opened.connected as f64 / opened.secs;
            if best.is_none_or(|(b, _)| rate > b) {
                *best = Some((rate, opened.failed));
            }
        }
    }
    server.kill().await?;
    for ((name, _), best) in kinds.iter().zip(best) {
        let Some((rate, failed)) = best else { continue };
        figures.add(
            &format!("connects_per_sec_{name}"),
            rate,
            "1/s",
            Better::Higher,
        );
        figures.add(
            &format!("failed_connects_{name}"),
            failed as f64,
            "",
            Better::Lower,
        );
    }
    Ok(())
}
