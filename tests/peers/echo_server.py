"""An echo server on Python `websockets`, for the client's interoperability tests.

Listens on 127.0.0.1 on a free port, prints the port on one line, then echoes every
message. Its own keepalive is off, so the connection is silent unless the client
pings: the client's Pings (which `websockets` answers itself) are what keeps it alive and
what measures the round-trip time.
"""

import asyncio
import sys

from websockets.asyncio.server import serve


async def echo(websocket):
    async for message in websocket:
        await websocket.send(message)


async def main():
    async with serve(echo, "127.0.0.1", 0, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(port, flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
