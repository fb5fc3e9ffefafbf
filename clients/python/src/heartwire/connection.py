"""One open connection: reads and dispatches the server's frames, writes control frames
and the outbox, watches liveness, and probes a preferred endpoint for fail-back.

Five tasks share the socket, so no one of them can stall another: the reader, the writer
(a write stuck on a server that stopped reading blocks only it), the liveness watchdog,
the token refresher (:mod:`heartwire.refresh` says when; the token provider gives the
token) and, on a backup, the fail-back prober. The first outcome — the server closed, the server
is dead, a preferred endpoint answered, the application closed the client — ends them all.

On open, the subscriptions go out first, each with its position as ``since``, then
presence requests still unanswered, a first probe (so ``rtt`` is known at once), and the
outbox. A probe is a protocol Ping and ``{"op":"ping","t":…}`` together: the Pong comes
from the server's WebSocket layer, the ``pong`` from its application; anything at all that
arrives proves the server alive.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any

from websockets.exceptions import ConnectionClosed

from .attempt import AttemptFailed, Opened, Socket, open_connection
from .events import Gap, Join, Leave, Message, Refreshed, ServerError
from .hub import Hub
from .liveness import Liveness, Verdict
from .refresh import Refresh
from .report import PreviousSession
from .protocol import (
    Ack,
    Presence,
    Pong,
    Reconnect,
    ServerFrame,
    Subscribed,
    Unsubscribed,
    encode_ping,
    encode_publish,
    encode_refresh,
    encode_subscribe,
    parse,
)

#: The close code and reason this client sends to a server it found dead.
PING_TIMEOUT = (1011, "ping timeout")
#: The close code and reason this client sends to a backup it leaves for the primary.
FAIL_BACK = (1001, "moving to a preferred endpoint")
#: The close this client sends when the application closes it.
CLIENT_CLOSED = (1000, "client closed")


@dataclass(frozen=True)
class Ended:
    """The connection ended with close ``code`` and ``reason``; ``hint`` is the delay of
    a ``reconnect`` frame that came before it."""

    code: int
    reason: str
    hint: float | None


@dataclass(frozen=True)
class FailedBack:
    """Preferred endpoint ``index`` answered a probe: continue on ``opened``."""

    index: int
    opened: Opened


@dataclass(frozen=True)
class Stopped:
    """The application closed the client."""


Outcome = Ended | FailedBack | Stopped

_PING = object()
"""In the control queue: a protocol Ping."""

_closing: set[asyncio.Task[None]] = set()
"""Close handshakes under way in the background, kept until they end."""


class Connection:
    """See the module docs."""

    def __init__(self, hub: Hub, opened: Opened, index: int) -> None:
        self._hub = hub
        self._socket = opened.socket
        self._index = index
        self._loop = asyncio.get_running_loop()
        hello = opened.hello
        self._hello = hello
        #: The connection ended because this client heard nothing within its bound.
        self._timed_out = False
        self._liveness = Liveness(hello.ping_interval, hello.ping_timeout, self._loop.time())
        self._control: deque[object] = deque()
        self._writable = asyncio.Event()
        self._watch = asyncio.Event()
        self._done: asyncio.Future[Outcome] = self._loop.create_future()
        self._hint: float | None = None
        self._probe_t: float | None = None
        self._refresh = Refresh()
        self._refresh.handle_lifetime(self._loop.time(), hello.expires_in)
        self._refresh_changed = asyncio.Event()

    def __repr__(self) -> str:
        return f"Connection({self._hub.lifecycle.url!r}, {self._liveness!r})"

    def send(self, text: str) -> None:
        """Queues a control frame; it goes out before any publish still waiting."""
        self._control.append(text)
        self._writable.set()

    def wake_writer(self) -> None:
        """The outbox has something to write."""
        self._writable.set()

    async def run(self) -> Outcome:
        """Runs the connection until its outcome."""
        hub = self._hub
        # The report of the session lost last goes first, to a server that takes it.
        previous, hub.previous = hub.previous, None
        if previous is not None and self._hello.reports:
            self._control.append(previous.encode(self._loop.time()))
        hub.channels.handle_connected()
        for channel in hub.channels.names():
            self._control.append(encode_subscribe(channel, hub.channels.since(channel)))
        self._control.extend(hub.presence_requests())
        self._probe()
        self._socket.listener = self._heard
        hub.link = self
        jobs = [
            self._read(),
            self._write(),
            self._watch_liveness(),
            self._refresh_token(),
            self._stop_on_request(),
        ]
        if self._index > 0:
            jobs.append(self._fail_back())
        tasks = [asyncio.ensure_future(job) for job in jobs]
        try:
            outcome = await self._done
        finally:
            hub.link = None
            self._socket.listener = None
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            hub.outbox.handle_disconnected()
            if not self._done.done():
                self._socket.transport.abort()
        if isinstance(outcome, Ended):
            hub.previous = PreviousSession.lost(
                self._hello.session,
                self._loop.time(),
                outcome.code,
                self._timed_out,
                self._liveness.last_heard,
            )
        await self._close(outcome)
        return outcome

    def _finish(self, outcome: Outcome) -> None:
        if not self._done.done():
            self._done.set_result(outcome)
        elif isinstance(outcome, FailedBack):
            outcome.opened.socket.transport.abort()

    async def _close(self, outcome: Outcome) -> None:
        socket, timeout = self._socket, self._hub.config.close_timeout
        if isinstance(outcome, Stopped):
            await _close_within(socket, *CLIENT_CLOSED, timeout)
        elif isinstance(outcome, FailedBack):
            task = asyncio.ensure_future(_close_within(socket, *FAIL_BACK, timeout))
            _closing.add(task)
            task.add_done_callback(_closing.discard)
        else:
            socket.transport.abort()

    # ---- reading --------------------------------------------------------------------------

    async def _read(self) -> None:
        try:
            while True:
                text = await self._socket.recv()
                frame = parse(text) if isinstance(text, str) else None
                if frame is not None:
                    await self._dispatch(frame)
        except ConnectionClosed as closed:
            code, reason = (closed.rcvd.code, closed.rcvd.reason) if closed.rcvd else (1006, "")
            self._finish(Ended(code, reason, self._hint))

    async def _dispatch(self, frame: ServerFrame) -> None:
        hub, now = self._hub, self._loop.time()
        if isinstance(frame, Message):
            await self._deliver(frame)
        elif isinstance(frame, Subscribed):
            self._gap(hub.channels.handle_subscribed(frame))
        elif isinstance(frame, Unsubscribed):
            hub.channels.handle_unsubscribed(frame.channel)
        elif isinstance(frame, Ack):
            hub.handle_ack(frame)
            self._writable.set()
        elif isinstance(frame, ServerError):
            if frame.channel is None and frame.code in ("unauthorized", "forbidden"):
                self._refresh.handle_refused(now)
                self._refresh_changed.set()
            hub.handle_error(frame, now)
            self._writable.set()
        elif isinstance(frame, Refreshed):
            self._refresh.handle_lifetime(now, frame.expires_in)
            self._refresh_changed.set()
            hub.events.send(frame)
        elif isinstance(frame, Presence):
            hub.handle_presence(frame)
        elif isinstance(frame, (Join, Leave)):
            hub.events.send(frame)
        elif isinstance(frame, Pong):
            if frame.t is not None and frame.t == self._probe_t:
                hub.rtt = now - frame.t / 1000
                hub.lifecycle.handle_rtt(hub.rtt)
        elif isinstance(frame, Reconnect):
            self._hint = frame.after

    async def _deliver(self, message: Message) -> None:
        subscriptions, gap = self._hub.channels.handle_message(message)
        self._gap(gap)
        for subscription in subscriptions:
            if not subscription.full:
                await subscription.put(message)
                continue
            # The application is behind: the socket is left unread meanwhile, so its
            # silence proves nothing about the server.
            self._liveness.handle_deaf()
            await subscription.put(message)
            self._liveness.handle_listening(self._loop.time())
            self._watch.set()

    def _gap(self, gap: Gap | None) -> None:
        if gap is not None:
            self._hub.events.send(gap)

    # ---- writing --------------------------------------------------------------------------

    async def _write(self) -> None:
        socket, outbox = self._socket, self._hub.outbox
        try:
            while True:
                self._writable.clear()
                if self._control:
                    item = self._control.popleft()
                    if item is _PING:
                        pong = asyncio.ensure_future(await socket.ping())
                        pong.add_done_callback(_retrieve)
                    else:
                        assert isinstance(item, str)
                        await socket.send(item)
                    continue
                now = self._loop.time()
                publish = outbox.next_to_send(now)
                if publish is not None:
                    await socket.send(encode_publish(publish.channel, publish.data_json, publish.id))
                    continue
                hold = outbox.hold_until
                await _wait(self._writable, None if hold is None else hold - now)
        except ConnectionClosed:
            return  # the reader reports how it ended

    # ---- liveness -------------------------------------------------------------------------

    def _heard(self, now: float) -> None:
        if self._liveness.handle_heard(now):
            self._hub.announce(self._hub.lifecycle.degraded(False))

    def _probe(self) -> None:
        now = self._loop.time()
        self._probe_t = round(now * 1000, 3)
        self._control.append(encode_ping(self._probe_t))
        self._control.append(_PING)
        self._liveness.handle_probe_sent(now)
        self._writable.set()

    async def _watch_liveness(self) -> None:
        liveness = self._liveness
        while True:
            self._watch.clear()
            due = liveness.poll_timeout()
            await _wait(self._watch, None if due is None else due - self._loop.time())
            # Bytes that arrived while this task slept are taken in before any judgement.
            await asyncio.sleep(0)
            verdict = liveness.handle_timeout(self._loop.time())
            if verdict is Verdict.PROBE:
                self._probe()
            elif verdict is Verdict.DEGRADED:
                self._hub.announce(self._hub.lifecycle.degraded(True))
            elif verdict is Verdict.DEAD:
                self._timed_out = True
                self._socket.drop(*PING_TIMEOUT)
                silence = f"nothing heard for {liveness.ping_timeout * 1000:.0f} ms after a probe"
                self._finish(Ended(PING_TIMEOUT[0], f"{PING_TIMEOUT[1]}: {silence}", None))
                return

    # ---- token refresh --------------------------------------------------------------------

    async def _refresh_token(self) -> None:
        refresh = self._refresh
        while True:
            self._refresh_changed.clear()
            due = refresh.poll_timeout()
            await _wait(self._refresh_changed, None if due is None else due - self._loop.time())
            if not refresh.handle_timeout(self._loop.time()):
                continue
            try:
                token = await self._hub.credentials.fresh()
            except Exception:  # noqa: BLE001 - a failing provider is a refused refresh
                token = None
            if token is None:
                refresh.handle_refused(self._loop.time())
            else:
                self.send(encode_refresh(token))

    # ---- fail-back and stop ---------------------------------------------------------------

    async def _fail_back(self) -> None:
        hub = self._hub
        lifecycle = hub.lifecycle
        while True:
            due = lifecycle.fail_back_due(self._loop.time())
            if due is None:
                return
            await asyncio.sleep(max(0.0, due - self._loop.time()))
            candidate = lifecycle.fail_back_candidate(self._loop.time())
            if candidate is None:
                continue
            try:
                opened = await open_connection(lifecycle.urls[candidate], hub.credentials, hub.config)
            except AttemptFailed:
                lifecycle.fail_back_failed(candidate, self._loop.time())
                continue
            self._finish(FailedBack(candidate, opened))
            return

    async def _stop_on_request(self) -> None:
        await self._hub.stopping.wait()
        self._finish(Stopped())


async def _wait(event: asyncio.Event, timeout: float | None) -> None:
    """Waits until ``event`` is set or ``timeout`` seconds have passed."""
    try:
        await asyncio.wait_for(event.wait(), None if timeout is None else max(0.0, timeout))
    except asyncio.TimeoutError:
        pass


async def _close_within(socket: Socket, code: int, reason: str, timeout: float) -> None:
    """The close handshake, bounded by ``timeout``; then the socket is dropped."""
    try:
        await asyncio.wait_for(socket.close(code, reason), timeout)
    except (asyncio.TimeoutError, OSError):
        pass
    finally:
        socket.transport.abort()


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
