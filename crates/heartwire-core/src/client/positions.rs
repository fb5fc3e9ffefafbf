//! Where the client stands in each subscribed channel, so that a reconnect — to the same
//! node or another — resumes where the application left off.
//!
//! Per channel the client keeps the epoch from `subscribed` and the last `seq` it handed
//! to the application. Every resubscribe carries that position as `since`. Messages at
//! or before it are duplicates and are dropped; a message past the next expected one,
//! or a `subscribed` that says `recovered: false`, is a [`Gap`] the application hears of.
//!
//! Independent servers (no shared broker) number the same channel in different epochs.
//! A client that fails over from one to another and back is answered with the first
//! server's whole epoch again (`seq: 0`, `recovered: false`). So the client also keeps
//! the last `seq` delivered in each of the latest [`EPOCHS_KEPT`] epochs of a channel: a
//! `subscribed` naming one of them makes it current again, and its replay is trimmed to
//! what the application has not had. The epoch change itself is still a gap.

use std::collections::{HashMap, HashSet, VecDeque};

use super::event::GapReason;
use crate::protocol::Position;

/// Messages of a channel that will not arrive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Gap {
    /// The first sequence number missed (in the new epoch when the epoch changed).
    pub(crate) from_seq: u64,
    /// The last sequence number missed; below `from_seq` when the server could not
    /// tell which messages were missed (such as a new epoch with no message yet).
    pub(crate) to_seq: u64,
    /// Why they will not arrive.
    pub(crate) reason: GapReason,
}

/// What to do with a channel message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Hand it to the application.
    Deliver,
    /// Hand it to the application after telling it of the messages before it that
    /// will not arrive.
    AfterGap(Gap),
    /// The application has it already: drop it.
    Duplicate,
    /// Its subscription ended (the caller left, or the server ended or refused it):
    /// drop it until the channel is subscribed again.
    Ended,
}

/// How many epochs of one channel the client remembers its position in; the one used
/// least recently is forgotten first.
pub(crate) const EPOCHS_KEPT: usize = 4;

/// The last position delivered, per channel and epoch.
#[derive(Debug, Default)]
pub(crate) struct Positions {
    /// Per channel, one position per epoch, the current one first, then the others from
    /// the one used most recently; never empty, at most [`EPOCHS_KEPT`] long.
    by_channel: HashMap<String, VecDeque<Position>>,
    /// Channels whose subscription ended and was not made again.
    ended: HashSet<String>,
}

impl Positions {
    /// The position to resume `channel` from, when it was subscribed before: the
    /// current one, as the server last spoke of it.
    pub(crate) fn since(&self, channel: &str) -> Option<Position> {
        self.by_channel.get(channel)?.front().cloned()
    }

    /// Takes in the server's `subscribed`; returns the gap when the server could not
    /// replay what this client missed. The client continues from the server's position
    /// then; after `recovered: true` it keeps its own, and the replay follows. An epoch
    /// the client read from before continues from where it stood in it, so a replay of
    /// that epoch delivers only what the application has not had.
    pub(crate) fn handle_subscribed(
        &mut self,
        channel: &str,
        seq: u64,
        epoch: &str,
        recovered: Option<bool>,
    ) -> Option<Gap> {
        self.ended.remove(channel);
        let fresh = Position {
            epoch: epoch.to_owned(),
            seq,
        };
        let Some(epochs) = self.by_channel.get_mut(channel) else {
            self.by_channel
                .insert(channel.to_owned(), VecDeque::from([fresh]));
            return None;
        };
        let current = epochs.front_mut()?;
        if current.epoch == epoch {
            if recovered != Some(false) {
                // Everything after `current` follows.
                return None;
            }
            let gap = Gap {
                from_seq: current.seq + 1,
                to_seq: seq,
                reason: GapReason::HistoryTooShort,
            };
            *current = fresh;
            return Some(gap);
        }
        let gap = match epochs.iter().position(|known| known.epoch == epoch) {
            Some(index) => {
                let mut known = epochs.remove(index)?;
                // `seq` 0: the whole epoch follows, and what was delivered is dropped;
                // a later `seq`: the messages after `known` up to it will not come.
                let gap = Gap {
                    from_seq: known.seq + 1,
                    to_seq: seq.max(known.seq),
                    reason: GapReason::EpochChanged,
                };
                known.seq = known.seq.max(seq);
                epochs.push_front(known);
                gap
            }
            None => {
                epochs.push_front(fresh);
                epochs.truncate(EPOCHS_KEPT);
                Gap {
                    from_seq: 1,
                    to_seq: seq,
                    reason: GapReason::EpochChanged,
                }
            }
        };
        Some(gap)
    }

