"""Small immutable value objects that configure the package's parts.

``CorpAuthSettings`` reads them from the environment; code that wires parts by hand
builds them directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import SecretStr

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "CachePolicy",
    "ClientAuthMethod",
    "ClientCredentials",
    "CookieOptions",
    "Endpoints",
    "RetryPolicy",
    "SignInOptions",
    "Timeouts",
    "VerificationMode",
    "VerificationPolicy",
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
    """The authorization server's endpoints, all absolute URLs.

    ``from_issuer`` gives Keycloak's documented paths: the fallback used while the
    issuer's discovery document cannot be read, and the defaults discovery overrides.
    """

    issuer: str
    authorize_url: str
    token_url: str
    logout_url: str
    jwks_url: str | None = None
    introspection_url: str | None = None

    @classmethod
    def from_issuer(
        cls,
        issuer: str,
        *,
        authorize_url: str | None = None,
        token_url: str | None = None,
        logout_url: str | None = None,
        jwks_url: str | None = None,
        introspection_url: str | None = None,
    ) -> Endpoints:
        """Derive Keycloak's endpoints from a realm URL, keeping any explicit override."""
        base = issuer.rstrip("/") + "/protocol/openid-connect"
        return cls(
            issuer=issuer.rstrip("/"),
            authorize_url=authorize_url or f"{base}/auth",
            token_url=token_url or f"{base}/token",
            logout_url=logout_url or f"{base}/logout",
            jwks_url=jwks_url or f"{base}/certs",
            introspection_url=introspection_url or f"{base}/token/introspect",
        )


#: How a token that arrives from outside is checked: ``auto`` verifies a JWS against the
#: issuer's published keys and asks the introspection endpoint about anything else;
#: ``jwt`` and ``introspection`` use one method only. Verification cannot be turned off.
VerificationMode = Literal["auto", "jwt", "introspection"]

#: The signature algorithms a token may use: asymmetric only. ``none`` and the HMAC
#: family are never accepted, whatever a token's header says, so a public key can never
#: be misused as an HMAC secret.
ASYMMETRIC_ALGORITHMS: tuple[str, ...] = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)


@dataclass(frozen=True, kw_only=True)
class VerificationPolicy:
    """How tokens that arrive through the browser or an ``Authorization`` header are
    verified before anything trusts them.

    ``algorithms`` is the allow-list (a subset of ``ASYMMETRIC_ALGORITHMS``); ``leeway``
    is the clock skew, in seconds, tolerated on ``exp`` and ``nbf``. The issuer's keys
    are cached and read again after ``keys_max_age`` seconds; a token signed with a key
    the cache does not know makes it read them at once, but at most once every
    ``key_refetch_interval`` seconds, so random ``kid`` values cannot turn the app into an
    amplifier against the bank.

    Raises:
        ValueError: an algorithm outside ``ASYMMETRIC_ALGORITHMS``, or a negative time.
    """

    mode: VerificationMode = "auto"
    algorithms: tuple[str, ...] = ASYMMETRIC_ALGORITHMS
    leeway: float = 10.0
    key_refetch_interval: float = 10.0
    keys_max_age: float = 3600.0

    def __post_init__(self) -> None:
        if not self.algorithms:
            raise ValueError("at least one signature algorithm must be allowed")
        refused = [alg for alg in self.algorithms if alg not in ASYMMETRIC_ALGORITHMS]
        if refused:
            raise ValueError(f"only asymmetric signature algorithms are allowed, not {refused}")
        if min(self.leeway, self.key_refetch_interval, self.keys_max_age) < 0:
            raise ValueError("verification times must not be negative")


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
    A ``Retry-After`` is honoured up to ``retry_after_max`` seconds: one answer of a
    proxy with ``Retry-After: 86400`` must not lock the app out for a day. After the
    cool-down one request probes the endpoint (the others wait for its outcome).
    """

    attempts: int = 3
    backoff_base: float = 0.2
    backoff_max: float = 5.0
    cooldown: float = 5.0
    retry_after_max: float = 60.0


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


@dataclass(frozen=True, kw_only=True)
class SignInOptions:
    """How customers sign in through the browser.

    ``response_type`` is ``token`` (implicit, as the bank documents) or ``code``;
    ``response_mode`` None leaves the flow's default (fragment for ``token``, query for
    ``code``), and the answer is accepted only in that mode. ``redirect_uri`` None derives
    the callback URL from the request. ``openid`` in ``scope`` adds a ``nonce`` that the
    code flow's ID token must carry. ``default_token_lifetime`` is assumed when neither
    ``expires_in`` nor the token says when it expires.
    """

    response_type: Literal["token", "code"] = "token"
    response_mode: Literal["fragment", "form_post", "query"] | None = None
    scope: str = "corp"
    locale: Literal["en", "ka"] = "en"
    redirect_uri: str | None = None
    post_login_url: str = "/"
    post_logout_url: str = "/"
    logout_at_provider: bool = False
    default_token_lifetime: float = 60.0
