"""Resume positions per channel: `since`, dedup of replays, and gaps with their reasons."""

from __future__ import annotations

from heartwire import Gap, GapReason
from heartwire.positions import EPOCHS_KEPT, Delivery, Positions
from heartwire.protocol import Position


def subscribed_at(seq: int) -> Positions:
    positions = Positions()
    assert positions.handle_subscribed("c", seq, "e1", None) is None
    return positions


def test_a_resubscribe_carries_the_last_delivered_position() -> None:
    positions = subscribed_at(3)
    assert positions.since("c") == Position("e1", 3)
    assert positions.handle_message("c", 4).delivery is Delivery.DELIVER
    assert positions.since("c") == Position("e1", 4)
    assert positions.since("other") is None


def test_a_recovered_replay_is_delivered_once_and_in_order() -> None:
    positions = subscribed_at(0)
    assert positions.handle_message("c", 1).delivery is Delivery.DELIVER
    assert positions.handle_subscribed("c", 3, "e1", True) is None
    deliveries = [positions.handle_message("c", seq).delivery for seq in (1, 2, 3, 3, 2)]
    assert deliveries == [Delivery.DUPLICATE, Delivery.DELIVER, Delivery.DELIVER, Delivery.DUPLICATE, Delivery.DUPLICATE]


def test_history_too_short_is_a_gap_and_the_server_position_is_adopted() -> None:
    positions = subscribed_at(2)
    gap = positions.handle_subscribed("c", 9, "e1", False)
    assert gap == Gap("c", 3, 9, GapReason.HISTORY_TOO_SHORT)
    assert positions.handle_message("c", 10).delivery is Delivery.DELIVER


def test_another_epoch_is_a_gap_even_when_its_seq_is_lower() -> None:
    positions = subscribed_at(7)
    gap = positions.handle_subscribed("c", 0, "e2", False)
    assert gap == Gap("c", 1, 0, GapReason.EPOCH_CHANGED)
    assert positions.handle_message("c", 1).delivery is Delivery.DELIVER


def test_a_live_message_past_the_next_one_reports_the_skipped_ones() -> None:
    positions = subscribed_at(1)
    decision = positions.handle_message("c", 5)
    assert decision.delivery is Delivery.AFTER_GAP
    assert decision.gap == Gap("c", 2, 4, GapReason.SKIPPED)
    assert positions.handle_message("c", 6).delivery is Delivery.DELIVER


def test_unsequenced_messages_are_delivered_and_move_nothing() -> None:
    positions = subscribed_at(3)
    assert positions.handle_message("c", 0).delivery is Delivery.DELIVER
    assert positions.handle_message("c", 0).delivery is Delivery.DELIVER
    assert positions.since("c") == Position("e1", 3)


def test_a_forgotten_channel_starts_afresh() -> None:
    positions = subscribed_at(4)
    positions.forget("c")
    assert positions.since("c") is None
    assert positions.handle_subscribed("c", 9, "e1", None) is None


def delivered(positions: Positions, seqs: range) -> list[int]:
    """What the application is handed of ``seqs`` in the current epoch of ``c``."""
    return [seq for seq in seqs if positions.handle_message("c", seq).delivery is not Delivery.DUPLICATE]


def test_back_to_an_epoch_already_read_its_replay_is_trimmed() -> None:
    # Read 1..3 of the primary's epoch, then 1..2 of the backup's.
    positions = subscribed_at(0)
    assert delivered(positions, range(1, 4)) == [1, 2, 3]
    assert positions.handle_subscribed("c", 0, "backup", False) == Gap("c", 1, 0, GapReason.EPOCH_CHANGED)
    assert delivered(positions, range(1, 3)) == [1, 2]
    # Back on the primary, which replays its whole epoch: the change of epoch is still a
    # gap, but only what came after 3 is new.
    assert positions.handle_subscribed("c", 0, "e1", False) == Gap("c", 4, 3, GapReason.EPOCH_CHANGED)
    assert delivered(positions, range(1, 6)) == [4, 5]
    assert positions.since("c") == Position("e1", 5)
    # And back on the backup, answered without a replay: what it published meanwhile is
    # the gap.
    assert positions.handle_subscribed("c", 6, "backup", False) == Gap("c", 3, 6, GapReason.EPOCH_CHANGED)
    assert delivered(positions, range(6, 8)) == [7]


def test_only_the_latest_epochs_are_remembered() -> None:
    positions = subscribed_at(0)
    assert delivered(positions, range(1, 3)) == [1, 2]
    for other in range(1, EPOCHS_KEPT):
        positions.handle_subscribed("c", 0, f"other{other}", False)
        assert delivered(positions, range(1, 2)) == [1]
    # e1 is the oldest of the kept ones: it is still known.
    positions.handle_subscribed("c", 0, "e1", False)
    assert delivered(positions, range(1, 4)) == [3]
    # One more epoch pushes out the one used least recently, other1...
    positions.handle_subscribed("c", 0, "newest", False)
    positions.handle_subscribed("c", 0, "other1", False)
    assert delivered(positions, range(1, 3)) == [1, 2]
    # ...which pushed out other2; other3 is still known.
    positions.handle_subscribed("c", 0, "other3", False)
    assert delivered(positions, range(1, 3)) == [2]
    positions.handle_subscribed("c", 0, "other2", False)
    assert delivered(positions, range(1, 2)) == [1]
