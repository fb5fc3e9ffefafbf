"""Bounded queues between the client and its application, read as async iterators.

:class:`Stream` is what ``Client.events()``, ``Client.states()`` and a
:class:`~heartwire.Subscription` hand out. Each holds at most ``capacity`` items. The
client fills it in one of two ways:

- :meth:`Stream.put` (subscriptions) waits while the stream is full: the client stops
  reading the socket, and a server whose queue for this client overflows closes it as a
  slow consumer; the client then resumes from its last position, so nothing is lost.
- :meth:`Stream.offer` (events) never waits: a stream that is full is stopped with
  :class:`~heartwire.errors.EventsLagged` once its application has read what it holds,
  rather than skip events silently.

Iteration ends when the stream is closed by its application or when the client closed; it
raises :class:`~heartwire.errors.ClientClosed` when the client stopped for any other
reason, after what the stream already holds.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from .errors import EventsLagged

T = TypeVar("T")


class Stream(Generic[T]):
    """A bounded queue read with ``async for``. See the module docs."""

    def __init__(self, capacity: int, on_close: Callable[[Stream[T]], None]) -> None:
        self.capacity = capacity
        self._items: deque[T] = deque()
        self._on_close = on_close
        self._finished = False
        self._error: BaseException | None = None
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(held={len(self._items)}, capacity={self.capacity}, finished={self._finished})"

    def __aiter__(self) -> Stream[T]:
        return self

    async def __anext__(self) -> T:
        while not self._items:
            if self._finished:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._readable.clear()
            await self._readable.wait()
        item = self._items.popleft()
        self._writable.set()
        return item

    @property
    def full(self) -> bool:
        """Whether the stream holds ``capacity`` items."""
        return len(self._items) >= self.capacity

    def close(self) -> None:
        """Stops the stream: iteration ends once what it holds has been read."""
        if not self._finished:
            self._on_close(self)
            self.finish(None)

    async def put(self, item: T) -> None:
        """Adds ``item``, waiting while the stream is full; drops it if the stream is
        finished meanwhile."""
        while self.full and not self._finished:
            self._writable.clear()
            await self._writable.wait()
        if not self._finished:
            self._items.append(item)
            self._readable.set()

    def offer(self, item: T) -> None:
        """Adds ``item`` without waiting; a full stream is stopped with
        :class:`EventsLagged` instead."""
        if self._finished:
            return
        if self.full:
            self._on_close(self)
            self.finish(EventsLagged(self.capacity))
            return
        self._items.append(item)
        self._readable.set()

    def finish(self, error: BaseException | None) -> None:
        """No more items will come; iteration raises ``error`` (when given) after the
        items held."""
        if self._finished:
            return
        self._finished = True
        self._error = error
        self._readable.set()
        self._writable.set()


class Broadcaster(Generic[T]):
    """Hands every item to each stream that wants it."""

    def __init__(self) -> None:
        self._listeners: list[tuple[Stream[T], Callable[[T], bool]]] = []
        self._finished: tuple[BaseException | None] | None = None

    def __repr__(self) -> str:
        return f"Broadcaster(listeners={len(self._listeners)})"

    def listen(self, capacity: int, wants: Callable[[T], bool] = lambda _: True) -> Stream[T]:
        """A new stream of the items ``wants`` accepts, from now on."""
        stream: Stream[T] = Stream(capacity, self._forget)
        if self._finished is not None:
            stream.finish(self._finished[0])
        else:
            self._listeners.append((stream, wants))
        return stream

    def send(self, item: T) -> None:
        """Offers ``item`` to every stream that wants it."""
        for stream, wants in list(self._listeners):
            if wants(item):
                stream.offer(item)

    def finish(self, error: BaseException | None) -> None:
        """Ends every stream, now and later ones."""
        self._finished = (error,)
        listeners, self._listeners = self._listeners, []
        for stream, _ in listeners:
            stream.finish(error)

    def _forget(self, stream: Stream[T]) -> None:
        self._listeners = [(s, w) for s, w in self._listeners if s is not stream]
