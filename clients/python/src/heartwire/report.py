"""The report of the previous session, sent first after the next ``hello`` of a server
that says ``reports`` (docs/PROTOCOL.md, "Reports of the previous session").

:class:`PreviousSession` is what a connection leaves when it is lost: which session, when,
why, and how long before that the server was last heard. No clock is read here: times
come in as ``now`` (the event loop's clock, in seconds).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

#: Close codes that mean the transport ended without a close frame.
_NO_CLOSE_FRAME = (1005, 1006)


@dataclass(frozen=True)
class PreviousSession:
    """A session this client lost at ``lost_at``."""

    session: str
    lost_at: float
    reason: str
    """``ping_timeout`` (this client's own bound passed), ``network`` (no close frame) or
    ``closed`` (the server's close frame, with ``code``)."""
    code: int | None
    last_heard: float
    """Seconds before the end that the server was last heard (0 after its close frame)."""

    @staticmethod
    def lost(
        session: str, now: float, code: int, own_timeout: bool, last_heard_at: float
    ) -> PreviousSession:
        """The session ``session`` ended at ``now`` with close ``code``: this client's own
        ping timeout when ``own_timeout``, else the server's close or the network's."""
        if own_timeout:
            reason, closing_code = "ping_timeout", None
        elif code in _NO_CLOSE_FRAME:
            reason, closing_code = "network", None
        else:
            reason, closing_code = "closed", code
        heard = 0.0 if reason == "closed" else max(0.0, now - last_heard_at)
        return PreviousSession(session, now, reason, closing_code, heard)

    def encode(self, now: float) -> str:
        """The ``report`` frame, sent at ``now``."""
        frame: dict[str, object] = {
            "op": "report",
            "previous_session": self.session,
            "offline_ms": max(0, round((now - self.lost_at) * 1000)),
            "reason": self.reason,
            "last_heard_ms": round(self.last_heard * 1000),
        }
        if self.code is not None:
            frame["code"] = self.code
        return json.dumps(frame, separators=(",", ":"))
