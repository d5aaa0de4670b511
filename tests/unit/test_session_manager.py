"""SessionManager over a shared store: what one worker changes, every other sees at once."""

from __future__ import annotations

import pytest

from fastapi_corpauth._memory_store import MemorySessionStore
from fastapi_corpauth._sealing import Sealer
from fastapi_corpauth._sessions import SessionManager, _session_key
from fastapi_corpauth._token import Token
from tests.support import FakeClock, verified_identity

pytestmark = pytest.mark.anyio

SECRET = "session-manager-test-secret-0123456789"


def token(clock: FakeClock, value: str = "t1") -> Token:
    now = clock()
    return Token(access_token=value, token_type="Bearer", issued_at=now, expires_at=now + 300)


def worker(store: MemorySessionStore, clock: FakeClock) -> SessionManager:
    sealer = Sealer(secrets=[SECRET], purpose="session")
    return SessionManager(store=store, sealer=sealer, session_max_age=3600, clock=clock)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def test_a_session_renewed_or_ended_by_another_worker_is_seen_at_once(
    clock: FakeClock,
) -> None:
    store = MemorySessionStore(clock=clock)
    one, two = worker(store, clock), worker(store, clock)
    session_id = await one.create_session(
        token=token(clock), identity=verified_identity(), flow="code", replaces=None
    )
    for _ in range(3):
        seen = await one.load(session_id)
        assert seen is not None and seen.user.access_token == "t1"
    stored = await two.load(session_id)
    assert stored is not None
    await two.renewed(stored, token(clock, "t2"))
    renewed = await one.load(session_id)
    assert renewed is not None and renewed.user.access_token == "t2"
    await two.end_session(session_id)
    assert await one.load(session_id) is None


async def test_a_record_moved_to_another_session_opens_nowhere(clock: FakeClock) -> None:
    store = MemorySessionStore(clock=clock)
    manager = worker(store, clock)
    victim = await manager.create_session(
        token=token(clock), identity=verified_identity("victim"), flow="token", replaces=None
    )
    attacker = await manager.create_session(
        token=token(clock), identity=verified_identity("attacker"), flow="token", replaces=None
    )
    assert await manager.load(victim) is not None  # opened, and remembered
    moved = await store.get(_session_key(victim))
    assert moved is not None
    await store.set(_session_key(attacker), moved, ttl=600)
    assert await manager.load(attacker) is None


async def test_opened_records_are_bounded(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("fastapi_corpauth._sessions.OPENED_RECORDS_REMEMBERED", 4)
    store = MemorySessionStore(clock=clock)
    manager = worker(store, clock)
    for n in range(10):
        session_id = await manager.create_session(
            token=token(clock), identity=verified_identity(f"c{n}"), flow="token", replaces=None
        )
        assert await manager.load(session_id) is not None
    assert len(manager._opened) == 4
