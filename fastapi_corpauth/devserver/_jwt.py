"""Minimal HS256 JSON Web Tokens (RFC 7519) with the standard library only.

The devserver is both issuer and only verifier of its tokens, so a shared-secret HMAC is
enough and avoids a JWT dependency. Clients still see a real three-part JWT whose claims
they can read without verifying, as they do with Keycloak's RS256 tokens.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["InvalidJWT", "b64url_decode", "b64url_encode", "sign_jwt", "verify_jwt"]


class InvalidJWT(ValueError):
    """The token is malformed, uses another algorithm, or its signature does not match."""


def b64url_encode(data: bytes) -> str:
    """Base64url without padding, as JWS compact serialisation requires (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Inverse of :func:`b64url_encode`; raises :class:`InvalidJWT` on bad input."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidJWT("bad base64url segment") from exc


def _json_segment(value: Mapping[str, Any]) -> str:
    return b64url_encode(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def _signature(signing_input: str, key: bytes) -> bytes:
    return hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()


def sign_jwt(claims: Mapping[str, Any], *, key: bytes, kid: str) -> str:
    """Return a compact HS256 JWT carrying ``claims``; ``kid`` mimics Keycloak's header."""
    header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    signing_input = f"{_json_segment(header)}.{_json_segment(claims)}"
    return f"{signing_input}.{b64url_encode(_signature(signing_input, key))}"


def verify_jwt(token: str, *, key: bytes) -> dict[str, Any]:
    """Return the claims of ``token`` if it is an HS256 JWT signed with ``key``.

    Only the signature and structure are checked; expiry and revocation depend on the
    server's clock and state and are decided by the caller. The algorithm is pinned so an
    ``alg: none`` token can never pass.
    """
    parts = token.split(".")
    if not token.isascii() or len(parts) != 3:
        raise InvalidJWT("not a compact JWS")
    header_segment, payload_segment, signature_segment = parts
    try:
        header = json.loads(b64url_decode(header_segment))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidJWT("bad header") from exc
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise InvalidJWT("unsupported algorithm")
    expected = _signature(f"{header_segment}.{payload_segment}", key)
    if not hmac.compare_digest(expected, b64url_decode(signature_segment)):
        raise InvalidJWT("signature mismatch")
    try:
        claims = json.loads(b64url_decode(payload_segment))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidJWT("bad payload") from exc
    if not isinstance(claims, dict):
        raise InvalidJWT("payload is not a JSON object")
    return claims
