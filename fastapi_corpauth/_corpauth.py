"""``CorpAuth``: wires the settings, the token service and FastAPI together."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from ._auth import BankTokenAuth
from ._errors import ConfigurationError, CorpAuthError
from ._fastapi import http_exception
from ._settings import CorpAuthSettings
from ._token import Token
from ._token_service import Clock, TokenService

__all__ = ["ApiClientDependency", "BearerTokenDependency", "CorpAuth"]


@dataclass(frozen=True)
class _Running:
    tokens: TokenService
    api_client: httpx.AsyncClient


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
        clock: Clock = time.time,
    ) -> None:
        self.settings = settings
        self._transport = transport
        self._api_transport = api_transport or transport
        self._clock = clock
        self._running: _Running | None = None
        #: Dependency injecting the bank access token string.
        self.bearer_token = BearerTokenDependency(self)
        #: Dependency injecting an ``httpx.AsyncClient`` for the bank API that carries the token.
        self.api_client = ApiClientDependency(self)

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
            )
            async with httpx.AsyncClient(
                base_url=settings.api_base_url.rstrip("/") + "/",
                transport=self._api_transport,
                auth=BankTokenAuth(tokens),
                timeout=timeout,
                trust_env=False,
            ) as api_client:
                self._running = _Running(tokens=tokens, api_client=api_client)
                try:
                    yield
                finally:
                    self._running = None
                    await tokens.aclose()

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

    def _require_running(self) -> _Running:
        if self._running is None:
            raise ConfigurationError(
                "CorpAuth is not started: create the app with FastAPI(lifespan=corpauth.lifespan)"
            )
        return self._running


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
    the route uses the client become 502/503 with a stable code.
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
