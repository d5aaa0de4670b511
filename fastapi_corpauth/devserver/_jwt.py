"""JSON Web Tokens as Keycloak issues them: RS256 with the realm's RSA keys, published as a
JWK set, and HS512 for refresh tokens (Keycloak signs those with the realm's HMAC key,
which only the server knows).

Signing and verifying go through PyJWT; the algorithm is always pinned, so an
``alg: none`` token or one signed with another algorithm never verifies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from jwt.exceptions import PyJWTError

__all__ = [
    "InvalidJWT",
    "SigningKey",
    "b64url_decode",
    "b64url_encode",
    "hmac_kid",
    "sign_hmac_jwt",
    "sign_jwt",
    "verify_hmac_jwt",
    "verify_jwt",
]


class InvalidJWT(ValueError):
    """The token is malformed, uses another algorithm or key, or its signature fails."""


def b64url_encode(data: bytes) -> str:
    """Base64url without padding, as JWS compact serialisation requires (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Inverse of :func:`b64url_encode`; raises :class:`InvalidJWT` on bad input."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidJWT("bad base64url segment") from exc


@dataclass(frozen=True, eq=False, repr=False)
class SigningKey:
    """One of the realm's RSA key pairs; ``kid`` names it in token headers and the JWKS."""

    kid: str
    private_key: rsa.RSAPrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh 2048-bit key, as Keycloak's ``rsa-generated`` provider makes."""
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(kid=b64url_encode(secrets.token_bytes(24)), private_key=private_key)

    def public_jwk(self) -> dict[str, Any]:
        """The public half as Keycloak publishes it at ``.../certs``."""
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.private_key.public_key()))
        return {
            "kid": self.kid,
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "n": jwk["n"],
            "e": jwk["e"],
        }

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r})"


def sign_jwt(
    claims: Mapping[str, Any], *, key: SigningKey, typ: str = "JWT", algorithm: str = "RS256"
) -> str:
    """A compact JWS of ``claims`` signed with ``key``; the header carries its ``kid``."""
    return jwt.encode(
        dict(claims), key.private_key, algorithm=algorithm, headers={"kid": key.kid, "typ": typ}
    )


def verify_jwt(token: str, *, keys: Sequence[SigningKey]) -> dict[str, Any]:
    """The claims of ``token`` if one of ``keys`` signed it with RS256.

    Only the signature and structure are checked; expiry and revocation depend on the
    server's clock and state and are decided by the caller.
    """
    try:
        header = jwt.get_unverified_header(token)
    except PyJWTError as exc:
        raise InvalidJWT("not a compact JWS") from exc
    key = next((k for k in keys if k.kid == header.get("kid")), None)
    if key is None:
        raise InvalidJWT("unknown key")
    return _decode(token, key.private_key.public_key(), "RS256")


def sign_hmac_jwt(claims: Mapping[str, Any], *, secret: bytes, kid: str) -> str:
    """An HS512 JWS, the way Keycloak signs refresh tokens with its realm HMAC key."""
    return jwt.encode(dict(claims), secret, algorithm="HS512", headers={"kid": kid, "typ": "JWT"})


def verify_hmac_jwt(token: str, *, secret: bytes) -> dict[str, Any]:
    """The claims of an HS512 token signed with ``secret``."""
    return _decode(token, secret, "HS512")


def hmac_kid(secret: bytes) -> str:
    """A stable key id for the realm's HMAC key, derived one-way from it."""
    return uuid.UUID(bytes=hashlib.sha256(secret).digest()[:16]).hex


def _decode(token: str, key: Any, algorithm: str) -> dict[str, Any]:
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            options={
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
                "verify_iss": False,
            },
        )
    except PyJWTError as exc:
        raise InvalidJWT("signature or structure invalid") from exc
    if not isinstance(claims, dict):
        raise InvalidJWT("payload is not a JSON object")
    return claims
