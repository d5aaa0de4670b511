"""The OAuth 2.0 / Keycloak protocol as plain functions: no I/O, no clock, no framework.

Everything here takes values and returns values, so it can be tested exhaustively and
reused by any transport. See RFC 6749 §2.3.1, §4.4, §5.1-5.2 and the Keycloak notes in
the project's protocol research for why each tolerance exists.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import random
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote_plus

import httpx

from ._config import CachePolicy, ClientCredentials, RetryPolicy
from ._errors import (
    CredentialsRejected,
    EndpointNotFound,
    MalformedTokenResponse,
    TokenEndpointUnavailable,
)
from ._token import Token

__all__ = [
    "authorization_code_request",
    "backoff_delay",
    "basic_authorization",
    "client_credentials_request",
    "introspection_request",
    "refresh_token_request",
    "jwt_claims_unverified",
    "parse_retry_after",
    "parse_token_response",
    "refresh_at",
    "stale_at",
]

#: OAuth error codes that mean "these client credentials will not work", whatever the status.
_CREDENTIAL_ERRORS = frozenset({"invalid_client", "unauthorized_client"})
_KNOWN_FIELDS = frozenset(
    {
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "refresh_expires_in",
        "not-before-policy",
        "session_state",
        "scope",
        "id_token",
    }
)
#: Response fields that may hold a credential and are never kept in ``Token.extra``.
_SECRET_FIELDS = frozenset({"app_id", "issued_token"})


def basic_authorization(client_id: str, client_secret: str) -> str:
    """Build ``Authorization: Basic`` as RFC 6749 §2.3.1 requires.

    Both parts are form-urlencoded (Appendix B) before base64, so a secret containing
    ``+``, ``%``, ``:`` or non-ASCII characters reaches Keycloak 19+ intact (it
    URL-decodes both parts). ``httpx.BasicAuth`` does not encode, hence this function.
    """
    pair = f"{quote_plus(client_id, safe='')}:{quote_plus(client_secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode("ascii")).decode("ascii")


def authorization_code_request(
    *,
    token_url: str,
    credentials: ClientCredentials,
    code: str,
    redirect_uri: str,
    code_verifier: str | None,
) -> httpx.Request:
    """Build the code exchange (RFC 6749 §4.1.3, RFC 7636 §4.5) with client authentication.

    This is the real protocol step behind the bank's documented "step 3" for web
    applications: ``grant_type=authorization_code``, not ``client_credentials``.
    """
    form: dict[str, str] = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
    }
    if code_verifier:
        form["code_verifier"] = code_verifier
    return _token_request(token_url, credentials, form)


def client_credentials_request(
    *, token_url: str, credentials: ClientCredentials, scope: str | None
) -> httpx.Request:
    """Build the client_credentials token request (RFC 6749 §4.4.2).

    The body holds ``grant_type`` and, when configured, ``scope``; nothing else (the
    ``code`` and ``redirect_uri`` of the bank's documented step 3 are ignored by
    Keycloak and yield the same service-account token).
    """
    form: dict[str, str] = {"grant_type": "client_credentials"}
    if scope:
        form["scope"] = scope
    return _token_request(token_url, credentials, form)


def refresh_token_request(
    *, token_url: str, credentials: ClientCredentials, refresh_token: str
) -> httpx.Request:
    """Build the refresh request (RFC 6749 §6), authenticated like the code exchange."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return _token_request(token_url, credentials, form)


def introspection_request(*, url: str, credentials: ClientCredentials, token: str) -> httpx.Request:
    """Build an RFC 7662 introspection request, authenticated like a token request."""
    form = {"token": token, "token_type_hint": "access_token"}
    return _token_request(url, credentials, form)


def _token_request(
    token_url: str, credentials: ClientCredentials, form: dict[str, str]
) -> httpx.Request:
    headers = {"Accept": "application/json"}
    secret = credentials.client_secret.get_secret_value()
    if credentials.auth_method == "client_secret_post":
        form["client_id"] = credentials.client_id
        form["client_secret"] = secret
    else:
        headers["Authorization"] = basic_authorization(credentials.client_id, secret)
    return httpx.Request("POST", token_url, data=form, headers=headers)


