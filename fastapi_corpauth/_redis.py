"""Redis as the layer the workers of one deployment share (the ``redis`` extra).

``RedisSessionStore`` keeps sign-in sessions and pending sign-in states, so a sign-in
started on one worker completes on another; ``RedisTokenCache`` lets every process use
one client_credentials token. Both go through an ``OutageGuard``: when Redis is down or
slow, an operation fails fast with ``StoreUnavailable`` (callers fall back: sessions
read as "signed out", tokens are fetched per process), a warning is logged once per
outage, and Redis is tried again by itself every ``retry_interval`` seconds.

Both take a client for one server (``redis_client``), for a Redis Cluster
(``redis_cluster_client``: it learns the other nodes from any one and follows ``MOVED``
and ``ASK`` itself) or for the master that Sentinel names (redis-py's
``Sentinel.master_for``). Every operation touches one key, except in ``RedisTokenCache``,
whose token and fetch lease share a hash tag and so one cluster slot.

Nothing here is imported by ``fastapi_corpauth`` itself: the core works without redis-py.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, TypeAlias, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import (
    AskError,
    ClusterCrossSlotError,
    MovedError,
    NoPermissionError,
    RedisClusterException,
    RedisError,
    ResponseError,
)

from ._config import ClientCredentials
from ._errors import ConfigurationError
from ._memory_store import _decode, _encode
from ._sealing import Sealer
from ._shared_cache import token_fingerprint
from ._store import Record, StoreUnavailable
from ._token import Token

__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_TIMEOUT",
    "OutageGuard",
    "RedisSessionStore",
    "RedisClient",
    "RedisTokenCache",
    "redis_client",
    "redis_cluster_client",
]

logger = logging.getLogger("fastapi_corpauth.redis")
_T = TypeVar("_T")

DEFAULT_PREFIX = "corpauth"
#: Seconds a Redis command may take (connect included) before Redis counts as down.
DEFAULT_TIMEOUT = 0.5

#: What the stores take: a client for one server (or Sentinel's master), or a cluster.
RedisClient: TypeAlias = aioredis.Redis | RedisCluster
RedisMode = Literal["standalone", "cluster", "sentinel"]

#: "Ask another node": a plain client talking to a cluster node. Redis is up; the
#: configuration is wrong. Older redis-py raises a plain ``ResponseError`` for these.
_REDIRECTS = frozenset({"MOVED", "ASK", "CROSSSLOT"})
#: Redis, or the part of a cluster holding the key, cannot serve now: down, slow,
#: loading, read-only after a failover, ``CLUSTERDOWN``, ``TRYAGAIN``, no master known.
_OUTAGE = (RedisError, RedisClusterException, OSError, TimeoutError)

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


def redis_cluster_client(url: str, *, timeout: float = DEFAULT_TIMEOUT) -> RedisCluster:
    """A redis-py asyncio ``RedisCluster`` entering through ``url``; does no I/O.

    ``url`` names any node, primary or replica. At its first command the client reads
    the slot map from it, then sends each key to the node owning its slot, follows
    ``MOVED`` and ``ASK`` itself, and reads the map again when a node fails, so that
    after a failover it finds the promoted replica. Connect and read timeouts are
    ``timeout``, for every node.

    Raises:
        ValueError: ``url`` is not a redis:// or rediss:// URL of database 0 (the
            message does not repeat it).
    """
    options = _url_options(url)
    if "path" in options:
        raise ValueError("a Redis Cluster is reached over TCP: use a redis:// or rediss:// URL")
    if options.get("db"):
        raise ValueError("a Redis Cluster has database 0 only")
    try:
        return RedisCluster.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # As many connections per node as redis_client allows: a burst of requests
            # waits on Redis, never fails for want of a pooled connection.
            max_connections=2**31,
        )
    except (ValueError, TypeError, RedisClusterException):
        raise ValueError("not a valid Redis Cluster URL (redis:// or rediss://)") from None


def _sentinel_clients(
    sentinels: Sequence[tuple[str, int]],
    service: str,
    *,
    url: str | None,
    sentinel_password: str | None,
    timeout: float,
) -> tuple[Sentinel, aioredis.Redis]:
    """Sentinel, and a client for the master it names ``service``; does no I/O.

    Each new connection asks the Sentinels where the master is, so after a failover
    the client reconnects to the promoted replica; a connection still open to the old
    master fails (``READONLY`` becomes a connection error) and is replaced. ``url``
    gives the master's credentials, database and TLS; its host is not used.

    Raises:
        ValueError: ``url`` is not a redis:// or rediss:// URL.
    """
    master: dict[str, Any] = {}
    if url is not None:
        master = _url_options(url)
        if "path" in master:
            raise ValueError("Sentinel names a TCP master: use a redis:// or rediss:// URL")
        master.pop("host", None)
        master.pop("port", None)
        if master.pop("connection_class", None) is SSLConnection:
            master["ssl"] = True
    socket = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    sentinel = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
        list(sentinels),
        sentinel_kwargs={
            **socket,
            **({"password": sentinel_password} if sentinel_password else {}),
        },
        **socket,
        **master,
    )
    client = sentinel.master_for(service, redis_class=aioredis.Redis, retry=Retry(NoBackoff(), 1))
    return sentinel, client


async def _close_client(client: RedisClient) -> None:
    """Close ``client`` and every connection it opened.

    ``RedisCluster.aclose`` does nothing while the client waits to read the slot map
    again (after a node failed), though the other nodes' connections are still open,
    so for a cluster every node is disconnected here too.
    """
    await client.aclose()
    if isinstance(client, RedisCluster):
        manager = client.nodes_manager
        for node in (*manager.nodes_cache.values(), *manager.startup_nodes.values()):
            try:
                await node.disconnect()
            except _OUTAGE:  # a connection that failed is closed all the same
                pass


def _url_options(url: str) -> dict[str, Any]:
    try:
        return dict(parse_url(url))
    except (ValueError, TypeError):
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
        self._misrouted_logged = False

    def __repr__(self) -> str:
        return f"OutageGuard(down={self.down})"

    @property
    def down(self) -> bool:
        """Whether Redis failed and has not answered since."""
        return self._down_since is not None

    async def run(self, operation: Callable[[], Awaitable[_T]], *, limit: float) -> _T:
        """Run ``operation``, allowing it ``limit`` seconds.

        A cluster in failover (``CLUSTERDOWN``, ``TRYAGAIN``, a node that does not
        answer, no master known to Sentinel) is an outage like a server that is down. A
        redirection (``MOVED``, ``ASK``) that reaches here is not: Redis answered, but
        to a client that cannot follow it (a single-server client on a cluster node).
        The operation fails and an error is logged once, without skipping Redis.

        Raises:
            StoreUnavailable: Redis failed, timed out, redirected the command, or is
                being skipped after a failure.
        """
        probe = False
        if self._down_since is not None:
            if self._probing or self._clock() < self._skip_until:
                raise StoreUnavailable("Redis is unavailable")
            self._probing = probe = True
        try:
            async with asyncio.timeout(limit):
                result = await operation()
        except _OUTAGE as exc:
            redirect = _redirect(exc)
            if redirect is not None:
                self._misrouted(redirect)
                raise StoreUnavailable(f"Redis redirected the command ({redirect})") from exc
            self._failed(exc)
            raise StoreUnavailable(f"Redis is unavailable ({type(exc).__name__})") from exc
        except Exception as exc:
            # redis-py's cluster client fails with AttributeError and the like while
            # its view of the nodes changes under load (a failover, a cold start): to
            # callers that is Redis failing, never a crash. The traceback is logged at
            # DEBUG, with the first failure of an outage.
            self._failed(exc, unexpected=True)
            raise StoreUnavailable(f"Redis is unavailable ({type(exc).__name__})") from exc
        finally:
            if probe:
                self._probing = False
        self._succeeded()
        return result

    def _failed(self, exc: BaseException, *, unexpected: bool = False) -> None:
        now = self._clock()
        self._skip_until = now + self._retry_interval
        if self._down_since is None:
            self._down_since = now
            if unexpected:
                logger.debug("unexpected error from the Redis client", exc_info=exc)
            logger.warning(
                "Redis unavailable (%s); falling back to per-process tokens and "
                "signed-out sessions, retrying every %.1fs",
                type(exc).__name__,
                self._retry_interval,
            )

    def _misrouted(self, redirect: str) -> None:
        if not self._misrouted_logged:
            self._misrouted_logged = True
            logger.error(
                "Redis redirected a command to another node (%s): it is a Redis Cluster, "
                "which needs CORPAUTH_REDIS_MODE=cluster (or a RedisCluster client)",
                redirect,
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
        redis: RedisClient | str,
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
            await _close_client(self._redis)


class RedisSessionStore(_RedisUser):
    """A ``SessionStore`` in Redis: JSON values under ``<prefix>:<key>`` with ``PX`` expiry.

    ``redis`` is a client (``redis.asyncio.Redis``, including Sentinel's ``master_for``,
    or ``RedisCluster``; left open by ``aclose``) or the URL of one server (a client with
    ``timeout`` is built, without I/O, and closed by ``aclose``). Each operation is a
    single-key command, so on a cluster every key simply goes to its own slot. Records
    are checked like ``MemorySessionStore`` checks them (``TypeError`` unless they survive
    JSON, ``ValueError`` for a bad ttl); ``pop`` is ``GETDEL``, so of two concurrent
    pops on any workers one gets the record. Every Redis failure or timeout raises
    ``StoreUnavailable``.
    """

    def __init__(
        self,
        redis: RedisClient | str,
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

    The token lives under ``<prefix>:token:{<hash of token_url, client_id and scope>}``
    (so two clients, or one client configured for two scopes, never share a token) with
    ``PX`` until it expires, and the fetch lease next to it under ``...:lease`` (``SET NX
    PX``). The braces are a Redis Cluster hash tag: both keys hash to one slot, so the
    token and its lease always live on one node and the compare-and-delete scripts, which
    name their keys, work on a cluster as on one server.

    The value is sealed (AES-256-GCM, ``Sealer``) under a key derived from the client
    secret, which never goes to Redis, and bound to its key name: whoever reads Redis
    cannot use the company's token, and a value written or moved by anyone without the
    secret opens as nothing. Next to it, only a one-way fingerprint for compare-and-delete.
    """

    def __init__(
        self,
        redis: RedisClient | str,
        *,
        token_url: str,
        credentials: ClientCredentials,
        scope: str | None = None,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = DEFAULT_TIMEOUT,
        guard: OutageGuard | None = None,
    ) -> None:
        super().__init__(redis, prefix=prefix, timeout=timeout, guard=guard)
        identity = (
            f"{token_url}\n{credentials.client_id}\n{' '.join(sorted((scope or '').split()))}"
        )
        client = hashlib.sha256(identity.encode()).hexdigest()
        self._token_key = f"{prefix}:token:{{{client[:32]}}}"
        self._lease_key = self._token_key + ":lease"
        self._sealer = Sealer(secrets=[credentials.client_secret], purpose="shared-token")
        self._unreadable_logged = False

    async def load(self) -> Token | None:
        """The shared token, or None if there is none or it does not open."""
        raw: bytes | str | None = await self._run(lambda: self._redis.get(self._token_key))
        if raw is None:
            return None
        token = self._decode(raw)
        if token is None and not self._unreadable_logged:
            self._unreadable_logged = True
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

    def _encode(self, token: Token) -> str:
        fields = {
            "access_token": token.access_token,
            "issued_at": token.issued_at,
            "expires_at": token.expires_at,
            "scope": list(token.scope),
            "not_before_policy": token.not_before_policy,
        }
        sealed = self._sealer.seal(fields, where=self._token_key)
        return json.dumps({"fp": token_fingerprint(token), "sealed": sealed})

    def _decode(self, raw: bytes | str) -> Token | None:
        try:
            outer = json.loads(raw)
            data = self._sealer.open(outer.get("sealed"), where=self._token_key)
            if data is None:
                return None
            token = Token(
                access_token=str(data["access_token"]),
                token_type="Bearer",  # noqa: S106 - type name, not a secret
                issued_at=float(data["issued_at"]),
                expires_at=float(data["expires_at"]),
                scope=tuple(str(s) for s in data["scope"]),
                not_before_policy=int(data["not_before_policy"]),
            )
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
            return None
        return token if token_fingerprint(token) == outer.get("fp") else None


