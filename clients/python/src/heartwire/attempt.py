"""One connection attempt: a fresh token, the WebSocket handshake, and the server's
``hello``; and what a failed attempt means for the next one.

The attempt succeeds only when the server's first frame is heartwire's ``hello``, within
``connect_timeout`` of its start. A failure is an :class:`AttemptFailed` carrying an
:class:`~heartwire.machine.AttemptFailure`: transient (refused, reset, timed out, HTTP 5xx,
408, 429, closed before ``hello``), or permanent for that endpoint (any other HTTP status,
not a WebSocket or not a heartwire server). A close before ``hello`` carries its code, so
that the reconnect rules apply to it as to any close (4401, say, ends the client).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidMessage,
    InvalidStatus,
    InvalidURI,
)

from .auth import Credentials
from .config import ClientConfig
from .machine import AttemptFailure
from .protocol import Hello, parse
from .reconnect import rule_for_status

#: Frames websockets may hold unread before it stops reading the socket.
_READ_QUEUE = 64
#: The largest message accepted from the server.
_MAX_MESSAGE = 16 * 1024 * 1024


class Socket(ClientConnection):
    """websockets' client connection, telling its owner whenever bytes arrive: any
    traffic — data, Ping, Pong, or part of a frame — proves the server alive."""

    listener: Callable[[float], None] | None = None

    def data_received(self, data: bytes) -> None:
        if self.listener is not None:
            self.listener(self.loop.time())
        super().data_received(data)

    def drop(self, code: int, reason: str) -> None:
        """Sends a close frame if the socket takes it at once, and drops the connection
        without waiting: for a server that stopped answering."""
        try:
            self.protocol.send_close(code, reason)
            self.send_data()
        except Exception:  # best effort: the connection is going away anyway
            pass
        self.transport.abort()


@dataclass(frozen=True)
class Opened:
    """A connection whose server said hello."""

    socket: Socket
    hello: Hello


class AttemptFailed(Exception):
    """An attempt failed; ``failure`` says how."""

    def __init__(self, failure: AttemptFailure) -> None:
        super().__init__(failure.reason)
        self.failure = failure


async def open_connection(url: str, credentials: Credentials, config: ClientConfig) -> Opened:
    """Connects to ``url`` with a token fresh from the provider and waits for ``hello``;
    raises :class:`AttemptFailed`."""
    try:
        token = await credentials.fresh()
    except Exception as error:
        raise AttemptFailed(AttemptFailure(f"the token provider failed: {error!r}")) from None
    target, headers = credentials.handshake(url, token)
    try:
        return await asyncio.wait_for(_handshake(url, target, headers, config), config.connect_timeout)
    except asyncio.TimeoutError:
        reason = f"{url} sent no hello within {config.connect_timeout:g} s"
        raise AttemptFailed(AttemptFailure(reason)) from None


async def _handshake(
    url: str, target: str, headers: dict[str, str], config: ClientConfig
) -> Opened:
    try:
        socket = await connect(
            target,
            additional_headers=headers,
            open_timeout=None,
            ping_interval=None,
            ping_timeout=None,
            close_timeout=config.close_timeout,
            max_size=_MAX_MESSAGE,
            max_queue=_READ_QUEUE,
            create_connection=Socket,
        )
    except InvalidStatus as error:
        response = error.response
        refusal = rule_for_status(response.status_code, response.headers.get("Retry-After"))
        reason = f"{url} refused the WebSocket handshake with HTTP {response.status_code}"
        raise AttemptFailed(AttemptFailure(reason, refusal.permanent, refusal.retry_after)) from None
    except InvalidMessage as error:
        if isinstance(error.__cause__, EOFError):
            reason = f"{url} closed the connection during the WebSocket handshake"
            raise AttemptFailed(AttemptFailure(reason)) from None
        raise AttemptFailed(AttemptFailure(f"{url} is not a WebSocket server: {error}", True)) from None
    except (InvalidHandshake, InvalidURI) as error:
        raise AttemptFailed(AttemptFailure(f"{url} cannot be used: {error}", True)) from None
    except OSError as error:
        raise AttemptFailed(AttemptFailure(f"cannot reach {url}: {error}")) from None
    except Exception as error:  # anything else websockets may raise: worth another try
        raise AttemptFailed(AttemptFailure(f"connecting to {url} failed: {error!r}")) from None
    assert isinstance(socket, Socket)
    try:
        return Opened(socket, await _hello(url, socket))
    except BaseException:
        socket.transport.abort()
        raise


async def _hello(url: str, socket: Socket) -> Hello:
    try:
        first = await socket.recv()
    except ConnectionClosed as closed:
        code, reason = (closed.rcvd.code, closed.rcvd.reason) if closed.rcvd else (1006, "")
        text = f"{url} closed with {code}" + (f" ({reason})" if reason else "") + " before hello"
        raise AttemptFailed(AttemptFailure(text, close_code=code, close_reason=reason)) from None
    hello = parse(first) if isinstance(first, str) else None
    if not isinstance(hello, Hello):
        reason = f"{url} is not a heartwire server: its first frame was not hello"
        raise AttemptFailed(AttemptFailure(reason, True))
    return hello
