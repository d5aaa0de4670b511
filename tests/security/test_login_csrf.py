"""Login CSRF and injection: every callback that does not belong to this browser's own,
live, unused sign-in is refused, and none of them creates a session.

The bank's answers are real: a browser signs in on the devserver's form as demo/demo.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest

from fastapi_corpauth._login_protocol import new_state
from tests.security.conftest import COOKIE, ISSUER, Browser, Site, open_site
from tests.support import FakeClock

pytestmark = pytest.mark.anyio


async def bank_answer(browser: Browser, *, cancel: bool = False) -> tuple[str, dict[str, str]]:
    """Start a sign-in and complete it at the bank; return the state and the bank's answer
    (fragment mode) without delivering it."""
    login, state = await browser.start()
    answer = await browser.authorize(login.headers["location"], cancel=cancel)
    assert answer.status_code == 302
    fields = dict(parse_qsl(urlsplit(answer.headers["location"]).fragment))
    assert fields.get("state") == state
    for name in ("access_token", "state"):
        if name in fields:
            browser.site.secrets.add(fields[name])
    return state, fields


async def deliver(browser: Browser, fields: Mapping[str, str]) -> httpx.Response:
    """What the relay page POSTs for these fields."""
    return await browser.post("/auth/callback", data={**fields, "corpauth_relay": "fragment"})


async def assert_refused(browser: Browser, response: httpx.Response, code: str) -> None:
    assert response.status_code in (400, 403), response.text
    assert response.headers["x-corpauth-error"] == code
    assert f'<code id="code">{code}</code>' in response.text
    assert not [h for h in response.headers.get_list("set-cookie") if h.startswith(COOKIE + "=")]
    me = await browser.get("/me")
    assert me.status_code == 401
    assert me.json()["detail"]["code"] == "not_authenticated"


def sessions_in(site: Site) -> int:
    store = site.corpauth.sessions.store
    return sum(1 for key in getattr(store, "_entries", {}) if key.startswith("session:"))


async def test_missing_state(site: Site) -> None:
    browser = await site.browser()
    _, fields = await bank_answer(browser)
    del fields["state"]
    await assert_refused(browser, await deliver(browser, fields), "state_missing")
    assert sessions_in(site) == 0


@pytest.mark.parametrize("wrong", ["random", "truncated", "extended", "case", "empty-ish"])
async def test_wrong_state(site: Site, wrong: str) -> None:
    browser = await site.browser()
    state, fields = await bank_answer(browser)
    fields["state"] = {
        "random": new_state(),
        "truncated": state[:-1],
        "extended": state + "A",
        "case": state.swapcase(),
        "empty-ish": " ",
    }[wrong]
    await assert_refused(browser, await deliver(browser, fields), "state_unknown")
    assert sessions_in(site) == 0


async def test_replayed_state_is_refused_and_keeps_the_first_session(site: Site) -> None:
    browser = await site.browser()
    _, fields = await bank_answer(browser)
    first = await deliver(browser, fields)
    assert first.status_code == 303
    signed_in = browser.session_cookie
    # The same browser (Back, reload) is sent home, still signed in as before.
    replay = await deliver(browser, fields)
    assert replay.status_code == 303
    assert replay.headers["location"] == "/"
    assert not [h for h in replay.headers.get_list("set-cookie") if h.startswith(COOKIE + "=")]
    assert browser.session_cookie == signed_in
    # Any other browser replaying it is refused.
    other = await site.browser()
    await assert_refused(other, await deliver(other, fields), "state_reused")
    assert sessions_in(site) == 1


async def test_state_of_a_completed_sign_in_with_another_token(site: Site) -> None:
    """The state of a finished sign-in, carrying a token of a second sign-in."""
    browser = await site.browser()
    state, fields = await bank_answer(browser)
    assert (await deliver(browser, fields)).status_code == 303
    other = await site.browser()
    _, other_fields = await bank_answer(other)
    injected = {**other_fields, "state": state}
    response = await deliver(browser, injected)
    assert response.status_code == 303  # signed in already: sent home, unchanged
    assert not [h for h in response.headers.get_list("set-cookie") if h.startswith(COOKIE + "=")]
    stranger = await site.browser()
    await assert_refused(stranger, await deliver(stranger, injected), "state_reused")
    assert sessions_in(site) == 1


async def test_expired_state() -> None:
    clock = FakeClock()
    async with open_site(clock=clock) as site:
        browser = await site.browser()
        _, fields = await bank_answer(browser)
        clock.advance(601)
        await assert_refused(browser, await deliver(browser, fields), "state_expired")
        assert sessions_in(site) == 0


async def test_state_of_another_browser_login_csrf(site: Site) -> None:
    """The classic login CSRF: the attacker's own answer, delivered by the victim."""
    attacker, victim = await site.browser(), await site.browser()
    _, fields = await bank_answer(attacker)
    await victim.start()  # the victim even has a sign-in of its own going
    await assert_refused(victim, await deliver(victim, fields), "state_mismatch")
    cookieless = await site.browser()
    _, fields = await bank_answer(attacker)
    await assert_refused(cookieless, await deliver(cookieless, fields), "state_mismatch")
    assert sessions_in(site) == 0


