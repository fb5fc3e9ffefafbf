"""The reconnect policy on explicit time with a seeded generator: full jitter stays in its
window and spreads over it; limits and the healthy reset."""

from __future__ import annotations

import random

import pytest

from heartwire import BackoffConfig, InvalidConfig
from heartwire.backoff import Backoff, window

BASE, CAP = 0.1, 5.0


def config(**overrides: float | int | None) -> BackoffConfig:
    settings: dict[str, float | int | None] = {"base": BASE, "cap": CAP}
    settings.update(overrides)
    return BackoffConfig(**settings)  # type: ignore[arg-type]


def test_defaults_are_the_rust_and_js_clients() -> None:
    default = BackoffConfig()
    assert (default.base, default.cap, default.reset_after) == (0.5, 20.0, 30.0)
    assert default.max_attempts is None and default.max_elapsed is None


# (attempt, window): 500 ms · 2ⁿ⁻¹ up to 20 s.
WINDOWS = [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (6, 16.0), (7, 20.0), (8, 20.0), (200, 20.0)]


@pytest.mark.parametrize(("attempt", "expected"), WINDOWS)
def test_window_doubles_up_to_the_cap(attempt: int, expected: float) -> None:
    assert window(BackoffConfig(), attempt) == expected


def test_full_jitter_stays_within_its_window() -> None:
    rng = random.Random(7)
    for _ in range(200):
        backoff = Backoff(config())
        for attempt in range(1, 21):
            delay = backoff.next_delay(0.0, rng)
            assert delay is not None
            assert 0.0 <= delay <= min(CAP, BASE * 2 ** (attempt - 1)), attempt


def test_full_jitter_spreads_over_the_whole_window() -> None:
    rng = random.Random(42)
    delays = []
    for _ in range(1000):
        backoff = Backoff(config())
        for _ in range(10):
            backoff.next_delay(0.0, rng)
        delay = backoff.next_delay(0.0, rng)  # attempt 11: capped, uniform in [0, CAP]
        assert delay is not None
        delays.append(delay)
    buckets = [0] * 10
    for delay in delays:
        buckets[min(int(delay / CAP * 10), 9)] += 1
    assert all(50 <= count <= 150 for count in buckets), buckets
    assert CAP * 0.4 < sum(delays) / len(delays) < CAP * 0.6


def test_same_seed_same_delays() -> None:
    def draw(seed: int) -> list[float | None]:
        rng, backoff = random.Random(seed), Backoff(config())
        return [backoff.next_delay(0.0, rng) for _ in range(8)]

    assert draw(3) == draw(3)
    assert draw(3) != draw(4)


def test_gives_up_after_max_attempts() -> None:
    rng, backoff = random.Random(1), Backoff(config(max_attempts=3))
    for attempt in (1, 2, 3):
        assert backoff.next_delay(0.0, rng) is not None
        assert backoff.attempt == attempt
    assert backoff.next_delay(0.0, rng) is None
    assert backoff.next_attempt(0.0) is None


def test_gives_up_after_max_elapsed() -> None:
    rng, backoff = random.Random(1), Backoff(config(max_elapsed=60.0))
    assert backoff.next_delay(100.0, rng) is not None
    assert backoff.next_delay(159.999, rng) is not None
    assert backoff.next_delay(160.0, rng) is None


def test_never_gives_up_by_default() -> None:
    rng, backoff = random.Random(1), Backoff(BackoffConfig())
    for n in range(10_000):
        delay = backoff.next_delay(n * 20.0, rng)
        assert delay is not None and delay <= 20.0


def test_a_healthy_connection_resets_the_streak() -> None:
    rng, backoff = random.Random(1), Backoff(config(max_attempts=2, reset_after=10.0))
    backoff.next_delay(0.0, rng)
    backoff.next_delay(0.0, rng)
    # Open for 9.9 s: not healthy, the streak goes on and the limit holds.
    backoff.handle_connected(0.0)
    backoff.handle_disconnected(9.9)
    assert backoff.next_delay(9.9, rng) is None
    # Open for 10 s: healthy, attempts count from 1 again, in the first window.
    backoff.handle_connected(20.0)
    backoff.handle_disconnected(30.0)
    assert backoff.attempt == 0
    first = backoff.next_delay(30.0, rng)
    assert first is not None and first <= BASE
    assert backoff.attempt == 1


def test_a_hinted_attempt_counts_in_the_streak() -> None:
    backoff = Backoff(config(max_attempts=1))
    assert backoff.next_attempt(0.0) == 1
    assert backoff.next_attempt(0.0) is None


@pytest.mark.parametrize(("base", "cap"), [(0.0, 1.0), (2.0, 1.0), (-1.0, 1.0)])
def test_impossible_policies_are_refused(base: float, cap: float) -> None:
    with pytest.raises(InvalidConfig):
        BackoffConfig(base=base, cap=cap)
