//! When the certificate is read again: on SIGHUP, and when the certificate or key
//! file changed (their modification time or size, looked at every
//! `--tls-reload-check`).

use std::path::Path;
use std::time::{Duration, SystemTime};

use tokio::signal::unix::{Signal, SignalKind, signal};

use super::Tls;
use crate::metrics::ServerMetrics;

/// What identifies one version of a file: modification time and size.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

/// Listens for SIGHUP from now on (the server does from `bind`, so a SIGHUP sent once
/// it listens is never the default action, which would end the process).
pub(crate) fn hangups() -> Option<Signal> {
    match signal(SignalKind::hangup()) {
        Ok(hangup) => Some(hangup),
        Err(err) => {
            tracing::warn!(%err, "cannot listen for SIGHUP; the TLS files are still watched");
            None
        }
    }
}

/// Loads the certificate again on each of `hangup`'s signals and when its files
/// change; runs for as long as the server does. Counts each outcome in
/// `heartwire_tls_reloads_total`.
pub(crate) async fn reload(
    tls: &Tls,
    mut hangup: Option<Signal>,
    check_every: Duration,
    metrics: &ServerMetrics,
) -> std::convert::Infallible {
    let stamps = || (stamp(&tls.cert), stamp(&tls.key));
    let mut seen = stamps();
    let mut ticks = tokio::time::interval(check_every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let cause = tokio::select! {
            Some(()) = async { hangup.as_mut()?.recv().await } => "SIGHUP",
            _ = ticks.tick() => {
                let now = stamps();
                if now == seen {
                    continue;
                }
                "a changed file"
            }
        };
        seen = stamps();
        let result = tls.reload();
        metrics.tls_reloads[usize::from(result.is_err())].increment(1);
        match result {
            Ok(()) => tracing::info!(
                cause,
                cert = %tls.cert.display(),
                "TLS certificate loaded; new connections present it"
            ),
            Err(err) => tracing::error!(cause, "{err}; the previous TLS certificate stays in use"),
        }
    }
}
