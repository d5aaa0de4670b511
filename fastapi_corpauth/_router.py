"""The browser sign-in router: ``/login``, ``/callback`` and ``/logout``.

Thin glue around ``_login_protocol`` (pure) and ``SessionManager`` (storage). Every
response carries ``Cache-Control: no-store`` and ``Referrer-Policy: no-referrer``, and no
token is ever put in a URL or a ``Location`` header.
"""

from __future__ import annotations

import base64
import hashlib
import html
import ipaddress
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import URL
from starlette.routing import NoMatchFound

from ._errors import (
    AuthorizationDenied,
    CallbackInvalid,
    CorpAuthError,
    CredentialsRejected,
    LoginError,
    MalformedTokenResponse,
    StateError,
    TokenEndpointUnavailable,
    TokenError,
)
from ._fastapi import error_response
from ._login_protocol import (
    CALLBACK_FIELDS,
    AuthorizationResult,
    authorize_url,
    check_issuer,
    end_session_url,
    parse_callback,
    pkce_pair,
    raise_for_error,
    safe_redirect_target,
)
from ._protocol import authorization_code_request, parse_token_response, token_from_fields
from ._sessions import PendingLogin
from ._signing import new_session_id
from ._store import StoreUnavailable
from ._token import Token

if TYPE_CHECKING:
    from ._corpauth import CorpAuth

__all__ = ["build_router"]

logger = logging.getLogger("fastapi_corpauth.login")

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
LOCALES = ("en", "ka")
_MAX_FORM_BYTES = 64 * 1024
_RELAY_MARKER = "corpauth_relay"

# The fragment relay: read location.hash, wipe it from the address bar and history, and
# POST it same-origin (so the SameSite=Lax session cookie comes along).
_FRAGMENT_SCRIPT = (
    "(function(){var h=window.location.hash.substring(1);"
    'history.replaceState(null,"",window.location.pathname);'
    'var f=document.getElementById("relay");'
    "new URLSearchParams(h).forEach(function(v,k){"
    'var i=document.createElement("input");i.type="hidden";i.name=k;i.value=v;'
    "f.appendChild(i);});f.submit();})();"
)
# Re-submits a cross-site form_post same-origin, so the browser sends the Lax cookie.
_RESUBMIT_SCRIPT = 'document.getElementById("relay").submit();'


