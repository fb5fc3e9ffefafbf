"""Two nodes sharing channels through Redis: a client subscribed on one node, with both
URLs, loses its node in the middle of a stream published on the other, resumes on the
other node from its position, and sees every message exactly once, in order. What it
publishes itself across the cut is published once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from heartwire import Client, Gap, Message
from peers import HeartwireServer, RedisServer
from timing import bounded, is_open_on, next_state, nothing_more, quick_config, quiet, take, within

STREAM = 200
MINE = 40
EVERY = 0.005


@bounded(60)
async def test_the_subscribers_node_dies_mid_stream_and_nothing_is_lost_or_repeated(
    start_server: Callable[..., HeartwireServer], redis: RedisServer
) -> None:
    node_a = start_server("--redis", redis.url, name="node-a")
    node_b = start_server("--redis", redis.url, name="node-b")
    async with (
        Client([node_a.url, node_b.url], config=quick_config()) as subscriber,
        Client(node_b.url, config=quick_config()) as publisher,
    ):
        states, events = subscriber.states(), subscriber.events()
        stream = await within(5, "subscribed on node A", subscriber.subscribe("stream"))
        echoes = await within(5, "publisher subscribed", publisher.subscribe("echo"))
        assert subscriber.url == node_a.url

        async def publish_stream() -> None:
            for n in range(1, STREAM + 1):
                await publisher.publish("stream", n)
                await asyncio.sleep(EVERY)

        async def publish_mine() -> list[int]:
            futures = []
            for n in range(1, MINE + 1):
                futures.append(subscriber.publish_nowait("echo", n))
                await asyncio.sleep(EVERY * 4)
            return list(await asyncio.gather(*futures))

        producing = asyncio.ensure_future(publish_stream())
        mine = asyncio.ensure_future(publish_mine())
        received: list[Message] = await take(stream, 50, 10, "the first part of the stream")
        await asyncio.to_thread(node_a.kill)
        await next_state(states, 5, is_open_on(node_b.url), "open on node B")
        await within(20, "the stream published", producing)
        received += await take(stream, STREAM - 50, 10, "the rest of the stream")
        await nothing_more(stream, 0.3, "no message twice")

        assert [m.data for m in received] == list(range(1, STREAM + 1))
        assert [m.seq for m in received] == list(range(1, STREAM + 1))
        assert not [event for event in await quiet(events, 0.1) if isinstance(event, Gap)]

        acked = await within(10, "acks of the subscriber's own publishes", mine)
        echoed = await take(echoes, MINE, 10, "the subscriber's publishes, as the publisher sees them")
        await nothing_more(echoes, 0.3, "no publish twice")
        assert [m.data for m in echoed] == list(range(1, MINE + 1))
        assert acked == [m.seq for m in echoed]
