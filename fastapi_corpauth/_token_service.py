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

With a ``shared`` cache (``SharedTokenCache``, e.g. Redis), the processes of a deployment
share one token and single flight holds across them. A fetch, in the background for
refresh ahead or awaited on a cold cache alike, first adopts the shared token if it is
fresh (before its ``refresh_at``) and not one this process saw rejected; otherwise it
takes the shared fetch lease, checks once more, fetches, shares the token and gives the
lease back. A process that does not get the lease polls for the holder's token and takes
over once the lease lapses (a crashed holder). A token rejected here is removed from the
shared cache (compare-and-delete) by the next fetch, and the other processes, on their
own 401, adopt its successor instead of fetching. Whenever the shared cache fails, the
fetch falls back to the per-process path above: the service never fails because of it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TypeVar

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
from ._shared_cache import SharedTokenCache, token_fingerprint
from ._store import StoreUnavailable
from ._token import Token

__all__ = ["Clock", "TokenService"]

logger = logging.getLogger("fastapi_corpauth.token")

#: Seconds since the epoch; ``time.time`` in production, a fake in tests.
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
_T = TypeVar("_T")

#: Fingerprints of rejected tokens remembered, so a stale shared copy is never adopted.
_REJECTED_REMEMBERED = 16


class TokenService:
    """Obtains and caches the client_credentials token for the bank API.

    ``token_url`` is the endpoint, or an async callable that names it at each fetch (the
    discovered one, say). Construction does no I/O; the HTTP client is borrowed and owned
    by the caller (``CorpAuth`` opens and closes it in the app's lifespan), and so is
    ``shared``.
    ``lease`` is how long (seconds) one process may hold the shared fetch lease before
    another takes over; ``poll_interval`` is how often a waiting process looks for the
    holder's token (both in real time, whatever ``clock`` says).
    """

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        token_url: str | Callable[[], Awaitable[str]],
        credentials: ClientCredentials,
        scope: str | None = "corp",
        cache: CachePolicy = CachePolicy(),  # noqa: B008 - immutable value object
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - immutable value object
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        shared: SharedTokenCache | None = None,
        lease: float = 10.0,
        poll_interval: float = 0.02,
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
        #: Until when the cached token is handed out with nothing else to do: the hot path.
        self._quiet_until = -math.inf
        self._fetch: asyncio.Task[Token] | None = None
        self._failure: TokenError | None = None
        self._failed_until = 0.0
        self._closed = False
        self._shared = shared
        self._lease = lease
        self._poll_interval = poll_interval
        self._rejected: OrderedDict[str, None] = OrderedDict()
        #: Token requests sent, for metrics and tests.
        self.requests_sent = 0
        #: Tokens taken from the shared cache instead of fetched, for metrics and tests.
        self.shared_adoptions = 0

    def __repr__(self) -> str:
        return (
            f"TokenService(client_id={self._credentials.client_id!r}, "
            f"cached={self._token is not None})"
        )

    @property
    def cached(self) -> Token | None:
        """The cached token, if any, whether or not it is still fresh."""
        return self._token

    def ready_token(self) -> Token | None:
        """The cached token while it needs nothing done (before its refresh point), else
        None: ``get_token`` without a coroutine, for the hot path of every request."""
        token = self._token
        if token is not None and self._clock() < self._quiet_until:
            return token
        return None

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
        if now < self._quiet_until and token is not None:
            return token
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
        except asyncio.CancelledError:
            # The shared fetch was cancelled by ``aclose`` (shutdown), not this caller:
            # answer like an unavailable endpoint rather than cancelling the request.
            current = asyncio.current_task()
            if task.cancelled() and (current is None or current.cancelling() == 0):
                raise TokenEndpointUnavailable("the token service is shutting down") from None
            raise

    def invalidate(self, token: Token) -> bool:
        """Forget ``token`` if it is still the cached one (the bank rejected it).

        Returns whether the cache was cleared. Comparing identity means a late 401 for
        a token that was already replaced does not throw away its successor. With a
        shared cache, the token is never adopted from it again, and the next fetch
        removes it there unless another process replaced it already.
        """
        if self._shared is not None:
            self._rejected[token_fingerprint(token)] = None
            while len(self._rejected) > _REJECTED_REMEMBERED:
                self._rejected.popitem(last=False)
        if self._token is token:
            self._token = None
            self._quiet_until = -math.inf
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
            if self._shared is None:
                token = await self._fetch_with_retries()
            else:
                token = await self._fetch_shared(self._shared)
        except TokenError as exc:
            now = self._clock()
            cooldown = self._retry.cooldown
            if isinstance(exc, TokenEndpointUnavailable) and exc.retry_after is not None:
                # Callers are told the capped wait too: the app will probe again by then.
                exc.retry_after = min(exc.retry_after, self._retry.retry_after_max)
                cooldown = max(cooldown, exc.retry_after)
            self._failure = exc
            self._failed_until = now + cooldown
            logger.warning("bank token request failed: %s (next try in %.1fs)", exc, cooldown)
            raise
        self._token = token
        self._quiet_until = refresh_at(token, self._cache)
        self._failure = None
        self._failed_until = 0.0
        logger.debug("bank token obtained, valid for %.0fs", token.lifetime)
        return token

    async def _fetch_shared(self, shared: SharedTokenCache) -> Token:
        """Adopt the shared token, or fetch one under the shared lease, or wait for it.

        Any failure of the shared cache ends in the per-process fetch.
        """
        outcome = await _quietly(self._wait_for_shared(shared))
        if isinstance(outcome, Token):
            return outcome
        if outcome is None:
            return await self._fetch_with_retries()
        try:
            # The previous holder may have shared its token just before we got the lease.
            found = await _quietly(self._load_shared(shared))
            if found is not None:
                return found
            token = await self._fetch_with_retries()
            await _quietly(shared.store(token, ttl=token.expires_at - self._clock()))
            return token
        finally:
            await _quietly(shared.release(outcome))  # else the lease lapses by itself

    async def _wait_for_shared(self, shared: SharedTokenCache) -> Token | str | None:
        """A shared token to use, the lease's lock value, or None after waiting too long."""
        deadline = time.monotonic() + 2 * self._lease
        while True:
            found = await self._load_shared(shared)
            if found is not None:
                return found
            lock = await shared.acquire(self._lease)
            if lock is not None:
                return lock
            if time.monotonic() >= deadline:
                logger.warning("the shared token lease was not released in time; fetching here")
                return None
            await asyncio.sleep(self._poll_interval)

    async def _load_shared(self, shared: SharedTokenCache) -> Token | None:
        """The shared token if this process should use it; drops a rejected one there."""
        token = await shared.load()
        if token is None:
            return None
        if token_fingerprint(token) in self._rejected:
            await shared.discard(token)
            return None
        now = self._clock()
        if now >= refresh_at(token, self._cache) or token.is_expired(now):
            return None
        self.shared_adoptions += 1
        logger.debug("bank token taken from the shared cache")
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
        token_url = self._token_url if isinstance(self._token_url, str) else await self._token_url()
        request = client_credentials_request(
            token_url=token_url, credentials=self._credentials, scope=self._scope
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


async def _quietly(operation: Awaitable[_T]) -> _T | None:
    """Await a shared-cache operation; None if it fails (the service never fails for it)."""
    try:
        return await operation
    except StoreUnavailable:
        return None  # the shared cache logs its outage once
    except Exception:
        logger.exception("the shared token cache failed; using the per-process cache")
        return None


def _consume_exception(task: asyncio.Task[Token]) -> None:
    # A background refresh may fail with nobody awaiting it; the failure is already
    # logged and recorded, so mark it retrieved to keep asyncio from warning.
    if not task.cancelled():
        task.exception()