def _script_hash(script: str) -> str:
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def _csp(script: str | None = None) -> str:
    script_src = _script_hash(script) if script else "'none'"
    return (
        f"default-src 'none'; script-src {script_src}; style-src 'unsafe-inline'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )


#: Redirects carry the strict policy too: nothing on them may load or run.
_REDIRECT_HEADERS = {**SECURITY_HEADERS, "Content-Security-Policy": _csp()}


def build_router(corpauth: CorpAuth) -> APIRouter:
    """Build the sign-in routes for ``corpauth``; mount under any prefix."""
    router = APIRouter(tags=["sign-in"])
    handlers = _LoginHandlers(corpauth)
    cookie = _parameter(
        corpauth.settings.session_cookie, "cookie", "The signed session cookie these routes set."
    )
    next_param = _parameter("next", "query", "Same-site path to land on afterwards.")
    router.add_api_route(
        "/login",
        handlers.login,
        methods=["GET"],
        name="corpauth:login",
        openapi_extra=_openapi(
            [next_param, _parameter("lang", "query", "Sign-in page language: en or ka."), cookie],
            {"303": "To the bank's sign-in page."},
        ),
    )
    callback_query = [
        _parameter(name, "query", "Part of the bank's answer (query response mode).")
        for name in CALLBACK_FIELDS
    ]
    router.add_api_route(
        "/callback",
        handlers.callback_get,
        methods=["GET"],
        name="corpauth:callback",
        response_class=HTMLResponse,
        openapi_extra=_openapi([*callback_query, cookie], _CALLBACK_RESPONSES),
    )
    form = {
        "type": "object",
        "properties": {name: {"type": "string"} for name in (*CALLBACK_FIELDS, _RELAY_MARKER)},
    }
    router.add_api_route(
        "/callback",
        handlers.callback_post,
        methods=["POST"],
        name="corpauth:callback_post",
        response_class=HTMLResponse,
        openapi_extra={
            **_openapi([cookie], _CALLBACK_RESPONSES),
            "requestBody": {
                "content": {"application/x-www-form-urlencoded": {"schema": form}},
                "required": True,
            },
        },
    )
    # One route per method: a shared route gives both the same OpenAPI operation id.
    logout_doc = _openapi([next_param, cookie], {"303": "Signed out; to the landing page."})
    for method, name in (("GET", "corpauth:logout"), ("POST", "corpauth:logout_post")):
        router.add_api_route(
            "/logout", handlers.logout, methods=[method], name=name, openapi_extra=logout_doc
        )
    return router


_CALLBACK_RESPONSES = {
    "200": "A first-party page that relays the answer same-origin.",
    "303": "Signed in; to the page named by next.",
    "400": "Refused; X-CorpAuth-Error names the reason (state_*, callback_invalid, ...).",
    "403": "Sign-in cancelled at the bank (authorization_denied).",
    "503": "Token endpoint or session store unavailable.",
}


def _parameter(name: str, where: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": False,
        "description": description,
        "schema": {"type": "string"},
    }


def _openapi(parameters: list[dict[str, Any]], responses: Mapping[str, str]) -> dict[str, Any]:
    """The operation's documentation: the handlers read the raw request themselves."""
    return {
        "parameters": parameters,
        "responses": {code: {"description": text} for code, text in responses.items()},
    }


class _LoginHandlers:
    def __init__(self, corpauth: CorpAuth) -> None:
        self._corpauth = corpauth
        self._settings = corpauth.settings

    async def login(self, request: Request) -> Response:
        """Send the browser to the bank's sign-in page."""
        settings = self._settings
        lang = request.query_params.get("lang")
        locale = lang if lang in LOCALES else settings.locale
        next_url = safe_redirect_target(
            request.query_params.get("next"), default=settings.post_login_url
        )
        browser_id = self._corpauth.browser_id(request)
        new_browser = browser_id is None
        if browser_id is None:
            browser_id = new_session_id()
        redirect_uri = settings.redirect_uri or str(request.url_for("corpauth:callback"))
        verifier, challenge = pkce_pair() if settings.response_type == "code" else (None, None)
        try:
            state = await self._corpauth.sessions.begin_login(
                browser_id=browser_id,
                next_url=next_url,
                redirect_uri=redirect_uri,
                response_type=settings.response_type,
                code_verifier=verifier,
                locale=locale,
            )
        except StoreUnavailable as exc:
            return self._error_page(request, exc)
        url = authorize_url(
            endpoint=self._corpauth.endpoints.authorize_url,
            client_id=settings.client_id,
            response_type=settings.response_type,
            scope=settings.scope,
            redirect_uri=redirect_uri,
            state=state,
            locale=locale,
            response_mode=settings.response_mode,
            code_challenge=challenge,
        )
        response = RedirectResponse(url, status_code=303, headers=_REDIRECT_HEADERS)
        if new_browser:
            self._corpauth.set_session_cookie(request, response, browser_id)
        return response

    async def callback_get(self, request: Request) -> Response:
        """The redirect target: query results are handled, fragments are relayed."""
        params = request.query_params
        if any(params.get(name) for name in ("access_token", "code", "error")):
            # Keycloak refuses query mode for tokens; a server that sends them anyway
            # (as the bank's newer docs describe) is served, then sent to a clean URL.
            return await self._complete(request, dict(params.items()))
        action = html.escape(request_path(request), quote=True)
        page = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="referrer" content="no-referrer"><title>Signing in…</title></head>'
            "<body><noscript>JavaScript is needed to finish signing in.</noscript>"
            f'<form id="relay" method="post" action="{action}">'
            f'<input type="hidden" name="{_RELAY_MARKER}" value="fragment"></form>'
            f"<script>{_FRAGMENT_SCRIPT}</script></body></html>"
        )
        return self._html(page, csp=_csp(_FRAGMENT_SCRIPT))

    async def callback_post(self, request: Request) -> Response:
        """``response_mode=form_post`` results and the fragment relay's POST."""
        try:
            params = await _read_form(request)
        except CallbackInvalid as exc:
            return self._error_page(request, exc)
        if self._corpauth.browser_id(request) is None and _RELAY_MARKER not in params:
            # A cross-site form_post carries no SameSite=Lax cookie: re-post same-origin.
            return self._resubmit_page(request, params)
        return await self._complete(request, params)

    async def logout(self, request: Request) -> Response:
        """End the session here and, if configured, at the bank's Keycloak."""
        settings = self._settings
        browser_id = self._corpauth.browser_id(request)
        await self._corpauth.sessions.end_session(browser_id)
        target = safe_redirect_target(
            request.query_params.get("next"), default=settings.post_logout_url
        )
        if settings.logout_at_provider:
            base = str(request.base_url).rstrip("/")
            target = end_session_url(
                endpoint=self._corpauth.endpoints.logout_url,
                client_id=settings.client_id,
                post_logout_redirect_uri=base + target,
                locale=settings.locale,
            )
        response = RedirectResponse(target, status_code=303, headers=_REDIRECT_HEADERS)
        self._corpauth.clear_session_cookie(request, response)
        return response

    async def _complete(self, request: Request, params: Mapping[str, str]) -> Response:
        corpauth = self._corpauth
        browser_id = corpauth.browser_id(request)
        try:
            result = parse_callback(params)
            pending = await corpauth.sessions.consume_state(
                state=result.state, browser_id=browser_id
            )
            check_issuer(result, corpauth.endpoints.issuer)
            raise_for_error(result)
            token = await self._token_from(result, pending)
            session_id = await corpauth.sessions.create_session(token=token, replaces=browser_id)
        except CorpAuthError as exc:
            logger.info("sign-in refused: %s", exc.code)
            return self._error_page(request, exc)
        logger.info("customer signed in")
        response = RedirectResponse(pending.next_url, status_code=303, headers=_REDIRECT_HEADERS)
        corpauth.set_session_cookie(request, response, session_id)
        return response

    async def _token_from(self, result: AuthorizationResult, pending: PendingLogin) -> Token:
        token = await self._received_token(result, pending)
        if token.is_expired(self._corpauth.clock()):
            raise CallbackInvalid("the bank's answer carries an expired token")
        return token

    async def _received_token(self, result: AuthorizationResult, pending: PendingLogin) -> Token:
        now = self._corpauth.clock()
        if pending.response_type == "code":
            if not result.code or result.access_token:
                raise CallbackInvalid("expected an authorization code from the bank")
            return await self._exchange_code(result.code, pending)
        if not result.access_token or result.code:
            raise CallbackInvalid("expected an access token from the bank")
        fields = {
            "access_token": result.access_token,
            "token_type": result.token_type or "",
            "expires_in": result.expires_in,
            "session_state": result.session_state,
        }
        try:
            token = token_from_fields(
                fields, now=now, default_lifetime=self._settings.token_default_lifetime
            )
        except MalformedTokenResponse as exc:
            raise CallbackInvalid("the bank's callback does not carry a Bearer token") from exc
        return token

    async def _exchange_code(self, code: str, pending: PendingLogin) -> Token:
        corpauth = self._corpauth
        request = authorization_code_request(
            token_url=corpauth.endpoints.token_url,
            credentials=self._settings.credentials(),
            code=code,
            redirect_uri=pending.redirect_uri,
            code_verifier=pending.code_verifier,
        )
        try:
            response = await corpauth.auth_http.send(request)
        except httpx.TimeoutException as exc:
            raise TokenEndpointUnavailable("token endpoint timed out") from exc
        except httpx.HTTPError as exc:
            raise TokenEndpointUnavailable("token endpoint unreachable") from exc
        try:
            return parse_token_response(
                status_code=response.status_code,
                headers=response.headers,
                body=response.content,
                now=corpauth.clock(),
                default_lifetime=self._settings.token_default_lifetime,
            )
        except CredentialsRejected as exc:
            if exc.error == "invalid_grant":
                raise CallbackInvalid("the bank did not accept the authorization code") from exc
            raise

    def _html(self, page: str, *, status_code: int = 200, csp: str | None = None) -> HTMLResponse:
        headers = dict(SECURITY_HEADERS)
        headers["Content-Security-Policy"] = csp or _csp()
        return HTMLResponse(page, status_code=status_code, headers=headers)

    def _resubmit_page(self, request: Request, params: Mapping[str, str]) -> HTMLResponse:
        action = html.escape(request_path(request), quote=True)
        inputs = "".join(
            f'<input type="hidden" name="{name}" value="{html.escape(params[name], quote=True)}">'
            for name in CALLBACK_FIELDS
            if name in params
        )
        page = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="referrer" content="no-referrer"><title>Signing in…</title></head>'
            f'<body><form id="relay" method="post" action="{action}">{inputs}'
            f'<input type="hidden" name="{_RELAY_MARKER}" value="form_post">'
            "<noscript><button>Continue</button></noscript></form>"
            f"<script>{_RESUBMIT_SCRIPT}</script></body></html>"
        )
        return self._html(page, csp=_csp(_RESUBMIT_SCRIPT))

    def _error_page(
        self, request: Request, exc: CorpAuthError, *, status_code: int | None = None
    ) -> HTMLResponse:
        status, message = _describe(exc)
        if status_code is not None:
            status = status_code
        login = html.escape(str(request.url_for("corpauth:login")), quote=True)
        page = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="referrer" content="no-referrer"><title>Sign-in failed</title></head>'
            f'<body><h1>Sign-in failed</h1><p id="message">{html.escape(message)}</p>'
            f'<p>Error code: <code id="code">{html.escape(exc.code)}</code></p>'
            f'<p><a href="{login}">Sign in again</a></p></body></html>'
        )
        response = self._html(page, status_code=status)
        response.headers["X-CorpAuth-Error"] = exc.code
        return response


