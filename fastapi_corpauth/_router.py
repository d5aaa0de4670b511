"""The browser sign-in router: ``/login``, ``/callback`` and ``/logout``.

Thin glue around ``SignIn`` (the service that decides), ``SessionCookies`` (the signed
session id) and ``SignInCookie`` (the sealed sign-ins in progress). Every response
carries ``Cache-Control: no-store`` and ``Referrer-Policy: no-referrer``, and no token is
ever put in a URL or a ``Location`` header.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ._config import SignInOptions
from ._cookies import SessionCookies, SignInCookie
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
from ._login_protocol import CALLBACK_FIELDS, ResponseMode, fingerprint, safe_redirect_target
from ._net import is_loopback
from ._pages import (
    RELAY_MARKER,
    cross_site_page,
    csp,
    error_page,
    login_link,
    logout_page,
    onward_page,
    relay_page,
    resubmit_page,
    signed_out_here_page,
)
from ._sessions import SessionManager
from ._signin import PendingLogin, SignIn, SilentSignInFailed
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
#: Redirects carry the strict policy too: nothing on them may load or run.
_REDIRECT_HEADERS = {**SECURITY_HEADERS, "Content-Security-Policy": csp()}
#: ``Sec-Fetch-Site`` values of a request the app's own pages made (or the user typed).
_SAME_SITE_FETCH = frozenset({"same-origin", "none"})


def build_router(
    *,
    sign_in: Callable[[], SignIn],
    sessions: SessionManager,
    cookies: SessionCookies,
    sign_in_cookie: SignInCookie,
    options: SignInOptions,
) -> APIRouter:
    """Build the sign-in routes; mount under any prefix.

    ``sign_in`` gives the running sign-in service (it lives in the app's lifespan).
    """
    router = APIRouter(tags=["sign-in"])
    handlers = _LoginHandlers(
        sign_in=sign_in,
        sessions=sessions,
        cookies=cookies,
        sign_in_cookie=sign_in_cookie,
        options=options,
    )
    cookie = _parameter(
        cookies.options.name, "cookie", "The signed session cookie these routes set."
    )
    next_param = _parameter("next", "query", "Same-site path to land on afterwards.")
    lang_param = _parameter("lang", "query", "Page language: en or ka.")
    router.add_api_route(
        "/login",
        handlers.login,
        methods=["GET"],
        name="corpauth:login",
        openapi_extra=_openapi(
            [
                next_param,
                lang_param,
                _parameter("prompt", "query", "none: renew silently through the bank."),
                cookie,
            ],
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
        "properties": {name: {"type": "string"} for name in (*CALLBACK_FIELDS, RELAY_MARKER)},
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
    router.add_api_route(
        "/logout",
        handlers.logout_page,
        methods=["GET"],
        name="corpauth:logout",
        response_class=HTMLResponse,
        openapi_extra=_openapi(
            [next_param, lang_param, cookie], {"200": "A page whose button signs out (POST)."}
        ),
    )
    router.add_api_route(
        "/logout",
        handlers.logout,
        methods=["POST"],
        name="corpauth:logout_post",
        openapi_extra=_openapi(
            [next_param, lang_param, cookie],
            {
                "303": "Signed out; to the landing page, or the bank's end-session.",
                "200": "Signed out here; the bank has no end-session endpoint.",
                "403": "A cross-site request (cross_site_request): nobody is signed out.",
            },
        ),
    )
    return router


_CALLBACK_RESPONSES = {
    "200": "A first-party page that relays the answer same-origin.",
    "303": "Signed in; to the page named by next.",
    "400": "Refused; X-CorpAuth-Error names the reason (state_*, invalid_token, ...).",
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
        sign_in_cookie: SignInCookie,
        options: SignInOptions,
    ) -> None:
        self._sign_in = sign_in
        self._sessions = sessions
        self._cookies = cookies
        self._pending = sign_in_cookie
        self._options = options

    def _locale(self, request: Request) -> str:
        lang = request.query_params.get("lang")
        return lang if lang in LOCALES else self._options.locale

    async def login(self, request: Request) -> Response:
        """Send the browser to the bank's sign-in page (or silently through it)."""
        options = self._options
        locale = self._locale(request)
        next_url = safe_redirect_target(
            request.query_params.get("next"), default=options.post_login_url
        )
        redirect_uri = options.redirect_uri
        if redirect_uri is None:
            # Development only (CorpAuth refuses the router otherwise): never a callback
            # URL built from a Host header that someone else chose.
            if not is_loopback(request.base_url.hostname):
                error = ConfigurationError(
                    "development sign-in works on this machine only",
                    variables=("CORPAUTH_REDIRECT_URI",),
                )
                return self._error_page(request, error, locale=locale, next_url=next_url)
            redirect_uri = str(request.url_for("corpauth:callback"))
        silent = request.query_params.get("prompt") == "none"
        try:
            started = await self._sign_in().start(
                next_url=next_url, locale=locale, redirect_uri=redirect_uri, silent=silent
            )
        except CorpAuthError as exc:
            return self._error_page(request, exc, locale=locale, next_url=next_url)
        response = RedirectResponse(started.url, status_code=303, headers=_REDIRECT_HEADERS)
        entries = [*self._pending.read(request), started.pending.to_record()]
        self._pending.write(request, response, entries)
        return response

    async def callback_get(self, request: Request) -> Response:
        """The redirect target: query results are handled, fragments are relayed."""
        params = request.query_params
        if any(params.get(name) for name in ("access_token", "code", "error")):
            # Keycloak refuses query mode for tokens; a server that sends them anyway
            # (as the bank's newer docs describe) is served if query mode was asked
            # for, then sent to a clean URL.
            return await self._complete(request, dict(params.items()), arrived_in="query")
        page, policy = relay_page(request_path(request))
        return self._html(page, csp_header=policy)

    async def callback_post(self, request: Request) -> Response:
        """``response_mode=form_post`` results and the fragment relay's POST."""
        try:
            params = await read_form(request)
        except CallbackInvalid as exc:
            return self._error_page(request, exc, locale=self._locale(request))
        relayed = params.get(RELAY_MARKER)
        if relayed is None and request.cookies.get(self._pending.name) is None:
            # A cross-site form_post carries no SameSite=Lax cookie: re-post same-origin.
            fields = {name: params[name] for name in CALLBACK_FIELDS if name in params}
            page, policy = resubmit_page(request_path(request), fields)
            return self._html(page, csp_header=policy)
        arrived_in: ResponseMode = "fragment" if relayed == "fragment" else "form_post"
        return await self._complete(request, params, arrived_in=arrived_in)

    async def logout_page(self, request: Request) -> Response:
        """A page with a sign-out button: a GET (a link, an image, another site's
        redirect) signs nobody out."""
        query = request.url.query if _ascii_query(request) else ""
        action = request_path(request) + ("?" + query if query else "")
        return self._html(logout_page(locale=self._locale(request), action=action))

    async def logout(self, request: Request) -> Response:
        """End the session here and, if configured, at the bank (one click: with the
        sign-in's ID token as a hint, Keycloak asks nothing)."""
        locale = self._locale(request)
        if _cross_site(request):
            logger.info("sign-out refused: a cross-site request")
            refusal = self._html(cross_site_page(locale=locale), status_code=403)
            refusal.headers["X-CorpAuth-Error"] = "cross_site_request"
            return refusal
        options = self._options
        target = safe_redirect_target(
            request.query_params.get("next"), default=options.post_logout_url
        )
        session_id = self._cookies.session_id(request)
        ended = await self._sessions.load(session_id)
        await self._sessions.end_session(session_id)
        response: Response = RedirectResponse(target, status_code=303, headers=_REDIRECT_HEADERS)
        if options.logout_at_provider:
            base = str(request.base_url).rstrip("/")
            try:
                at_provider = await self._sign_in().end_session_url(
                    return_to=base + target, locale=locale, ended=ended
                )
            except CorpAuthError:
                at_provider = None
            if at_provider is None:
                logger.info("signed out here only: the bank has no end-session endpoint")
                response = self._html(signed_out_here_page(locale=locale, continue_url=target))
            else:
                response = RedirectResponse(at_provider, status_code=303, headers=_REDIRECT_HEADERS)
        self._cookies.clear(request, response)
        return response

    async def _complete(
        self, request: Request, params: Mapping[str, str], *, arrived_in: ResponseMode
    ) -> Response:
        entries = self._pending.read(request)
        pending = [p for p in map(PendingLogin.from_record, entries) if p is not None]
        state = params.get("state")
        wanted = fingerprint(state) if state else None
        this = next((p for p in pending if p.state_fingerprint == wanted), None)
        # The sign-in is used up whatever the outcome: the cookie forgets it.
        remaining = [e for e in entries if e.get("state_fingerprint") != wanted]
        session_id = self._cookies.session_id(request)
        response: Response
        try:
            completed = await self._sign_in().complete(
                params=params, arrived_in=arrived_in, pending=pending, session_id=session_id
            )
        except SilentSignInFailed as exc:
            # The bank needs the customer: the ordinary sign-in, to the same page.
            login = login_link(
                str(request.url_for("corpauth:login")), locale=exc.locale, next_url=exc.next_url
            )
            response = self._html(onward_page(locale=exc.locale, url=login))
        except CorpAuthError as exc:
            logger.info("sign-in refused: %s%s", exc.code, _detail(exc))
            if isinstance(exc, StateError | CallbackInvalid) and session_id is not None:
                # Back or reload after signing in: the customer is signed in already.
                user = await self._signed_in(session_id)
                if user:
                    response = RedirectResponse(
                        self._options.post_login_url, status_code=303, headers=_REDIRECT_HEADERS
                    )
                    self._pending.write(request, response, remaining)
                    return response
            locale = this.locale if this is not None else self._locale(request)
            response = self._error_page(
                request, exc, locale=locale, next_url=this.next_url if this else None
            )
        else:
            logger.info("customer signed in")
            response = RedirectResponse(
                completed.next_url, status_code=303, headers=_REDIRECT_HEADERS
            )
            self._cookies.set(request, response, completed.session_id)
        self._pending.write(request, response, remaining)
        return response

    async def _signed_in(self, session_id: str) -> bool:
        try:
            return await self._sign_in().resume(session_id, page_view=False) is not None
        except CorpAuthError:
            return False

    def _html(
        self, page: str, *, status_code: int = 200, csp_header: str | None = None
    ) -> HTMLResponse:
        headers = dict(SECURITY_HEADERS)
        headers["Content-Security-Policy"] = csp_header or csp()
        return HTMLResponse(page, status_code=status_code, headers=headers)

    def _error_page(
        self,
        request: Request,
        exc: CorpAuthError,
        *,
        locale: str,
        next_url: str | None = None,
    ) -> HTMLResponse:
        status, message_key = _describe(exc)
        again = login_link(str(request.url_for("corpauth:login")), locale=locale, next_url=next_url)
        page = error_page(
            locale=locale,
            message_key=message_key,
            code=exc.code,
            again_url=again,
            provider_error=_provider_error(exc),
        )
        response = self._html(page, status_code=status)
        response.headers["X-CorpAuth-Error"] = exc.code
        return response


def _cross_site(request: Request) -> bool:
    """Whether a browser sent this request from another site (CSRF defence for POSTs).

    ``Sec-Fetch-Site`` decides when the browser sends it; otherwise ``Origin``, which
    browsers send with every cross-site POST, must be this app's. A request with
    neither comes from no browser, hence from no other site.
    """
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site.lower() not in _SAME_SITE_FETCH
    origin = request.headers.get("origin")
    if origin is None:
        return False
    base = request.base_url
    own = f"{base.scheme}://{base.netloc}"
    parts = urlsplit(origin)
    return origin == "null" or f"{parts.scheme}://{parts.netloc}" != own


def _ascii_query(request: Request) -> bool:
    try:
        request.scope.get("query_string", b"").decode("ascii")
    except UnicodeDecodeError:
        return False
    return True


def _provider_error(exc: CorpAuthError) -> str | None:
    """The OAuth error code the bank sent, already sanitised to printable ASCII."""
    if isinstance(exc, AuthorizationDenied | CredentialsRejected):
        return _printable_code(exc.error)
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


def _describe(exc: CorpAuthError) -> tuple[int, str]:
    """The status and the message (a ``_pages`` text key) of a refused sign-in."""
    if isinstance(exc, StateError):
        return 400, f"state_{exc.problem}"
    if isinstance(exc, AuthorizationDenied):
        if exc.error == "access_denied":
            return 403, "cancelled"
        return 400, "bank_refused"
    if isinstance(exc, ResponseModeMismatch):
        return 400, "mode_mismatch"
    if isinstance(exc, LoginError):
        return 400, "unusable"
    if isinstance(exc, InvalidToken):
        return 400, "not_confirmed"
    if isinstance(exc, VerificationUnavailable):
        return 503, "cannot_confirm"
    if isinstance(exc, StoreUnavailable):
        return 503, "unavailable"
    if isinstance(exc, ConfigurationError):
        return error_response(exc).status_code, "misconfigured"
    if isinstance(exc, TokenError):
        return error_response(exc).status_code, "bank_unexpected"
    return 400, "failed_generic"
