"""The browser sign-in router: ``/login``, ``/callback`` and ``/logout``.

Thin glue around ``SignIn`` (the service that decides) and ``SessionCookies``. Every
response carries ``Cache-Control: no-store`` and ``Referrer-Policy: no-referrer``, and no
token is ever put in a URL or a ``Location`` header.
"""

from __future__ import annotations

import base64
import hashlib
import html
import logging
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ._config import SignInOptions
from ._cookies import SessionCookies
from ._errors import (
    AuthorizationDenied,
    CallbackInvalid,
    ConfigurationError,
    CorpAuthError,
    CredentialsRejected,
    InvalidToken,
    LoginError,
    ResponseModeMismatch,
    StateError,
    TokenError,
    VerificationUnavailable,
)
from ._fastapi import error_response
from ._login_protocol import CALLBACK_FIELDS, ResponseMode, safe_redirect_target
from ._sessions import SessionManager
from ._signin import SignIn
from ._signing import new_session_id
from ._store import StoreUnavailable
from ._web import read_form, request_path

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


def build_router(
    *,
    sign_in: Callable[[], SignIn],
    sessions: SessionManager,
    cookies: SessionCookies,
    options: SignInOptions,
) -> APIRouter:
    """Build the sign-in routes; mount under any prefix.

    ``sign_in`` gives the running sign-in service (it lives in the app's lifespan).
    """
    router = APIRouter(tags=["sign-in"])
    handlers = _LoginHandlers(sign_in=sign_in, sessions=sessions, cookies=cookies, options=options)
    cookie = _parameter(
        cookies.options.name, "cookie", "The signed session cookie these routes set."
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
    "503": "The bank's keys, token endpoint or the session store are unavailable.",
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
    def __init__(
        self,
        *,
        sign_in: Callable[[], SignIn],
        sessions: SessionManager,
        cookies: SessionCookies,
        options: SignInOptions,
    ) -> None:
        self._sign_in = sign_in
        self._sessions = sessions
        self._cookies = cookies
        self._options = options

    async def login(self, request: Request) -> Response:
        """Send the browser to the bank's sign-in page."""
        options = self._options
        lang = request.query_params.get("lang")
        locale = lang if lang in LOCALES else options.locale
        next_url = safe_redirect_target(
            request.query_params.get("next"), default=options.post_login_url
        )
        browser_id = self._cookies.session_id(request)
        new_browser = browser_id is None
        if browser_id is None:
            browser_id = new_session_id()
        redirect_uri = options.redirect_uri or str(request.url_for("corpauth:callback"))
        try:
            url = await self._sign_in().start(
                browser_id=browser_id, next_url=next_url, locale=locale, redirect_uri=redirect_uri
            )
        except CorpAuthError as exc:
            return self._error_page(request, exc)
        response = RedirectResponse(url, status_code=303, headers=_REDIRECT_HEADERS)
        if new_browser:
            self._cookies.set(request, response, browser_id)
        return response

    async def callback_get(self, request: Request) -> Response:
        """The redirect target: query results are handled, fragments are relayed."""
        params = request.query_params
        if any(params.get(name) for name in ("access_token", "code", "error")):
            # Keycloak refuses query mode for tokens; a server that sends them anyway
            # (as the bank's newer docs describe) is served if query mode was asked
            # for, then sent to a clean URL.
            return await self._complete(request, dict(params.items()), arrived_in="query")
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
            params = await read_form(request)
        except CallbackInvalid as exc:
            return self._error_page(request, exc)
        relayed = params.get(_RELAY_MARKER)
        if self._cookies.session_id(request) is None and relayed is None:
            # A cross-site form_post carries no SameSite=Lax cookie: re-post same-origin.
            return self._resubmit_page(request, params)
        arrived_in: ResponseMode = "fragment" if relayed == "fragment" else "form_post"
        return await self._complete(request, params, arrived_in=arrived_in)

    async def logout(self, request: Request) -> Response:
        """End the session here and, if configured, at the bank's Keycloak."""
        options = self._options
        await self._sessions.end_session(self._cookies.session_id(request))
        target = safe_redirect_target(
            request.query_params.get("next"), default=options.post_logout_url
        )
        if options.logout_at_provider:
            base = str(request.base_url).rstrip("/")
            try:
                at_provider = await self._sign_in().end_session_url(
                    return_to=base + target, locale=options.locale
                )
            except CorpAuthError:
                at_provider = None
            if at_provider is None:
                logger.info("signed out here only: the bank has no end-session endpoint")
            else:
                target = at_provider
        response = RedirectResponse(target, status_code=303, headers=_REDIRECT_HEADERS)
        self._cookies.clear(request, response)
        return response

    async def _complete(
        self, request: Request, params: Mapping[str, str], *, arrived_in: ResponseMode
    ) -> Response:
        try:
            completed = await self._sign_in().complete(
                params=params,
                arrived_in=arrived_in,
                browser_id=self._cookies.session_id(request),
            )
        except CorpAuthError as exc:
            logger.info("sign-in refused: %s%s", exc.code, _detail(exc))
            return self._error_page(request, exc)
        logger.info("customer signed in")
        response = RedirectResponse(completed.next_url, status_code=303, headers=_REDIRECT_HEADERS)
        self._cookies.set(request, response, completed.session_id)
        return response

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

    def _error_page(self, request: Request, exc: CorpAuthError) -> HTMLResponse:
        status, message = _describe(exc)
        provider = _provider_error(exc)
        provider_line = (
            f'<p>The bank answered: <code id="provider-error">{html.escape(provider)}</code></p>'
            if provider
            else ""
        )
        login = html.escape(str(request.url_for("corpauth:login")), quote=True)
        page = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="referrer" content="no-referrer"><title>Sign-in failed</title></head>'
            f'<body><h1>Sign-in failed</h1><p id="message">{html.escape(message)}</p>'
            f"{provider_line}"
            f'<p>Error code: <code id="code">{html.escape(exc.code)}</code></p>'
            f'<p><a href="{login}">Sign in again</a></p></body></html>'
        )
        response = self._html(page, status_code=status)
        response.headers["X-CorpAuth-Error"] = exc.code
        return response


