"""The access token value object."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["Token"]


@dataclass(frozen=True, repr=False, eq=False)
class Token:
    """An access token with absolute timestamps, as parsed from a token response.

    The token string and every other credential it carries are kept out of ``repr``
    and ``str``, so a token can be logged or shown in a traceback without leaking.
    Times are seconds since the epoch on the clock that parsed the response.
    """

    access_token: str
    token_type: str
    issued_at: float
    expires_at: float
    scope: tuple[str, ...] = ()
    refresh_token: str | None = None
    refresh_expires_at: float | None = None
    #: Keycloak's ``not-before-policy``: the epoch second before which tokens are revoked.
    not_before_policy: int = 0
    session_state: str | None = None
    id_token: str | None = None
    #: Fields the server sent that this class does not model (``app_id``...).
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def lifetime(self) -> float:
        """Seconds between issue and expiry."""
        return self.expires_at - self.issued_at

    def expires_in(self, now: float) -> float:
        """Seconds left before the token expires, at ``now`` (negative once expired)."""
        return self.expires_at - now

    def is_expired(self, now: float) -> bool:
        return now >= self.expires_at

    @property
    def authorization(self) -> str:
        """The value of an ``Authorization`` header carrying this token."""
        return f"Bearer {self.access_token}"

    def __repr__(self) -> str:
        scope = " ".join(self.scope)
        return (
            f"Token(token_type={self.token_type!r}, scope={scope!r}, "
            f"issued_at={self.issued_at:.0f}, expires_at={self.expires_at:.0f}, "
            "access_token='**********')"
        )

    __str__ = __repr__
