"""The report of the previous session: what it says, on explicit time, and that the real
server counts it after a restart (SIGTERM: close 1012) and after a kill (no close frame)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from heartwire import Client, State
from heartwire.report import PreviousSession
from peers import HeartwireServer
from timing import CAP, SLACK, bounded, is_open_on, next_state, quick_config, within


def test_a_close_of_the_server_is_reported_with_its_code_and_the_time_offline() -> None:
    lost = PreviousSession.lost("s-1", now=100.0, code=1012, own_timeout=False, last_heard_at=98.0)
    assert json.loads(lost.encode(now=101.25)) == {
        "op": "report", "previous_session": "s-1", "offline_ms": 1250,
        "reason": "closed", "code": 1012, "last_heard_ms": 0,
    }


def test_own_timeouts_and_lost_networks_say_when_the_server_was_last_heard() -> None:
    timed_out = PreviousSession.lost("s-1", now=100.0, code=1011, own_timeout=True, last_heard_at=98.5)
    assert json.loads(timed_out.encode(now=100.5)) == {
        "op": "report", "previous_session": "s-1", "offline_ms": 500,
        "reason": "ping_timeout", "last_heard_ms": 1500,
    }
    cut = PreviousSession.lost("s-2", now=10.0, code=1006, own_timeout=False, last_heard_at=9.9)
    assert json.loads(cut.encode(now=10.0))["reason"] == "network"
    assert "code" not in json.loads(cut.encode(now=10.0))


async def _reported(server: HeartwireServer, series: str, what: str) -> float:
    async def poll() -> float:
        while True:
            value = await asyncio.to_thread(server.metric, series)
            if value:
                return value
            await asyncio.sleep(0.02)

    return await within(5, what, poll())


@bounded(40)
async def test_the_restarted_server_counts_the_report(start_server: Callable[..., HeartwireServer]) -> None:
    server = start_server()
    async with Client(server.url, config=quick_config()) as hw:
        states = hw.states()
        await within(5, "subscribed", hw.subscribe("room"))
        before = hw.session
        await asyncio.to_thread(server.stop)
        lost = await next_state(states, 5, lambda c: c.state is State.RECONNECTING, "reconnecting after the stop")
        assert lost.close_code == 1012
        await asyncio.to_thread(server.start)
        await next_state(states, CAP + SLACK + 5, is_open_on(server.url), "open again after the restart")
        assert hw.session != before
        await _reported(server, 'heartwire_client_reports_total{result="accepted"}', "the report")
        assert server.metric('heartwire_client_offline_seconds_count{reason="server_restart"}') == 1
        assert server.metric('heartwire_client_reports_total{result="invalid"}') == 0

        # Killed: the client learns of it without a close frame.
        await asyncio.to_thread(server.kill)
        await next_state(states, 5, lambda c: c.state is State.RECONNECTING, "reconnecting after the kill")
        await asyncio.to_thread(server.start)
        await next_state(states, CAP + SLACK + 5, is_open_on(server.url), "open again after the kill")
        await _reported(server, 'heartwire_client_offline_seconds_count{reason="network"}', "the report of the kill")
        assert server.metric("heartwire_false_reaps_total") == 0
