"""Fail-over down the list of endpoints and fail-back up it, on explicit time."""

from __future__ import annotations

from heartwire.failover import Failover

RETRY = 30.0


def test_primary_first() -> None:
    assert Failover(3, RETRY).pick(0.0) == 0


def test_fails_over_down_the_list_then_to_the_oldest_failure() -> None:
    servers = Failover(3, RETRY)
    servers.handle_failure(0, 0.0)
    assert servers.pick(0.0) == 1
    servers.handle_failure(1, 1.0)
    assert servers.pick(1.0) == 2
    servers.handle_failure(2, 2.0)
    assert servers.pick(2.0) == 0
    assert servers.health(2).consecutive_failures == 1


def test_a_failed_primary_is_tried_again_after_the_retry_period() -> None:
    servers = Failover(2, RETRY)
    servers.handle_failure(0, 0.0)
    servers.handle_success(1)
    assert servers.pick(RETRY - 0.001) == 1
    assert servers.pick(RETRY) == 0


def test_fail_back_is_due_when_the_primary_may_be_back() -> None:
    servers = Failover(2, RETRY)
    servers.handle_failure(0, 0.0)
    servers.handle_success(1)
    assert servers.fail_back_due(1, 0.0) == RETRY
    assert servers.fail_back_due(0, 0.0) is None
    assert servers.fail_back_candidate(1, RETRY / 2) is None
    assert servers.fail_back_candidate(1, RETRY) == 0
    # A failed probe pushes the next one out by another period.
    servers.handle_failure(0, RETRY)
    assert servers.fail_back_due(1, 0.0) == 2 * RETRY


def test_refused_endpoints_are_never_picked() -> None:
    servers = Failover(2, RETRY)
    servers.handle_refused(0, 0.0)
    assert servers.pick(RETRY * 10) == 1
    assert servers.fail_back_due(1, 0.0) is None
    servers.handle_refused(1, 0.0)
    assert servers.pick(0.0) is None


def test_rtt_is_kept_per_endpoint() -> None:
    servers = Failover(2, RETRY)
    servers.handle_rtt(1, 0.003)
    assert servers.health(1).last_rtt == 0.003
    assert servers.health(0).last_rtt is None
