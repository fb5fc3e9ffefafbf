"""Presence against a real server: join and leave events, member lists, and a channel the
server does not track."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from heartwire import Client, Join, Leave, PresenceOff
from peers import HeartwireServer
from timing import bounded, next_event, quick_config, within


@bounded(30)
async def test_joins_leaves_and_members(start_server: Callable[..., HeartwireServer]) -> None:
    server = start_server("--presence", "room:*")
    async with Client(server.url, config=quick_config()) as ada:
        events = ada.events()
        await within(5, "ada subscribed", ada.subscribe("room:1"))
        async with Client(server.url, config=quick_config()) as bob:
            await within(5, "bob subscribed", bob.subscribe("room:1"))
            joined = await next_event(events, 5, Join, "bob's join")
            assert joined == Join("room:1", bob.session or "")
            members = await within(5, "the member list", ada.presence("room:1"))
            assert members == sorted([ada.session or "", bob.session or ""])
            bob_session = bob.session
        left = await next_event(events, 5, Leave, "bob's leave")
        assert left == Leave("room:1", bob_session or "")
        assert await within(5, "the member list after", ada.presence("room:1")) == [ada.session]

        with pytest.raises(PresenceOff):
            await within(5, "presence of an untracked channel", ada.presence("lobby"))
