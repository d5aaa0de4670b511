"""Headers: every response of the router (login, relay pages, callback, refusals, logout)
is no-store, no-referrer and under a strict Content-Security-Policy; the session cookie
carries exactly the flags the README promises.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

import httpx
import pytest

from tests.security.conftest import APP, COOKIE, SIGNIN_COOKIE, Browser, open_site

pytestmark = pytest.mark.anyio

MODES: list[dict[str, Any]] = [
    {},
    {"response_mode": "form_post"},
    {"response_mode": "query", "flavour": "bank-docs"},
    {"response_type": "code"},
    {"response_type": "code", "response_mode": "form_post"},
]


def csp(response: httpx.Response) -> dict[str, str]:
    policy = response.headers["content-security-policy"]
    directives: dict[str, str] = {}
    for directive in policy.split(";"):
        name, _, value = directive.strip().partition(" ")
        directives[name] = value
    return directives


def assert_hardened(response: httpx.Response) -> None:
    where = f"{response.request.method} {response.request.url.path} -> {response.status_code}"
    headers = response.headers
    assert headers["cache-control"] == "no-store", where
    assert headers["pragma"] == "no-cache", where
    assert headers["referrer-policy"] == "no-referrer", where
    assert headers["x-content-type-options"] == "nosniff", where
    assert headers["x-frame-options"] == "DENY", where
    directives = csp(response)
    assert directives["default-src"] == "'none'", where
    assert directives["base-uri"] == "'none'", where
    assert directives["frame-ancestors"] == "'none'", where
    assert directives["form-action"] == "'self'", where
    sources = directives["script-src"].split()
    assert "'unsafe-inline'" not in sources and "'unsafe-eval'" not in sources, where
    assert all(s == "'none'" or s.startswith("'sha256-") for s in sources), where
    scripts = re.findall(r"<script>(.*?)</script>", response.text, flags=re.S)
    for script in scripts:  # the only scripts that run are the page's own, by hash
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in sources, where
    assert "<script src" not in response.text and "http" not in "".join(scripts), where
    if response.status_code == 200 or response.status_code >= 400:
        assert '<meta name="referrer" content="no-referrer">' in response.text, where


def router_responses(responses: list[httpx.Response]) -> list[httpx.Response]:
    return [
        r for r in responses if r.request.url.host == "app.test" and r.url.path.startswith("/auth/")
    ]


class Recorder:
    def __init__(self, browser: Browser) -> None:
        self.responses: list[httpx.Response] = []
        browser.client.event_hooks["response"].append(self.record)

    async def record(self, response: httpx.Response) -> None:
        await response.aread()
        self.responses.append(response)


def session_cookie(response: httpx.Response, cookie: str = COOKIE) -> dict[str, str] | None:
    """A cookie's Set-Cookie (the session cookie's by default) as a dict, or None."""
    for header in response.headers.get_list("set-cookie"):
        name_value, *attributes = (part.strip() for part in header.split(";"))
        name, _, value = name_value.partition("=")
        if name == cookie:
            found = {"value": value}
            for attribute in attributes:
                key, _, attr_value = attribute.partition("=")
                found[key.lower()] = attr_value
            return found
    return None


@pytest.mark.parametrize(
    "overrides", MODES, ids=lambda o: "-".join(map(str, o.values())) or "fragment"
)
async def test_every_router_response_is_hardened(overrides: dict[str, Any]) -> None:
    async with open_site(**overrides) as site:
        browser = await site.browser()
        recorder = Recorder(browser)
        outcome = await browser.sign_in("?next=/me")
        assert outcome.final.status_code == 303
        await browser.post("/auth/callback", data={"state": "x", "access_token": "y"})
        await browser.get("/auth/callback?state=x&error=access_denied")
        await browser.post(
            "/auth/callback", content=b"\xff", headers={"content-type": "text/plain"}
        )
        await browser.get("/auth/logout")  # the page with the button
        await browser.post("/auth/logout")
        checked = router_responses(recorder.responses)
        statuses = {r.status_code for r in checked}
        assert {303, 400} <= statuses
        if overrides.get("response_mode") != "query" and overrides.get("response_type") != "code":
            assert 200 in statuses  # a relay or re-submission page
        for response in checked:
            assert_hardened(response)


async def test_unauthenticated_answers_are_not_cached() -> None:
    async with open_site() as site:
        browser = await site.browser()
        me = await browser.get("/me")
        assert me.status_code == 401
        assert me.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("base", "secure"),
    [
        (APP, True),
        # Behind a TLS proxy the app may see plain http or any host: the configured
        # https callback URL decides, not the request.
        ("http://app.test", True),
        ("http://localhost", True),
        ("http://127.0.0.1:8000", True),
    ],
)
async def test_cookie_flags(base: str, secure: bool) -> None:
    async with open_site() as site:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=site.app), base_url=base)
        async with client:
            login = await client.get("/auth/login")
            assert session_cookie(login) is None  # nothing before signing in
            pending = session_cookie(login, SIGNIN_COOKIE)
            assert pending is not None
            assert "httponly" in pending
            assert pending["samesite"].lower() == "lax"
            assert pending["path"] == "/"
            assert "domain" not in pending
            assert pending["max-age"] == str(600 + 60)  # the state's lifetime, and a minute
            assert ("secure" in pending) is secure
            client.cookies.set(COOKIE, "anything", domain=client.base_url.host)
            logout = await client.post("/auth/logout")
            cleared = session_cookie(logout)
            assert cleared is not None
            assert cleared["max-age"] == "0" and cleared["value"] in ("", '""')
            assert "httponly" in cleared and cleared["samesite"].lower() == "lax"
            assert ("secure" in cleared) is secure


async def test_signed_in_cookie_flags() -> None:
    async with open_site() as site:
        browser = await site.browser()
        outcome = await browser.sign_in()
        cookie = session_cookie(outcome.final)
        assert cookie is not None
        assert {"httponly", "secure"} <= set(cookie)
        assert cookie["samesite"].lower() == "lax" and cookie["path"] == "/"


async def test_strict_samesite_and_forced_flags() -> None:
    async with open_site(cookie_samesite="strict", cookie_secure=True) as site:
        browser = await site.browser()
        outcome = await browser.sign_in()
        cookie = session_cookie(outcome.final)
        assert cookie is not None
        assert cookie["samesite"].lower() == "strict" and "secure" in cookie
        # The sign-in cookie stays Lax: it must come back with the bank's redirect.
        pending = session_cookie(outcome.responses[0], SIGNIN_COOKIE)
        assert pending is not None
        assert pending["samesite"].lower() == "lax" and "secure" in pending
