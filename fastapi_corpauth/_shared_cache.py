"""``SharedTokenCache``: what ``TokenService`` needs to share one token between processes.

Every process of a deployment runs its own ``TokenService``; with a shared cache they
hand one client_credentials token around instead of fetching one each. The protocol is
small enough for any store with atomic "set if absent with expiry" and
compare-and-delete (``fastapi_corpauth.redis.RedisTokenCache`` implements it on Redis).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ._login_protocol import fingerprint
from ._token import Token

__all__ = ["SharedTokenCache", "token_fingerprint"]


def token_fingerprint(token: Token) -> str:
    """A one-way name for ``token``: tells tokens apart without holding them."""
    return fingerprint(token.access_token)[:32]


@runtime_checkable
class SharedTokenCache(Protocol):
    """One token and one fetch lease, shared by every process of a deployment.

    Every method raises ``StoreUnavailable`` (never anything else) when the backend
    fails; ``TokenService`` then falls back to its per-process cache and single flight.
    """

    async def load(self) -> Token | None:
        """The shared token, or None when there is none (or it cannot be trusted)."""
        ...

    async def store(self, token: Token, *, ttl: float) -> None:
        """Share ``token`` for ``ttl`` seconds (until it expires), replacing any other."""
        ...

    async def discard(self, token: Token) -> bool:
        """Remove the shared token if it is still ``token`` (compare-and-delete).

        Returns whether it was removed; a successor another process stored already is
        kept.
        """
        ...

    async def acquire(self, lease_seconds: float) -> str | None:
        """Take the fetch lease for ``lease_seconds``; return its lock value, or None if
        another process holds it. An unreleased lease lapses by itself (crashed holder).
        """
        ...

    async def release(self, lock: str) -> None:
        """Give the lease back if ``lock`` still holds it (compare-and-delete)."""
        ...
