"""The client's liveness rules on explicit time: probe after silence, degraded at half the
timeout, dead at the timeout, any traffic proves life, and a client that is not reading
judges nothing."""

from __future__ import annotations

from heartwire.liveness import Liveness, Verdict

INTERVAL, TIMEOUT = 20.0, 20.0


def test_a_silent_server_is_probed_then_degraded_then_dead_within_the_bound() -> None:
    live = Liveness(INTERVAL, TIMEOUT, 0.0)
    assert live.detection_bound == 40.0
    assert live.poll_timeout() == INTERVAL
    assert live.handle_timeout(19.999) is None
    assert live.handle_timeout(20.0) is Verdict.PROBE
    live.handle_probe_sent(20.0)
    assert live.poll_timeout() == 30.0
    assert live.handle_timeout(29.999) is None
    assert live.handle_timeout(30.0) is Verdict.DEGRADED
    assert live.degraded
    assert live.poll_timeout() == 40.0
    assert live.handle_timeout(39.999) is None
    assert live.handle_timeout(40.0) is Verdict.DEAD


def test_any_traffic_answers_the_probe_and_ends_degraded() -> None:
    live = Liveness(INTERVAL, TIMEOUT, 0.0)
    live.handle_probe_sent(20.0)
    live.handle_timeout(30.0)
    assert live.handle_heard(35.0) is True
    assert not live.degraded
    assert live.poll_timeout() == 55.0
    assert live.handle_heard(36.0) is False


def test_a_busy_server_is_never_probed() -> None:
    live = Liveness(INTERVAL, TIMEOUT, 0.0)
    for second in range(1, 200):
        live.handle_heard(float(second))
        assert live.handle_timeout(float(second)) is None


def test_a_frame_at_the_deadline_keeps_the_server_alive() -> None:
    live = Liveness(INTERVAL, TIMEOUT, 0.0)
    live.handle_probe_sent(20.0)
    live.handle_heard(40.0)
    assert live.handle_timeout(40.0) is None


def test_a_second_probe_does_not_restart_the_clock() -> None:
    live = Liveness(INTERVAL, TIMEOUT, 0.0)
    live.handle_probe_sent(20.0)
    live.handle_probe_sent(25.0)
    assert live.handle_timeout(30.0) is Verdict.DEGRADED
    assert live.handle_timeout(40.0) is Verdict.DEAD


def test_a_late_check_declares_the_dead_server_dead_at_once() -> None:
    live = Liveness(INTERVAL, TIMEOUT, 0.0)
    live.handle_probe_sent(20.0)
    assert live.handle_timeout(100.0) is Verdict.DEAD


def test_silence_while_not_reading_proves_nothing() -> None:
    live = Liveness(INTERVAL, TIMEOUT, 0.0)
    live.handle_probe_sent(20.0)
    live.handle_deaf()
    assert live.poll_timeout() is None
    assert live.handle_timeout(500.0) is None
    # Reading again: a fresh probe at once, and the full timeout from it.
    live.handle_listening(500.0)
    assert live.handle_timeout(500.0) is Verdict.PROBE
    live.handle_probe_sent(500.0)
    assert live.handle_timeout(519.999) is Verdict.DEGRADED
    assert live.handle_timeout(520.0) is Verdict.DEAD


def test_reading_again_soon_after_traffic_needs_no_probe() -> None:
    live = Liveness(INTERVAL, TIMEOUT, 0.0)
    live.handle_deaf()
    live.handle_heard(10.0)
    live.handle_listening(12.0)
    assert live.handle_timeout(12.0) is None
    assert live.poll_timeout() == 30.0
