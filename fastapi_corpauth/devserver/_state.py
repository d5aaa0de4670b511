"""Mutable state of one devserver: clients, users, issued tokens, browser sessions,
revocation, counters and faults.

Everything that decides whether a token is valid lives here, behind an injectable clock,
so tests can expire or revoke tokens deterministically without sleeping.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, get_args

from ._flavours import Flavour
from ._jwt import (
    InvalidJWT,
    SigningKey,
    b64url_encode,
    hmac_kid,
    sign_hmac_jwt,
    sign_jwt,
    verify_hmac_jwt,
    verify_jwt,
)
from ._sessions import (
    AuthorizationRequest,
    ExpiringStore,
    IssuedCode,
    PendingLogout,
    SsoSession,
)
from ._users import DEFAULT_USERS, DevUser

__all__ = [
    "CODE_LIFETIME",
    "DEFAULT_ACCOUNTS",
    "LOGIN_TIMEOUT",
    "SSO_SESSION_LIFETIME",
    "SSO_SESSION_MAX",
    "DevClient",
    "DevServerState",
    "FaultBodyKind",
    "FaultPlan",
    "IssuedTokens",
    "SampleAccount",
    "TokenRejection",
]

FaultBodyKind = Literal["json-error", "html", "truncated", "not-json"]
TokenRejection = Literal["Invalid token", "Token expired", "Stale token"]

#: Seconds a sign-in page stays usable (Keycloak's "Login action timeout" is 5 minutes).
LOGIN_TIMEOUT = 300.0
#: Seconds an authorization code stays redeemable (Keycloak's default is one minute).
CODE_LIFETIME = 60.0
#: Keycloak's defaults: "SSO Session Idle" (30 min, also the refresh token's lifetime,
#: renewed by each refresh) and "SSO Session Max" (10 h from the sign-in).
SSO_SESSION_LIFETIME = 1800.0
SSO_SESSION_MAX = 36000.0

#: Past this many remembered tokens, expired ones are forgotten (their JWT ``exp`` suffices).
_REGISTRY_PRUNE_THRESHOLD = 1024
#: The ``aud`` of RFC 9068 tokens: the bank API they are meant for.
API_AUDIENCE = "bank-api"


@dataclass(frozen=True, kw_only=True)
class DevClient:
    """A client registered in the dev realm: confidential (with a secret) or public."""

    client_id: str
    client_secret: str = ""
    #: Keycloak refuses client_credentials unless the client's service account is enabled.
    service_accounts_enabled: bool = True
    #: Exact redirect URIs for the browser flows. Empty: any http(s) URL on 127.0.0.1,
    #: localhost or [::1] (any port) is accepted, for local development.
    redirect_uris: tuple[str, ...] = ()
    #: Keycloak's "Implicit flow enabled"; False refuses ``response_type=token``.
    implicit_enabled: bool = True
    #: A public client has no secret and authenticates by the ``client_id`` form field.
    public: bool = False


@dataclass(frozen=True, kw_only=True)
class SampleAccount:
    """A fake company account served by the sample bank API."""

    account_id: str
    iban: str
    holder: str
    currency: str
    balance: Decimal

    def as_json(self) -> dict[str, str]:
        """Balance as a decimal string, so no float rounding reaches the client."""
        return {
            "id": self.account_id,
            "iban": self.iban,
            "holder": self.holder,
            "currency": self.currency,
            "balance": str(self.balance),
        }


DEFAULT_ACCOUNTS: tuple[SampleAccount, ...] = (
    SampleAccount(
        account_id="acc-1",
        iban="GE28BG0000000101904917",
        holder="Kartli Logistics LLC",
        currency="GEL",
        balance=Decimal("125400.50"),
    ),
    SampleAccount(
        account_id="acc-2",
        iban="GE62BG0000000613472508",
        holder="Kartli Logistics LLC",
        currency="USD",
        balance=Decimal("18250.00"),
    ),
    SampleAccount(
        account_id="acc-3",
        iban="GE33BG0000000827351046",
        holder="Imereti Wine Export JSC",
        currency="GEL",
        balance=Decimal("9731.15"),
    ),
)


@dataclass(frozen=True, kw_only=True)
class FaultPlan:
    """What the token endpoint does wrong, for the next ``count`` requests (None: all).

    ``status``/``body_kind`` replace the answer entirely (a proxy error, a login page, a
    cut-off body); ``latency`` delays any answer; ``expired_token`` issues a real token
    that is already expired, the way a badly skewed server clock would.
    """

    status: int | None = None
    body_kind: FaultBodyKind | None = None
    retry_after: int | str | None = None
    latency: float = 0.0
    expired_token: bool = False
    count: int | None = None

    def __post_init__(self) -> None:
        replaces_answer = self.status is not None or self.body_kind is not None
        if not (replaces_answer or self.latency or self.expired_token):
            raise ValueError("no fault given; use clear_faults() to remove faults")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP status code, got {self.status}")
        if self.body_kind is not None and self.body_kind not in get_args(FaultBodyKind):
            raise ValueError(f"unknown body_kind {self.body_kind!r}")
        if self.latency < 0:
            raise ValueError("latency must not be negative")
        if self.count is not None and self.count < 1:
            raise ValueError("count must be at least 1, or None for every request")
        if self.expired_token and replaces_answer:
            raise ValueError("expired_token needs a normal answer; drop status/body_kind")
        if self.retry_after is not None and not replaces_answer:
            raise ValueError("retry_after only applies to a status or body_kind fault")

    @property
    def replaces_answer(self) -> bool:
        """True when the fault answers instead of the token endpoint."""
        return self.status is not None or self.body_kind is not None


@dataclass(frozen=True, kw_only=True)
class IssuedTokens:
    """The result of a successful grant, before it is shaped into Keycloak's JSON."""

    access_token: str
    expires_in: int
    scope: str
    refresh_token: str | None = None
    refresh_expires_in: int = 0
    session_state: str | None = None
    id_token: str | None = None


