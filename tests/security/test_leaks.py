"""Leaks: with every logger at DEBUG through sign-in (each response mode and the code
flow), refusals, API calls, refresh ahead, revocation and token endpoint failures, no
client secret, access token, code, PKCE verifier, state, session id or cookie value
appears in a log record, a repr, an exception message, an error body, a Location header
(the bank's authorize URL may carry the state: it has to), the OpenAPI document or /docs.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import quote, quote_plus, urlencode

import httpx
import pytest

from fastapi_corpauth._corpauth import SESSION_SALT
from fastapi_corpauth._protocol import basic_authorization
from fastapi_corpauth._signing import CookieSigner
from tests.security.conftest import (
    CLIENT_ID,
    CLIENT_SECRET,
    ISSUER,
    SESSION_KEY,
    Browser,
    Site,
    open_site,
)
from tests.support import FakeClock

pytestmark = pytest.mark.anyio


class Evidence:
    """Everything an attacker might read, and every value that must not be in it."""

    def __init__(self) -> None:
        self.responses: list[httpx.Response] = []
        self.texts: list[str] = []
        self.secrets: set[str] = {
            CLIENT_SECRET,
            quote(CLIENT_SECRET, safe=""),
            quote_plus(CLIENT_SECRET),
            SESSION_KEY,
            basic_authorization(CLIENT_ID, CLIENT_SECRET).removeprefix("Basic "),
        }
        self.states: set[str] = set()

    def watch(self, browser: Browser) -> None:
        async def record(response: httpx.Response) -> None:
            await response.aread()
            self.responses.append(response)

        browser.client.event_hooks["response"].append(record)

    def absorb(self, site: Site) -> None:
        """Collect the site's secrets: tokens, codes, states, cookies, ids, verifiers."""
        for value in site.secrets:
            if len(value) >= 8:
                self.secrets.add(value)
        for value in list(site.secrets):
            session_id = CookieSigner(
                secret_keys=[SESSION_KEY], salt=SESSION_SALT, max_age=10**9
            ).load(value)
            if session_id:
                self.secrets.add(session_id)
        cached = site.corpauth._running.tokens.cached if site.corpauth._running else None
        if cached is not None:
            self.secrets.add(cached.access_token)
        self.texts += [
            repr(site.corpauth),
            repr(site.corpauth.sessions),
            repr(site.corpauth.settings),
        ]
        self.texts.append(str(site.corpauth.settings))
        if site.corpauth._running is not None:
            self.texts += [repr(site.corpauth.tokens), repr(cached), str(cached)]

    def verifiers(self, site: Site) -> None:
        store: Any = site.corpauth.sessions.store
        for entry in store._entries.values():
            verifier = json.loads(entry.payload).get("code_verifier")
            if verifier:
                self.secrets.add(verifier)


def browser_traffic(record: logging.LogRecord) -> bool:
    """httpx's own log lines for the test's browser (not the plugin's clients)."""
    if record.name != "httpx":
        return False
    message = record.getMessage()
    return "https://app.test/" in message or any(
        part in message for part in ("/openid-connect/auth?", "/login-actions/")
    )


