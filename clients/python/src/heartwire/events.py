"""What the client tells its application: states, messages, gaps, presence and refusals.

All are frozen dataclasses. :class:`Message` comes from a subscription; the others come
from ``Client.events()`` (and :class:`StateChange` alone from ``Client.states()``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Union


class State(str, Enum):
    """The states of a client; the same as heartwire.js."""

    CONNECTING = "connecting"
    """The first connection is being made."""
    OPEN = "open"
    """The server said hello and answers."""
    DEGRADED = "degraded"
    """Still connected, but a probe has been unanswered for half of ``ping_timeout``."""
    RECONNECTING = "reconnecting"
    """The connection was lost; the client waits for its next attempt, or makes it."""
    CLOSED = "closed"
    """For good: closed by the caller, refused in a way retrying cannot fix, or the
    reconnect policy gave up."""


class StopReason(str, Enum):
    """Why a client stopped for good."""

    BY_CALLER = "by_caller"
    """The application closed it."""
    DO_NOT_COME_BACK = "do_not_come_back"
    """The server closed in a way that means "do not come back" (docs/PROTOCOL.md)."""
    NO_USABLE_ENDPOINT = "no_usable_endpoint"
    """Every endpoint refused the handshake in a way retrying cannot fix."""
    GAVE_UP = "gave_up"
    """The reconnect policy's ``max_attempts`` or ``max_elapsed`` was reached."""
    FAILED = "failed"
    """The client's own task failed; ``Client.close()`` raises its exception."""


@dataclass(frozen=True)
class StateChange:
    """The client moved from ``previous`` to ``state``."""

    state: State
    previous: State
    url: str
    """The endpoint in use, or the one being tried or about to be."""
    reason: str = ""
    """What led here, for people: the close or failure that ended the last connection."""
    close_code: int | None = None
    """The close code that ended the last connection, when one did."""
    delay: float | None = None
    """:attr:`State.RECONNECTING`: seconds until the next attempt; ``None`` once it is
    under way (the state is announced again then)."""
    session: str | None = None
    """:attr:`State.OPEN`: the session id of the server's ``hello``."""
    stop: StopReason | None = None
    """:attr:`State.CLOSED`: why the client stopped."""


@dataclass(frozen=True)
class Message:
    """A message published on a subscribed channel."""

    channel: str
    seq: int
    """Its position in the channel, from 1; 0 for a message that other software published
    straight into Redis, which has no place in the channel's order."""
    data: Any
    """The published JSON value."""


class GapReason(str, Enum):
    """Why messages of a channel will not arrive."""

    HISTORY_TOO_SHORT = "history_too_short"
    """The server's history no longer reaches back to the last message delivered."""
    EPOCH_CHANGED = "epoch_changed"
    """The server forgot the channel and numbers it anew: what was missed of the old
    numbering is gone too."""
    SKIPPED = "skipped"
    """A live message came past the next expected one."""


@dataclass(frozen=True)
class Gap:
    """Messages ``from_seq`` … ``to_seq`` of ``channel`` were published while this client
    was away and will not arrive; the application may reload its state. With
    :attr:`GapReason.EPOCH_CHANGED`, the numbers are in the new epoch and ``to_seq`` may be
    0 (no message yet)."""

    channel: str
    from_seq: int
    to_seq: int
    reason: GapReason


@dataclass(frozen=True)
class Join:
    """``session`` subscribed to ``channel``, a channel with presence this client is
    subscribed to."""

    channel: str
    session: str
    user: str | None = None
    """Its user; ``None`` for an anonymous session. For a user, only its first connection
    on the channel is announced."""


@dataclass(frozen=True)
class Leave:
    """``session`` left ``channel``: it unsubscribed, disconnected, or its node stopped
    answering."""

    channel: str
    session: str
    user: str | None = None
    """Its user; ``None`` for an anonymous session. For a user, only its last connection
    on the channel is announced."""


@dataclass(frozen=True)
class ServerError:
    """The server refused a request (docs/PROTOCOL.md's error table); the connection stays
    open. ``id`` names the publish it answers, if it answers one; ``channel`` the channel
    it is about, if it is about one. A ``forbidden`` subscribe also ends the subscription
    (its stream raises :class:`~heartwire.errors.SubscriptionRefused`): it is not asked for
    again. ``unauthorized`` or ``forbidden`` without a channel refused a token refresh."""

    code: str
    reason: str
    id: str | None = None
    channel: str | None = None


@dataclass(frozen=True)
class Refreshed:
    """The server took a fresh token from the token provider: the connection now lasts
    ``expires_in`` more seconds (``None``: it no longer expires)."""

    expires_in: float | None


Event = Union[StateChange, Gap, Join, Leave, ServerError, Refreshed]
"""Everything ``Client.events()`` yields."""
