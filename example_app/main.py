"""Example application: a corporate customer signs in with the bank and sees accounts.

Run ``./scripts/run-example``. With no ``CORPAUTH_*`` variables set, the app mounts the
package's development authorization server under ``/idp`` on the same origin and talks
to it over HTTP, exactly as it would to the bank (sign in as ``demo`` / ``demo``). With
``CORPAUTH_CLIENT_ID``, ``CORPAUTH_CLIENT_SECRET``, ``CORPAUTH_ISSUER`` and
``CORPAUTH_SESSION_SECRET`` set, it talks to that Keycloak instead.
"""

from __future__ import annotations

import html
import os
import secrets
from typing import Any

import httpx
from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse

from fastapi_corpauth import CorpAuth, CorpAuthSettings, SignedInUser
from fastapi_corpauth.devserver import DevClient, create_devserver

from . import pages

DEV_CLIENT_ID = "corp-app"
DEV_CLIENT_SECRET = "dev-secret"  # noqa: S105 - the development server's published secret


def load_settings(environ: dict[str, str] | None = None) -> tuple[CorpAuthSettings, bool]:
    """Settings from the environment, or the development server's when none are set."""
    environ = dict(os.environ if environ is None else environ)
    if environ.get("CORPAUTH_ISSUER"):
        return CorpAuthSettings(), False
    public_url = environ.get("EXAMPLE_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
    return (
        CorpAuthSettings(
            client_id=DEV_CLIENT_ID,
            client_secret=DEV_CLIENT_SECRET,
            issuer=f"{public_url}/idp/realms/bog",
            api_base_url=f"{public_url}/idp/api",
            # A fresh key per start: development sessions end when the server restarts.
            session_secret=environ.get("CORPAUTH_SESSION_SECRET") or secrets.token_urlsafe(32),
            login_redirect=True,
            logout_at_provider=True,
        ),
        True,
    )


def create_app(
    settings: CorpAuthSettings | None = None,
    *,
    development: bool | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    if settings is None:
        settings, development = load_settings()
    corpauth = CorpAuth(settings, transport=transport)
    app = FastAPI(title="fastapi-corpauth example", lifespan=corpauth.lifespan)
    app.state.corpauth = corpauth
    if development:
        app.mount(
            "/idp",
            create_devserver(
                clients=(DevClient(client_id=DEV_CLIENT_ID, client_secret=DEV_CLIENT_SECRET),)
            ),
        )

    app.include_router(corpauth.router, prefix="/auth")

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
        language = pages.language(lang)
        text = pages.TEXT[language]
        name = user.display_name or "?"
        response = await bank.get("accounts")
        if response.status_code != 200:
            message = text["bank_error"].format(status=response.status_code)
            body = f'<section class="card"><p id="bank-error">{message}</p></section>'
            return pages.layout(language, text["accounts"], body, path="/accounts", user_name=name)
        rows = pages.account_rows(response.json()["accounts"], language)
        body = (
            f'<p class="muted">{text["accounts_note"]}</p>'
            '<section class="card table-wrap"><table id="accounts-table"><thead><tr>'
            f'<th>{text["iban"]}</th><th class="narrow-hide">{text["holder"]}</th>'
            f'<th class="narrow-hide">{text["currency"]}</th>'
            f'<th class="amount">{text["balance"]}</th></tr></thead>'
            f"<tbody>{rows}</tbody></table></section>"
        )
        return pages.layout(language, text["accounts"], body, path="/accounts", user_name=name)

    @app.get("/my-accounts", response_class=HTMLResponse)
    async def my_accounts(
        lang: str | None = None,
        user: SignedInUser = Depends(corpauth.current_user),
        bank: httpx.AsyncClient = Depends(corpauth.user_api_client),
    ) -> str:
        language = pages.language(lang)
        text = pages.TEXT[language]
        name = user.display_name or "?"
        response = await bank.get("accounts")
        if response.status_code != 200:
            message = text["bank_error"].format(status=response.status_code)
            body = f'<section class="card"><p id="bank-error">{message}</p></section>'
            return pages.layout(
                language, text["my_accounts"], body, path="/my-accounts", user_name=name
            )
        rows = pages.account_rows(response.json()["accounts"], language)
        body = (
            f'<p class="muted">{text["my_accounts_note"]}</p>'
            '<section class="card table-wrap"><table id="my-accounts-table"><thead><tr>'
            f'<th>{text["iban"]}</th><th class="narrow-hide">{text["holder"]}</th>'
            f'<th class="narrow-hide">{text["currency"]}</th>'
            f'<th class="amount">{text["balance"]}</th></tr></thead>'
            f"<tbody>{rows}</tbody></table></section>"
        )
        return pages.layout(
            language, text["my_accounts"], body, path="/my-accounts", user_name=name
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

    # Company data for anonymous callers: a demonstration of api_client that the load and
    # worker tests use. A real app puts Depends(corpauth.current_user) on such a route.
    @app.get("/api/accounts")
    async def accounts_json(bank: httpx.AsyncClient = Depends(corpauth.api_client)) -> Any:
        response = await bank.get("accounts")
        return response.json()

    return app


app = create_app()
