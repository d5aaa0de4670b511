"""Small immutable value objects that configure the package's parts.

``CorpAuthSettings`` reads them from the environment; code that wires parts by hand
builds them directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import SecretStr

__all__ = [
    "CachePolicy",
    "ClientAuthMethod",
    "ClientCredentials",
    "CookieOptions",
    "Endpoints",
    "RetryPolicy",
    "Timeouts",
]

#: ``client_secret_basic`` sends RFC 6749 §2.3.1 HTTP Basic (form-urlencoded id and secret);
#: ``client_secret_post`` puts them in the form body, for Keycloak 18 and older whose Basic
#: parser does not URL-decode and so rejects secrets with special characters.
ClientAuthMethod = Literal["client_secret_basic", "client_secret_post"]


@dataclass(frozen=True, kw_only=True)
class ClientCredentials:
    client_id: str
    client_secret: SecretStr
    auth_method: ClientAuthMethod = "client_secret_basic"


@dataclass(frozen=True, kw_only=True)
class Endpoints:
    """The authorization server's endpoints, all absolute URLs."""

    issuer: str
    authorize_url: str
    token_url: str
    logout_url: str

    @classmethod
    def from_issuer(
        cls,
        issuer: str,
        *,
        authorize_url: str | None = None,
        token_url: str | None = None,
        logout_url: str | None = None,
    ) -> Endpoints:
        """Derive Keycloak's endpoints from a realm URL, keeping any explicit override."""
        base = issuer.rstrip("/") + "/protocol/openid-connect"
        return cls(
            issuer=issuer.rstrip("/"),
            authorize_url=authorize_url or f"{base}/auth",
            token_url=token_url or f"{base}/token",
            logout_url=logout_url or f"{base}/logout",
        )


@dataclass(frozen=True, kw_only=True)
class Timeouts:
    """Seconds allowed for each phase of an outbound request."""

    connect: float = 5.0
    read: float = 10.0
    write: float = 10.0
    pool: float = 5.0


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How the token endpoint is retried when it fails transiently.

    ``attempts`` counts the first try. Delays grow as ``backoff_base * 2**n`` with full
    jitter, capped by ``backoff_max``; a ``Retry-After`` longer than ``backoff_max`` ends
    the retries at once. After a fetch has failed, callers fail fast for ``cooldown``
    seconds (or the server's ``Retry-After``) instead of each waiting out their own try.
    """

    attempts: int = 3
    backoff_base: float = 0.2
    backoff_max: float = 5.0
    cooldown: float = 5.0


@dataclass(frozen=True, kw_only=True)
class CachePolicy:
    """When a cached token stops being served and when its successor is fetched.

    A token is served until ``leeway`` seconds before it expires; the leeway shrinks to a
    quarter of the lifetime for short-lived tokens, so a 30 s token is not refetched on
    every call. Under traffic, the successor is fetched in the background from
    ``refresh_window`` seconds (at most a quarter of the lifetime) before that point.
    ``default_lifetime`` applies when neither ``expires_in`` nor a JWT ``exp`` is given.
    """

    leeway: float = 30.0
    refresh_window: float = 60.0
    default_lifetime: float = 60.0


@dataclass(frozen=True, kw_only=True)
class CookieOptions:
    """The session cookie's attributes.

    ``secure=None`` means Secure on every request except plain-http localhost, so local
    development works and production cannot forget the flag. The cookie is always
    HttpOnly; SameSite is ``lax`` (the callback arrives by top-level navigation) or
    ``strict``.
    """

    name: str = "corpauth_session"
    path: str = "/"
    domain: str | None = None
    secure: bool | None = None
    samesite: Literal["lax", "strict"] = "lax"
    max_age: int = 8 * 3600
