from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from fastapi_corpauth import CorpAuth, CorpAuthSettings
from fastapi_corpauth.devserver import FLAVOURS, DevClient, create_devserver
from tests.support import CLIENT_ID, FakeClock

DEV_BASE = "http://bank.test"
#: A secret with every character RFC 6749 §2.3.1 encoding must survive.
SPECIAL_SECRET = "s3cr+t%2F:ü ok"


class Harness:
    """A devserver, a CorpAuth app wired to it over ASGITransport, and a client for the app."""

    def __init__(self, devserver: FastAPI, corpauth: CorpAuth, app: FastAPI) -> None:
        self.devserver = devserver
        self.corpauth = corpauth
        self.app = app
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://app.test"
        )

    @property
    def dev(self) -> Any:
        return self.devserver.state.devserver


def build_app(corpauth: CorpAuth) -> FastAPI:
    app = FastAPI(lifespan=corpauth.lifespan)

    @app.get("/token-length")
    async def token_length(token: str = Depends(corpauth.bearer_token)) -> dict[str, int]:
        return {"length": len(token)}

    @app.get("/accounts")
    async def accounts(bank: httpx.AsyncClient = Depends(corpauth.api_client)) -> Any:
        response = await bank.get("accounts")
        return {"status": response.status_code, "body": response.json()}

    return app


MakeHarness = Callable[..., Any]


@pytest.fixture
async def make_harness() -> AsyncIterator[MakeHarness]:
    stack: list[Any] = []

    @asynccontextmanager
    async def make(
        *,
        flavour: str = "modern",
        secret: str = SPECIAL_SECRET,
        configured_secret: str | None = None,
        token_lifetime: float = 300.0,
        clock: FakeClock | None = None,
        **settings_overrides: Any,
    ) -> AsyncIterator[Harness]:
        devserver = create_devserver(
            flavour=flavour,
            clients=(DevClient(client_id=CLIENT_ID, client_secret=secret),),
            token_lifetime=token_lifetime,
            clock=clock or time.time,
        )
        values: dict[str, Any] = {
            "client_id": CLIENT_ID,
            "client_secret": configured_secret if configured_secret is not None else secret,
            "issuer": f"{DEV_BASE}/realms/bog",
            "api_base_url": f"{DEV_BASE}/api",
            "token_backoff_base": 0.0,
            "token_backoff_max": 0.01,
            "token_cooldown": 0.0,
        }
        values.update(settings_overrides)
        corpauth = CorpAuth(
            CorpAuthSettings(_env_file=None, **values),
            transport=httpx.ASGITransport(app=devserver),
            clock=clock or time.time,
        )
        app = build_app(corpauth)
        harness = Harness(devserver, corpauth, app)
        async with corpauth.lifespan(app), harness.client:
            yield harness

    yield make
    assert not stack


ALL_FLAVOURS = sorted(FLAVOURS)


@pytest.fixture(params=ALL_FLAVOURS)
def flavour_name(request: pytest.FixtureRequest) -> str:
    """Each Keycloak flavour of the development server in turn."""
    name: str = request.param
    return name
