"""TokenServices sharing one token through Redis, as the processes of a deployment do.

Each "process" is a ``TokenService`` with its own HTTP client and its own
``RedisTokenCache`` (its own Redis client, started as ``CorpAuth`` starts it) on real
Redis: one server, a six-node cluster that each process enters through another node,
or Sentinel. All of them talk to one scripted token endpoint with latency, so their
fetches overlap.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from redis.crc import key_slot

from fastapi_corpauth import CachePolicy, ClientCredentials, Token, TokenService
from fastapi_corpauth._redis import RedisLayer
from fastapi_corpauth.redis import OutageGuard, RedisTokenCache, SharedTokenCache
from tests.redis_server import BEHAVIOUR_TIMEOUT, RedisServer, RedisTarget, standalone_target
from tests.support import CLIENT_SECRET, TOKEN_URL, FakeClock, TokenEndpoint

pytestmark = pytest.mark.anyio

CREDENTIALS = ClientCredentials(client_id="corp-app", client_secret=SecretStr(CLIENT_SECRET))
POLICY = CachePolicy(leeway=30, refresh_window=60)  # 300 s tokens: refresh at 210, stale at 270


class Deployment:
    """Several token services ("processes") on one Redis and one token endpoint."""

    def __init__(
        self,
        target: RedisTarget,
        endpoint: TokenEndpoint,
        clock: FakeClock,
        *,
        redis_timeout: float = BEHAVIOUR_TIMEOUT,
    ) -> None:
        self.target = target
        self.redis_timeout = redis_timeout
        self.endpoint = endpoint
        self.clock = clock
        self.services: list[TokenService] = []
        self.caches: list[RedisTokenCache] = []
        self._clients: list[httpx.AsyncClient] = []
        self._layers: list[RedisLayer] = []

    async def add(
        self,
        n: int = 1,
        *,
        lease: float = 5.0,
        credentials: ClientCredentials = CREDENTIALS,
        scope: str = "corp",
    ) -> list[TokenService]:
        added = []
        for _ in range(n):
            layer = self.target.layer(entry=len(self._layers), timeout=self.redis_timeout)
            self._layers.append(layer)
            await layer.start()
            client = httpx.AsyncClient(transport=self.endpoint.transport())
            cache = RedisTokenCache(
                layer.client,
                token_url=TOKEN_URL,
                credentials=credentials,
                scope=scope,
                timeout=self.redis_timeout,
                guard=OutageGuard(retry_interval=0.2),
            )
            service = TokenService(
                http=client,
                token_url=TOKEN_URL,
                credentials=credentials,
                scope=scope,
                cache=POLICY,
                clock=self.clock,
                shared=cache,
                lease=lease,
            )
            self._clients.append(client)
            self.caches.append(cache)
            self.services.append(service)
            added.append(service)
        return added

    async def get_all(self, callers: int) -> list[Token]:
        """``callers`` concurrent get_token calls on every service at once."""
        return await asyncio.gather(
            *(service.get_token() for service in self.services for _ in range(callers))
        )

    async def aclose(self) -> None:
        for service in self.services:
            await service.aclose()
        for client in self._clients:
            await client.aclose()
        for layer in self._layers:
            await layer.aclose()


MakeDeployment = Callable[..., Deployment]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(time.time())


@pytest.fixture
async def deployment(redis_target: RedisTarget, clock: FakeClock) -> AsyncIterator[Deployment]:
    deployment = Deployment(redis_target, TokenEndpoint(latency=0.1), clock)
    yield deployment
    await deployment.aclose()


async def eventually(condition: Callable[[], bool], within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_cold_cache_four_processes_one_request(deployment: Deployment) -> None:
    await deployment.add(4)
    tokens = await deployment.get_all(100)
    assert deployment.endpoint.count == 1
    assert {t.access_token for t in tokens} == {"tok-1"}
    assert sum(s.requests_sent for s in deployment.services) == 1
    assert sum(s.shared_adoptions for s in deployment.services) == 3


async def test_a_process_started_later_adopts_the_shared_token(deployment: Deployment) -> None:
    (first,) = await deployment.add(1)
    await first.get_token()
    (late,) = await deployment.add(1)
    assert (await late.get_token()).access_token == "tok-1"
    assert deployment.endpoint.count == 1


async def test_refresh_ahead_across_processes_one_request(
    deployment: Deployment, clock: FakeClock
) -> None:
    await deployment.add(4)
    await deployment.get_all(10)
    clock.advance(211)  # past refresh_at, before stale_at
    tokens = await deployment.get_all(50)
    assert {t.access_token for t in tokens} == {"tok-1"}  # nobody waits at rollover
    await eventually(
        lambda: all(
            s.cached is not None and s.cached.access_token == "tok-2" for s in deployment.services
        )
    )
    assert deployment.endpoint.count == 2


async def test_expiry_across_processes_one_request(
    deployment: Deployment, clock: FakeClock
) -> None:
    await deployment.add(4)
    await deployment.get_all(10)
    clock.advance(280)  # stale: callers wait for the successor
    tokens = await deployment.get_all(100)
    assert {t.access_token for t in tokens} == {"tok-2"}
    assert deployment.endpoint.count == 2


async def test_revocation_one_process_refetches_the_others_adopt(
    deployment: Deployment,
) -> None:
    await deployment.add(4)
    old = (await deployment.get_all(1))[0]
    # Keycloak's not-before push: every process gets a 401 for the old token.
    for service in deployment.services:
        cached = service.cached
        assert cached is not None and cached.access_token == old.access_token
        assert service.invalidate(cached)
    tokens = await deployment.get_all(100)
    assert {t.access_token for t in tokens} == {"tok-2"}
    assert deployment.endpoint.count == 2


async def test_revocation_seen_late_by_another_process(deployment: Deployment) -> None:
    first, second = await deployment.add(2)
    await first.get_token()
    old = await second.get_token()
    first.invalidate(first.cached)  # type: ignore[arg-type]
    assert (await first.get_token()).access_token == "tok-2"
    second.invalidate(old)  # its own 401 comes later
    assert (await second.get_token()).access_token == "tok-2"
    assert deployment.endpoint.count == 2


async def test_a_rejected_token_is_not_adopted_from_redis(deployment: Deployment) -> None:
    (service,) = await deployment.add(1)
    old = await service.get_token()
    cache = deployment.caches[0]
    service.invalidate(old)
    await cache.store(old, ttl=60)  # a stale copy, e.g. put back by a slow process
    assert (await service.get_token()).access_token == "tok-2"
    shared = await cache.load()
    assert shared is not None and shared.access_token == "tok-2"


async def test_crashed_lease_holder_is_taken_over(deployment: Deployment) -> None:
    await deployment.add(4, lease=0.5)
    crashed = deployment.caches[0]
    assert await crashed.acquire(0.5) is not None  # a process took the lease and died
    tokens = await deployment.get_all(25)
    # Nobody waits forever for the dead holder, and only one process takes over.
    assert {t.access_token for t in tokens} == {"tok-1"}
    assert deployment.endpoint.count == 1


async def test_two_clients_never_share_a_token(deployment: Deployment) -> None:
    (ours,) = await deployment.add(1)
    other = ClientCredentials(client_id="other-app", client_secret=SecretStr("other"))
    (theirs,) = await deployment.add(1, credentials=other)
    await ours.get_token()
    await theirs.get_token()
    assert deployment.endpoint.count == 2


async def test_two_scopes_of_one_client_never_share_a_token(deployment: Deployment) -> None:
    """An app configured for ``corp`` must never use a token fetched for more."""
    (narrow,) = await deployment.add(1, scope="corp")
    (wide,) = await deployment.add(1, scope="corp payments:write")
    assert (await narrow.get_token()).access_token != (await wide.get_token()).access_token
    assert deployment.endpoint.count == 2


async def test_only_what_is_needed_goes_to_redis(
    deployment: Deployment, redis_target: RedisTarget
) -> None:
    (service,) = await deployment.add(1)
    token = await service.get_token()
    keys = redis_target.keys()
    assert len(keys) == 1
    key = keys[0]
    assert key.startswith(b"corpauth:token:{")
    raw = redis_target.raw()
    try:
        value = raw.get(key)
        assert isinstance(value, bytes)
        assert CLIENT_SECRET.encode() not in value
        assert token.access_token.encode() not in value  # sealed: useless to whoever reads
        assert set(json.loads(value)) == {"fp", "sealed"}
        pttl = raw.pttl(key)
        assert 299_000 < pttl <= 300_000  # until the token expires
        # A value written without the client secret is ignored...
        forged = json.loads(value)
        forged["sealed"] = forged["sealed"][:-4] + "AAAA"
        raw.set(key, json.dumps(forged))
        assert await deployment.caches[0].load() is None
        # ...and so is a genuine one moved under another key (another scope's).
        raw.set(key, value)
        assert await deployment.caches[0].load() is not None
        raw.set(key + b"x", value)
        moved = json.loads(value)
        raw.set(key, json.dumps({"fp": moved["fp"], "sealed": "x" + moved["sealed"][1:]}))
        assert await deployment.caches[0].load() is None
        assert token.access_token == "tok-1"
    finally:
        raw.close()


async def test_the_token_and_its_lease_share_one_slot(
    deployment: Deployment, redis_target: RedisTarget
) -> None:
    """The hash tag: both keys on one node, so a script over both works on a cluster."""
    (service,) = await deployment.add(1)
    await service.get_token()
    assert await deployment.caches[0].acquire(5) is not None
    token_key, lease_key = redis_target.keys()
    assert lease_key == token_key + b":lease"
    assert key_slot(token_key) == key_slot(lease_key)
    # Both scripts run on a cluster: release and compare-and-delete by fingerprint.
    other = await deployment.caches[0].acquire(5)
    assert other is None
    cached = service.cached
    assert cached is not None and await deployment.caches[0].discard(cached)
    assert redis_target.keys() == [lease_key]


async def test_redis_down_falls_back_to_local_single_flight_then_shares_again(
    own_redis_server: RedisServer, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="fastapi_corpauth")
    deployment = Deployment(
        standalone_target(own_redis_server),
        TokenEndpoint(latency=0.05),
        clock,
        redis_timeout=0.3,
    )
    try:
        await deployment.add(4)
        own_redis_server.stop()
        tokens = await deployment.get_all(50)
        assert deployment.endpoint.count == 4  # one per process: local single flight
        assert len(tokens) == 200
        clock.advance(280)
        await deployment.get_all(50)
        assert deployment.endpoint.count == 8
        outage_warnings = [
            r for r in caplog.records if r.getMessage().startswith("Redis unavailable")
        ]
        assert len(outage_warnings) == 4  # once per process, not per request
        assert all(r.levelno == logging.WARNING for r in outage_warnings)

        own_redis_server.start()
        await asyncio.sleep(0.25)  # the guards' retry interval
        clock.advance(280)
        tokens = await deployment.get_all(50)
        assert deployment.endpoint.count == 9  # shared again: one request for all
        assert len({t.access_token for t in tokens}) == 1
        recoveries = [
            r for r in caplog.records if r.getMessage().startswith("Redis available again")
        ]
        assert len(recoveries) == 4
    finally:
        await deployment.aclose()


async def test_slow_redis_does_not_hold_up_token_fetching(
    own_redis_server: RedisServer, clock: FakeClock
) -> None:
    deployment = Deployment(
        standalone_target(own_redis_server),
        TokenEndpoint(latency=0.05),
        clock,
        redis_timeout=0.3,
    )
    try:
        await deployment.add(2)
        with own_redis_server.paused():
            tokens = await deployment.get_all(50)
        assert len(tokens) == 100
        assert deployment.endpoint.count == 2
    finally:
        await deployment.aclose()


class BrokenCache:
    """A shared cache with a bug: the service must still work."""

    def __init__(self) -> None:
        self.calls = 0

    async def load(self) -> Token | None:
        self.calls += 1
        raise RuntimeError("bug")

    async def store(self, token: Token, *, ttl: float) -> None:
        raise RuntimeError("bug")

    async def discard(self, token: Token) -> bool:
        raise RuntimeError("bug")

    async def acquire(self, lease_seconds: float) -> str | None:
        raise RuntimeError("bug")

    async def release(self, lock: str) -> None:
        raise RuntimeError("bug")


async def test_a_failing_shared_cache_never_fails_the_service(
    caplog: pytest.LogCaptureFixture,
) -> None:
    endpoint = TokenEndpoint()
    broken = BrokenCache()
    assert isinstance(broken, SharedTokenCache)
    async with httpx.AsyncClient(transport=endpoint.transport()) as client:
        service = TokenService(
            http=client, token_url=TOKEN_URL, credentials=CREDENTIALS, shared=broken
        )
        tokens = await asyncio.gather(*(service.get_token() for _ in range(20)))
        await service.aclose()
    assert {t.access_token for t in tokens} == {"tok-1"}
    assert endpoint.count == 1
    assert broken.calls == 1
    assert "shared token cache failed" in caplog.text
    assert "tok-1" not in caplog.text


def test_repr_shows_no_secret() -> None:
    cache = RedisTokenCache(
        "redis://:hunter2@127.0.0.1:1/0", token_url=TOKEN_URL, credentials=CREDENTIALS
    )
    text: Any = repr(cache)
    assert text == "RedisTokenCache(prefix='corpauth', down=False)"
