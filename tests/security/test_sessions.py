"""Session cookies: tampered, truncated, re-signed with a wrong or retired key, expired,
swapped between two users and replayed after logout. None is accepted, and logout
removes the session server-side.
"""

from __future__ import annotations

import time

import pytest

from fastapi_corpauth import MemorySessionStore
from fastapi_corpauth._corpauth import SESSION_SALT
from fastapi_corpauth._login_protocol import fingerprint
from fastapi_corpauth._signing import CookieSigner
from tests.security.conftest import OTHER_KEY, SESSION_KEY, Browser, Site, open_site
from tests.support import FakeClock

pytestmark = pytest.mark.anyio


def signer(*keys: str, salt: str = SESSION_SALT, clock: FakeClock | None = None) -> CookieSigner:
    return CookieSigner(
        secret_keys=list(keys), salt=salt, max_age=8 * 3600, clock=clock or time.time
    )


async def signed_in(site: Site) -> tuple[Browser, str]:
    browser = await site.browser()
    outcome = await browser.sign_in()
    assert outcome.final.status_code == 303
    cookie = browser.session_cookie
    assert cookie is not None
    assert (await browser.get("/me")).json() == {"name": "Nino Beridze"}
    return browser, cookie


async def refused(browser: Browser, cookie: str | None, code: str = "not_authenticated") -> None:
    browser.set_session_cookie(cookie)
    me = await browser.get("/me")
    assert me.status_code == 401, cookie
    assert me.json()["detail"]["code"] == code
    assert (await browser.get("/maybe")).json() == {"name": None}
    assert (await browser.get("/accounts")).status_code == 200  # the app itself still works


def tampered(cookie: str) -> list[str]:
    payload, timestamp, signature = cookie.rsplit(".", 2)
    flip = {c: "B" if c == "A" else "A" for c in "AB"}
    return [
        f"{payload}.{timestamp}.{signature[:-1]}{flip.get(signature[-1], 'A')}",
        f"{payload[:-1]}{'A' if payload[-1] != 'A' else 'B'}.{timestamp}.{signature}",
        f"{payload}.{timestamp[:-1]}{'A' if timestamp[-1] != 'A' else 'B'}.{signature}",
        f"{payload}.{signature}",
        f"{payload}..{signature}",
        cookie.upper(),
        cookie.lower(),
        cookie + "=",
        cookie + ".x",
        "." + cookie,
        cookie.replace(".", "|"),
        cookie[::-1],
        "",
        "null",
        "A" * 5000,
        "%C3%A9" + cookie,
    ]


def truncated(cookie: str) -> list[str]:
    return [cookie[:n] for n in (1, 10, len(cookie) // 2, len(cookie) - 10, len(cookie) - 1)]


async def test_tampered_and_truncated_cookies(site: Site) -> None:
    browser, cookie = await signed_in(site)
    bad = tampered(cookie) + truncated(cookie)
    assert len(bad) >= 20
    other = await site.browser()
    for value in bad:
        await refused(other, value)
    browser.set_session_cookie(cookie)
    assert (await browser.get("/me")).status_code == 200


async def test_resigned_with_a_wrong_key_or_purpose(site: Site) -> None:
    browser, cookie = await signed_in(site)
    session_id = signer(SESSION_KEY).unsign(cookie)
    attacker = await site.browser()
    for forged in (
        signer(OTHER_KEY).sign(session_id),
        signer(SESSION_KEY + "x").sign(session_id),
        signer(SESSION_KEY, salt="itsdangerous").sign(session_id),
        signer(SESSION_KEY, salt="fastapi_corpauth.other").sign(session_id),
        session_id,  # the bare id, unsigned
    ):
        await refused(attacker, forged)
    assert (await browser.get("/me")).status_code == 200


async def test_retired_key() -> None:
    """After rotation the retired key's cookies are refused; during it both work."""
    store = MemorySessionStore()
    async with open_site(session_store=store, session_secret=SESSION_KEY) as old:
        _, cookie = await signed_in(old)
        store_copy = dict(store._entries)
    async with open_site(session_store=store, session_secret=f"{SESSION_KEY},{OTHER_KEY}") as mid:
        store._entries.update(store_copy)
        browser = await mid.browser()
        browser.set_session_cookie(cookie)
        assert (await browser.get("/me")).status_code == 200
        store_copy = dict(store._entries)
    async with open_site(session_store=store, session_secret=OTHER_KEY) as new:
        store._entries.update(store_copy)
        await refused(await new.browser(), cookie)


async def test_expired_cookie_and_session() -> None:
    clock = FakeClock()
    async with open_site(clock=clock, session_max_age=600) as site:
        browser, cookie = await signed_in(site)
        session_id = signer(SESSION_KEY, clock=clock).unsign(cookie)
        clock.advance(599)
        assert (await browser.get("/me")).status_code == 200
        clock.advance(2)
        await refused(browser, cookie)
        # The same session id, freshly signed: the server-side session has ended as well.
        await refused(browser, signer(SESSION_KEY, clock=clock).sign(session_id), "session_expired")


async def test_cookie_of_an_expired_bank_token() -> None:
    clock = FakeClock()
    async with open_site(clock=clock) as site:
        browser, cookie = await signed_in(site)
        clock.advance(901)  # the devserver's implicit tokens live 900 s
        await refused(browser, cookie, "session_expired")  # a front end signs in again


async def test_swapped_between_two_users(site: Site) -> None:
    """Halves of two users' cookies never combine into a session."""
    _, first = await signed_in(site)
    _, second = await signed_in(site)
    p1, t1, s1 = first.rsplit(".", 2)
    p2, t2, s2 = second.rsplit(".", 2)
    other = await site.browser()
    for spliced in (f"{p1}.{t1}.{s2}", f"{p2}.{t2}.{s1}", f"{p1}.{t2}.{s1}", f"{p2}.{t1}.{s2}"):
        if spliced in (first, second):
            continue
        await refused(other, spliced)


async def test_a_pending_sign_in_cookie_is_not_a_session(site: Site) -> None:
    browser = await site.browser()
    await browser.start()
    await refused(browser, browser.session_cookie)


async def test_replayed_after_logout(site: Site) -> None:
    browser, cookie = await signed_in(site)
    session_id = signer(SESSION_KEY).unsign(cookie)
    store = site.corpauth.sessions.store
    assert await store.get("session:" + fingerprint(session_id)) is not None
    assert (await browser.get("/auth/logout")).status_code == 200  # a GET signs nobody out
    assert await store.get("session:" + fingerprint(session_id)) is not None
    response = await browser.post("/auth/logout")
    assert response.status_code == 303
    assert browser.session_cookie is None
    assert await store.get("session:" + fingerprint(session_id)) is None  # server-side
    await refused(browser, cookie)
    thief = await site.browser()
    await refused(thief, cookie)
