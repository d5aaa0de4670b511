"""Measure 1: what each dependency costs a request, in process.

Every variant is its own FastAPI app with the same route table: ``/health``, then the
measured route ``/r``, then the plugin's router, included last as the docs recommend.
Only ``/r``'s dependency differs; each request carries the same headers (a session
cookie, Starlette's session cookie and a customer's bearer token), so parsing costs the
same. Requests are ASGI calls (no server, no network) and the figure is this process's
CPU per request; see ``bench/inprocess.py`` for how the rounds and verdicts work.

Baselines, as the plugin's users would compare:

* ``noop``: ``Depends`` on a no-op ``async def``, for ``bearer_token`` and ``api_client``;
* Starlette's ``SessionMiddleware`` holding the same user record in its signed cookie,
  read by the route, for ``current_user`` (in-memory store);
* a plain PyJWT decode with a cached key, issuer and client checked, for
  ``verified_bearer``.

Information rows show what FastAPI itself costs (no dependency at all, a no-op
generator dependency) and what including the plugin's router before the app's own
routes costs them.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx
from fastapi import Depends, FastAPI, Request
from itsdangerous import TimestampSigner
from jwt import PyJWK
from starlette.middleware.sessions import SessionMiddleware

from fastapi_corpauth import CorpAuth, SignedInUser, VerifiedToken

from .common import SESSION_SECRET, Profile, Report
from .inprocess import add_ratio, alternate, asgi_call, micros
from .signins import Site, bank, corpauth_for, mint, pyjwt_decode


def app_with(
    corpauth: CorpAuth,
    endpoint: Callable[..., Awaitable[dict[str, Any]]],
    *,
    router_first: bool = False,
    session_middleware: bool = False,
) -> FastAPI:
    """An app whose route table differs from the others' only in ``/r``'s endpoint."""
    app = FastAPI()
    if session_middleware:
        app.add_middleware(SessionMiddleware, secret_key=SESSION_SECRET)
    if router_first:
        app.include_router(corpauth.router, prefix="/auth")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"ok": True}

    app.add_api_route("/r", endpoint, methods=["GET"])
    if not router_first:
        app.include_router(corpauth.router, prefix="/auth")
    return app


def endpoints(corpauth: CorpAuth, key: PyJWK) -> dict[str, Callable[..., Awaitable[Any]]]:
    async def noop() -> str:
        return "x"

    async def noop_yield() -> AsyncIterator[str]:
        yield "x"

    async def plain_pyjwt(request: Request) -> dict[str, Any]:
        return pyjwt_decode(request.headers["authorization"].partition(" ")[2], key)

    async def bare() -> dict[str, Any]:
        return {"ok": True}

    async def with_noop(value: str = Depends(noop)) -> dict[str, Any]:
        return {"ok": bool(value)}

    async def with_noop_yield(value: str = Depends(noop_yield)) -> dict[str, Any]:
        return {"ok": bool(value)}

    async def with_bearer(token: str = Depends(corpauth.bearer_token)) -> dict[str, Any]:
        return {"ok": bool(token)}

    async def with_api_client(
        bank: httpx.AsyncClient = Depends(corpauth.api_client),
    ) -> dict[str, Any]:
        return {"ok": bank is not None}

    async def with_current_user(
        user: SignedInUser = Depends(corpauth.current_user),
    ) -> dict[str, Any]:
        return {"ok": bool(user.access_token)}

    async def with_starlette_session(request: Request) -> dict[str, Any]:
        user = request.session.get("user")
        if user is None:
            raise ValueError("no session")
        return {"ok": bool(user["access_token"])}

    async def with_verified(
        customer: VerifiedToken = Depends(corpauth.verified_bearer),
    ) -> dict[str, Any]:
        return {"ok": bool(customer.subject)}

    async def with_pyjwt(claims: dict[str, Any] = Depends(plain_pyjwt)) -> dict[str, Any]:
        return {"ok": bool(claims["sub"])}

    return {
        "bare": bare,
        "noop": with_noop,
        "noop (yield)": with_noop_yield,
        "bearer_token": with_bearer,
        "api_client": with_api_client,
        "current_user": with_current_user,
        "SessionMiddleware": with_starlette_session,
        "verified_bearer": with_verified,
        "PyJWT decode": with_pyjwt,
    }


def starlette_cookie(user: SignedInUser) -> str:
    """Starlette's session cookie holding the same user record the plugin keeps."""
    record = {
        "user": {
            "access_token": user.access_token,
            "expires_at": user.expires_at,
            "scope": list(user.token.scope or ()),
            "subject": user.subject,
            "profile": dict(user.profile),
        }
    }
    data = base64.b64encode(json.dumps(record).encode())
    return TimestampSigner(SESSION_SECRET).sign(data).decode()


