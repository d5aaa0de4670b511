"""``CorpAuth``: wires the settings, the token service and FastAPI together."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.openapi.models import APIKey, APIKeyIn
from fastapi.security.base import SecurityBase

from ._auth import BankTokenAuth
from ._errors import BankApiUnavailable, ConfigurationError, CorpAuthError, NotAuthenticated
from ._fastapi import http_exception
from ._memory_store import MemorySessionStore
from ._router import build_router, is_loopback, login_url, request_path
from ._sessions import SessionManager, SignedInUser
from ._settings import CorpAuthSettings
from ._signing import CookieSigner
from ._store import SessionStore
from ._token import Token
from ._token_service import Clock, TokenService

if TYPE_CHECKING:
    from ._redis import RedisLayer

__all__ = [
    "ApiClientDependency",
    "BearerTokenDependency",
    "CorpAuth",
    "CurrentUserDependency",
    "OptionalUserDependency",
]

#: itsdangerous salt for the session cookie; other purposes get other salts.
SESSION_SALT = "fastapi_corpauth.session"


@dataclass(frozen=True)
class _Running:
    tokens: TokenService
    api_client: httpx.AsyncClient
    auth_http: httpx.AsyncClient


class CorpAuth:
    """The plugin: one instance per application.

    ``CorpAuth(CorpAuthSettings())`` reads settings from the environment; nothing is
    contacted until the app's lifespan starts, which opens the HTTP clients and closes
    them on shutdown::

        corpauth = CorpAuth(CorpAuthSettings())
        app = FastAPI(lifespan=corpauth.lifespan)

        @app.get("/accounts")
        async def accounts(bank: httpx.AsyncClient = Depends(corpauth.api_client)):
            return (await bank.get("/accounts")).json()

    ``transport`` (for the authorization server) and ``api_transport`` (for the bank API,
    defaulting to ``transport``) replace the network, e.g. with ``httpx.MockTransport``
    or ``httpx.ASGITransport`` in tests; ``clock`` replaces ``time.time``.
    """

    def __init__(
        self,
        settings: CorpAuthSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        api_transport: httpx.AsyncBaseTransport | None = None,
        session_store: SessionStore | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.settings = settings
        self.endpoints = settings.endpoints()
        self._transport = transport
        self._api_transport = api_transport or transport
        self._clock = clock
        self._running: _Running | None = None
        self._cookie = settings.cookie_options()
        self._signer = (
            CookieSigner(
                secret_keys=settings.session_secret,
                salt=SESSION_SALT,
                max_age=settings.session_max_age,
                clock=clock,
            )
            if settings.session_secret
            else None
        )
        #: Redis shared by the workers (``CORPAUTH_REDIS_URL``), or None.
        self._redis = _redis_layer(settings)
        if session_store is None and self._redis is not None:
            session_store = self._redis.session_store()
        # Not ``session_store or ...``: an empty MemorySessionStore is falsy (``__len__``).
        store = (
            session_store
            if session_store is not None
            else MemorySessionStore(max_entries=settings.session_store_max_entries, clock=clock)
        )
        #: Pending sign-ins and signed-in sessions.
        self.sessions = SessionManager(
            store=store,
            session_max_age=settings.session_max_age,
            state_max_age=settings.state_max_age,
            clock=clock,
        )
        self._router: APIRouter | None = None
        #: Dependency injecting the bank access token string.
        self.bearer_token = BearerTokenDependency(self)
        #: Dependency injecting an ``httpx.AsyncClient`` for the bank API that carries the token.
        self.api_client = ApiClientDependency(self)
        self._current_user = CurrentUserDependency(self)
        self._optional_user = OptionalUserDependency(self)

    def __repr__(self) -> str:
        return (
            f"CorpAuth(client_id={self.settings.client_id!r}, issuer={self.settings.issuer!r}, "
            f"running={self._running is not None})"
        )

    @asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[None]:
        """Open the HTTP clients for the app's lifetime.

        Pass it as ``FastAPI(lifespan=corpauth.lifespan)``, or enter it from the app's
        own lifespan with ``async with corpauth.lifespan(app): yield``.
        """
        if self._running is not None:
            raise RuntimeError("CorpAuth.lifespan is already running")
        settings = self.settings
        timeout = httpx.Timeout(
            connect=settings.connect_timeout,
            read=settings.read_timeout,
            write=settings.read_timeout,
            pool=settings.connect_timeout,
        )
        endpoints = settings.endpoints()
        if self._redis is not None:
            await self._redis.start()  # a misconfigured Redis fails here, not at first use
        async with httpx.AsyncClient(
            transport=self._transport, timeout=timeout, trust_env=False
        ) as auth_http:
            tokens = TokenService(
                http=auth_http,
                token_url=endpoints.token_url,
                credentials=settings.credentials(),
                scope=settings.scope or None,
                cache=settings.cache_policy(),
                retry=settings.retry_policy(),
                clock=self._clock,
                shared=(
                    self._redis.token_cache(
                        token_url=endpoints.token_url, credentials=settings.credentials()
                    )
                    if self._redis is not None
                    else None
                ),
                lease=settings.connect_timeout + settings.read_timeout,
            )
            async with httpx.AsyncClient(
                base_url=settings.api_base_url.rstrip("/") + "/",
                transport=self._api_transport,
                auth=BankTokenAuth(tokens),
                timeout=timeout,
                trust_env=False,
            ) as api_client:
                self._running = _Running(tokens=tokens, api_client=api_client, auth_http=auth_http)
                try:
                    yield
                finally:
                    self._running = None
                    await tokens.aclose()
                    await self.sessions.store.aclose()
                    if self._redis is not None:
                        await self._redis.aclose()

    @property
    def tokens(self) -> TokenService:
        """The running token service.

        Raises:
            ConfigurationError: the lifespan is not running.
        """
        return self._require_running().tokens

    async def get_token(self) -> Token:
        """Return a valid bank token; see ``TokenService.get_token`` for what it raises."""
        return await self.tokens.get_token()

    @property
    def router(self) -> APIRouter:
        """The sign-in routes (``/login``, ``/callback``, ``/logout``) to include in the app.

        Raises:
            ConfigurationError: ``CORPAUTH_SESSION_SECRET`` is not set.
        """
        self._require_signer()
        if self._router is None:
            self._router = build_router(self)
        return self._router

    @property
    def current_user(self) -> CurrentUserDependency:
        """``Depends(corpauth.current_user)``: the signed-in customer, or 401.

        Raises:
            ConfigurationError: ``CORPAUTH_SESSION_SECRET`` is not set.
        """
        self._require_signer()
        return self._current_user

    @property
    def optional_user(self) -> OptionalUserDependency:
        """``Depends(corpauth.optional_user)``: the signed-in customer, or None."""
        self._require_signer()
        return self._optional_user

    @property
    def auth_http(self) -> httpx.AsyncClient:
        """The HTTP client for the authorization server (open while the lifespan runs)."""
        return self._require_running().auth_http

    def clock(self) -> float:
        return self._clock()

    def browser_id(self, request: Request) -> str | None:
        """The verified session id from the request's cookie, or None."""
        signer = self._require_signer()
        return signer.load(request.cookies.get(self._cookie.name))

    def set_session_cookie(self, request: Request, response: Response, session_id: str) -> None:
        response.set_cookie(
            self._cookie.name,
            self._require_signer().sign(session_id),
            max_age=self._cookie.max_age,
            path=self._cookie.path,
            domain=self._cookie.domain,
            secure=self._cookie_secure(request),
            httponly=True,
            samesite=self._cookie.samesite,
        )

    def clear_session_cookie(self, request: Request, response: Response) -> None:
        response.delete_cookie(
            self._cookie.name,
            path=self._cookie.path,
            domain=self._cookie.domain,
            secure=self._cookie_secure(request),
            httponly=True,
            samesite=self._cookie.samesite,
        )

    def _cookie_secure(self, request: Request) -> bool:
        if self._cookie.secure is not None:
            return self._cookie.secure
        base = request.base_url  # not request.url: it raises for a non-UTF-8 query string
        return not (base.scheme == "http" and is_loopback(base.hostname))

    def _require_signer(self) -> CookieSigner:
        if self._signer is None:
            raise ConfigurationError(
                "browser sign-in needs CORPAUTH_SESSION_SECRET (one or more signing keys)",
                variables=("CORPAUTH_SESSION_SECRET",),
            )
        return self._signer

    def _require_running(self) -> _Running:
        if self._running is None:
            raise ConfigurationError(
                "CorpAuth is not started: create the app with FastAPI(lifespan=corpauth.lifespan)"
            )
        return self._running


