"""The client reconnect rules of docs/PROTOCOL.md, table-driven: which closes mean "do not
come back", which carry a retry hint, and what an HTTP refusal of the upgrade means.

The tables are the shared test vectors of every heartwire client,
tests/vectors/reconnect.json at the repository's root, which the Rust rules and
heartwire.js read too; the Python client's own cases (a ``reconnect`` frame's hint) follow.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from heartwire.reconnect import Rule, retry_hint, rule_for_close, rule_for_status
from peers import REPO

VECTORS: dict[str, Any] = json.loads((REPO / "tests" / "vectors" / "reconnect.json").read_text())
RULES = {
    "backoff": Rule.BACKOFF,
    "after": Rule.AFTER,
    "fresh_token": Rule.FRESH_TOKEN,
    "never": Rule.NEVER,
}


def _after(case: dict[str, Any]) -> float | None:
    after_ms = case.get("after_ms")
    return None if after_ms is None else after_ms / 1000


@pytest.mark.parametrize("case", VECTORS["close"], ids=lambda c: f"{c['code']}-{c['reason'] or 'no reason'}")
def test_close_rules(case: dict[str, Any]) -> None:
    retry = rule_for_close(case["code"], case["reason"])
    assert (retry.rule, retry.after) == (RULES[case["retry"]], _after(case))


@pytest.mark.parametrize("case", VECTORS["retry_hint"], ids=lambda c: c["reason"] or "empty")
def test_retry_hints(case: dict[str, Any]) -> None:
    assert retry_hint(case["reason"]) == _after(case)


@pytest.mark.parametrize("case", VECTORS["handshake"], ids=lambda c: f"{c['status']}-{c.get('retry_after')}")
def test_handshake_refusals(case: dict[str, Any]) -> None:
    refusal = rule_for_status(case["status"], case.get("retry_after"))
    expected = {
        "backoff": (False, None),
        "after": (False, _after(case)),
        "drop_endpoint": (True, None),
    }[case["retry"]]
    assert (refusal.permanent, refusal.retry_after) == expected


def test_the_vectors_cover_every_rule() -> None:
    assert {case["retry"] for case in VECTORS["close"]} == set(RULES)
    assert {case["retry"] for case in VECTORS["handshake"]} == {"backoff", "after", "drop_endpoint"}


# The delay of a `reconnect` frame that came before the close: (code, reason, hint in
# seconds, rule, delay in seconds).
FRAME_HINTS: list[tuple[int, str, float, Rule, float | None]] = [
    (1012, "server restarting; retry after 1500 ms", 0.7, Rule.AFTER, 0.7),
    (1013, "", 0.0, Rule.AFTER, 0.0),
    # A hint means nothing on a close that is not a restart or an overload.
    (1011, "ping timeout", 0.3, Rule.BACKOFF, None),
    (4401, "", 0.3, Rule.NEVER, None),
]


@pytest.mark.parametrize(("code", "reason", "hint", "rule", "after"), FRAME_HINTS)
def test_a_reconnect_frames_hint(code: int, reason: str, hint: float, rule: Rule, after: float | None) -> None:
    retry = rule_for_close(code, reason, hint)
    assert (retry.rule, retry.after) == (rule, after)