    /// Decides what becomes of message `seq` of `channel`, and records it as seen
    /// unless it is a duplicate. A message with `seq` 0 was published into Redis by
    /// other software: it has no place in the channel's order and is simply delivered.
    pub(crate) fn handle_message(&mut self, channel: &str, seq: u64) -> Delivery {
        // A channel with a position is subscribed: the set of ended ones is read only
        // for the others, off the path of every message.
        let known = if seq == 0 {
            None
        } else {
            self.by_channel
                .get_mut(channel)
                .and_then(VecDeque::front_mut)
        };
        let Some(known) = known else {
            return if self.ended.contains(channel) {
                Delivery::Ended
            } else {
                Delivery::Deliver
            };
        };
        if seq <= known.seq {
            return Delivery::Duplicate;
        }
        let expected = known.seq + 1;
        known.seq = seq;
        if seq == expected {
            Delivery::Deliver
        } else {
            Delivery::AfterGap(Gap {
                from_seq: expected,
                to_seq: seq - 1,
                reason: GapReason::Skipped,
            })
        }
    }

    /// Forgets `channel`: the application left it.
    pub(crate) fn forget(&mut self, channel: &str) {
        self.by_channel.remove(channel);
        self.ended.insert(channel.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscribed_at(seq: u64) -> Positions {
        let mut positions = Positions::default();
        assert_eq!(positions.handle_subscribed("c", seq, "e1", None), None);
        positions
    }

    #[test]
    fn a_resubscribe_carries_the_last_delivered_position() {
        let mut positions = subscribed_at(3);
        assert_eq!(positions.since("c").map(|p| p.seq), Some(3));
        assert_eq!(positions.handle_message("c", 4), Delivery::Deliver);
        assert_eq!(
            positions.since("c"),
            Some(Position {
                epoch: "e1".into(),
                seq: 4
            })
        );
        assert_eq!(positions.since("other"), None);
    }

    #[test]
    fn a_recovered_replay_is_delivered_once_and_in_order() {
        let mut positions = subscribed_at(0);
        assert_eq!(positions.handle_message("c", 1), Delivery::Deliver);
        assert_eq!(positions.handle_subscribed("c", 3, "e1", Some(true)), None);
        for seq in [1, 2, 3] {
            let expected = if seq == 1 {
                Delivery::Duplicate
            } else {
                Delivery::Deliver
            };
            assert_eq!(positions.handle_message("c", seq), expected, "seq {seq}");
        }
        assert_eq!(positions.handle_message("c", 3), Delivery::Duplicate);
    }

    #[test]
    fn history_too_short_is_a_gap_and_the_server_position_is_adopted() {
        let mut positions = subscribed_at(2);
        let gap = positions.handle_subscribed("c", 9, "e1", Some(false));
        assert_eq!(
            gap,
            Some(Gap {
                from_seq: 3,
                to_seq: 9,
                reason: GapReason::HistoryTooShort
            })
        );
        assert_eq!(positions.handle_message("c", 10), Delivery::Deliver);
    }

    #[test]
    fn unsequenced_messages_are_delivered_and_move_nothing() {
        let mut positions = subscribed_at(3);
        assert_eq!(positions.handle_message("c", 0), Delivery::Deliver);
        assert_eq!(positions.handle_message("c", 0), Delivery::Deliver);
        assert_eq!(positions.since("c").map(|p| p.seq), Some(3));
        assert_eq!(positions.handle_message("c", 4), Delivery::Deliver);
    }

    #[test]
    fn another_epoch_is_a_gap_even_when_its_seq_is_lower() {
        let mut positions = subscribed_at(7);
        let gap = positions.handle_subscribed("c", 0, "e2", Some(false));
        assert_eq!(gap.map(|gap| gap.reason), Some(GapReason::EpochChanged));
        assert_eq!(positions.handle_message("c", 1), Delivery::Deliver);
    }

    #[test]
    fn a_live_message_past_the_next_one_reports_the_skipped_ones() {
        let mut positions = subscribed_at(1);
        assert_eq!(
            positions.handle_message("c", 5),
            Delivery::AfterGap(Gap {
                from_seq: 2,
                to_seq: 4,
                reason: GapReason::Skipped
            })
        );
        assert_eq!(positions.handle_message("c", 6), Delivery::Deliver);
    }

    /// What the application is handed of `seqs` in the current epoch of `c`.
    fn delivered(positions: &mut Positions, seqs: std::ops::RangeInclusive<u64>) -> Vec<u64> {
        seqs.filter(|&seq| positions.handle_message("c", seq) != Delivery::Duplicate)
            .collect()
    }

    #[test]
    fn back_to_an_epoch_already_read_its_replay_is_trimmed() {
        // Read 1..=3 of the primary's epoch, then 1..=2 of the backup's.
        let mut positions = subscribed_at(0);
        assert_eq!(delivered(&mut positions, 1..=3), [1, 2, 3]);
        let gap = positions.handle_subscribed("c", 0, "backup", Some(false));
        assert_eq!(gap.map(|gap| gap.reason), Some(GapReason::EpochChanged));
        assert_eq!(delivered(&mut positions, 1..=2), [1, 2]);
        // Back on the primary, which replays its whole epoch: the change of epoch is
        // still a gap, but only what came after 3 is new.
        let gap = positions.handle_subscribed("c", 0, "e1", Some(false));
        assert_eq!(
            gap,
            Some(Gap {
                from_seq: 4,
                to_seq: 3,
                reason: GapReason::EpochChanged
            })
        );
        assert_eq!(delivered(&mut positions, 1..=5), [4, 5]);
        assert_eq!(
            positions.since("c"),
            Some(Position {
                epoch: "e1".into(),
                seq: 5
            })
        );
        // And back on the backup, answered without a replay: what it published
        // meanwhile is the gap.
        let gap = positions.handle_subscribed("c", 6, "backup", Some(false));
        assert_eq!(
            gap,
            Some(Gap {
                from_seq: 3,
                to_seq: 6,
                reason: GapReason::EpochChanged
            })
        );
        assert_eq!(delivered(&mut positions, 6..=7), [7]);
    }

    #[test]
    fn only_the_latest_epochs_are_remembered() {
        let mut positions = subscribed_at(0);
        assert_eq!(delivered(&mut positions, 1..=2), [1, 2]);
        for other in 1..EPOCHS_KEPT {
            positions.handle_subscribed("c", 0, &format!("other{other}"), Some(false));
            assert_eq!(delivered(&mut positions, 1..=1), [1]);
        }
        // `e1` is the oldest of the kept ones: it is still known.
        positions.handle_subscribed("c", 0, "e1", Some(false));
        assert_eq!(delivered(&mut positions, 1..=3), [3]);
        // One more epoch pushes out the one used least recently, `other1`.
        positions.handle_subscribed("c", 0, "newest", Some(false));
        positions.handle_subscribed("c", 0, "other1", Some(false));
        assert_eq!(delivered(&mut positions, 1..=2), [1, 2]);
        // Which pushed out `other2`; `other3` is still known.
        positions.handle_subscribed("c", 0, "other3", Some(false));
        assert_eq!(delivered(&mut positions, 1..=2), [2]);
        positions.handle_subscribed("c", 0, "other2", Some(false));
        assert_eq!(delivered(&mut positions, 1..=1), [1]);
    }

    #[test]
    fn messages_of_an_ended_subscription_are_dropped_until_it_is_made_again() {
        let mut positions = subscribed_at(2);
        assert_eq!(positions.handle_message("c", 3), Delivery::Deliver);
        positions.forget("c");
        // A server that goes on sending (or sends one twice) reaches nobody.
        for seq in [3, 3, 4, 0] {
            assert_eq!(positions.handle_message("c", seq), Delivery::Ended);
        }
        assert_eq!(positions.handle_subscribed("c", 4, "e1", None), None);
        assert_eq!(positions.handle_message("c", 5), Delivery::Deliver);
    }

    #[test]
    fn a_forgotten_channel_starts_afresh() {
        let mut positions = subscribed_at(4);
        positions.forget("c");
        assert_eq!(positions.since("c"), None);
        assert_eq!(positions.handle_subscribed("c", 9, "e1", None), None);
    }
}
