"""Credentials: the token provider, called before every attempt, and where its token goes.

The provider is any callable that returns a token (``str``), ``None`` for no token, or an
awaitable of either. It is called before **every** connection attempt, fail-back probes
included, so a reconnect never reuses a token that may have expired meanwhile. A provider
that raises fails that attempt, which is retried with backoff like any failed attempt.

:class:`Credentials` is the one place that asks the provider for a token: an in-band token
refresh on an open connection would ask it here too.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Union
from urllib.parse import urlencode, urlsplit, urlunsplit

TokenProvider = Callable[[], Union[str, None, Awaitable[Union[str, None]]]]
"""Returns a fresh token, or ``None`` to connect without one; may be a coroutine function."""


class TokenPlacement(str, Enum):
    """Where the token goes in the handshake request."""

    QUERY = "query"
    """A ``token=TOKEN`` query parameter (the default, as heartwire.js, which cannot set
    headers; a proxy or server that only sees URLs sees it too)."""
    HEADER = "header"
    """An ``Authorization: Bearer TOKEN`` header, which stays out of access logs."""
    BOTH = "both"
    """Both."""


class Credentials:
    """The token provider of a client and where its tokens go."""

    def __init__(self, provider: TokenProvider | None, placement: TokenPlacement) -> None:
        self._provider = provider
        self.placement = placement

    def __repr__(self) -> str:
        provider = "<provider>" if self._provider is not None else None
        return f"Credentials(provider={provider}, placement={self.placement.value})"

    async def fresh(self) -> str | None:
        """A token fresh from the provider (or ``None``)."""
        if self._provider is None:
            return None
        token = self._provider()
        if inspect.isawaitable(token):
            token = await token
        if token is not None and not isinstance(token, str):
            raise TypeError(f"the token provider returned {type(token).__name__}, not str or None")
        return token

    def handshake(self, url: str, token: str | None) -> tuple[str, dict[str, str]]:
        """The URL and extra headers of a handshake that carries ``token``."""
        if token is None or token == "":
            return url, {}
        headers: dict[str, str] = {}
        if self.placement in (TokenPlacement.HEADER, TokenPlacement.BOTH):
            headers["Authorization"] = f"Bearer {token}"
        if self.placement in (TokenPlacement.QUERY, TokenPlacement.BOTH):
            parts = urlsplit(url)
            extra = urlencode({"token": token})
            query = f"{parts.query}&{extra}" if parts.query else extra
            url = urlunsplit(parts._replace(query=query))
        return url, headers
