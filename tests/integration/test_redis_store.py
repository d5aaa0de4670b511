"""RedisSessionStore against real Redis: the store contract on one server, a cluster and
Sentinel; isolation; outages, failovers and misconfigured modes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
import redis.asyncio as aioredis

from fastapi_corpauth import CorpAuth, StoreUnavailable
from fastapi_corpauth._sealing import Sealer
from fastapi_corpauth._sessions import SessionManager
from fastapi_corpauth.redis import OutageGuard, RedisSessionStore
from tests.redis_server import RedisServer, RedisTarget, _free_port
from tests.store_contract import RECORD, Advance, SessionStoreContract
from tests.support import settings

pytestmark = pytest.mark.anyio


class TestRedisSessionStore(SessionStoreContract):
    """The contract on each deployment: one server, a cluster, Sentinel's master."""

    @pytest.fixture
    async def store(self, redis_target: RedisTarget) -> AsyncIterator[RedisSessionStore]:
        async with redis_target.open(prefix="contract") as layer:
            yield layer.session_store()

    @pytest.fixture
    def advance(self) -> Advance:
        return asyncio.sleep


async def test_keys_live_under_the_prefix_and_prefixes_are_apart(
    redis_target: RedisTarget,
) -> None:
    async with (
        redis_target.open(prefix="app-one") as one,
        redis_target.open(prefix="app-two", entry=1) as two,
    ):
        store_one, store_two = one.session_store(), two.session_store()
        await store_one.set("session:a", {"app": 1}, ttl=60)
        await store_two.set("session:a", {"app": 2}, ttl=60)
        assert await store_one.get("session:a") == {"app": 1}
        assert await store_two.pop("session:a") == {"app": 2}
        assert await store_one.get("session:a") == {"app": 1}
    assert redis_target.keys() == [b"app-one:session:a"]
    raw = redis_target.raw()
    try:
        assert 59_000 < raw.pttl("app-one:session:a") <= 60_000
    finally:
        raw.close()


async def test_a_pop_on_one_worker_excludes_the_others(redis_target: RedisTarget) -> None:
    async with AsyncExitStack() as stack:
        layers = [await stack.enter_async_context(redis_target.open(entry=i)) for i in range(4)]
        workers = [layer.session_store() for layer in layers]  # each entered another node
        await workers[0].set("state:once", RECORD, ttl=60)
        results = await asyncio.gather(*(w.pop("state:once") for w in workers for _ in range(25)))
        assert [r for r in results if r is not None] == [RECORD]


async def test_sessions_written_through_one_node_are_read_through_any(
    redis_target: RedisTarget,
) -> None:
    """The issue's 0 of 30: keys of every slot, written and read through other nodes."""
    async with AsyncExitStack() as stack:
        entries = range(max(2, len(redis_target.urls)))
        layers = [await stack.enter_async_context(redis_target.open(entry=i)) for i in entries]
        stores = [layer.session_store() for layer in layers]
        for i in range(30):
            await stores[i % len(stores)].set(f"session:{i}", {"n": i}, ttl=60)
        for i in range(30):
            assert await stores[(i + 1) % len(stores)].get(f"session:{i}") == {"n": i}
        assert not any(layer.guard.down for layer in layers)
    if redis_target.mode == "cluster":
        raw: Any = redis_target.raw()
        try:
            owners = {raw.get_node_from_key(f"corpauth:session:{i}").name for i in range(30)}
        finally:
            raw.close()
        assert len(owners) == 3  # spread over every master: really a cluster


