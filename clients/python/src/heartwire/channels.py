"""The channels the application subscribed to: their subscriptions, where the client
stands in each, and the hand-over of messages.

Several :class:`Subscription` objects may share a channel; the server holds one
subscription for it, made when the first is created and left when the last is closed.
The channel's position (:mod:`heartwire.positions`) lives as long as that, across every
reconnect, so each resubscribe resumes from the last message handed over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from .errors import ClientClosed, SubscriptionRefused
from .events import Gap, Message
from .positions import Delivery, Positions
from .protocol import Position, Subscribed
from .streams import Stream


class Subscription(Stream[Message]):
    """The messages of one channel, across reconnects, in order and each once:
    ``async for message in subscription``. :meth:`close` (or leaving an ``async with``
    block) stops it; the client leaves the channel when its last subscription stops.
    Gaps (messages that cannot be recovered) are events of ``Client.events()``."""

    def __init__(
        self, channel: str, capacity: int, on_close: Callable[[Stream[Message]], None]
    ) -> None:
        super().__init__(capacity, on_close)
        self.channel = channel

    def __repr__(self) -> str:
        return f"Subscription({self.channel!r})"

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


class Channels:
    """Subscriptions by channel, positions, and who waits for a ``subscribed``."""

    def __init__(self, capacity: int, on_leave: Callable[[str], None]) -> None:
        self._capacity = capacity
        self._on_leave = on_leave
        self._subscriptions: dict[str, list[Subscription]] = {}
        self._confirmations: dict[str, list[asyncio.Future[None]]] = {}
        self._leaving: dict[str, int] = {}
        self.positions = Positions()

    def __repr__(self) -> str:
        return f"Channels({list(self._subscriptions)!r})"

    def names(self) -> list[str]:
        """The channels subscribed, in the order they were first subscribed."""
        return list(self._subscriptions)

    def since(self, channel: str) -> Position | None:
        """Where ``channel`` resumes from."""
        return self.positions.since(channel)

    def add(self, channel: str) -> tuple[Subscription, bool]:
        """A new subscription to ``channel``; ``True`` when the channel is new."""
        subscription = Subscription(channel, self._capacity, self._remove)
        existing = self._subscriptions.setdefault(channel, [])
        existing.append(subscription)
        return subscription, len(existing) == 1

    def confirmation(self, channel: str) -> asyncio.Future[None]:
        """Resolved by the next ``subscribed`` for ``channel``."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._confirmations.setdefault(channel, []).append(future)
        return future

    def handle_subscribed(self, frame: Subscribed) -> Gap | None:
        """The server confirmed a subscription; returns the gap it reveals, if any."""
        for future in self._confirmations.pop(frame.channel, []):
            if not future.done():
                future.set_result(None)
        if frame.channel not in self._subscriptions:
            return None
        return self.positions.handle_subscribed(
            frame.channel, frame.seq, frame.epoch, frame.recovered
        )

    def handle_refused(self, channel: str, reason: str) -> bool:
        """The server refused ``forbidden`` a request on ``channel``; ``True`` when it
        was a subscribe awaiting its ``subscribed``: the channel's subscriptions end with
        :class:`~heartwire.errors.SubscriptionRefused` and it is not asked for again."""
        waiting = self._confirmations.pop(channel, [])
        if not waiting:
            return False
        refused = SubscriptionRefused(channel, reason)
        for future in waiting:
            if not future.done():
                future.set_exception(refused)
        for subscription in self._subscriptions.pop(channel, []):
            subscription.finish(refused)
        self.positions.forget(channel)
        return True

    def handle_connected(self) -> None:
        """A new connection: no ``unsubscribed`` of an earlier one will come."""
        self._leaving.clear()

    def handle_unsubscribed(self, channel: str) -> bool:
        """The server's ``unsubscribed`` for ``channel``. ``True`` when the client did not
        leave it: a token refresh took away the permission to read it. Its subscriptions
        end with :class:`~heartwire.errors.SubscriptionRefused`, and it is not asked for
        again."""
        leaving = self._leaving.get(channel, 0)
        if leaving:
            if leaving == 1:
                del self._leaving[channel]
            else:
                self._leaving[channel] = leaving - 1
            return False
        subscriptions = self._subscriptions.pop(channel, [])
        if not subscriptions:
            return False
        ended = SubscriptionRefused(channel, "the server ended the subscription")
        for subscription in subscriptions:
            subscription.finish(ended)
        self.positions.forget(channel)
        return True

    def handle_message(self, message: Message) -> tuple[list[Subscription], Gap | None]:
        """Who gets ``message``, after which gap; nobody when it is a duplicate."""
        subscriptions = self._subscriptions.get(message.channel)
        if not subscriptions:
            return [], None
        decision = self.positions.handle_message(message.channel, message.seq)
        if decision.delivery is Delivery.DUPLICATE:
            return [], None
        return list(subscriptions), decision.gap

    def finish(self, error: ClientClosed | None) -> None:
        """The client stopped: every subscription ends, every waiter learns why."""
        for future in (f for futures in self._confirmations.values() for f in futures):
            if not future.done():
                future.set_exception(error or ClientClosed("closed by the application"))
        self._confirmations.clear()
        subscriptions, self._subscriptions = self._subscriptions, {}
        for subscription in (s for group in subscriptions.values() for s in group):
            subscription.finish(error)

    def _remove(self, stream: Stream[Message]) -> None:
        assert isinstance(stream, Subscription)
        group = self._subscriptions.get(stream.channel, [])
        if stream in group:
            group.remove(stream)
        if not group and stream.channel in self._subscriptions:
            del self._subscriptions[stream.channel]
            self.positions.forget(stream.channel)
            self._leaving[stream.channel] = self._leaving.get(stream.channel, 0) + 1
            self._on_leave(stream.channel)
