"""Redis as the layer the workers of one deployment share (the ``redis`` extra).

``RedisSessionStore`` keeps sign-in sessions and pending sign-in states, so a sign-in
started on one worker completes on another; ``RedisTokenCache`` lets every process use
one client_credentials token. Both go through an ``OutageGuard``: when Redis is down or
slow, an operation fails fast with ``StoreUnavailable`` (callers fall back: sessions
read as "signed out", tokens are fetched per process), a warning is logged once per
outage, and Redis is tried again by itself every ``retry_interval`` seconds.

Nothing here is imported by ``fastapi_corpauth`` itself: the core works without redis-py.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ._config import ClientCredentials
from ._memory_store import _decode, _encode
from ._shared_cache import token_fingerprint
from ._store import Record, StoreUnavailable
from ._token import Token

__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_TIMEOUT",
    "OutageGuard",
    "RedisSessionStore",
    "RedisTokenCache",
    "redis_client",
]

logger = logging.getLogger("fastapi_corpauth.redis")
_T = TypeVar("_T")

DEFAULT_PREFIX = "corpauth"
#: Seconds a Redis command may take (connect included) before Redis counts as down.
DEFAULT_TIMEOUT = 0.5

# Delete KEYS[1] only if its token's fingerprint is ARGV[1].
_DISCARD_SCRIPT = """
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
local ok, data = pcall(cjson.decode, value)
if ok and type(data) == 'table' and data['fp'] == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
# Delete KEYS[1] only if it still holds the lock value ARGV[1].
_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def redis_client(url: str, *, timeout: float = DEFAULT_TIMEOUT) -> aioredis.Redis:
    """A redis-py asyncio client for ``url`` that gives up quickly; does no I/O.

    Connect and read timeouts are ``timeout``; a failed command is retried once at
    once (a pooled connection may have died with a Redis restart), never with back-off.

    Raises:
        ValueError: ``url`` is not a redis URL (the message does not repeat it).
    """
    try:
        return aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
        )
    except (ValueError, TypeError):
        # from None: the original message may quote part of the URL (and its password).
        raise ValueError("not a valid Redis URL (redis://, rediss:// or unix://)") from None


