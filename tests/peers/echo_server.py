#!/usr/bin/env python3
"""A Python `websockets` echo server: a reference peer for heartwire's tests.

It echoes every data frame as it came (text as text, binary as binary) on one
path, `/echo` by default, and refuses every other path with HTTP 404, so a
client that sends the wrong path fails loudly instead of passing by luck.

It listens on 127.0.0.1 only. With `--port 0` (the default) the kernel picks a
free port; the server prints one line `listening 127.0.0.1:PORT` on stdout once
it accepts connections, so a caller can read the port without a race.

    python3 tests/peers/echo_server.py [--port 0] [--path /echo] [--lifetime 900]

It stops by itself after `--lifetime` seconds, on SIGTERM or on SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import http
import signal
import sys

try:
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosed
except ImportError as err:  # pragma: no cover - the message is the point
    sys.exit(
        f"echo_server.py: the Python package 'websockets' is missing ({err}); "
        "run scripts/test, which installs tests/peers/requirements.txt"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1; 0 picks one")
    parser.add_argument("--path", default="/echo", help="the only path that upgrades")
    parser.add_argument(
        "--lifetime", type=float, default=900.0, help="seconds after which the server stops"
    )
    return parser.parse_args()


async def main() -> int:
    args = parse_args()

    def only_our_path(connection: ServerConnection, request):  # noqa: ANN001
        if request.path.split("?", 1)[0] != args.path:
            return connection.respond(http.HTTPStatus.NOT_FOUND, f"only {args.path}\n")
        return None

    async def echo(connection: ServerConnection) -> None:
        try:
            async for message in connection:
                await connection.send(message)
        except ConnectionClosed:
            pass

    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.cancel)

    async with serve(
        echo,
        "127.0.0.1",
        args.port,
        process_request=only_our_path,
        # Autobahn's limit cases (9.x) send messages of up to 16 MiB.
        max_size=None,
        # The conformance cases are about framing; the peer must not ping on its own.
        ping_interval=None,
        compression=None,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening 127.0.0.1:{port}", flush=True)
        try:
            await asyncio.wait_for(stop, timeout=args.lifetime)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
