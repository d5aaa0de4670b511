"""The browser sign-in protocol as plain functions: URLs, callback parsing, redirects.

No I/O and no framework here: the router feeds these functions request values and acts
on what they return. See RFC 6749 §4.1-4.2, RFC 7636 (PKCE), RFC 9207 (``iss``) and
RFC 9700 §4.1-4.3 (open redirects, history and Referer leaks) for the rules applied.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlencode, urlsplit

from ._errors import AuthorizationDenied, CallbackInvalid, IssuerMismatch, ResponseModeMismatch

__all__ = [
    "AuthorizationResult",
    "ResponseMode",
    "ResponseType",
    "authorize_url",
    "check_issuer",
    "check_response_mode",
    "end_session_url",
    "expected_response_mode",
    "fingerprint",
    "new_nonce",
    "new_state",
    "parse_callback",
    "pkce_challenge",
    "pkce_pair",
    "safe_redirect_target",
]

ResponseType = Literal["token", "code"]
ResponseMode = Literal["fragment", "form_post", "query"]

#: The only callback parameters read; anything else a server adds is ignored.
CALLBACK_FIELDS = (
    "state",
    "session_state",
    "iss",
    "access_token",
    "token_type",
    "expires_in",
    "code",
    "error",
    "error_description",
    "error_uri",
)
_MAX_FIELD_LENGTH = 16_384


def new_state() -> str:
    """A fresh ``state`` value: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def new_nonce() -> str:
    """A fresh OpenID Connect ``nonce``: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def pkce_pair() -> tuple[str, str]:
    """A PKCE ``(code_verifier, code_challenge)`` pair for the S256 method (RFC 7636)."""
    verifier = secrets.token_urlsafe(48)
    return verifier, pkce_challenge(verifier)


def pkce_challenge(verifier: str) -> str:
    """The S256 ``code_challenge`` of ``verifier``: BASE64URL(SHA256(ASCII(verifier)))."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def fingerprint(value: str) -> str:
    """A one-way digest used to key server-side records without storing the raw value."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def authorize_url(
    *,
    endpoint: str,
    client_id: str,
    response_type: ResponseType,
    scope: str,
    redirect_uri: str,
    state: str,
    locale: str | None = None,
    response_mode: ResponseMode | None = None,
    code_challenge: str | None = None,
    nonce: str | None = None,
    prompt: str | None = None,
) -> str:
    """Build the authorization request URL (RFC 6749 §4.1.1/§4.2.1 plus Keycloak's ``kc_locale``).

    ``locale`` is sent as ``kc_locale`` unless it is English, which is Keycloak's default
    and what the bank documents as "without passing this parameter". ``response_mode`` is
    omitted when None, leaving Keycloak's default (fragment for ``token``, query for
    ``code``).
    """
    params: list[tuple[str, str]] = [
        ("client_id", client_id),
        ("response_type", response_type),
        ("scope", scope),
        ("redirect_uri", redirect_uri),
        ("state", state),
    ]
    if locale and locale != "en":
        params.append(("kc_locale", locale))
    if response_mode is not None:
        params.append(("response_mode", response_mode))
    if code_challenge is not None:
        params += [("code_challenge", code_challenge), ("code_challenge_method", "S256")]
    if nonce is not None:
        params.append(("nonce", nonce))
    if prompt is not None:
        params.append(("prompt", prompt))
    separator = "&" if urlsplit(endpoint).query else "?"
    return endpoint + separator + urlencode(params)


def end_session_url(
    *,
    endpoint: str,
    client_id: str,
    post_logout_redirect_uri: str | None,
    locale: str | None,
    id_token_hint: str | None = None,
) -> str:
    """Keycloak's RP-initiated logout URL (KC 18+).

    ``id_token_hint`` (when the sign-in got an ID token) lets Keycloak sign out without
    asking; ``client_id`` is always sent, and stands in for the hint an implicit
    ``scope=corp`` sign-in never gets.
    """
    params: list[tuple[str, str]] = []
    if id_token_hint:
        params.append(("id_token_hint", id_token_hint))
    params.append(("client_id", client_id))
    if post_logout_redirect_uri:
        params.append(("post_logout_redirect_uri", post_logout_redirect_uri))
    if locale and locale != "en":
        params.append(("ui_locales", locale))
    separator = "&" if urlsplit(endpoint).query else "?"
    return endpoint + separator + urlencode(params)


@dataclass(frozen=True, repr=False)
class AuthorizationResult:
    """The callback's parameters, whichever way they arrived (fragment, form_post, query)."""

    state: str | None
    access_token: str | None = None
    token_type: str | None = None
    expires_in: str | None = None
    code: str | None = None
    session_state: str | None = None
    iss: str | None = None
    error: str | None = None
    error_description: str | None = None

    def __repr__(self) -> str:
        kind = "error" if self.error else "token" if self.access_token else "code"
        return f"AuthorizationResult(kind={kind!r}, has_state={self.state is not None})"


