"""``CorpAuth``: wires the settings, the token service and FastAPI together."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security.base import SecurityBase

from ._auth import BankTokenAuth
from ._config import Endpoints
from ._cookies import SessionCookies, SignInCookie
from ._customer_api import CustomerClients
from ._discovery import Discovery
from ._errors import (
    ConfigurationError,
    CorpAuthError,
    InvalidToken,
    LifespanNotStarted,
    NotAuthenticated,
    SessionExpired,
    VerificationError,
)
from ._fastapi import BankApiClient, http_exception
from ._memory_store import MemorySessionStore
from ._metadata import ProviderMetadata, fallback_metadata
from ._router import build_router
from ._sealing import Sealer, derive_keys
from ._sessions import SessionManager, SignedInUser
from ._settings import CorpAuthSettings
from ._signin import RenewSilently, SignIn
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
    "UserApiClientDependency",
    "VerifiedBearerDependency",
]

logger = logging.getLogger("fastapi_corpauth")
bearer_logger = logging.getLogger("fastapi_corpauth.bearer")

#: itsdangerous salt for the session cookie; other purposes get other salts.
SESSION_SALT = "fastapi_corpauth.session"


@dataclass(frozen=True)
class _Running:
    tokens: TokenService
    api_client: BankApiClient
    auth_http: httpx.AsyncClient
    discovery: Discovery
    verifier: TokenVerifier
    sign_in: SignIn
    customers: CustomerClients

    def customer_client(self, session_id: str, user: SignedInUser) -> httpx.AsyncClient:
        return self.customers.client(session_id, user)


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
        secrets = settings.session_secret
        self._cookies = (
            SessionCookies(
                signer=CookieSigner(
                    secret_keys=secrets,
                    salt=SESSION_SALT,
                    max_age=settings.session_max_age,
                    clock=clock,
                ),
                options=settings.cookie_options(),
            )
            if secrets
            else None
        )
        self._sign_in_cookie = (
            SignInCookie(
                sealer=Sealer(secrets=secrets, purpose="sign-in"),
                options=settings.cookie_options(),
                name=settings.sign_in_cookie_name(),
                max_age=settings.state_max_age + 60,
            )
            if secrets
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
        #: Signed-in sessions (sealed) and the single-use marks of sign-in states.
        self.sessions = SessionManager(
            store=store,
            # Without session secrets there are no sessions; the sealer is then unused.
            sealer=Sealer(secrets=secrets or ("unused-without-sessions",), purpose="session"),
            session_max_age=settings.session_max_age,
            clock=clock,
        )
        self._router: APIRouter | None = None
        #: Dependency injecting the bank access token string.
        self.bearer_token = BearerTokenDependency(self)
        #: Dependency injecting an ``httpx.AsyncClient`` for the bank API that carries the token.
        self.api_client = ApiClientDependency(self)
        #: Dependency injecting an ``httpx.AsyncClient`` for the bank API that carries the
        #: signed-in customer's own token.
        self.user_api_client = UserApiClientDependency(self)
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
        if self._redis is not None:
            await self._redis.start()  # a misconfigured Redis fails here, not at first use
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
                        token_url=self.endpoints.token_url,
                        credentials=settings.credentials(),
                        scope=settings.scope or None,
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
                state_keys=derive_keys(settings.session_secret or ("-",), purpose="state"),
                state_max_age=settings.state_max_age,
                cache=settings.cache_policy(),
                lease=settings.connect_timeout + settings.read_timeout,
                clock=self._clock,
            )
            # The customers' calls share one pool of their own, closed with the app.
            customer_pool = self._api_transport or httpx.AsyncHTTPTransport(trust_env=False)
            async with BankApiClient(
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
                    customers=CustomerClients(
                        sign_in=sign_in,
                        pool=customer_pool,
                        base_url=settings.api_base_url.rstrip("/") + "/",
                        timeout=timeout,
                        # Its failures answer the request like api_client's.
                        client_class=BankApiClient,
                    ),
                )
                try:
                    yield
                finally:
                    self._running = None
                    await tokens.aclose()
                    if self._api_transport is None:
                        await customer_pool.aclose()
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
            ConfigurationError: ``CORPAUTH_SESSION_SECRET`` is not set, or
                ``CORPAUTH_REDIRECT_URI`` is not set outside development.
        """
        cookies = self.cookies
        assert self._sign_in_cookie is not None  # set whenever cookies are
        settings = self.settings
        if settings.redirect_uri is None and not settings.development:
            raise ConfigurationError(
                "browser sign-in needs CORPAUTH_REDIRECT_URI, the exact callback URL "
                "registered at the bank (https://your-app/auth/callback); it is taken from "
                "the request only with CORPAUTH_DEVELOPMENT=true, on this machine",
                variables=("CORPAUTH_REDIRECT_URI",),
            )
        if self._router is None:
            self._router = build_router(
                sign_in=lambda: self._require_running().sign_in,
                sessions=self.sessions,
                cookies=cookies,
                sign_in_cookie=self._sign_in_cookie,
                options=self.settings.sign_in_options(),
            )
        return self._router

    async def resume(
        self, request: Request, *, page_view: bool
    ) -> SignedInUser | RenewSilently | None:
        """The signed-in customer of ``request`` (see ``SignIn.resume``)."""
        session_id = self.cookies.session_id(request)
        if session_id is None:
            return None
        return await self._require_running().sign_in.resume(session_id, page_view=page_view)

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

    def clock(self) -> float:
        """Now, on the clock the plugin was given."""
        return self._clock()

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

    def _require_running_answer(self) -> _Running:
        """``_require_running`` for a dependency: not started answers 503."""
        try:
            return self._require_running()
        except CorpAuthError as exc:
            raise http_exception(exc) from exc

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
        running = self._corpauth._running or self._corpauth._require_running_answer()
        token = running.tokens.ready_token()
        if token is None:
            try:
                token = await running.tokens.get_token()
            except CorpAuthError as exc:
                raise http_exception(exc) from exc
        return token.access_token