class OutageGuard:
    """Runs Redis operations so that an outage costs one timeout, not one per request.

    After a failure every operation fails at once with ``StoreUnavailable`` for
    ``retry_interval`` seconds; then a single operation probes Redis again while the
    others keep failing fast. The first failure of an outage and the recovery are each
    logged once. One guard may serve several stores that share a Redis.
    """

    def __init__(
        self,
        *,
        retry_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._retry_interval = retry_interval
        self._clock = clock
        self._down_since: float | None = None
        self._skip_until = 0.0
        self._probing = False

    def __repr__(self) -> str:
        return f"OutageGuard(down={self.down})"

    @property
    def down(self) -> bool:
        """Whether Redis failed and has not answered since."""
        return self._down_since is not None

    async def run(self, operation: Callable[[], Awaitable[_T]], *, limit: float) -> _T:
        """Run ``operation``, allowing it ``limit`` seconds.

        Raises:
            StoreUnavailable: Redis failed, timed out, or is being skipped after a failure.
        """
        probe = False
        if self._down_since is not None:
            if self._probing or self._clock() < self._skip_until:
                raise StoreUnavailable("Redis is unavailable")
            self._probing = probe = True
        try:
            async with asyncio.timeout(limit):
                result = await operation()
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
            raise StoreUnavailable(f"Redis is unavailable ({type(exc).__name__})") from exc
        finally:
            if probe:
                self._probing = False
        self._succeeded()
        return result

    def _failed(self, exc: BaseException) -> None:
        now = self._clock()
        self._skip_until = now + self._retry_interval
        if self._down_since is None:
            self._down_since = now
            logger.warning(
                "Redis unavailable (%s); falling back to per-process tokens and "
                "signed-out sessions, retrying every %.1fs",
                type(exc).__name__,
                self._retry_interval,
            )

    def _succeeded(self) -> None:
        if self._down_since is not None:
            logger.warning("Redis available again after %.1fs", self._clock() - self._down_since)
            self._down_since = None
            self._skip_until = 0.0


class _RedisUser:
    """The client handling shared by both Redis classes."""

    def __init__(
        self,
        redis: aioredis.Redis | str,
        *,
        prefix: str,
        timeout: float,
        guard: OutageGuard | None,
    ) -> None:
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError("timeout must be a positive number of seconds")
        if not prefix:
            raise ValueError("prefix must not be empty")
        self._owns_client = isinstance(redis, str)
        self._redis = redis_client(redis, timeout=timeout) if isinstance(redis, str) else redis
        self._prefix = prefix
        self._timeout = timeout
        self._guard = guard if guard is not None else OutageGuard()

    @property
    def guard(self) -> OutageGuard:
        return self._guard

    def __repr__(self) -> str:
        return f"{type(self).__name__}(prefix={self._prefix!r}, down={self._guard.down})"

    async def _run(self, operation: Callable[[], Awaitable[_T]]) -> _T:
        return await self._guard.run(operation, limit=self._timeout)

    async def aclose(self) -> None:
        """Close the client if it was built here from a URL (a passed-in one stays open)."""
        if self._owns_client:
            await self._redis.aclose()


class RedisSessionStore(_RedisUser):
    """A ``SessionStore`` in Redis: JSON values under ``{prefix}:{key}`` with ``PX`` expiry.

    ``redis`` is a ``redis.asyncio.Redis`` client (left open by ``aclose``) or a URL
    (a client with ``timeout`` is built, without I/O, and closed by ``aclose``). Records
    are checked like ``MemorySessionStore`` checks them (``TypeError`` unless they survive
    JSON, ``ValueError`` for a bad ttl); ``pop`` is ``GETDEL``, so of two concurrent
    pops on any workers one gets the record. Every Redis failure or timeout raises
    ``StoreUnavailable``.
    """

    def __init__(
        self,
        redis: aioredis.Redis | str,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = DEFAULT_TIMEOUT,
        guard: OutageGuard | None = None,
    ) -> None:
        super().__init__(redis, prefix=prefix, timeout=timeout, guard=guard)

    def _key(self, key: str) -> str:
        return f"{self._prefix}:{key}"

    async def get(self, key: str) -> dict[str, Any] | None:
        """Return the record under ``key``, or None if absent or expired."""
        name = self._key(key)
        raw: bytes | str | None = await self._run(lambda: self._redis.get(name))
        return _record(raw)

    async def set(self, key: str, record: Record, *, ttl: float) -> None:
        """Store ``record`` under ``key`` for ``ttl`` seconds, replacing any previous one."""
        if not (math.isfinite(ttl) and ttl > 0):
            raise ValueError("ttl must be a positive number of seconds")
        payload = _encode(record)
        name = self._key(key)
        await self._run(lambda: self._redis.set(name, payload, px=_milliseconds(ttl)))

    async def add(self, key: str, record: Record, *, ttl: float) -> bool:
        """Store ``record`` under ``key`` unless it exists (``SET NX PX``); True if stored."""
        if not (math.isfinite(ttl) and ttl > 0):
            raise ValueError("ttl must be a positive number of seconds")
        payload = _encode(record)
        name = self._key(key)
        stored = await self._run(
            lambda: self._redis.set(name, payload, px=_milliseconds(ttl), nx=True)
        )
        return bool(stored)

    async def pop(self, key: str) -> dict[str, Any] | None:
        """Atomically remove and return the record under ``key`` (None if absent)."""
        name = self._key(key)
        raw: bytes | str | None = await self._run(lambda: self._redis.getdel(name))
        return _record(raw)

    async def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        name = self._key(key)
        await self._run(lambda: self._redis.delete(name))


class RedisTokenCache(_RedisUser):
    """A ``SharedTokenCache`` in Redis: one client_credentials token for every process.

    The token lives under ``{prefix}:token:{fingerprint of token_url and client_id}``
    (so two clients never share a token) with ``PX`` until it expires, and the fetch
    lease next to it (``SET NX PX``). Only what a request needs is stored: the access
    token, its times and scope, a fingerprint for compare-and-delete, and an HMAC keyed
    from the client secret, so a value written by anyone without the secret is ignored.
    The client secret itself, refresh and id tokens never go to Redis.
    """

    def __init__(
        self,
        redis: aioredis.Redis | str,
        *,
        token_url: str,
        credentials: ClientCredentials,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = DEFAULT_TIMEOUT,
        guard: OutageGuard | None = None,
    ) -> None:
        super().__init__(redis, prefix=prefix, timeout=timeout, guard=guard)
        client = hashlib.sha256(f"{token_url}\n{credentials.client_id}".encode()).hexdigest()
        self._token_key = f"{prefix}:token:{client[:32]}"
        self._lease_key = self._token_key + ":lease"
        self._mac_key = hmac.new(
            credentials.client_secret.get_secret_value().encode("utf-8"),
            b"fastapi_corpauth.redis.token-cache.v1",
            hashlib.sha256,
        ).digest()

    async def load(self) -> Token | None:
        """The shared token, or None if there is none or it fails its integrity check."""
        raw: bytes | str | None = await self._run(lambda: self._redis.get(self._token_key))
        if raw is None:
            return None
        token = self._decode(raw)
        if token is None:
            logger.warning("ignoring a shared bank token that fails its integrity check")
        return token

    async def store(self, token: Token, *, ttl: float) -> None:
        """Share ``token`` for ``ttl`` seconds; a token already expired is not shared."""
        if not (math.isfinite(ttl) and ttl > 0):
            return
        payload = self._encode(token)
        await self._run(lambda: self._redis.set(self._token_key, payload, px=_milliseconds(ttl)))

    async def discard(self, token: Token) -> bool:
        """Remove the shared token if it is still ``token``."""
        fp = token_fingerprint(token)
        removed = await self._run(lambda: self._redis.eval(_DISCARD_SCRIPT, 1, self._token_key, fp))
        return bool(removed)

    async def acquire(self, lease_seconds: float) -> str | None:
        """Take the fetch lease for ``lease_seconds``; None if another process holds it."""
        lock = secrets.token_hex(16)
        taken = await self._run(
            lambda: self._redis.set(self._lease_key, lock, nx=True, px=_milliseconds(lease_seconds))
        )
        return lock if taken else None

    async def release(self, lock: str) -> None:
        """Give the lease back if ``lock`` still holds it."""
        await self._run(lambda: self._redis.eval(_RELEASE_SCRIPT, 1, self._lease_key, lock))

    def _mac(self, body: bytes) -> str:
        return hmac.new(self._mac_key, body, hashlib.sha256).hexdigest()

    def _encode(self, token: Token) -> str:
        fields = {
            "fp": token_fingerprint(token),
            "access_token": token.access_token,
            "issued_at": token.issued_at,
            "expires_at": token.expires_at,
            "scope": list(token.scope),
            "not_before_policy": token.not_before_policy,
        }
        body = json.dumps(fields, separators=(",", ":"), sort_keys=True).encode("utf-8")
        return json.dumps({**fields, "mac": self._mac(body)}, separators=(",", ":"))

    def _decode(self, raw: bytes | str) -> Token | None:
        try:
            data = json.loads(raw)
            mac = data.pop("mac")
            body = json.dumps(data, separators=(",", ":"), sort_keys=True).encode("utf-8")
            if not (isinstance(mac, str) and hmac.compare_digest(mac, self._mac(body))):
                return None
            token = Token(
                access_token=str(data["access_token"]),
                token_type="Bearer",  # noqa: S106 - type name, not a secret
                issued_at=float(data["issued_at"]),
                expires_at=float(data["expires_at"]),
                scope=tuple(str(s) for s in data["scope"]),
                not_before_policy=int(data["not_before_policy"]),
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return None
        return token if token_fingerprint(token) == data["fp"] else None


def _milliseconds(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _record(raw: bytes | str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        record = _decode(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except (ValueError, UnicodeDecodeError):
        record = None
    if not isinstance(record, dict):
        logger.warning("ignoring an unreadable record in the Redis session store")
        return None
    return record


class RedisLayer:
    """What ``CorpAuth`` shares through Redis: one client and one outage guard.

    Building it does no I/O; ``aclose`` closes the client at the end of the lifespan.
    """

    def __init__(self, url: str, *, prefix: str, timeout: float) -> None:
        self.client = redis_client(url, timeout=timeout)
        self.guard = OutageGuard()
        self._prefix = prefix
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"RedisLayer(prefix={self._prefix!r}, down={self.guard.down})"

    def session_store(self) -> RedisSessionStore:
        return RedisSessionStore(
            self.client, prefix=self._prefix, timeout=self._timeout, guard=self.guard
        )

    def token_cache(self, *, token_url: str, credentials: ClientCredentials) -> RedisTokenCache:
        return RedisTokenCache(
            self.client,
            token_url=token_url,
            credentials=credentials,
            prefix=self._prefix,
            timeout=self._timeout,
            guard=self.guard,
        )

    async def aclose(self) -> None:
        await self.client.aclose()
