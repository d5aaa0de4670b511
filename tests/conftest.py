from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.redis_server import RedisServer, redis_server


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
