"""What the store holds is useless to whoever reads it and unforgeable by whoever writes it;
anonymous floods cost nothing and sign nobody out.

Run against the in-process store and a real Redis server (started by the tests).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import redis
from starlette.types import Message, Scope

from fastapi_corpauth import MemorySessionStore
from tests.redis_server import RedisServer
from tests.security.conftest import APP, COOKIE, SIGNIN_COOKIE, Browser, Site, open_site

pytestmark = pytest.mark.anyio

FLOOD = 20_000


async def anonymous_logins(site: Site, count: int) -> None:
    """``count`` GET /auth/login from nobody in particular, straight into the app (ASGI)."""
    statuses: set[int] = set()

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.add(message["status"])

    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "path": "/auth/login",
        "raw_path": b"/auth/login",
        "query_string": b"next=/",
        "root_path": "",
        "headers": [(b"host", b"app.test")],
        "client": ("203.0.113.9", 4000),
        "server": ("app.test", 443),
    }
    for _ in range(count):
        await site.app(dict(scope), receive, send)
    assert statuses == {303}


async def signed_in(site: Site, count: int) -> list[Browser]:
    browsers = []
    for _ in range(count):
        browser = await site.browser()
        outcome = await browser.sign_in()
        assert outcome.final.status_code == 303
        browsers.append(browser)
    return browsers


async def test_a_login_flood_signs_nobody_out_in_a_full_memory_store() -> None:
    store = MemorySessionStore(max_entries=60)
    async with open_site(session_store=store) as site:
        customers = await signed_in(site, 50)
        waiting = await site.browser()
        login, _ = await waiting.start()  # a sign-in begun before the flood
        answer = await waiting.authorize(login.headers["location"])
        entries = len(store)
        await anonymous_logins(site, FLOOD)
        assert len(store) == entries  # the flood stored nothing at all
        for customer in customers:
            assert (await customer.get("/me")).status_code == 200
        _, final = await waiting.deliver(answer)  # ...completes after it
        assert final.status_code == 303
        assert (await waiting.get("/me")).json() == {"name": "Nino Beridze"}


async def test_a_login_flood_leaves_redis_as_it_was(own_redis_server: RedisServer) -> None:
    raw = own_redis_server.client()
    async with open_site(redis_url=own_redis_server.url) as site:
        customers = await signed_in(site, 20)
        waiting = await site.browser()
        login, _ = await waiting.start()
        answer = await waiting.authorize(login.headers["location"])
        keys, memory = raw.dbsize(), int(raw.info("memory")["used_memory"])
        await anonymous_logins(site, FLOOD)
        grown = int(raw.info("memory")["used_memory"]) - memory
        assert raw.dbsize() == keys
        assert grown < 1_000_000  # bytes, for 20,000 sign-ins started (about none)
        for customer in customers:
            assert (await customer.get("/me")).status_code == 200
        _, final = await waiting.deliver(answer)
        assert final.status_code == 303
    raw.close()


def dump(client: redis.Redis) -> bytes:
    """Every key and value in Redis, as one blob to search."""
    parts = []
    for key in client.scan_iter("*"):
        parts.append(key)
        if client.type(key) == b"string":
            parts.append(client.get(key) or b"")
    return b"\n".join(parts)


async def test_a_redis_dump_holds_no_token_name_or_address(redis_url: str) -> None:
    raw = redis.Redis.from_url(redis_url)
    code: dict[str, Any] = {"response_type": "code", "scope": "openid corp", "redis_url": redis_url}
    async with open_site(**code) as site:
        browser = await site.browser()
        outcome = await browser.sign_in("?next=/me")
        assert outcome.final.status_code == 303
        assert (await browser.get("/accounts")).json() == {"status": 200}  # company token
        assert (await browser.get("/my-accounts")).json() == {"status": 200}
        company = (await site.corpauth.get_token()).access_token
        stored = await site.corpauth.sessions.load(
            site.corpauth.cookies.load(browser.session_cookie)
        )
        assert stored is not None and stored.refresh_token and stored.id_token
        everything = dump(raw)
        assert everything  # the session and the shared token are there...
        for secret in (
            company,
            stored.token.access_token,
            stored.refresh_token,
            stored.id_token,
            browser.session_cookie or "",
            "Nino Beridze",
            "nino.beridze",
            site.corpauth.cookies.load(browser.session_cookie) or "",
        ):
            assert secret.encode() not in everything  # ...and useless to whoever reads them
    raw.close()


async def test_an_edited_session_record_signs_nobody_in(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    raw = redis.Redis.from_url(redis_url)
    async with open_site(redis_url=redis_url) as site:
        victim, other = await site.browser(), await site.browser()
        assert (await victim.sign_in()).final.status_code == 303
        assert (await other.sign_in()).final.status_code == 303
        keys = sorted(k for k in raw.scan_iter("corpauth:session:*"))
        assert len(keys) == 2
        # Edit one record, and put the other's record under the first one's key.
        edited = json.loads(raw.get(keys[0]) or b"{}")
        edited["sealed"] = edited["sealed"][:20] + "A" + edited["sealed"][21:]
        raw.set(keys[0], json.dumps(edited))
        for browser in (victim, other):
            me = await browser.get("/me")
            assert me.status_code in (200, 401)
        raw.set(keys[0], raw.get(keys[1]) or b"")
        answers = [await b.get("/me") for b in (victim, other)]
        assert sorted(a.status_code for a in answers) == [200, 401]  # not the other's session
        assert all(a.status_code < 500 for a in answers)
        assert caplog.text.count("did not open") <= 1  # logged once, not per request
    raw.close()


async def test_a_rewritten_return_address_is_not_followed() -> None:
    async with open_site() as site:
        browser = await site.browser()
        login, state = await browser.start("?next=/me")
        sealed = browser.client.cookies.get(SIGNIN_COOKIE, domain="app.test")
        assert sealed is not None
        answer = await browser.authorize(login.headers["location"])
        # Whoever rewrites the sign-in cookie (to https://evil.example, say) breaks its seal.
        browser.client.cookies.set(
            SIGNIN_COOKIE, sealed[:-6] + "AAAAAA", domain="app.test", path="/"
        )
        _, final = await browser.deliver(answer)
        assert final.status_code == 400
        assert final.headers["x-corpauth-error"] == "state_mismatch"
        assert "evil" not in final.headers.get("location", "")


async def test_the_cookies_of_an_https_app(site: Site) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=site.app), base_url=APP
    ) as client:
        login = await client.get("/auth/login")
        names = [h.split("=", 1)[0] for h in login.headers.get_list("set-cookie")]
        assert names == [SIGNIN_COOKIE]
        assert SIGNIN_COOKIE.startswith("__Host-") and COOKIE.startswith("__Host-")
        header = login.headers["set-cookie"]
        assert "Secure" in header and "HttpOnly" in header and "Path=/" in header
        assert "Domain" not in header and "samesite=lax" in header.lower()
