"""The apps the throughput and worker measures serve with uvicorn (``--factory``).

``plugin_app`` reads ``CORPAUTH_*`` like any application (``CorpAuth(CorpAuthSettings())``).
Every endpoint returns the same small JSON body, so only the auth work differs:

* ``/bare``: no dependency at all (the baseline);
* ``/noop``: one trivial async dependency (what FastAPI's dependency injection costs);
* ``/bearer``: ``Depends(corpauth.bearer_token)``, the cached client_credentials token;
* ``/me``: ``Depends(corpauth.current_user)``, the signed-in customer (session cookie);
* ``/token-id``: which token this worker uses (measure 6);
* ``/cached-token-id``: which token this worker holds, without fetching (measure 6).

``starlette_session_app`` is the Starlette ``SessionMiddleware`` baseline: ``/set`` stores
the same user record the plugin keeps server-side in the signed cookie, once, and
``/session`` reads it like ``/me`` does.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from starlette.middleware.sessions import SessionMiddleware

from fastapi_corpauth import CorpAuth, CorpAuthSettings, SignedInUser

SAME_LENGTH = "x" * 800  # about the length of a devserver access token


def plugin_app() -> FastAPI:
    corpauth = CorpAuth(CorpAuthSettings())
    app = FastAPI(lifespan=corpauth.lifespan)
    app.state.corpauth = corpauth

    async def noop() -> str:
        return SAME_LENGTH

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"ok": True}

    @app.get("/bare")
    async def bare() -> dict[str, Any]:
        return {"length": len(SAME_LENGTH)}

    @app.get("/noop")
    async def with_noop(value: str = Depends(noop)) -> dict[str, Any]:
        return {"length": len(value)}

    @app.get("/bearer")
    async def bearer(token: str = Depends(corpauth.bearer_token)) -> dict[str, Any]:
        return {"length": len(token)}

    @app.get("/me")
    async def me(user: SignedInUser = Depends(corpauth.current_user)) -> dict[str, Any]:
        return {"length": len(user.access_token)}

    @app.get("/token-id")
    async def token_id(token: str = Depends(corpauth.bearer_token)) -> dict[str, Any]:
        return {"pid": os.getpid(), "token": hashlib.sha256(token.encode()).hexdigest()[:16]}

    @app.get("/cached-token-id")
    async def cached_token_id() -> dict[str, Any]:
        # The token this worker holds now, without ever fetching one.
        cached = corpauth.tokens.cached
        digest = hashlib.sha256(cached.access_token.encode()).hexdigest()[:16] if cached else None
        return {"pid": os.getpid(), "token": digest}

    # Last, as the docs recommend: the app's own routes are matched first.
    app.include_router(corpauth.router, prefix="/auth")
    return app


def starlette_session_app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(SessionMiddleware, secret_key=os.environ["BENCH_SESSION_SECRET"])

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"ok": True}

    @app.post("/set")
    async def set_session(request: Request) -> dict[str, Any]:
        request.session["user"] = await request.json()
        return {"ok": True}

    @app.get("/session")
    async def session(request: Request) -> dict[str, Any]:
        user = request.session.get("user")
        if user is None:
            raise HTTPException(status_code=401)
        return {"length": len(user["access_token"])}

    return app
