"""In-process sign-ins: the development bank as an ASGI app, and a browser's requests.

Shared by the measures that sign customers in without a server (1, 8, 9): the bank
issues RS256 tokens like Keycloak, the plugin reads its discovery document and keys
through ``httpx.ASGITransport``, and ``Site`` makes the requests a browser would make,
as ASGI calls (``bench/inprocess.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
from fastapi import Depends, FastAPI
from jwt import PyJWK

from fastapi_corpauth import CorpAuth, CorpAuthSettings, SessionStore, SignedInUser
from fastapi_corpauth.devserver import DevClient, create_devserver

from .common import CLIENT_ID, CLIENT_SECRET, SESSION_SECRET
from .inprocess import asgi_request

BANK = "http://bank.test"
ISSUER = BANK + "/realms/bog"
HOST = b"localhost"

Token = dict[str, Any]


def bank() -> FastAPI:
    """The development bank with hour-long tokens (nothing expires during a measure)."""
    return create_devserver(
        clients=(DevClient(client_id=CLIENT_ID, client_secret=CLIENT_SECRET),),
        implicit_token_lifetime=3600,
        token_lifetime=3600,
    )


def mint(devserver: FastAPI, username: str = "demo") -> Token:
    """A customer's access token, as the bank's implicit flow would deliver it."""
    issued = devserver.state.devserver.mint_user_tokens(
        client_id=CLIENT_ID, issuer=ISSUER, username=username
    )
    return {"access_token": issued.access_token, "expires_in": issued.expires_in}


def token_pool(devserver: FastAPI, count: int) -> list[Token]:
    """``count`` distinct tokens: cycled through, more than a cache holds, each sign-in
    checks a signature."""
    return [mint(devserver) for _ in range(count)]


def pyjwt_decode(token: str, key: PyJWK) -> dict[str, Any]:
    """The baseline any verifying resource server pays: a plain PyJWT decode with a
    cached key, the issuer and the client checked."""
    claims: dict[str, Any] = jwt.decode(
        token,
        key,
        algorithms=["RS256"],
        issuer=ISSUER,
        options={"verify_aud": False, "require": ["exp", "iss", "sub"]},
    )
    if claims.get("azp") != CLIENT_ID:
        raise ValueError("another client's token")
    return claims


def corpauth_for(
    devserver: FastAPI,
    *,
    clock: Callable[[], float] = time.time,
    store: SessionStore | None = None,
    redis_url: str | None = None,
) -> CorpAuth:
    settings = CorpAuthSettings(
        _env_file=None,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        issuer=ISSUER,
        api_base_url=BANK + "/api",
        session_secret=SESSION_SECRET,
        development=True,
        redis_url=redis_url,
    )
    return CorpAuth(
        settings, transport=httpx.ASGITransport(app=devserver), session_store=store, clock=clock
    )


class Clock:
    """Real time plus whatever a measure skips ahead (to let markers expire), or with
    ``stopped``, only what it skips: time then passes as the measure says, however fast
    the machine runs it."""

    def __init__(self, *, stopped: bool = False) -> None:
        self.skipped = 0.0
        self._stopped_at = time.time() if stopped else None

    def __call__(self) -> float:
        return (self._stopped_at or time.time()) + self.skipped


class Site:
    """An app that mounts the plugin's router, and the requests a browser makes to it."""

    def __init__(self, corpauth: CorpAuth) -> None:
        self.corpauth = corpauth
        app = FastAPI()

        @app.get("/me")
        async def me(user: SignedInUser = Depends(corpauth.current_user)) -> dict[str, Any]:
            return {"ok": bool(user.subject)}

        app.include_router(corpauth.router, prefix="/auth")
        self.app = app
        self.cookie_name = corpauth.settings.session_cookie  # http://localhost: no __Host-

    async def login(self) -> tuple[str, str]:
        """``GET /auth/login``: the state and the sealed sign-in cookie (``name=value``)."""
        answer = await asgi_request(self.app, "/auth/login", host=HOST)
        location = answer.header("location") or ""
        state = parse_qs(urlsplit(location).query)["state"][0]
        (name, value), *_ = answer.cookies().items()
        return state, f"{name}={value}"

    async def sign_in(self, token: Token) -> str:
        """A whole implicit sign-in (the fragment relay's POST); the session cookie's
        value."""
        state, pending = await self.login()
        form = urlencode(
            {
                "corpauth_relay": "fragment",
                "state": state,
                "access_token": token["access_token"],
                "token_type": "Bearer",
                "expires_in": str(token["expires_in"]),
                "iss": ISSUER,
            }
        ).encode()
        answer = await asgi_request(
            self.app,
            "/auth/callback",
            [
                (b"cookie", pending.encode()),
                (b"content-type", b"application/x-www-form-urlencoded"),
            ],
            method="POST",
            body=form,
            host=HOST,
        )
        session = answer.cookies().get(self.cookie_name)
        if answer.status != 303 or not session:
            raise RuntimeError(f"the callback answered {answer.status}")
        return session

    def cookie(self, session: str) -> str:
        return f"{self.cookie_name}={session}"

    async def me(self, session: str) -> int:
        headers = [(b"cookie", self.cookie(session).encode())]
        return (await asgi_request(self.app, "/me", headers, host=HOST)).status

    async def sign_out(self, session: str) -> None:
        answer = await asgi_request(
            self.app,
            "/auth/logout",
            [(b"cookie", self.cookie(session).encode()), (b"sec-fetch-site", b"same-origin")],
            method="POST",
            host=HOST,
        )
        if answer.status != 303:
            raise RuntimeError(f"the logout answered {answer.status}")
