#!/usr/bin/env python3
"""A Python `websockets` client that reports when its own keepalive finds the server dead.

    python3 tests/peers/keepalive_client.py ws://HOST:PORT/ws \
        --ping-interval 0.3 --ping-timeout 0.3 --close-timeout 0.3

It connects with the RFC 6455 keepalive of `websockets` (a Ping every `ping_interval`, dead
when its Pong is not back within `ping_timeout`, as an unchanged third-party client runs it),
reads and ignores every message, and prints one JSON line per state on stdout:
{"state": "open"}, then {"state": "closed", "code": …, "reason": …} when the connection ends
(by its keepalive, a close from the server, or a lost socket). After a failed keepalive
`websockets` sends a close frame and reports the end when the answer came or `close_timeout`
passed, so a dead server is reported within ping_interval + ping_timeout + close_timeout. It exits when stdin closes or
after `--deadline` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading

try:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed
except ImportError as err:  # pragma: no cover - the message is the point
    print(
        f"keepalive_client.py: the Python package 'websockets' is missing ({err}); "
        "run scripts/test, which installs tests/peers/requirements.txt",
        file=sys.stderr,
    )
    sys.exit(2)


def report(state: dict) -> None:
    print(json.dumps(state), flush=True)


async def watch(url: str, interval: float, timeout: float, close_timeout: float) -> None:
    async with connect(url, ping_interval=interval, ping_timeout=timeout,
                       close_timeout=close_timeout) as ws:
        report({"state": "open"})
        try:
            async for _ in ws:
                pass
        except ConnectionClosed:
            pass
        report({"state": "closed", "code": ws.close_code, "reason": ws.close_reason})


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url")
    parser.add_argument("--ping-interval", type=float, required=True)
    parser.add_argument("--ping-timeout", type=float, required=True)
    parser.add_argument("--close-timeout", type=float, required=True)
    parser.add_argument("--deadline", type=float, default=60.0)
    args = parser.parse_args()
    loop = asyncio.get_running_loop()
    stdin_closed = loop.create_future()

    def read_stdin() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(stdin_closed.set_result, None)

    threading.Thread(target=read_stdin, daemon=True).start()
    watching = asyncio.ensure_future(watch(args.url, args.ping_interval, args.ping_timeout, args.close_timeout))
    done, _ = await asyncio.wait({watching, stdin_closed}, timeout=args.deadline,
                                 return_when=asyncio.FIRST_COMPLETED)
    if watching in done:
        watching.result()
        # Stay until told to go, so the test decides when the process ends.
        await asyncio.wait({stdin_closed}, timeout=args.deadline)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
