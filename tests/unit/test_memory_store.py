from __future__ import annotations

import pytest

from fastapi_corpauth._memory_store import MemorySessionStore
from tests.store_contract import RECORD, Advance, SessionStoreContract
from tests.support import FakeClock

pytestmark = pytest.mark.anyio


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class TestMemorySessionStore(SessionStoreContract):
    @pytest.fixture
    def store(self, clock: FakeClock) -> MemorySessionStore:
        return MemorySessionStore(clock=clock)

    @pytest.fixture
    def advance(self, clock: FakeClock) -> Advance:
        async def advance(seconds: float) -> None:
            clock.advance(seconds)

        return advance


async def test_entry_is_gone_exactly_at_its_ttl(clock: FakeClock) -> None:
    store = MemorySessionStore(clock=clock)
    await store.set("session:a", {"v": 1}, ttl=10)
    clock.advance(9.999)
    assert await store.get("session:a") == {"v": 1}
    clock.advance(0.001)
    assert await store.get("session:a") is None
    assert len(store) == 0


async def test_memory_stays_flat_once_full(clock: FakeClock) -> None:
    store = MemorySessionStore(max_entries=100, clock=clock)
    for i in range(500):
        await store.set(f"session:{i}", {"i": i}, ttl=3600)
        assert len(store) <= 100
    assert len(store) == 100


async def test_full_store_evicts_expired_entries_first(clock: FakeClock) -> None:
    store = MemorySessionStore(max_entries=4, clock=clock)
    await store.set("state:old", {"v": 0}, ttl=1)
    await store.set("session:b", {"v": 1}, ttl=5)
    await store.set("session:c", {"v": 2}, ttl=100)
    await store.set("session:d", {"v": 3}, ttl=100)
    clock.advance(2)  # state:old is now expired, session:b is not
    await store.set("session:e", {"v": 4}, ttl=100)
    assert len(store) == 4
    for key in ("session:b", "session:c", "session:d", "session:e"):
        assert await store.get(key) is not None


async def test_full_store_evicts_the_entry_closest_to_expiry(clock: FakeClock) -> None:
    store = MemorySessionStore(max_entries=3, clock=clock)
    await store.set("session:long", {"v": 1}, ttl=3600)
    await store.set("state:short", {"v": 2}, ttl=60)
    await store.set("session:mid", {"v": 3}, ttl=600)
    await store.set("session:new", {"v": 4}, ttl=3600)
    assert await store.get("state:short") is None
    for key in ("session:long", "session:mid", "session:new"):
        assert await store.get(key) is not None


async def test_overwriting_a_key_in_a_full_store_evicts_nothing(clock: FakeClock) -> None:
    store = MemorySessionStore(max_entries=2, clock=clock)
    await store.set("session:a", {"v": 1}, ttl=10)
    await store.set("session:b", {"v": 2}, ttl=20)
    await store.set("session:a", {"v": 3}, ttl=30)
    assert await store.get("session:a") == {"v": 3}
    assert await store.get("session:b") == {"v": 2}


async def test_expired_entries_are_purged_under_steady_traffic(clock: FakeClock) -> None:
    # One new session a second, each living 10 seconds: without purging, 1000 writes
    # would leave 1000 entries behind. Nobody reads them back.
    store = MemorySessionStore(clock=clock)
    for i in range(1000):
        await store.set(f"session:{i}", {"i": i}, ttl=10)
        clock.advance(1)
    assert len(store) <= 11


async def test_rewriting_one_key_keeps_the_expiry_index_small(clock: FakeClock) -> None:
    # A session refreshed on every request must not grow the expiry heap forever.
    store = MemorySessionStore(clock=clock)
    for i in range(10_000):
        await store.set("session:busy", {"i": i}, ttl=600)
    assert len(store) == 1
    assert len(store._heap) < 100
    assert await store.get("session:busy") == {"i": 9_999}


