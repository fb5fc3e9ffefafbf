"""The outbox: bounded, ids unique to the client, a window of publishes in flight, and
order kept when publishes go back to the front."""

from __future__ import annotations

import pytest

from heartwire import OutboxFull
from heartwire.outbox import Outbox


def ids(outbox: Outbox, now: float = 0.0) -> list[str]:
    sent = []
    while (publish := outbox.next_to_send(now)) is not None:
        sent.append(publish.id)
    return sent


def test_a_full_outbox_is_an_error_not_a_drop() -> None:
    outbox = Outbox(limit=2, in_flight_limit=10, prefix="p")
    outbox.push("c", "1")
    outbox.push("c", "2")
    with pytest.raises(OutboxFull):
        outbox.push("c", "3")
    # Sent but not acknowledged still counts.
    assert ids(outbox) == ["p-1", "p-2"]
    with pytest.raises(OutboxFull):
        outbox.push("c", "3")
    outbox.handle_ack("p-1")
    assert outbox.push("c", "3").id == "p-3"
    assert len(outbox) == 2


def test_publish_ids_are_unique_within_and_across_clients() -> None:
    one, other = Outbox(1000, 10), Outbox(1000, 10)
    made = {outbox.push("c", "0").id for _ in range(100) for outbox in (one, other)}
    assert len(made) == 200
    prefix, count = one.push("c", "0").id.split("-")
    assert len(prefix) == 16 and int(prefix, 16) >= 0 and count == "101"


def test_only_a_window_of_publishes_is_in_flight() -> None:
    outbox = Outbox(limit=10, in_flight_limit=2, prefix="p")
    for n in range(4):
        outbox.push("c", str(n))
    assert ids(outbox) == ["p-1", "p-2"]
    outbox.handle_ack("p-1")
    assert ids(outbox) == ["p-3"]


def test_a_lost_connection_sends_the_unacknowledged_again_first_in_order() -> None:
    outbox = Outbox(limit=10, in_flight_limit=3, prefix="p")
    for n in range(5):
        outbox.push("c", str(n))
    assert ids(outbox) == ["p-1", "p-2", "p-3"]
    outbox.handle_ack("p-2")
    outbox.handle_disconnected()
    assert ids(outbox) == ["p-1", "p-3", "p-4"]


def test_unavailable_requeues_from_the_refused_one_and_holds() -> None:
    outbox = Outbox(limit=10, in_flight_limit=10, prefix="p")
    for n in range(4):
        outbox.push("c", str(n))
    assert ids(outbox) == ["p-1", "p-2", "p-3", "p-4"]
    assert outbox.handle_unavailable("p-2", now=1.0, hold=0.5)
    assert not outbox.handle_unavailable("p-9", now=1.0, hold=0.5)
    assert outbox.hold_until == 1.5
    assert ids(outbox, 1.4) == []
    assert ids(outbox, 1.5) == ["p-2", "p-3", "p-4"]
    assert outbox.in_flight == 4


def test_an_ack_for_a_requeued_publish_takes_it_out() -> None:
    outbox = Outbox(limit=10, in_flight_limit=10, prefix="p")
    outbox.push("c", "0")
    outbox.push("c", "1")
    ids(outbox)
    outbox.handle_unavailable("p-1", now=0.0, hold=0.5)
    assert outbox.handle_ack("p-2") is not None
    assert ids(outbox, 1.0) == ["p-1"]


def test_a_refused_publish_leaves_and_close_takes_everything() -> None:
    outbox = Outbox(limit=10, in_flight_limit=1, prefix="p")
    for n in range(3):
        outbox.push("c", str(n))
    ids(outbox)
    assert outbox.handle_refused("p-1") is not None
    assert outbox.handle_refused("p-1") is None
    assert [publish.id for publish in outbox.take_all()] == ["p-2", "p-3"]
    assert len(outbox) == 0