def jwt_claims_unverified(token: str) -> dict[str, Any] | None:
    """Return the claims of a JWT without verifying it, or None if it is not a JWT.

    Used only to read ``exp`` when a server omits ``expires_in`` (Keycloak 4.0-4.4):
    the token is not trusted for anything else.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError, RecursionError):  # nesting bombs too
        return None
    return claims if isinstance(claims, dict) else None


def _number(value: Any) -> float | None:
    """A finite non-negative number from a JSON number or numeric string, else None."""
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, int | float):
            result = float(value)  # OverflowError for an int beyond float's range
        elif isinstance(value, str):
            result = float(value.strip())
        else:
            return None
    except (ValueError, OverflowError):
        return None
    return result if math.isfinite(result) and result >= 0 else None


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    seconds = _number(value)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - now)


def _error_fields(body: bytes) -> tuple[str | None, str | None]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None, None
    if not isinstance(data, dict):
        return None, None
    error = data.get("error")
    description = data.get("error_description")
    return (
        error if isinstance(error, str) else None,
        description if isinstance(description, str) else None,
    )


def parse_token_response(
    *,
    status_code: int,
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    default_lifetime: float = 60.0,
) -> Token:
    """Turn a token endpoint response into a ``Token`` or the matching ``TokenError``.

    Tolerates every Keycloak variant: ``token_type`` in any case, ``expires_in`` as a
    number or a string or missing (then the JWT ``exp``, then ``default_lifetime``),
    legacy ``refresh_token``/``session_state``, ``refresh_expires_in: 0``,
    ``not-before-policy`` as an epoch, a ``scope`` wider than requested and unknown
    fields.

    Raises:
        TokenEndpointUnavailable: 5xx or 429 (with ``retry_after`` from the header).
        EndpointNotFound: 404 or 405, a misconfigured URL rather than refused credentials.
        CredentialsRejected: 400/401 with ``invalid_client``/``unauthorized_client``,
            or any other 4xx, which retrying cannot fix either.
        MalformedTokenResponse: a 2xx that is not a JSON token (HTML, truncated JSON,
            missing ``access_token``, a token type other than Bearer).
    """
    if status_code == 429 or status_code >= 500:
        raise (
            TokenEndpointUnavailable(
                f"token endpoint answered HTTP {status_code}",
                status_code=status_code,
                retry_after=parse_retry_after(headers.get("retry-after"), now=now),
            )
        )
    if status_code in (404, 405):
        raise EndpointNotFound(
            f"token endpoint answered HTTP {status_code}: check the issuer and token URL",
            status_code=status_code,
        )
    if status_code >= 400:
        error, description = _error_fields(body)
        if error in _CREDENTIAL_ERRORS or status_code in (400, 401):
            kind = error or "no OAuth error code"
            raise (
                CredentialsRejected(
                    f"token endpoint rejected the client credentials (HTTP {status_code}, {kind})",
                    status_code=status_code,
                    error=error,
                    error_description=description,
                )
            )
        raise (
            CredentialsRejected(
                f"token endpoint refused the request (HTTP {status_code})",
                status_code=status_code,
                error=error,
                error_description=description,
            )
        )
    if not 200 <= status_code < 300:
        raise (
            MalformedTokenResponse(
                f"token endpoint answered HTTP {status_code}", status_code=status_code
            )
        )
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise MalformedTokenResponse(
            "token endpoint did not answer with JSON", status_code=status_code
        ) from exc
    if not isinstance(data, dict):
        raise (
            MalformedTokenResponse("token response is not a JSON object", status_code=status_code)
        )
    return token_from_fields(
        data, now=now, default_lifetime=default_lifetime, status_code=status_code
    )


def token_from_fields(
    data: Mapping[str, Any],
    *,
    now: float,
    default_lifetime: float = 60.0,
    status_code: int | None = None,
) -> Token:
    """Build a ``Token`` from token-response fields (a JSON body or a callback's parameters).

    Raises:
        MalformedTokenResponse: no usable ``access_token`` or a non-Bearer ``token_type``.
    """
    access_token = data.get("access_token")
    if not isinstance(access_token, str) or not access_token.strip():
        raise (
            MalformedTokenResponse("token response has no access_token", status_code=status_code)
        )
    token_type = data.get("token_type", "Bearer")
    if not isinstance(token_type, str) or token_type.strip().lower() != "bearer":
        raise (
            MalformedTokenResponse(
                "token response has an unsupported token_type", status_code=status_code
            )
        )
    lifetime = _number(data.get("expires_in"))
    if lifetime is None:
        claims = jwt_claims_unverified(access_token) or {}
        exp = _number(claims.get("exp"))
        lifetime = max(0.0, exp - now) if exp is not None else default_lifetime
    refresh_lifetime = _number(data.get("refresh_expires_in"))
    refresh_token = data.get("refresh_token")
    scope = data.get("scope")
    session_state = data.get("session_state")
    id_token = data.get("id_token")
    not_before = _number(data.get("not-before-policy"))
    return Token(
        access_token=access_token.strip(),
        token_type="Bearer",  # noqa: S106 - normalised type name, not a secret
        issued_at=now,
        expires_at=now + lifetime,
        scope=tuple(scope.split()) if isinstance(scope, str) else (),
        refresh_token=refresh_token if isinstance(refresh_token, str) and refresh_token else None,
        refresh_expires_at=(
            now + refresh_lifetime if refresh_lifetime and isinstance(refresh_token, str) else None
        ),
        not_before_policy=int(not_before) if not_before is not None else 0,
        session_state=session_state if isinstance(session_state, str) else None,
        id_token=id_token if isinstance(id_token, str) and id_token else None,
        extra={
            key: value
            for key, value in data.items()
            if key not in _KNOWN_FIELDS and key not in _SECRET_FIELDS
        },
    )


def _effective_leeway(token: Token, policy: CachePolicy) -> float:
    return min(policy.leeway, max(0.0, token.lifetime) / 4)


def stale_at(token: Token, policy: CachePolicy) -> float:
    """The instant from which a cached token is no longer handed out."""
    return token.expires_at - _effective_leeway(token, policy)


def refresh_at(token: Token, policy: CachePolicy) -> float:
    """The instant from which its successor is fetched in the background."""
    window = min(policy.refresh_window, max(0.0, token.lifetime) / 4)
    return stale_at(token, policy) - window


def backoff_delay(
    attempt: int, policy: RetryPolicy, *, uniform: Callable[[float, float], float] = random.uniform
) -> float:
    """Full-jitter exponential back-off before retry number ``attempt`` (1-based)."""
    ceiling = min(policy.backoff_max, policy.backoff_base * (2 ** (attempt - 1)))
    return uniform(0.0, ceiling)
