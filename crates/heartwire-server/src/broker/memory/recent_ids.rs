//! Publish ids seen within the dedup window, each scoped to its publisher and
//! channel, with a bound on how many are kept.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Who published, on which channel, with which id.
type Key = (Arc<str>, Arc<str>, Box<str>);

/// Ids expired per operation at most, so no operation waits for a long expiry.
const EXPIRE_BUDGET: usize = 64;

/// Publish ids seen within the dedup window, with the `seq` they got.
#[derive(Debug, Default)]
pub(super) struct RecentIds {
    seq_of: HashMap<Key, u64>,
    /// The same keys in the order they were seen, for expiry.
    seen: VecDeque<(Instant, Key)>,
}

impl RecentIds {
    pub(super) fn get(&self, publisher: &Arc<str>, channel: &Arc<str>, id: &str) -> Option<u64> {
        self.seq_of
            .get(&(publisher.clone(), channel.clone(), Box::from(id)))
            .copied()
    }

    /// Remembers `id`; past `max` ids the oldest is forgotten early.
    pub(super) fn insert(
        &mut self,
        key: (&Arc<str>, &Arc<str>, &str),
        seq: u64,
        now: Instant,
        max: usize,
    ) {
        let (publisher, channel, id) = key;
        let key: Key = (publisher.clone(), channel.clone(), Box::from(id));
        if self.seq_of.insert(key.clone(), seq).is_none() {
            self.seen.push_back((now, key));
        }
        while self.seq_of.len() > max {
            let Some((_, oldest)) = self.seen.pop_front() else {
                break;
            };
            self.seq_of.remove(&oldest);
        }
    }

    /// Forgets some of the ids older than `window`.
    pub(super) fn expire(&mut self, now: Instant, window: Duration) {
        for _ in 0..EXPIRE_BUDGET {
            match self.seen.front() {
                Some((seen, _)) if now.saturating_duration_since(*seen) >= window => {
                    let (_, key) = self.seen.pop_front().expect("front exists");
                    self.seq_of.remove(&key);
                }
                _ => return,
            }
        }
    }

    /// Every id, oldest first: its publisher, channel, id, `seq`, and how long ago
    /// (at `now`) it was seen.
    pub(super) fn export(
        &self,
        now: Instant,
    ) -> impl Iterator<Item = (&Arc<str>, &Arc<str>, &str, u64, Duration)> {
        self.seen.iter().filter_map(move |(seen, key)| {
            let seq = *self.seq_of.get(key)?;
            let (publisher, channel, id) = key;
            Some((
                publisher,
                channel,
                &**id,
                seq,
                now.saturating_duration_since(*seen),
            ))
        })
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.seq_of.len()
    }
}