async def scenario(evidence: Evidence, overrides: dict[str, Any]) -> None:
    clock = FakeClock()
    async with open_site(clock=clock, **overrides) as site:
        browser = await site.browser()
        evidence.watch(browser)
        if overrides.get("response_type") == "code":
            login, state = await browser.start("?next=/me")
            evidence.verifiers(site)
            answer = await browser.authorize(login.headers["location"])
            fields, final = await browser.deliver(answer)
        else:
            outcome = await browser.sign_in("?next=/me")
            fields, final = outcome.result, outcome.final
        assert final.status_code == 303, final.text
        evidence.states.add(fields["state"])
        user = await site.corpauth.sessions.load_user(
            site.corpauth.cookies.load(browser.session_cookie)
        )
        assert user is not None
        evidence.texts += [repr(user), str(user), repr(user.token)]
        # refusals: replay, another realm, someone else's state, a cancelled sign-in
        replay = {**fields, "corpauth_relay": "fragment"}
        await browser.post("/auth/callback", data=replay)
        _, state = await browser.start()
        evidence.states.add(state)
        await browser.get(
            "/auth/callback?" + urlencode({**fields, "state": state, "iss": ISSUER + "x"})
        )
        other = await site.browser()
        evidence.watch(other)
        _, other_state = await other.start()
        evidence.states.add(other_state)
        await browser.post("/auth/callback", data={**replay, "state": other_state})
        await browser.get("/auth/callback?error=access_denied&state=" + other_state)
        # the bank API: fetch, refresh ahead, revocation
        assert (await browser.get("/accounts")).status_code == 200
        evidence.absorb(site)
        clock.advance(220)  # inside the refresh window of the 300 s token
        assert (await browser.get("/accounts")).status_code == 200
        await asyncio.sleep(0.05)
        evidence.absorb(site)
        site.dev.push_not_before()
        assert (await browser.get("/accounts")).json() == {"status": 200}
        evidence.absorb(site)
        # token endpoint failures, each on a cold cache
        for fault in (
            {"status": 500},
            {"status": 429, "retry_after": 1},
            {"body_kind": "html"},
            {"body_kind": "truncated"},
            {"expired_token": True},
        ):
            cached = site.corpauth.tokens.cached
            if cached is not None:
                site.corpauth.tokens.invalidate(cached)
            site.dev.set_faults(**fault)
            await browser.get("/token-length")
            try:
                await site.corpauth.get_token()
            except Exception as exc:
                evidence.texts += [str(exc), repr(exc), repr(exc.__cause__), str(exc.__cause__)]
            site.dev.clear_faults()
            clock.advance(6)
        await browser.get("/auth/logout?next=/bye")
        await browser.post("/auth/logout")
        evidence.absorb(site)


async def test_no_secret_anywhere(debug_logs: pytest.LogCaptureFixture) -> None:
    evidence = Evidence()
    for overrides in (
        {},
        {"response_mode": "form_post"},
        {"response_type": "code"},
        {"response_type": "code", "response_mode": "form_post", "logout_at_provider": True},
    ):
        await scenario(evidence, overrides)

    # failures of the connection itself, and rejected credentials
    async def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"connection refused for {request.headers.get('authorization')}")

    async with open_site(transport=httpx.MockTransport(refuse)) as site:
        response = await (await site.raw_client()).get("/token-length")
        assert response.status_code == 503
        evidence.responses.append(response)
        try:
            await site.corpauth.get_token()
        except Exception as exc:
            evidence.texts += [str(exc), repr(exc)]
    async with open_site(client_secret=CLIENT_SECRET + "-wrong") as site:
        evidence.secrets.add(CLIENT_SECRET + "-wrong")
        response = await (await site.raw_client()).get("/accounts")
        assert response.status_code == 502
        evidence.responses.append(response)
        # the OpenAPI document and /docs
        client = await site.raw_client()
        for path in ("/openapi.json", "/docs", "/redoc"):
            page = await client.get(path)
            assert page.status_code == 200
            evidence.texts.append(page.text)
        evidence.texts.append(json.dumps(site.app.openapi()))

    assert len(evidence.states) >= 8 and len(evidence.secrets) >= 30
    records = [r for r in debug_logs.records if not browser_traffic(r)]
    assert len(records) >= 20
    formatter = logging.Formatter()
    for record in records:
        evidence.texts += [record.getMessage(), repr(record.args)]
        if record.exc_info:
            evidence.texts.append(formatter.formatException(record.exc_info))
    for response in evidence.responses:
        evidence.texts.append(response.text if response.status_code >= 400 else "")
        evidence.texts.append(response.headers.get("x-corpauth-error", ""))
    everything = evidence.secrets | evidence.states
    for text in evidence.texts:
        for secret in everything:
            assert secret not in text, (secret[:12], text[:200])
    for response in evidence.responses:
        location = response.headers.get("location", "")
        if response.request.url.path == "/auth/login" and location.startswith(ISSUER):
            allowed = {s for s in evidence.states if s in location}
            assert len(allowed) == 1  # its own state, which the bank must receive
        else:
            allowed = set()
        if response.request.url.host == "app.test":
            for secret in everything - allowed:
                assert secret not in location, (secret[:12], location[:100])