async def test_a_passed_in_client_is_left_open(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    store = RedisSessionStore(client)
    await store.set("session:a", {"v": 1}, ttl=60)
    await store.aclose()
    assert await client.get("corpauth:session:a") is not None
    await client.aclose()


async def test_unreadable_records_read_as_absent(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    raw = aioredis.Redis.from_url(redis_url)
    store = RedisSessionStore(redis_url)
    try:
        await raw.set("corpauth:session:bad", b"\xff not json")
        await raw.set("corpauth:session:list", b"[1, 2]")
        assert await store.get("session:bad") is None
        assert await store.pop("session:list") is None
        assert "unreadable record" in caplog.text
    finally:
        await store.aclose()
        await raw.aclose()


def count_calls(store: RedisSessionStore) -> list[str]:
    """The commands that actually went to Redis (the guard skips the others)."""
    calls: list[str] = []
    client = store._redis
    for name in ("get", "set", "getdel", "delete"):
        original = getattr(client, name)

        def counted(*args: Any, _original: Any = original, _name: str = name, **kw: Any) -> Any:
            calls.append(_name)
            return _original(*args, **kw)

        setattr(client, name, counted)
    return calls


async def test_unreachable_redis_fails_fast_with_store_unavailable() -> None:
    store = RedisSessionStore(f"redis://127.0.0.1:{_free_port()}/0", timeout=0.3)
    calls = count_calls(store)
    try:
        with pytest.raises(StoreUnavailable) as info:
            await store.get("session:a")
        assert isinstance(info.value.__cause__, Exception)
        for operation in (
            store.set("session:a", {"v": 1}, ttl=5),
            store.pop("state:a"),
            store.delete("session:a"),
        ):
            with pytest.raises(StoreUnavailable):
                await operation
        assert calls == ["get"]  # the outage is known after one try; the rest skip Redis
    finally:
        await store.aclose()


async def test_slow_redis_costs_one_timeout_per_outage_then_recovers(
    own_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="fastapi_corpauth")
    guard = OutageGuard(retry_interval=0.3)
    store = RedisSessionStore(own_redis_server.url, timeout=0.2, guard=guard)
    try:
        await store.set("session:a", {"v": 1}, ttl=60)
        calls = count_calls(store)
        with own_redis_server.paused():
            with pytest.raises(StoreUnavailable):  # the command times out
                await store.get("session:a")
            results = await asyncio.gather(
                *(store.get("session:a") for _ in range(200)), return_exceptions=True
            )
            assert all(isinstance(r, StoreUnavailable) for r in results)
            assert calls == ["get"]  # skipped, not timed out 200 times
            await asyncio.sleep(0.35)
            with pytest.raises(StoreUnavailable):  # one probe, still down
                await store.get("session:a")
        await asyncio.sleep(0.35)
        assert await store.get("session:a") == {"v": 1}
        assert guard.down is False
    finally:
        await store.aclose()
    messages = [r.getMessage() for r in caplog.records if r.name == "fastapi_corpauth.redis"]
    assert len([m for m in messages if m.startswith("Redis unavailable")]) == 1
    assert len([m for m in messages if m.startswith("Redis available again")]) == 1


async def test_store_recovers_after_a_redis_restart(own_redis_server: RedisServer) -> None:
    store = RedisSessionStore(own_redis_server.url, guard=OutageGuard(retry_interval=0.1))
    try:
        await store.set("session:a", {"v": 1}, ttl=60)
        own_redis_server.stop()
        with pytest.raises(StoreUnavailable):
            await store.get("session:a")
        own_redis_server.start()
        await asyncio.sleep(0.15)
        assert await store.get("session:a") is None  # no persistence: the restart lost it
        await store.set("session:b", {"v": 2}, ttl=60)
        assert await store.get("session:b") == {"v": 2}
    finally:
        await store.aclose()


async def test_sessions_read_as_signed_out_while_redis_is_down(
    own_redis_server: RedisServer,
) -> None:
    store = RedisSessionStore(own_redis_server.url, guard=OutageGuard(retry_interval=0.1))
    sealer = Sealer(secrets=["redis-down-test-secret-0123"], purpose="session")
    manager = SessionManager(store=store, sealer=sealer, session_max_age=3600)
    try:
        own_redis_server.stop()
        assert await manager.load_user("some-session-id") is None
        await manager.end_session("some-session-id")  # logged, not raised
    finally:
        await store.aclose()


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="Redis URL"):
        RedisSessionStore("http://:hunter2@127.0.0.1:1/0")
    with pytest.raises(ValueError, match="timeout"):
        RedisSessionStore("redis://127.0.0.1:1/0", timeout=0)
    with pytest.raises(ValueError, match="prefix"):
        RedisSessionStore("redis://127.0.0.1:1/0", prefix="")


async def test_repr_names_no_url_or_password() -> None:
    store = RedisSessionStore("redis://:hunter2@127.0.0.1:1/0", prefix="shop")
    assert repr(store) == "RedisSessionStore(prefix='shop', down=False)"
    await store.aclose()


async def test_corpauth_uses_redis_when_configured(redis_url: str) -> None:
    corpauth = CorpAuth(
        settings(
            redis_url=redis_url.replace("redis://", "redis://:@"),
            redis_prefix="shop",
            session_secret="0123456789abcdef0123",
        )
    )
    store: Any = corpauth.sessions.store
    assert isinstance(store, RedisSessionStore)
    async with corpauth.lifespan():
        assert corpauth.tokens._shared is not None
        await store.set("session:x", {"v": 1}, ttl=5)
    raw = aioredis.Redis.from_url(redis_url)
    assert await raw.keys("*") == [b"shop:session:x"]
    await raw.aclose()


def test_corpauth_refuses_a_bad_redis_url_without_showing_it() -> None:
    from fastapi_corpauth import ConfigurationError

    with pytest.raises(ConfigurationError) as info:
        settings(redis_url="https://:hunter2@example.test")
    assert info.value.variables == ("CORPAUTH_REDIS_URL",)
    assert "hunter2" not in str(info.value)
    with pytest.raises(ConfigurationError) as info:
        CorpAuth(settings(redis_url="redis://:hunter2@127.0.0.1:notaport/0"))
    assert "hunter2" not in str(info.value) + repr(info.value.__cause__)
