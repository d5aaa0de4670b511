"""Redis Cluster and Sentinel: start-up checks of the mode, redirects, failovers.

Real processes throughout: the session's six-node cluster and its Sentinel set-up
(``tests/redis_server.py``). A failover test kills a master and leaves the dead node to
the next test's fixture, which restarts it as a replica and waits for a whole cluster.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from fastapi_corpauth import ConfigurationError, CorpAuth, StoreUnavailable
from fastapi_corpauth.redis import RedisSessionStore
from tests.redis_server import (
    RedisClusterServers,
    RedisServer,
    RedisTarget,
    SentinelServers,
    _free_port,
    cluster_target,
    sentinel_target,
)
from tests.support import settings

pytestmark = pytest.mark.anyio


async def start(**overrides: Any) -> None:
    """Run a CorpAuth lifespan with these settings to its start and back."""
    corpauth = CorpAuth(settings(**overrides))
    async with corpauth.lifespan():
        pass


async def test_standalone_mode_on_a_cluster_node_fails_at_start(
    redis_cluster_servers: RedisClusterServers,
) -> None:
    url = redis_cluster_servers.urls()[4]
    CorpAuth(settings(redis_url=url))  # no I/O before the lifespan
    with pytest.raises(ConfigurationError) as info:
        await start(redis_url=url)
    assert info.value.variables == ("CORPAUTH_REDIS_MODE", "CORPAUTH_REDIS_URL")
    assert "CORPAUTH_REDIS_MODE=cluster" in str(info.value)
    assert str(redis_cluster_servers.nodes[4].port) not in str(info.value)  # no URL shown


async def test_cluster_mode_on_a_plain_server_fails_at_start(redis_url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        await start(redis_mode="cluster", redis_url=redis_url)
    assert info.value.variables == ("CORPAUTH_REDIS_MODE", "CORPAUTH_REDIS_URL")
    assert "not in cluster mode" in str(info.value)


async def test_a_sentinel_named_as_a_server_fails_at_start(
    redis_sentinel_servers: SentinelServers,
) -> None:
    host, port = redis_sentinel_servers.addresses[0]
    with pytest.raises(ConfigurationError) as info:
        await start(redis_url=f"redis://{host}:{port}/0")
    assert "names a Sentinel" in str(info.value)
    with pytest.raises(ConfigurationError) as info:
        await start(redis_mode="cluster", redis_url=f"redis://{host}:{port}/0")
    assert "CORPAUTH_REDIS_MODE=sentinel" in str(info.value)


async def test_sentinel_mode_with_an_unknown_service_fails_at_start(
    redis_sentinel_servers: SentinelServers,
) -> None:
    target = sentinel_target(redis_sentinel_servers)
    with pytest.raises(ConfigurationError) as info:
        await start(**{**target.settings(), "redis_service": "no-such-master"})
    assert info.value.variables == ("CORPAUTH_REDIS_SERVICE", "CORPAUTH_REDIS_SENTINELS")
    assert "'no-such-master'" in str(info.value)


async def test_sentinel_list_naming_a_plain_server_fails_at_start(
    redis_sentinel_servers: SentinelServers, shared_redis_server: RedisServer
) -> None:
    target = sentinel_target(redis_sentinel_servers)
    plain = f"127.0.0.1:{shared_redis_server.port}"
    sentinels = target.settings()["redis_sentinels"] + "," + plain
    with pytest.raises(ConfigurationError) as info:
        await start(**{**target.settings(), "redis_sentinels": sentinels})
    assert info.value.variables == ("CORPAUTH_REDIS_SENTINELS",)
    assert str(info.value).endswith("not a Sentinel: " + plain)


@pytest.mark.parametrize("mode", ["standalone", "cluster", "sentinel"])
async def test_redis_unreachable_at_start_is_an_outage_not_an_error(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis restarting while the app deploys must not keep the app down."""
    caplog.set_level(logging.WARNING, logger="fastapi_corpauth")
    dead = f"127.0.0.1:{_free_port()}"
    overrides: dict[str, Any] = {"redis_mode": mode, "redis_timeout": 0.2}
    if mode == "sentinel":
        overrides |= {"redis_sentinels": f"{dead},{dead}", "redis_service": "corpauth"}
    else:
        overrides["redis_url"] = f"redis://{dead}/0"
    await start(**overrides)
    assert "Redis cannot be reached as the app starts" in caplog.text


