"""When a connection's token is refreshed, on explicit time (sans-IO, as
``heartwire_core::client::Refresh``).

A heartwire server tells in ``hello`` (and in each ``refreshed``) how long the
connection's identity lasts, ``expires_in_ms``, and closes the connection with 4498 once
that time (plus its grace) has passed without a ``refresh``. :class:`Refresh` picks the
moment to ask the token provider for a fresh token and send it: :func:`refresh_after` of
the lifetime, that is at 80 % of it or 30 s before its end, whichever comes first, but
never before half of it. An identity that lasts less than two :data:`RETRY_FLOOR` is not
refreshed. A refused refresh (the provider failed or had no token, or the server said
``unauthorized`` or ``forbidden``) is tried again once half of what is left has passed,
while at least two :data:`RETRY_FLOOR` are left; after that the server's 4498 and a
reconnect with a fresh token take over.
"""

from __future__ import annotations

#: The latest a refresh comes: this many seconds before the identity expires.
REFRESH_LEAD = 30.0
#: The share of the lifetime after which a refresh comes at the latest.
REFRESH_SHARE = 0.8
#: Seconds; see the module docs.
RETRY_FLOOR = 1.0


def refresh_after(lifetime: float) -> float:
    """Seconds after learning that an identity lasts ``lifetime`` when it is refreshed."""
    return max(min(lifetime * REFRESH_SHARE, lifetime - REFRESH_LEAD), lifetime / 2)


class Refresh:
    """The refresh schedule of one connection. Times are seconds on a monotonic clock."""

    def __init__(self) -> None:
        self._expires_at: float | None = None
        self._due: float | None = None
        self._pending = False

    def __repr__(self) -> str:
        return f"Refresh(due={self._due}, pending={self._pending})"

    def handle_lifetime(self, now: float, lifetime: float | None) -> None:
        """The server said at ``now`` that the identity lasts ``lifetime`` more seconds
        (``None``: it does not expire). Ends a refresh under way: this is its answer."""
        self._pending = False
        self._expires_at = None if lifetime is None else now + lifetime
        if lifetime is None or lifetime < 2 * RETRY_FLOOR:
            self._due = None
        else:
            self._due = now + refresh_after(lifetime)

    def handle_timeout(self, now: float) -> bool:
        """Whether a refresh starts at ``now``: ``True`` once when it is due, then not
        again until it is answered."""
        if self._pending or self._due is None or now < self._due:
            return False
        self._due = None
        self._pending = True
        return True

    def handle_refused(self, now: float) -> None:
        """The refresh under way failed at ``now``; it is tried again later while enough
        of the lifetime is left."""
        if not self._pending:
            return
        self._pending = False
        left = 0.0 if self._expires_at is None else max(0.0, self._expires_at - now)
        self._due = now + left / 2 if left >= 2 * RETRY_FLOOR else None

    @property
    def pending(self) -> bool:
        """Whether a refresh is under way."""
        return self._pending

    def poll_timeout(self) -> float | None:
        """When :meth:`handle_timeout` has something to do next."""
        return self._due
