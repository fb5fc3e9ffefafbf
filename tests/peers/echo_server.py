#!/usr/bin/env python3
"""An echo server on Python `websockets`: a reference peer for heartwire's tests.

Listens on 127.0.0.1 on a free port (or `--port`), prints the port alone on one line
once it accepts connections, then echoes every data frame as it came (text as text,
binary as binary).

- Its own keepalive is off, so the connection is silent unless the client pings: the
  client's Pings (which `websockets` answers itself) are what keeps it alive and what
  measures the round-trip time.
- Messages of any size are echoed (Autobahn's 9.x cases send up to 16 MiB).
- With `--path /echo`, only that path upgrades and every other one gets HTTP 404, so a
  client that asks for the wrong path fails loudly instead of passing by luck.
- It stops by itself after `--lifetime` seconds, on SIGTERM or on SIGINT.

    python3 tests/peers/echo_server.py [--port 0] [--path /echo] [--lifetime 900]
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
    parser.add_argument("--path", default=None, help="the only path that upgrades (default: any)")
    parser.add_argument(
        "--lifetime", type=float, default=900.0, help="seconds after which the server stops"
    )
    return parser.parse_args()


async def main() -> int:
    args = parse_args()

    def only_our_path(connection: ServerConnection, request):  # noqa: ANN001
        if args.path is not None and request.path.split("?", 1)[0] != args.path:
            return connection.respond(http.HTTPStatus.NOT_FOUND, f"only {args.path}\n")
        return None

    async def echo(connection: ServerConnection) -> None:
        try:
            async for message in connection:
                await connection.send(message)
        except ConnectionClosed:
            pass

    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.cancel)

    async with serve(
        echo,
        "127.0.0.1",
        args.port,
        process_request=only_our_path,
        max_size=None,
        ping_interval=None,
        compression=None,
    ) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        try:
            await asyncio.wait_for(stop, timeout=args.lifetime)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
