"""Server-side records of the browser flow: pending logins, SSO sessions, codes, logouts.

Each record lives in an :class:`ExpiringStore` under a random id, the way Keycloak keeps
authentication sessions, user sessions and codes; expiry follows the devserver's clock.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from ._users import DevUser

__all__ = [
    "AuthorizationRequest",
    "ExpiringStore",
    "IssuedCode",
    "Locale",
    "PendingLogout",
    "ResponseMode",
    "ResponseType",
    "SsoSession",
]

ResponseType = Literal["token", "code"]
ResponseMode = Literal["query", "fragment", "form_post"]
Locale = Literal["en", "ka"]

_T = TypeVar("_T")

#: Past this many records, expired ones are dropped when a new one is stored.
_PRUNE_THRESHOLD = 1024


@dataclass(frozen=True, kw_only=True)
class AuthorizationRequest:
    """A validated request to the authorization endpoint, kept while the user signs in."""

    client_id: str
    response_type: ResponseType
    response_mode: ResponseMode
    #: Where the answer goes: the ``redirect_uri`` parameter, or the client's only one.
    redirect_uri: str
    #: The parameter as sent (None when omitted); the token request must repeat it.
    redirect_uri_param: str | None
    scope: str
    state: str | None
    nonce: str | None
    code_challenge: str | None
    locale: Locale
    issuer: str


@dataclass(frozen=True, kw_only=True)
class SsoSession:
    """A signed-in browser (Keycloak's user session); its id is the ``session_state``."""

    session_id: str
    user: DevUser
    auth_time: int


@dataclass(frozen=True, kw_only=True)
class IssuedCode:
    """What an authorization code stands for until it is redeemed once."""

    request: AuthorizationRequest
    session: SsoSession


@dataclass(frozen=True, kw_only=True)
class PendingLogout:
    """A logout waiting for the user to confirm it."""

    post_logout_redirect_uri: str | None
    state: str | None
    locale: Locale


class ExpiringStore(Generic[_T]):
    """Records under unguessable ids that disappear after their lifetime."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._records: dict[str, tuple[float, _T]] = {}

    def __len__(self) -> int:
        return len(self._records)

    def add(self, value: _T, *, lifetime: float, key: str | None = None) -> str:
        """Store ``value`` under ``key`` (a fresh random id when None) and return the id."""
        now = self._clock()
        if len(self._records) >= _PRUNE_THRESHOLD:
            self._records = {k: r for k, r in self._records.items() if r[0] > now}
        record_id = key if key is not None else secrets.token_urlsafe(32)
        self._records[record_id] = (now + lifetime, value)
        return record_id

    def get(self, key: str) -> _T | None:
        """The live record under ``key``; an expired one is forgotten."""
        record = self._records.get(key)
        if record is None:
            return None
        if self._clock() >= record[0]:
            del self._records[key]
            return None
        return record[1]

    def pop(self, key: str) -> _T | None:
        """Like :meth:`get`, but the record is gone afterwards (single use)."""
        value = self.get(key)
        self._records.pop(key, None)
        return value

    def clear(self) -> None:
        """Forget every record."""
        self._records.clear()
