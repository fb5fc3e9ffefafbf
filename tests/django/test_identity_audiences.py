"""django-websocket-redis's user, group and session audiences with real Django, the real
add-on and a real Redis: heartwire asks the Django site who each upgrade belongs to (its
connect hook answers from the session), and Django's own RedisPublisher must reach exactly
the sockets of that user, group or session, never another's.

Each socket is checked by everything it receives up to a marker published after the
messages under test: its list must be exactly the expected one, so a message that reached
a wrong socket fails the test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
import redis as redis_py
from websockets.sync.client import ClientConnection, connect

from peers import PATIENCE, DjangoSite, HeartwireNode, RedisServer, wait_until

PREFIX = "hwtest:"
EVERY_AUDIENCE = "subscribe-broadcast&subscribe-user&subscribe-group&subscribe-session"


def publish(text: str, facility: str, **audience: object) -> None:
    """Publishes as a Django view would, with django-websocket-redis's own publisher."""
    from ws4redis.publisher import RedisPublisher
    from ws4redis.redis_store import RedisMessage

    RedisPublisher(facility=facility, **audience).publish_message(RedisMessage(text))


class Sockets:
    """The test's sockets, by name, with the Redis channels each one subscribes to."""

    def __init__(self, redis: RedisServer) -> None:
        self.redis = redis_py.Redis(port=redis.port)
        self.stack = ExitStack()
        self.open: dict[str, ClientConnection] = {}
        self.channels: dict[str, set[tuple[int, str]]] = {}

    def add(self, name: str, node: HeartwireNode, facility: str, flags: str, session: str | None,
            subscribes: list[str], *, read: bool = True) -> ClientConnection:
        """Opens `name` on `node`, with the session cookie `session`, and waits until its
        subscriptions (`subscribes`, Redis channels without the prefix) are in place. What
        it receives is checked by `received_until` unless `read` is false."""
        headers = {"Cookie": f"sessionid={session}"} if session else {}
        socket = self.stack.enter_context(
            connect(node.url(f"/ws/{facility}?{flags}"), additional_headers=headers, open_timeout=PATIENCE)
        )
        # The server's task subscribes before it reads a frame: once the Pong is back, every
        # subscription was asked for.
        assert socket.ping().wait(PATIENCE), f"{name}: no pong"
        if read:
            self.open[name] = socket
        for channel in subscribes:
            self.channels.setdefault(PREFIX + channel, set()).add((node.port, name))
        self.wait_for_redis()
        # Each of its channels delivers in order from its join's end; across channels,
        # a message that comes while another channel still joins may pass one published
        # before it (docs/PROTOCOL.md). The markers the test reads up to are published on
        # another channel than the messages it checks, so every join must be over first.
        wait_until(lambda: node.joining() == 0, f"{name}: every subscription joined")
        return socket

    def wait_for_redis(self) -> None:
        """Waits until each node with a socket on a channel subscribed to it in Redis: a
        message published from then on reaches the socket."""
        def subscribed() -> bool:
            for channel, holders in self.channels.items():
                nodes = len({port for port, _ in holders})
                [(_, count)] = self.redis.pubsub_numsub(channel)
                if count < nodes:
                    return False
            return True

        wait_until(subscribed, "every node subscribed in Redis")

    def received_until(self, marker: str) -> dict[str, list[str]]:
        """What each socket received up to `marker`, which ends every list."""
        received: dict[str, list[str]] = {}
        for name, socket in self.open.items():
            texts: list[str] = []
            while not texts or texts[-1] != marker:
                text = socket.recv(timeout=PATIENCE)
                assert isinstance(text, str), f"{name} got a binary frame"
                texts.append(text)
            received[name] = texts
        return received

    def close(self) -> None:
        self.stack.close()
        self.redis.close()


@pytest.fixture
def sockets(redis: RedisServer) -> Iterator[Sockets]:
    opened = Sockets(redis)
    yield opened
    opened.close()


def log_in(site: DjangoSite, user: str) -> str:
    return site.log_in(user, f"{user}-password")


def test_django_publishes_reach_exactly_their_audience(
    site: DjangoSite, nodes: list[HeartwireNode], sockets: Sockets
) -> None:
    ada_1, ada_2, bob, eve = (log_in(site, user) for user in ("ada", "ada", "bob", "eve"))
    facility = "chat"

    def own(user: str, groups: list[str], session: str) -> list[str]:
        return [f"broadcast:{facility}", f"user:{user}:{facility}", f"session:{session}:{facility}",
                *(f"group:{group}:{facility}" for group in groups)]

    # Ada in two browsers (two sessions), on two nodes; bob and eve; a visitor not logged in.
    sockets.add("ada-1", nodes[0], facility, EVERY_AUDIENCE, ada_1, own("ada", ["staff"], ada_1))
    sockets.add("ada-2", nodes[1], facility, EVERY_AUDIENCE, ada_2, own("ada", ["staff"], ada_2))
    sockets.add("bob", nodes[0], facility, EVERY_AUDIENCE, bob, own("bob", ["staff", "ops"], bob))
    sockets.add("eve", nodes[1], facility, EVERY_AUDIENCE, eve, own("eve", [], eve))
    sockets.add("visitor", nodes[0], facility, EVERY_AUDIENCE, None, [f"broadcast:{facility}"])

    publish("to ada", facility, users=["ada"])
    publish("to staff", facility, groups=["staff"])
    publish("to ops", facility, groups=["ops"])
    publish("to ada's first browser", facility, sessions=[ada_1])
    publish("to bob and eve", facility, users=["bob", "eve"])
    publish("to bob elsewhere", "elsewhere", users=["bob"])
    publish("to nobody", facility, users=["mallory"], groups=["admins"], sessions=["0" * 32])
    publish("end", facility, broadcast=True)

    assert sockets.received_until("end") == {
        "ada-1": ["to ada", "to staff", "to ada's first browser", "end"],
        "ada-2": ["to ada", "to staff", "end"],
        "bob": ["to staff", "to ops", "to bob and eve", "end"],
        "eve": ["to bob and eve", "end"],
        "visitor": ["end"],
    }


