"""The real peers of the Django test: redis-server, `heartwire serve` nodes, and the
Django site itself, served by Django's own threaded WSGI server on a loopback port.

Nothing here is a mock. A missing binary fails the test with a sentence that says how to
get it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from http.cookies import SimpleCookie
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: How long any one wait of the test may take.
PATIENCE = 10.0


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


def wait_until(ready: Callable[[], bool], what: str, process: subprocess.Popen[bytes] | None = None,
               log: Path | None = None) -> None:
    """Polls `ready` until it holds, for at most PATIENCE; fails naming `what` otherwise."""
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            output = log.read_text() if log else ""
            pytest.fail(f"{what} exited with {process.returncode}:\n{output}", pytrace=False)
        if ready():
            return
        time.sleep(0.02)
    output = log.read_text() if log else ""
    pytest.fail(f"{what} did not happen within {PATIENCE} s\n{output}", pytrace=False)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Ends a process, however it is."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


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
        wait_until(self._pong, "redis-server answering PING", self.process, self.log)

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


class HeartwireNode:
    """One `heartwire serve` process on a free loopback port."""

    def __init__(self, log_dir: Path, name: str, args: list[str]) -> None:
        self.port = free_port()
        self.log = log_dir / f"{name}.log"
        command = [str(heartwire_bin()), "serve", "--listen", f"127.0.0.1:{self.port}", *args]
        with self.log.open("ab") as log:
            log.write(f"$ {' '.join(command)}\n".encode())
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._healthy, f"heartwire serve ({name}) answering /healthz", self.process, self.log)

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def joining(self) -> float:
        """Its subscriptions still joining (`heartwire_subscriptions_joining`): subscribed
        in Redis, their snapshot not yet read."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=PATIENCE) as answer:
            text = answer.read().decode()
        [value] = [line.split()[1] for line in text.splitlines()
                   if line.startswith("heartwire_subscriptions_joining ")]
        return float(value)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=0.5) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False


class DjangoSite:
    """The test project (hwtest), set up on a fresh SQLite file and served by Django's
    threaded WSGI server in this process, so that the test's own Django calls (creating
    users, publishing with django-websocket-redis) share its settings and database."""

    def __init__(self, directory: Path, redis: RedisServer) -> None:
        os.environ["DJANGO_SETTINGS_MODULE"] = "hwtest.settings"
        os.environ["HWTEST_DB"] = str(directory / "db.sqlite3")
        os.environ["HWTEST_REDIS_PORT"] = str(redis.port)
        import django
        from django.core.management import call_command
        from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
        from django.core.wsgi import get_wsgi_application

        django.setup()
        call_command("migrate", verbosity=0)
        self.server = ThreadedWSGIServer(("127.0.0.1", 0), WSGIRequestHandler)
        self.server.set_app(get_wsgi_application())
        self.port: int = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="django", daemon=True)
        self.thread.start()

    @property
    def hook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/heartwire/connect"

    def log_in(self, username: str, password: str) -> str:
        """Logs in through the site's login view; returns the session cookie's value."""
        form = urllib.parse.urlencode({"username": username, "password": password}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/login", data=form, method="POST")
        with urllib.request.urlopen(request, timeout=PATIENCE) as answer:
            cookie = SimpleCookie(answer.headers["Set-Cookie"])
        return cookie["sessionid"].value

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
