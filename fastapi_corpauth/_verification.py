"""Whether the authorization server vouches for a token: plain functions, no I/O, no clock.

A token that reaches the app from outside (the sign-in callback, an ``Authorization``
header) is attacker input until these checks pass. The service around them
(``_verifier``) fetches keys and asks the introspection endpoint; everything that decides
lives here, so it can be tested exhaustively:

* ``jws_header`` tells a compact JWS from an opaque token;
* ``KeySet`` holds the issuer's published keys (asymmetric signing keys only);
* ``verify_signature`` checks a JWS against one key with PyJWT, the algorithm pinned by
  both the allow-list and the key;
* ``check_access_token``, ``check_introspection`` and ``check_id_token`` apply the claim
  rules: issuer, the client the token was issued to, token type, lifetime, and that a
  customer (not a service account) is behind it.

Two access-token profiles are understood: Keycloak's (claim ``typ: Bearer``, the client in
``azp``) and RFC 9068's (header ``typ: at+jwt``, the client in ``client_id``). ``aud``
never identifies the client: Keycloak sets it to ``account`` or to resource servers.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from jwt import PyJWK, PyJWS
from jwt.exceptions import InvalidAlgorithmError, InvalidSignatureError, PyJWTError

from ._errors import InvalidToken

__all__ = [
    "KeySet",
    "TokenProfile",
    "TokenRules",
    "VerifiedToken",
    "access_token_profile",
    "at_hash",
    "check_access_token",
    "check_id_token",
    "check_introspection",
    "jws_header",
    "verify_signature",
]

#: Longest token looked at; Keycloak's access tokens are 1-3 KB.
MAX_TOKEN_LENGTH = 16_384
#: Most keys read from one JWKS document; a realm publishes a handful.
MAX_KEYS = 64
#: Prefix Keycloak gives the user behind a client's service account.
SERVICE_ACCOUNT_PREFIX = "service-account-"
_RFC9068_TYPES = frozenset({"at+jwt", "application/at+jwt"})
#: Algorithms that each key type can verify, for keys published without ``alg``.
_KEY_TYPE_ALGORITHMS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "RSA": ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
        "EC": ("ES256", "ES384", "ES512"),
        "OKP": ("EdDSA",),
    }
)
_CURVE_ALGORITHMS: Mapping[str, str] = MappingProxyType(
    {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
)
_JWS = PyJWS(options={"enforce_minimum_key_length": True})

#: ``keycloak``: claim ``typ: Bearer`` and ``azp``; ``rfc9068``: header ``at+jwt``.
TokenProfile = Literal["keycloak", "rfc9068"]


@dataclass(frozen=True, kw_only=True)
class TokenRules:
    """What a token must satisfy: its issuer, the clients it may have been issued to, and
    the clock skew tolerated on its times."""

    issuer: str
    client_ids: frozenset[str]
    leeway: float = 10.0


@dataclass(frozen=True, kw_only=True, repr=False)
class VerifiedToken:
    """A customer's access token that the authorization server vouched for.

    ``claims`` are the verified claims of a JWT, or the introspection answer; either way
    the server, not the token's bearer, stands behind them. ``method`` says which.
    """

    subject: str
    client_id: str
    issuer: str
    expires_at: float | None
    issued_at: float | None
    scope: tuple[str, ...]
    method: Literal["jwt", "introspection"]
    claims: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def session_id(self) -> str | None:
        """The bank's SSO session (Keycloak's ``sid``), when the token names one."""
        for claim in ("sid", "session_state"):
            value = self.claims.get(claim)
            if isinstance(value, str) and value:
                return value
        return None

    def __repr__(self) -> str:
        return (
            f"VerifiedToken(subject={self.subject!r}, client_id={self.client_id!r}, "
            f"method={self.method!r}, expires_at={self.expires_at!r})"
        )


def _b64url_json(segment: str) -> Any:
    padded = segment + "=" * (-len(segment) % 4)
    try:
        return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError, RecursionError):
        return None


def jws_header(token: str) -> dict[str, Any] | None:
    """The protected header of a compact JWS, or None when ``token`` is not one.

    Nothing is verified: the header only says which key and algorithm to check with.
    """
    if len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        return None
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        return None
    header = _b64url_json(parts[0])
    if not isinstance(header, dict) or not isinstance(header.get("alg"), str):
        return None
    return header


class KeySet:
    """The issuer's published signing keys, ready to verify with.

    Only asymmetric keys meant for signatures are kept: ``use`` other than ``sig``,
    ``key_ops`` without ``verify``, symmetric (``oct``) keys and keys whose ``alg`` is not
    allowed are dropped. A key published without ``alg`` may verify any allowed algorithm
    of its type (PS256 for an RSA key, for instance).
    """

    def __init__(self, keys: Mapping[tuple[str | None, str], PyJWK]) -> None:
        self._keys = dict(keys)
        self.kids = frozenset(kid for kid, _ in self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"KeySet(kids={sorted(k for k in self.kids if k)!r})"

    @classmethod
    def from_jwks(cls, document: Any, *, algorithms: Collection[str]) -> KeySet:
        """Read a JWKS document (RFC 7517 §5).

        Raises:
            ValueError: the document is not a JWK set.
        """
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise ValueError("not a JWK set")
        keys: dict[tuple[str | None, str], PyJWK] = {}
        for entry in document["keys"][:MAX_KEYS]:
            for alg in _usable_algorithms(entry, algorithms):
                kid = entry.get("kid")
                with contextlib.suppress(PyJWTError, ValueError, TypeError):  # unusable key
                    keys[(kid if isinstance(kid, str) else None, alg)] = PyJWK(entry, alg)
        return cls(keys)

    def candidates(self, header: Mapping[str, Any]) -> list[PyJWK] | None:
        """The keys that may have signed a JWS with ``header``.

        None means the key id is unknown (the issuer may have rotated its keys); an empty
        list means the key is known but not for this algorithm.
        """
        alg = header.get("alg")
        kid = header.get("kid")
        if isinstance(kid, str):
            if kid not in self.kids:
                return None
            key = self._keys.get((kid, alg)) if isinstance(alg, str) else None
            return [key] if key is not None else []
        if kid is not None:
            return []
        return [key for (_, key_alg), key in self._keys.items() if key_alg == alg]


def _usable_algorithms(entry: Any, allowed: Collection[str]) -> list[str]:
    if not isinstance(entry, dict):
        return []
    kty = entry.get("kty")
    if not isinstance(kty, str) or kty not in _KEY_TYPE_ALGORITHMS:
        return []  # "oct" (HMAC) and unknown types are never verification keys here
    if entry.get("use", "sig") != "sig":
        return []
    key_ops = entry.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        return []
    possible: Sequence[str] = _KEY_TYPE_ALGORITHMS[kty]
    if kty == "EC":
        curve_alg = _CURVE_ALGORITHMS.get(str(entry.get("crv")))
        possible = (curve_alg,) if curve_alg else ()
    declared = entry.get("alg")
    if declared is not None:
        possible = [declared] if declared in possible else []
    return [alg for alg in possible if alg in allowed]


def verify_signature(token: str, key: PyJWK, *, algorithms: Collection[str]) -> dict[str, Any]:
    """The claims of ``token`` if ``key`` signed it with an allowed algorithm.

    Raises:
        InvalidToken: ``algorithm`` (not allowed, or not the key's), ``signature``, or
            ``malformed`` (not a JWS, or claims that are not a JSON object).
    """
    try:
        decoded = _JWS.decode_complete(token, key=key, algorithms=list(algorithms))
    except InvalidAlgorithmError as exc:
        raise InvalidToken("the token's algorithm is not allowed", reason="algorithm") from exc
    except InvalidSignatureError as exc:
        raise InvalidToken("the token's signature does not verify", reason="signature") from exc
    except PyJWTError as exc:
        raise InvalidToken("the token is not a well-formed JWS", reason="malformed") from exc
    try:
        claims = json.loads(decoded["payload"])
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidToken("the token's claims are not JSON", reason="malformed") from exc
    if not isinstance(claims, dict):
        raise InvalidToken("the token's claims are not a JSON object", reason="malformed")
    return claims


def access_token_profile(
    header: Mapping[str, Any], claims: Mapping[str, Any]
) -> TokenProfile | None:
    """Which access-token profile the JWT follows, or None when it says neither.

    Raises:
        InvalidToken: ``token_type`` when the token says it is something else (an ID,
            refresh or logout token).
    """
    header_type = header.get("typ")
    if isinstance(header_type, str) and header_type.lower() in _RFC9068_TYPES:
        return "rfc9068"
    if header_type is not None and (
        not isinstance(header_type, str) or header_type.upper() != "JWT"
    ):
        raise InvalidToken("the token is not an access token", reason="token_type")
    claim_type = claims.get("typ")
    if claim_type is None:
        return None
    if isinstance(claim_type, str) and claim_type.lower() == "bearer":
        return "keycloak"
    raise InvalidToken("the token is not an access token", reason="token_type")


def _time(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(f"the token's {name} is not a number", reason="malformed")
    try:
        result = float(value)
    except OverflowError as exc:
        raise InvalidToken(f"the token's {name} is out of range", reason="malformed") from exc
    if not math.isfinite(result):
        raise InvalidToken(f"the token's {name} is not finite", reason="malformed")
    return result


def _check_times(claims: Mapping[str, Any], *, now: float, leeway: float, required: bool) -> None:
    expires = _time(claims, "exp")
    if expires is None and required:
        raise InvalidToken("the token has no expiry", reason="malformed")
    if expires is not None and now - leeway >= expires:
        raise InvalidToken("the token has expired", reason="expired")
    not_before = _time(claims, "nbf")
    if not_before is not None and now + leeway < not_before:
        raise InvalidToken("the token is not valid yet", reason="not_yet_valid")


def _same(value: Any, expected: str) -> bool:
    """Constant-time equality of a claim and an expected string (any type refused)."""
    return isinstance(value, str) and hmac.compare_digest(
        value.encode("utf-8", "surrogatepass"), expected.encode("utf-8")
    )


def _check_issuer(value: Any, issuer: str) -> None:
    # Issuers are compared exactly (OIDC Core §3.1.3.7), a trailing slash aside.
    if not isinstance(value, str) or not _same(value.rstrip("/"), issuer.rstrip("/")):
        raise InvalidToken("the token was issued by another server", reason="issuer")


def _client_of(value: Any, client_ids: frozenset[str]) -> str:
    if isinstance(value, str):
        for client_id in client_ids:
            if _same(value, client_id):
                return client_id
    raise InvalidToken("the token was issued to another client", reason="client")


def _is_service_account(claims: Mapping[str, Any], client_id: str, *, keycloak: bool) -> bool:
    """Whether a client's service account, not a customer, is behind the token.

    Keycloak names the user ``service-account-<client>`` and adds its client-id mapper
    (``clientId`` before KC 20, ``client_id`` after) to service-account tokens only;
    RFC 9068 names the client itself as the subject of a client_credentials token.
    """
    for name in ("preferred_username", "username"):
        value = claims.get(name)
        if isinstance(value, str) and value.startswith(SERVICE_ACCOUNT_PREFIX):
            return True
    if "clientId" in claims or (keycloak and "client_id" in claims):
        return True
    return claims.get("sub") == client_id


def _scope(claims: Mapping[str, Any]) -> tuple[str, ...]:
    scope = claims.get("scope")
    return tuple(scope.split()) if isinstance(scope, str) else ()


def check_access_token(
    header: Mapping[str, Any],
    claims: Mapping[str, Any],
    *,
    rules: TokenRules,
    now: float,
) -> VerifiedToken:
    """Apply the access-token rules to the verified claims of a JWT.

    Raises:
        InvalidToken: with ``reason`` ``token_type``, ``issuer``, ``client``, ``expired``,
            ``not_yet_valid``, ``malformed``, ``service_account`` or ``subject``.
    """
    profile = access_token_profile(header, claims)
    if profile is None:
        raise InvalidToken("the token does not say it is an access token", reason="token_type")
    _check_issuer(claims.get("iss"), rules.issuer)
    keycloak = profile == "keycloak"
    client_id = _client_of(claims.get("azp" if keycloak else "client_id"), rules.client_ids)
    _check_times(claims, now=now, leeway=rules.leeway, required=True)
    if _is_service_account(claims, client_id, keycloak=keycloak):
        raise InvalidToken("a service account is not a customer", reason="service_account")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise InvalidToken("the token names no customer", reason="subject")
    return VerifiedToken(
        subject=subject,
        client_id=client_id,
        issuer=rules.issuer,
        expires_at=_time(claims, "exp"),
        issued_at=_time(claims, "iat"),
        scope=_scope(claims),
        method="jwt",
        claims=MappingProxyType(dict(claims)),
    )


def check_introspection(
    answer: Mapping[str, Any], *, rules: TokenRules, now: float
) -> VerifiedToken:
    """Apply the access-token rules to an RFC 7662 introspection answer.

    Keycloak answers with the token's claims plus ``active``, ``client_id`` and
    ``username``; other servers (django-oauth-toolkit) with the standard fields only.

    Raises:
        InvalidToken: ``inactive``, ``client``, ``token_type``, ``issuer``, ``expired``,
            ``not_yet_valid``, ``malformed``, ``service_account`` or ``subject``.
    """
    if answer.get("active") is not True:
        raise InvalidToken(
            "the authorization server says the token is not active", reason="inactive"
        )
    client_id = _client_of(answer.get("client_id"), rules.client_ids)
    token_type = answer.get("token_type")
    if token_type is not None and (
        not isinstance(token_type, str) or token_type.lower() not in ("bearer", "access_token")
    ):
        raise InvalidToken("the token is not an access token", reason="token_type")
    claim_type = answer.get("typ")
    if claim_type is not None and (
        not isinstance(claim_type, str) or claim_type.lower() != "bearer"
    ):
        raise InvalidToken("the token is not an access token", reason="token_type")
    if "iss" in answer:
        _check_issuer(answer.get("iss"), rules.issuer)
    _check_times(answer, now=now, leeway=rules.leeway, required=False)
    subject = answer.get("sub")
    username = answer.get("username")
    if not (isinstance(subject, str) and subject) and not (isinstance(username, str) and username):
        raise InvalidToken("the token names no customer", reason="service_account")
    if _is_service_account(answer, client_id, keycloak=False):
        raise InvalidToken("a service account is not a customer", reason="service_account")
    claims = dict(answer)
    if isinstance(username, str) and username and "preferred_username" not in claims:
        claims["preferred_username"] = username
    return VerifiedToken(
        subject=subject if isinstance(subject, str) and subject else str(username),
        client_id=client_id,
        issuer=rules.issuer,
        expires_at=_time(answer, "exp"),
        issued_at=_time(answer, "iat"),
        scope=_scope(answer),
        method="introspection",
        claims=MappingProxyType(claims),
    )


def at_hash(access_token: str, algorithm: str) -> str:
    """OIDC Core §3.1.3.6: the left half of the access token's hash, base64url.

    The hash follows the ID token's algorithm: SHA-256 for ``*256``, and so on; EdDSA
    (Ed25519) uses SHA-512.
    """
    hash_function = {"256": hashlib.sha256, "384": hashlib.sha384}.get(
        algorithm[-3:], hashlib.sha512
    )
    digest = hash_function(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode("ascii")


def check_id_token(
    header: Mapping[str, Any],
    claims: Mapping[str, Any],
    *,
    rules: TokenRules,
    client_id: str,
    nonce: str | None,
    access_token: str,
    subject: str,
    now: float,
) -> None:
    """OIDC Core §3.1.3.7 for the ID token of a code-flow sign-in.

    The ID token must come from the issuer, be meant for this client, still be valid,
    carry the ``nonce`` the sign-in sent, name the access token's customer and, when it
    has ``at_hash``, belong to that access token.

    Raises:
        InvalidToken: ``id_token`` (not an ID token for this client and customer),
            ``nonce``, ``issuer``, ``expired``, ``not_yet_valid`` or ``malformed``.
    """
    claim_type = claims.get("typ")
    if claim_type is not None and claim_type != "ID":
        raise InvalidToken("the ID token is not an ID token", reason="id_token")
    _check_issuer(claims.get("iss"), rules.issuer)
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else audience
    if not isinstance(audiences, list) or not any(_same(a, client_id) for a in audiences):
        raise InvalidToken("the ID token is meant for another client", reason="id_token")
    authorized = claims.get("azp")
    if (len(audiences) > 1 or authorized is not None) and not _same(authorized, client_id):
        raise InvalidToken("the ID token is meant for another client", reason="id_token")
    _check_times(claims, now=now, leeway=rules.leeway, required=True)
    if nonce is not None and not _same(claims.get("nonce"), nonce):
        raise InvalidToken("the ID token does not carry this sign-in's nonce", reason="nonce")
    if not _same(claims.get("sub"), subject):
        raise InvalidToken("the ID token names another customer", reason="id_token")
    expected_hash = claims.get("at_hash")
    if expected_hash is not None and not _same(
        expected_hash, at_hash(access_token, str(header.get("alg")))
    ):
        raise InvalidToken("the ID token belongs to another access token", reason="id_token")
