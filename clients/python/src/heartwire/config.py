"""How a client behaves: credentials' placement, timeouts, the reconnect policy, fail-back
and the bounds of its queues. Durations are in seconds.

The defaults are those of the Rust client and heartwire.js (docs/CLIENT.md explains each).
The liveness timing is not configured here: it comes from the server's ``hello``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .auth import TokenPlacement
from .backoff import BackoffConfig
from .errors import InvalidConfig, InvalidUrl


@dataclass(frozen=True)
class ClientConfig:
    """Settings of a :class:`~heartwire.Client`."""

    token_placement: TokenPlacement = TokenPlacement.QUERY
    """Where the provider's token goes in the handshake."""
    backoff: BackoffConfig = field(default_factory=BackoffConfig)
    """The reconnect policy: full jitter from 0.5 s up to 20 s, never giving up, reset
    after 30 s connected."""
    connect_timeout: float = 10.0
    """How long one attempt may take, from the TCP connect to the server's ``hello``."""
    close_timeout: float = 10.0
    """How long a close handshake the client started may take before the socket is
    dropped."""
    fail_back_after: float = 30.0
    """How long after its failure a preferred endpoint is probed again."""
    outbox_limit: int = 1024
    """Publishes that may wait, queued or awaiting their ack."""
    publishes_in_flight: int = 256
    """Publishes that may await their ack at once; the rest wait meanwhile."""
    queue_size: int = 1024
    """Messages a subscription, or events an event iterator, may hold for the
    application."""
    jitter_seed: int | None = None
    """Seed of the jitter generator; ``None`` seeds it from the operating system."""

    def __post_init__(self) -> None:
        positive = {
            "connect_timeout": self.connect_timeout,
            "close_timeout": self.close_timeout,
            "fail_back_after": self.fail_back_after,
            "outbox_limit": self.outbox_limit,
            "publishes_in_flight": self.publishes_in_flight,
            "queue_size": self.queue_size,
        }
        for name, value in positive.items():
            if not value > 0:
                raise InvalidConfig(f"{name} must be greater than zero, got {value}")


def parse_endpoints(urls: str | list[str] | tuple[str, ...]) -> list[str]:
    """The endpoint URLs, primary first; each must be ``ws://`` or ``wss://`` with a host."""
    endpoints = [urls] if isinstance(urls, str) else list(urls)
    if not endpoints:
        raise InvalidUrl("a client needs at least one server URL")
    for url in endpoints:
        try:
            parts = urlsplit(url)
            host = parts.hostname
        except ValueError as error:
            raise InvalidUrl(f"invalid server URL {url!r}: {error}") from None
        if parts.scheme not in ("ws", "wss"):
            raise InvalidUrl(f"invalid server URL {url!r}: the scheme must be ws or wss")
        if not host:
            raise InvalidUrl(f"invalid server URL {url!r}: it has no host")
    return endpoints
