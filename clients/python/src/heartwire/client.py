"""The public handle of a heartwire client.

:class:`Client` keeps one logical connection to a list of endpoints (a primary, then
backups in order of preference) for as long as the application wants it. It connects in
the background; its state, and everything else the application should know of, arrive
on :meth:`Client.states` and :meth:`Client.events`.

    async with Client(["ws://a:8080/ws", "ws://b:8080/ws"], token=get_token) as hw:
        sub = await hw.subscribe("room:lobby")
        await hw.publish("room:lobby", {"text": "hi"})
        async for message in sub:
            print(message.seq, message.data)
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from . import driver
from .auth import Credentials, TokenProvider
from .channels import Subscription
from .config import ClientConfig, parse_endpoints
from .events import Event, State, StateChange, StopReason
from .hub import Hub
from .machine import Stop
from .protocol import encode_subscribe, validate_channel
from .streams import Stream


class Client:
    """A connection to heartwire servers that stays up. See the module docs and
    docs/PYTHON.md.

    ``urls`` is one ``ws://``/``wss://`` URL of a ``/ws`` endpoint, or several: the first
    is the primary. ``token`` is called before every attempt (see :mod:`heartwire.auth`).
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        token: TokenProvider | None = None,
        config: ClientConfig | None = None,
    ) -> None:
        self.config = config if config is not None else ClientConfig()
        endpoints = parse_endpoints(urls if isinstance(urls, str) else list(urls))
        self._hub = Hub(endpoints, Credentials(token, self.config.token_placement), self.config)
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"Client(state={self.state.value}, url={self.url!r})"

    async def __aenter__(self) -> Client:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def start(self) -> None:
        """Starts connecting in the background (``async with`` does it, and so does the
        first subscribe, publish or presence request). Needs a running event loop."""
        if self._task is None and not self._hub.stopping.is_set():
            self._task = asyncio.get_running_loop().create_task(driver.run(self._hub))

    async def close(self) -> None:
        """Closes the client for good: the connection closes with 1000, and publishes not
        yet acknowledged fail with :class:`~heartwire.errors.ClientClosed`."""
        self._hub.stopping.set()
        if self._task is None:
            if self._hub.stopped is None:
                self._hub.shutdown(Stop(StopReason.BY_CALLER, "closed by the application"))
            return
        await asyncio.shield(self._task)

    # ---- what the application sees ---------------------------------------------------------

    @property
    def state(self) -> State:
        """``connecting``, ``open``, ``degraded``, ``reconnecting`` or ``closed``."""
        return self._hub.lifecycle.state

    @property
    def url(self) -> str:
        """The endpoint in use, or being tried."""
        return self._hub.lifecycle.url

    @property
    def session(self) -> str | None:
        """The session id of the open connection's ``hello``."""
        return self._hub.session

    @property
    def rtt(self) -> float | None:
        """The round trip of the latest probe, in seconds."""
        return self._hub.rtt

    @property
    def outbox_size(self) -> int:
        """Publishes waiting to be sent or acknowledged."""
        return len(self._hub.outbox)

    @property
    def subscriptions(self) -> list[str]:
        """The channels subscribed on every connection."""
        return self._hub.channels.names()

    def states(self) -> Stream[StateChange]:
        """Every state change from now on, as an async iterator."""
        return self._hub.states.listen(self.config.queue_size)

    def events(self) -> Stream[Event]:
        """Every event from now on: state changes, gaps, presence joins and leaves, and
        the server's refusals, as an async iterator."""
        return self._hub.events.listen(self.config.queue_size)

    # ---- channels ---------------------------------------------------------------------------

    async def subscribe(self, channel: str) -> Subscription:
        """Subscribes to ``channel`` now and on every later connection; returns once the
        server confirmed it (after the next connection when there is none)."""
        validate_channel(channel)
        hub = self._hub
        hub.check_open()
        self.start()
        subscription, first = hub.channels.add(channel)
        if not first:
            return subscription
        confirmed = hub.channels.confirmation(channel)
        hub.send(encode_subscribe(channel, hub.channels.since(channel)))
        try:
            await confirmed
        except BaseException:
            subscription.close()
            raise
        return subscription

    def publish_nowait(self, channel: str, data: Any) -> asyncio.Future[int]:
        """Queues ``data`` (any JSON value) for ``channel``; the future resolves with the
        message's ``seq`` once the server acknowledged it. Raises
        :class:`~heartwire.errors.OutboxFull` or :class:`~heartwire.errors.ClientClosed`
        at once; the future fails with :class:`~heartwire.errors.PublishRefused` when the
        server refuses it for good."""
        validate_channel(channel)
        self._hub.check_open()
        self.start()
        return self._hub.publish(channel, data)

    async def publish(self, channel: str, data: Any) -> int:
        """Publishes and waits for the server's ack; returns the message's ``seq``."""
        return await self.publish_nowait(channel, data)

    async def presence(self, channel: str) -> list[str]:
        """The sessions subscribed to ``channel``, on every node; raises
        :class:`~heartwire.errors.PresenceOff` when the server tracks none for it."""
        validate_channel(channel)
        self._hub.check_open()
        self.start()
        return await self._hub.presence(channel)
