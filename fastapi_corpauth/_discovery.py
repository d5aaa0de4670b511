"""Reading the issuer's discovery document lazily, with a cache and a fallback."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping

import httpx

from ._metadata import DiscoveryDocumentInvalid, ProviderMetadata, discovery_url, parse_discovery

__all__ = ["Discovery"]

logger = logging.getLogger("fastapi_corpauth.discovery")

#: Largest discovery document read (Keycloak's is about 6 KB).
_MAX_DOCUMENT_BYTES = 256 * 1024


class Discovery:
    """The authorization server's metadata, read from ``/.well-known/openid-configuration``.

    Nothing is fetched until the first sign-in, token request or verification asks. A
    document that was read is kept for ``max_age`` seconds, then read again (and kept if
    that fails). While no document could be read, ``fallback`` (Keycloak's paths under the
    issuer) is used and discovery is tried again at most every ``retry_interval``
    seconds, each try bounded by ``timeout``: the app starts and sign-in still redirects
    while the bank is down. Concurrent callers share one request.

    ``enabled=False`` uses the fallback only (for servers without discovery).
    """

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        issuer: str,
        fallback: ProviderMetadata,
        overrides: Mapping[str, str | None],
        enabled: bool = True,
        clock: Callable[[], float] = time.time,
        max_age: float = 3600.0,
        retry_interval: float = 30.0,
        timeout: float = 3.0,
    ) -> None:
        self._http = http
        self._issuer = issuer
        self._fallback = fallback
        self._overrides = dict(overrides)
        self._enabled = enabled
        self._clock = clock
        self._max_age = max_age
        self._retry_interval = retry_interval
        self._timeout = timeout
        self._metadata: ProviderMetadata | None = None
        self._fresh_until = 0.0
        self._next_attempt = 0.0
        self._fetch: asyncio.Task[ProviderMetadata | None] | None = None
        self._failing = False
        #: Discovery documents requested, for metrics and tests.
        self.requests_sent = 0

    def __repr__(self) -> str:
        return f"Discovery(issuer={self._issuer!r}, discovered={self._metadata is not None})"

    @property
    def current(self) -> ProviderMetadata:
        """The best metadata known now, without waiting: discovered, else the fallback."""
        return self._metadata or self._fallback

    async def metadata(self) -> ProviderMetadata:
        """The server's metadata, reading the discovery document when due.

        Never raises: a failure is logged (once per outage) and the previous document,
        or the fallback, is used.
        """
        if not self._enabled:
            return self._fallback
        now = self._clock()
        if self._metadata is not None and now < self._fresh_until:
            return self._metadata
        if now < self._next_attempt:
            return self.current
        if self._fetch is None:
            self._fetch = asyncio.create_task(self._read())
            self._fetch.add_done_callback(self._fetch_done)
        found = await asyncio.shield(self._fetch)
        return found or self.current

    def _fetch_done(self, task: asyncio.Task[ProviderMetadata | None]) -> None:
        self._fetch = None
        if not task.cancelled():
            task.exception()

    async def _read(self) -> ProviderMetadata | None:
        url = discovery_url(self._issuer)
        self.requests_sent += 1
        try:
            response = await self._http.get(
                url, headers={"Accept": "application/json"}, timeout=self._timeout
            )
            if response.status_code != 200:
                raise DiscoveryDocumentInvalid(f"HTTP {response.status_code}")
            if len(response.content) > _MAX_DOCUMENT_BYTES:
                raise DiscoveryDocumentInvalid("the document is too large")
            document = json.loads(response.content)
            metadata = parse_discovery(document, issuer=self._issuer, overrides=self._overrides)
        except (httpx.HTTPError, DiscoveryDocumentInvalid, ValueError, RecursionError) as exc:
            self._next_attempt = self._clock() + self._retry_interval
            if not self._failing:
                self._failing = True
                kind = "unreachable" if isinstance(exc, httpx.HTTPError) else "unusable"
                logger.warning(
                    "the issuer's discovery document is %s (%s); using %s",
                    kind,
                    _describe(exc),
                    "the previous one" if self._metadata else "Keycloak's paths under the issuer",
                )
            return None
        if self._failing:
            self._failing = False
            logger.warning("the issuer's discovery document is readable again")
        now = self._clock()
        self._metadata = metadata
        self._fresh_until = now + self._max_age
        self._next_attempt = self._fresh_until
        return metadata


def _describe(exc: Exception) -> str:
    if isinstance(exc, DiscoveryDocumentInvalid):
        return str(exc)
    if isinstance(exc, httpx.HTTPError):
        return type(exc).__name__
    return "not JSON"
