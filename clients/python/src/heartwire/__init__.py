"""heartwire: an asyncio client of heartwire's native ``/ws`` endpoint.

It keeps one logical connection to a list of servers: it notices a dead server within
the bound the server's ``hello`` sets, reconnects with full-jitter backoff, fails over to
backup URLs and back to the primary, asks the token provider before every attempt,
resubscribes from the last position it delivered (``since``) so nothing is lost or
repeated, reports what cannot be recovered as gap events, and sends publishes from a
bounded outbox with ids the server deduplicates. docs/PYTHON.md is the guide.

The modules, each with one job:

- sans-IO decisions, which read no clock: :mod:`~heartwire.backoff` (full jitter),
  :mod:`~heartwire.reconnect` (which closes mean "do not come back"),
  :mod:`~heartwire.failover`, :mod:`~heartwire.liveness`, :mod:`~heartwire.positions`
  (resume and dedup), :mod:`~heartwire.outbox`, :mod:`~heartwire.machine` (states and
  what comes after each end), :mod:`~heartwire.protocol` (the JSON envelopes);
- the asyncio layer on top: :mod:`~heartwire.attempt` (one handshake),
  :mod:`~heartwire.connection` (one open socket), :mod:`~heartwire.driver` (the reconnect
  loop), :mod:`~heartwire.hub` (state shared across connections),
  :mod:`~heartwire.channels` and :mod:`~heartwire.streams` (what the application reads),
  :mod:`~heartwire.client` (the handle).
"""

from .auth import TokenPlacement, TokenProvider
from .backoff import BackoffConfig
from .channels import Subscription
from .client import Client
from .config import ClientConfig
from .errors import (
    ClientClosed,
    EventsLagged,
    HeartwireError,
    InvalidChannel,
    InvalidConfig,
    InvalidUrl,
    OutboxFull,
    PresenceOff,
    PresenceRefused,
    PublishRefused,
    SubscriptionRefused,
)
from .events import (
    Event,
    Gap,
    GapReason,
    Join,
    Leave,
    Message,
    Refreshed,
    ServerError,
    State,
    StateChange,
    StopReason,
)
from .streams import Stream

__all__ = [
    "BackoffConfig",
    "Client",
    "ClientClosed",
    "ClientConfig",
    "Event",
    "EventsLagged",
    "Gap",
    "GapReason",
    "HeartwireError",
    "InvalidChannel",
    "InvalidConfig",
    "InvalidUrl",
    "Join",
    "Leave",
    "Message",
    "OutboxFull",
    "PresenceOff",
    "PresenceRefused",
    "PublishRefused",
    "Refreshed",
    "ServerError",
    "State",
    "StateChange",
    "StopReason",
    "Stream",
    "Subscription",
    "SubscriptionRefused",
    "TokenPlacement",
    "TokenProvider",
]