def _redirect(exc: BaseException) -> str | None:
    """``MOVED``, ``ASK`` or ``CROSSSLOT`` if Redis answered with one, else None."""
    if isinstance(exc, MovedError):  # before AskError: a MovedError is one
        return "MOVED"
    if isinstance(exc, AskError):
        return "ASK"
    if isinstance(exc, ClusterCrossSlotError):
        return "CROSSSLOT"
    if isinstance(exc, ResponseError) and exc.args and isinstance(exc.args[0], str):
        word = exc.args[0].split(" ", 1)[0]
        return word if word in _REDIRECTS else None
    return None


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

    ``mode`` says what the settings name: ``standalone``, one server at ``url``;
    ``cluster``, any node of a Redis Cluster at ``url``; ``sentinel``, the master the
    ``sentinels`` know as ``service`` (``url``, optional, then gives only the master's
    credentials, database and TLS). Building it does no I/O; ``start`` checks the
    servers once as the app starts, ``aclose`` closes the clients at the end.

    Raises:
        ConfigurationError: ``url`` cannot be used in this mode (the message does not
            repeat it).
    """

    def __init__(
        self,
        *,
        mode: RedisMode = "standalone",
        url: str | None = None,
        sentinels: Sequence[tuple[str, int]] = (),
        service: str | None = None,
        sentinel_password: str | None = None,
        prefix: str,
        timeout: float,
    ) -> None:
        self.mode = mode
        self.guard = OutageGuard()
        self._url = url
        self._sentinels = tuple(sentinels)
        self._service = service or ""
        self._prefix = prefix
        self._timeout = timeout
        self._sentinel: Sentinel | None = None
        self.client: RedisClient
        try:
            if mode == "sentinel":
                self._sentinel, self.client = _sentinel_clients(
                    self._sentinels,
                    self._service,
                    url=url,
                    sentinel_password=sentinel_password,
                    timeout=timeout,
                )
            elif url is None:
                raise ValueError(f"{mode} mode needs a URL")
            elif mode == "cluster":
                self.client = redis_cluster_client(url, timeout=timeout)
            else:
                self.client = redis_client(url, timeout=timeout)
        except ValueError as exc:
            raise ConfigurationError(
                f"invalid fastapi-corpauth settings: CORPAUTH_REDIS_URL is unusable ({exc})",
                variables=("CORPAUTH_REDIS_URL",),
            ) from None

    def __repr__(self) -> str:
        return f"RedisLayer(mode={self.mode!r}, prefix={self._prefix!r}, down={self.guard.down})"

    def session_store(self) -> RedisSessionStore:
        return RedisSessionStore(
            self.client, prefix=self._prefix, timeout=self._timeout, guard=self.guard
        )

    def token_cache(
        self, *, token_url: str, credentials: ClientCredentials, scope: str | None = None
    ) -> RedisTokenCache:
        return RedisTokenCache(
            self.client,
            token_url=token_url,
            credentials=credentials,
            scope=scope,
            prefix=self._prefix,
            timeout=self._timeout,
            guard=self.guard,
        )

    async def start(self) -> None:
        """Check once, as the app starts, that the servers are what the mode says.

        A Redis that cannot be reached now is not a configuration error: a warning is
        logged and the app starts; Redis is then tried at each use, as after an outage.

        Raises:
            ConfigurationError: a cluster node in standalone mode (or a Sentinel), a
                server without cluster mode in cluster mode, a listed Sentinel that is
                not one, or Sentinels that answer but know no master by the service
                name. The clients are closed then.
        """
        try:
            if self.mode == "cluster":
                await self._check_cluster()
            elif self.mode == "sentinel":
                await self._check_sentinels()
            else:
                await self._check_server()
        except ConfigurationError:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        await _close_client(self.client)
        if self._sentinel is not None:
            for sentinel in self._sentinel.sentinels:
                await sentinel.aclose()

    async def _check_server(self) -> None:
        assert isinstance(self.client, aioredis.Redis)
        try:
            kind = await self._server_kind(self.client)
        except _OUTAGE as exc:
            _unreachable_at_start(exc)
            return
        if kind == "cluster":
            raise ConfigurationError(
                "CORPAUTH_REDIS_URL names a Redis Cluster node, but CORPAUTH_REDIS_MODE is "
                "standalone: set CORPAUTH_REDIS_MODE=cluster",
                variables=("CORPAUTH_REDIS_MODE", "CORPAUTH_REDIS_URL"),
            )
        if kind == "sentinel":
            raise ConfigurationError(
                "CORPAUTH_REDIS_URL names a Sentinel, not a Redis server: set "
                "CORPAUTH_REDIS_MODE=sentinel, CORPAUTH_REDIS_SENTINELS and "
                "CORPAUTH_REDIS_SERVICE",
                variables=("CORPAUTH_REDIS_MODE", "CORPAUTH_REDIS_URL"),
            )

    async def _check_cluster(self) -> None:
        assert isinstance(self.client, RedisCluster) and self._url is not None
        try:
            # Reads the slot map from the node named (two round trips at most, plus
            # the command table), the way the first command would.
            async with asyncio.timeout(self._timeout * 4):
                await self.client.initialize()
            return
        except _OUTAGE as exc:
            failure: BaseException = exc
        node = redis_client(self._url, timeout=self._timeout)
        try:
            kind = await self._server_kind(node)
        except _OUTAGE:
            kind = None
        finally:
            await node.aclose()
        if kind not in (None, "", "cluster"):
            raise ConfigurationError(
                "CORPAUTH_REDIS_MODE is cluster, but CORPAUTH_REDIS_URL names a Redis "
                f"server that is not in cluster mode ({kind}): name a cluster node, or "
                f"set CORPAUTH_REDIS_MODE={'sentinel' if kind == 'sentinel' else 'standalone'}",
                variables=("CORPAUTH_REDIS_MODE", "CORPAUTH_REDIS_URL"),
            )
        _unreachable_at_start(failure)

    async def _check_sentinels(self) -> None:
        assert self._sentinel is not None
        service = self._service

        async def ask(sentinel: aioredis.Redis) -> Any:
            async with asyncio.timeout(self._timeout):
                command: Any = sentinel.execute_command  # untyped in some redis-py versions
                return await command("SENTINEL GET-MASTER-ADDR-BY-NAME", service)

        answers = await asyncio.gather(
            *(ask(sentinel) for sentinel in self._sentinel.sentinels), return_exceptions=True
        )
        strangers = []
        for (host, port), answer in zip(self._sentinels, answers, strict=True):
            if isinstance(answer, ResponseError) and not isinstance(answer, NoPermissionError):
                strangers.append(f"{host}:{port}")
            elif isinstance(answer, BaseException) and not isinstance(answer, _OUTAGE):
                raise answer
        if strangers:
            raise ConfigurationError(
                "CORPAUTH_REDIS_SENTINELS lists a server that is not a Sentinel: "
                + ", ".join(strangers),
                variables=("CORPAUTH_REDIS_SENTINELS",),
            )
        if any(answer and not isinstance(answer, BaseException) for answer in answers):
            return
        if any(answer is None for answer in answers):
            raise ConfigurationError(
                f"no Sentinel in CORPAUTH_REDIS_SENTINELS knows a master named {service!r}: "
                "check CORPAUTH_REDIS_SERVICE",
                variables=("CORPAUTH_REDIS_SERVICE", "CORPAUTH_REDIS_SENTINELS"),
            )
        _unreachable_at_start(next(a for a in answers if isinstance(a, BaseException)))

    async def _server_kind(self, client: aioredis.Redis) -> str:
        """``redis_mode`` from ``INFO``: standalone, cluster or sentinel; "" if refused."""
        try:
            async with asyncio.timeout(self._timeout * 2):
                info = await client.info("server")
        except ResponseError:  # INFO disabled, as some managed services allow: cannot tell
            return ""
        return str(info.get("redis_mode") or "")


def _unreachable_at_start(exc: BaseException) -> None:
    logger.warning(
        "Redis cannot be reached as the app starts (%s); starting without it, and "
        "trying it again at each use",
        type(exc).__name__,
    )
