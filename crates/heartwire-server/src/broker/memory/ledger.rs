//! The bytes of history that all channels hold together, in the order the messages
//! came, so that past `--history-total-bytes` the oldest message of any channel goes
//! first.
//!
//! Each channel drops its own oldest messages (past `--history-size` or
//! `--history-max-bytes`) and forgets its whole history when it expires; the ledger
//! learns of that through [`Ledger::forget`] and keeps the order lazily: an entry
//! whose message is gone is skipped when reached, and the order is compacted when
//! such entries outnumber the live ones.

use std::collections::VecDeque;
use std::sync::Arc;

/// One message in history: its channel, the channel's generation (a channel that
/// expired and came back is another), and its `seq`.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) channel: Arc<str>,
    pub(super) generation: u64,
    pub(super) seq: u64,
}

/// The total bytes of history, and the order of its messages.
#[derive(Debug, Default)]
pub(super) struct Ledger {
    order: VecDeque<Entry>,
    /// Bytes of the messages in history.
    pub(super) bytes: usize,
    /// Messages in history.
    live: usize,
}

impl Ledger {
    /// A message of `cost` bytes entered a channel's history.
    pub(super) fn add(&mut self, entry: Entry, cost: usize) {
        self.order.push_back(entry);
        self.bytes += cost;
        self.live += 1;
    }

    /// `messages` messages of `cost` bytes in all left a history.
    pub(super) fn forget(&mut self, messages: usize, cost: usize) {
        self.bytes -= cost;
        self.live -= messages;
    }

    /// The oldest entry, to be evicted when its message is still held.
    pub(super) fn pop_oldest(&mut self) -> Option<Entry> {
        self.order.pop_front()
    }

    /// Whether the order holds so many entries of gone messages that it is worth
    /// rebuilding with [`retain`](Self::retain).
    pub(super) fn needs_compaction(&self) -> bool {
        self.order.len() > 2 * self.live + 1024
    }

    /// Keeps the entries whose messages are still held.
    pub(super) fn retain(&mut self, held: impl FnMut(&Entry) -> bool) {
        self.order.retain(held);
    }
}