@dataclass(frozen=True, slots=True)
class _IssueRecord:
    sequence: int
    issued_at: float
    expires_at: float
    #: The claims behind an opaque token (None for JWTs, which carry their own).
    claims: Mapping[str, Any] | None = None


@dataclass(slots=True)
class _PublishedKey:
    key: SigningKey
    #: When the key stops being published (None: published until rotated out).
    retired_at: float | None = None


class DevServerState:
    """The realm, its clients and every token it issued; exposed as ``app.state.devserver``.

    Counters are plain attributes so tests can assert on them directly; the ``/_dev``
    endpoints expose the same operations to tests running in another process.
    """

    def __init__(
        self,
        *,
        realm: str,
        clients: Sequence[DevClient],
        flavour: Flavour,
        token_lifetime: float,
        clock: Callable[[], float],
        signing_key: SigningKey | None,
        accounts: Sequence[SampleAccount],
        users: Sequence[DevUser] = DEFAULT_USERS,
        implicit_token_lifetime: float = 900.0,
        sso_idle: float = SSO_SESSION_LIFETIME,
        sso_max: float = SSO_SESSION_MAX,
        revoke_refresh_tokens: bool = True,
    ) -> None:
        if min(token_lifetime, implicit_token_lifetime, sso_idle, sso_max) < 0:
            raise ValueError("token and session lifetimes must not be negative")
        client_ids = [client.client_id for client in clients]
        if len(set(client_ids)) != len(client_ids):
            raise ValueError("client ids must be unique")
        usernames = [user.username for user in users]
        if len(set(usernames)) != len(usernames):
            raise ValueError("usernames must be unique")
        self.realm = realm
        self.clients: Mapping[str, DevClient] = {client.client_id: client for client in clients}
        self.flavour = flavour
        self.token_lifetime = token_lifetime
        self.implicit_token_lifetime = implicit_token_lifetime
        self.sso_idle = sso_idle
        self.sso_max = sso_max
        #: Keycloak's "Revoke Refresh Token": each refresh token works once.
        self.revoke_refresh_tokens = revoke_refresh_tokens
        self._used_refresh_tokens: dict[str, float] = {}
        self.refreshes = 0
        self.users: Mapping[str, DevUser] = {user.username: user for user in users}
        self.clock = clock
        self.accounts: Mapping[str, SampleAccount] = {a.account_id: a for a in accounts}
        # RSA keys take tens of milliseconds to make: the first is made when first needed.
        self._keys: list[_PublishedKey] = (
            [] if signing_key is None else [_PublishedKey(signing_key)]
        )
        self._hmac_secret = secrets.token_bytes(64)
        self._hmac_kid = hmac_kid(self._hmac_secret)
        self._sequence = itertools.count(1)
        self._issued: dict[str, _IssueRecord] = {}
        self._revoked_up_to_sequence = 0
        self.not_before = 0.0
        self.faults: FaultPlan | None = None
        self._fault_uses_left: int | None = None
        self.token_requests = 0
        self.tokens_issued = 0
        self.api_requests = 0
        self.api_rejections = 0
        self.authorize_requests = 0
        self.logins = 0
        self.login_failures = 0
        self.logouts = 0
        self.jwks_requests = 0
        self.introspection_requests = 0
        #: Sign-in pages waiting for credentials, by their ``session_code``.
        self.pending_logins: ExpiringStore[AuthorizationRequest] = ExpiringStore(clock)
        #: Signed-in browsers, by the id in their ``KEYCLOAK_SESSION`` cookie.
        self.sso_sessions: ExpiringStore[SsoSession] = ExpiringStore(clock)
        self.codes: ExpiringStore[IssuedCode] = ExpiringStore(clock)
        self.pending_logouts: ExpiringStore[PendingLogout] = ExpiringStore(clock)

    @property
    def known_scopes(self) -> frozenset[str]:
        """Scopes a client may request: ``corp`` plus the flavour's default client scopes."""
        return frozenset(("corp", *self.flavour.scope_extra))

    @property
    def granted_scope(self) -> str:
        """Keycloak grants every default client scope, whatever subset was requested."""
        return " ".join(("corp", *self.flavour.scope_extra))

    @property
    def login_scopes(self) -> frozenset[str]:
        """Scopes a browser login may request: the client scopes plus ``openid``."""
        return self.known_scopes | {"openid"}

    def user_granted_scope(self, requested: str) -> str:
        """The default client scopes, preceded by ``openid`` when it was requested."""
        openid = ("openid",) if "openid" in requested.split() else ()
        return " ".join((*openid, self.granted_scope))

    @property
    def not_before_policy(self) -> int:
        """The ``not-before-policy`` response field: epoch seconds of the last push, or 0."""
        return int(self.not_before)

    def reset_counters(self) -> None:
        """Zero the request counters (revocation and faults are left alone)."""
        self.token_requests = 0
        self.tokens_issued = 0
        self.api_requests = 0
        self.api_rejections = 0
        self.authorize_requests = 0
        self.logins = 0
        self.login_failures = 0
        self.logouts = 0
        self.jwks_requests = 0
        self.introspection_requests = 0
        self.refreshes = 0

    def stats(self) -> dict[str, Any]:
        """The counters as JSON, for ``GET /_dev/stats``."""
        return {
            "token_requests": self.token_requests,
            "tokens_issued": self.tokens_issued,
            "api_requests": self.api_requests,
            "api_rejections": self.api_rejections,
            "authorize_requests": self.authorize_requests,
            "logins": self.logins,
            "login_failures": self.login_failures,
            "logouts": self.logouts,
            "jwks_requests": self.jwks_requests,
            "introspection_requests": self.introspection_requests,
            "refreshes": self.refreshes,
            "sso_sessions": len(self.sso_sessions),
            "kid": self.signing_key.kid,
            "not_before": self.not_before,
            "not_before_policy": self.not_before_policy,
        }

    def push_not_before(self) -> None:
        """Revoke every token issued so far, like Keycloak's "Set to now" and "Push".

        Revocation compares issue order rather than whole-second ``iat`` values, so a token
        issued in the same second as the push, before it, is revoked, and one issued after
        it is not, even with a frozen test clock.
        """
        self.not_before = self.clock()
        self._revoked_up_to_sequence = next(self._sequence)

    def set_faults(
        self,
        *,
        status: int | None = None,
        body_kind: FaultBodyKind | None = None,
        retry_after: int | str | None = None,
        latency: float = 0.0,
        expired_token: bool = False,
        count: int | None = None,
    ) -> FaultPlan:
        """Make the next ``count`` token requests (every one when None) misbehave."""
        plan = FaultPlan(
            status=status,
            body_kind=body_kind,
            retry_after=retry_after,
            latency=latency,
            expired_token=expired_token,
            count=count,
        )
        self.faults = plan
        self._fault_uses_left = count
        return plan

    def clear_faults(self) -> None:
        """Answer token requests normally again."""
        self.faults = None
        self._fault_uses_left = None

    def take_fault(self) -> FaultPlan | None:
        """The fault for the current token request, consuming one use of a counted plan."""
        plan = self.faults
        if plan is None:
            return None
        if self._fault_uses_left is not None:
            self._fault_uses_left -= 1
            if self._fault_uses_left <= 0:
                self.clear_faults()
        return plan

    # --- keys -------------------------------------------------------------------------------

    @property
    def signing_key(self) -> SigningKey:
        """The active key: it signs every new token."""
        if not self._keys:
            self._keys.append(_PublishedKey(SigningKey.generate()))
        return self._keys[-1].key

    def published_keys(self) -> list[SigningKey]:
        """The keys the realm publishes: the active one and those rotated out recently."""
        active = self.signing_key
        now = self.clock()
        published = [p.key for p in self._keys if p.retired_at is None or now < p.retired_at]
        return published if active in published else [*published, active]

    def jwks(self) -> dict[str, Any]:
        """The JWK set served at ``.../protocol/openid-connect/certs``."""
        return {"keys": [key.public_jwk() for key in self.published_keys()]}

    def rotate_keys(self, *, grace: float = 0.0) -> SigningKey:
        """Make a new active key, as an administrator adding a key provider does.

        Keys signed with before stay published (Keycloak's passive keys) for ``grace``
        seconds, so tokens they signed keep verifying, and are gone afterwards.
        """
        if grace < 0:
            raise ValueError("grace must not be negative")
        self.signing_key  # noqa: B018 - the first key must exist before it can retire
        retire_at = self.clock() + grace
        for published in self._keys:
            if published.retired_at is None or published.retired_at > retire_at:
                published.retired_at = retire_at
        key = SigningKey.generate()
        self._keys.append(_PublishedKey(key))
        return key

    def _sign(self, claims: Mapping[str, Any], *, typ: str = "JWT") -> str:
        return sign_jwt(claims, key=self.signing_key, typ=typ)

    def _access_token(self, claims: dict[str, Any], *, issued_at: float, expires_at: float) -> str:
        """Remember and encode an access token in the flavour's format."""
        token_format = self.flavour.token_format
        if token_format == "opaque":
            token = secrets.token_urlsafe(32)
            self._remember(token, issued_at=issued_at, expires_at=expires_at, claims=claims)
            return token
        self._remember(claims["jti"], issued_at=issued_at, expires_at=expires_at)
        if token_format == "rfc9068":
            return self._sign(claims, typ="at+jwt")
        return self._sign(claims)

    def _profile_claims(
        self, *, client: DevClient, issuer: str, subject: str, scope: str
    ) -> dict[str, Any]:
        """The claims naming the client and audience, in the flavour's profile."""
        if self.flavour.token_format == "rfc9068":
            return {
                "iss": issuer,
                "sub": subject,
                "client_id": client.client_id,
                "aud": API_AUDIENCE,
                "scope": scope,
            }
        return {
            "iss": issuer,
            "aud": "account",
            "sub": subject,
            "typ": "Bearer",
            "azp": client.client_id,
            "acr": "1",
            "allowed-origins": ["/*"],
            "realm_access": {
                "roles": ["offline_access", "uma_authorization", "default-roles-" + self.realm]
            },
            "resource_access": {"account": {"roles": ["manage-account", "view-profile"]}},
            "scope": scope,
        }

    # --- tokens -----------------------------------------------------------------------------

    def issue_client_credentials(
        self, client: DevClient, *, issuer: str, expired: bool = False
    ) -> IssuedTokens:
        """Sign a service-account token for ``client`` and remember when it was issued."""
        now = self.clock()
        lifetime = 0.0 if expired else self.token_lifetime
        session_state = str(uuid.uuid4()) if self.flavour.refresh_tokens else None
        service_account = f"service-account-{client.client_id}"
        rfc9068 = self.flavour.token_format == "rfc9068"
        subject = (
            client.client_id
            if rfc9068
            else str(uuid.uuid5(uuid.NAMESPACE_URL, f"{issuer}/{service_account}"))
        )
        claims: dict[str, Any] = {
            "exp": int(now + lifetime),
            "iat": int(now),
            "jti": str(uuid.uuid4()),
            **self._profile_claims(
                client=client, issuer=issuer, subject=subject, scope=self.granted_scope
            ),
        }
        if not rfc9068:
            claims["clientId"] = client.client_id
            claims["preferred_username"] = service_account
        if session_state is not None:
            claims["session_state"] = session_state
            claims["sid"] = session_state
        access_token = self._access_token(claims, issued_at=now, expires_at=now + lifetime)
        refresh_token = None
        if self.flavour.refresh_tokens:
            refresh_claims = {
                "exp": int(now + lifetime),
                "iat": int(now),
                "jti": str(uuid.uuid4()),
                "iss": issuer,
                "aud": issuer,
                "sub": subject,
                "typ": "Refresh",
                "azp": client.client_id,
                "scope": self.granted_scope,
            }
            if session_state is not None:
                refresh_claims["session_state"] = session_state
                refresh_claims["sid"] = session_state
            refresh_token = self._sign_refresh(refresh_claims)
        self.tokens_issued += 1
        expires_in = int(lifetime)
        return IssuedTokens(
            access_token=access_token,
            expires_in=expires_in,
            scope=self.granted_scope,
            refresh_token=refresh_token,
            refresh_expires_in=expires_in if refresh_token else 0,
            session_state=session_state,
        )

    def _sign_refresh(self, claims: Mapping[str, Any]) -> str:
        return sign_hmac_jwt(claims, secret=self._hmac_secret, kid=self._hmac_kid)

    def verify_refresh_token(self, token: str) -> dict[str, Any] | None:
        """The claims of a refresh token this server signed (expiry not checked), else None."""
        try:
            claims = verify_hmac_jwt(token, secret=self._hmac_secret)
        except InvalidJWT:
            return None
        return claims if claims.get("typ") in ("Refresh", "Offline") else None

    def authenticate_user(self, username: str, password: str) -> DevUser | None:
        """The dev user with these credentials, compared in constant time, else None."""
        user = self.users.get(username)
        expected = user.password if user is not None else secrets.token_urlsafe(16)
        matches = hmac.compare_digest(password.encode(), expected.encode())
        return user if matches else None

    def start_sso_session(self, user: DevUser) -> SsoSession:
        """Sign ``user`` in for this browser; the id goes into the SSO cookie."""
        session = SsoSession(session_id=str(uuid.uuid4()), user=user, auth_time=int(self.clock()))
        self.sso_sessions.add(session, lifetime=self.sso_lifetime(session), key=session.session_id)
        return session

    def sso_lifetime(self, session: SsoSession) -> float:
        """Seconds the SSO session lives from now if left idle: the idle timeout, cut off
        by the session maximum counted from the sign-in."""
        remaining = session.auth_time + self.sso_max - self.clock()
        return max(0.0, min(self.sso_idle, remaining))

    def touch_sso_session(self, session: SsoSession) -> None:
        """Activity (a refresh) restarts the idle timeout, within the maximum."""
        self.sso_sessions.add(session, lifetime=self.sso_lifetime(session), key=session.session_id)

    def end_sso_sessions(self) -> int:
        """Sign every browser out at the server (the admin's "Sign out all sessions")."""
        count = len(self.sso_sessions)
        self.sso_sessions.clear()
        return count

    def refresh(self, client: DevClient, refresh_token: str, *, issuer: str) -> IssuedTokens | str:
        """Keycloak's refresh grant: new tokens, or the ``invalid_grant`` description.

        The refresh token must be this server's, the client's, unexpired, not revoked by
        a not-before push, of a live SSO session and, with ``revoke_refresh_tokens``, not
        used before (a reused one is "Stale token"). Each refresh restarts the SSO
        session's idle timeout.
        """
        claims = self.verify_refresh_token(refresh_token)
        now = self.clock()
        if claims is None or not isinstance(claims.get("exp"), int):
            return "Invalid refresh token"
        if claims.get("azp") != client.client_id:
            return "Invalid refresh token. Token client and authorized client don't match"
        if now >= claims["exp"]:
            return "Token is not active"
        issued_at = claims.get("iat")
        if not isinstance(issued_at, int) or issued_at <= self.not_before:
            return "Stale token"
        session = self.sso_sessions.get(str(claims.get("sid")))
        if session is None:
            return "Session not active"
        jti = str(claims.get("jti"))
        if self.revoke_refresh_tokens:
            if jti in self._used_refresh_tokens:
                return "Stale token"
            self._used_refresh_tokens = {
                k: exp for k, exp in self._used_refresh_tokens.items() if exp > now
            }
            self._used_refresh_tokens[jti] = float(claims["exp"])
        self.touch_sso_session(session)
        self.refreshes += 1
        return self.issue_user_tokens(
            client=client,
            session=session,
            requested_scope=str(claims.get("scope", "")),
            issuer=issuer,
            implicit=False,
        )

    def issue_code(self, request: AuthorizationRequest, session: SsoSession) -> str:
        """A single-use authorization code bound to the request (client, redirect, PKCE)."""
        return self.codes.add(IssuedCode(request=request, session=session), lifetime=CODE_LIFETIME)

    def issue_user_tokens(
        self,
        *,
        client: DevClient,
        session: SsoSession,
        requested_scope: str,
        issuer: str,
        implicit: bool,
        nonce: str | None = None,
    ) -> IssuedTokens:
        """Sign a user access token, plus refresh and id tokens for the code flow.

        Implicit tokens live ``implicit_token_lifetime`` (Keycloak's "Access Token Lifespan
        For Implicit Flow") and come alone (RFC 6749 §4.2.2); code-flow tokens live
        ``token_lifetime`` and come with a refresh token, and an id token for ``openid``.
        """
        now = self.clock()
        lifetime = self.implicit_token_lifetime if implicit else self.token_lifetime
        scope = self.user_granted_scope(requested_scope)
        user = session.user
        profile: dict[str, Any] = {"preferred_username": user.username}
        if user.name:
            given, _, family = user.name.partition(" ")
            profile.update(name=user.name, given_name=given, family_name=family or given)
        if user.email:
            profile.update(email=user.email, email_verified=True)
        if user.company:
            profile["company"] = user.company
        session_claims: dict[str, Any] = {
            "auth_time": session.auth_time,
            "session_state": session.session_id,
            "sid": session.session_id,
        }
        claims = {
            "exp": int(now + lifetime),
            "iat": int(now),
            "jti": str(uuid.uuid4()),
            **self._profile_claims(client=client, issuer=issuer, subject=user.subject, scope=scope),
            **session_claims,
            **profile,
        }
        access_token = self._access_token(claims, issued_at=now, expires_at=now + lifetime)
        self.tokens_issued += 1
        if implicit:
            return IssuedTokens(
                access_token=access_token,
                expires_in=int(lifetime),
                scope=scope,
                session_state=session.session_id,
            )
        common = {"iat": int(now), "iss": issuer, "sub": user.subject, "azp": client.client_id}
        refresh_lifetime = self.sso_lifetime(session)
        refresh_claims = {
            "exp": int(now + refresh_lifetime),
            **common,
            **session_claims,
            "jti": str(uuid.uuid4()),
            "aud": issuer,
            "typ": "Refresh",
            "scope": scope,
        }
        id_token = None
        if "openid" in scope.split():
            id_claims = {
                "exp": int(now + lifetime),
                **common,
                **session_claims,
                "jti": str(uuid.uuid4()),
                "aud": client.client_id,
                "typ": "ID",
                "at_hash": _left_half_hash(access_token),
                **({"nonce": nonce} if nonce is not None else {}),
                **profile,
            }
            id_token = self._sign(id_claims)
        return IssuedTokens(
            access_token=access_token,
            expires_in=int(lifetime),
            scope=scope,
            refresh_token=self._sign_refresh(refresh_claims),
            refresh_expires_in=int(refresh_lifetime),
            session_state=session.session_id,
            id_token=id_token,
        )

    def mint_user_tokens(
        self,
        *,
        client_id: str,
        issuer: str,
        username: str = "demo",
        scope: str = "corp",
        implicit: bool = True,
        nonce: str | None = None,
    ) -> IssuedTokens:
        """Sign ``username`` in to ``client_id`` without a browser and return the tokens.

        The same tokens as the browser flow: tests use it to hold genuine tokens of
        another registered client, or ID and refresh tokens.
        """
        session = self.start_sso_session(self.users[username])
        return self.issue_user_tokens(
            client=self.clients[client_id],
            session=session,
            requested_scope=scope,
            issuer=issuer,
            implicit=implicit,
            nonce=nonce,
        )

    def verify_id_token(self, token: str) -> dict[str, Any] | None:
        """The claims of an id token this server signed (expired ones too), else None.

        Keycloak accepts an expired ``id_token_hint`` at logout, so only the signature and
        type are checked.
        """
        try:
            claims = verify_jwt(token, keys=self.published_keys())
        except InvalidJWT:
            return None
        return claims if claims.get("typ") == "ID" else None

    def _token_claims(self, token: str) -> tuple[dict[str, Any], _IssueRecord | None] | None:
        """The claims of an access token this server issued and its record, else None."""
        if self.flavour.token_format == "opaque":
            record = self._issued.get(token)
            if record is None or record.claims is None:
                return None
            return dict(record.claims), record
        try:
            claims = verify_jwt(token, keys=self.published_keys())
        except InvalidJWT:
            return None
        return claims, self._issued.get(str(claims.get("jti")))

    def check_access_token(self, token: str) -> dict[str, Any] | TokenRejection:
        """The token's claims if the sample API should accept it, else the reason it won't.

        Checks run in the Keycloak adapter's order: signature, expiry, then not-before.
        """
        found = self._token_claims(token)
        if found is None:
            return "Invalid token"
        claims, record = found
        # Keycloak marks access tokens ``typ: Bearer`` (opaque ones stand for such claims);
        # RFC 9068 marks only ID tokens (``typ: ID``): its access tokens have no ``typ``.
        expected_type = None if self.flavour.token_format == "rfc9068" else "Bearer"
        if claims.get("typ") != expected_type or not isinstance(claims.get("exp"), int):
            return "Invalid token"
        now = self.clock()
        if record is None:
            if now >= claims["exp"]:
                return "Token expired"
            issued_at = claims.get("iat")
            if not isinstance(issued_at, int) or issued_at <= self.not_before:
                return "Stale token"
            return claims
        if now >= record.expires_at:
            return "Token expired"
        if record.sequence <= self._revoked_up_to_sequence:
            return "Stale token"
        return claims

    def introspect(self, token: str) -> dict[str, Any]:
        """Keycloak's RFC 7662 answer: the claims plus ``active``, ``client_id``,
        ``username`` and ``token_type`` for a live token, ``{"active": false}`` otherwise."""
        self.introspection_requests += 1
        verdict = self.check_access_token(token)
        if isinstance(verdict, dict):
            answer = dict(verdict)
            answer["client_id"] = verdict.get("azp", verdict.get("client_id"))
            if "preferred_username" in verdict:
                answer["username"] = verdict["preferred_username"]
            answer["token_type"] = "Bearer"
            answer["active"] = True
            return answer
        refresh = self.verify_refresh_token(token)
        if refresh is not None and self.clock() < float(refresh.get("exp", 0)):
            return {**refresh, "client_id": refresh.get("azp"), "active": True}
        id_claims = self.verify_id_token(token)
        if id_claims is not None and self.clock() < float(id_claims.get("exp", 0)):
            return {**id_claims, "client_id": id_claims.get("azp"), "active": True}
        return {"active": False}

    def _remember(
        self,
        key: str,
        *,
        issued_at: float,
        expires_at: float,
        claims: Mapping[str, Any] | None = None,
    ) -> None:
        if len(self._issued) >= _REGISTRY_PRUNE_THRESHOLD:
            self._issued = {
                k: record for k, record in self._issued.items() if record.expires_at > issued_at
            }
        self._issued[key] = _IssueRecord(
            sequence=next(self._sequence), issued_at=issued_at, expires_at=expires_at, claims=claims
        )


def _left_half_hash(token: str) -> str:
    """``at_hash`` for an RS256-signed ID token (OIDC Core §3.1.3.6)."""
    digest = hashlib.sha256(token.encode("ascii")).digest()
    return b64url_encode(digest[: len(digest) // 2])
