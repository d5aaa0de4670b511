from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.redis_server import (
    RedisClusterServers,
    RedisServer,
    RedisTarget,
    SentinelServers,
    cluster_target,
    redis_cluster,
    redis_sentinel,
    redis_server,
    sentinel_target,
    standalone_target,
)

REDIS_MODES = ("standalone", "cluster", "sentinel")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def shared_redis_server() -> Iterator[RedisServer]:
    """One redis-server for the whole test session (skipped without the binary, not in CI)."""
    with redis_server() as server:
        yield server


@pytest.fixture
def redis_url(shared_redis_server: RedisServer) -> str:
    """The session's redis-server, flushed before the test."""
    shared_redis_server.flush()
    return shared_redis_server.url


@pytest.fixture
def own_redis_server() -> Iterator[RedisServer]:
    """A redis-server for this test alone, for tests that stop, pause or restart it."""
    with redis_server() as server:
        yield server


@pytest.fixture(scope="session")
def shared_redis_cluster() -> Iterator[RedisClusterServers]:
    """One six-node Redis Cluster (3 masters, 3 replicas) for the whole test session."""
    with redis_cluster() as cluster:
        yield cluster


@pytest.fixture
def redis_cluster_servers(shared_redis_cluster: RedisClusterServers) -> RedisClusterServers:
    """The session's cluster, whole again (after a test that killed a node) and flushed."""
    shared_redis_cluster.heal()
    shared_redis_cluster.flush()
    return shared_redis_cluster


@pytest.fixture(scope="session")
def shared_redis_sentinel() -> Iterator[SentinelServers]:
    """One master, replica and three Sentinels for the whole test session."""
    with redis_sentinel() as servers:
        yield servers


@pytest.fixture
def redis_sentinel_servers(shared_redis_sentinel: SentinelServers) -> SentinelServers:
    """The session's Sentinel set-up, whole again and flushed."""
    shared_redis_sentinel.heal()
    shared_redis_sentinel.flush()
    return shared_redis_sentinel


@pytest.fixture(params=REDIS_MODES)
def redis_target(request: pytest.FixtureRequest) -> RedisTarget:
    """Each Redis deployment in turn (one server, a cluster, Sentinel), flushed.

    Each is started once per session, the first time a test asks for it.
    """
    mode: str = request.param
    if mode == "cluster":
        return cluster_target(request.getfixturevalue("redis_cluster_servers"))
    if mode == "sentinel":
        return sentinel_target(request.getfixturevalue("redis_sentinel_servers"))
    server: RedisServer = request.getfixturevalue("shared_redis_server")
    server.flush()
    return standalone_target(server)
