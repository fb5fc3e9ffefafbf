"""Python `websockets` peer of heartwire's benchmarks: python websockets_server.py PORT

/echo sends every message back; /broadcast sends it to every other /broadcast client.
websockets pings every PING_INTERVAL_MS (default 1000) and drops a client that does
not answer within PING_TIMEOUT_MS (default 1000).
"""

import asyncio
import os
import sys

from websockets.asyncio.server import broadcast, serve

BROADCAST = set()


async def handler(websocket):
    if websocket.request.path == "/broadcast":
        BROADCAST.add(websocket)
        try:
            async for message in websocket:
                broadcast(BROADCAST - {websocket}, message)
        finally:
            BROADCAST.discard(websocket)
    else:
        async for message in websocket:
            await websocket.send(message)


async def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9003
    interval = int(os.environ.get("PING_INTERVAL_MS", "1000")) / 1000
    timeout = int(os.environ.get("PING_TIMEOUT_MS", "1000")) / 1000
    async with serve(
        handler,
        "127.0.0.1",
        port,
        ping_interval=interval,
        ping_timeout=timeout,
        compression=None,
        backlog=4096,
    ) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