class ApiClientDependency:
    """``Depends(corpauth.api_client)``: an ``httpx.AsyncClient`` for the bank API.

    Paths are relative to ``api_base_url``; each request carries a valid token and is
    retried once with a fresh token if the bank answers 401. A token that cannot be
    obtained, and a bank API that cannot be reached or times out
    (``bank_api_unavailable``), answer the request with 502/503 and a stable code: the
    client raises the ``HTTPException`` (``BankApiClient``), whose ``__cause__`` is the
    library's error for a route that handles it itself.
    """

    def __init__(self, corpauth: CorpAuth) -> None:
        self._corpauth = corpauth

    async def __call__(self) -> httpx.AsyncClient:
        running = self._corpauth._running or self._corpauth._require_running_answer()
        return running.api_client


#: Pages and answers about a signed-in customer must not be kept by any cache, and a
#: cache must not give one browser's answer to another: Back after signing out then asks
#: the server again, which says "signed out".
PRIVATE_HEADERS = {"Cache-Control": "no-store", "Vary": "Cookie"}


def _private(response: Response) -> None:
    response.headers.update(PRIVATE_HEADERS)


def _private_exception(exc: CorpAuthError) -> HTTPException:
    """``http_exception`` for an answer about a browser's session: not cached, per cookie."""
    error = http_exception(exc)
    error.headers = {**(error.headers or {}), **PRIVATE_HEADERS}
    return error


def _page_view(request: Request) -> bool:
    """A top-level page the browser navigates to (not a fetch, XHR or form POST)."""
    if request.method != "GET" or "text/html" not in request.headers.get("accept", ""):
        return False
    mode = request.headers.get("sec-fetch-mode")
    return mode is None or mode == "navigate"


