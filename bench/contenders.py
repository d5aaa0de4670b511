"""The clients measures 3-5 and 7 compare, each used the way its documentation shows.

Every contender makes authorised GET requests to the bank through one ``BankTransport``,
which records the bearer token of each request (to see when a new token comes into use)
and either forwards to the devserver's real API or, for the herd, answers at once
(``http://bank.invalid``), so that only the token's cost is measured. Token requests
always go over real HTTP to a devserver process.

* ``corpauth``: ``CorpAuth`` with its lifespan entered, and the ``api_client`` dependency
  (``Depends(corpauth.api_client)``), defaults apart from the URLs.
* Authlib and httpx-auth: see ``bench/anchors.py``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import httpx

from .common import CLIENT_ID, CLIENT_SECRET, Devserver

MOCK_BANK = "http://bank.invalid/api"


@dataclass
class Seen:
    at: float
    token: str


@dataclass
class BankTransport(httpx.AsyncBaseTransport):
    """Routes bank requests (mocked or real) and records which token each one carried."""

    mock: bool
    seen: list[Seen] = field(default_factory=list)
    real: httpx.AsyncHTTPTransport = field(
        default_factory=lambda: httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=200))
    )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            self.seen.append(Seen(time.perf_counter(), auth[7:]))
        if self.mock and request.url.host == "bank.invalid":
            return httpx.Response(200, json={"accounts": []})
        return await self.real.handle_async_request(request)

    async def aclose(self) -> None:
        await self.real.aclose()


class Contender:
    name = "?"

    def __init__(self, dev: Devserver, bank: BankTransport, *, leeway: float) -> None:
        self.dev = dev
        self.bank = bank
        self.leeway = leeway
        self.base = MOCK_BANK if bank.mock else dev.api

    async def start(self) -> None:
        raise NotImplementedError

    async def get(self, path: str) -> int:
        raise NotImplementedError

    async def token(self) -> str:
        """Obtain the token the way the library's request path does, without the request."""
        raise NotImplementedError

    def cached_token(self) -> str | None:
        """The token held now, without fetching (None when the library hides it)."""
        return None

    async def close(self) -> None:
        raise NotImplementedError


class CorpAuthContender(Contender):
    name = "corpauth"

    async def start(self) -> None:
        from fastapi_corpauth import CorpAuth, CorpAuthSettings

        self.corpauth = CorpAuth(
            CorpAuthSettings(
                client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET,
                issuer=self.dev.issuer,
                api_base_url=self.base,
            ),
            api_transport=self.bank,
        )
        self._lifespan = self.corpauth.lifespan()
        await self._lifespan.__aenter__()
        # The client FastAPI would inject: Depends(corpauth.api_client).
        self.client = await self.corpauth.api_client()

    async def get(self, path: str) -> int:
        return (await self.client.get(path.lstrip("/"))).status_code

    async def token(self) -> str:
        # What Depends(corpauth.bearer_token) and the api_client's auth await.
        return (await self.corpauth.get_token()).access_token

    def cached_token(self) -> str | None:
        cached = self.corpauth.tokens.cached
        return cached.access_token if cached is not None else None

    async def close(self) -> None:
        await self._lifespan.__aexit__(None, None, None)
