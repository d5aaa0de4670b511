"""The behaviour every ``SessionStore`` must have, as a test class to inherit.

A concrete suite subclasses ``SessionStoreContract`` under a ``Test*`` name and overrides
the ``store`` fixture (and ``advance``, which makes time pass: a fake clock for the memory
store, a real sleep for a networked one), as itsdangerous' test classes do::

    class TestRedisSessionStore(SessionStoreContract):
        @pytest.fixture
        async def store(self) -> AsyncIterator[SessionStore]: ...

The TTLs here are short (a second or two), so a real-time ``advance`` stays usable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from fastapi_corpauth._store import SessionStore

Advance = Callable[[float], Awaitable[None]]

RECORD: dict[str, Any] = {
    "access_token": "tok-1",
    "expires_at": 1_700_000_300.5,
    "profile": {"name": "Ана", "roles": ["corp", "admin"], "active": True, "manager": None},
}


class SessionStoreContract:
    pytestmark = pytest.mark.anyio

    @pytest.fixture
    def store(self) -> SessionStore:
        raise NotImplementedError("subclasses provide the store under test")

    @pytest.fixture
    def advance(self) -> Advance:
        raise NotImplementedError("subclasses say how time passes for their store")

    async def test_implements_protocol(self, store: SessionStore) -> None:
        assert isinstance(store, SessionStore)

    async def test_get_missing_is_none(self, store: SessionStore) -> None:
        assert await store.get("session:missing") is None

    async def test_set_then_get_round_trips(self, store: SessionStore) -> None:
        await store.set("session:a", RECORD, ttl=60)
        assert await store.get("session:a") == RECORD
        assert await store.get("session:a") == RECORD  # get does not consume

    async def test_set_replaces(self, store: SessionStore) -> None:
        await store.set("session:a", {"v": 1}, ttl=60)
        await store.set("session:a", {"v": 2}, ttl=60)
        assert await store.get("session:a") == {"v": 2}

    async def test_keys_are_independent(self, store: SessionStore) -> None:
        await store.set("session:a", {"v": 1}, ttl=60)
        await store.set("state:a", {"v": 2}, ttl=60)
        await store.delete("session:a")
        assert await store.get("state:a") == {"v": 2}

    async def test_pop_returns_and_removes(self, store: SessionStore) -> None:
        await store.set("state:x", RECORD, ttl=60)
        assert await store.pop("state:x") == RECORD
        assert await store.pop("state:x") is None
        assert await store.get("state:x") is None

    async def test_pop_missing_is_none(self, store: SessionStore) -> None:
        assert await store.pop("state:missing") is None

    async def test_delete(self, store: SessionStore) -> None:
        await store.set("session:a", RECORD, ttl=60)
        await store.delete("session:a")
        assert await store.get("session:a") is None
        await store.delete("session:a")  # absent: no error

    async def test_entry_expires_after_ttl(self, store: SessionStore, advance: Advance) -> None:
        await store.set("session:short", {"v": 1}, ttl=1)
        await store.set("session:long", {"v": 2}, ttl=30)
        assert await store.get("session:short") == {"v": 1}
        await advance(1.5)
        assert await store.get("session:short") is None
        assert await store.pop("session:short") is None
        assert await store.get("session:long") == {"v": 2}

    async def test_expired_entry_cannot_be_popped(
        self, store: SessionStore, advance: Advance
    ) -> None:
        await store.set("state:x", {"v": 1}, ttl=1)
        await advance(1.5)
        assert await store.pop("state:x") is None

    async def test_set_renews_ttl(self, store: SessionStore, advance: Advance) -> None:
        await store.set("session:a", {"v": 1}, ttl=2)
        await advance(1)
        await store.set("session:a", {"v": 2}, ttl=2)
        await advance(1.5)
        assert await store.get("session:a") == {"v": 2}

    @pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf")])
    async def test_rejects_bad_ttl(self, store: SessionStore, ttl: float) -> None:
        with pytest.raises(ValueError, match="ttl"):
            await store.set("session:a", {"v": 1}, ttl=ttl)

    async def test_concurrent_pops_hand_out_one_record(self, store: SessionStore) -> None:
        await store.set("state:once", RECORD, ttl=60)
        results = await asyncio.gather(*(store.pop("state:once") for _ in range(100)))
        assert [r for r in results if r is not None] == [RECORD]

    async def test_add_stores_only_when_absent(self, store: SessionStore) -> None:
        assert await store.add("k", {"n": 1}, ttl=60) is True
        assert await store.add("k", {"n": 2}, ttl=60) is False
        assert await store.get("k") == {"n": 1}
        await store.delete("k")
        assert await store.add("k", {"n": 3}, ttl=60) is True

    async def test_add_after_expiry(self, store: SessionStore, advance: Advance) -> None:
        assert await store.add("k", {"n": 1}, ttl=1)
        await advance(1.5)
        assert await store.add("k", {"n": 2}, ttl=60)
        assert await store.get("k") == {"n": 2}

    async def test_concurrent_adds_let_one_win(self, store: SessionStore) -> None:
        results = await asyncio.gather(*(store.add("lease", {"n": n}, ttl=60) for n in range(20)))
        assert results.count(True) == 1

    async def test_caller_cannot_mutate_stored_record(self, store: SessionStore) -> None:
        record: dict[str, Any] = {"profile": {"roles": ["corp"]}}
        await store.set("session:a", record, ttl=60)
        record["profile"]["roles"].append("admin")  # after set
        got = await store.get("session:a")
        assert got == {"profile": {"roles": ["corp"]}}
        got["profile"]["roles"].append("admin")  # after get
        assert await store.get("session:a") == {"profile": {"roles": ["corp"]}}
        popped = await store.pop("session:a")
        assert popped == {"profile": {"roles": ["corp"]}}

    async def test_caller_cannot_mutate_a_flat_stored_record(self, store: SessionStore) -> None:
        record: dict[str, Any] = {"sealed": "v1", "n": 1, "ok": True, "none": None}
        await store.set("session:a", record, ttl=60)
        record["sealed"] = "changed"  # after set
        got = await store.get("session:a")
        assert got == {"sealed": "v1", "n": 1, "ok": True, "none": None}
        got["sealed"] = "changed"  # after get
        del got["n"]
        assert await store.get("session:a") == {"sealed": "v1", "n": 1, "ok": True, "none": None}
        assert await store.pop("session:a") == {"sealed": "v1", "n": 1, "ok": True, "none": None}

    @pytest.mark.parametrize(
        "record",
        [
            {"token": b"bytes"},
            {"when": object()},
            {"nested": {"tuple": (1, 2)}},
            {1: "int key"},
            {"nan": float("nan")},
        ],
        ids=["bytes", "object", "tuple", "int-key", "nan"],
    )
    async def test_rejects_records_that_are_not_json(
        self, store: SessionStore, record: dict[Any, Any]
    ) -> None:
        with pytest.raises(TypeError):
            await store.set("session:a", record, ttl=60)
        assert await store.get("session:a") is None
