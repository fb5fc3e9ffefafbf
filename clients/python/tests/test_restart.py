"""A server killed and restarted on the same port: the client notices at once, comes back
within one backoff window of the server's return, resubscribes with `since`, and sends its
outbox once. With the in-memory broker the restarted server has forgotten the channel,
which the client reports as a gap; with Redis it replays what was missed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from heartwire import Client, Gap, GapReason, State
from peers import HeartwireServer, RedisServer
from timing import CAP, SLACK, bounded, is_open_on, next_event, next_state, nothing_more, quick_config, quiet, take, within


@bounded(40)
async def test_kill_and_restart_resumes_and_sends_the_outbox_once(
    start_server: Callable[..., HeartwireServer],
) -> None:
    server = start_server()
    clock = asyncio.get_running_loop()
    async with Client(server.url, config=quick_config()) as hw:
        states, events = hw.states(), hw.events()
        sub = await within(5, "subscribed", hw.subscribe("room"))
        assert [await hw.publish("room", n) for n in range(1, 6)] == [1, 2, 3, 4, 5]
        assert [m.data for m in await take(sub, 5, 5, "the first five")] == [1, 2, 3, 4, 5]

        await asyncio.to_thread(server.kill)
        lost = await next_state(states, 2, lambda c: c.state is State.RECONNECTING, "reconnecting after the kill")
        assert lost.close_code == 1006
        queued = [hw.publish_nowait("room", n) for n in range(6, 11)]
        assert hw.outbox_size == 5

        await asyncio.to_thread(server.start)
        back_at = clock.time()
        # The attempt after the server's return starts within one capped window.
        await next_state(states, CAP + SLACK, is_open_on(server.url), "open again after the restart")
        seqs = await within(5, "acks of the queued publishes", asyncio.gather(*queued))
        # The restarted server numbers the forgotten channel anew and says so.
        gap = await next_event(events, 5, Gap, "the gap of the new epoch")
        assert (gap.channel, gap.from_seq, gap.to_seq, gap.reason) == ("room", 1, 0, GapReason.EPOCH_CHANGED)
        assert seqs == [1, 2, 3, 4, 5]
        assert [m.data for m in await take(sub, 5, 5, "the queued five")] == [6, 7, 8, 9, 10]
        await nothing_more(sub, 0.5, "no message twice")
        assert hw.outbox_size == 0
        assert clock.time() - back_at < 5


@bounded(40)
async def test_restart_with_redis_replays_what_was_missed(
    start_server: Callable[..., HeartwireServer], redis: RedisServer
) -> None:
    subscriber_node = start_server("--redis", redis.url, name="subscriber-node")
    other_node = start_server("--redis", redis.url, name="other-node")
    async with Client(subscriber_node.url, config=quick_config()) as hw, Client(other_node.url, config=quick_config()) as publisher:
        states, events = hw.states(), hw.events()
        sub = await within(5, "subscribed", hw.subscribe("news"))
        for n in range(1, 4):
            await publisher.publish("news", n)
        assert [m.seq for m in await take(sub, 3, 5, "before the kill")] == [1, 2, 3]

        await asyncio.to_thread(subscriber_node.kill)
        await next_state(states, 2, lambda c: c.state is State.RECONNECTING, "reconnecting after the kill")
        for n in range(4, 14):
            await publisher.publish("news", n)

        await asyncio.to_thread(subscriber_node.start)
        await next_state(states, CAP + SLACK, is_open_on(subscriber_node.url), "open again after the restart")
        replayed = await take(sub, 10, 5, "the replay")
        assert [(m.seq, m.data) for m in replayed] == [(n, n) for n in range(4, 14)]
        await publisher.publish("news", 14)
        assert [m.seq for m in await take(sub, 1, 5, "live again")] == [14]
        await nothing_more(sub, 0.3, "no message twice")
        assert not [event for event in await quiet(events, 0.1) if isinstance(event, Gap)]
