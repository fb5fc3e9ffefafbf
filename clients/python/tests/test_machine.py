"""The client's lifecycle on explicit time: the states it announces, where attempts go,
and what comes after each kind of end."""

from __future__ import annotations

from heartwire import BackoffConfig, ClientConfig, State, StopReason
from heartwire.machine import AttemptFailure, Lifecycle, Stop, Wait

URLS = ["ws://a/ws", "ws://b/ws"]


def lifecycle(**overrides: object) -> Lifecycle:
    settings: dict[str, object] = {"backoff": BackoffConfig(base=0.1, cap=1.0), "fail_back_after": 30.0, "jitter_seed": 1}
    settings.update(overrides)
    return Lifecycle(URLS, ClientConfig(**settings))  # type: ignore[arg-type]


def test_states_of_a_connection_lost_and_found() -> None:
    life = lifecycle()
    assert life.state is State.CONNECTING
    assert life.begin_attempt(0.0) == 0
    assert life.attempting() is None  # connecting already
    opened = life.opened(0, 0.1, "s1")
    assert opened is not None and (opened.previous, opened.state, opened.session) == (State.CONNECTING, State.OPEN, "s1")
    degraded = life.degraded(True)
    assert degraded is not None and degraded.state is State.DEGRADED
    assert life.degraded(True) is None
    back = life.degraded(False)
    assert back is not None and back.state is State.OPEN
    after = life.connection_ended(5.0, 1006, "")
    assert isinstance(after, Wait) and 0.0 <= after.delay <= 0.1 and after.attempt == 1
    waiting = life.waiting(after, "close 1006", 1006)
    assert waiting is not None and (waiting.state, waiting.delay, waiting.close_code) == (State.RECONNECTING, after.delay, 1006)
    # The primary failed: the next attempt goes to the backup, announced once more.
    assert life.begin_attempt(5.1) == 1
    attempting = life.attempting()
    assert attempting is not None and (attempting.state, attempting.delay, attempting.url) == (State.RECONNECTING, None, URLS[1])


def test_a_failed_first_attempt_goes_back_to_connecting() -> None:
    life = lifecycle()
    life.begin_attempt(0.0)
    after = life.attempt_failed(0, 0.0, AttemptFailure("refused"))
    assert isinstance(after, Wait)
    waiting = life.waiting(after, "refused", None)
    assert waiting is not None and waiting.state is State.RECONNECTING
    life.begin_attempt(1.0)
    attempting = life.attempting()
    assert attempting is not None and attempting.state is State.CONNECTING


def test_do_not_come_back_ends_the_client_even_with_backups() -> None:
    life = lifecycle()
    life.opened(0, 0.0, "s")
    after = life.connection_ended(1.0, 4401, "authentication failed")
    assert after == Stop(StopReason.DO_NOT_COME_BACK, "close 4401 (authentication failed)")
    closed = life.closed(after)
    assert closed is not None and (closed.state, closed.stop) == (State.CLOSED, StopReason.DO_NOT_COME_BACK)
    assert life.closed(after) is None


def test_a_close_before_hello_follows_the_close_rules() -> None:
    life = lifecycle()
    failure = AttemptFailure("closed with 4403 before hello", close_code=4403, close_reason="forbidden")
    after = life.attempt_failed(0, 0.0, failure)
    assert isinstance(after, Stop) and after.reason is StopReason.DO_NOT_COME_BACK
    restart = AttemptFailure("closed with 1013", close_code=1013, close_reason="try again later; retry after 700 ms")
    assert lifecycle().attempt_failed(0, 0.0, restart) == Wait(0.7, 1)


def test_hints_replace_the_jittered_delay() -> None:
    life = lifecycle()
    life.opened(0, 0.0, "s")
    assert life.connection_ended(1.0, 1012, "server restarting; retry after 1500 ms", hint=0.25) == Wait(0.25, 1)
    assert life.attempt_failed(0, 2.0, AttemptFailure("HTTP 503", retry_after=3.0)) == Wait(3.0, 2)


def test_endpoints_that_refuse_for_good_are_dropped_until_none_is_left() -> None:
    life = lifecycle()
    after = life.attempt_failed(0, 0.0, AttemptFailure("HTTP 404", permanent=True))
    assert isinstance(after, Wait)
    assert life.begin_attempt(100.0) == 1
    last = life.attempt_failed(1, 100.0, AttemptFailure("HTTP 401", permanent=True))
    assert last == Stop(StopReason.NO_USABLE_ENDPOINT, "HTTP 401")


def test_the_policy_gives_up() -> None:
    life = lifecycle(backoff=BackoffConfig(base=0.1, cap=1.0, max_attempts=2))
    for _ in range(2):
        assert isinstance(life.attempt_failed(0, 0.0, AttemptFailure("refused")), Wait)
    after = life.attempt_failed(0, 0.0, AttemptFailure("refused"))
    assert after == Stop(StopReason.GAVE_UP, "gave up after 2 attempts; the last failed: refused")


def test_fail_back_is_probed_after_the_period_and_resets_the_streak() -> None:
    life = lifecycle()
    life.attempt_failed(0, 0.0, AttemptFailure("refused"))
    assert life.begin_attempt(0.5) == 1
    life.opened(1, 0.6, "s1")
    assert life.fail_back_due(1.0) == 30.0
    assert life.fail_back_candidate(29.0) is None
    assert life.fail_back_candidate(30.0) == 0
    life.fail_back_failed(0, 30.0)
    assert life.fail_back_due(31.0) == 60.0
    moved = life.failed_back(0, 60.0, "s2")
    assert moved is not None and (moved.previous, moved.state, moved.url, moved.session) == (State.OPEN, State.OPEN, URLS[0], "s2")
    assert life.fail_back_due(61.0) is None
