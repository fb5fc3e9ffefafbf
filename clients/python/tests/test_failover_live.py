"""Dead-server detection and fail-over against real servers.

SIGSTOP freezes the primary (its kernel still ACKs, so the TCP connection looks fine): the
client must declare it dead within the bound its `hello` advertised, move to the backup
with its subscription, and come back to the primary once the primary answers again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from heartwire import Client, State
from peers import PING_INTERVAL, PING_TIMEOUT, HeartwireServer
from timing import CAP, SLACK, bounded, is_open_on, next_state, quick_config, take, within

FAIL_BACK_AFTER = 0.6
CONNECT_TIMEOUT = 1.0


@bounded(40)
async def test_frozen_primary_is_declared_dead_then_failed_over_and_back(
    start_server: Callable[..., HeartwireServer],
) -> None:
    primary, backup = start_server(name="primary"), start_server(name="backup")
    clock = asyncio.get_running_loop()
    config = quick_config(fail_back_after=FAIL_BACK_AFTER, connect_timeout=CONNECT_TIMEOUT)
    async with Client([primary.url, backup.url], config=config) as hw:
        states = hw.states()
        sub = await within(5, "subscribed on the primary", hw.subscribe("room"))
        assert hw.url == primary.url
        await hw.publish("room", "on primary")
        assert [m.data for m in await take(sub, 1, 5, "own message on the primary")] == ["on primary"]

        primary.freeze()
        frozen_at = clock.time()
        dead = await next_state(
            states, PING_INTERVAL + PING_TIMEOUT + SLACK, lambda c: c.state is State.RECONNECTING, "dead primary noticed"
        )
        noticed = clock.time() - frozen_at
        # Nothing arrives after the freeze, so the client's own deadlines decide.
        assert noticed <= PING_INTERVAL + PING_TIMEOUT + SLACK, noticed
        assert dead.close_code == 1011 and "ping timeout" in dead.reason
        await next_state(states, CAP + SLACK + CONNECT_TIMEOUT, is_open_on(backup.url), "open on the backup")
        await hw.publish("room", "on backup")
        assert [m.data for m in await take(sub, 1, 5, "own message on the backup")] == ["on backup"]

        primary.thaw()
        thawed_at = clock.time()
        # A probe of the primary starts at most FAIL_BACK_AFTER after its last failure; one
        # started while it was frozen completes once it runs again, or times out first.
        back = await next_state(
            states, FAIL_BACK_AFTER + CONNECT_TIMEOUT + SLACK, is_open_on(primary.url), "back on the primary"
        )
        assert back.previous is State.OPEN
        assert clock.time() - thawed_at <= FAIL_BACK_AFTER + CONNECT_TIMEOUT + SLACK
        await hw.publish("room", "on primary again")
        assert [m.data for m in await take(sub, 1, 5, "own message on the primary again")] == ["on primary again"]
