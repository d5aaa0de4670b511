"""``CorpAuth``: wires the settings, the token service and FastAPI together."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.models import APIKey, APIKeyIn
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security.base import SecurityBase

from ._auth import BankTokenAuth
from ._config import Endpoints
from ._cookies import SessionCookies
from ._discovery import Discovery
from ._errors import (
    BankApiUnavailable,
    ConfigurationError,
    CorpAuthError,
    InvalidToken,
    LifespanNotStarted,
    NotAuthenticated,
    VerificationError,
)
from ._fastapi import http_exception
from ._memory_store import MemorySessionStore
from ._metadata import ProviderMetadata, fallback_metadata
from ._router import build_router
from ._sessions import SessionManager, SignedInUser
from ._settings import CorpAuthSettings
from ._signin import SignIn
from ._signing import CookieSigner
from ._store import SessionStore
from ._token import Token
from ._token_service import Clock, TokenService
from ._verification import VerifiedToken
from ._verifier import TokenVerifier
from ._web import login_url, request_path

if TYPE_CHECKING:
    from ._redis import RedisLayer

__all__ = [
    "ApiClientDependency",
    "BearerTokenDependency",
    "CorpAuth",
    "CurrentUserDependency",
    "OptionalUserDependency",
    "VerifiedBearerDependency",
]

logger = logging.getLogger("fastapi_corpauth")
bearer_logger = logging.getLogger("fastapi_corpauth.bearer")

#: itsdangerous salt for the session cookie; other purposes get other salts.
SESSION_SALT = "fastapi_corpauth.session"


@dataclass(frozen=True)
class _Running:
    tokens: TokenService
    api_client: httpx.AsyncClient
    auth_http: httpx.AsyncClient
    discovery: Discovery
    verifier: TokenVerifier
    sign_in: SignIn


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
        #: Keycloak's paths under the issuer (or the configured ones): the fallback while
        #: the issuer's discovery document cannot be read.
        self.endpoints: Endpoints = settings.endpoints()
        self._transport = transport
        self._api_transport = api_transport or transport
        self._clock = clock
        self._running: _Running | None = None
        self._not_started_logged = False
        self._cookies = (
            SessionCookies(
                signer=CookieSigner(
                    secret_keys=settings.session_secret,
                    salt=SESSION_SALT,
                    max_age=settings.session_max_age,
                    clock=clock,
                ),
                options=settings.cookie_options(),
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
        #: Dependency verifying a customer's token sent as ``Authorization: Bearer``.
        self.verified_bearer = VerifiedBearerDependency(self)
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
        async with httpx.AsyncClient(
            transport=self._transport, timeout=timeout, trust_env=False
        ) as auth_http:
            discovery = Discovery(
                http=auth_http,
                issuer=self.endpoints.issuer,
                fallback=fallback_metadata(self.endpoints),
                overrides=settings.endpoint_overrides(),
                enabled=settings.discovery,
                clock=self._clock,
                timeout=min(3.0, settings.connect_timeout + settings.read_timeout),
            )
            verifier = TokenVerifier(
                http=auth_http,
                discovery=discovery,
                credentials=settings.credentials(),
                policy=settings.verification_policy(),
                clock=self._clock,
            )

            async def token_url() -> str:
                return (await discovery.metadata()).token_endpoint

            tokens = TokenService(
                http=auth_http,
                token_url=token_url,
                credentials=settings.credentials(),
                scope=settings.scope or None,
                cache=settings.cache_policy(),
                retry=settings.retry_policy(),
                clock=self._clock,
                shared=(
                    # Keyed by the configured issuer's token path, which is stable
                    # whether or not discovery has been read.
                    self._redis.token_cache(
                        token_url=self.endpoints.token_url, credentials=settings.credentials()
                    )
                    if self._redis is not None
                    else None
                ),
                lease=settings.connect_timeout + settings.read_timeout,
            )
            sign_in = SignIn(
                options=settings.sign_in_options(),
                credentials=settings.credentials(),
                sessions=self.sessions,
                discovery=discovery,
                verifier=verifier,
                http=auth_http,
                clock=self._clock,
            )
            async with httpx.AsyncClient(
                base_url=settings.api_base_url.rstrip("/") + "/",
                transport=self._api_transport,
                auth=BankTokenAuth(tokens),
                timeout=timeout,
                trust_env=False,
            ) as api_client:
                self._running = _Running(
                    tokens=tokens,
                    api_client=api_client,
                    auth_http=auth_http,
                    discovery=discovery,
                    verifier=verifier,
                    sign_in=sign_in,
                )
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
    def verifier(self) -> TokenVerifier:
        """The running token verifier (issuer keys and introspection).

        Raises:
            ConfigurationError: the lifespan is not running.
        """
        return self._require_running().verifier

    async def metadata(self) -> ProviderMetadata:
        """The authorization server's endpoints: discovered, else Keycloak's paths.

        Raises:
            ConfigurationError: the lifespan is not running.
        """
        return await self._require_running().discovery.metadata()

    async def verify_token(self, token: str) -> VerifiedToken:
        """Verify a customer's access token as ``verified_bearer`` does.

        Raises:
            InvalidToken: the bank does not vouch for it as a customer's token of this
                client (or of ``bearer_client_ids``).
            VerificationUnavailable: the bank's keys or introspection are unreachable.
            ConfigurationError: the lifespan is not running.
        """
        client_ids = frozenset({self.settings.client_id, *self.settings.bearer_client_ids})
        return await self.verifier.verify_access_token(token, client_ids=client_ids)

    @property
    def router(self) -> APIRouter:
        """The sign-in routes (``/login``, ``/callback``, ``/logout``) to include in the app.

        Raises:
            ConfigurationError: ``CORPAUTH_SESSION_SECRET`` is not set.
        """
        cookies = self.cookies
        if self._router is None:
            self._router = build_router(
                sign_in=lambda: self._require_running().sign_in,
                sessions=self.sessions,
                cookies=cookies,
                options=self.settings.sign_in_options(),
            )
        return self._router

    @property
    def current_user(self) -> CurrentUserDependency:
        """``Depends(corpauth.current_user)``: the signed-in customer, or 401.

        Raises:
            ConfigurationError: ``CORPAUTH_SESSION_SECRET`` is not set.
        """
        self.cookies  # noqa: B018 - raises when sessions are not configured
        return self._current_user

    @property
    def optional_user(self) -> OptionalUserDependency:
        """``Depends(corpauth.optional_user)``: the signed-in customer, or None."""
        self.cookies  # noqa: B018 - raises when sessions are not configured
        return self._optional_user

    @property
    def auth_http(self) -> httpx.AsyncClient:
        """The HTTP client for the authorization server (open while the lifespan runs)."""
        return self._require_running().auth_http

    @property
    def cookies(self) -> SessionCookies:
        """The session cookie's reader and writer.

        Raises:
            ConfigurationError: ``CORPAUTH_SESSION_SECRET`` is not set.
        """
        if self._cookies is None:
            raise ConfigurationError(
                "browser sign-in needs CORPAUTH_SESSION_SECRET (one or more signing keys)",
                variables=("CORPAUTH_SESSION_SECRET",),
            )
        return self._cookies

    def _require_running(self) -> _Running:
        if self._running is None:
            error = LifespanNotStarted(
                "CorpAuth is not started: create the app with "
                "FastAPI(lifespan=corpauth.lifespan), or enter "
                "'async with corpauth.lifespan(app)' from the app's own lifespan"
            )
            # Logged once per instance: every request of a misconfigured app fails alike.
            if not self._not_started_logged:
                self._not_started_logged = True
                logger.error("%s", error.message)
            raise error
        return self._running


def _redis_layer(settings: CorpAuthSettings) -> RedisLayer | None:
    """The Redis layer for ``CORPAUTH_REDIS_URL``, or None when it is not set."""
    if settings.redis_url is None:
        return None
    try:
        from ._redis import RedisLayer
    except ImportError as exc:
        raise ConfigurationError(
            "CORPAUTH_REDIS_URL needs redis-py: pip install 'fastapi-corpauth[redis]'",
            variables=("CORPAUTH_REDIS_URL",),
        ) from exc
    try:
        return RedisLayer(
            settings.redis_url.get_secret_value(),
            prefix=settings.redis_prefix,
            timeout=settings.redis_timeout,
        )
    except ValueError:
        raise ConfigurationError(
            "invalid fastapi-corpauth settings: CORPAUTH_REDIS_URL is not a valid Redis URL",
            variables=("CORPAUTH_REDIS_URL",),
        ) from None


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
        return await corpauth.sessions.load_user(corpauth.cookies.session_id(request))


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


class VerifiedBearerDependency(SecurityBase):
    """``Depends(corpauth.verified_bearer)``: the customer behind ``Authorization: Bearer``.

    For backends of desktop applications that signed the customer in themselves (the
    bank's implicit flow) and call this API with the customer's token. The token is
    verified exactly as a sign-in's (issuer keys or introspection, issuer, client,
    access-token type, lifetime, a customer and not a service account) and accepted when
    issued to ``client_id`` or one of ``bearer_client_ids``.

    Without a token the answer is 401 with ``WWW-Authenticate: Bearer``; with a token
    the bank does not vouch for, 401 with ``error="invalid_token"`` (RFC 6750 §3.1);
    while the bank's keys or introspection are unreachable, 503. It is an HTTP bearer
    scheme in OpenAPI, so Swagger UI's Authorize button works with it.
    """

    def __init__(self, corpauth: CorpAuth) -> None:
        self._corpauth = corpauth
        self.model = HTTPBearerModel(
            bearerFormat="JWT",
            description="A customer's access token issued by the bank's authorization server.",
        )
        self.scheme_name = "BankCustomerToken"

    async def __call__(self, request: Request) -> VerifiedToken:
        scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _bearer_challenge(None)
        try:
            return await self._corpauth.verify_token(token)
        except InvalidToken as exc:
            bearer_logger.info("bearer token refused: %s", exc.reason)
            raise _bearer_challenge(exc) from exc
        except (VerificationError, CorpAuthError) as exc:
            raise http_exception(exc) from exc


def _bearer_challenge(exc: InvalidToken | None) -> HTTPException:
    """RFC 6750 §3: no error code without credentials; ``invalid_token`` otherwise."""
    if exc is None:
        challenge = 'Bearer realm="corpauth"'
        detail = {"code": "not_authenticated", "message": "Send the customer's bank token."}
    else:
        challenge = 'Bearer realm="corpauth", error="invalid_token", error_description="{}"'.format(
            "The access token is not valid for this application"
        )
        detail = {"code": exc.code, "message": "The bank does not vouch for this token."}
    return HTTPException(
        status_code=401,
        detail=detail,
        headers={"WWW-Authenticate": challenge, "Cache-Control": "no-store"},
    )
