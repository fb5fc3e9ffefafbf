"""The client behind a TCP proxy that the test controls: a path that goes silent
(blackholed while the server keeps running), a path that is cut and refused for a while,
and the tokens each attempt carries."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from heartwire import Client, Gap, GapReason, State, TokenPlacement
from peers import PING_INTERVAL, PING_TIMEOUT, HeartwireServer, Proxy
from timing import CAP, SLACK, bounded, next_event, next_state, nothing_more, quick_config, take, within


@asynccontextmanager
async def proxy_to(server: HeartwireServer) -> AsyncIterator[Proxy]:
    proxy = Proxy(server.port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


def is_reconnecting(change: object) -> bool:
    return getattr(change, "state", None) is State.RECONNECTING


@bounded(30)
async def test_a_publish_whose_ack_was_lost_on_a_dead_path_is_published_once(
    start_server: Callable[..., HeartwireServer],
) -> None:
    server = start_server()
    async with proxy_to(server) as proxy, Client(proxy.url, config=quick_config()) as hw, Client(server.url, config=quick_config()) as observer:
        states = hw.states()
        mine = await within(5, "subscribed", hw.subscribe("room"))
        seen = await within(5, "observer subscribed", observer.subscribe("room"))
        await hw.publish("room", "before")
        await take(mine, 1, 5, "own message before the blackhole")

        clock = asyncio.get_running_loop()
        proxy.blackhole()
        silent_at = clock.time()
        # The server takes it, publishes it and acks it; the ack never reaches the client.
        ack = hw.publish_nowait("room", "across")
        await next_state(states, PING_INTERVAL + PING_TIMEOUT + SLACK, is_reconnecting, "blackholed path noticed")
        assert clock.time() - silent_at <= PING_INTERVAL + PING_TIMEOUT + SLACK
        # On the next connection the publish goes out again with its id: the server
        # answers it as a duplicate with the seq it got the first time.
        seq = await within(5, "the ack on the next connection", ack)
        assert [(m.seq, m.data) for m in await take(seen, 2, 5, "the observer's view")] == [(1, "before"), (seq, "across")]
        assert [(m.seq, m.data) for m in await take(mine, 1, 5, "own message, replayed")] == [(seq, "across")]
        await nothing_more(seen, 0.3, "published once")
        await nothing_more(mine, 0.1, "delivered once")


@bounded(30)
async def test_missed_more_than_the_history_holds_is_a_gap_event(
    start_server: Callable[..., HeartwireServer],
) -> None:
    server = start_server("--history-size", "5")
    async with proxy_to(server) as proxy, Client(proxy.url, config=quick_config()) as hw, Client(server.url, config=quick_config()) as publisher:
        states, events = hw.states(), hw.events()
        sub = await within(5, "subscribed", hw.subscribe("feed"))
        for n in (1, 2):
            await publisher.publish("feed", n)
        assert [m.seq for m in await take(sub, 2, 5, "before the cut")] == [1, 2]

        proxy.refusing = True
        proxy.cut()
        await next_state(states, 2, is_reconnecting, "the cut noticed")
        for n in range(3, 13):
            await publisher.publish("feed", n)
        proxy.refusing = False

        gap = await next_event(events, CAP + SLACK + 5, Gap, "the gap")
        assert (gap.channel, gap.from_seq, gap.to_seq, gap.reason) == ("feed", 3, 12, GapReason.HISTORY_TOO_SHORT)
        await publisher.publish("feed", 13)
        assert [(m.seq, m.data) for m in await take(sub, 1, 5, "live after the gap")] == [(13, 13)]
        await nothing_more(sub, 0.2, "nothing replayed after a gap")


@bounded(30)
async def test_the_token_provider_is_asked_before_every_attempt(
    start_server: Callable[..., HeartwireServer],
) -> None:
    server = start_server()
    calls: list[str] = []

    async def token() -> str:
        calls.append(f"t{len(calls) + 1}")
        if len(calls) == 2:
            raise RuntimeError("the identity provider is down")
        return calls[-1]

    async with proxy_to(server) as proxy, Client(proxy.url, token=token, config=quick_config()) as hw:
        states = hw.states()
        await within(5, "subscribed", hw.subscribe("room"))
        proxy.cut()
        failed = await next_state(states, 5, lambda c: c.state is State.RECONNECTING and "token provider failed" in c.reason, "the failed provider")
        assert "identity provider is down" in failed.reason
        await next_state(states, 5, lambda c: c.state is State.OPEN, "open with the third token")
    assert calls == ["t1", "t2", "t3"]
    sent = [re.search(rb"GET (\S+) HTTP", request) for request in proxy.requests]
    assert [match.group(1) if match else None for match in sent] == [b"/ws?token=t1", b"/ws?token=t3"]


@bounded(30)
async def test_the_token_may_go_in_a_header(start_server: Callable[..., HeartwireServer]) -> None:
    server = start_server()
    config = quick_config(token_placement=TokenPlacement.HEADER)
    async with proxy_to(server) as proxy, Client(proxy.url, token=lambda: "secret", config=config) as hw:
        await within(5, "subscribed", hw.subscribe("room"))
    (request,) = proxy.requests
    assert b"GET /ws HTTP/1.1" in request
    assert b"\r\nAuthorization: Bearer secret\r\n" in request

