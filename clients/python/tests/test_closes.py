"""How the client treats each kind of end, against Python `websockets` servers that end
connections on purpose: closes that mean "do not come back", restart hints, and HTTP
refusals of the upgrade."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from heartwire import Client, ClientClosed, State, StopReason
from timing import CAP, SLACK, bounded, next_state, quick_config, within

HELLO = json.dumps({"op": "hello", "session": "s", "ping_interval_ms": 200, "ping_timeout_ms": 200, "server": "test"})


class Peer:
    """A websockets server on a free port that counts connections."""

    def __init__(self) -> None:
        self.connections = 0
        self.connected_at: list[float] = []
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"


@asynccontextmanager
async def peer(
    handler: Callable[[ServerConnection, int], Awaitable[None]],
    refuse: Callable[[int], Response | None] = lambda _: None,
) -> AsyncIterator[Peer]:
    state = Peer()
    clock = asyncio.get_running_loop()

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        state.connections += 1
        state.connected_at.append(clock.time())
        return refuse(state.connections)

    async def handle(connection: ServerConnection) -> None:
        await handler(connection, state.connections)

    async with serve(handle, "127.0.0.1", 0, process_request=process_request, ping_interval=None) as server:
        state.port = list(server.sockets)[0].getsockname()[1]
        yield state


def closing_with(code: int, reason: str, hello: bool = True) -> Callable[[ServerConnection, int], Awaitable[None]]:
    async def handler(connection: ServerConnection, _: int) -> None:
        if hello:
            await connection.send(HELLO)
        await connection.close(code, reason)

    return handler


def closed_state(change: object) -> bool:
    return getattr(change, "state", None) is State.CLOSED


@bounded(20)
async def test_do_not_come_back_closes_end_the_client() -> None:
    for code, reason, hello in [(4401, "authentication failed", True), (4403, "forbidden", False),
                                (1008, "forbidden origin", True), (1002, "", True)]:
        async with peer(closing_with(code, reason, hello)) as server:
            hw = Client([server.url, server.url], config=quick_config())
            states = hw.states()
            async with hw:
                closed = await next_state(states, 5, closed_state, f"closed after {code}")
                assert closed.stop is StopReason.DO_NOT_COME_BACK, code
                # Several backoff windows later there was still no other attempt.
                await asyncio.sleep(3 * CAP)
                assert server.connections == 1, code
            try:
                await hw.publish("room", 1)
            except ClientClosed as error:
                assert str(code) in error.reason
            else:
                raise AssertionError("a closed client took a publish")


@bounded(20)
async def test_slow_consumer_and_ordinary_closes_are_retried() -> None:
    for code, reason in [(1008, "slow consumer"), (1011, "ping timeout"), (1000, ""), (4000, "x")]:
        async with peer(closing_with(code, reason)) as server:
            async with Client(server.url, config=quick_config()) as hw:
                states = hw.states()
                for _ in range(2):
                    change = await next_state(states, 5, lambda c: c.state is State.RECONNECTING and c.delay is not None, f"retry after {code}")
                    assert change.close_code == code and change.delay is not None and change.delay <= CAP
            assert server.connections >= 2


@bounded(20)
async def test_a_restart_close_waits_for_the_servers_hint() -> None:
    async def handler(connection: ServerConnection, count: int) -> None:
        await connection.send(HELLO)
        if count == 1:
            await connection.send(json.dumps({"op": "reconnect", "after_ms": 600, "reason": "server restarting"}))
            await connection.close(1012, "server restarting; retry after 600 ms")
        else:
            await connection.wait_closed()

    async with peer(handler) as server:
        async with Client(server.url, config=quick_config()) as hw:
            states = hw.states()
            waiting = await next_state(states, 5, lambda c: c.state is State.RECONNECTING and c.delay is not None, "the hinted wait")
            assert waiting.delay == 0.6 and waiting.close_code == 1012
            await next_state(states, 0.6 + SLACK, lambda c: c.state is State.OPEN, "open after the hint")
        gap = server.connected_at[1] - server.connected_at[0]
        assert 0.6 <= gap <= 0.6 + SLACK, gap


@bounded(20)
async def test_http_refusals() -> None:
    def not_found(_: int) -> Response:
        return Response(HTTPStatus.NOT_FOUND, "Not Found", Headers(), b"no such path\n")

    async def keep(connection: ServerConnection, _: int) -> None:
        await connection.send(HELLO)
        await connection.wait_closed()

    # A 404 endpoint is never tried again; alone, it ends the client.
    async with peer(keep, not_found) as server:
        async with Client(server.url, config=quick_config()) as hw:
            closed = await next_state(hw.states(), 5, closed_state, "closed after the 404")
            assert closed.stop is StopReason.NO_USABLE_ENDPOINT and "HTTP 404" in closed.reason
        assert server.connections == 1

    # Before a good backup, it is skipped for good: no fail-back probe ever goes there.
    async with peer(keep, not_found) as refusing, peer(keep) as good:
        async with Client([refusing.url, good.url], config=quick_config(fail_back_after=0.2)) as hw:
            await within(5, "open on the good endpoint", next_state(hw.states(), 5, lambda c: c.state is State.OPEN, "open"))
            assert hw.url == good.url
            await asyncio.sleep(0.6)
        assert refusing.connections == 1

    # 503 with Retry-After: the next attempt waits that long.
    def busy_once(count: int) -> Response | None:
        return Response(HTTPStatus.SERVICE_UNAVAILABLE, "Busy", Headers({"Retry-After": "1"}), b"") if count == 1 else None

    async with peer(keep, busy_once) as server:
        async with Client(server.url, config=quick_config()) as hw:
            states = hw.states()
            waiting = await next_state(states, 5, lambda c: c.state is State.RECONNECTING and c.delay is not None, "the Retry-After wait")
            assert waiting.delay == 1.0 and "HTTP 503" in waiting.reason
            await next_state(states, 1 + SLACK, lambda c: c.state is State.OPEN, "open after Retry-After")
        assert 1.0 <= server.connected_at[1] - server.connected_at[0] <= 1 + SLACK
