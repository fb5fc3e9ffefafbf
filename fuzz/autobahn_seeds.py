#!/usr/bin/env python3
"""Records what the Autobahn test suite's client sends, as seeds for the fuzz targets.

It starts `heartwire serve`, puts a recording TCP proxy in front of it, and runs kosoku's
fuzzingclient (the Autobahn cases 1-10, as scripts/autobahn does) through the proxy. Every
case is one connection, and kosoku runs one case at a time (-p 1): the connections come in
the order of the cases' start times. Each match is checked against the case's own wire log
(frames carry a random mask, so no two cases send alike).

Writes, into OUT:
  frame_decoder/autobahn-CASE   a limit byte (1 MiB), a byte for the cuts, then the frames the
                                client sent after the handshake, at most MAX_STREAM bytes
  upgrade_http/autobahn-request the client's upgrade request, as sent

Usage: autobahn_seeds.py --heartwire PATH --out DIR
"""

import argparse
import asyncio
import glob
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

# libFuzzer's -max_len in scripts/fuzz, less the two bytes that lead a frame_decoder input.
MAX_STREAM = 4096 - 2
# Recorded per connection at most: enough for MAX_STREAM, whatever the case sends.
RECORD_LIMIT = 64 * 1024
# frame_decoder's first byte: index 7 of its limits, 1 MiB, the server's default.
LIMIT_BYTE = 7


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Recorder:
    """A TCP proxy to upstream that keeps what each client sent, in connection order."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.connections = []
        self.port = None
        self.ready = threading.Event()

    async def handle(self, client_reader, client_writer):
        sent = bytearray()
        self.connections.append(sent)
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def pipe(reader, writer, record):
            try:
                while data := await reader.read(65536):
                    if record is not None and len(record) < RECORD_LIMIT:
                        record.extend(data[: RECORD_LIMIT - len(record)])
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

        await asyncio.gather(
            pipe(client_reader, upstream_writer, sent),
            pipe(upstream_reader, client_writer, None),
        )

    async def serve(self):
        server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self.ready.set()
        async with server:
            await server.serve_forever()

    def start(self):
        thread = threading.Thread(target=asyncio.run, args=(self.serve(),), daemon=True)
        thread.start()
        if not self.ready.wait(10):
            sys.exit("autobahn_seeds: the recording proxy did not start")


def start_heartwire(binary):
    port = free_port()
    server = subprocess.Popen(
        [binary, "serve", "--listen", f"127.0.0.1:{port}", "--max-message-size", "16MiB"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return server, port
        except OSError:
            if server.poll() is not None:
                break
            time.sleep(0.1)
    server.kill()
    sys.exit("autobahn_seeds: heartwire did not come up")


def logged_octets(report):
    """The first bytes the case's wire log shows the client sent: every entry in full, up to
    the first one the log cut short, and what that one shows."""
    logged = bytearray()
    for entry in report["wirelog"]:
        if entry[0] != "TO":
            continue
        length, octets = entry[1]
        shown = octets.split(" ")[0]
        logged.extend(bytes.fromhex(shown))
        if len(shown) != 2 * length:
            break
    return bytes(logged)


def check_match(report, stream, capped):
    """Exits unless `stream`, what a connection sent after its handshake, is what the case's
    wire log shows its client sent. The log shows the start of the client's bytes (every
    write in full, up to the first it cut short), except in the 9.x cases, which log only
    the close frame that ends their large messages: there the log must show the end of the
    stream, when the stream was recorded whole."""
    logged = logged_octets(report)
    # Either may be the shorter: the log cuts long writes, and bytes a client wrote after
    # the server closed (a close frame after a violation) never reached the proxy.
    common = min(len(stream), len(logged))
    if stream[:common] == logged[:common]:
        return
    if report["id"].startswith("9.") and (capped or stream.endswith(logged)):
        return
    sys.exit(f"autobahn_seeds: case {report['id']}: recorded bytes differ from its wire log")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heartwire", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    server, server_port = start_heartwire(args.heartwire)
    reports = tempfile.mkdtemp(prefix="autobahn-seeds-")
    try:
        recorder = Recorder(server_port)
        recorder.start()
        run = subprocess.run(
            ["kosoku", "-m", "fuzzingclient", "-p", "1", "-o", reports, "-x", "12.*", "-x", "13.*",
             f"ws://127.0.0.1:{recorder.port}/echo"],
            stdout=subprocess.DEVNULL,
            timeout=600,
        )
        if run.returncode != 0:
            sys.exit(f"autobahn_seeds: kosoku exited {run.returncode}")
    finally:
        server.kill()
        server.wait()

    cases = []
    for path in glob.glob(os.path.join(reports, "*.json")):
        if os.path.basename(path) != "index.json":
            with open(path) as file:
                cases.append(json.load(file))
    # The order kosoku ran them in, one at a time: the order of the connections.
    cases.sort(key=lambda report: report["started"])
    connections = [bytes(sent) for sent in recorder.connections]
    if len(connections) != len(cases):
        sys.exit(f"autobahn_seeds: {len(connections)} connections for {len(cases)} cases")

    frames_dir = os.path.join(args.out, "frame_decoder")
    http_dir = os.path.join(args.out, "upgrade_http")
    os.makedirs(frames_dir, exist_ok=True)
    os.makedirs(http_dir, exist_ok=True)
    for index, (report, sent) in enumerate(zip(cases, connections)):
        request_end = sent.find(b"\r\n\r\n")
        if request_end < 0:
            sys.exit(f"autobahn_seeds: case {report['id']}: no upgrade request recorded")
        request, stream = sent[: request_end + 4], sent[request_end + 4 :]
        check_match(report, stream, capped=len(sent) >= RECORD_LIMIT)
        if index == 0:
            with open(os.path.join(http_dir, "autobahn-request"), "wb") as file:
                file.write(request)
        with open(os.path.join(frames_dir, f"autobahn-{report['id']}"), "wb") as file:
            file.write(bytes([LIMIT_BYTE, index % 256]) + stream[:MAX_STREAM])
    print(f"autobahn_seeds: {len(cases)} cases recorded into {args.out}")


if __name__ == "__main__":
    main()
