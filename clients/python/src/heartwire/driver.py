"""The client's task: picks an endpoint, makes the attempt, runs the connection, and
after every end asks the lifecycle (:mod:`heartwire.machine`) whether and when to try
again, until the client stops for good.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from .attempt import AttemptFailed, Opened, open_connection
from .connection import Connection, Ended, FailedBack
from .events import StopReason
from .hub import Hub
from .machine import Stop, Wait

T = TypeVar("T")

_BY_CALLER = Stop(StopReason.BY_CALLER, "closed by the application")


async def run(hub: Hub) -> None:
    """Runs the client until it stops for good; then everyone waiting learns why."""
    stop = _BY_CALLER
    try:
        stop = await _loop(hub)
    except Exception as error:
        stop = Stop(StopReason.FAILED, f"the client's task failed: {error!r}")
        raise
    finally:
        hub.shutdown(stop)


async def _loop(hub: Hub) -> Stop:
    clock = asyncio.get_running_loop()
    lifecycle = hub.lifecycle
    switch: tuple[int, Opened] | None = None
    while not hub.stopping.is_set():
        if switch is not None:
            index, opened = switch
            switch = None
            hub.announce(lifecycle.failed_back(index, clock.time(), opened.hello.session))
        else:
            picked = lifecycle.begin_attempt(clock.time())
            if isinstance(picked, Stop):
                return picked
            index = picked
            hub.announce(lifecycle.attempting())
            try:
                attempt = await _unless_stopping(
                    hub, open_connection(lifecycle.url, hub.credentials, hub.config)
                )
            except AttemptFailed as failed:
                failure = failed.failure
                after = lifecycle.attempt_failed(index, clock.time(), failure)
                if isinstance(after, Stop):
                    return after
                hub.announce(lifecycle.waiting(after, failure.reason, failure.close_code))
                if not await _sleep_unless_stopping(hub, after):
                    break
                continue
            if attempt is None:
                break
            opened = attempt
            hub.announce(lifecycle.opened(index, clock.time(), opened.hello.session))
        hub.session = opened.hello.session
        outcome = await Connection(hub, opened, index).run()
        hub.session = None
        if isinstance(outcome, FailedBack):
            switch = (outcome.index, outcome.opened)
        elif isinstance(outcome, Ended):
            after = lifecycle.connection_ended(clock.time(), outcome.code, outcome.reason, outcome.hint)
            if isinstance(after, Stop):
                return after
            reason = f"close {outcome.code}" + (f" ({outcome.reason})" if outcome.reason else "")
            hub.announce(lifecycle.waiting(after, reason, outcome.code))
            if not await _sleep_unless_stopping(hub, after):
                break
    return _BY_CALLER


async def _unless_stopping(hub: Hub, work: Awaitable[T]) -> T | None:
    """``work``'s result, or ``None`` if the application closes the client first."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(hub.stopping.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return None if task.cancelled() else task.result()


async def _sleep_unless_stopping(hub: Hub, wait: Wait) -> bool:
    """Waits ``wait.delay``; ``False`` if the application closes the client meanwhile."""
    try:
        await asyncio.wait_for(hub.stopping.wait(), wait.delay)
    except asyncio.TimeoutError:
        return True
    return False
