//! What few connections ever use, in one box apart from the connection's task.
//!
//! An idle connection's memory is mostly its task, whose size is that of its largest
//! state; these fields would make every task larger for the sake of the few that
//! close, hold half a message, or are paused by a live upgrade. Once boxed, the box
//! stays for the connection's life: a connection that needed it once may again.

use std::time::Instant;

use heartwire_core::DisconnectReason;
use tokio::sync::oneshot;

use crate::handover::Verdict;

/// The fields. See the [module docs](self).
#[derive(Default)]
pub(super) struct Rare {
    /// Set once the liveness machine has said `Drop`.
    pub(super) ended: Option<DisconnectReason>,
    /// Since when the socket has held an incomplete message, if it does.
    pub(super) incomplete_since: Option<Instant>,
    /// Since when a live upgrade has asked this connection to pause, while it waits
    /// for answers to its requests (reading stops meanwhile).
    pub(super) pausing: Option<Instant>,
    /// Paused for a live upgrade: the answer whether it goes on here or was handed over.
    pub(super) parked: Option<oneshot::Receiver<Verdict>>,
}

/// [`Rare`], boxed on first use.
#[derive(Default)]
pub(super) struct RareBox(Option<Box<Rare>>);

impl RareBox {
    /// The fields, if any was ever set.
    pub(super) fn get(&self) -> Option<&Rare> {
        self.0.as_deref()
    }

    /// The fields to change, if any was ever set.
    pub(super) fn existing_mut(&mut self) -> Option<&mut Rare> {
        self.0.as_deref_mut()
    }

    /// The fields to set, boxed now if they were not yet.
    pub(super) fn get_mut(&mut self) -> &mut Rare {
        self.0.get_or_insert_default()
    }
}
