"""The reconnect policy: how long the client waits before its next attempt, and when it
gives up.

Sans-IO, like ``heartwire_core::backoff``: :class:`Backoff` reads no clock and owns no
random generator. The caller passes ``now`` (seconds on a monotonic clock) and a
:class:`random.Random`, so tests drive it with explicit time and a seeded generator.

- The *n*-th attempt of a streak of failures waits uniformly in
  ``[0, min(cap, base · 2ⁿ⁻¹)]`` ("full jitter"): clients that lost the same server at the
  same instant come back spread over the whole window instead of in waves.
- ``max_attempts`` and ``max_elapsed`` bound a streak; both default to never giving up.
- A connection that stayed open for ``reset_after`` was healthy: when it ends, the streak
  starts again from the first window.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .errors import InvalidConfig

#: The window of the first retry: it comes within half a second.
DEFAULT_BASE = 0.5
#: The largest window: no wait is longer than 20 s.
DEFAULT_CAP = 20.0
#: A connection open this long was healthy.
DEFAULT_RESET_AFTER = 30.0


@dataclass(frozen=True)
class BackoffConfig:
    """A reconnect policy. Durations are in seconds."""

    base: float = DEFAULT_BASE
    """The window of the first retry."""
    cap: float = DEFAULT_CAP
    """The largest window."""
    max_attempts: int | None = None
    """Give up after this many failed attempts in a row (``None``: never)."""
    max_elapsed: float | None = None
    """Give up once a streak of failures has lasted this long (``None``: never)."""
    reset_after: float = DEFAULT_RESET_AFTER
    """A connection open this long was healthy: the streak starts again after it."""

    def __post_init__(self) -> None:
        if not (self.base > 0 and self.cap >= self.base):
            raise InvalidConfig(
                f"backoff needs 0 < base <= cap, got base {self.base} s, cap {self.cap} s"
            )
        if self.max_attempts is not None and self.max_attempts < 0:
            raise InvalidConfig("backoff max_attempts must not be negative")


def window(config: BackoffConfig, attempt: int) -> float:
    """``min(cap, base · 2^(attempt-1))``: the window of the ``attempt``-th attempt of a
    streak, counted from 1."""
    exponent = min(max(attempt - 1, 0), 62)
    return min(config.cap, config.base * float(2**exponent))


class Backoff:
    """The state of one client's reconnect policy. See the module docs."""

    def __init__(self, config: BackoffConfig) -> None:
        self.config = config
        self._attempt = 0
        self._streak_started: float | None = None
        self._connected_at: float | None = None
        self._fresh_token_used = False

    def __repr__(self) -> str:
        return f"Backoff(attempt={self._attempt}, config={self.config!r})"

    @property
    def attempt(self) -> int:
        """How many delays were handed out in the current streak."""
        return self._attempt

    def handle_connected(self, now: float) -> None:
        """A connection opened at ``now``."""
        self._connected_at = now

    def handle_disconnected(self, now: float) -> None:
        """The open connection ended at ``now``. If it stayed open for ``reset_after``,
        the streak is over and the next delay is the first one again."""
        opened, self._connected_at = self._connected_at, None
        if opened is not None and now - opened >= self.config.reset_after:
            self._attempt = 0
            self._streak_started = None
            self._fresh_token_used = False

    def next_delay(self, now: float, rng: random.Random) -> float | None:
        """The delay before the next attempt, or ``None`` when the policy gives up.
        Each call counts one attempt."""
        attempt = self.next_attempt(now)
        if attempt is None:
            return None
        return rng.uniform(0.0, window(self.config, attempt))

    def next_fresh_token(self, now: float, rng: random.Random) -> float | None:
        """The delay before reconnecting with a fresh token after the server said the
        token expired: none, and no attempt counted, the first time in a streak;
        afterwards :meth:`next_delay`'s. ``None`` when the policy gives up."""
        if self._fresh_token_used:
            return self.next_delay(now, rng)
        self._fresh_token_used = True
        return 0.0

    def next_attempt(self, now: float) -> int | None:
        """Counts one attempt whose delay someone else chose (a server's retry hint);
        returns its number, or ``None`` when the policy gives up."""
        if self._streak_started is None:
            self._streak_started = now
        limits = self.config
        if limits.max_attempts is not None and self._attempt >= limits.max_attempts:
            return None
        if limits.max_elapsed is not None and now - self._streak_started >= limits.max_elapsed:
            return None
        self._attempt += 1
        return self._attempt
