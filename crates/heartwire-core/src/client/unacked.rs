//! Publishes sent to a heartwire server and not yet acknowledged, oldest first.
//!
//! Each keeps the `id` it was given when the caller published it, so a publish sent
//! again — after a reconnect, or after the server said `unavailable` — carries the same
//! id, and the server's deduplication publishes it once.

use std::collections::VecDeque;

use super::outgoing::Publish;

/// Publishes awaiting their `ack`, in the order they were sent.
#[derive(Debug, Default)]
pub(crate) struct Unacked {
    sent: VecDeque<Publish>,
}

impl Unacked {
    /// How many publishes await their ack.
    pub(crate) fn len(&self) -> usize {
        self.sent.len()
    }

    /// Records a publish that was just sent.
    pub(crate) fn add(&mut self, publish: Publish) {
        self.sent.push_back(publish);
    }

    /// Forgets the publish with this id and hands it back: the server took it (or
    /// refused it for good). `None` when no publish with this id awaits its ack.
    pub(crate) fn ack(&mut self, id: &str) -> Option<Publish> {
        let position = self.sent.iter().position(|sent| sent.id == id)?;
        self.sent.remove(position)
    }

    /// Hands back the publish with this id and every one sent after it, oldest first,
    /// to be sent again; empty when the id is not awaiting an ack.
    pub(crate) fn take_from(&mut self, id: &str) -> VecDeque<Publish> {
        match self.sent.iter().position(|sent| sent.id == id) {
            Some(position) => self.sent.split_off(position),
            None => VecDeque::new(),
        }
    }

    /// Hands every unacknowledged publish back, oldest first.
    pub(crate) fn take_all(&mut self) -> VecDeque<Publish> {
        std::mem::take(&mut self.sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(n: i32) -> Publish {
        Publish {
            id: format!("p-{n}"),
            channel: "c".into(),
            data: n.into(),
        }
    }

    fn sent(numbers: impl IntoIterator<Item = i32>) -> Unacked {
        let mut unacked = Unacked::default();
        for n in numbers {
            unacked.add(publish(n));
        }
        unacked
    }

    #[test]
    fn acknowledged_publishes_are_forgotten_others_kept_in_order() {
        let mut unacked = sent(1..=3);
        assert_eq!(unacked.ack("p-2"), Some(publish(2)));
        assert_eq!(unacked.ack("unknown"), None);
        assert_eq!(unacked.take_all(), [publish(1), publish(3)]);
        assert!(unacked.take_all().is_empty());
    }

    #[test]
    fn a_refused_publish_comes_back_with_every_later_one_and_keeps_its_id() {
        let mut unacked = sent(1..=4);
        assert_eq!(
            unacked.take_from("p-2"),
            [publish(2), publish(3), publish(4)]
        );
        assert!(unacked.take_from("p-9").is_empty());
        assert_eq!(unacked.take_all(), [publish(1)]);
    }
}
