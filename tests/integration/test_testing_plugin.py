"""The pytest plugin users get: in-process devserver fixtures and a sign-in helper.

These tests use the fixtures exactly as a user's suite would: by name, without importing
them, since installing the package registers ``fastapi_corpauth.testing`` with pytest.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from fastapi_corpauth import CorpAuth, CorpAuthSettings, SignedInUser
from fastapi_corpauth.testing import DevServer, SignInFailed

pytestmark = pytest.mark.anyio


def create_app(corpauth: CorpAuth) -> FastAPI:
    app = FastAPI(lifespan=corpauth.lifespan)
    app.include_router(corpauth.router, prefix="/auth")

    @app.get("/me")
    async def me(user: SignedInUser = Depends(corpauth.current_user)) -> dict[str, Any]:
        return {"name": user.display_name}

    @app.get("/accounts")
    async def accounts(bank: httpx.AsyncClient = Depends(corpauth.api_client)) -> Any:
        return (await bank.get("accounts")).json()

    return app


@pytest.mark.parametrize(
    "flow",
    [
        {},
        {"response_mode": "form_post"},
        {"response_type": "code"},
        {"response_type": "code", "response_mode": "form_post"},
    ],
    ids=["fragment", "form_post", "code", "code-form_post"],
)
async def test_sign_in_through_the_real_page_in_every_flow(
    corpauth_devserver: DevServer, flow: dict[str, str]
) -> None:
    app = create_app(corpauth_devserver.corpauth(**flow))
    async with corpauth_devserver.client(app) as client:
        assert (await client.get("/me")).status_code == 401
        landing = await corpauth_devserver.sign_in(client, next="/me")
        assert str(landing.url) == "http://localhost/me"
        assert landing.json() == {"name": "Nino Beridze"}
        accounts = (await client.get("/accounts")).json()["accounts"]
        assert accounts[0]["iban"] == "GE28BG0000000101904917"
    assert corpauth_devserver.state.token_requests >= 1


async def test_wrong_password_is_a_clear_failure(corpauth_devserver: DevServer) -> None:
    app = create_app(corpauth_devserver.corpauth())
    async with corpauth_devserver.client(app) as client:
        with pytest.raises(SignInFailed, match="did not accept the user"):
            await corpauth_devserver.sign_in(client, password="wrong")
        assert (await client.get("/me")).status_code == 401


async def test_a_refused_sign_in_names_the_code(corpauth_devserver: DevServer) -> None:
    # Keycloak refuses the implicit flow in query mode; the app shows authorization_denied.
    app = create_app(corpauth_devserver.corpauth(response_mode="query"))
    async with corpauth_devserver.client(app) as client:
        with pytest.raises(SignInFailed, match="authorization_denied") as failed:
            await corpauth_devserver.sign_in(client)
        assert failed.value.response.headers["x-corpauth-error"] == "authorization_denied"


async def test_settings_fixture_points_at_the_devserver(
    corpauth_devserver: DevServer, corpauth_settings: CorpAuthSettings
) -> None:
    assert corpauth_settings.issuer == "http://devserver.test/realms/bog"
    assert corpauth_settings.api_base_url == corpauth_devserver.api_base_url
    environ = corpauth_devserver.environ()
    assert environ["CORPAUTH_ISSUER"] == corpauth_settings.issuer
    assert environ["CORPAUTH_SESSION_SECRET"] == (
        corpauth_settings.session_secret[0].get_secret_value()
    )
    # Without the lifespan the client still works for routes that need no bank call.
    corpauth = CorpAuth(corpauth_settings, transport=corpauth_devserver.transport())
    async with corpauth_devserver.client(create_app(corpauth), lifespan=False) as client:
        assert (await client.get("/accounts")).status_code == 503


async def test_each_test_gets_a_fresh_devserver(corpauth_devserver: DevServer) -> None:
    assert corpauth_devserver.state.token_requests == 0
    assert "devserver.test" in repr(corpauth_devserver)