def _redis_layer(settings: CorpAuthSettings) -> RedisLayer | None:
    """The Redis layer the ``CORPAUTH_REDIS_*`` settings name, or None without Redis."""
    if settings.redis_url is None and settings.redis_mode != "sentinel":
        return None
    try:
        from ._redis import RedisLayer
    except ImportError as exc:
        variable = "CORPAUTH_REDIS_URL" if settings.redis_url else "CORPAUTH_REDIS_MODE"
        raise ConfigurationError(
            f"{variable} needs redis-py: pip install 'fastapi-corpauth[redis]'",
            variables=(variable,),
        ) from exc
    return RedisLayer(
        mode=settings.redis_mode,
        url=settings.redis_url.get_secret_value() if settings.redis_url else None,
        sentinels=settings.redis_sentinels,
        service=settings.redis_service,
        sentinel_password=(
            settings.redis_sentinel_password.get_secret_value()
            if settings.redis_sentinel_password
            else None
        ),
        prefix=settings.redis_prefix,
        timeout=settings.redis_timeout,
    )


class BearerTokenDependency:
    """``Depends(corpauth.bearer_token)``: the bank access token as a string.

    It is an outbound credential, so deliberately not a ``fastapi.security`` scheme:
    it does not show up in ``/docs``. Failures become 502/503 with a stable code.
    """

    def __init__(self, corpauth: CorpAuth) -> None:
        self._corpauth = corpauth

    async def __call__(self) -> str:
        try:
            token = await self._corpauth.get_token()
        except CorpAuthError as exc:
            raise http_exception(exc) from exc
        return token.access_token


