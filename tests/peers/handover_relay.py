#!/usr/bin/env python3
"""A relay between the two processes of a live upgrade that claims another version of the
handover format: it makes a real new process see a version it does not know.

    python3 tests/peers/handover_relay.py LISTEN_PATH OLD_PATH --version 9999

It listens on the Unix socket LISTEN_PATH, prints {"state": "listening"}, and for the one
process that connects, connects to the old process's upgrade socket OLD_PATH and relays
both ways, file descriptors included (SCM_RIGHTS, as they came), after rewriting the
version of the first message, {"begin": {"version": N}}. It prints {"state": "done"} when
either side closes, and exits.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys
import threading

MAX_FDS = 8


def relay(source: socket.socket, target: socket.socket) -> None:
    try:
        while True:
            data, fds, _flags, _addr = socket.recv_fds(source, 65536, MAX_FDS)
            if not data:
                return
            socket.send_fds(target, [data], fds)
            for fd in fds:
                os.close(fd)
    except OSError:
        return
    finally:
        for side in (source, target):
            try:
                side.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def first_message(old: socket.socket, version: int) -> tuple[bytes, list[int]]:
    """Reads the old process's first message with its descriptor; rewrites its version."""
    data, fds = b"", []
    while len(data) < 4 or len(data) < 4 + struct.unpack(">I", data[:4])[0]:
        chunk, more, _flags, _addr = socket.recv_fds(old, 65536, MAX_FDS)
        if not chunk:
            sys.exit("the old process closed before its first message")
        data += chunk
        fds += more
    length = struct.unpack(">I", data[:4])[0]
    message = json.loads(data[4:4 + length])
    message["begin"]["version"] = version
    body = json.dumps(message).encode()
    return struct.pack(">I", len(body)) + body + data[4 + length:], fds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("listen")
    parser.add_argument("old")
    parser.add_argument("--version", type=int, required=True)
    args = parser.parse_args()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(args.listen)
    server.listen(1)
    print(json.dumps({"state": "listening"}), flush=True)
    new, _ = server.accept()
    old = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old.connect(args.old)
    data, fds = first_message(old, args.version)
    socket.send_fds(new, [data], fds)
    for fd in fds:
        os.close(fd)
    threads = [threading.Thread(target=relay, args=pair, daemon=True)
               for pair in ((old, new), (new, old))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps({"state": "done"}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
