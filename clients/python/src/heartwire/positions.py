"""Where the client stands in each subscribed channel, so that a reconnect — to the same
node or another — resumes where the application left off.

Sans-IO, like the Rust client's ``resume`` module. Per channel the client keeps the epoch
from ``subscribed`` and the last ``seq`` it handed to the application; every resubscribe
carries that position as ``since``. A message at or before it is a duplicate and is
dropped; a message past the next expected one, or a ``subscribed`` that says
``recovered: false`` or names another epoch, is a gap the application hears of.

Independent servers (no shared broker) number the same channel in different epochs, and
a client that fails over from one to another and back is answered with the first
server's whole epoch again (``seq: 0``, ``recovered: false``). So the client keeps the
last ``seq`` delivered in each of the latest :data:`EPOCHS_KEPT` epochs of a channel: a
``subscribed`` naming one of them makes it current again, and its replay is trimmed to
what the application has not had. The change of epoch is still a gap.
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

EPOCHS_KEPT = 4
"""How many epochs of one channel the client remembers its position in; the one used
least recently is forgotten first."""


class Positions:
    """The last position delivered, per channel and epoch."""

    def __init__(self) -> None:
        # Per channel, one position per epoch: the current one first, then the others
        # from the one used most recently; never empty, at most EPOCHS_KEPT long.
        self._by_channel: dict[str, list[Position]] = {}

    def __repr__(self) -> str:
        return f"Positions({self._by_channel!r})"

    def since(self, channel: str) -> Position | None:
        """The position to resume ``channel`` from, when it was subscribed before: the
        current one, as the server last spoke of it."""
        epochs = self._by_channel.get(channel)
        return epochs[0] if epochs else None

    def handle_subscribed(
        self, channel: str, seq: int, epoch: str, recovered: bool | None
    ) -> Gap | None:
        """Takes in the server's ``subscribed``; returns the gap when the server could not
        replay what this client missed. The client continues from the server's position
        then; after ``recovered: true`` it keeps its own, and the replay follows. An epoch
        the client read from before continues from where it stood in it, so a replay of
        that epoch delivers only what the application has not had."""
        fresh = Position(epoch=epoch, seq=seq)
        epochs = self._by_channel.get(channel)
        if not epochs:
            self._by_channel[channel] = [fresh]
            return None
        current = epochs[0]
        if current.epoch == epoch:
            if recovered is not False:
                return None
            epochs[0] = fresh
            return Gap(channel, current.seq + 1, seq, GapReason.HISTORY_TOO_SHORT)
        known = next((position for position in epochs if position.epoch == epoch), None)
        if known is None:
            epochs.insert(0, fresh)
            del epochs[EPOCHS_KEPT:]
            return Gap(channel, from_seq=1, to_seq=seq, reason=GapReason.EPOCH_CHANGED)
        # ``seq`` 0: the whole epoch follows, and what was delivered is dropped; a later
        # ``seq``: the messages after ``known`` up to it will not come.
        epochs.remove(known)
        epochs.insert(0, Position(epoch=epoch, seq=max(known.seq, seq)))
        return Gap(channel, known.seq + 1, max(seq, known.seq), GapReason.EPOCH_CHANGED)

    def handle_message(self, channel: str, seq: int) -> Decision:
        """Decides what becomes of message ``seq`` of ``channel`` and records it as seen,
        unless it is a duplicate. A message with ``seq`` 0 was published into Redis by
        other software: it has no place in the channel's order and is simply delivered."""
        epochs = self._by_channel.get(channel)
        if seq == 0 or not epochs:
            return _DELIVER
        known = epochs[0]
        if seq <= known.seq:
            return _DUPLICATE
        expected = known.seq + 1
        epochs[0] = Position(epoch=known.epoch, seq=seq)
        if seq == expected:
            return _DELIVER
        return Decision(
            Delivery.AFTER_GAP, Gap(channel, expected, seq - 1, GapReason.SKIPPED)
        )

    def forget(self, channel: str) -> None:
        """Forgets ``channel``: the application left it."""
        self._by_channel.pop(channel, None)