class ApiClientDependency:
    """``Depends(corpauth.api_client)``: an ``httpx.AsyncClient`` for the bank API.

    Paths are relative to ``api_base_url``; each request carries a valid token and is
    retried once with a fresh token if the bank answers 401. Token failures raised while
    the route uses the client become 502/503 with a stable code, and so does a bank API
    that cannot be reached or times out (``bank_api_unavailable``), unless the route
    handles ``httpx`` errors itself.
    """

    def __init__(self, corpauth: CorpAuth) -> None:
        self._corpauth = corpauth

    async def __call__(self) -> AsyncIterator[httpx.AsyncClient]:
        try:
            client = self._corpauth._require_running().api_client
        except CorpAuthError as exc:
            raise http_exception(exc) from exc
        try:
            yield client
        except CorpAuthError as exc:
            raise http_exception(exc) from exc
        except httpx.TransportError as exc:
            error = BankApiUnavailable(f"bank API unreachable ({type(exc).__name__})")
            raise http_exception(error) from exc


class _SessionCookieScheme(SecurityBase):
    """The session cookie as a ``fastapi.security`` scheme (an API key in a cookie).

    It is a credential the caller presents, so it shows up in ``/docs``; the outbound
    bank token, by contrast, never does.
    """

    def __init__(self, corpauth: CorpAuth) -> None:
        self._corpauth = corpauth
        self.model = APIKey(
            **{"in": APIKeyIn.cookie},
            name=corpauth.settings.session_cookie,
            description="Signed session cookie set by the sign-in router.",
        )
        self.scheme_name = "CorpAuthSession"

    async def _load(self, request: Request) -> SignedInUser | None:
        corpauth = self._corpauth
        return await corpauth.sessions.load_user(corpauth.browser_id(request))


class CurrentUserDependency(_SessionCookieScheme):
    """``Depends(corpauth.current_user)``: the customer signed in with this browser.

    Without a valid session it answers 401 ``not_authenticated``, or, when
    ``login_redirect`` is on and a browser asks for HTML, redirects to ``/login``. An
    expired token counts as signed out.
    """

    async def __call__(self, request: Request) -> SignedInUser:
        user = await self._load(request)
        if user is not None:
            return user
        if (
            self._corpauth.settings.login_redirect
            and request.method == "GET"
            and "text/html" in request.headers.get("accept", "")
        ):
            target = login_url(request, request_path(request))
            if target is not None:
                raise HTTPException(
                    status_code=303, headers={"Location": target, "Cache-Control": "no-store"}
                )
        raise http_exception(NotAuthenticated("sign in with the bank first"))


class OptionalUserDependency(_SessionCookieScheme):
    """``Depends(corpauth.optional_user)``: the signed-in customer, or None."""

    async def __call__(self, request: Request) -> SignedInUser | None:
        return await self._load(request)
