//! Ends a stream whose client stopped reading.
//!
//! A stream is polled only while its HTTP connection can write, so a client that
//! stopped reading leaves its mailbox to overflow (or a shutdown to be signalled)
//! without the stream ever seeing it. A watchdog task looks at the mailbox every
//! `patience`; once a signal is there, the stream has `patience` more to end by
//! itself before its connection is cut. A stream that ends drops its guard, which
//! stops the watchdog.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::{CancellationToken, DropGuard};

use crate::listener::Cut;
use crate::mailbox::Mailbox;

/// Starts watching `mailbox`; the watchdog stops when the returned guard is dropped.
pub(crate) fn watch(mailbox: Arc<Mailbox>, cut: Cut, patience: Duration) -> DropGuard {
    let done = CancellationToken::new();
    let ended = done.clone();
    tokio::spawn(async move {
        // Runs until the stream ends, or until it cuts the connection.
        loop {
            tokio::select! {
                () = ended.cancelled() => return,
                () = tokio::time::sleep(patience) => {}
            }
            if mailbox.signal().is_some() {
                tokio::select! {
                    () = ended.cancelled() => {}
                    () = tokio::time::sleep(patience) => cut.now(),
                }
                return;
            }
        }
    });
    done.drop_guard()
}