def test_sockets_publish_to_their_own_user_groups_and_session(
    site: DjangoSite, nodes: list[HeartwireNode], sockets: Sockets, redis: RedisServer
) -> None:
    ada_1, ada_2, bob, eve = (log_in(site, user) for user in ("ada", "ada", "bob", "eve"))
    facility = "desk"
    raw = redis_py.Redis(port=redis.port)
    watcher = raw.pubsub()
    watcher.subscribe(f"{PREFIX}user:ada:{facility}")
    assert watcher.get_message(timeout=PATIENCE)["type"] == "subscribe"

    writer = sockets.add("ada-1", nodes[0], facility, "publish-user&publish-group&publish-session", ada_1, [],
                         read=False)
    sockets.add("ada-2", nodes[1], facility, EVERY_AUDIENCE, ada_2,
                [f"user:ada:{facility}", f"group:staff:{facility}", f"broadcast:{facility}"])
    sockets.add("bob", nodes[0], facility, EVERY_AUDIENCE, bob,
                [f"group:staff:{facility}", f"group:ops:{facility}", f"broadcast:{facility}"])
    sockets.add("eve", nodes[1], facility, EVERY_AUDIENCE, eve, [f"broadcast:{facility}"])

    writer.send("ada writes")
    # Sent on the channels of ada, of staff and of ada's first session: ada's other browser
    # is on two of them.
    raw_message = watcher.get_message(timeout=PATIENCE)
    assert raw_message is not None and raw_message["data"] == b"ada writes"
    publish("end", facility, broadcast=True)
    assert sockets.received_until("end") == {
        "ada-2": ["ada writes", "ada writes", "end"],
        "bob": ["ada writes", "end"],
        "eve": ["end"],
    }
    # Kept as django-websocket-redis keeps it (SETEX), for late joiners and fetch_message.
    for audience in ("user:ada", "group:staff", f"session:{ada_1}"):
        assert raw.get(f"{PREFIX}{audience}:{facility}") == b"ada writes", audience
    assert raw.get(f"{PREFIX}group:ops:{facility}") is None
    watcher.close()
    raw.close()


def test_a_late_joiner_gets_its_own_last_message_and_nobody_elses(
    site: DjangoSite, nodes: list[HeartwireNode], sockets: Sockets
) -> None:
    facility = "news"
    publish("last for ada", facility, users=["ada"])
    publish("last for staff", facility, groups=["staff"])
    ada, eve = log_in(site, "ada"), log_in(site, "eve")
    # One audience per socket: a channel's last message comes before its live ones.
    sockets.add("ada-user", nodes[0], facility, "subscribe-user", ada, [f"user:ada:{facility}"])
    sockets.add("ada-group", nodes[1], facility, "subscribe-group", ada, [f"group:staff:{facility}"])
    sockets.add("eve-user", nodes[0], facility, "subscribe-user", eve, [f"user:eve:{facility}"])
    publish("end", facility, users=["ada", "eve"], groups=["staff"])
    assert sockets.received_until("end") == {
        "ada-user": ["last for ada", "end"],
        "ada-group": ["last for staff", "end"],
        "eve-user": ["end"],
    }


def test_a_session_that_is_not_logged_in_has_no_identity_audience(
    site: DjangoSite, nodes: list[HeartwireNode], sockets: Sockets
) -> None:
    facility = "forged"
    ada = log_in(site, "ada")
    # A cookie the site never issued: the hook answers that nobody is logged in.
    sockets.add("forger", nodes[0], facility, EVERY_AUDIENCE, "f" * 32, [f"broadcast:{facility}"])
    sockets.add("ada", nodes[1], facility, EVERY_AUDIENCE, ada, [f"user:ada:{facility}"])
    publish("to ada", facility, users=["ada"], sessions=["f" * 32])
    publish("end", facility, broadcast=True)
    assert sockets.received_until("end") == {
        "forger": ["end"],
        "ada": ["to ada", "end"],
    }


def test_the_native_endpoint_refuses_another_users_channel(
    site: DjangoSite, nodes: list[HeartwireNode]
) -> None:
    eve = log_in(site, "eve")
    with connect(nodes[0].url("/ws"), additional_headers={"Cookie": f"sessionid={eve}"},
                 open_timeout=PATIENCE) as socket:
        hello = json.loads(socket.recv(timeout=PATIENCE))
        assert hello["op"] == "hello" and hello["user"] == "eve", hello
        socket.send(json.dumps({"op": "subscribe", "channel": "user:ada:chat"}))
        refusal = json.loads(socket.recv(timeout=PATIENCE))
        assert refusal["op"] == "error" and refusal["code"] == "forbidden", refusal
        assert refusal["channel"] == "user:ada:chat", refusal
        socket.send(json.dumps({"op": "subscribe", "channel": "user:eve:chat"}))
        confirmation = json.loads(socket.recv(timeout=PATIENCE))
        assert confirmation["op"] == "subscribed" and confirmation["channel"] == "user:eve:chat", confirmation
