"""The real peers the tests start: `heartwire serve` processes, a Redis server, and a
small TCP proxy that can cut, refuse or blackhole the path between a client and a server.

Nothing here is a mock: the servers are the checkout's own binary and Debian's
redis-server, on free loopback ports. A missing binary fails the test with a sentence
that says how to get it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]

#: The servers' liveness timing in every socket test.
PING_INTERVAL = 0.2
PING_TIMEOUT = 0.2


def heartwire_bin() -> Path:
    """The server binary: ``$HEARTWIRE_BIN``, else the checkout's debug build."""
    binary = Path(os.environ.get("HEARTWIRE_BIN", REPO / "target" / "debug" / "heartwire"))
    if not os.access(binary, os.X_OK):
        pytest.fail(
            f"{binary} is missing: run scripts/test (its build stage makes it), "
            "or cargo build -p heartwire-cli, or set HEARTWIRE_BIN",
            pytrace=False,
        )
    return binary


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_until(ready: Callable[[], bool], process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{what} exited with {process.returncode}:\n{log.read_text()}", pytrace=False)
        if ready():
            return
        time.sleep(0.02)
    pytest.fail(f"{what} was not ready within 15 s:\n{log.read_text()}", pytrace=False)


class HeartwireServer:
    """One `heartwire serve` process on a fixed loopback port, which survives restarts."""

    def __init__(self, log_dir: Path, name: str, args: list[str]) -> None:
        self.port = free_port()
        self.name = name
        self.args = args
        self.log = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.frozen = False

    def __repr__(self) -> str:
        return f"HeartwireServer({self.name}, port={self.port})"

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self) -> None:
        """Starts the process and waits until /healthz answers 200."""
        command = [
            str(heartwire_bin()), "serve",
            "--listen", f"127.0.0.1:{self.port}",
            "--ping-interval", f"{int(PING_INTERVAL * 1000)}ms",
            "--ping-timeout", f"{int(PING_TIMEOUT * 1000)}ms",
            "--close-timeout", "500ms",
            "--shutdown-spread", "200ms",
            *self.args,
        ]
        with self.log.open("ab") as log:
            log.write(f"$ {' '.join(command)}\n".encode())
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        _wait_until(self._healthy, self.process, f"heartwire serve ({self.name})", self.log)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=0.5) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def metric(self, series: str) -> float | None:
        """The value of one series of /metrics (e.g. ``heartwire_false_reaps_total``), or
        ``None`` when the server does not show it."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        for line in text.splitlines():
            name, _, value = line.rpartition(" ")
            if name == series:
                return float(value)
        return None

    def kill(self) -> None:
        """SIGKILL: the process ends at once; the kernel resets its connections."""
        assert self.process is not None
        self.thaw()
        self.process.kill()
        self.process.wait(timeout=10)

    def freeze(self) -> None:
        """SIGSTOP: the process stops answering, while its kernel still ACKs."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        """SIGCONT."""
        if self.process is not None and self.frozen:
            self.process.send_signal(signal.SIGCONT)
            self.frozen = False

    def stop(self) -> None:
        """Ends the process however it is."""
        if self.process is None or self.process.poll() is not None:
            return
        self.thaw()
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


class RedisServer:
    """A redis-server without persistence on a free loopback port."""

    def __init__(self, log_dir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is missing: run scripts/test (its install stage installs it)", pytrace=False)
        self.port = free_port()
        self.log = log_dir / "redis.log"
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        _wait_until(self._pong, self.process, "redis-server", self.log)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/"

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


class Proxy:
    """A TCP proxy on a free loopback port in front of ``upstream_port``.

    - :attr:`requests`: the first bytes (the HTTP upgrade request) of every connection;
    - :meth:`cut`: resets every connection going through it;
    - :attr:`refusing`: while set, new connections are closed at once;
    - :meth:`blackhole`: the connections open now stop carrying the server's bytes to the
      client (the client still writes; nothing comes back), as a dead path would.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.requests: list[bytes] = []
        self.refusing = False
        self._links: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter, list[bool]]] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()

    def cut(self) -> None:
        for client, upstream, _ in self._links:
            for writer in (client, upstream):
                writer.transport.abort()
        self._links.clear()

    def blackhole(self) -> None:
        for _, _, silenced in self._links:
            silenced[0] = True

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            client_writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_writer.transport.abort()
            return
        silenced = [False]
        self._links.append((client_writer, upstream_writer, silenced))
        first = [True]

        async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, downstream: bool) -> None:
            try:
                while chunk := await reader.read(65536):
                    if not downstream and first[0]:
                        first[0] = False
                        self.requests.append(chunk)
                    if downstream and silenced[0]:
                        continue
                    writer.write(chunk)
                    await writer.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                writer.transport.abort()

        await asyncio.gather(
            pump(client_reader, upstream_writer, False), pump(upstream_reader, client_writer, True)
        )
