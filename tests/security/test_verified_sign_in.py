"""Genuine sign-ins still work, over every Keycloak variant, and verification holds up when
keys rotate or the bank's endpoints fail; ``verified_bearer`` for desktop-app backends."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from fastapi_corpauth.devserver import DEFAULT_USERS, FLAVOURS
from tests.security.conftest import ISSUER, open_site
from tests.security.test_login_csrf import assert_refused, bank_answer, deliver, sessions_in
from tests.support import Breakable, FakeClock

pytestmark = pytest.mark.anyio

#: Keycloak 18 and older do not URL-decode Basic credentials (protocol notes §2.5).
LEGACY = {"legacy", "bank-docs"}


def flavour_settings(flavour: str, **overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {"flavour": flavour}
    if flavour in LEGACY:
        settings["client_auth_method"] = "client_secret_post"
    if flavour == "bank-docs":
        settings["response_mode"] = "query"
    settings.update(overrides)
    return settings


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
@pytest.mark.parametrize("response_type", ["token", "code"])
async def test_a_genuine_sign_in_over_every_variant(flavour: str, response_type: str) -> None:
    scope = "openid corp" if response_type == "code" else "corp"
    async with open_site(
        **flavour_settings(flavour, response_type=response_type, scope=scope)
    ) as site:
        browser = await site.browser()
        outcome = await browser.sign_in("?next=/me")
        assert outcome.final.status_code == 303, outcome.final.text
        assert (await browser.get("/me")).json() == {"name": "Nino Beridze"}
        session_id = site.corpauth.cookies.load(browser.session_cookie)
        user = await site.corpauth.sessions.load_user(session_id)
        assert user is not None
        assert user.subject == DEFAULT_USERS[0].subject  # from the verified claims
        assert user.client_id == "corp-app"
        introspected = site.dev.introspection_requests
        assert introspected == (1 if flavour == "opaque" else 0)
        if response_type == "code" and "nonce" not in outcome.authorize_url:
            pytest.fail("an openid sign-in must send a nonce")


async def test_sessions_survive_a_key_rotation_and_new_sign_ins_refetch_once() -> None:
    clock = FakeClock(time.time())
    async with open_site(clock=clock) as site:
        first = await site.browser()
        assert (await first.sign_in()).final.status_code == 303
        reads = site.dev.jwks_requests
        site.dev.rotate_keys(grace=60)
        second = await site.browser()
        assert (await second.sign_in()).final.status_code == 303
        assert site.dev.jwks_requests == reads + 1
        for browser in (first, second):
            assert (await browser.get("/me")).status_code == 200
        third = await site.browser()
        assert (await third.sign_in()).final.status_code == 303
        assert site.dev.jwks_requests == reads + 1  # the new key is known now


@pytest.mark.parametrize(
    "failure", [httpx.ConnectError("refused"), 503, 500], ids=["refused", "503", "500"]
)
async def test_unreachable_keys_refuse_new_sign_ins_and_keep_sessions(failure: Any) -> None:
    clock = FakeClock(time.time())
    transport: Breakable | None = None

    def breakable(app: Any) -> Breakable:
        nonlocal transport
        transport = Breakable(httpx.ASGITransport(app=app))
        return transport

    async with open_site(clock=clock, transport_factory=breakable) as site:
        assert transport is not None
        signed_in = await site.browser()
        assert (await signed_in.sign_in()).final.status_code == 303
        transport.broken["/certs"] = failure
        site.dev.rotate_keys(grace=0)  # new sign-ins need keys the app has not read
        newcomer = await site.browser()
        _, fields = await bank_answer(newcomer)
        response = await deliver(newcomer, fields)
        assert response.status_code == 503
        assert response.headers["x-corpauth-error"] == "verification_unavailable"
        assert "cannot confirm sign-ins right now" in response.text
        assert (await newcomer.get("/me")).status_code == 401
        assert sessions_in(site) == 1
        assert (await signed_in.get("/me")).status_code == 200  # existing sessions go on
        transport.broken.clear()
        clock.advance(10)  # failed reads are retried after the refetch interval
        assert (await newcomer.sign_in()).final.status_code == 303


async def test_an_unreachable_introspection_endpoint_refuses_opaque_sign_ins() -> None:
    transport: Breakable | None = None

    def breakable(app: Any) -> Breakable:
        nonlocal transport
        transport = Breakable(httpx.ASGITransport(app=app))
        return transport

    async with open_site(flavour="opaque", transport_factory=breakable) as site:
        assert transport is not None
        signed_in = await site.browser()
        assert (await signed_in.sign_in()).final.status_code == 303
        transport.broken["/token/introspect"] = httpx.ReadTimeout("slow")
        newcomer = await site.browser()
        _, fields = await bank_answer(newcomer)
        response = await deliver(newcomer, fields)
        assert response.status_code == 503
        assert response.headers["x-corpauth-error"] == "verification_unavailable"
        assert sessions_in(site) == 1
        assert (await signed_in.get("/me")).status_code == 200


async def test_sign_in_starts_while_discovery_is_down() -> None:
    transport: Breakable | None = None

    def breakable(app: Any) -> Breakable:
        nonlocal transport
        transport = Breakable(httpx.ASGITransport(app=app))
        transport.broken["/openid-configuration"] = httpx.ConnectError("down")
        return transport

    async with open_site(transport_factory=breakable) as site:
        browser = await site.browser()
        response, _ = await browser.start()  # Keycloak's documented path as the fallback
        assert response.headers["location"].startswith(ISSUER + "/protocol/openid-connect/auth?")
        # Without discovery, iss cannot be demanded (a KC < 23 sends none); it is still
        # checked when present, and the token still verified.
        outcome = await browser.sign_in()
        assert outcome.final.status_code == 303


# --- verified_bearer ---------------------------------------------------------------------------


async def test_verified_bearer_for_a_desktop_apps_backend() -> None:
    async with open_site(bearer_client_ids="desktop-app") as site:
        client = await site.raw_client()
        customer = site.dev.mint_user_tokens(client_id="corp-app", issuer=ISSUER).access_token
        site.secrets.add(customer)
        response = await client.get("/desktop/me", headers={"Authorization": f"Bearer {customer}"})
        assert response.status_code == 200
        assert response.json() == {"subject": DEFAULT_USERS[0].subject, "client_id": "corp-app"}


@pytest.mark.parametrize(
    ("authorization", "has_error"),
    [
        (None, False),
        ("Basic dXNlcjpwYXNz", False),
        ("Bearer", False),
        ("Bearer x", True),
        ("Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJjZW8ifQ.", True),
    ],
)
async def test_verified_bearer_challenges(authorization: str | None, has_error: bool) -> None:
    async with open_site() as site:
        client = await site.raw_client()
        headers = {"Authorization": authorization} if authorization else {}
        response = await client.get("/desktop/me", headers=headers)
        assert response.status_code == 401
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith("Bearer ")
        assert ('error="invalid_token"' in challenge) is has_error
        assert response.json()["detail"]["code"] == (
            "invalid_token" if has_error else "not_authenticated"
        )


async def test_verified_bearer_refuses_other_clients_and_service_accounts() -> None:
    async with open_site() as site:
        client = await site.raw_client()
        other = site.dev.mint_user_tokens(client_id="other-app", issuer=ISSUER).access_token
        service = (await site.corpauth.get_token()).access_token
        site.secrets |= {other, service}
        for token in (other, service):
            response = await client.get("/desktop/me", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 401
            assert 'error="invalid_token"' in response.headers["www-authenticate"]
    async with open_site(bearer_client_ids="other-app,desktop-app") as site:
        client = await site.raw_client()
        other = site.dev.mint_user_tokens(client_id="other-app", issuer=ISSUER).access_token
        site.secrets.add(other)
        response = await client.get("/desktop/me", headers={"Authorization": f"Bearer {other}"})
        assert response.json()["client_id"] == "other-app"


async def test_verified_bearer_is_a_503_while_keys_are_unreachable() -> None:
    transport: Breakable | None = None

    def breakable(app: Any) -> Breakable:
        nonlocal transport
        transport = Breakable(httpx.ASGITransport(app=app))
        transport.broken["/certs"] = httpx.ConnectError("down")
        return transport

    async with open_site(transport_factory=breakable) as site:
        client = await site.raw_client()
        token = site.dev.mint_user_tokens(client_id="corp-app", issuer=ISSUER).access_token
        site.secrets.add(token)
        response = await client.get("/desktop/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 503
        assert response.json()["detail"]["code"] == "verification_unavailable"
        assert response.headers["retry-after"] == "5"


async def test_verified_bearer_is_an_http_bearer_scheme_in_openapi() -> None:
    async with open_site() as site:
        client = await site.raw_client()
        schema = (await client.get("/openapi.json")).json()
        schemes = schema["components"]["securitySchemes"]
        assert schemes["BankCustomerToken"] == {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "A customer's access token issued by the bank's authorization server.",
        }
        operation = schema["paths"]["/desktop/me"]["get"]
        assert operation["security"] == [{"BankCustomerToken": []}]


async def test_the_token_endpoint_answering_404_is_named_a_misconfiguration() -> None:
    async with open_site(token_url=ISSUER + "/protocol/openid-connect/nothing-here") as site:
        client = await site.raw_client()
        response = await client.get("/accounts")
        assert response.status_code == 502
        assert response.json()["detail"]["code"] == "token_endpoint_not_found"
        assert "issuer" in response.json()["detail"]["message"]


async def test_the_banks_error_code_reaches_the_page_and_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", "fastapi_corpauth")
    async with open_site(scope="corp payments:write") as site:
        browser = await site.browser()
        login, _ = await browser.start()
        answer = await browser.get(login.headers["location"])  # invalid_scope, at once
        _, response = await browser.deliver(answer)
        await assert_refused(browser, response, "authorization_denied")
        assert '<code id="provider-error">invalid_scope</code>' in response.text
        assert "sign-in refused: authorization_denied (invalid_scope)" in caplog.text


async def test_a_cancelled_georgian_sign_in_answers_in_georgian() -> None:
    async with open_site() as site:
        browser = await site.browser()
        login, _ = await browser.start("?lang=ka&next=/me")
        answer = await browser.authorize(login.headers["location"], cancel=True)
        _, page = await browser.deliver(answer)
        assert page.status_code == 403
        assert '<html lang="ka">' in page.text
        assert "შესვლა ბანკის გვერდზე გაუქმდა." in page.text  # cancelled at the bank
        assert 'href="https://app.test/auth/login?lang=ka&amp;next=%2Fme"' in page.text
        again = await browser.get("https://app.test/auth/login?lang=ka&next=%2Fme")
        assert "kc_locale=ka" in again.headers["location"]