_STATE_MESSAGES = {
    "missing": "The bank's answer did not say which sign-in it belongs to.",
    "unknown": "This sign-in was not started here. Please start again.",
    "reused": "This sign-in link was already used. Please start again.",
    "expired": "The sign-in took too long. Please start again.",
    "mismatch": "This sign-in was started in another browser. Please start again here.",
}


def _describe(exc: CorpAuthError) -> tuple[int, str]:
    if isinstance(exc, StateError):
        return 400, _STATE_MESSAGES[exc.problem]
    if isinstance(exc, AuthorizationDenied):
        if exc.error == "access_denied":
            return 403, "Sign-in was cancelled at the bank."
        return 400, "The bank could not sign you in."
    if isinstance(exc, LoginError):
        return 400, "The bank's answer could not be used to sign you in."
    if isinstance(exc, StoreUnavailable):
        return 503, "Signing in is temporarily unavailable. Please try again shortly."
    if isinstance(exc, TokenError):
        response = error_response(exc)
        return response.status_code, response.message
    return 400, "Signing in failed."


async def _read_form(request: Request) -> dict[str, str]:
    """Parse an urlencoded body by hand: bounded, strict UTF-8, first value wins."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise CallbackInvalid("the callback must be an urlencoded form")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM_BYTES:
            raise CallbackInvalid("the callback form is too large")
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False, errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise CallbackInvalid("the callback form is not valid UTF-8") from exc
    form: dict[str, str] = {}
    for name, value in pairs:
        form.setdefault(name, value)
    return form


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` is this machine: the only place a cookie may skip Secure."""
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def request_path(request: Request) -> str:
    """The request's path, as ``request.url.path`` gives it.

    ``request.url`` decodes the raw query string as UTF-8 and raises for any other
    bytes, which a hostile client can send; the path alone never needs the query.
    """
    return URL(scope={**request.scope, "query_string": b""}).path


def login_url(request: Request, next_path: str) -> str | None:
    """``/login?next=...`` for this app, or None when the router is not mounted."""
    try:
        base = str(request.url_for("corpauth:login"))
    except NoMatchFound:
        return None
    return base + "?" + urlencode({"next": next_path})
