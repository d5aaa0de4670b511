"""The client_credentials token service: cache, single flight, refresh ahead, back-off.

One ``TokenService`` serves one event loop. Its state machine, in words:

* a cached token is handed out until it goes stale (``_protocol.stale_at``);
* from ``_protocol.refresh_at`` on, the first caller starts a background fetch and
  still gets the cached token, so nobody waits at rollover;
* a stale or missing token makes callers share one fetch (single flight): any number
  of concurrent callers cause exactly one token request and all get its outcome;
* a fetch retries transient failures with jittered exponential back-off;
* after a failed fetch, callers fail fast until a cool-down passes, and a token that is
  stale but not yet expired keeps being served meanwhile;
* ``invalidate(token)`` drops the cached token only if it is the one that failed, so a
  burst of 401s for one revoked token causes one refetch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import httpx

from ._config import CachePolicy, ClientCredentials, RetryPolicy
from ._errors import (
    CorpAuthError,
    MalformedTokenResponse,
    TokenEndpointUnavailable,
    TokenError,
)
from ._protocol import (
    backoff_delay,
    client_credentials_request,
    parse_token_response,
    refresh_at,
    stale_at,
)
from ._token import Token

__all__ = ["Clock", "TokenService"]

logger = logging.getLogger("fastapi_corpauth.token")

#: Seconds since the epoch; ``time.time`` in production, a fake in tests.
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class TokenService:
    """Obtains and caches the client_credentials token for the bank API.

    Construction does no I/O; the HTTP client is borrowed and owned by the caller
    (``CorpAuth`` opens and closes it in the app's lifespan).
    """

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        token_url: str,
        credentials: ClientCredentials,
        scope: str | None = "corp",
        cache: CachePolicy = CachePolicy(),  # noqa: B008 - immutable value object
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - immutable value object
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._http = http
        self._token_url = token_url
        self._credentials = credentials
        self._scope = scope
        self._cache = cache
        self._retry = retry
        self._clock = clock
        self._sleep = sleep
        self._token: Token | None = None
        self._fetch: asyncio.Task[Token] | None = None
        self._failure: TokenError | None = None
        self._failed_until = 0.0
        self._closed = False
        #: Token requests sent, for metrics and tests.
        self.requests_sent = 0

    def __repr__(self) -> str:
        return (
            f"TokenService(token_url={self._token_url!r}, "
            f"client_id={self._credentials.client_id!r}, cached={self._token is not None})"
        )

    @property
    def cached(self) -> Token | None:
        """The cached token, if any, whether or not it is still fresh."""
        return self._token

    async def get_token(self) -> Token:
        """Return a token that is valid now, fetching one if needed.

        Raises:
            TokenEndpointUnavailable: the endpoint is unreachable or failing and no
                valid token is cached (``retry_after`` says when to try again).
            CredentialsRejected: the bank refused the client credentials.
            MalformedTokenResponse: the bank's answer was not a usable token.
        """
        now = self._clock()
        token = self._token
        if token is not None and now < stale_at(token, self._cache):
            if now >= refresh_at(token, self._cache) and not self._failing(now):
                self._start_fetch()
            return token
        if self._failing(now):
            if token is not None and not token.is_expired(now):
                return token
            assert self._failure is not None
            raise self._fail_fast(now)
        task = self._start_fetch()
        try:
            return await asyncio.shield(task)
        except TokenError:
            if token is not None and not token.is_expired(self._clock()):
                return token
            raise

    def invalidate(self, token: Token) -> bool:
        """Forget ``token`` if it is still the cached one (the bank rejected it).

        Returns whether the cache was cleared. Comparing identity means a late 401 for
        a token that was already replaced does not throw away its successor.
        """
        if self._token is token:
            self._token = None
            logger.info("cached bank token dropped after the bank API rejected it")
            return True
        return False

    async def aclose(self) -> None:
        """Cancel a fetch in flight; the service cannot be used afterwards."""
        self._closed = True
        task, self._fetch = self._fetch, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, CorpAuthError):
                pass

    def _failing(self, now: float) -> bool:
        return self._failure is not None and now < self._failed_until

    def _fail_fast(self, now: float) -> TokenError:
        failure = self._failure
        assert failure is not None
        if isinstance(failure, TokenEndpointUnavailable):
            return TokenEndpointUnavailable(
                failure.message,
                status_code=failure.status_code,
                retry_after=max(0.0, self._failed_until - now),
            )
        return failure

    def _start_fetch(self) -> asyncio.Task[Token]:
        if self._closed:
            raise RuntimeError("TokenService is closed")
        if self._fetch is None or self._fetch.done():
            self._fetch = asyncio.get_running_loop().create_task(
                self._fetch_and_store(), name="fastapi_corpauth token fetch"
            )
            self._fetch.add_done_callback(_consume_exception)
        return self._fetch

    async def _fetch_and_store(self) -> Token:
        try:
            token = await self._fetch_with_retries()
        except TokenError as exc:
            now = self._clock()
            cooldown = self._retry.cooldown
            if isinstance(exc, TokenEndpointUnavailable) and exc.retry_after is not None:
                cooldown = max(cooldown, exc.retry_after)
            self._failure = exc
            self._failed_until = now + cooldown
            logger.warning("bank token request failed: %s (next try in %.1fs)", exc, cooldown)
            raise
        self._token = token
        self._failure = None
        self._failed_until = 0.0
        logger.debug("bank token obtained, valid for %.0fs", token.lifetime)
        return token

    async def _fetch_with_retries(self) -> Token:
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._request_token()
            except TokenEndpointUnavailable as exc:
                if attempt >= self._retry.attempts:
                    raise
                delay = backoff_delay(attempt, self._retry)
                if exc.retry_after is not None:
                    if exc.retry_after > self._retry.backoff_max:
                        raise
                    delay = max(delay, exc.retry_after)
                logger.info(
                    "bank token request attempt %d failed (%s); retrying in %.2fs",
                    attempt,
                    exc,
                    delay,
                )
                await self._sleep(delay)

    async def _request_token(self) -> Token:
        request = client_credentials_request(
            token_url=self._token_url, credentials=self._credentials, scope=self._scope
        )
        self.requests_sent += 1
        try:
            response = await self._http.send(request)
        except httpx.TimeoutException as exc:
            raise TokenEndpointUnavailable("token endpoint timed out") from exc
        except httpx.HTTPError as exc:
            raise TokenEndpointUnavailable(
                f"token endpoint unreachable ({type(exc).__name__})"
            ) from exc
        now = self._clock()
        token = parse_token_response(
            status_code=response.status_code,
            headers=response.headers,
            body=response.content,
            now=now,
            default_lifetime=self._cache.default_lifetime,
        )
        if token.is_expired(now):
            raise MalformedTokenResponse(
                "token endpoint issued an already expired token",
                status_code=response.status_code,
            )
        return token


def _consume_exception(task: asyncio.Task[Token]) -> None:
    # A background refresh may fail with nobody awaiting it; the failure is already
    # logged and recorded, so mark it retrieved to keep asyncio from warning.
    if not task.cancelled():
        task.exception()
