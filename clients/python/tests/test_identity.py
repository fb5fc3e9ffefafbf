"""The client's side of identity against a real server verifying tokens minted by PyJWT:
a short-lived token is refreshed through the provider before it expires, a close 4498
fetches a fresh token and reconnects at once, a forbidden channel is an error and no
reconnect, and presence frames name users."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest

from heartwire import (
    Client,
    Join,
    PresenceRefused,
    Refreshed,
    ServerError,
    State,
    StateChange,
    SubscriptionRefused,
)
from peers import HeartwireServer
from timing import bounded, next_event, next_state, quick_config, within

SECRET = "a shared secret of at least thirty-two bytes"
GRACE = 0.5


def mint(user: str, lifetime: int, groups: list[str] | None = None) -> tuple[str, int]:
    """A token for ``user`` expiring ``lifetime`` seconds from now, and its ``exp``."""
    exp = int(time.time()) + lifetime
    claims: dict[str, object] = {"sub": user, "exp": exp}
    if groups is not None:
        claims["groups"] = groups
    return jwt.encode(claims, SECRET, algorithm="HS256"), exp


def start(start_server: Callable[..., HeartwireServer], *more: str) -> HeartwireServer:
    return start_server(
        "--jwt-secret", SECRET, "--token-grace", f"{int(GRACE * 1000)}ms", "--presence", "room:*", *more
    )


async def events_until(stream: object, until: float) -> list[object]:
    """Every event of ``stream`` until wall-clock ``until``."""
    seen: list[object] = []
    while (left := until - time.time()) > 0:
        try:
            seen.append(await asyncio.wait_for(stream.__anext__(), left))  # type: ignore[attr-defined]
        except asyncio.TimeoutError:
            break
    return seen


@bounded(30)
async def test_a_short_lived_token_is_refreshed_and_the_connection_outlives_it(
    start_server: Callable[..., HeartwireServer],
) -> None:
    server = start(start_server)
    first, first_exp = mint("ada", 4)
    calls: list[int] = []

    def provider() -> str:
        calls.append(1)
        return first if len(calls) == 1 else mint("ada", 600)[0]

    async with Client(server.url, token=provider, config=quick_config()) as client:
        events = client.events()
        await within(5, "open", next_state(client.states(), 5, lambda c: c.state is State.OPEN, "open"))
        session = client.session
        seen = await events_until(events, first_exp + GRACE + 1)
        refreshed = [e for e in seen if isinstance(e, Refreshed)]
        assert len(refreshed) == 1, seen
        assert refreshed[0].expires_in is not None and refreshed[0].expires_in > 500
        # Never reconnected: a probe slow on a busy machine may say degraded, no more.
        changes = [e.state for e in seen if isinstance(e, StateChange)]
        assert set(changes) <= {State.OPEN, State.DEGRADED}, seen
        assert client.state is State.OPEN and client.session == session
        assert len(calls) == 2, "one token to connect, one to refresh"


@bounded(30)
async def test_close_4498_fetches_a_fresh_token_and_reconnects_at_once(
    start_server: Callable[..., HeartwireServer],
) -> None:
    server = start(start_server)
    stale, stale_exp = mint("ada", 3)
    fresh, _ = mint("ada", 600)
    handed: list[str] = []

    def provider() -> str:
        # The same token until it expired: refreshing it moves nothing.
        expired = time.time() >= stale_exp
        handed.append("fresh" if expired else "stale")
        return fresh if expired else stale

    async with Client(server.url, token=provider, config=quick_config()) as client:
        states = client.states()
        await next_state(states, 5, lambda c: c.state is State.OPEN, "open")
        lost = await next_state(states, 10, lambda c: c.state is State.RECONNECTING, "reconnecting")
        assert lost.close_code == 4498, lost
        assert lost.delay == 0, "at once"
        await next_state(states, 5, lambda c: c.state is State.OPEN, "open again")
        assert handed[-1] == "fresh" and handed.count("fresh") == 1, handed


@bounded(30)
async def test_a_forbidden_channel_is_an_error_and_presence_names_users(
    start_server: Callable[..., HeartwireServer],
) -> None:
    server = start(start_server)
    ada_token, _ = mint("ada", 600)
    bob_token, _ = mint("bob", 600)
    async with Client(server.url, token=lambda: ada_token, config=quick_config()) as ada:
        events = ada.events()
        with pytest.raises(SubscriptionRefused):
            await within(5, "a refused subscribe", ada.subscribe("user:bob:inbox"))
        error = await next_event(events, 5, ServerError, "the refusal")
        assert (error.code, error.channel) == ("forbidden", "user:bob:inbox")
        assert "user:bob:inbox" not in ada.subscriptions
        session = ada.session
        await within(5, "room:1", ada.subscribe("room:1"))
        async with Client(server.url, token=lambda: bob_token, config=quick_config()) as bob:
            await within(5, "bob subscribed", bob.subscribe("room:1"))
            joined = await next_event(events, 5, Join, "bob's join")
            assert joined == Join("room:1", bob.session or "", "bob")
        # Through all of it the first connection stayed.
        assert ada.session == session and ada.state is State.OPEN


@bounded(30)
async def test_a_refresh_that_takes_a_channel_away_ends_its_subscription(
    start_server: Callable[..., HeartwireServer], tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[channels]]\npattern = "staff:*"\nsubscribe = "group:staff"\n\n'
        '[[channels]]\npattern = "*"\nsubscribe = "anyone"\n'
    )
    server = start(start_server, "--config", str(rules))
    staff, _ = mint("ada", 4, ["staff"])
    calls: list[int] = []

    def provider() -> str:
        calls.append(1)
        return staff if len(calls) == 1 else mint("ada", 600, [])[0]

    async with Client(server.url, token=provider, config=quick_config()) as ada:
        events = ada.events()
        payroll = await within(5, "staff:payroll", ada.subscribe("staff:payroll"))
        # The refresh, at half of the first token's life, leaves the group.
        error = await next_event(events, 10, ServerError, "the refusal after the refresh")
        assert (error.code, error.channel) == ("forbidden", "staff:payroll")
        with pytest.raises(SubscriptionRefused):
            await within(5, "the end of the subscription", payroll.__anext__())
        assert ada.subscriptions == []
        assert len(calls) == 2, "no reconnect"


@bounded(30)
async def test_a_refused_presence_request_raises_and_the_connection_stays(
    start_server: Callable[..., HeartwireServer], tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[[channels]]\npattern = "*"\nsubscribe = "anyone"\npresence = "group:staff"\n')
    server = start(start_server, "--config", str(rules))
    token, _ = mint("ada", 600, [])
    async with Client(server.url, token=lambda: token, config=quick_config()) as ada:
        await within(5, "room:1", ada.subscribe("room:1"))
        session = ada.session
        with pytest.raises(PresenceRefused):
            await within(5, "a refused presence request", ada.presence("room:1"))
        assert ada.subscriptions == ["room:1"], "a subscription is not a presence request"
        assert ada.session == session and ada.state is State.OPEN
