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
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse

from fastapi_corpauth import CorpAuth, CorpAuthSettings, SignedInUser
from fastapi_corpauth.devserver import DevClient, create_devserver

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
    async def home(user: SignedInUser | None = Depends(corpauth.optional_user)) -> str:
        if user is None:
            body = (
                "<p>You are not signed in.</p>"
                '<p><a id="sign-in" class="button" href="/auth/login?next=/">'
                "Sign in with the bank</a> "
                '<a id="sign-in-ka" class="button" href="/auth/login?lang=ka&amp;next=/">'
                "ბანკით შესვლა</a></p>"
            )
        else:
            expires = datetime.fromtimestamp(user.expires_at, UTC).strftime("%H:%M:%S UTC")
            body = (
                f'<p>Signed in as <strong id="who">{html.escape(user.display_name or "?")}'
                f"</strong> (session valid until {expires}).</p>"
                '<p><a id="accounts" href="/accounts">Show the company\'s accounts</a></p>'
                '<form method="post" action="/auth/logout">'
                '<button id="sign-out" type="submit">Sign out</button></form>'
            )
        return page("Business accounts", body)

    @app.get("/accounts", response_class=HTMLResponse)
    async def accounts(
        user: SignedInUser = Depends(corpauth.current_user),
        bank: httpx.AsyncClient = Depends(corpauth.api_client),
    ) -> str:
        response = await bank.get("accounts")
        if response.status_code != 200:
            return page("Accounts", f"<p>The bank answered HTTP {response.status_code}.</p>")
        rows = "".join(account_row(account) for account in response.json()["accounts"])
        return page(
            "Accounts",
            '<p><a href="/">Home</a></p>'
            '<table id="accounts-table"><tr><th>IBAN</th><th>Holder</th><th>Currency</th>'
            f"<th>Balance</th></tr>{rows}</table>",
        )

    @app.get("/api/accounts")
    async def accounts_json(bank: httpx.AsyncClient = Depends(corpauth.api_client)) -> Any:
        response = await bank.get("accounts")
        return response.json()

    return app


def account_row(account: dict[str, Any]) -> str:
    cells = (account.get(key, "") for key in ("iban", "holder", "currency", "balance"))
    return "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in cells) + "</tr>"


def page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


app = create_app()