async def test_a_plain_client_on_a_cluster_node_is_misrouted_not_down(
    redis_cluster_servers: RedisClusterServers, caplog: pytest.LogCaptureFixture
) -> None:
    """What the issue saw: MOVED is "ask another node", not "Redis is down"."""
    master = redis_cluster_servers.masters()[0]
    store = RedisSessionStore(f"redis://127.0.0.1:{master.port}/0")  # a one-server client
    try:
        outcomes = []
        for i in range(30):
            try:
                await store.set(f"session:{i}", {"n": i}, ttl=60)
                outcomes.append("stored")
            except StoreUnavailable as exc:
                assert "(MOVED)" in str(exc)
                outcomes.append("moved")
        assert {"stored", "moved"} == set(outcomes)  # this node's slots work, others not
        assert store.guard.down is False  # never skipped as if Redis were down
    finally:
        await store.aclose()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "CORPAUTH_REDIS_MODE=cluster" in errors[0].getMessage()


async def survive_failover(
    target: RedisTarget,
    master: Callable[[str], RedisServer],
    kill: Callable[[RedisServer], object],
    record: Callable[[str, object], None],
) -> None:
    """Kill the master holding a session; the store answers or fails cleanly, then recovers.

    A session the replica had before the kill is still there afterwards: only writes
    of the last moment before a crash can be lost.
    """
    async with target.open() as layer:
        store = layer.session_store()
        layer.guard._retry_interval = 0.2
        await store.set("session:kept", {"who": "ана"}, ttl=60)
        doomed = master("corpauth:session:kept")
        doomed.wait_replicated()
        kill(doomed)
        killed_at = time.monotonic()
        failures = 0
        recovered_at = None
        deadline = killed_at + 20
        i = 0
        while time.monotonic() < deadline:
            i += 1
            try:
                await store.set(f"session:during-{i}", {"n": i}, ttl=60)
                assert await store.get("session:kept") == {"who": "ана"}
            except StoreUnavailable:  # nothing else may escape
                failures += 1
                recovered_at = None
                await asyncio.sleep(0.05)
                continue
            if recovered_at is None:
                recovered_at = time.monotonic()
            if failures and time.monotonic() - recovered_at > 0.5:
                break  # half a second of successes in a row after the outage
            await asyncio.sleep(0.01)
        assert failures > 0, "the kill was not noticed"
        assert recovered_at is not None, "the store did not recover by itself"
        assert layer.guard.down is False
    record("failover_recovery_seconds", round(recovered_at - killed_at, 2))
    print(f"\n{target.mode}: served again {recovered_at - killed_at:.1f}s after the kill")


async def test_cluster_master_killed_the_store_recovers_by_itself(
    redis_cluster_servers: RedisClusterServers, record_property: Callable[[str, object], None]
) -> None:
    cluster = redis_cluster_servers
    try:
        await survive_failover(
            cluster_target(cluster), cluster.master_for, cluster.kill, record_property
        )
    finally:
        cluster.heal()


async def test_sentinel_master_killed_the_store_recovers_by_itself(
    redis_sentinel_servers: SentinelServers, record_property: Callable[[str, object], None]
) -> None:
    servers = redis_sentinel_servers
    try:
        await survive_failover(
            sentinel_target(servers),
            lambda key: servers.master(),
            servers.kill_server,
            record_property,
        )
    finally:
        servers.heal()


async def test_sentinel_mode_takes_the_masters_options_from_the_url(
    redis_sentinel_servers: SentinelServers,
) -> None:
    """``CORPAUTH_REDIS_URL`` without a host: the database (and password, TLS) only."""
    target = sentinel_target(redis_sentinel_servers)
    corpauth = CorpAuth(settings(**target.settings(), redis_url="redis:///3"))
    async with corpauth.lifespan():
        await corpauth.sessions.store.set("session:x", {"v": 1}, ttl=60)
    with redis_sentinel_servers.master().client() as client:
        client.select(3)
        assert client.keys("*") == [b"corpauth:session:x"]
