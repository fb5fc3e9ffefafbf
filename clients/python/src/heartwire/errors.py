"""The exceptions of heartwire: one base class, one subclass per reason.

Every exception the package raises on purpose is a :class:`HeartwireError`, so callers can
catch them all with one ``except``. Failures of a connection are never raised: the client
reconnects by itself and reports them as state changes (see :mod:`heartwire.events`).
"""

from __future__ import annotations


class HeartwireError(Exception):
    """Base class of every error heartwire raises."""


class InvalidUrl(HeartwireError):
    """A server URL the client cannot use (not ``ws://`` or ``wss://``, or no host)."""


class InvalidChannel(HeartwireError):
    """A channel name that breaks the naming rules: 1 to 128 bytes of ASCII letters,
    digits and ``-_.:@/``."""


class InvalidConfig(HeartwireError):
    """A setting that cannot work, such as a zero outbox."""


class OutboxFull(HeartwireError):
    """The outbox holds as many publishes as it may; this one was not queued."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the outbox is full ({limit} publishes await their ack)")
        self.limit = limit


class ClientClosed(HeartwireError):
    """The client stopped for good: it sends nothing more, and what waited is dropped.

    ``reason`` says why: the caller closed it, the server said not to come back, no
    endpoint can work, or the reconnect policy gave up.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"the client is closed: {reason}")
        self.reason = reason


class PublishRefused(HeartwireError):
    """The server refused a publish for good (``code`` as in docs/PROTOCOL.md's error
    table); sending it again would be refused again."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"publish refused ({code}: {reason})")
        self.code = code
        self.reason = reason


class SubscriptionRefused(HeartwireError):
    """The server refused to subscribe to a channel (``forbidden``: the identity may not
    read it); the client does not ask for it again."""

    def __init__(self, channel: str, reason: str) -> None:
        super().__init__(f"subscription to {channel} refused: {reason}")
        self.channel = channel
        self.reason = reason


class PresenceRefused(HeartwireError):
    """The server refused a presence request (``forbidden``: the identity may not see who
    is on the channel)."""

    def __init__(self, channel: str, reason: str) -> None:
        super().__init__(f"presence of {channel} refused: {reason}")
        self.channel = channel
        self.reason = reason


class PresenceOff(HeartwireError):
    """The server tracks no presence for this channel (it matches no ``--presence``
    pattern)."""


class EventsLagged(HeartwireError):
    """An event iterator fell so far behind that its queue filled up; it was stopped
    rather than silently skip events. Create a new one with ``Client.events()``."""

    def __init__(self, capacity: int) -> None:
        super().__init__(
            f"this event iterator fell {capacity} events behind and was stopped"
        )
        self.capacity = capacity
