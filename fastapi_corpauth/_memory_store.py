"""``MemorySessionStore``: the default, in-process ``SessionStore``.

Sessions live in this process only, so it suits a single worker (or tests); use a Redis
store to share sessions between workers. Everything here is synchronous inside ``async``
methods: with one event loop and no ``await`` between a read and a write, every
operation, ``pop`` included, is atomic.
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from fastapi_corpauth._store import Record

__all__ = ["MemorySessionStore"]

#: Expired entries removed per write; more than one, so purging outpaces new writes.
_PURGE_PER_WRITE = 16


#: Records whose values are all of these types are kept as items, not as JSON.
_SCALARS = (str, int, float, bool, type(None))
_Items = tuple[tuple[str, Any], ...]


class _Entry(NamedTuple):
    expires_at: float
    seq: int
    #: A private copy no caller can mutate: the record's items when its values are all
    #: immutable scalars (sessions, markers, leases: a dict() gives it back cheaply),
    #: else the record as JSON.
    payload: str | _Items


class MemorySessionStore:
    """A bounded dict of JSON records with per-entry expiry.

    Expired entries are never returned, and each write purges up to a few of them, so
    memory follows the live sessions without any background task. When ``max_entries``
    is reached, an entry is evicted to make room: an expired one if any, else the
    entry closest to expiry among keys starting with one of ``evict_first`` (by default
    the markers of completed sign-ins, ``used:``, which only serve to name a replay),
    else the entry closest to expiry. Pending sign-ins are not preferred for eviction:
    at capacity, that would fail the sign-ins in flight one after another.

    Records are stored as JSON, which both copies them and checks that they will
    survive a store that serialises (e.g. Redis): ``set`` raises ``TypeError`` for a
    record that does not round-trip through JSON unchanged, and ``ValueError`` for a
    ttl that is not a positive number.
    """

    def __init__(
        self,
        *,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.time,
        evict_first: tuple[str, ...] = ("used:", "lease:"),
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._clock = clock
        self._evict_first = evict_first
        self._entries: dict[str, _Entry] = {}
        # (expires_at, seq, key), with stale items for overwritten or removed keys; the
        # second heap holds the same items for the keys that are evicted first.
        self._heap: list[tuple[float, int, str]] = []
        self._cheap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        """Entries held, including expired ones not purged yet."""
        return len(self._entries)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(entries={len(self)}, max_entries={self._max_entries})"

    async def get(self, key: str) -> dict[str, Any] | None:
        """Return a copy of the record under ``key``, or None if absent or expired."""
        entry = self._live(key)
        return None if entry is None else _decode(entry.payload)

    async def set(self, key: str, record: Record, *, ttl: float) -> None:
        """Store a copy of ``record`` under ``key`` for ``ttl`` seconds.

        Raises ``TypeError`` if the record is not JSON-compatible and ``ValueError``
        if ``ttl`` is not a positive, finite number of seconds.
        """
        if not (math.isfinite(ttl) and ttl > 0):
            raise ValueError("ttl must be a positive number of seconds")
        payload = _encode(record)
        now = self._clock()
        self._purge(now, _PURGE_PER_WRITE)
        if key not in self._entries:
            while len(self._entries) >= self._max_entries:
                self._evict_one(now)
        entry = _Entry(now + ttl, next(self._seq), _frozen(record, payload))
        self._entries[key] = entry
        item = (entry.expires_at, entry.seq, key)
        heapq.heappush(self._heap, item)
        if key.startswith(self._evict_first):
            heapq.heappush(self._cheap, item)
        if len(self._heap) + len(self._cheap) > 3 * len(self._entries) + 64:
            self._compact()

    async def add(self, key: str, record: Record, *, ttl: float) -> bool:
        """Store ``record`` under ``key`` unless a live record is there; True if stored."""
        if self._live(key) is not None:
            return False
        await self.set(key, record, ttl=ttl)
        return True

    async def pop(self, key: str) -> dict[str, Any] | None:
        """Remove and return the record under ``key`` (None if absent or expired)."""
        entry = self._entries.pop(key, None)
        if entry is None or entry.expires_at <= self._clock():
            return None
        return _decode(entry.payload)

    async def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        self._entries.pop(key, None)

    async def aclose(self) -> None:
        """Drop every entry."""
        self._entries.clear()
        self._heap.clear()
        self._cheap.clear()

    def _live(self, key: str) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and entry.expires_at <= self._clock():
            del self._entries[key]
            return None
        return entry

    def _purge(self, now: float, limit: int) -> None:
        """Remove up to ``limit`` entries that expire at or before ``now``.

        Stale heap items are discarded on the way and do not count towards ``limit``.
        """
        heap, entries = self._heap, self._entries
        while limit and heap and heap[0][0] <= now:
            _, seq, key = heapq.heappop(heap)
            entry = entries.get(key)
            if entry is not None and entry.seq == seq:
                del entries[key]
                limit -= 1

    def _evict_one(self, now: float) -> None:
        """Remove one entry: expired first, then a cheap key, then the soonest to expire."""
        heap, entries = self._heap, self._entries
        if heap and heap[0][0] <= now:
            self._purge(now, 1)
            return
        cheap = self._cheap
        while cheap:
            _, seq, key = heapq.heappop(cheap)
            entry = entries.get(key)
            if entry is not None and entry.seq == seq:
                del entries[key]
                return
        self._purge(math.inf, 1)

    def _compact(self) -> None:
        """Rebuild the heaps from the live entries, dropping stale items.

        Runs when stale items outnumber live ones, so its cost is amortised over the
        writes that made them and the heaps stay proportional to the entries.
        """
        self._heap = [(e.expires_at, e.seq, key) for key, e in self._entries.items()]
        heapq.heapify(self._heap)
        self._cheap = [item for item in self._heap if item[2].startswith(self._evict_first)]
        heapq.heapify(self._cheap)


def _encode(record: Record) -> str:
    if not isinstance(record, Mapping):
        raise TypeError(f"record must be a mapping, not {type(record).__name__}")
    try:
        plain = dict(record)
        payload = json.dumps(plain, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"record is not JSON-compatible: {exc}") from exc
    # json.dumps quietly turns tuples into lists and int keys into strings; reject those
    # so that every store gives back exactly what it was given.
    if json.loads(payload) != plain:
        raise TypeError("record does not survive JSON unchanged (tuple or non-str key?)")
    return payload


def _frozen(record: Record, payload: str) -> str | _Items:
    """What an entry keeps of ``record`` (checked by ``_encode``): see ``_Entry``."""
    items = tuple(record.items())
    if all(type(value) in _SCALARS for _, value in items):
        return items
    return payload


def _decode(payload: str | _Items) -> dict[str, Any]:
    if isinstance(payload, tuple):
        return dict(payload)
    record: dict[str, Any] = json.loads(payload)
    return record
