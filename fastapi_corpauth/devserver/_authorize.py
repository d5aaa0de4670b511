"""Keycloak's authorization-endpoint rules: redirect URIs, locales, response modes, PKCE.

The functions here decide and shape; the routes in ``_login`` only wire them to HTTP.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import get_args
from urllib.parse import urlencode, urlsplit

from fastapi.responses import RedirectResponse, Response

from ._jwt import b64url_encode
from ._pages import form_post_page, security_headers
from ._sessions import Locale, ResponseMode, ResponseType
from ._state import DevClient

__all__ = [
    "LOCAL_HOSTS",
    "RESPONSE_MODES",
    "RESPONSE_TYPES",
    "append_query",
    "authorization_response",
    "default_response_mode",
    "is_local_url",
    "pkce_challenge",
    "pkce_matches",
    "redirect_uri_allowed",
    "resolve_locale",
    "valid_pkce_value",
]

RESPONSE_TYPES: tuple[ResponseType, ...] = get_args(ResponseType)
RESPONSE_MODES: tuple[ResponseMode, ...] = get_args(ResponseMode)
#: Hosts whose redirect URIs a client without registered ones may use, on any port.
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_SUPPORTED_LOCALES: tuple[Locale, ...] = get_args(Locale)
#: RFC 7636 §4.1: 43-128 unreserved characters, for both verifier and S256 challenge.
_PKCE_VALUE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")


def _locale_of(tag: str) -> Locale | None:
    language = re.split(r"[-_]", tag.strip().lower(), maxsplit=1)[0]
    for locale in _SUPPORTED_LOCALES:
        if locale == language:
            return locale
    return None


def resolve_locale(kc_locale: str | None, ui_locales: str | None) -> Locale:
    """Keycloak's order: ``kc_locale``, then the first supported of ``ui_locales``, else en.

    A language-only match is accepted, so ``ka-GE`` selects Georgian.
    """
    if kc_locale:
        chosen = _locale_of(kc_locale)
        if chosen is not None:
            return chosen
    for tag in (ui_locales or "").split():
        chosen = _locale_of(tag)
        if chosen is not None:
            return chosen
    return "en"


def is_local_url(url: str) -> bool:
    """An absolute http(s) URL on a loopback host, any port, without fragment or userinfo."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and parts.hostname in LOCAL_HOSTS
        and "@" not in parts.netloc
        and "#" not in url
        and url.isprintable()
        and not any(character.isspace() for character in url)
    )


def redirect_uri_allowed(client: DevClient, url: str) -> bool:
    """Exact match against the client's redirect URIs; any local URL if it has none."""
    if client.redirect_uris:
        return url in client.redirect_uris
    return is_local_url(url)


def default_response_mode(response_type: ResponseType) -> ResponseMode:
    """``OIDCResponseMode.parse``: fragment for implicit, query for the code flow."""
    return "fragment" if response_type == "token" else "query"


def append_query(url: str, params: Sequence[tuple[str, str]]) -> str:
    """``url`` with ``params`` added to its query string (keeping any it already has)."""
    if not params:
        return url
    if "?" not in url:
        separator = "?"
    elif url.endswith(("?", "&")):
        separator = ""
    else:
        separator = "&"
    return f"{url}{separator}{urlencode(params)}"


def authorization_response(
    *,
    redirect_uri: str,
    response_mode: ResponseMode,
    params: Sequence[tuple[str, str]],
    locale: Locale,
) -> Response:
    """Send ``params`` (in order) to ``redirect_uri`` in ``response_mode``, as Keycloak does."""
    if response_mode == "form_post":
        return form_post_page(locale=locale, redirect_uri=redirect_uri, params=params)
    if response_mode == "query":
        location = append_query(redirect_uri, params)
    else:
        location = f"{redirect_uri}#{urlencode(params)}"
    return RedirectResponse(location, status_code=302, headers=security_headers())


def valid_pkce_value(value: str) -> bool:
    """Whether a code verifier or S256 challenge has RFC 7636's length and alphabet."""
    return _PKCE_VALUE.fullmatch(value) is not None


def pkce_challenge(verifier: str) -> str:
    """The S256 challenge of ``verifier``: base64url(SHA-256(verifier)) without padding."""
    return b64url_encode(hashlib.sha256(verifier.encode("ascii")).digest())


def pkce_matches(verifier: str, challenge: str) -> bool:
    """Constant-time comparison of ``verifier``'s S256 challenge with the stored one."""
    if not valid_pkce_value(verifier):
        return False
    return hmac.compare_digest(pkce_challenge(verifier), challenge)
