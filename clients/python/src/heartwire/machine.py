"""The client's lifecycle as a sans-IO state machine: its state, which endpoint the next
attempt goes to, and whether and when it comes back after a connection or an attempt
ended.

:class:`Lifecycle` combines the reconnect rules (:mod:`heartwire.reconnect`), the reconnect
policy (:mod:`heartwire.backoff`) and fail-over (:mod:`heartwire.failover`), as the Rust
client's driver does. It reads no clock: every method takes ``now``. It returns what the
client must do (:class:`Wait` or :class:`Stop`) and the :class:`StateChange` to announce;
the asyncio layer carries them out.

States follow heartwire.js: ``connecting`` until the first ``hello``, then ``open``
(``degraded`` while a probe is overdue), ``reconnecting`` after a loss — announced once
with the delay before the next attempt and once more, with no delay, when it starts — and
``closed`` for good.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .backoff import Backoff
from .config import ClientConfig
from .events import State, StateChange, StopReason
from .failover import Failover
from .reconnect import BACKOFF, Retry, Rule, rule_for_close


@dataclass(frozen=True)
class AttemptFailure:
    """Why an attempt failed, and what that means for the endpoint."""

    reason: str
    """One sentence for people."""
    permanent: bool = False
    """The endpoint refused in a way retrying cannot fix."""
    retry_after: float | None = None
    """The server asked to come back after this many seconds."""
    close_code: int | None = None
    """The server closed the connection with this code before its ``hello``."""
    close_reason: str = ""
    """The reason of that close."""


@dataclass(frozen=True)
class Wait:
    """Try again after ``delay`` seconds; it will be attempt ``attempt`` of the streak."""

    delay: float
    attempt: int


@dataclass(frozen=True)
class Stop:
    """Stop for good."""

    reason: StopReason
    detail: str


Next = Wait | Stop


class Lifecycle:
    """The decisions of one client. See the module docs."""

    def __init__(self, urls: list[str], config: ClientConfig) -> None:
        self.urls = urls
        self._backoff = Backoff(config.backoff)
        self._failover = Failover(len(urls), config.fail_back_after)
        self._rng = random.Random(config.jitter_seed)
        self._state = State.CONNECTING
        self._current = 0
        self._ever_opened = False

    def __repr__(self) -> str:
        return f"Lifecycle(state={self._state.value}, url={self.url!r}, {self._backoff!r})"

    @property
    def state(self) -> State:
        return self._state

    @property
    def url(self) -> str:
        """The endpoint in use or being tried."""
        return self.urls[self._current]

    def begin_attempt(self, now: float) -> int | Stop:
        """Picks the endpoint of the next attempt."""
        index = self._failover.pick(now)
        if index is None:
            return Stop(StopReason.NO_USABLE_ENDPOINT, "every endpoint refused")
        self._current = index
        return index

    def attempting(self) -> StateChange | None:
        """The attempt on :attr:`url` starts: ``reconnecting`` is announced again, now
        without a delay."""
        if self._ever_opened:
            return self._move(State.RECONNECTING, force=True)
        return self._move(State.CONNECTING)

    def attempt_failed(self, index: int, now: float, failure: AttemptFailure) -> Next:
        """An attempt on endpoint ``index`` failed at ``now``."""
        if failure.permanent:
            self._failover.handle_refused(index, now)
            if self._failover.pick(now) is None:
                return Stop(StopReason.NO_USABLE_ENDPOINT, failure.reason)
            return self._schedule(BACKOFF, now, failure.reason)
        self._failover.handle_failure(index, now)
        if failure.close_code is not None:
            rule = rule_for_close(failure.close_code, failure.close_reason)
            if rule.rule is Rule.NEVER:
                return Stop(StopReason.DO_NOT_COME_BACK, failure.reason)
        elif failure.retry_after is not None:
            rule = Retry(Rule.AFTER, failure.retry_after)
        else:
            rule = BACKOFF
        return self._schedule(rule, now, failure.reason)

    def opened(self, index: int, now: float, session: str) -> StateChange | None:
        """A connection to endpoint ``index`` is open: its server said hello."""
        self._current = index
        self._ever_opened = True
        self._failover.handle_success(index)
        self._backoff.handle_connected(now)
        return self._move(State.OPEN, session=session, force=True)

    def degraded(self, degraded: bool) -> StateChange | None:
        """A probe became overdue (``True``) or was answered (``False``)."""
        if degraded and self._state is State.OPEN:
            return self._move(State.DEGRADED)
        if not degraded and self._state is State.DEGRADED:
            return self._move(State.OPEN)
        return None

    def connection_ended(
        self, now: float, code: int, reason: str, hint: float | None = None
    ) -> Next:
        """The open connection ended at ``now`` with close ``code`` and ``reason``;
        ``hint`` is the delay of a ``reconnect`` frame that came before, if any."""
        self._backoff.handle_disconnected(now)
        self._failover.handle_failure(self._current, now)
        rule = rule_for_close(code, reason, hint)
        text = f"close {code}" + (f" ({reason})" if reason else "")
        if rule.rule is Rule.NEVER:
            return Stop(StopReason.DO_NOT_COME_BACK, text)
        return self._schedule(rule, now, text)

    def waiting(self, wait: Wait, reason: str, close_code: int | None) -> StateChange | None:
        """The client waits ``wait.delay`` before its next attempt."""
        return self._move(
            State.RECONNECTING, reason=reason, close_code=close_code, delay=wait.delay, force=True
        )

    def fail_back_due(self, now: float) -> float | None:
        """While on a backup: when a preferred endpoint is worth probing."""
        return self._failover.fail_back_due(self._current, now)

    def fail_back_candidate(self, now: float) -> int | None:
        """The preferred endpoint to probe at ``now``, if any."""
        return self._failover.fail_back_candidate(self._current, now)

    def fail_back_failed(self, index: int, now: float) -> None:
        """A probe of preferred endpoint ``index`` failed."""
        self._failover.handle_failure(index, now)

    def failed_back(self, index: int, now: float, session: str) -> StateChange | None:
        """A probe of preferred endpoint ``index`` succeeded: the client moves there."""
        self._backoff.handle_disconnected(now)
        return self.opened(index, now, session)

    def handle_rtt(self, rtt: float) -> None:
        """A round trip was measured on the current connection."""
        self._failover.handle_rtt(self._current, rtt)

    def closed(self, stop: Stop) -> StateChange | None:
        """The client stopped for good."""
        return self._move(State.CLOSED, reason=stop.detail, stop=stop.reason)

    def _schedule(self, rule: Retry, now: float, last: str) -> Next:
        if rule.rule is Rule.AFTER and rule.after is not None:
            attempt = self._backoff.next_attempt(now)
            delay = rule.after
        elif rule.rule is Rule.FRESH_TOKEN:
            # The next attempt asks the token provider again, as every attempt does.
            delay_or_none = self._backoff.next_fresh_token(now, self._rng)
            attempt = None if delay_or_none is None else self._backoff.attempt
            delay = delay_or_none or 0.0
        else:
            delay_or_none = self._backoff.next_delay(now, self._rng)
            attempt = None if delay_or_none is None else self._backoff.attempt
            delay = delay_or_none or 0.0
        if attempt is None:
            detail = f"gave up after {self._backoff.attempt} attempts; the last failed: {last}"
            return Stop(StopReason.GAVE_UP, detail)
        return Wait(delay, attempt)

    def _move(
        self,
        state: State,
        *,
        force: bool = False,
        reason: str = "",
        close_code: int | None = None,
        delay: float | None = None,
        session: str | None = None,
        stop: StopReason | None = None,
    ) -> StateChange | None:
        """Enters ``state``; the change to announce, or ``None`` when nothing changed."""
        previous = self._state
        if previous is State.CLOSED or (state is previous and not force):
            return None
        self._state = state
        return StateChange(
            state, previous, self.url, reason, close_code, delay, session, stop
        )
