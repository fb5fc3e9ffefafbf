"""What the application reads: bounded streams that wait (subscriptions) or stop when they
fall behind (events), and a client closed before it ever connected."""

from __future__ import annotations

import asyncio

import pytest

from heartwire import Client, ClientClosed, EventsLagged, State, StopReason
from heartwire.streams import Broadcaster, Stream
from timing import bounded


def forget(_: Stream[int]) -> None:
    pass


@bounded(5)
async def test_a_full_stream_makes_its_writer_wait_and_loses_nothing() -> None:
    stream: Stream[int] = Stream(2, forget)
    writer = asyncio.ensure_future(asyncio.gather(*(stream.put(n) for n in range(5))))
    await asyncio.sleep(0.01)
    assert stream.full and not writer.done()
    read = [await stream.__anext__() for _ in range(5)]
    await writer
    assert read == [0, 1, 2, 3, 4]


@bounded(5)
async def test_an_event_stream_that_falls_behind_ends_with_lagged_after_what_it_holds() -> None:
    events: Broadcaster[int] = Broadcaster()
    stream = events.listen(3)
    for n in range(5):
        events.send(n)
    read = []
    with pytest.raises(EventsLagged):
        async for n in stream:
            read.append(n)
    assert read == [0, 1, 2]
    # Nothing more reaches a stopped stream; a new one hears what comes next.
    fresh = events.listen(3)
    events.send(9)
    events.finish(None)
    assert [n async for n in fresh] == [9]


@bounded(5)
async def test_finishing_with_an_error_raises_it_after_what_is_held() -> None:
    events: Broadcaster[int] = Broadcaster()
    stream = events.listen(10)
    events.send(1)
    events.finish(ClientClosed("close 4401"))
    assert await stream.__anext__() == 1
    with pytest.raises(ClientClosed):
        await stream.__anext__()
    with pytest.raises(ClientClosed):
        await events.listen(1).__anext__()


@bounded(5)
async def test_a_client_closed_before_it_started_is_closed() -> None:
    hw = Client("ws://127.0.0.1:9/ws")
    states = hw.states()
    await hw.close()
    assert hw.state is State.CLOSED
    change = await states.__anext__()
    assert (change.state, change.stop) == (State.CLOSED, StopReason.BY_CALLER)
    with pytest.raises(ClientClosed):
        hw.publish_nowait("room", 1)
    with pytest.raises(ClientClosed):
        await hw.subscribe("room")
