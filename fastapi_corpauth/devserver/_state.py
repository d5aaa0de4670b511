"""Mutable state of one devserver: clients, issued tokens, revocation, counters, faults.

Everything that decides whether a token is valid lives here, behind an injectable clock,
so tests can expire or revoke tokens deterministically without sleeping.
"""

from __future__ import annotations

import itertools
import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, get_args

from ._flavours import Flavour
from ._jwt import InvalidJWT, sign_jwt, verify_jwt

__all__ = [
    "DEFAULT_ACCOUNTS",
    "DevClient",
    "DevServerState",
    "FaultBodyKind",
    "FaultPlan",
    "IssuedTokens",
    "SampleAccount",
    "TokenRejection",
    "new_signing_key",
]

FaultBodyKind = Literal["json-error", "html", "truncated", "not-json"]
TokenRejection = Literal["Invalid token", "Token expired", "Stale token"]

#: Past this many remembered tokens, expired ones are forgotten (their JWT ``exp`` suffices).
_REGISTRY_PRUNE_THRESHOLD = 1024


@dataclass(frozen=True, kw_only=True)
class DevClient:
    """A confidential client registered in the dev realm."""

    client_id: str
    client_secret: str
    #: Keycloak refuses client_credentials unless the client's service account is enabled.
    service_accounts_enabled: bool = True
    redirect_uris: tuple[str, ...] = ()


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


@dataclass(frozen=True, slots=True)
class _IssueRecord:
    sequence: int
    issued_at: float
    expires_at: float


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
        signing_key: bytes,
        accounts: Sequence[SampleAccount],
    ) -> None:
        if token_lifetime < 0:
            raise ValueError("token_lifetime must not be negative")
        client_ids = [client.client_id for client in clients]
        if len(set(client_ids)) != len(client_ids):
            raise ValueError("client ids must be unique")
        self.realm = realm
        self.clients: Mapping[str, DevClient] = {client.client_id: client for client in clients}
        self.flavour = flavour
        self.token_lifetime = token_lifetime
        self.clock = clock
        self.accounts: Mapping[str, SampleAccount] = {a.account_id: a for a in accounts}
        self._signing_key = signing_key
        self.kid = uuid.uuid5(uuid.NAMESPACE_OID, signing_key.hex()).hex
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

    @property
    def known_scopes(self) -> frozenset[str]:
        """Scopes a client may request: ``corp`` plus the flavour's default client scopes."""
        return frozenset(("corp", *self.flavour.scope_extra))

    @property
    def granted_scope(self) -> str:
        """Keycloak grants every default client scope, whatever subset was requested."""
        return " ".join(("corp", *self.flavour.scope_extra))

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

    def stats(self) -> dict[str, Any]:
        """The counters as JSON, for ``GET /_dev/stats``."""
        return {
            "token_requests": self.token_requests,
            "tokens_issued": self.tokens_issued,
            "api_requests": self.api_requests,
            "api_rejections": self.api_rejections,
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

    def issue_client_credentials(
        self, client: DevClient, *, issuer: str, expired: bool = False
    ) -> IssuedTokens:
        """Sign a service-account token for ``client`` and remember when it was issued."""
        now = self.clock()
        lifetime = 0.0 if expired else self.token_lifetime
        session_state = str(uuid.uuid4()) if self.flavour.refresh_tokens else None
        service_account = f"service-account-{client.client_id}"
        claims: dict[str, Any] = {
            "exp": int(now + lifetime),
            "iat": int(now),
            "jti": str(uuid.uuid4()),
            "iss": issuer,
            "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{issuer}/{service_account}")),
            "typ": "Bearer",
            "azp": client.client_id,
            "scope": self.granted_scope,
            "clientId": client.client_id,
            "preferred_username": service_account,
        }
        if session_state is not None:
            claims["session_state"] = session_state
            claims["sid"] = session_state
        self._remember(claims["jti"], issued_at=now, expires_at=now + lifetime)
        refresh_token = None
        if self.flavour.refresh_tokens:
            refresh_claims = {**claims, "jti": str(uuid.uuid4()), "typ": "Refresh", "aud": issuer}
            del refresh_claims["preferred_username"], refresh_claims["clientId"]
            refresh_token = sign_jwt(refresh_claims, key=self._signing_key, kid=self.kid)
        self.tokens_issued += 1
        expires_in = int(lifetime)
        return IssuedTokens(
            access_token=sign_jwt(claims, key=self._signing_key, kid=self.kid),
            expires_in=expires_in,
            scope=self.granted_scope,
            refresh_token=refresh_token,
            refresh_expires_in=expires_in if refresh_token else 0,
            session_state=session_state,
        )

    def check_access_token(self, token: str) -> dict[str, Any] | TokenRejection:
        """The token's claims if the sample API should accept it, else the reason it won't.

        Checks run in the Keycloak adapter's order: signature, expiry, then not-before.
        """
        try:
            claims = verify_jwt(token, key=self._signing_key)
        except InvalidJWT:
            return "Invalid token"
        if claims.get("typ") != "Bearer" or not isinstance(claims.get("exp"), int):
            return "Invalid token"
        now = self.clock()
        record = self._issued.get(str(claims.get("jti")))
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

    def _remember(self, jti: str, *, issued_at: float, expires_at: float) -> None:
        if len(self._issued) >= _REGISTRY_PRUNE_THRESHOLD:
            self._issued = {
                key: record for key, record in self._issued.items() if record.expires_at > issued_at
            }
        self._issued[jti] = _IssueRecord(
            sequence=next(self._sequence), issued_at=issued_at, expires_at=expires_at
        )


def new_signing_key() -> bytes:
    """A fresh random HS256 key, so tokens from another devserver are always foreign."""
    return secrets.token_bytes(32)
