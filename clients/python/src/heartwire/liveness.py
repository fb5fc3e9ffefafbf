"""When the client probes the server, when it calls the connection degraded, and when it
declares the server dead.

Sans-IO: :class:`Liveness` reads no clock. Its owner tells it what happened with an
explicit ``now`` (seconds on a monotonic clock), asks :meth:`Liveness.poll_timeout` when
the next decision is due, and calls :meth:`Liveness.handle_timeout` then. The rules are
those of the Rust client and heartwire.js, with the values of the server's ``hello``:

- anything heard from the server proves it alive;
- after ``ping_interval`` of silence, a probe is due (the client sends a protocol Ping and
  ``{"op":"ping"}``);
- a probe unanswered for half of ``ping_timeout``: the connection is *degraded*;
- nothing at all heard ``ping_timeout`` after the probe: the server is dead. A dead server
  is therefore noticed within ``ping_interval + ping_timeout`` of its last frame.

While the client is not reading (its application does not take messages, so the socket is
left unread) silence proves nothing: :meth:`Liveness.handle_deaf` stops the clock and
:meth:`Liveness.handle_listening` restarts it with a fresh probe, the way heartwire.js
treats a timer that fired late. Events at an instant are applied before timeouts at the
same instant: the owner reads what the socket holds before it calls ``handle_timeout``.
"""

from __future__ import annotations

from enum import Enum


class Verdict(Enum):
    """What :meth:`Liveness.handle_timeout` asks of its owner."""

    PROBE = "probe"
    """Send a probe now, then call :meth:`Liveness.handle_probe_sent`."""
    DEGRADED = "degraded"
    """A probe has been unanswered for half of ``ping_timeout``."""
    DEAD = "dead"
    """Nothing heard ``ping_timeout`` after a probe: drop the connection."""


class Liveness:
    """Liveness of one connection, as seen by the client. See the module docs."""

    def __init__(self, ping_interval: float, ping_timeout: float, now: float) -> None:
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self._last_heard = now
        self._probe_sent: float | None = None
        self._degraded = False
        self._deaf = False

    def __repr__(self) -> str:
        return (
            f"Liveness(ping_interval={self.ping_interval}, ping_timeout={self.ping_timeout}, "
            f"last_heard={self._last_heard}, probe_sent={self._probe_sent}, "
            f"degraded={self._degraded}, deaf={self._deaf})"
        )

    @property
    def detection_bound(self) -> float:
        """The longest a dead server can go unnoticed: ``ping_interval + ping_timeout``."""
        return self.ping_interval + self.ping_timeout

    @property
    def last_heard(self) -> float:
        """When the server was last heard."""
        return self._last_heard

    @property
    def degraded(self) -> bool:
        """Whether a probe has been unanswered for half of ``ping_timeout``."""
        return self._degraded

    def handle_heard(self, now: float) -> bool:
        """Something arrived from the server. Returns ``True`` when that ends a degraded
        period."""
        self._last_heard = max(self._last_heard, now)
        self._probe_sent = None
        was_degraded, self._degraded = self._degraded, False
        return was_degraded

    def handle_probe_sent(self, now: float) -> None:
        """A probe went out at ``now``: the server has ``ping_timeout`` to answer, unless
        a probe is already waiting for its answer."""
        if self._probe_sent is None:
            self._probe_sent = now

    def handle_deaf(self) -> None:
        """The client stopped reading the socket: silence proves nothing until it reads
        again."""
        self._deaf = True

    def handle_listening(self, now: float) -> None:
        """The client reads the socket again: what the server said meanwhile is being read
        now, and a fresh probe is due at once unless the server was heard recently."""
        if not self._deaf:
            return
        self._deaf = False
        self._probe_sent = None
        self._degraded = False
        self._last_heard = max(self._last_heard, now - self.ping_interval)

    def poll_timeout(self) -> float | None:
        """When :meth:`handle_timeout` is next due; ``None`` while the client is deaf."""
        if self._deaf:
            return None
        if self._probe_sent is None:
            return self._last_heard + self.ping_interval
        if self._degraded:
            return self._probe_sent + self.ping_timeout
        return self._probe_sent + self.ping_timeout / 2

    def handle_timeout(self, now: float) -> Verdict | None:
        """Applies the deadline that has passed at ``now``, if any."""
        if self._deaf:
            return None
        if self._probe_sent is None:
            return Verdict.PROBE if now >= self._last_heard + self.ping_interval else None
        if now >= self._probe_sent + self.ping_timeout:
            return Verdict.DEAD
        if not self._degraded and now >= self._probe_sent + self.ping_timeout / 2:
            self._degraded = True
            return Verdict.DEGRADED
        return None