def _provider_error(exc: CorpAuthError) -> str | None:
    """The OAuth error code the bank sent, already sanitised to printable ASCII."""
    if isinstance(exc, AuthorizationDenied | CredentialsRejected):
        return exc.error
    cause = exc.__cause__
    if isinstance(cause, CredentialsRejected):
        return _printable_code(cause.error)
    return None


def _printable_code(value: str | None) -> str | None:
    if value is None or not value.isascii() or not value.isprintable() or len(value) > 64:
        return None
    return value


def _detail(exc: CorpAuthError) -> str:
    """Safe context for the log line: the check that failed or the bank's error code."""
    if isinstance(exc, InvalidToken):
        return f" ({exc.reason})"
    provider = _provider_error(exc)
    return f" ({provider})" if provider else ""


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
    if isinstance(exc, ResponseModeMismatch):
        return 400, "The bank's answer arrived in an unexpected way and was not used."
    if isinstance(exc, LoginError):
        return 400, "The bank's answer could not be used to sign you in."
    if isinstance(exc, InvalidToken):
        return 400, "The bank did not confirm this sign-in, so it was not used."
    if isinstance(exc, VerificationUnavailable):
        return 503, "The bank cannot confirm sign-ins right now. Please try again shortly."
    if isinstance(exc, StoreUnavailable):
        return 503, "Signing in is temporarily unavailable. Please try again shortly."
    if isinstance(exc, TokenError | ConfigurationError):
        response = error_response(exc)
        return response.status_code, response.message
    return 400, "Signing in failed."
