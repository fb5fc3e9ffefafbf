"""The JSON envelopes: what the client parses, what it ignores, what it sends, and where
a token goes."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from heartwire import ClientConfig, InvalidChannel, InvalidConfig, InvalidUrl, Join, Message, ServerError, TokenPlacement
from heartwire.auth import Credentials
from heartwire.config import parse_endpoints
from heartwire.protocol import (
    Ack,
    Hello,
    Pong,
    Position,
    Presence,
    Reconnect,
    Subscribed,
    encode_data,
    encode_ping,
    encode_publish,
    encode_subscribe,
    parse,
    validate_channel,
)

FRAMES = [
    ('{"op":"hello","session":"s1","ping_interval_ms":200,"ping_timeout_ms":300,"server":"heartwire/0.1.0"}',
     Hello("s1", 0.2, 0.3, "heartwire/0.1.0")),
    ('{"op":"pong","t":12.5}', Pong(12.5)),
    ('{"op":"pong"}', Pong(None)),
    ('{"op":"subscribed","channel":"c","seq":4,"epoch":"e","recovered":false}', Subscribed("c", 4, "e", False)),
    ('{"op":"subscribed","channel":"c","seq":0,"epoch":"e"}', Subscribed("c", 0, "e", None)),
    ('{"op":"message","channel":"c","seq":42,"data":{"x":[1]}}', Message("c", 42, {"x": [1]})),
    ('{"op":"ack","id":"p-1","seq":3,"duplicate":true}', Ack("p-1", 3, True)),
    ('{"op":"ack","id":"p-1","seq":3}', Ack("p-1", 3, False)),
    ('{"op":"error","code":"unavailable","reason":"no broker","id":"p-2"}', ServerError("unavailable", "no broker", "p-2")),
    ('{"op":"presence","channel":"room:1","members":["a","b"]}', Presence("room:1", ("a", "b"))),
    ('{"op":"join","channel":"room:1","session":"a"}', Join("room:1", "a")),
    ('{"op":"reconnect","after_ms":1500,"reason":"server restarting"}', Reconnect(1.5, "server restarting")),
]


@pytest.mark.parametrize(("text", "frame"), FRAMES)
def test_server_frames(text: str, frame: object) -> None:
    assert parse(text) == frame


@pytest.mark.parametrize("text", [
    "not json", "[1,2]", '"text"', '{"op":"future_op"}', '{"no":"op"}',
    '{"op":"message","channel":"c","seq":-1,"data":1}', '{"op":"message","channel":"c","seq":"1"}',
    '{"op":"hello","session":"s","ping_interval_ms":0,"ping_timeout_ms":1}',
    '{"op":"presence","channel":"c","members":[1]}', '{"op":"ack","seq":1}',
])
def test_what_the_client_does_not_understand_is_ignored(text: str) -> None:
    assert parse(text) is None


def test_client_frames() -> None:
    assert json.loads(encode_ping(1.5)) == {"op": "ping", "t": 1.5}
    assert json.loads(encode_subscribe("c", None)) == {"op": "subscribe", "channel": "c"}
    assert json.loads(encode_subscribe("c", Position("e", 7))) == {
        "op": "subscribe", "channel": "c", "since": {"epoch": "e", "seq": 7}}
    publish = encode_publish("c", encode_data({"text": "hé"}), "p-1")
    assert json.loads(publish) == {"op": "publish", "channel": "c", "data": {"text": "hé"}, "id": "p-1"}


def test_data_that_json_cannot_carry_is_refused_up_front() -> None:
    with pytest.raises(TypeError):
        encode_data({1, 2})
    with pytest.raises(ValueError):
        encode_data(float("nan"))


@pytest.mark.parametrize("channel", ["room:lobby", "a", "x" * 128, "A-z_0.9:@/"])
def test_valid_channels(channel: str) -> None:
    validate_channel(channel)


@pytest.mark.parametrize("channel", ["", "x" * 129, "no spaces", "é", "a#b"])
def test_invalid_channels(channel: str) -> None:
    with pytest.raises(InvalidChannel):
        validate_channel(channel)


@pytest.mark.parametrize("url", ["http://x/", "not a url", "ws://", "", "wss:///ws"])
def test_invalid_endpoints(url: str) -> None:
    with pytest.raises(InvalidUrl):
        parse_endpoints([url])


def test_endpoints_keep_their_order() -> None:
    assert parse_endpoints(["ws://a:1/ws", "wss://b/ws"]) == ["ws://a:1/ws", "wss://b/ws"]
    assert parse_endpoints("ws://a/ws") == ["ws://a/ws"]
    with pytest.raises(InvalidUrl):
        parse_endpoints([])


TOKENS = [
    (TokenPlacement.QUERY, "ws://h/ws", "a b", "ws://h/ws?token=a+b", {}),
    (TokenPlacement.QUERY, "ws://h/ws?x=1", "t", "ws://h/ws?x=1&token=t", {}),
    (TokenPlacement.HEADER, "ws://h/ws?x=1", "t", "ws://h/ws?x=1", {"Authorization": "Bearer t"}),
    (TokenPlacement.BOTH, "ws://h/ws", "t", "ws://h/ws?token=t", {"Authorization": "Bearer t"}),
    (TokenPlacement.BOTH, "ws://h/ws", None, "ws://h/ws", {}),
]


@pytest.mark.parametrize(("placement", "url", "token", "target", "headers"), TOKENS)
def test_the_token_goes_where_it_was_asked_to(
    placement: TokenPlacement, url: str, token: str | None, target: str, headers: dict[str, str]
) -> None:
    assert Credentials(None, placement).handshake(url, token) == (target, headers)


ZERO_SETTINGS: list[Callable[[], ClientConfig]] = [
    lambda: ClientConfig(outbox_limit=0),
    lambda: ClientConfig(queue_size=0),
    lambda: ClientConfig(connect_timeout=0),
    lambda: ClientConfig(publishes_in_flight=0),
]


@pytest.mark.parametrize("make", ZERO_SETTINGS)
def test_settings_that_cannot_work_are_refused(make: Callable[[], ClientConfig]) -> None:
    with pytest.raises(InvalidConfig):
        make()
