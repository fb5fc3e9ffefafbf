//! Connections held per key (a client address, a user), with a limit on each.

use std::collections::HashMap;
use std::hash::Hash;

use parking_lot::Mutex;

/// How many connections each key holds; a key at zero is forgotten.
#[derive(Debug)]
pub(crate) struct Counts<K> {
    held: Mutex<HashMap<K, usize>>,
}

impl<K> Default for Counts<K> {
    fn default() -> Self {
        Self {
            held: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone> Counts<K> {
    /// Counts one more for `key` unless it holds `max` already (0: no limit).
    pub(crate) fn take(&self, key: &K, max: usize) -> bool {
        let mut held = self.held.lock();
        let count = held.entry(key.clone()).or_default();
        if max > 0 && *count >= max {
            return false;
        }
        *count += 1;
        true
    }

    /// Gives one back for `key`.
    pub(crate) fn release(&self, key: &K) {
        let mut held = self.held.lock();
        if let Some(count) = held.get_mut(key) {
            *count -= 1;
            if *count == 0 {
                held.remove(key);
            }
        }
    }

    #[cfg(test)]
    fn keys(&self) -> usize {
        self.held.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_stops_at_the_maximum_and_is_forgotten_at_zero() {
        let counts = Counts::default();
        assert!(counts.take(&"a", 2) && counts.take(&"a", 2));
        assert!(!counts.take(&"a", 2));
        assert!(counts.take(&"b", 2));
        counts.release(&"a");
        assert!(counts.take(&"a", 2));
        for key in ["a", "a", "b"] {
            counts.release(&key);
        }
        assert_eq!(counts.keys(), 0);
        assert!((0..100).all(|_| counts.take(&"c", 0)), "0 is no limit");
    }
}
