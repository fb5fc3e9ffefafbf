"""The state a client keeps across connections, shared by the :class:`~heartwire.Client`
handle, the reconnect loop and the open connection: the lifecycle, the outbox and the
callers waiting for acks, the channels, presence requests and the event streams.

Everything here runs on the client's event loop; nothing blocks.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Protocol

from .auth import Credentials
from .channels import Channels
from .config import ClientConfig
from .errors import ClientClosed, PresenceOff, PresenceRefused, PublishRefused
from .events import Event, ServerError, StateChange, StopReason
from .machine import Lifecycle, Stop
from .outbox import Outbox
from .protocol import Ack, Presence, encode_data, encode_presence, encode_unsubscribe
from .report import PreviousSession
from .streams import Broadcaster

#: The error code of a publish the server's broker could not take: it is sent again.
UNAVAILABLE = "unavailable"
#: The error code that answers a presence request for an untracked channel.
PRESENCE_OFF = "presence_off"
#: The error code of a request the identity may not make.
FORBIDDEN = "forbidden"


class Link(Protocol):
    """The open connection, as the hub sees it."""

    def send(self, text: str) -> None:
        """Queues a control frame."""

    def wake_writer(self) -> None:
        """The outbox has something to write."""


class Hub:
    """See the module docs."""

    def __init__(self, urls: list[str], credentials: Credentials, config: ClientConfig) -> None:
        self.config = config
        self.credentials = credentials
        self.lifecycle = Lifecycle(urls, config)
        self.outbox = Outbox(config.outbox_limit, config.publishes_in_flight)
        self.channels = Channels(config.queue_size, self._left)
        self.events: Broadcaster[Event] = Broadcaster()
        self.states: Broadcaster[StateChange] = Broadcaster()
        self.stopping = asyncio.Event()
        self.link: Link | None = None
        self.session: str | None = None
        self.previous: PreviousSession | None = None
        """The session lost last, until a server that takes reports hears of it."""
        self.rtt: float | None = None
        self.stopped: ClientClosed | None = None
        self._acks: dict[str, asyncio.Future[int]] = {}
        self._presence: deque[tuple[str, asyncio.Future[list[str]]]] = deque()

    def __repr__(self) -> str:
        return f"Hub({self.lifecycle!r}, {self.outbox!r}, {self.channels!r})"

    def announce(self, change: StateChange | None) -> None:
        """Tells the application of a state change."""
        if change is not None:
            self.states.send(change)
            self.events.send(change)

    def send(self, text: str) -> None:
        """Sends a control frame now if a connection is open; otherwise the next
        connection restores what matters (subscriptions, presence requests)."""
        if self.link is not None:
            self.link.send(text)

    def check_open(self) -> None:
        """Raises :class:`ClientClosed` once the client stopped or is stopping."""
        if self.stopped is not None:
            raise self.stopped
        if self.stopping.is_set():
            raise ClientClosed("closed by the application")

    # ---- publishes ------------------------------------------------------------------------

    def publish(self, channel: str, data: Any) -> asyncio.Future[int]:
        """Queues a publish; the future resolves with its ``seq`` once acknowledged."""
        self.check_open()
        publish = self.outbox.push(channel, encode_data(data))
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        # The caller may never await it: a rejection must not be reported as unhandled.
        future.add_done_callback(_retrieve)
        self._acks[publish.id] = future
        if self.link is not None:
            self.link.wake_writer()
        return future

    def handle_ack(self, ack: Ack) -> None:
        """The server took a publish (once, even when ``duplicate``)."""
        self.outbox.handle_ack(ack.id)
        future = self._acks.pop(ack.id, None)
        if future is not None and not future.done():
            future.set_result(ack.seq)

    def handle_error(self, error: ServerError, now: float) -> None:
        """The server refused a request."""
        if error.id is not None and error.code == UNAVAILABLE:
            if self.outbox.handle_unavailable(error.id, now, self.config.backoff.base):
                return
        if error.id is not None and self.outbox.handle_refused(error.id) is not None:
            future = self._acks.pop(error.id, None)
            if future is not None and not future.done():
                future.set_exception(PublishRefused(error.code, error.reason))
        elif error.code == FORBIDDEN and error.channel is not None:
            if not self.channels.handle_refused(error.channel, error.reason):
                self._refuse_presence(error.channel, PresenceRefused(error.channel, error.reason))
        elif error.code == PRESENCE_OFF and self._presence:
            _, waiter = self._presence.popleft()
            if not waiter.done():
                waiter.set_exception(PresenceOff(error.reason))
        self.events.send(error)

    # ---- presence -------------------------------------------------------------------------

    def presence(self, channel: str) -> asyncio.Future[list[str]]:
        """Asks who is subscribed to ``channel``; sent now or on the next connection."""
        self.check_open()
        future: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._presence.append((channel, future))
        self.send(encode_presence(channel))
        return future

    def presence_requests(self) -> list[str]:
        """The presence requests still unanswered, to send again on a new connection."""
        self._presence = deque((c, f) for c, f in self._presence if not f.done())
        return [encode_presence(channel) for channel, _ in self._presence]

    def _refuse_presence(self, channel: str, error: Exception) -> None:
        """The oldest presence request for ``channel`` was refused."""
        for index, (asked, waiter) in enumerate(self._presence):
            if asked == channel:
                del self._presence[index]
                if not waiter.done():
                    waiter.set_exception(error)
                return

    def handle_presence(self, presence: Presence) -> None:
        """The answer to the oldest presence request for its channel."""
        for index, (channel, waiter) in enumerate(self._presence):
            if channel == presence.channel:
                del self._presence[index]
                if not waiter.done():
                    waiter.set_result(list(presence.members))
                return

    # ---- the end --------------------------------------------------------------------------

    def shutdown(self, stop: Stop) -> None:
        """The client stopped for good: everyone waiting learns why."""
        error = ClientClosed(stop.detail)
        self.stopped = error
        for publish in self.outbox.take_all():
            future = self._acks.pop(publish.id, None)
            if future is not None and not future.done():
                future.set_exception(error)
        for _, waiter in self._presence:
            if not waiter.done():
                waiter.set_exception(error)
        self._presence.clear()
        self.announce(self.lifecycle.closed(stop))
        by_caller = stop.reason is StopReason.BY_CALLER
        self.channels.finish(None if by_caller else error)
        self.events.finish(None if by_caller else error)
        self.states.finish(None if by_caller else error)

    def _left(self, channel: str) -> None:
        self.send(encode_unsubscribe(channel))


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