async def test_token_pasted_without_a_sign_in(site: Site) -> None:
    """A genuine token pasted into the callback of a browser that never started a sign-in."""
    donor = await site.browser()
    _, fields = await bank_answer(donor)
    token = fields["access_token"]
    fresh = await site.browser()
    for attempt in (
        {"access_token": token, "token_type": "Bearer"},
        {"access_token": token, "token_type": "Bearer", "state": new_state()},
        {"access_token": token, "token_type": "Bearer", "state": fields["state"]},
    ):
        response = await deliver(fresh, attempt)
        assert response.status_code == 400
        assert response.headers["x-corpauth-error"] in (
            "state_missing",
            "state_unknown",
            "state_mismatch",
        )
        assert "set-cookie" not in response.headers
    query = urlencode({"access_token": token, "token_type": "Bearer", "expires_in": "900"})
    response = await fresh.get("/auth/callback?" + query)
    assert response.headers["x-corpauth-error"] == "state_missing"
    assert (await fresh.get("/me")).status_code == 401
    assert sessions_in(site) == 0


@pytest.mark.parametrize(
    "iss",
    [
        ISSUER.replace("/bog", "/other"),
        ISSUER + "-evil",
        "https://bank.test/realms/bog",
        "http://evil.example/realms/bog",
        ISSUER + "/../other",
    ],
)
async def test_issuer_of_another_realm(site: Site, iss: str) -> None:
    browser = await site.browser()
    _, fields = await bank_answer(browser)
    assert fields["iss"] == ISSUER
    await assert_refused(browser, await deliver(browser, {**fields, "iss": iss}), "issuer_mismatch")
    assert sessions_in(site) == 0


async def test_error_callback_with_a_foreign_state(site: Site) -> None:
    """``error`` answers are judged by their state first: a foreign one is not "cancelled"."""
    attacker, victim = await site.browser(), await site.browser()
    attacker_state, _ = await bank_answer(attacker, cancel=True)
    await victim.start()
    response = await deliver(victim, {"error": "access_denied", "state": attacker_state})
    await assert_refused(victim, response, "state_mismatch")
    response = await deliver(victim, {"error": "access_denied", "state": new_state()})
    await assert_refused(victim, response, "state_unknown")
    response = await deliver(victim, {"error": "access_denied"})
    await assert_refused(victim, response, "state_missing")
    # The victim's own cancelled sign-in is reported as such, and signs nobody in either.
    state, fields = await bank_answer(victim, cancel=True)
    assert fields["error"] == "access_denied"
    response = await deliver(victim, fields)
    assert response.status_code == 403
    await assert_refused(victim, response, "authorization_denied")
    assert sessions_in(site) == 0


async def test_code_injected_into_another_sign_in() -> None:
    """Code flow: an attacker's code delivered with the victim's state fails PKCE."""
    async with open_site(response_type="code") as site:
        attacker, victim = await site.browser(), await site.browser()
        login, _ = await attacker.start()
        answer = await attacker.authorize(login.headers["location"])
        code = dict(parse_qsl(urlsplit(answer.headers["location"]).query))["code"]
        site.secrets.add(code)
        _, victim_state = await victim.start()
        response = await victim.get(
            "/auth/callback?" + urlencode({"code": code, "state": victim_state})
        )
        # The bank promises iss (RFC 9207): a delivery without it is refused first.
        await assert_refused(victim, response, "issuer_mismatch")
        _, victim_state = await victim.start()
        response = await victim.get(
            "/auth/callback?" + urlencode({"code": code, "state": victim_state, "iss": ISSUER})
        )
        await assert_refused(victim, response, "callback_invalid")  # PKCE fails
        assert sessions_in(site) == 0


@pytest.mark.parametrize(
    "token",
    [
        "eyJhbGciOiJub25lIn0." + base64.urlsafe_b64encode(b"[" * 10_000).decode() + ".x",
        "eyJhbGciOiJub25lIn0."
        + base64.urlsafe_b64encode(b'{"exp": 1' + b"0" * 400 + b"}").decode().rstrip("=")
        + ".x",
    ],
    ids=["nesting-bomb", "huge-exp"],
)
async def test_hostile_token_with_a_live_state_is_no_crash(site: Site, token: str) -> None:
    """Found by fuzzing: such tokens made the JWT reader raise (a 500); now they are
    refused like any token the bank does not vouch for."""
    browser = await site.browser()
    _, state = await browser.start()
    response = await deliver(
        browser, {"state": state, "access_token": token, "token_type": "Bearer", "iss": ISSUER}
    )
    await assert_refused(browser, response, "invalid_token")
    assert sessions_in(site) == 0