def parse_callback(params: Mapping[str, str]) -> AuthorizationResult:
    """Read the authorization response; unknown fields are ignored.

    Raises:
        CallbackInvalid: a field is oversized or carries control characters, or the
            response holds neither a token, a code nor an error.
    """
    values: dict[str, str | None] = {}
    for name in CALLBACK_FIELDS:
        value = params.get(name)
        if value is None or value == "":
            values[name] = None
            continue
        if len(value) > _MAX_FIELD_LENGTH or _CONTROL.search(value):
            raise CallbackInvalid(f"the callback's {name} parameter is malformed")
        values[name] = value
    result = AuthorizationResult(
        state=values["state"],
        access_token=values["access_token"],
        token_type=values["token_type"],
        expires_in=values["expires_in"],
        code=values["code"],
        session_state=values["session_state"],
        iss=values["iss"],
        error=values["error"],
        error_description=values["error_description"],
    )
    if not (result.error or result.access_token or result.code):
        raise CallbackInvalid("the callback carries neither a token, a code nor an error")
    return result


def check_issuer(result: AuthorizationResult, issuer: str, *, required: bool = False) -> None:
    """RFC 9207: when the server names itself, it must be the configured issuer.

    ``required`` is the server's ``authorization_response_iss_parameter_supported``: a
    server that promises ``iss`` and sends none is refused (an attacker leaving it out
    is exactly what the parameter defends against). Keycloak before 23 promises nothing
    and sends no ``iss``, which is accepted.

    Raises:
        IssuerMismatch: ``iss`` names another server or realm, or is missing though
            ``required``.
    """
    if result.iss is None:
        if required:
            raise IssuerMismatch("the callback carries no iss", missing=True)
        return
    if not hmac.compare_digest(result.iss.rstrip("/").encode(), issuer.rstrip("/").encode()):
        raise IssuerMismatch("the callback's iss does not match the configured issuer")


def expected_response_mode(
    response_type: ResponseType, response_mode: ResponseMode | None
) -> ResponseMode:
    """Where the answer must arrive: the requested mode, else the default of the flow
    (fragment for ``token``, query for ``code``, as Keycloak's ``OIDCResponseMode``)."""
    if response_mode is not None:
        return response_mode
    return "fragment" if response_type == "token" else "query"


def check_response_mode(
    result: AuthorizationResult, *, arrived_in: ResponseMode, expected: ResponseMode
) -> None:
    """A token or code counts only in the response mode the sign-in asked for.

    A token in the query string, when the fragment was asked for, has been through
    every access log and Referer on the way: it is refused even if genuine. Errors are
    accepted in any mode (Keycloak sends some in the query whatever was asked).

    Raises:
        ResponseModeMismatch: a token or code arrived in another mode.
    """
    if (result.access_token or result.code) and arrived_in != expected:
        raise ResponseModeMismatch(
            f"the bank's answer arrived in the {arrived_in} response mode, not {expected}"
        )


def raise_for_error(result: AuthorizationResult) -> None:
    """Turn an ``error`` callback into ``AuthorizationDenied`` (call after the state check)."""
    if result.error:
        raise AuthorizationDenied(
            "the authorization server refused the sign-in",
            error=_printable(result.error, 64),
            error_description=_printable(result.error_description, 300),
        )


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ERROR_CODE = re.compile(r"^[\x20-\x21\x23-\x5b\x5d-\x7e]+$")


def _printable(value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    value = _CONTROL.sub(" ", value)[:limit]
    return value if _ERROR_CODE.match(value) else None


def safe_redirect_target(target: str | None, *, default: str) -> str:
    """Return ``target`` if it is a same-site relative path, else ``default``.

    Accepted: ``/path``, ``/path?query``, ``/path#frag``. Refused: absolute URLs and
    schemes, protocol-relative ``//host``, ``/\\host`` (browsers read a backslash as a
    slash), encoded variants of those (``/%2F``, ``/%5C``), dot segments, Unicode
    look-alikes of ``/`` and ``\\``, user-info, control characters and whitespace, and
    anything not starting with a single ``/``.
    """
    if not target or len(target) > 2048 or not target.startswith("/"):
        return default
    if any(c.isspace() for c in target):
        return default
    decoded = target
    for _ in range(3):  # repeated decoding catches %252F and friends
        decoded = unquote(decoded)
    if _CONTROL.search(decoded):  # raw or percent-encoded
        return default
    # Dot segments: "/..//host" becomes "//host" wherever the path is normalised again.
    path = decoded.partition("?")[0].partition("#")[0]
    if any(segment in (".", "..") for segment in path.split("/")):
        return default
    # "//host", and a backslash anywhere ("/\\host": browsers read it as a slash), also
    # spelled with compatibility forms (fullwidth solidus...) that NFKC folds back. A
    # path that starts with one "/" has neither a scheme nor a host, so nothing else
    # can take the browser to another site.
    folded = unicodedata.normalize("NFKC", decoded)
    if folded.startswith("//") or "\\" in folded:
        return default
    return target
