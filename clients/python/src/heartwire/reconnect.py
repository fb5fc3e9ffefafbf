"""Whether the client comes back after a connection or an attempt ended, and when.

These are the client reconnect rules of docs/PROTOCOL.md, the same table that
``heartwire_core::reconnect`` and heartwire.js implement:

- closes 1002, 1003, 1007, 1009, 1010 (the client broke the protocol or sent what the
  server cannot take), 1008 with any reason but ``slow consumer`` (policy), 4401
  (authentication failed) and 4403 (forbidden): do not come back;
- 1012 and 1013: come back after the server's hint, ``after_ms`` of a ``reconnect`` frame
  or ``retry after N ms`` at the end of the close reason, else with backoff;
- 4498 (the token expired): fetch a fresh token and come back at once, once per streak
  of failures (the backoff decides the later ones);
- every other close (1000, 1001, 1006, 1011, 1008 ``slow consumer``, …): backoff;
- a handshake answered with HTTP 5xx, 408 or 429 is retried, after ``Retry-After`` when
  given; any other status means that endpoint can never work.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

#: Close code for "authentication failed" (HTTP 401 + 4000).
AUTH_FAILED = 4401
#: Close code for "forbidden" (HTTP 403 + 4000).
FORBIDDEN = 4403
#: Close code for "token expired": the server ended a connection whose token ran out.
TOKEN_EXPIRED = 4498
#: Close 1008 with this reason means "you did not read fast enough": it may come back.
SLOW_CONSUMER = "slow consumer"

#: Closes after which retrying cannot help: the client or its credentials must change.
DO_NOT_COME_BACK = frozenset({1002, 1003, 1007, 1009, 1010, AUTH_FAILED, FORBIDDEN})
_POLICY_VIOLATION = 1008
_WITH_HINT = frozenset({1012, 1013})


class Rule(Enum):
    """How the client comes back."""

    BACKOFF = "backoff"
    """After the delay of the reconnect policy."""
    AFTER = "after"
    """After the delay the server asked for."""
    FRESH_TOKEN = "fresh_token"
    """At once with a fresh token, the first time in a streak; then after the policy's
    delay."""
    NEVER = "never"
    """Not at all: trying again cannot help."""


@dataclass(frozen=True)
class Retry:
    """What the client does after a connection or an attempt ended."""

    rule: Rule
    after: float | None = None
    """With :attr:`Rule.AFTER`: the server's delay, in seconds."""


BACKOFF = Retry(Rule.BACKOFF)
NEVER = Retry(Rule.NEVER)
FRESH_TOKEN = Retry(Rule.FRESH_TOKEN)


def rule_for_close(code: int, reason: str, hint: float | None = None) -> Retry:
    """The rule for a connection that ended with close ``code`` and ``reason``; ``hint``
    is the delay of a ``reconnect`` frame that came before it (seconds), if any."""
    if code in DO_NOT_COME_BACK:
        return NEVER
    if code == _POLICY_VIOLATION and reason != SLOW_CONSUMER:
        return NEVER
    if code == TOKEN_EXPIRED:
        return FRESH_TOKEN
    if code in _WITH_HINT:
        delay = hint if hint is not None else retry_hint(reason)
        return BACKOFF if delay is None else Retry(Rule.AFTER, delay)
    return BACKOFF


def retry_hint(reason: str) -> float | None:
    """The delay, in seconds, that a close reason names at its end, as in
    ``server restarting; retry after 1500 ms``."""
    _, found, rest = reason.partition("retry after ")
    if not found or not rest.endswith("ms"):
        return None
    number = rest[:-2].strip()
    return int(number) / 1000 if number.isascii() and number.isdigit() else None


@dataclass(frozen=True)
class Refusal:
    """What an HTTP answer to the WebSocket upgrade means."""

    permanent: bool
    """The endpoint refused in a way retrying cannot fix: it is never tried again."""
    retry_after: float | None = None
    """The server asked to come back after this many seconds (``Retry-After``)."""


def rule_for_status(status: int, retry_after: str | None) -> Refusal:
    """The rule for a handshake answered with HTTP ``status`` and the value of its
    ``Retry-After`` header, if any (only seconds are understood)."""
    if 500 <= status <= 599 or status in (408, 429):
        seconds = retry_after.strip() if retry_after is not None else ""
        return Refusal(False, float(seconds) if seconds.isdigit() else None)
    return Refusal(True)
