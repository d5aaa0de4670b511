"""Server-side storage for sign-in sessions and pending sign-in states.

The browser only ever holds a signed session id; what a session knows (the customer's
access token, its expiry, a profile) lives behind ``SessionStore``. The in-process
``MemorySessionStore`` is the default; a Redis store shares sessions across workers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from ._errors import CorpAuthError

__all__ = ["SessionStore", "StoreUnavailable"]

#: A stored record: JSON-compatible values only (str, int, float, bool, None, list, dict).
Record = Mapping[str, Any]


class StoreUnavailable(CorpAuthError):
    """The store could not be reached; callers treat the browser as signed out."""

    code = "session_store_unavailable"


@runtime_checkable
class SessionStore(Protocol):
    """Key-value storage with per-entry expiry.

    Keys are opaque strings chosen by the package (already namespaced, e.g.
    ``session:<id>`` or ``state:<value>``). ``ttl`` is in seconds; an entry is gone once
    it has expired. Implementations must be safe for concurrent use from one event loop
    and raise ``StoreUnavailable`` (never anything else) when their backend fails.
    """

    async def get(self, key: str) -> dict[str, Any] | None:
        """Return the record stored under ``key``, or None if absent or expired."""
        ...

    async def set(self, key: str, record: Record, *, ttl: float) -> None:
        """Store ``record`` under ``key`` for ``ttl`` seconds, replacing any previous one."""
        ...

    async def add(self, key: str, record: Record, *, ttl: float) -> bool:
        """Store ``record`` under ``key`` only if no live record is there; True if it
        was stored. Atomic: of two concurrent adds of one key, one succeeds (leases and
        single-use markers rely on it)."""
        ...

    async def pop(self, key: str) -> dict[str, Any] | None:
        """Atomically remove and return the record under ``key`` (None if absent).

        Used for single-use values: of two concurrent pops of one key, one gets the
        record and the other None.
        """
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        ...

    async def aclose(self) -> None:
        """Release the backend's resources."""
        ...