async def measure(profile: Profile, report: Report) -> None:
    devserver = bank()
    corpauth = corpauth_for(devserver)
    token = mint(devserver)
    key = PyJWK(devserver.state.devserver.signing_key.public_jwk(), "RS256")
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(corpauth.lifespan(FastAPI()))
        await corpauth.get_token()  # the company token is cached from here on
        site = Site(corpauth)
        session = await site.sign_in(token)
        stored = await corpauth.sessions.load(corpauth.cookies.load(session))
        assert stored is not None
        cookie = f"{site.cookie(session)}; session={starlette_cookie(stored.user)}"
        headers = [
            (b"cookie", cookie.encode()),
            (b"authorization", f"Bearer {token['access_token']}".encode()),
            (b"accept", b"application/json"),
        ]
        routes = endpoints(corpauth, key)
        apps = {
            label: app_with(corpauth, endpoint, session_middleware=label == "SessionMiddleware")
            for label, endpoint in routes.items()
        }
        apps["noop, router first"] = app_with(corpauth, routes["noop"], router_first=True)
        # An A/A pair: what the method reads between two identical apps is its noise.
        apps["noop again"] = app_with(corpauth, routes["noop"])

        def operation(app: FastAPI) -> Callable[[], Awaitable[int]]:
            return lambda: asgi_call(app, "/r", headers)

        for label, app in apps.items():
            status = await asgi_call(app, "/r", headers)
            if status != 200:
                raise RuntimeError(f"{label} answered {status}")
        rounds = profile.pick(11, 7)
        n = profile.pick(2000, 800)
        for comparison, variant, baseline, target in COMPARISONS:
            # Each pair alone, batch after batch: nothing else runs between the two.
            pair = await alternate(
                {variant: operation(apps[variant]), baseline: operation(apps[baseline])},
                rounds=rounds,
                n=n,
            )
            print(f"  {variant:<20} {micros(pair[variant])}   {baseline}: {micros(pair[baseline])}")
            add_ratio(
                report,
                "1. " + (comparison or f"(information) {variant} vs {baseline}"),
                pair,
                variant,
                baseline,
                target,
                target_text=("≥ 1.00 in every round (no slower)" if target == 1.0 else None),
            )


#: (label, variant, baseline, target): the targets first, then what explains them.
COMPARISONS: tuple[tuple[str | None, str, str, float | None], ...] = (
    ("bearer_token vs a no-op dependency", "bearer_token", "noop", 0.97),
    ("api_client vs a no-op dependency", "api_client", "noop", 0.95),
    (
        "current_user (in-memory store) vs Starlette SessionMiddleware",
        "current_user",
        "SessionMiddleware",
        1.00,
    ),
    ("verified_bearer vs plain PyJWT decode (cached key)", "verified_bearer", "PyJWT decode", 1.00),
    (None, "noop again", "noop", None),
    (None, "noop", "bare", None),
    (None, "noop (yield)", "noop", None),
    (None, "current_user", "noop", None),
    (None, "verified_bearer", "noop", None),
    (None, "noop", "noop, router first", None),
)


def run(profile: Profile, report: Report) -> None:
    asyncio.run(measure(profile, report))
