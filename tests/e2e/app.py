"""The app that end-to-end tests run in worker processes: the plugin, and nothing else.

Settings come from the ``CORPAUTH_*`` environment. ``/api/accounts`` answers anyone with
the company's accounts through ``api_client``: load tests measure the shared token with
it. A real app never serves bank data to anonymous callers (the example app does not).
"""

from __future__ import annotations

import html
from typing import Any

import httpx
from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse

from fastapi_corpauth import CorpAuth, CorpAuthSettings, SignedInUser

corpauth = CorpAuth(CorpAuthSettings())
app = FastAPI(lifespan=corpauth.lifespan)
app.include_router(corpauth.router, prefix="/auth")


@app.get("/", response_class=HTMLResponse)
async def home(user: SignedInUser | None = Depends(corpauth.optional_user)) -> str:
    if user is None:
        return "<p>You are not signed in.</p>"
    return f'<p>Signed in as <strong id="who">{html.escape(user.display_name or "?")}</strong></p>'


@app.get("/accounts")
async def accounts(
    user: SignedInUser = Depends(corpauth.current_user),
    bank: httpx.AsyncClient = Depends(corpauth.api_client),
) -> Any:
    return (await bank.get("accounts")).json()


@app.get("/api/accounts")
async def company_accounts(bank: httpx.AsyncClient = Depends(corpauth.api_client)) -> Any:
    return (await bank.get("accounts")).json()
