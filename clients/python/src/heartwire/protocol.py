"""The JSON envelopes of heartwire's native ``/ws`` endpoint, in both directions.

docs/PROTOCOL.md is the specification. :func:`parse` turns a server's text frame into one
of the frame types below (or ``None`` for anything this client does not know, which it
ignores); the ``encode_*`` functions make the client's frames.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any, Union

from .errors import InvalidChannel
from .events import Join, Leave, Message, Refreshed, ServerError

_CHANNEL = re.compile(r"[A-Za-z0-9_.:@/\-]{1,128}")


def validate_channel(channel: str) -> None:
    """Raises :class:`InvalidChannel` unless ``channel`` is 1 to 128 bytes of ASCII
    letters, digits and ``-_.:@/``."""
    if not isinstance(channel, str) or _CHANNEL.fullmatch(channel) is None:
        raise InvalidChannel(
            f"invalid channel name {channel!r}: 1 to 128 of A-Z a-z 0-9 - _ . : @ /"
        )


@dataclass(frozen=True)
class Position:
    """A place in a channel: its epoch and a sequence number in it."""

    epoch: str
    seq: int


@dataclass(frozen=True)
class Hello:
    """The first frame of every connection."""

    session: str
    ping_interval: float
    """Seconds of silence after which the server pings."""
    ping_timeout: float
    """Seconds the server waits for an answer to its Ping."""
    server: str
    expires_in: float | None = None
    """Seconds until the connection's identity expires unless refreshed; ``None`` when
    it does not."""
    reports: bool = False
    """The server takes a report of this client's previous session."""


@dataclass(frozen=True)
class Pong:
    """The answer to a ``ping``; ``t`` is the echoed timestamp of this client's probe."""

    t: float | None


@dataclass(frozen=True)
class Subscribed:
    """A subscription is in place; ``seq`` is the channel's latest sequence number."""

    channel: str
    seq: int
    epoch: str
    recovered: bool | None


@dataclass(frozen=True)
class Unsubscribed:
    """A subscription is gone."""

    channel: str


@dataclass(frozen=True)
class Ack:
    """A publish with ``id`` was accepted as message ``seq``; ``duplicate`` when it was
    published before and this answers a copy."""

    id: str
    seq: int
    duplicate: bool


@dataclass(frozen=True)
class Presence:
    """The sessions subscribed to ``channel``, on every node."""

    channel: str
    members: tuple[str, ...]


@dataclass(frozen=True)
class Reconnect:
    """The server is about to close with 1012: come back after ``after`` seconds."""

    after: float
    reason: str


ServerFrame = Union[
    Hello, Pong, Subscribed, Unsubscribed, Message, Ack, ServerError, Presence, Join, Leave, Reconnect,
    Refreshed,
]
"""Every frame :func:`parse` returns."""


def parse(text: str) -> ServerFrame | None:
    """The frame in ``text``, or ``None`` when it is not JSON, not a known ``op``, or lacks
    a field this client needs."""
    try:
        frame = json.loads(text)
        if not isinstance(frame, dict):
            return None
        return _PARSERS[frame["op"]](frame)
    except (ValueError, KeyError, TypeError):
        return None


def _str(frame: dict[str, Any], key: str) -> str:
    value = frame[key]
    if not isinstance(value, str):
        raise TypeError(key)
    return value


def _int(frame: dict[str, Any], key: str) -> int:
    value = frame[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError(key)
    return value


def _hello(frame: dict[str, Any]) -> Hello:
    interval, timeout = _int(frame, "ping_interval_ms"), _int(frame, "ping_timeout_ms")
    if interval == 0 or timeout == 0:
        raise TypeError("ping_interval_ms")
    return Hello(
        _str(frame, "session"),
        interval / 1000,
        timeout / 1000,
        str(frame.get("server", "")),
        _expires_in(frame),
        frame.get("reports") is True,
    )


def _expires_in(frame: dict[str, Any]) -> float | None:
    """``expires_in_ms`` in seconds, or ``None`` when absent."""
    return None if frame.get("expires_in_ms") is None else _int(frame, "expires_in_ms") / 1000


def _optional_str(frame: dict[str, Any], key: str) -> str | None:
    value = frame.get(key)
    return value if isinstance(value, str) else None


def _pong(frame: dict[str, Any]) -> Pong:
    t = frame.get("t")
    return Pong(float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else None)


def _subscribed(frame: dict[str, Any]) -> Subscribed:
    recovered = frame.get("recovered")
    return Subscribed(
        _str(frame, "channel"),
        _int(frame, "seq"),
        str(frame.get("epoch", "")),
        recovered if isinstance(recovered, bool) else None,
    )


def _presence(frame: dict[str, Any]) -> Presence:
    members = frame["members"]
    if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
        raise TypeError("members")
    return Presence(_str(frame, "channel"), tuple(members))


def _error(frame: dict[str, Any]) -> ServerError:
    id = frame.get("id")
    return ServerError(
        _str(frame, "code"),
        str(frame.get("reason", "")),
        id if isinstance(id, str) else None,
        _optional_str(frame, "channel"),
    )


_PARSERS: dict[str, Callable[[dict[str, Any]], ServerFrame]] = {
    "hello": _hello,
    "pong": _pong,
    "subscribed": _subscribed,
    "unsubscribed": lambda f: Unsubscribed(_str(f, "channel")),
    "message": lambda f: Message(_str(f, "channel"), _int(f, "seq"), f.get("data")),
    "ack": lambda f: Ack(_str(f, "id"), _int(f, "seq"), f.get("duplicate") is True),
    "error": _error,
    "presence": _presence,
    "join": lambda f: Join(_str(f, "channel"), _str(f, "session"), _optional_str(f, "user")),
    "leave": lambda f: Leave(_str(f, "channel"), _str(f, "session"), _optional_str(f, "user")),
    "refreshed": lambda f: Refreshed(_expires_in(f)),
    "reconnect": lambda f: Reconnect(_int(f, "after_ms") / 1000, str(f.get("reason", ""))),
}


def _encode(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def encode_ping(t: float) -> str:
    """A probe; the server echoes ``t`` in its ``pong``."""
    return _encode({"op": "ping", "t": t})


def encode_subscribe(channel: str, since: Position | None) -> str:
    """Subscribe to ``channel``, resuming after ``since`` when given."""
    frame: dict[str, Any] = {"op": "subscribe", "channel": channel}
    if since is not None:
        frame["since"] = {"epoch": since.epoch, "seq": since.seq}
    return _encode(frame)


def encode_unsubscribe(channel: str) -> str:
    """Leave ``channel``."""
    return _encode({"op": "unsubscribe", "channel": channel})


def encode_publish(channel: str, data_json: str, id: str) -> str:
    """Publish the JSON text ``data_json`` on ``channel`` with ``id``."""
    return f'{{"op":"publish","channel":{json.dumps(channel)},"data":{data_json},"id":{json.dumps(id)}}}'


def encode_data(data: Any) -> str:
    """``data`` as JSON text; raises ``TypeError`` or ``ValueError`` for what JSON cannot
    carry."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encode_refresh(token: str) -> str:
    """A fresh token for the same user, before the connection's expires."""
    return _encode({"op": "refresh", "token": token})


def encode_presence(channel: str) -> str:
    """Ask who is subscribed to ``channel``."""
    return _encode({"op": "presence", "channel": channel})
