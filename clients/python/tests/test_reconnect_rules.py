"""The client reconnect rules of docs/PROTOCOL.md, table-driven: which closes mean "do not
come back", which carry a retry hint, and what an HTTP refusal of the upgrade means."""

from __future__ import annotations

import pytest

from heartwire.reconnect import Rule, retry_hint, rule_for_close, rule_for_status

# (code, reason, hint from a `reconnect` frame in seconds, rule, delay in seconds)
CLOSES: list[tuple[int, str, float | None, Rule, float | None]] = [
    (1000, "", None, Rule.BACKOFF, None),
    (1001, "going away", None, Rule.BACKOFF, None),
    (1006, "", None, Rule.BACKOFF, None),
    (1011, "ping timeout", None, Rule.BACKOFF, None),
    (4000, "whatever", None, Rule.BACKOFF, None),
    (4500, "", None, Rule.BACKOFF, None),
    (1008, "slow consumer", None, Rule.BACKOFF, None),
    (1008, "forbidden origin", None, Rule.NEVER, None),
    (1008, "", None, Rule.NEVER, None),
    (1002, "", None, Rule.NEVER, None),
    (1003, "", None, Rule.NEVER, None),
    (1007, "", None, Rule.NEVER, None),
    (1009, "", None, Rule.NEVER, None),
    (1010, "", None, Rule.NEVER, None),
    (4401, "authentication failed", None, Rule.NEVER, None),
    (4403, "forbidden", None, Rule.NEVER, None),
    (1012, "server restarting; retry after 1500 ms", None, Rule.AFTER, 1.5),
    (1013, "try again later; retry after 250 ms", None, Rule.AFTER, 0.25),
    (1012, "going down", None, Rule.BACKOFF, None),
    (1012, "server restarting; retry after 1500 ms", 0.7, Rule.AFTER, 0.7),
    (1013, "", 0.0, Rule.AFTER, 0.0),
    # A hint means nothing on a close that is not a restart or an overload.
    (1011, "retry after 100 ms", 0.3, Rule.BACKOFF, None),
    (4401, "", 0.3, Rule.NEVER, None),
]


@pytest.mark.parametrize(("code", "reason", "hint", "rule", "after"), CLOSES)
def test_close_rules(code: int, reason: str, hint: float | None, rule: Rule, after: float | None) -> None:
    retry = rule_for_close(code, reason, hint)
    assert (retry.rule, retry.after) == (rule, after)


HINTS: list[tuple[str, float | None]] = [
    ("retry after 0 ms", 0.0),
    ("server restarting; retry after 2300 ms", 2.3),
    ("retry after 40ms", 0.04),
    ("retry after soon", None),
    ("no hint", None),
    ("", None),
]


@pytest.mark.parametrize(("reason", "seconds"), HINTS)
def test_retry_hints(reason: str, seconds: float | None) -> None:
    assert retry_hint(reason) == seconds


# (status, Retry-After header, permanent, retry after)
STATUSES: list[tuple[int, str | None, bool, float | None]] = [
    (503, "3", False, 3.0),
    (503, None, False, None),
    (502, None, False, None),
    (500, "soon", False, None),
    (429, "1", False, 1.0),
    (408, None, False, None),
    (200, None, True, None),
    (400, None, True, None),
    (401, None, True, None),
    (403, None, True, None),
    (404, "5", True, None),
    (301, None, True, None),
]


@pytest.mark.parametrize(("status", "header", "permanent", "retry_after"), STATUSES)
def test_handshake_refusals(status: int, header: str | None, permanent: bool, retry_after: float | None) -> None:
    refusal = rule_for_status(status, header)
    assert (refusal.permanent, refusal.retry_after) == (permanent, retry_after)
