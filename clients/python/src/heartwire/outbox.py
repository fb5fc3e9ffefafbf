"""Publishes waiting to go out or for their ``ack``: bounded, in order, each with an id.

Sans-IO. A publish gets its id when the application makes it: this client's random 64-bit
prefix (hex) and a counter, the same form as the Rust client and heartwire.js. It keeps
that id when it is sent again — after a reconnect, or after the server said
``unavailable`` — so the server, which remembers ids for its ``--dedup-window``, publishes
it once.

- At most ``limit`` publishes wait in all (queued and in flight): a full outbox is an
  error for the caller (:class:`~heartwire.errors.OutboxFull`), never a silent drop.
- At most ``in_flight_limit`` await their ack at once; the rest wait meanwhile, so one
  client cannot fill a node's publish queue on its own.
- When a connection ends, the publishes in flight go back to the front, in order.
- ``unavailable`` (the server's broker could not take it): that publish and every later
  one in flight go back to the front, and nothing goes out before the hold ends.
"""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass

from .errors import OutboxFull


@dataclass(frozen=True)
class Publish:
    """One publish, as it goes on the wire."""

    id: str
    channel: str
    data_json: str
    """The published value, already encoded as JSON."""


class Outbox:
    """The publishes of one client. See the module docs."""

    def __init__(self, limit: int, in_flight_limit: int, prefix: str | None = None) -> None:
        self.limit = limit
        self.in_flight_limit = in_flight_limit
        self.prefix = prefix if prefix is not None else secrets.token_hex(8)
        self._count = 0
        self._waiting: deque[Publish] = deque()
        self._in_flight: deque[Publish] = deque()
        self._hold_until: float | None = None

    def __repr__(self) -> str:
        return (
            f"Outbox(waiting={len(self._waiting)}, in_flight={len(self._in_flight)}, "
            f"limit={self.limit}, hold_until={self._hold_until})"
        )

    def __len__(self) -> int:
        return len(self._waiting) + len(self._in_flight)

    @property
    def in_flight(self) -> int:
        """How many publishes were sent on this connection and await their ack."""
        return len(self._in_flight)

    @property
    def hold_until(self) -> float | None:
        """Nothing goes out before this (after ``unavailable``)."""
        return self._hold_until

    def push(self, channel: str, data_json: str) -> Publish:
        """Queues a publish and gives it its id; raises :class:`OutboxFull` when full."""
        if len(self) >= self.limit:
            raise OutboxFull(self.limit)
        self._count += 1
        publish = Publish(f"{self.prefix}-{self._count}", channel, data_json)
        self._waiting.append(publish)
        return publish

    def next_to_send(self, now: float) -> Publish | None:
        """The next publish to write now, moved in flight; ``None`` when none may go."""
        if self._hold_until is not None:
            if now < self._hold_until:
                return None
            self._hold_until = None
        if not self._waiting or len(self._in_flight) >= self.in_flight_limit:
            return None
        publish = self._waiting.popleft()
        self._in_flight.append(publish)
        return publish

    def handle_ack(self, id: str) -> Publish | None:
        """The server took publish ``id`` (a ``duplicate`` ack counts: it was published
        once). Returns it, or ``None`` when it is not waiting."""
        return self._remove(id)

    def handle_refused(self, id: str) -> Publish | None:
        """The server refused publish ``id`` for good: it leaves the outbox."""
        return self._remove(id)

    def handle_unavailable(self, id: str, now: float, hold: float) -> bool:
        """The server could not take publish ``id`` for want of a broker: it and every
        later one in flight go back to the front, in order, and nothing goes out for
        ``hold`` seconds. ``False`` when ``id`` is not in flight."""
        for index, publish in enumerate(self._in_flight):
            if publish.id == id:
                again = [self._in_flight.pop() for _ in range(len(self._in_flight) - index)]
                self._waiting.extendleft(again)
                self._hold_until = now + hold
                return True
        return False

    def handle_disconnected(self) -> None:
        """The connection ended: what was in flight goes back to the front, in order."""
        self._waiting.extendleft(reversed(self._in_flight))
        self._in_flight.clear()
        self._hold_until = None

    def take_all(self) -> list[Publish]:
        """Empties the outbox (the client closed for good), oldest first."""
        everything = [*self._in_flight, *self._waiting]
        self._in_flight.clear()
        self._waiting.clear()
        return everything

    def _remove(self, id: str) -> Publish | None:
        for queue in (self._in_flight, self._waiting):
            for publish in queue:
                if publish.id == id:
                    queue.remove(publish)
                    return publish
        return None
