"""Example application: a corporate customer signs in with the bank and sees accounts.

Run ``./scripts/run-example``: it sets ``CORPAUTH_DEVELOPMENT=true``, and in development
mode without ``CORPAUTH_ISSUER`` the app mounts the package's development authorization
server under ``/idp`` on the same origin and talks to it over HTTP, exactly as it would to
the bank (sign in as ``demo`` / ``demo``). Development mode is read like every setting
(environment, then ``.env``) and works on this machine only. Without it the app needs
the bank's settings (``CORPAUTH_CLIENT_ID``, ``CORPAUTH_CLIENT_SECRET``,
``CORPAUTH_ISSUER``, ``CORPAUTH_SESSION_SECRET``, ``CORPAUTH_REDIRECT_URI``) and refuses
to start without them.
"""

from __future__ import annotations

import html
import os
import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse
from pydantic_settings import BaseSettings, SettingsConfigDict

from fastapi_corpauth import ConfigurationError, CorpAuth, CorpAuthSettings, SignedInUser
from fastapi_corpauth.devserver import DevClient, create_devserver

from . import pages
from .hosts import on_this_machine

DEV_CLIENT_ID = "corp-app"
DEV_CLIENT_SECRET = "dev-secret"  # noqa: S105 - the development server's published secret


class ExampleMode(BaseSettings):
    """Whether the example runs against its embedded development server: decided from
    the same sources as every setting, the environment and then ``.env``."""

    model_config = SettingsConfigDict(env_prefix="CORPAUTH_", env_file=".env", extra="ignore")

    development: bool = False
    issuer: str | None = None


def load_settings(
    environ: Mapping[str, str] | None = None,
) -> tuple[CorpAuthSettings, str | None]:
    """The app's settings, and the public URL of the embedded development server's app
    when it runs one (development mode without an issuer), else None.

    Raises:
        ConfigurationError: settings are missing, or development mode was asked for a
            public address (the development server would be anyone's bank).
    """
    env = dict(os.environ if environ is None else environ)
    mode = ExampleMode() if environ is None else ExampleMode(_env_file=None, **_mode_values(env))
    if not (mode.development and not mode.issuer):
        return CorpAuthSettings(), None
    public_url = env.get("EXAMPLE_PUBLIC_URL") or "http://127.0.0.1:8000"
    public_url = public_url.rstrip("/")
    if not on_this_machine(urlsplit(public_url).hostname):
        raise ConfigurationError(
            f"development mode serves a demo bank with a published password: it runs on "
            f"this machine only, not at {public_url}",
            variables=("CORPAUTH_DEVELOPMENT",),
        )
    settings = CorpAuthSettings(
        client_id=DEV_CLIENT_ID,
        client_secret=DEV_CLIENT_SECRET,
        issuer=f"{public_url}/idp/realms/bog",
        api_base_url=f"{public_url}/idp/api",
        # A fresh key per start: development sessions end when the server restarts.
        session_secret=env.get("CORPAUTH_SESSION_SECRET") or secrets.token_urlsafe(32),
        development=True,
        login_redirect=True,
        logout_at_provider=True,
    )
    return settings, public_url


def _mode_values(env: Mapping[str, str]) -> dict[str, Any]:
    return {
        name: env[f"CORPAUTH_{name.upper()}"]
        for name in ("development", "issuer")
        if f"CORPAUTH_{name.upper()}" in env
    }


def create_app(
    settings: CorpAuthSettings | None = None,
    *,
    development_url: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """The example app; with ``development_url`` it embeds the development server.

    The embedded server's test controls (``/idp/_dev/...``) need a token that is new at
    every start and printed then (``EXAMPLE_DEV_TOKEN`` chooses it, for tests).
    """
    if settings is None:
        settings, development_url = load_settings()
    corpauth = CorpAuth(settings, transport=transport)
    dev_token = os.environ.get("EXAMPLE_DEV_TOKEN") or secrets.token_urlsafe(16)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with corpauth.lifespan(app):
            if development_url is not None:
                print(
                    f"Development bank at {development_url}/idp (sign in as demo / demo); "
                    f"its test controls need the header X-Dev-Token: {dev_token}",
                    flush=True,
                )
            yield

    app = FastAPI(title="fastapi-corpauth example", lifespan=lifespan)
    app.state.corpauth = corpauth

    @app.get("/", response_class=HTMLResponse)
    async def home(
        lang: str | None = None, user: SignedInUser | None = Depends(corpauth.optional_user)
    ) -> str:
        language = pages.language(lang)
        text = pages.TEXT[language]
        if user is None:
            body = (
                f'<section class="card"><p>{text["intro"]}</p>'
                f"{pages.sign_in_buttons(language)}</section>"
            )
            return pages.layout(language, text["welcome"], body, path="/")
        name = user.display_name or "?"
        body = (
            '<section class="card"><dl class="facts">'
            f'<dt>{text["signed_in_as"]}</dt><dd id="who">{html.escape(name)}</dd>'
            f"<dt>{text['session_ends']}</dt>"
            f'<dd id="session-end">{pages.format_time(user.session_ends_at)}</dd></dl>'
            f'<div class="actions"><a id="accounts" class="button primary" '
            f'href="{html.escape(pages.link("/accounts", language))}">{text["accounts_link"]}</a>'
            f'<a id="my-accounts" class="button" '
            f'href="{html.escape(pages.link("/my-accounts", language))}">'
            f"{text['my_accounts_link']}</a>"
            "</div></section>"
        )
        return pages.layout(language, text["welcome"], body, path="/", user_name=name)

    @app.get("/accounts", response_class=HTMLResponse)
    async def accounts(
        lang: str | None = None,
        user: SignedInUser = Depends(corpauth.current_user),
        bank: httpx.AsyncClient = Depends(corpauth.api_client),
    ) -> str:
        return pages.accounts_page(
            pages.language(lang),
            kind="accounts",
            answer=await bank.get("accounts"),
            user_name=user.display_name or "?",
        )

    @app.get("/my-accounts", response_class=HTMLResponse)
    async def my_accounts(
        lang: str | None = None,
        user: SignedInUser = Depends(corpauth.current_user),
        bank: httpx.AsyncClient = Depends(corpauth.user_api_client),
    ) -> str:
        return pages.accounts_page(
            pages.language(lang),
            kind="my_accounts",
            answer=await bank.get("accounts"),
            user_name=user.display_name or "?",
        )

    @app.get("/signed-out", response_class=HTMLResponse)
    async def signed_out(lang: str | None = None) -> str:
        language = pages.language(lang)
        text = pages.TEXT[language]
        body = (
            f'<section class="card"><p id="signed-out">{text["signed_out_note"]}</p>'
            f"{pages.sign_in_buttons(language)}</section>"
        )
        return pages.layout(language, text["signed_out"], body, path="/signed-out")

    @app.get("/api/accounts")
    async def accounts_json(
        user: SignedInUser = Depends(corpauth.current_user),
        bank: httpx.AsyncClient = Depends(corpauth.api_client),
    ) -> Any:
        """The company's accounts as JSON, for a signed-in customer only."""
        response = await bank.get("accounts")
        return response.json()

    if development_url is not None:
        app.mount(
            "/idp",
            create_devserver(
                clients=(DevClient(client_id=DEV_CLIENT_ID, client_secret=DEV_CLIENT_SECRET),),
                dev_token=dev_token,
            ),
        )
    # Included after the app's own routes: a request is matched against routes in order,
    # so the sign-in routes (and the development bank) then cost the app's pages nothing.
    app.include_router(corpauth.router, prefix="/auth")
    return app


app = create_app()
