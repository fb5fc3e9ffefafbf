"""The refresh schedule on synthetic time: when a token is refreshed, once, and again
after a refusal; the same cases as the Rust machine's."""

from __future__ import annotations

from heartwire.refresh import Refresh, refresh_after


def test_a_refresh_comes_at_the_earlier_of_80_percent_and_30_s_before_but_not_before_half() -> None:
    assert refresh_after(3600) == 2880
    assert refresh_after(120) == 90
    assert refresh_after(40) == 20
    assert refresh_after(2) == 1


def test_a_refresh_is_due_once_and_waits_for_its_answer() -> None:
    refresh = Refresh()
    assert refresh.poll_timeout() is None
    assert not refresh.handle_timeout(9999)
    refresh.handle_lifetime(0, 120)
    assert refresh.poll_timeout() == 90
    assert not refresh.handle_timeout(89)
    assert refresh.handle_timeout(90)
    assert refresh.pending and refresh.poll_timeout() is None
    assert not refresh.handle_timeout(100)
    refresh.handle_lifetime(91, 120)
    assert not refresh.pending and refresh.poll_timeout() == 181
    # The same token again: its lifetime shrinks until it is too short.
    refresh.handle_lifetime(180, 1.999)
    assert refresh.poll_timeout() is None
    refresh.handle_lifetime(200, None)
    assert refresh.poll_timeout() is None


def test_a_refused_refresh_is_tried_again_at_half_of_what_is_left() -> None:
    refresh = Refresh()
    refresh.handle_lifetime(0, 40)
    assert refresh.handle_timeout(20)
    refresh.handle_refused(20)
    assert refresh.poll_timeout() == 30
    assert refresh.handle_timeout(30)
    refresh.handle_refused(30)
    assert refresh.poll_timeout() == 35
    assert refresh.handle_timeout(39)
    refresh.handle_refused(39.5)
    assert refresh.poll_timeout() is None
    refresh.handle_refused(39)
    assert refresh.poll_timeout() is None
