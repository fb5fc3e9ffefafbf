"""Which server the client tries next: fail-over down the list, fail-back up it.

Sans-IO, like ``heartwire_core::failover``. The servers are ordered by preference, the
primary first. :class:`Failover` keeps each one's :class:`Health` and, with an explicit
``now``, answers two questions:

- :meth:`Failover.pick`: where the next attempt goes. The first server that has not
  failed since it last worked, or whose last failure is older than
  ``retry_failed_after``; when every server failed recently, the one that failed longest
  ago, so the client walks the list instead of hammering one server.
- :meth:`Failover.fail_back_due`: while connected to a backup, when a preferred server is
  worth probing again, so the client returns to the primary once it is back.

A server that refused for good (an HTTP answer that retrying cannot change) is never
picked again.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Health:
    """What the client knows about one server."""

    consecutive_failures: int = 0
    """Attempts or connections that failed since it last worked."""
    last_failure: float | None = None
    """When it last failed."""
    last_rtt: float | None = None
    """The latest round-trip time measured on a connection to it, in seconds."""
    refused: bool = False
    """It refused in a way that retrying cannot fix."""


class Failover:
    """The servers of one client and their health. See the module docs."""

    def __init__(self, count: int, retry_failed_after: float) -> None:
        self._health = [Health() for _ in range(count)]
        self._retry_failed_after = retry_failed_after

    def __repr__(self) -> str:
        return f"Failover({self._health!r}, retry_failed_after={self._retry_failed_after})"

    def health(self, index: int) -> Health:
        """The health of server ``index``."""
        return self._health[index]

    def pick(self, now: float) -> int | None:
        """Where the next attempt goes, or ``None`` when no server can ever work."""
        usable = [(i, h) for i, h in enumerate(self._health) if not h.refused]
        for index, health in usable:
            if self._is_worth_trying(health, now):
                return index
        if not usable:
            return None
        oldest = min(usable, key=lambda item: _failure_order(item[1]))
        return oldest[0]

    def fail_back_due(self, current: int, now: float) -> float | None:
        """When a server preferred to ``current`` will be worth probing (``now`` if one
        already is), if any."""
        dues = [
            now if h.last_failure is None else max(h.last_failure + self._retry_failed_after, now)
            for h in self._health[:current]
            if not h.refused
        ]
        return min(dues, default=None)

    def fail_back_candidate(self, current: int, now: float) -> int | None:
        """The preferred server to probe at ``now`` while connected to ``current``."""
        for index, health in enumerate(self._health[:current]):
            if not health.refused and self._is_worth_trying(health, now):
                return index
        return None

    def handle_success(self, index: int) -> None:
        """A connection to ``index`` opened."""
        self._health[index].consecutive_failures = 0

    def handle_failure(self, index: int, now: float) -> None:
        """An attempt or a connection to ``index`` failed at ``now``."""
        health = self._health[index]
        health.consecutive_failures += 1
        health.last_failure = now

    def handle_refused(self, index: int, now: float) -> None:
        """``index`` refused for good: it is never picked again."""
        self.handle_failure(index, now)
        self._health[index].refused = True

    def handle_rtt(self, index: int, rtt: float) -> None:
        """A round-trip time was measured on a connection to ``index``."""
        self._health[index].last_rtt = rtt

    def _is_worth_trying(self, health: Health, now: float) -> bool:
        return (
            health.consecutive_failures == 0
            or health.last_failure is None
            or now >= health.last_failure + self._retry_failed_after
        )


def _failure_order(health: Health) -> float:
    """Never failed sorts first, then the oldest failure."""
    return float("-inf") if health.last_failure is None else health.last_failure
