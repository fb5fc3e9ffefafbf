"""An echo server on Python `websockets`, for the client's interoperability tests.

Listens on 127.0.0.1 on a free port, prints the port on one line, then echoes every
message. Its own keepalive pings every 0.2 s; it answers the client's Pings itself.
"""

import asyncio
import sys

from websockets.asyncio.server import serve


async def echo(websocket):
    async for message in websocket:
        await websocket.send(message)


async def main():
    async with serve(echo, "127.0.0.1", 0, ping_interval=0.2, ping_timeout=0.2) as server:
        port = server.sockets[0].getsockname()[1]
        print(port, flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
