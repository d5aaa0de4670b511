"""Keycloak variants the devserver can imitate.

Keycloak's token endpoint changed shape and error texts across versions (token_type case,
refresh tokens on client_credentials, Basic decoding, error codes), and its authorization
responses gained ``iss`` in KC 23. A client that works against BOG must tolerate all of
them, so the devserver reproduces each one exactly; the texts below are Keycloak's own
(see the project's protocol notes, §2.2 and §2.4-2.6).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Literal

__all__ = ["FLAVOURS", "Flavour", "TokenFormat"]

#: ``keycloak``: RS256 JWTs with Keycloak's claims (``typ: Bearer``, ``azp``); ``rfc9068``:
#: the JWT access-token profile other servers use (header ``at+jwt``, ``client_id``, an
#: ``aud`` naming the API); ``opaque``: random strings that only introspection explains.
TokenFormat = Literal["keycloak", "rfc9068", "opaque"]

_CURRENT_CLIENT_FAILURE = "Invalid client or Invalid client credentials"


@dataclass(frozen=True, kw_only=True)
class Flavour:
    """How one Keycloak variant answers the token and authorization endpoints.

    Every field is a behaviour observed on a real server version, so tests can pin the
    client's tolerance to each one separately.
    """

    name: str
    #: ``Bearer`` on current Keycloak, ``bearer`` before KEYCLOAK-15399.
    token_type: str = "Bearer"
    #: False imitates KC 4.0-4.4, which lost ``expires_in``; clients must read the JWT ``exp``.
    include_expires_in: bool = True
    #: Legacy client_credentials also returns ``refresh_token`` and ``session_state``.
    refresh_tokens: bool = False
    #: KC >= 19 URL-decodes the Basic user and password after base64 (RFC 6749 §2.3.1).
    basic_url_decode: bool = True
    wrong_secret_status: int = 401
    wrong_secret_error: str = "unauthorized_client"
    wrong_secret_description: str = _CURRENT_CLIENT_FAILURE
    missing_secret_status: int = 401
    missing_secret_error: str = "unauthorized_client"
    missing_secret_description: str = _CURRENT_CLIENT_FAILURE
    unknown_client_status: int = 401
    unknown_client_error: str = "invalid_client"
    unknown_client_description: str = _CURRENT_CLIENT_FAILURE
    #: Live Keycloak answers 400 although the grant class sets 401 (protocol notes §2.6).
    service_account_disabled_status: int = 400
    #: Default client scopes granted besides ``corp``; current Keycloak adds profile and email.
    scope_extra: tuple[str, ...] = ("profile", "email")
    #: KC >= 23 adds ``iss`` to authorization responses (RFC 9207).
    issue_iss: bool = True
    #: Real Keycloak refuses ``response_mode=query`` with ``response_type=token``; True
    #: returns the implicit result in the query string, as the bank's new docs describe.
    implicit_query_allowed: bool = False
    #: What access tokens look like (see ``TokenFormat``).
    token_format: TokenFormat = "keycloak"


_MODERN = Flavour(name="modern")
_LEGACY = Flavour(
    name="legacy",
    token_type="bearer",
    refresh_tokens=True,
    basic_url_decode=False,
    wrong_secret_description="Invalid client secret",
    missing_secret_description="Client secret not provided in request",
    unknown_client_status=400,
    unknown_client_error="unauthorized_client",
    unknown_client_description="Invalid client credentials",
    scope_extra=(),
    issue_iss=False,
)

FLAVOURS: Mapping[str, Flavour] = MappingProxyType(
    {
        "modern": _MODERN,
        "legacy": _LEGACY,
        #: What the bank's new documentation describes: a legacy server that returns the
        #: implicit token in the query string when ``response_mode=query`` is requested.
        "bank-docs": replace(_LEGACY, name="bank-docs", implicit_query_allowed=True),
        "no-expires-in": replace(_MODERN, name="no-expires-in", include_expires_in=False),
        #: The JWT access-token profile of RFC 9068, as non-Keycloak servers issue it.
        "rfc9068": replace(_MODERN, name="rfc9068", token_format="rfc9068"),
        #: Opaque access tokens (django-oauth-toolkit, some Keycloak set-ups): only the
        #: introspection endpoint can say whether one is valid.
        "opaque": replace(_MODERN, name="opaque", token_format="opaque"),
        "invalid-client-400": replace(
            _MODERN,
            name="invalid-client-400",
            wrong_secret_status=400,
            wrong_secret_error="invalid_client",
        ),
    }
)
