"""Sessions that last the working day, against the development server's real flows.

Code flow: refreshed server-side shortly before each token expires, once per session
however many requests ask, ended cleanly when the bank refuses. Implicit flow: renewed
through the bank with ``prompt=none`` on a page view, without the password form. Also
the customer's own API client, one-click sign-out, cross-site sign-out and caching.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from fastapi import FastAPI

from tests.security.conftest import APP, ISSUER, Browser, Site, open_site
from tests.support import FakeClock

pytestmark = pytest.mark.anyio

PAGE = {"Accept": "text/html,application/xhtml+xml", "Sec-Fetch-Mode": "navigate"}
CODE_FLOW: dict[str, Any] = {"response_type": "code", "scope": "openid corp"}


def stored(site: Site, browser: Browser) -> Any:
    return site.corpauth.sessions.load(site.corpauth.cookies.load(browser.session_cookie))


async def signed_in_browser(site: Site) -> Browser:
    browser = await site.browser()
    outcome = await browser.sign_in()
    assert outcome.final.status_code == 303, outcome.final.text
    return browser


# --- the code flow: refreshed server-side ---------------------------------------------------


async def test_a_code_flow_session_outlives_many_tokens() -> None:
    clock = FakeClock(time.time())
    async with open_site(
        clock=clock, devserver_options={"token_lifetime": 300}, **CODE_FLOW
    ) as site:
        browser = await signed_in_browser(site)
        first = await stored(site, browser)
        for round_ in range(1, 11):  # 10 lifetimes: 48 minutes
            clock.advance(290)
            me = await browser.get("/me")
            assert me.status_code == 200, me.text
            assert site.dev.refreshes == round_
        latest = await stored(site, browser)
        assert latest.user.subject == first.user.subject
        assert latest.refresh_token != first.refresh_token  # rotated each time
        assert latest.user.signed_in_at == first.user.signed_in_at
        # Refreshed in place: the browser's cookie still names the same session.
        assert site.corpauth.cookies.load(browser.session_cookie) == first.session_id


async def test_two_tabs_and_many_requests_refresh_once() -> None:
    clock = FakeClock(time.time())
    async with open_site(
        clock=clock, devserver_options={"token_lifetime": 300}, **CODE_FLOW
    ) as site:
        browser = await signed_in_browser(site)
        clock.advance(290)
        answers = await asyncio.gather(*(browser.get("/me") for _ in range(20)))
        assert {a.status_code for a in answers} == {200}
        assert site.dev.refreshes == 1
        assert site.corpauth._require_running().sign_in.refreshes_sent == 1


@pytest.mark.parametrize(
    "ending", ["sso-logged-out", "sso-idle", "not-before-push"], ids=lambda e: e
)
async def test_the_bank_ending_the_session_ends_it_here(ending: str) -> None:
    clock = FakeClock(time.time())
    options = {"token_lifetime": 300, "sso_idle": 600}
    async with open_site(clock=clock, devserver_options=options, **CODE_FLOW) as site:
        browser = await signed_in_browser(site)
        if ending == "sso-logged-out":
            site.dev.end_sso_sessions()
            clock.advance(290)
        elif ending == "sso-idle":
            clock.advance(601)  # nobody used the session for longer than SSO Session Idle
        else:
            site.dev.push_not_before()
            clock.advance(290)
        me = await browser.get("/me")
        assert me.status_code == 401
        assert me.json()["detail"]["code"] == "session_expired"
        assert await stored(site, browser) is None  # ended, not left to linger
        page = await browser.get("/me", headers=PAGE)
        assert page.status_code == 401


async def test_a_transient_refresh_failure_keeps_the_session() -> None:
    clock = FakeClock(time.time())
    async with open_site(
        clock=clock, devserver_options={"token_lifetime": 300}, **CODE_FLOW
    ) as site:
        browser = await signed_in_browser(site)
        site.dev.set_faults(status=503, retry_after=1)
        clock.advance(290)  # near the end, still valid: served as it is
        assert (await browser.get("/me")).status_code == 200
        clock.advance(20)  # expired, and the bank still failing: try again later
        down = await browser.get("/me")
        assert down.status_code == 503
        assert down.json()["detail"]["code"] == "token_endpoint_unavailable"
        site.dev.clear_faults()
        assert (await browser.get("/me")).status_code == 200  # kept, and refreshed now
        assert site.dev.refreshes == 1


async def test_the_customers_own_api_client_stays_valid() -> None:
    clock = FakeClock(time.time())
    async with open_site(
        clock=clock, devserver_options={"token_lifetime": 300}, **CODE_FLOW
    ) as site:
        browser = await signed_in_browser(site)
        for _ in range(5):
            clock.advance(290)
            answer = await browser.get("/my-accounts")
            assert answer.json() == {"status": 200}
        # The bank stops accepting the customer's token: the session ends here too.
        site.dev.push_not_before()
        refused = await browser.get("/my-accounts")
        assert refused.status_code == 401
        assert refused.json()["detail"]["code"] == "session_expired"
        assert await stored(site, browser) is None


class _FailingBankApi(httpx.AsyncBaseTransport):
    """The bank API, until ``failure`` says how it fails: "unreachable" (connect timeout)
    or "mid-body" (the connection drops while the answer streams in)."""

    def __init__(self, bank: httpx.AsyncBaseTransport) -> None:
        self._bank = bank
        self.failure: str | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.failure == "unreachable":
            raise httpx.ConnectTimeout("timed out")
        if self.failure == "mid-body":
            return httpx.Response(200, stream=_DropsMidBody())
        return await self._bank.handle_async_request(request)


class _DropsMidBody(httpx.AsyncByteStream):
    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b'{"accounts": ['
        raise httpx.ReadError("connection reset by peer")


@pytest.mark.parametrize("failure", ["unreachable", "mid-body"])
async def test_the_customers_client_answers_503_when_the_bank_api_fails(failure: str) -> None:
    bank_api: list[_FailingBankApi] = []

    def failing(devserver: FastAPI) -> httpx.AsyncBaseTransport:
        bank_api.append(_FailingBankApi(httpx.ASGITransport(app=devserver)))
        return bank_api[0]

    async with open_site(api_transport_factory=failing, **CODE_FLOW) as site:
        browser = await signed_in_browser(site)
        bank_api[0].failure = failure
        answer = await browser.get("/my-accounts")
        assert answer.status_code == 503, answer.text
        assert answer.json()["detail"]["code"] == "bank_api_unavailable"
        assert "reset" not in answer.text and "timed out" not in answer.text
        bank_api[0].failure = None
        assert (await browser.get("/my-accounts")).json() == {"status": 200}  # still signed in


# --- the implicit flow: renewed through the bank -----------------------------------------------


async def follow(browser: Browser, response: httpx.Response, *, limit: int = 8) -> httpx.Response:
    """Follow redirects and relay pages as a browser would, across app and bank."""
    for _ in range(limit):
        if response.status_code in (302, 303) and "#" in response.headers["location"]:
            _, response = await browser.deliver(response)
            continue
        if response.status_code in (302, 303):
            response = await browser.get(response.headers["location"], headers=PAGE)
            continue
        return response
    raise AssertionError("too many redirects")


async def test_a_page_view_near_the_end_renews_silently() -> None:
    clock = FakeClock(time.time())
    async with open_site(clock=clock, devserver_options={"implicit_token_lifetime": 300}) as site:
        browser = await signed_in_browser(site)
        before = await stored(site, browser)
        clock.advance(290)
        api = await browser.get("/me")  # not a page view: served while valid
        assert api.status_code == 200
        page = await browser.get("/me", headers=PAGE)
        assert page.status_code == 303
        location = page.headers["location"]
        assert location == APP + "/auth/login?next=%2Fme&prompt=none"
        login = await browser.get(location)
        authorize = dict(parse_qsl(urlsplit(login.headers["location"]).query))
        assert authorize["prompt"] == "none"
        landed = await follow(browser, login)
        assert landed.status_code == 200
        assert landed.json() == {"name": "Nino Beridze"}
        assert site.dev.logins == 1  # the SSO session answered: no password form
        after = await stored(site, browser)
        assert after.token.expires_at > before.token.expires_at
        assert after.user.subject == before.user.subject
        again = await browser.get("/me", headers=PAGE)
        assert again.status_code == 200  # fresh: no second renewal


async def test_an_expired_implicit_session_is_renewed_on_the_next_page_view() -> None:
    clock = FakeClock(time.time())
    async with open_site(clock=clock, devserver_options={"implicit_token_lifetime": 300}) as site:
        browser = await signed_in_browser(site)
        clock.advance(400)
        api = await browser.get("/me")
        assert api.status_code == 401
        assert api.json()["detail"]["code"] == "session_expired"  # a front end navigates
        landed = await follow(browser, await browser.get("/me", headers=PAGE))
        assert landed.json() == {"name": "Nino Beridze"}
        assert site.dev.logins == 1


async def test_without_the_banks_session_the_page_view_leads_to_the_sign_in_form() -> None:
    clock = FakeClock(time.time())
    async with open_site(clock=clock, devserver_options={"implicit_token_lifetime": 300}) as site:
        browser = await signed_in_browser(site)
        site.dev.end_sso_sessions()
        clock.advance(290)
        silent = await browser.get((await browser.get("/me", headers=PAGE)).headers["location"])
        answer = await browser.get(silent.headers["location"])  # at the bank: prompt=none
        assert answer.status_code == 302
        _, back = await browser.deliver(answer)  # login_required comes back
        # On to the ordinary sign-in, as a new navigation (a redirect after the relay's
        # form POST could not leave for the bank under its form-action 'self').
        assert back.status_code == 200
        onward = APP + "/auth/login?next=%2Fme"
        assert f'content="0;url={onward}"' in back.text
        ordinary = await browser.get(onward)
        form = await browser.get(ordinary.headers["location"])
        assert form.status_code == 200 and 'name="password"' in form.text


async def test_no_renewal_loop_with_very_short_tokens() -> None:
    clock = FakeClock(time.time())
    async with open_site(clock=clock, devserver_options={"implicit_token_lifetime": 8}) as site:
        browser = await signed_in_browser(site)
        clock.advance(7)
        landed = await follow(browser, await browser.get("/me", headers=PAGE))
        assert landed.status_code == 200
        clock.advance(7)  # near the end again at once: served, not bounced again
        assert (await browser.get("/me", headers=PAGE)).status_code == 200


# --- signing out ----------------------------------------------------------------------------


async def test_one_click_sign_out_with_the_id_token_as_hint() -> None:
    async with open_site(logout_at_provider=True, **CODE_FLOW) as site:
        browser = await signed_in_browser(site)
        response = await browser.post("/auth/logout?next=/bye")
        assert response.status_code == 303
        location = response.headers["location"]
        params = dict(parse_qsl(urlsplit(location).query))
        assert location.startswith(ISSUER + "/protocol/openid-connect/logout?")
        assert params["client_id"] == "corp-app"
        assert params["post_logout_redirect_uri"] == APP + "/bye"
        assert params["id_token_hint"].count(".") == 2
        at_bank = await browser.get(location)
        assert at_bank.status_code == 302  # no "Do you want to log out?" page
        assert at_bank.headers["location"] == APP + "/bye"
        assert len(site.dev.sso_sessions) == 0
        assert (await browser.get("/me")).status_code == 401


async def test_implicit_sign_out_names_the_client() -> None:
    async with open_site(logout_at_provider=True) as site:
        browser = await signed_in_browser(site)
        response = await browser.post("/auth/logout")
        params = dict(parse_qsl(urlsplit(response.headers["location"]).query))
        assert "id_token_hint" not in params  # an implicit corp sign-in has no ID token
        assert params["client_id"] == "corp-app"


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://app.test"},  # another scheme is another origin
    ],
)
async def test_a_cross_site_sign_out_leaves_the_session(headers: dict[str, str]) -> None:
    async with open_site() as site:
        browser = await signed_in_browser(site)
        refused = await browser.post("/auth/logout", headers=headers)
        assert refused.status_code == 403
        assert refused.headers["x-corpauth-error"] == "cross_site_request"
        assert (await browser.get("/me")).status_code == 200
        # A cross-site GET (a link, an image) only shows the button.
        assert (
            await browser.get("/auth/logout", headers={"Sec-Fetch-Site": "cross-site"})
        ).status_code == 200
        assert (await browser.get("/me")).status_code == 200
        same = {"Sec-Fetch-Site": "same-origin", "Origin": APP}
        assert (await browser.post("/auth/logout", headers=same)).status_code == 303
        assert (await browser.get("/me")).status_code == 401


async def test_customer_pages_are_never_cached() -> None:
    async with open_site() as site:
        anonymous = await site.browser()
        browser = await signed_in_browser(site)
        for who in (anonymous, browser):
            for path in ("/me", "/maybe"):
                response = await who.get(path)
                assert response.headers["cache-control"] == "no-store", path
                assert "cookie" in response.headers["vary"].lower(), path
