"""Where the client stands in each subscribed channel, so that a reconnect — to the same
node or another — resumes where the application left off.

Sans-IO, like the Rust client's ``resume`` module. Per channel the client keeps the epoch
from ``subscribed`` and the last ``seq`` it handed to the application; every resubscribe
carries that position as ``since``. A message at or before it is a duplicate and is
dropped; a message past the next expected one, or a ``subscribed`` that says
``recovered: false`` or names another epoch, is a gap the application hears of.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .events import Gap, GapReason
from .protocol import Position


class Delivery(Enum):
    """What becomes of a channel message."""

    DELIVER = "deliver"
    """Hand it to the application."""
    AFTER_GAP = "after_gap"
    """Tell the application of the messages before it that will not arrive, then hand it
    over."""
    DUPLICATE = "duplicate"
    """The application has it already: drop it."""


@dataclass(frozen=True)
class Decision:
    """A :class:`Delivery` and, with :attr:`Delivery.AFTER_GAP`, the gap."""

    delivery: Delivery
    gap: Gap | None = None


_DELIVER = Decision(Delivery.DELIVER)
_DUPLICATE = Decision(Delivery.DUPLICATE)


class Positions:
    """The last position delivered, per channel."""

    def __init__(self) -> None:
        self._by_channel: dict[str, Position] = {}

    def __repr__(self) -> str:
        return f"Positions({self._by_channel!r})"

    def since(self, channel: str) -> Position | None:
        """The position to resume ``channel`` from, when it was subscribed before."""
        return self._by_channel.get(channel)

    def handle_subscribed(
        self, channel: str, seq: int, epoch: str, recovered: bool | None
    ) -> Gap | None:
        """Takes in the server's ``subscribed``; returns the gap when the server could not
        replay what this client missed. The client continues from the server's position
        then; after ``recovered: true`` it keeps its own, and the replay follows."""
        fresh = Position(epoch=epoch, seq=seq)
        known = self._by_channel.get(channel)
        if known is None:
            self._by_channel[channel] = fresh
            return None
        if known.epoch != epoch:
            gap = Gap(channel, from_seq=1, to_seq=seq, reason=GapReason.EPOCH_CHANGED)
        elif recovered is not False:
            return None
        else:
            gap = Gap(channel, known.seq + 1, seq, GapReason.HISTORY_TOO_SHORT)
        self._by_channel[channel] = fresh
        return gap

    def handle_message(self, channel: str, seq: int) -> Decision:
        """Decides what becomes of message ``seq`` of ``channel`` and records it as seen,
        unless it is a duplicate. A message with ``seq`` 0 was published into Redis by
        other software: it has no place in the channel's order and is simply delivered."""
        known = self._by_channel.get(channel)
        if seq == 0 or known is None:
            return _DELIVER
        if seq <= known.seq:
            return _DUPLICATE
        expected = known.seq + 1
        self._by_channel[channel] = Position(epoch=known.epoch, seq=seq)
        if seq == expected:
            return _DELIVER
        return Decision(
            Delivery.AFTER_GAP, Gap(channel, expected, seq - 1, GapReason.SKIPPED)
        )

    def forget(self, channel: str) -> None:
        """Forgets ``channel``: the application left it."""
        self._by_channel.pop(channel, None)
