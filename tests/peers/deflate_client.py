#!/usr/bin/env python3
"""permessage-deflate against heartwire's `/echo`, from Python: `websockets` and raw sockets.

    python3 tests/peers/deflate_client.py ws://127.0.0.1:PORT/echo --max-message-size BYTES

Checks:
1. `websockets` (which offers permessage-deflate by default) gets the extension agreed,
   with `server_no_context_takeover` and `client_no_context_takeover`, and its compressed
   messages (a JSON text and a binary of 64 KiB) come back as sent;
2. an offer with a bad parameter (`server_max_window_bits=16`) is declined: the upgrade
   succeeds, with no `Sec-WebSocket-Extensions` in the answer, and the connection works;
3. a decompression bomb (one compressed frame of about half a megabyte that inflates to
   512 MiB) is answered by a close with 1009 once the inflated size passes the limit.

Prints one JSON line {"ok": bool, "checks": {...}, "observed": {...}, "failures": [...]}
and exits 0 only when every check passed. Every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import struct
import sys
import time
import zlib
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import connect

WAIT = 10.0


def handshake(url: str, extensions: str) -> tuple[socket.socket, dict[str, str], bytes]:
    """Opens a raw WebSocket; returns the socket, the answer's headers and any bytes after it."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=WAIT)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Extensions: {extensions}\r\n\r\n"
    )
    sock.sendall(request.encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("the server closed during the handshake")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    if " 101 " not in lines[0] + " ":
        raise RuntimeError(f"no upgrade: {lines[0]}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return sock, headers, rest


def frame(opcode: int, payload: bytes, rsv1: bool = False) -> bytes:
    """A masked client frame."""
    first = 0x80 | (0x40 if rsv1 else 0) | opcode
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", first, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", first, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, length)
    key = (mask * (length // 4 + 1))[:length]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(length, "big")
    return header + mask + masked


def read_frame(sock: socket.socket, buffered: bytes) -> tuple[int, int, bytes]:
    """The next frame from the server: (first byte, opcode, payload)."""
    data = buffered

    def need(count: int) -> None:
        nonlocal data
        while len(data) < count:
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError("the server closed the TCP connection without a close frame")
            data += chunk

    need(2)
    first, second = data[0], data[1]
    length, offset = second & 0x7F, 2
    if length == 126:
        need(4)
        length, offset = struct.unpack("!H", data[2:4])[0], 4
    elif length == 127:
        need(10)
        length, offset = struct.unpack("!Q", data[2:10])[0], 10
    need(offset + length)
    return first, first & 0x0F, data[offset : offset + length]


async def with_websockets(url: str, checks: dict[str, bool], observed: dict[str, Any]) -> None:
    async with connect(url, open_timeout=WAIT, close_timeout=WAIT, max_size=None) as ws:
        agreed = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        observed["agreed"] = agreed
        checks["deflate_agreed"] = agreed.startswith("permessage-deflate")
        checks["no_context_takeover_either_way"] = (
            "server_no_context_takeover" in agreed and "client_no_context_takeover" in agreed
        )
        text = json.dumps({"op": "message", "data": ["chat line %d" % n for n in range(100)]})
        await ws.send(text)
        checks["text_echoed"] = await asyncio.wait_for(ws.recv(), WAIT) == text
        binary = bytes(range(256)) * 256
        await ws.send(binary)
        checks["binary_echoed"] = await asyncio.wait_for(ws.recv(), WAIT) == binary
        checks["closed_1000"] = True
        await ws.close()
        checks["closed_1000"] = ws.close_code == 1000


def bad_offer(url: str, checks: dict[str, bool], observed: dict[str, Any]) -> None:
    sock, headers, rest = handshake(url, "permessage-deflate; server_max_window_bits=16")
    with sock:
        observed["bad_offer_answer"] = headers.get("sec-websocket-extensions")
        checks["bad_offer_declined"] = "sec-websocket-extensions" not in headers
        sock.sendall(frame(0x1, b"still here"))
        first, opcode, payload = read_frame(sock, rest)
        checks["declined_connection_works"] = opcode == 0x1 and payload == b"still here"
        checks["declined_connection_uncompressed"] = first & 0x40 == 0


def bomb(url: str, size: int, checks: dict[str, bool], observed: dict[str, Any]) -> None:
    # 1 MiB of zeros at the best ratio, ending in a sync flush: copies of it follow
    # each other as one deflate stream.
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    inflated_mib = 512
    payload = (chunk * inflated_mib)[:-4]
    observed["bomb_wire_bytes"] = len(payload)
    observed["bomb_inflated_bytes"] = inflated_mib << 20
    checks["bomb_smaller_than_limit"] = len(payload) < size
    sock, headers, rest = handshake(url, "permessage-deflate; client_max_window_bits")
    with sock:
        checks["bomb_deflate_agreed"] = "permessage-deflate" in headers.get(
            "sec-websocket-extensions", ""
        )
        started = time.monotonic()
        try:
            sock.sendall(frame(0x2, payload, rsv1=True))
        except OSError:
            pass  # the server may close before it has read everything
        _, opcode, close = read_frame(sock, rest)
        observed["bomb_answer_s"] = round(time.monotonic() - started, 3)
        code = struct.unpack("!H", close[:2])[0] if opcode == 0x8 and len(close) >= 2 else None
        observed["bomb_close_code"] = code
        observed["bomb_close_reason"] = close[2:].decode(errors="replace")
        checks["bomb_closed_1009"] = code == 1009


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--max-message-size", type=int, required=True)
    args = parser.parse_args()
    checks: dict[str, bool] = {}
    observed: dict[str, Any] = {}
    failures: list[str] = []
    for name, step in [
        ("websockets", lambda: asyncio.run(with_websockets(args.url, checks, observed))),
        ("bad_offer", lambda: bad_offer(args.url, checks, observed)),
        ("bomb", lambda: bomb(args.url, args.max_message_size, checks, observed)),
    ]:
        try:
            step()
        except Exception as err:  # noqa: BLE001 - reported, and the run fails
            failures.append(f"{name}: {err!r}")
    failures += [f"check failed: {name}" for name, ok in checks.items() if not ok]
    ok = not failures and len(checks) >= 10
    print(json.dumps({"ok": ok, "checks": checks, "observed": observed, "failures": failures}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
