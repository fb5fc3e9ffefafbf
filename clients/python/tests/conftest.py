"""Fixtures that start and always stop the tests' real peers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from peers import HeartwireServer, RedisServer


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., HeartwireServer]]:
    """Starts `heartwire serve` processes with extra options; stops them after the test."""
    started: list[HeartwireServer] = []

    def start(*args: str, name: str | None = None) -> HeartwireServer:
        server = HeartwireServer(tmp_path, name or f"server{len(started)}", list(args))
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    yield server
    server.stop()