class _SessionDependency:
    """Shared by ``current_user`` and ``optional_user``: the session, kept alive.

    Not a ``fastapi.security`` scheme: the session cookie is HttpOnly and set by the
    sign-in router, so there is nothing to type into Swagger UI's Authorize dialog; a
    browser signed in at ``/auth/login`` sends it with "Try it out" by itself.
    """

    def __init__(self, corpauth: CorpAuth) -> None:
        self._corpauth = corpauth

    async def _resolve(self, request: Request, response: Response) -> SignedInUser | None:
        """The customer, renewing the session if needed.

        Raises:
            HTTPException: 303 to a silent renewal through the bank (implicit flow, a page
                view near the token's end); 401 ``session_expired``; 503 while the bank
                cannot renew it; 503 ``configuration_error`` without the lifespan.
        """
        _private(response)
        corpauth = self._corpauth
        page_view = _page_view(request)
        try:
            outcome = await corpauth.resume(request, page_view=page_view)
        except SessionExpired as exc:
            if page_view and corpauth.settings.login_redirect:
                _redirect_to_login(request)
            raise _private_exception(exc) from exc
        except CorpAuthError as exc:
            raise _private_exception(exc) from exc
        if isinstance(outcome, RenewSilently):
            target = login_url(request, request_path(request))
            if target is not None and corpauth.settings.silent_renewal:
                raise HTTPException(
                    status_code=303,
                    headers={"Location": target + "&prompt=none", **PRIVATE_HEADERS},
                )
            if outcome.user.token.is_expired(corpauth.clock()):
                raise _private_exception(SessionExpired("the session's token expired"))
            return outcome.user
        return outcome


def _redirect_to_login(request: Request) -> None:
    target = login_url(request, request_path(request))
    if target is not None:
        raise HTTPException(status_code=303, headers={"Location": target, **PRIVATE_HEADERS})


class CurrentUserDependency(_SessionDependency):
    """``Depends(corpauth.current_user)``: the customer signed in with this browser.

    The session is kept alive here: a code-flow token near its end is refreshed, an
    implicit one renewed through the bank on the next page view (``prompt=none``). The
    response carries ``Cache-Control: no-store`` and ``Vary: Cookie``.

    Without a session the answer is 401 ``not_authenticated``; when the session ended
    (its token could not be renewed, the bank ended it) 401 ``session_expired``, so a
    front end knows to navigate to sign in. With ``login_redirect`` on, a browser asking
    for a page is sent to ``/login`` instead.
    """

    async def __call__(self, request: Request, response: Response) -> SignedInUser:
        user = await self._resolve(request, response)
        if user is not None:
            return user
        if self._corpauth.settings.login_redirect and _page_view(request):
            _redirect_to_login(request)
        raise _private_exception(NotAuthenticated("sign in with the bank first"))


class OptionalUserDependency(_SessionDependency):
    """``Depends(corpauth.optional_user)``: the signed-in customer, or None.

    Keeps the session alive like ``current_user``; an ended session is None.
    """

    async def __call__(self, request: Request, response: Response) -> SignedInUser | None:
        try:
            return await self._resolve(request, response)
        except HTTPException as exc:
            if exc.status_code == 401:
                return None
            raise


class UserApiClientDependency:
    """``Depends(corpauth.user_api_client)``: the bank API as the signed-in customer.

    An ``httpx.AsyncClient`` (paths relative to ``api_base_url``) whose requests carry
    the customer's own access token, unexpired and renewed as the session is. Use it for
    what the customer may see as themselves; ``api_client`` acts as the company's service
    account. Without a session it answers as ``current_user``; a 401 from the bank ends
    the session and answers 401 ``session_expired``. Like ``api_client``'s, the client
    raises the ``HTTPException`` itself (``BankApiClient``); the dependency only closes it.
    """

    def __init__(self, corpauth: CorpAuth) -> None:
        self._corpauth = corpauth
        self._user = CurrentUserDependency(corpauth)

    async def __call__(
        self, request: Request, response: Response
    ) -> AsyncIterator[httpx.AsyncClient]:
        user = await self._user(request, response)
        corpauth = self._corpauth
        session_id = corpauth.cookies.session_id(request)
        assert session_id is not None  # a user was found for it
        client = corpauth._require_running().customer_client(session_id, user)
        try:
            yield client
        finally:
            await client.aclose()


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
