#!/usr/bin/env python3
"""A Python `websockets` client that streams numbered texts to an echo endpoint and checks
that every one comes back, once and in order, on the one connection it opened.

    python3 tests/peers/echo_stream_client.py ws://HOST:PORT/echo --every 0.01

It sends "0", "1", … every `--every` seconds with the RFC 6455 keepalive of `websockets` on
(a Ping every `--ping-interval`, dead after `--ping-timeout` without its Pong), and prints
JSON lines on stdout: {"state": "open"}, then {"echoed": N} after every 50th echo. When
stdin closes it sends "end", waits for its echo, and prints
{"ok": …, "sent": …, "echoed": …, "out_of_order": …, "close_code": …} — `ok` when
every text came back in order and the connection never closed. A close ends it at once
with `ok` false. It exits after `--deadline` seconds whatever happens.
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
        f"echo_stream_client.py: the Python package 'websockets' is missing ({err}); "
        "run scripts/test, which installs tests/peers/requirements.txt",
        file=sys.stderr,
    )
    sys.exit(2)


def report(line: dict) -> None:
    print(json.dumps(line), flush=True)


async def stream(url: str, every: float, interval: float, timeout: float,
                 stop: asyncio.Future) -> dict:
    sent = echoed = out_of_order = 0
    close_code = None
    async with connect(url, ping_interval=interval, ping_timeout=timeout) as ws:
        report({"state": "open"})

        async def send() -> None:
            nonlocal sent
            while not stop.done():
                await ws.send(str(sent))
                sent += 1
                await asyncio.sleep(every)
            await ws.send("end")

        async def receive() -> None:
            nonlocal echoed, out_of_order
            async for text in ws:
                if text == "end":
                    return
                if text != str(echoed):
                    out_of_order += 1
                echoed += 1
                if echoed % 50 == 0:
                    report({"echoed": echoed})

        sending = asyncio.ensure_future(send())
        try:
            await receive()
        except ConnectionClosed:
            pass
        sending.cancel()
        if ws.close_code is not None:
            close_code = ws.close_code
    ok = close_code is None and out_of_order == 0 and echoed == sent
    return {"ok": ok, "sent": sent, "echoed": echoed, "out_of_order": out_of_order,
            "close_code": close_code}


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url")
    parser.add_argument("--every", type=float, default=0.01)
    parser.add_argument("--ping-interval", type=float, default=0.5)
    parser.add_argument("--ping-timeout", type=float, default=2.0)
    parser.add_argument("--deadline", type=float, default=60.0)
    args = parser.parse_args()
    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def read_stdin() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(stop.set_result, None)

    threading.Thread(target=read_stdin, daemon=True).start()
    result = await asyncio.wait_for(
        stream(args.url, args.every, args.ping_interval, args.ping_timeout, stop),
        timeout=args.deadline)
    report(result)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
