"""Bounded waits for the socket tests: every test runs under a deadline, and every wait
for the client names what it waits for."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from heartwire import BackoffConfig, ClientConfig, Event, State, StateChange, Stream

P = ParamSpec("P")
T = TypeVar("T")

#: Scheduling slack on a shared 2-core machine: a timer of the client, the server or the
#: test may fire this late (the same allowance as the Rust client's tests).
SLACK = 0.4
#: The client's reconnect policy in the socket tests.
BASE = 0.05
CAP = 0.2


def quick_config(**overrides: Any) -> ClientConfig:
    """The tests' client settings: short backoff and timeouts, a seeded jitter."""
    settings: dict[str, Any] = {
        "backoff": BackoffConfig(base=BASE, cap=CAP),
        "connect_timeout": 1.0,
        "close_timeout": 0.5,
        "fail_back_after": 0.6,
        "jitter_seed": 7,
    }
    settings.update(overrides)
    return ClientConfig(**settings)


def bounded(seconds: float) -> Callable[[Callable[P, Coroutine[Any, Any, None]]], Callable[P, None]]:
    """Runs an async test in a fresh event loop, failing it after ``seconds``."""

    def decorate(test: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, None]:
        @functools.wraps(test)
        def run(*args: P.args, **kwargs: P.kwargs) -> None:
            asyncio.run(asyncio.wait_for(test(*args, **kwargs), seconds))

        return run

    return decorate


async def within(seconds: float, what: str, awaitable: Awaitable[T]) -> T:
    """``awaitable``'s result, or a failure naming ``what`` did not happen in time."""
    try:
        return await asyncio.wait_for(awaitable, seconds)
    except asyncio.TimeoutError:
        raise AssertionError(f"{what}: not within {seconds:.2f} s") from None


async def next_state(states: Stream[StateChange], seconds: float, wanted: Callable[[StateChange], bool], what: str) -> StateChange:
    """The next state change ``wanted`` accepts, skipping others, within ``seconds``."""

    async def find() -> StateChange:
        async for change in states:
            if wanted(change):
                return change
        raise AssertionError(f"{what}: the client closed first")

    return await within(seconds, what, find())


def is_open_on(url: str) -> Callable[[StateChange], bool]:
    return lambda change: change.state is State.OPEN and change.url == url


async def next_event(events: Stream[Event], seconds: float, kind: type[T], what: str) -> T:
    """The next event of type ``kind`` within ``seconds``."""

    async def find() -> T:
        async for event in events:
            if isinstance(event, kind):
                return event
        raise AssertionError(f"{what}: the client closed first")

    return await within(seconds, what, find())


async def take(stream: Stream[T], count: int, seconds: float, what: str) -> list[T]:
    """The next ``count`` items of ``stream`` within ``seconds``."""

    async def collect() -> list[T]:
        items: list[T] = []
        async for item in stream:
            items.append(item)
            if len(items) == count:
                return items
        raise AssertionError(f"{what}: the stream ended after {items!r}")

    return await within(seconds, what, collect())


async def nothing_more(stream: Stream[T], seconds: float, what: str) -> None:
    """Fails if ``stream`` yields anything within ``seconds``."""
    try:
        item = await asyncio.wait_for(stream.__anext__(), seconds)
    except (asyncio.TimeoutError, StopAsyncIteration):
        return
    raise AssertionError(f"{what}: unexpected {item!r}")


async def quiet(stream: Stream[T], seconds: float) -> list[T]:
    """What ``stream`` yields until it stays quiet for ``seconds``."""
    items: list[T] = []
    while True:
        try:
            items.append(await asyncio.wait_for(stream.__anext__(), seconds))
        except (asyncio.TimeoutError, StopAsyncIteration):
            return items
