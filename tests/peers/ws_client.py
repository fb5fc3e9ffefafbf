#!/usr/bin/env python3
"""A Python `websockets` client that checks heartwire's native `/ws` protocol.

    python3 tests/peers/ws_client.py ws://127.0.0.1:PORT/ws [--ping-interval 0.2]
    python3 tests/peers/ws_client.py wss://localhost:PORT/ws --ca ca.pem

It speaks docs/PROTOCOL.md as an unchanged third-party client would, with its own
RFC 6455 keepalive (`ping_interval` / `ping_timeout` of `websockets`), and checks:

1. the first frame is `hello` with `session`, `ping_interval_ms`, `ping_timeout_ms`, `server`;
2. `{"op":"ping","t":…,"tag":…}` is answered by `pong` carrying the same `t` and `tag`;
3. `subscribe` to a fresh channel is answered by `subscribed` with that channel and a `seq`;
4. `publish` with an `id` is answered by `ack` (same `id`) and by the client's own `message`
   with the channel, the data as sent and `seq` = subscribed `seq` + 1, equal to the ack's;
5. a frame that is not JSON gets `error` `bad_json`, an unknown op gets `error` `unknown_op`,
   a binary frame gets `error` `unsupported`, and the connection stays open;
6. the connection survives a few keepalive intervals, with the client's own Pings answered
   (the measured latency is set) and no frame arriving that nothing asked for;
7. a close with 1000 is answered by a close with 1000.

It prints one JSON line: {"ok": bool, "checks": {...}, "observed": {...}, "failures": [...]}
and exits 0 only when every check passed (1 when one failed, 2 on a usage or setup error).
Every wait is bounded; the whole run is bounded by `--deadline` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import ssl
import sys
import time
from typing import Any, Callable

try:
    from websockets.asyncio.client import ClientConnection, connect
    from websockets.exceptions import ConnectionClosed
except ImportError as err:  # pragma: no cover - the message is the point
    print(
        f"ws_client.py: the Python package 'websockets' is missing ({err}); "
        "run scripts/test, which installs tests/peers/requirements.txt",
        file=sys.stderr,
    )
    sys.exit(2)

Frame = dict[str, Any]


class CheckFailed(Exception):
    """A check failed; the run stops and reports it."""


class Session:
    """One connection, with frames that arrived but were not yet asked for."""

    def __init__(self, ws: ClientConnection, wait: float) -> None:
        self.ws = ws
        self.wait = wait
        self.pending: list[Frame] = []
        self.received = 0

    async def send(self, frame: Frame) -> None:
        await self.ws.send(json.dumps(frame))

    async def take(self, what: str, pred: Callable[[Frame], bool]) -> Frame:
        """Return the first frame matching `pred`, buffering the others; bounded in time."""
        for i, frame in enumerate(self.pending):
            if pred(frame):
                return self.pending.pop(i)
        deadline = time.monotonic() + self.wait
        for _ in range(64):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                raw = await asyncio.wait_for(self.ws.recv(), timeout=left)
            except asyncio.TimeoutError:
                break
            except ConnectionClosed as closed:
                raise CheckFailed(f"connection closed while waiting for {what}: {closed}") from None
            self.received += 1
            if not isinstance(raw, str):
                raise CheckFailed(f"binary frame from the server while waiting for {what}")
            try:
                frame = json.loads(raw)
            except ValueError:
                raise CheckFailed(f"a frame that is not JSON while waiting for {what}: {raw!r}") from None
            if not isinstance(frame, dict):
                raise CheckFailed(f"a frame that is not a JSON object: {raw!r}")
            if pred(frame):
                return frame
            self.pending.append(frame)
        raise CheckFailed(
            f"no {what} within {self.wait} s; frames not asked for: {self.pending!r}"
        )


def is_op(op: str, **fields: Any) -> Callable[[Frame], bool]:
    return lambda f: f.get("op") == op and all(f.get(k) == v for k, v in fields.items())


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


async def run(args: argparse.Namespace, checks: dict[str, bool], observed: dict[str, Any]) -> None:
    def check(name: str, ok: bool, detail: str) -> None:
        checks[name] = ok
        if not ok:
            raise CheckFailed(f"{name}: {detail}")

    # wss://: the server's certificate must chain to the CA given, checked by Python's ssl.
    tls = ssl.create_default_context(cafile=args.ca) if args.url.startswith("wss://") else None
    async with connect(
        args.url,
        ssl=tls,
        ping_interval=args.ping_interval,
        ping_timeout=args.ping_timeout,
        close_timeout=args.wait,
        open_timeout=args.wait,
        proxy=None,
        compression=None,
    ) as ws:
        s = Session(ws, args.wait)

        # 1. hello, first frame of every connection.
        hello = await s.take("hello", lambda f: True)
        raw = json.dumps(hello)
        observed["hello"] = hello
        check(
            "hello",
            isinstance(hello, dict)
            and hello.get("op") == "hello"
            and isinstance(hello.get("session"), str)
            and hello["session"] != ""
            and is_int(hello.get("ping_interval_ms"))
            and is_int(hello.get("ping_timeout_ms"))
            and isinstance(hello.get("server"), str),
            f"first frame is not a complete hello: {raw!r}",
        )
        if args.expect_ping_interval_ms is not None:
            check(
                "hello_ping_interval",
                hello["ping_interval_ms"] == args.expect_ping_interval_ms,
                f"ping_interval_ms {hello['ping_interval_ms']} != {args.expect_ping_interval_ms}",
            )

        # 2. application-level ping: the pong echoes every extra field.
        t = round(time.time(), 3)
        tag = secrets.token_hex(4)
        await s.send({"op": "ping", "t": t, "tag": tag})
        pong = await s.take("pong", is_op("pong"))
        observed["pong"] = pong
        check("pong", pong.get("t") == t and pong.get("tag") == tag, f"pong {pong!r} lost t={t} tag={tag}")

        # 3. subscribe to a channel no one else uses.
        channel = f"interop:py-{secrets.token_hex(6)}"
        await s.send({"op": "subscribe", "channel": channel})
        sub = await s.take("subscribed", is_op("subscribed", channel=channel))
        observed["subscribed"] = sub
        check("subscribed", is_int(sub.get("seq")) and sub["seq"] >= 0, f"bad subscribed: {sub!r}")

        # 4. publish: ack and our own message, with the next seq.
        data = {"from": "ws_client.py", "text": "hi", "n": [1, 2.5, None, True]}
        await s.send({"op": "publish", "channel": channel, "data": data, "id": "p1"})
        ack = await s.take("ack", is_op("ack", id="p1"))
        msg = await s.take("message", is_op("message", channel=channel))
        observed["ack"] = ack
        observed["message"] = msg
        check("ack", is_int(ack.get("seq")), f"ack without an integer seq: {ack!r}")
        check("message_data", msg.get("data") == data, f"message data {msg.get('data')!r} != {data!r}")
        check(
            "message_seq",
            msg.get("seq") == sub["seq"] + 1 and msg.get("seq") == ack["seq"],
            f"message seq {msg.get('seq')!r}, ack seq {ack['seq']!r}, subscribed seq {sub['seq']!r}",
        )

        # 5. malformed frames get an error envelope and the connection stays open.
        await ws.send("this is {not json")
        err = await s.take("error", is_op("error"))
        observed["error_bad_json"] = err
        check("error_bad_json", err.get("code") == "bad_json" and isinstance(err.get("reason"), str), f"{err!r}")
        await s.send({"op": "no-such-op"})
        err = await s.take("error", is_op("error"))
        observed["error_unknown_op"] = err
        check("error_unknown_op", err.get("code") == "unknown_op", f"{err!r}")
        await ws.send(b"\x00\x01binary")
        err = await s.take("error", is_op("error"))
        observed["error_binary"] = err
        check("error_binary", err.get("code") == "unsupported", f"{err!r}")
        await s.send({"op": "ping", "t": "still-open"})
        pong = await s.take("pong", is_op("pong", t="still-open"))
        check("open_after_errors", True, "")

        # 6. stay a few keepalive intervals; our Pings must be answered, nothing unasked may come.
        stay_until = time.monotonic() + args.stay
        for _ in range(10_000):
            left = stay_until - time.monotonic()
            if left <= 0:
                break
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=left)
            except asyncio.TimeoutError:
                break
            except ConnectionClosed as closed:
                raise CheckFailed(f"stay: connection closed by the server: {closed}") from None
            s.pending.append({"unasked": raw if isinstance(raw, str) else repr(raw)})
        observed["latency_s"] = ws.latency
        # `latency` is set from the Pong to a keepalive Ping; 0 means none came back.
        check("keepalive_pongs", ws.latency > 0, "no keepalive Pong from the server")
        check("nothing_unasked", not s.pending, f"frames that nothing asked for: {s.pending!r}")

        # 7. close 1000, answered by 1000.
        await ws.close(1000, "done")
        observed["close_code"] = ws.close_code
        observed["close_reason"] = ws.close_reason
        check("close_1000", ws.close_code == 1000, f"server answered close with {ws.close_code!r}")
        observed["frames_received"] = s.received


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="ws://127.0.0.1:PORT/ws")
    parser.add_argument("--ping-interval", type=float, default=0.2, help="client keepalive Ping interval, s")
    parser.add_argument("--ping-timeout", type=float, default=0.2, help="client keepalive Pong timeout, s")
    parser.add_argument("--stay", type=float, default=1.0, help="seconds to stay connected, idle")
    parser.add_argument("--wait", type=float, default=5.0, help="longest wait for one answer, s")
    parser.add_argument("--deadline", type=float, default=30.0, help="longest whole run, s")
    parser.add_argument("--expect-ping-interval-ms", type=int, default=None, help="hello must announce this")
    parser.add_argument("--ca", default=None, help="for wss://: trust only this CA file (PEM)")
    args = parser.parse_args()
    if not args.url.startswith(("ws://127.0.0.1:", "wss://localhost:", "wss://127.0.0.1:")):
        parser.error("the URL must be ws://127.0.0.1:PORT/… or wss://localhost:PORT/…: tests talk only to loopback")
    if args.url.startswith("wss://") and args.ca is None:
        parser.error("wss:// needs --ca, the test CA's certificate")

    checks: dict[str, bool] = {}
    observed: dict[str, Any] = {}
    failures: list[str] = []
    started = time.monotonic()
    try:
        asyncio.run(asyncio.wait_for(run(args, checks, observed), timeout=args.deadline))
    except CheckFailed as failure:
        failures.append(str(failure))
    except asyncio.TimeoutError:
        failures.append(f"the run took longer than {args.deadline} s")
    except (OSError, ConnectionClosed, ValueError) as err:
        failures.append(f"{type(err).__name__}: {err}")
    expected = 13 + (args.expect_ping_interval_ms is not None)
    if not failures and len(checks) != expected:
        failures.append(f"ran {len(checks)} checks, expected {expected}")
    ok = not failures and all(checks.values())
    observed["elapsed_s"] = round(time.monotonic() - started, 3)
    print(json.dumps({"ok": ok, "checks": checks, "observed": observed, "failures": failures}), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