async def test_len_repr_and_aclose(clock: FakeClock) -> None:
    store = MemorySessionStore(max_entries=50, clock=clock)
    await store.set("session:a", RECORD, ttl=60)
    await store.set("session:b", {"access_token": "very-secret-token"}, ttl=60)
    assert len(store) == 2
    text = repr(store) + str(store)
    assert text.count("MemorySessionStore(entries=2, max_entries=50)") == 2
    for secret in ("tok-1", "very-secret-token", "session:a", "access_token"):
        assert secret not in text
    await store.aclose()
    assert len(store) == 0
    assert await store.get("session:a") is None


async def test_rejects_a_record_that_is_not_a_mapping() -> None:
    store = MemorySessionStore()
    with pytest.raises(TypeError, match="mapping"):
        await store.set("session:a", ["not", "a", "dict"], ttl=60)  # type: ignore[arg-type]


def test_rejects_a_bound_below_one() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemorySessionStore(max_entries=0)


async def test_a_burst_of_sign_ins_keeps_the_newest_sessions() -> None:
    """Completed sign-ins leave markers; they must not push out the sessions they made."""
    from fastapi_corpauth._sealing import Sealer
    from fastapi_corpauth._sessions import SessionManager
    from fastapi_corpauth._states import mint_state
    from fastapi_corpauth._token import Token
    from tests.support import FakeClock, verified_identity

    clock = FakeClock()
    store = MemorySessionStore(max_entries=200, clock=clock)
    sealer = Sealer(secrets=["burst-test-secret-0123456789"], purpose="session")
    sessions = SessionManager(store=store, sealer=sealer, session_max_age=28800, clock=clock)
    made = []
    for n in range(1000):
        state = mint_state(b"k" * 32, now=clock())
        clock.advance(0.01)
        assert await sessions.claim_state(state, remember_for=600)
        now = clock()
        token = Token(
            access_token=f"t{n}",
            token_type="Bearer",
            issued_at=now,
            expires_at=now + 300,
        )
        identity = verified_identity(f"c{n}")
        made.append(
            await sessions.create_session(
                token=token, identity=identity, flow="token", replaces=f"b{n}"
            )
        )
    assert len(store) <= 200
    newest = made[-50:]
    kept = [await sessions.load_user(session_id) for session_id in newest]
    assert all(user is not None for user in kept)


async def test_markers_of_completed_sign_ins_go_before_sessions() -> None:
    """Markers may outlive short sessions, yet they are evicted first when full."""
    from tests.support import FakeClock

    clock = FakeClock()
    store = MemorySessionStore(max_entries=100, clock=clock)
    for n in range(50):
        await store.set(f"session:{n}", {"n": n}, ttl=30)
    for n in range(5000):
        await store.set(f"used:{n}", {"used": True}, ttl=60)
    assert len(store) <= 100
    assert all([await store.get(f"session:{n}") is not None for n in range(50)])


async def test_pending_sign_ins_in_flight_survive_a_full_store() -> None:
    """At capacity, concurrent sign-ins must not evict one another's pending state."""
    from tests.support import FakeClock

    clock = FakeClock()
    store = MemorySessionStore(max_entries=100, clock=clock)
    for n in range(100):
        await store.set(f"session:{n}", {"n": n}, ttl=300)
    for n in range(8):
        await store.set(f"state:{n}", {"n": n}, ttl=660)
    assert all([await store.get(f"state:{n}") is not None for n in range(8)])


async def test_without_cheap_keys_the_soonest_to_expire_goes() -> None:
    from tests.support import FakeClock

    clock = FakeClock()
    store = MemorySessionStore(max_entries=2, clock=clock, evict_first=())
    await store.set("session:a", {}, ttl=100)
    await store.set("used:b", {}, ttl=600)
    await store.set("session:c", {}, ttl=300)
    assert await store.get("session:a") is None
    assert await store.get("used:b") is not None
