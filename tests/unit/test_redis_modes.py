"""Redis modes without a server: settings validation, the outage guard's verdicts, keys."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from pydantic import SecretStr
from redis.asyncio.sentinel import MasterNotFoundError
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    BusyLoadingError,
    ClusterDownError,
    ConnectionError,
    MasterDownError,
    MovedError,
    ReadOnlyError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)

from fastapi_corpauth import ClientCredentials, ConfigurationError, CorpAuth, StoreUnavailable
from fastapi_corpauth._redis import RedisLayer
from fastapi_corpauth.redis import OutageGuard, RedisTokenCache
from tests.support import CLIENT_SECRET, TOKEN_URL, FakeClock, settings

pytestmark = pytest.mark.anyio


def test_default_mode_is_standalone_and_needs_nothing_else() -> None:
    values = settings(redis_url="redis://127.0.0.1:6379/0")
    assert values.redis_mode == "standalone"
    assert values.redis_sentinels == ()
    assert values.redis_service is None


def test_sentinel_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORPAUTH_REDIS_MODE", "sentinel")
    monkeypatch.setenv("CORPAUTH_REDIS_SENTINELS", " s1.internal:26379, s2.internal,[::1]:26380 ")
    monkeypatch.setenv("CORPAUTH_REDIS_SERVICE", "mymaster")
    monkeypatch.setenv("CORPAUTH_REDIS_SENTINEL_PASSWORD", "sentinel-secret")
    values = settings()
    assert values.redis_sentinels == (
        ("s1.internal", 26379),
        ("s2.internal", 26379),
        ("::1", 26380),
    )
    assert values.redis_service == "mymaster"
    assert "sentinel-secret" not in repr(values)
    assert values.redis_url is None  # optional: Sentinel names the master


@pytest.mark.parametrize(
    ("overrides", "variables", "text"),
    [
        ({"redis_mode": "cluster"}, ("CORPAUTH_REDIS_URL",), "required when"),
        (
            {"redis_mode": "cluster", "redis_url": "unix:///run/redis.sock"},
            ("CORPAUTH_REDIS_URL",),
            "redis:// or rediss://",
        ),
        (
            {"redis_mode": "sentinel"},
            ("CORPAUTH_REDIS_SENTINELS", "CORPAUTH_REDIS_SERVICE"),
            "required when CORPAUTH_REDIS_MODE is sentinel",
        ),
        (
            {"redis_mode": "sentinel", "redis_sentinels": "a:1"},
            ("CORPAUTH_REDIS_SERVICE",),
            "required",
        ),
        (
            {"redis_mode": "sentinel", "redis_sentinels": "a:1,b:notaport", "redis_service": "m"},
            ("CORPAUTH_REDIS_SENTINELS",),
            "host:port",
        ),
        (
            {"redis_mode": "sentinel", "redis_sentinels": "user:pw@a:1", "redis_service": "m"},
            ("CORPAUTH_REDIS_SENTINELS",),
            "host:port",
        ),
        (
            {"redis_sentinels": "a:1", "redis_url": "redis://a:6379/0"},
            ("CORPAUTH_REDIS_SENTINELS",),
            "only used when CORPAUTH_REDIS_MODE is sentinel",
        ),
        (
            {"redis_service": "mymaster", "redis_url": "redis://a:6379/0"},
            ("CORPAUTH_REDIS_SERVICE",),
            "only used",
        ),
        ({"redis_mode": "replicated"}, ("CORPAUTH_REDIS_MODE",), "'cluster'"),
    ],
)
def test_mode_settings_that_cannot_work_fail_validation(
    overrides: dict[str, Any], variables: tuple[str, ...], text: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        settings(**overrides)
    assert info.value.variables == variables
    assert text in str(info.value)


@pytest.mark.parametrize(
    ("url", "text"),
    [
        ("redis://:hunter2@127.0.0.1:7000/3", "database 0 only"),
        ("redis://:hunter2@127.0.0.1:notaport/0", "not a valid"),
    ],
)
def test_cluster_urls_that_cannot_work_fail_without_showing_them(url: str, text: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        CorpAuth(settings(redis_mode="cluster", redis_url=url))
    assert info.value.variables == ("CORPAUTH_REDIS_URL",)
    assert text in str(info.value)
    assert "hunter2" not in str(info.value) and info.value.__cause__ is None


def test_building_each_mode_does_no_io() -> None:
    """Nothing listens on these ports: construction must not notice."""
    for layer in (
        RedisLayer(mode="standalone", url="redis://127.0.0.1:1/0", prefix="p", timeout=0.1),
        RedisLayer(mode="cluster", url="redis://127.0.0.1:1/0", prefix="p", timeout=0.1),
        RedisLayer(
            mode="sentinel",
            sentinels=[("127.0.0.1", 1)],
            service="m",
            url="rediss://:pw@/2",
            prefix="p",
            timeout=0.1,
        ),
    ):
        assert "pw" not in repr(layer) and "down=False" in repr(layer)


OUTAGES = [
    ConnectionError("refused"),
    TimeoutError(),
    OSError("unreachable"),
    ClusterDownError("CLUSTERDOWN The cluster is down"),
    MasterDownError("MASTERDOWN Link with MASTER is down"),
    TryAgainError("TRYAGAIN Multiple keys request during rehashing of slot"),
    SlotNotCoveredError("slot 12 is not covered"),
    BusyLoadingError("LOADING Redis is loading the dataset in memory"),
    ReadOnlyError("READONLY You can't write against a read only replica."),
    MasterNotFoundError("No master found for 'corpauth'"),
    AttributeError("'NoneType' object has no attribute 'writelines'"),  # redis-py, mid-refresh
]


@pytest.mark.parametrize("error", OUTAGES, ids=lambda e: type(e).__name__)
async def test_failover_errors_are_outages(error: Exception) -> None:
    clock = FakeClock(0.0)
    guard = OutageGuard(retry_interval=1.0, clock=clock)

    async def failing() -> None:
        raise error

    with pytest.raises(StoreUnavailable) as info:
        await guard.run(failing, limit=1)
    assert info.value.__cause__ is error
    assert guard.down

    async def fine() -> str:
        return "ok"

    with pytest.raises(StoreUnavailable):  # skipped while the cluster switches
        await guard.run(fine, limit=1)
    clock.advance(1.0)
    assert await guard.run(fine, limit=1) == "ok"  # and back by itself
    assert not guard.down


@pytest.mark.parametrize(
    "error",
    [
        MovedError("3999 127.0.0.1:7001"),
        AskError("3999 127.0.0.1:7001"),
        ResponseError("MOVED 3999 127.0.0.1:7001"),  # as older redis-py raises it
    ],
    ids=["MovedError", "AskError", "ResponseError-MOVED"],
)
async def test_redirects_are_not_outages(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    guard = OutageGuard()

    async def redirected() -> None:
        raise error

    for _ in range(3):
        with pytest.raises(StoreUnavailable):
            await guard.run(redirected, limit=1)
    assert not guard.down  # Redis answered: nothing to skip
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "CORPAUTH_REDIS_MODE=cluster" in errors[0]


async def test_token_and_lease_keys_share_a_slot_and_the_prefix() -> None:

    credentials = ClientCredentials(client_id="corp-app", client_secret=SecretStr(CLIENT_SECRET))
    cache = RedisTokenCache(
        "redis://127.0.0.1:1/0", token_url=TOKEN_URL, credentials=credentials, prefix="shop"
    )
    token_key, lease_key = cache._token_key, cache._lease_key
    assert token_key.startswith("shop:token:{") and token_key.endswith("}")
    assert lease_key == token_key + ":lease"
    assert key_slot(token_key.encode()) == key_slot(lease_key.encode())
    await cache.aclose()
