"""The sign-in router end to end over ASGI: /login, every callback form, state, sessions.

Each site checks on exit (``Site.check_hygiene``) that every router response carried
``Cache-Control: no-store`` and ``Referrer-Policy: no-referrer`` and that no token, code
or PKCE verifier appeared in any header, Location or router page.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest

from fastapi_corpauth import (
    ConfigurationError,
    CorpAuth,
    MemorySessionStore,
    StoreUnavailable,
)
from fastapi_corpauth._corpauth import SESSION_SALT
from fastapi_corpauth._login_protocol import CALLBACK_FIELDS, new_state, pkce_challenge
from fastapi_corpauth._signing import CookieSigner
from fastapi_corpauth._store import Record
from tests.integration.router_support import (
    AUTHORIZE_URL,
    COOKIE,
    KEY_1,
    KEY_2,
    LOGOUT_URL,
    SIGNIN_COOKIE,
    Browser,
    Site,
    error_code,
    jwt,
    open_site,
    parse_page,
    script_hash,
    set_cookie,
    token_fields,
)
from tests.support import CLIENT_ID, CLIENT_SECRET, ISSUER, FakeClock, settings

pytestmark = pytest.mark.anyio

NOT_AUTHENTICATED = {
    "detail": {"code": "not_authenticated", "message": "Sign in with the bank first."}
}


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    async with open_site() as site:
        yield site


def new_token(site: Site, name: str = "Nino Beridze", lifetime: float = 300) -> str:
    token = jwt({"sub": "user-1", "name": name, "exp": int(site.clock.now + lifetime)})
    site.secrets.add(token)
    return token


async def sign_in(site: Site, browser: Browser, query: str = "") -> httpx.Response:
    params = await browser.login(query)
    response = await browser.relay(token_fields(params["state"], new_token(site)))
    assert response.status_code == 303, response.text
    return response


async def assert_signed_out(browser: Browser, cookie: str | None | bool = True) -> None:
    response = await browser.me(cookie=cookie)
    assert response.status_code == 401
    assert response.json() == NOT_AUTHENTICATED
    assert (await browser.get("/maybe", cookie=cookie)).json() == {"name": None}


def csp_directives(response: httpx.Response) -> dict[str, str]:
    policy = response.headers["content-security-policy"]
    directives = {}
    for directive in policy.split(";"):
        name, _, value = directive.strip().partition(" ")
        directives[name] = value
    return directives


# --- /login ----------------------------------------------------------------------------


async def test_login_redirects_to_the_authorization_endpoint(site: Site) -> None:
    browser = await site.browser()
    response = await browser.get("/auth/login")
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith(AUTHORIZE_URL + "?")
    params = parse_qsl(urlsplit(location).query)
    assert [name for name, _ in params] == [
        "client_id",
        "response_type",
        "scope",
        "redirect_uri",
        "state",
    ]
    values = dict(params)
    assert values["client_id"] == CLIENT_ID
    assert values["response_type"] == "token"
    assert values["scope"] == "corp"
    assert values["redirect_uri"] == "http://localhost/auth/callback"
    assert len(values["state"]) >= 43
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"


async def test_each_login_gets_its_own_state(site: Site) -> None:
    browser = await site.browser()
    states = {(await browser.login())["state"] for _ in range(5)}
    assert len(states) == 5


@pytest.mark.parametrize(
    ("base_url", "secure"),
    [
        ("http://localhost", False),
        ("http://127.0.0.1:8000", False),
        ("http://app.localhost", False),
        ("https://localhost", True),
    ],
)
async def test_login_keeps_the_sign_in_in_a_sealed_cookie(
    site: Site, base_url: str, secure: bool
) -> None:
    browser = await site.browser(base_url)
    response = await browser.get("/auth/login?next=/accounts")
    assert set_cookie(response) is None  # no session before signing in
    cookie = set_cookie(response, SIGNIN_COOKIE)
    assert cookie is not None
    assert "httponly" in cookie
    assert cookie["samesite"].lower() == "lax"
    assert cookie["path"] == "/"
    assert cookie["max-age"] == str(600 + 60)
    assert ("secure" in cookie) is secure
    assert "domain" not in cookie
    params = dict(parse_qsl(urlsplit(response.headers["location"]).query))
    assert params["redirect_uri"] == base_url + "/auth/callback"
    # Sealed: neither the state nor the return address can be read from it.
    assert params["state"] not in cookie["value"]
    assert "accounts" not in cookie["value"]
    store = site.corpauth.sessions.store
    assert isinstance(store, MemorySessionStore) and len(store) == 0  # nothing kept


async def test_the_five_newest_sign_ins_of_a_browser_stay_usable(site: Site) -> None:
    browser = await site.browser()
    states = [(await browser.login())["state"] for _ in range(6)]
    assert len(browser.signin_cookie or "") < 3000
    oldest = await browser.relay(token_fields(states[0], new_token(site)))
    assert error_code(oldest) == "state_mismatch"
    for state in states[1:]:
        response = await browser.relay(token_fields(state, new_token(site)))
        assert response.status_code == 303, response.text


async def test_configured_redirect_uri_wins() -> None:
    production: dict[str, Any] = {
        "development": False,
        "redirect_uri": "https://app.example:8443/cb?x=1",
    }
    async with open_site(**production) as site:
        params = await (await site.browser("https://whatever.example")).login()
        assert params["redirect_uri"] == "https://app.example:8443/cb?x=1"


@pytest.mark.parametrize("host", ["https://app.example", "http://app.example", "http://10.0.0.8"])
async def test_development_never_builds_a_callback_url_for_another_host(host: str) -> None:
    """A Host header is the client's choice: in development only this machine's count."""
    async with open_site() as site:
        browser = await site.browser(host)
        response = await browser.get("/auth/login")
        assert response.status_code == 503
        assert error_code(response) == "configuration_error"
        assert "not set up correctly" in response.text
        assert set_cookie(response, SIGNIN_COOKIE) is None


async def test_outside_development_the_callback_url_must_be_configured() -> None:
    with pytest.raises(ConfigurationError) as info:
        CorpAuth(settings(session_secret=KEY_1)).router  # noqa: B018
    assert info.value.variables == ("CORPAUTH_REDIRECT_URI",)
    assert "CORPAUTH_DEVELOPMENT" in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"redirect_uri": "http://app.example/auth/callback"}, "must be https"),
        ({"redirect_uri": "https://app.example/cb", "development": True}, "this machine only"),
        ({"redirect_uri": "https://app.example/cb", "cookie_secure": False}, "development"),
    ],
)
def test_settings_that_are_unsafe_in_production_are_refused(
    overrides: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        settings(session_secret=KEY_1, **overrides)


async def test_an_https_callback_url_means_host_prefixed_secure_cookies() -> None:
    production: dict[str, Any] = {
        "development": False,
        "redirect_uri": "https://app.example/auth/callback",
    }
    async with open_site(**production) as site:
        # Behind a TLS proxy the app may see plain http: the configured URL decides.
        browser = await site.browser("http://app.example")
        login = await browser.get("/auth/login")
        pending = set_cookie(login, "__Host-" + SIGNIN_COOKIE)
        assert pending is not None and "secure" in pending and pending["path"] == "/"
        assert "domain" not in pending


@pytest.mark.parametrize(
    ("configured", "query", "kc_locale"),
    [
        ("en", "", None),
        ("en", "?lang=ka", "ka"),
        ("en", "?lang=en", None),
        ("en", "?lang=fr", None),
        ("en", "?lang=KA", None),
        ("en", "?lang=ka%00", None),
        ("ka", "", "ka"),
        ("ka", "?lang=en", None),
        ("ka", "?lang=de", "ka"),
    ],
)
async def test_lang_allow_list(configured: str, query: str, kc_locale: str | None) -> None:
    async with open_site(locale=configured) as site:
        params = await (await site.browser()).login(query)
        assert params.get("kc_locale") == kc_locale


@pytest.mark.parametrize("mode", ["fragment", "form_post", "query"])
async def test_response_mode_is_forwarded(mode: str) -> None:
    async with open_site(response_mode=mode) as site:
        assert (await (await site.browser()).login())["response_mode"] == mode


async def test_code_login_sends_a_pkce_challenge() -> None:
    async with open_site(response_type="code") as site:
        browser = await site.browser()
        first = await browser.login()
        second = await browser.login()
        assert first["response_type"] == "code"
        assert first["code_challenge_method"] == "S256"
        assert len(first["code_challenge"]) == 43
        assert first["code_challenge"] != second["code_challenge"]
        assert "code_verifier" not in first


# --- the fragment relay ------------------------------------------------------------------


async def test_fragment_relay_page(site: Site) -> None:
    browser = await site.browser()
    params = await browser.login()
    response = await browser.get("/auth/callback")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    directives = csp_directives(response)
    page = parse_page(response.text)
    assert len(page.scripts) == 1
    assert script_hash(page.scripts[0]) in directives["script-src"].split()
    assert directives["script-src"].startswith("'sha256-")
    assert "'unsafe-inline'" not in directives["script-src"]
    assert directives["default-src"] == "'none'"
    assert directives["form-action"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["base-uri"] == "'none'"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    assert page.form_method == "post"
    assert page.form_action == "/auth/callback"
    assert page.inputs == [("corpauth_relay", "fragment")]
    assert "location.hash" in page.scripts[0]
    assert "history.replaceState" in page.scripts[0]
    assert "src=" not in response.text
    assert "http://" not in response.text and "https://" not in response.text

    token = new_token(site)
    done = await browser.relay(token_fields(params["state"], token))
    assert done.status_code == 303
    assert done.headers["location"] == "/"
    me = await browser.me()
    assert me.status_code == 200
    assert me.json()["name"] == "Nino Beridze"


async def test_callback_with_only_a_state_in_the_query_is_relayed(site: Site) -> None:
    browser = await site.browser()
    response = await browser.get("/auth/callback?state=abc&session_state=x")
    assert response.status_code == 200
    assert parse_page(response.text).inputs == [("corpauth_relay", "fragment")]


# --- form_post ---------------------------------------------------------------------------


async def test_form_post_with_the_cookie_signs_in() -> None:
    async with open_site(response_mode="form_post") as site:
        browser = await site.browser()
        params = await browser.login("?next=/accounts")
        response = await browser.post(
            "/auth/callback", data=token_fields(params["state"], new_token(site))
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/accounts"
        assert (await browser.me()).status_code == 200


async def test_cross_site_form_post_is_resubmitted_same_origin() -> None:
    async with open_site(response_mode="form_post") as site:
        browser = await site.browser()
        params = await browser.login()
        hostile = "\"><script>alert(1)</script>&amp;'"
        fields = token_fields(params["state"], new_token(site), session_state=hostile)
        fields["unrelated"] = "dropped"
        # SameSite=Lax: a cross-site POST arrives without the cookie.
        response = await browser.post("/auth/callback", data=fields, cookie=None)
        assert response.status_code == 200
        assert set_cookie(response) is None
        assert "<script>alert(1)" not in response.text
        assert "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&amp;amp;&#x27;" in response.text
        page = parse_page(response.text)
        assert page.form_action == "/auth/callback"
        assert page.form_method == "post"
        assert dict(page.inputs) == {
            **{k: v for k, v in fields.items() if k in CALLBACK_FIELDS},
            "corpauth_relay": "form_post",
        }
        directives = csp_directives(response)
        assert directives["script-src"] == script_hash(page.scripts[0])
        assert "'unsafe-inline'" not in directives["script-src"]

        done = await browser.post("/auth/callback", data=dict(page.inputs))
        assert done.status_code == 303
        assert (await browser.me()).status_code == 200


async def test_resubmission_from_a_browser_without_the_cookie_is_refused() -> None:
    async with open_site(response_mode="form_post") as site:
        victim, attacker = await site.browser(), await site.browser()
        params = await victim.login()
        fields = token_fields(params["state"], new_token(site))
        page = parse_page((await attacker.post("/auth/callback", data=fields)).text)
        refused = await attacker.post("/auth/callback", data=dict(page.inputs))
        assert refused.status_code == 400
        assert error_code(refused) == "state_mismatch"
        assert attacker.cookie is None


# --- query mode --------------------------------------------------------------------------


async def test_query_mode_redirects_to_a_clean_url() -> None:
    async with open_site(response_mode="query") as site:
        browser = await site.browser()
        params = await browser.login("?next=/accounts%3Fpage%3D2")
        token = new_token(site)
        query = urlencode(token_fields(params["state"], token))
        response = await browser.get("/auth/callback?" + query)
        assert response.status_code == 303
        assert response.headers["location"] == "/accounts?page=2"
        assert (await browser.me()).status_code == 200


# --- code flow ---------------------------------------------------------------------------


async def start_code_login(site: Site, browser: Browser, code: str, query: str = "") -> str:
    params = await browser.login(query)
    site.bank.register(
        code, challenge=params["code_challenge"], redirect_uri=params["redirect_uri"]
    )
    site.secrets.add(code)
    return params["state"]


@pytest.mark.parametrize("mode", [None, "form_post"])
async def test_code_flow_with_pkce(mode: str | None) -> None:
    async with open_site(response_type="code", response_mode=mode) as site:
        browser = await site.browser()
        state = await start_code_login(site, browser, "code-abc.123", "?next=/accounts")
        fields = {"state": state, "session_state": "s", "iss": ISSUER, "code": "code-abc.123"}
        if mode == "form_post":
            response = await browser.post("/auth/callback", data=fields)
        else:
            response = await browser.get("/auth/callback?" + urlencode(fields))
        assert response.status_code == 303, response.text
        assert response.headers["location"] == "/accounts"
        assert site.bank.failures == []
        (request,) = site.bank.requests
        form = site.bank.forms[0]
        assert set(form) == {"grant_type", "code", "redirect_uri", "code_verifier"}
        assert form["grant_type"] == "authorization_code"
        assert form["redirect_uri"] == "http://localhost/auth/callback"
        assert 43 <= len(form["code_verifier"]) <= 128
        assert request.headers["content-type"] == "application/x-www-form-urlencoded"
        me = await browser.me()
        assert me.status_code == 200
        assert me.json()["name"] == "Code Customer"


async def test_code_is_bound_to_its_own_verifier() -> None:
    async with open_site(response_type="code") as site:
        browser = await site.browser()
        first = await browser.login()
        second = await browser.login()
        # The bank issued the code for the first request's challenge...
        site.bank.register(
            "code-one.xyzzy", challenge=first["code_challenge"], redirect_uri=first["redirect_uri"]
        )
        site.secrets.add("code-one.xyzzy")
        # ...but it comes back with the second request's state (an injected code).
        response = await browser.get(f"/auth/callback?code=code-one.xyzzy&state={second['state']}")
        assert response.status_code == 400
        assert error_code(response) == "callback_invalid"
        assert site.bank.failures == ["PKCE verifier does not match the challenge"]
        assert pkce_challenge(site.bank.forms[0]["code_verifier"]) == second["code_challenge"]
        await assert_signed_out(browser)


async def test_code_refused_by_the_bank() -> None:
    async with open_site(response_type="code") as site:
        browser = await site.browser()
        state = (await browser.login())["state"]
        site.secrets.add("never-issued")
        response = await browser.get(f"/auth/callback?code=never-issued&state={state}")
        assert response.status_code == 400
        assert error_code(response) == "callback_invalid"
        await assert_signed_out(browser)


async def test_token_endpoint_down_during_the_exchange() -> None:
    async with open_site(response_type="code") as site:
        browser = await site.browser()
        state = await start_code_login(site, browser, "code-one.xyzzy")
        site.bank.fail_with = httpx.ConnectError("refused")
        response = await browser.get(f"/auth/callback?code=code-one.xyzzy&state={state}")
        assert response.status_code == 503
        assert error_code(response) == "token_endpoint_unavailable"


@pytest.mark.parametrize(
    ("expires_in", "token_type", "status", "code"),
    [(0, "Bearer", 400, "callback_invalid"), (300, "mac", 502, "token_response_malformed")],
)
async def test_unusable_token_from_the_exchange(
    expires_in: int, token_type: str, status: int, code: str
) -> None:
    async with open_site(response_type="code") as site:
        browser = await site.browser()
        state = await start_code_login(site, browser, "code-one.xyzzy")
        site.bank.expires_in = expires_in
        site.bank.token_type = token_type
        response = await browser.get(f"/auth/callback?code=code-one.xyzzy&state={state}")
        assert response.status_code == status
        assert error_code(response) == code
        await assert_signed_out(browser)


# --- state -------------------------------------------------------------------------------


async def test_state_missing(site: Site) -> None:
    browser = await site.browser()
    await browser.login()
    fields = token_fields("", new_token(site))
    del fields["state"]
    response = await browser.relay(fields)
    assert response.status_code == 400
    assert error_code(response) == "state_missing"
    assert set_cookie(response) is None
    await assert_signed_out(browser)


async def test_state_unknown(site: Site) -> None:
    browser = await site.browser()
    await browser.login()
    response = await browser.relay(token_fields(new_state(), new_token(site)))
    assert response.status_code == 400
    assert error_code(response) == "state_unknown"
    await assert_signed_out(browser)


async def test_state_reused(site: Site) -> None:
    browser = await site.browser()
    params = await browser.login()
    fields = token_fields(params["state"], new_token(site))
    assert (await browser.relay(fields)).status_code == 303
    signed_in = browser.cookie
    # Back or reload by the browser that signed in: it is sent home, signed in as before.
    replay = await browser.relay(fields | {"access_token": new_token(site, "Someone Else")})
    assert replay.status_code == 303
    assert replay.headers["location"] == "/"
    assert set_cookie(replay) is None
    assert browser.cookie == signed_in
    assert (await browser.me()).json()["name"] == "Nino Beridze"
    # Anyone else replaying it is told so, and signed in as nobody.
    other = await site.browser()
    replay = await other.relay(fields | {"access_token": new_token(site, "Someone Else")})
    assert replay.status_code == 400
    assert error_code(replay) == "state_reused"
    await assert_signed_out(other)


async def test_state_expired(site: Site) -> None:
    browser = await site.browser()
    params = await browser.login()
    site.clock.advance(600)
    response = await browser.relay(token_fields(params["state"], new_token(site)))
    assert response.status_code == 400
    assert error_code(response) == "state_expired"
    assert "took too long" in response.text
    await assert_signed_out(browser)


async def test_state_just_in_time(site: Site) -> None:
    browser = await site.browser()
    params = await browser.login()
    site.clock.advance(599)
    assert (await browser.relay(token_fields(params["state"], new_token(site)))).status_code == 303


async def test_a_state_long_gone_is_still_named_expired(site: Site) -> None:
    browser = await site.browser()
    params = await browser.login()
    site.clock.advance(86_400)  # the state carries its own issue time
    response = await browser.relay(token_fields(params["state"], new_token(site)))
    assert error_code(response) == "state_expired"


async def test_state_from_another_browser(site: Site) -> None:
    victim, attacker, cookieless = [await site.browser() for _ in range(3)]
    first = await victim.login()
    second = await victim.login()
    await attacker.login()
    response = await attacker.relay(token_fields(first["state"], new_token(site)))
    assert response.status_code == 400
    assert error_code(response) == "state_mismatch"
    assert "another browser" in response.text
    response = await cookieless.relay(token_fields(second["state"], new_token(site)))
    assert error_code(response) == "state_mismatch"
    await assert_signed_out(attacker)
    await assert_signed_out(cookieless)
    # Another browser cannot use up the victim's sign-in either: it still completes.
    response = await victim.relay(token_fields(first["state"], new_token(site)))
    assert response.status_code == 303


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
async def test_two_tabs_sign_in_in_either_order(site: Site, order: tuple[int, int]) -> None:
    browser = await site.browser()
    tabs = [await browser.login("?next=/one"), await browser.login("?next=/two")]
    targets = ["/one", "/two"]
    cookies = []
    for index in order:
        fields = token_fields(tabs[index]["state"], new_token(site, f"tab {index}"))
        response = await browser.relay(fields)
        assert response.status_code == 303, error_code(response)
        assert response.headers["location"] == targets[index]
        cookies.append(browser.cookie)
    assert len(set(cookies)) == 2
    assert (await browser.me()).json()["name"] == f"tab {order[1]}"
    await assert_signed_out(browser, cookie=cookies[0])


async def test_tab_started_after_sign_in_still_works(site: Site) -> None:
    browser = await site.browser()
    first = await browser.login()
    await browser.relay(token_fields(first["state"], new_token(site)))
    second = await browser.login()
    response = await browser.relay(token_fields(second["state"], new_token(site, "Again")))
    assert response.status_code == 303
    assert (await browser.me()).json()["name"] == "Again"


# --- iss, errors, token checks -----------------------------------------------------------


@pytest.mark.parametrize("iss", [ISSUER, ISSUER + "/", None])
async def test_issuer_accepted(site: Site, iss: str | None) -> None:
    browser = await site.browser()
    params = await browser.login()
    fields = token_fields(params["state"], new_token(site))
    if iss is None:
        del fields["iss"]
    else:
        fields["iss"] = iss
    assert (await browser.relay(fields)).status_code == 303


@pytest.mark.parametrize(
    "iss",
    [
        "https://account.bank.test/auth/realms/other",
        "https://evil.example/auth/realms/bog",
        ISSUER + "2",
    ],
)
async def test_issuer_mismatch(site: Site, iss: str) -> None:
    browser = await site.browser()
    params = await browser.login()
    response = await browser.relay(token_fields(params["state"], new_token(site), iss=iss))
    assert response.status_code == 400
    assert error_code(response) == "issuer_mismatch"
    await assert_signed_out(browser)


async def test_access_denied_after_a_valid_state(site: Site) -> None:
    browser = await site.browser()
    params = await browser.login()
    response = await browser.relay(
        {
            "state": params["state"],
            "iss": ISSUER,
            "error": "access_denied",
            "error_description": "<b>User cancelled</b>",
        }
    )
    assert response.status_code == 403
    assert error_code(response) == "authorization_denied"
    assert "cancelled at the bank" in response.text
    assert "<b>" not in response.text
    assert 'href="http://localhost/auth/login?next=%2F"' in response.text
    await assert_signed_out(browser)


async def test_other_error_after_a_valid_state_in_the_query(site: Site) -> None:
    browser = await site.browser()
    params = await browser.login()
    query = urlencode({"error": "server_error", "state": params["state"]})
    response = await browser.get("/auth/callback?" + query)
    assert response.status_code == 400
    assert error_code(response) == "authorization_denied"


@pytest.mark.parametrize(
    ("state", "expected"), [(None, "state_missing"), ("forged", "state_unknown")]
)
async def test_state_error_wins_over_an_error(site: Site, state: str | None, expected: str) -> None:
    browser = await site.browser()
    await browser.login()
    fields = {"error": "access_denied"}
    if state:
        fields["state"] = state
    response = await browser.relay(fields)
    assert response.status_code == 400
    assert error_code(response) == expected


@pytest.mark.parametrize(
    "changes",
    [
        {"token_type": "mac"},
        {"token_type": "DPoP"},
        {"expires_in": "0"},
        {"access_token": " "},
    ],
)
async def test_unusable_token_in_the_callback(site: Site, changes: dict[str, str]) -> None:
    browser = await site.browser()
    params = await browser.login()
    response = await browser.relay(token_fields(params["state"], new_token(site)) | changes)
    assert response.status_code == 400
    assert error_code(response) == "callback_invalid"
    await assert_signed_out(browser)


async def test_expired_jwt_without_expires_in(site: Site) -> None:
    browser = await site.browser()
    params = await browser.login()
    fields = token_fields(params["state"], new_token(site, lifetime=-5))
    del fields["expires_in"]
    response = await browser.relay(fields)
    assert error_code(response) == "callback_invalid"


async def test_lenient_token_fields(site: Site) -> None:
    browser = await site.browser()
    params = await browser.login()
    token = new_token(site, lifetime=120)
    fields = token_fields(params["state"], token, token_type="bearer")
    del fields["expires_in"]
    assert (await browser.relay(fields)).status_code == 303
    assert (await browser.me()).json()["expires_at"] == int(site.clock.now + 120)


async def test_a_code_where_a_token_was_expected(site: Site) -> None:
    browser = await site.browser()
    params = await browser.login()
    response = await browser.relay({"state": params["state"], "code": "code-two.xyzzy"})
    assert error_code(response) == "callback_invalid"
    assert site.bank.requests == []
    await assert_signed_out(browser)


@pytest.mark.parametrize("with_code", [False, True])
async def test_a_token_where_a_code_was_expected(with_code: bool) -> None:
    async with open_site(response_type="code") as site:
        browser = await site.browser()
        state = await start_code_login(site, browser, "code-one.xyzzy")
        fields = token_fields(state, new_token(site))
        if with_code:
            fields["code"] = "code-one.xyzzy"
        response = await browser.get("/auth/callback?" + urlencode(fields))
        assert response.status_code == 400
        assert error_code(response) == "callback_invalid"
        assert site.bank.requests == []
        await assert_signed_out(browser)


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"state=a&access_token=b", "text/plain"),
        (b'{"state": "a"}', "application/json"),
        (b"state=%ff%fe&access_token=b", "application/x-www-form-urlencoded"),
        (b"state=\xff", "application/x-www-form-urlencoded"),
        (b"access_token=" + b"a" * 70_000, "application/x-www-form-urlencoded"),
        (b"state=a&access_token=b%00c", "application/x-www-form-urlencoded"),
    ],
)
async def test_malformed_callback_posts(site: Site, content: bytes, content_type: str) -> None:
    browser = await site.browser()
    await browser.login()
    response = await browser.post(
        "/auth/callback", content=content, headers={"Content-Type": content_type}
    )
    assert response.status_code == 400
    assert error_code(response) == "callback_invalid"
    assert response.headers["content-security-policy"].startswith("default-src 'none'")


# --- sessions ----------------------------------------------------------------------------


def signer(*keys: str, salt: str = SESSION_SALT, clock: FakeClock | None = None) -> CookieSigner:
    return CookieSigner(secret_keys=keys, salt=salt, max_age=8 * 3600, clock=clock or FakeClock())


async def test_session_id_is_renewed_at_sign_in(site: Site) -> None:
    browser = await site.browser()
    await sign_in(site, browser)
    first = browser.cookie
    assert first is not None
    response = await browser.relay(token_fields((await browser.login())["state"], new_token(site)))
    cookie = set_cookie(response)
    assert cookie is not None
    assert "httponly" in cookie and cookie["samesite"].lower() == "lax"
    assert browser.cookie != first
    check = signer(KEY_1, clock=site.clock)
    assert check.unsign(first) != check.unsign(browser.cookie or "")
    await assert_signed_out(browser, cookie=first)
    assert (await browser.me()).status_code == 200


async def test_signed_in_cookie_on_https_is_secure() -> None:
    production: dict[str, Any] = {
        "development": False,
        "redirect_uri": "https://app.example/auth/callback",
    }
    async with open_site(**production) as site:
        browser = await site.browser("https://app.example")
        params = await browser.get("/auth/login")
        state = dict(parse_qsl(urlsplit(params.headers["location"]).query))["state"]
        pending = set_cookie(params, "__Host-" + SIGNIN_COOKIE)
        assert pending is not None
        response = await browser.post(
            "/auth/callback",
            data={"corpauth_relay": "fragment", **token_fields(state, new_token(site))},
            headers={"Cookie": f"__Host-{SIGNIN_COOKIE}={pending['value']}"},
        )
        cookie = set_cookie(response, "__Host-" + COOKIE)
        assert cookie is not None and "secure" in cookie and "httponly" in cookie
        assert cookie["samesite"].lower() == "lax" and cookie["path"] == "/"


async def test_fixated_cookie_is_useless_after_sign_in(site: Site) -> None:
    attacker, victim = await site.browser(), await site.browser()
    await sign_in(site, attacker)
    planted = attacker.cookie
    victim.cookie = planted  # e.g. injected through a sibling subdomain
    params = await victim.login()
    await victim.relay(token_fields(params["state"], new_token(site, "Victim")))
    assert victim.cookie != planted
    await assert_signed_out(attacker)  # the planted session was replaced, not shared
    assert (await victim.me()).json()["name"] == "Victim"


@pytest.mark.parametrize(
    ("next_param", "location"),
    [
        ("/accounts", "/accounts"),
        ("/accounts?id=7&sort=desc", "/accounts?id=7&sort=desc"),
        ("/statements#latest", "/statements#latest"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("/%2F%2Fevil.example", "/"),
        ("/%252F%252Fevil.example", "/"),
        ("/\t/evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("//user@evil.example", "/"),
    ],
)
async def test_next_end_to_end(site: Site, next_param: str, location: str) -> None:
    browser = await site.browser()
    response = await sign_in(site, browser, "?" + urlencode({"next": next_param}))
    assert response.headers["location"] == location


async def test_next_falls_back_to_post_login_url() -> None:
    async with open_site(post_login_url="/home") as site:
        browser = await site.browser()
        response = await sign_in(site, browser, "?next=//evil.example")
        assert response.headers["location"] == "/home"
        response = await sign_in(site, browser)
        assert response.headers["location"] == "/home"


async def test_logout_ends_the_session_server_side(site: Site) -> None:
    browser = await site.browser()
    await sign_in(site, browser)
    old = browser.cookie
    response = await browser.post("/auth/logout")
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    cleared = set_cookie(response)
    assert cleared is not None
    assert cleared["max-age"] == "0"
    assert "httponly" in cleared
    assert browser.cookie is None
    await assert_signed_out(browser, cookie=old)


@pytest.mark.parametrize(
    ("next_param", "location"), [("/bye", "/bye"), ("//evil.example", "/"), ("https://x.y", "/")]
)
async def test_logout_next(site: Site, next_param: str, location: str) -> None:
    browser = await site.browser()
    response = await browser.post("/auth/logout?" + urlencode({"next": next_param}))
    assert response.headers["location"] == location


async def test_logout_without_a_session(site: Site) -> None:
    browser = await site.browser()
    response = await browser.post("/auth/logout", cookie="garbage")
    assert response.status_code == 303


@pytest.mark.parametrize(
    ("locale", "next_param", "expected"),
    [
        ("en", "", "?client_id=corp-app&post_logout_redirect_uri=http%3A%2F%2Flocalhost%2F"),
        (
            "ka",
            "?next=/bye",
            "?client_id=corp-app&post_logout_redirect_uri=http%3A%2F%2Flocalhost%2Fbye"
            "&ui_locales=ka",
        ),
    ],
)
async def test_logout_at_provider(locale: str, next_param: str, expected: str) -> None:
    async with open_site(logout_at_provider=True, locale=locale) as site:
        browser = await site.browser()
        await sign_in(site, browser)
        old = browser.cookie
        response = await browser.post("/auth/logout" + next_param)
        assert response.status_code == 303
        assert response.headers["location"] == LOGOUT_URL + expected
        assert browser.cookie is None
        await assert_signed_out(browser, cookie=old)


def _tamper(cookie: str) -> list[str]:
    value, _, signature = cookie.rpartition(".")
    # The first character: the last one's low bits are base64 padding, ignored on decoding.
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    return [
        f"{value}.{flipped}",
        cookie[:-3],
        cookie + "x",
        "x" + cookie,
        cookie.replace(".", "", 1),
        value,
        "",
        "garbage",
        "a.b.c",
        "." * 10,
        "A" * 5000,
    ]


async def test_tampered_cookies_mean_signed_out(site: Site) -> None:
    browser = await site.browser()
    await sign_in(site, browser)
    assert browser.cookie is not None
    for bad in _tamper(browser.cookie):
        await assert_signed_out(browser, cookie=bad)
    assert (await browser.me()).status_code == 200


async def test_cookie_signed_by_another_key_or_purpose(site: Site) -> None:
    browser = await site.browser()
    await sign_in(site, browser)
    session_id = signer(KEY_1, clock=site.clock).unsign(browser.cookie or "")
    forged = signer("an-attacker-key-0123456789", clock=site.clock).sign(session_id)
    await assert_signed_out(browser, cookie=forged)
    other_purpose = signer(KEY_1, salt="fastapi_corpauth.other", clock=site.clock).sign(session_id)
    await assert_signed_out(browser, cookie=other_purpose)
    genuine = signer(KEY_1, clock=site.clock).sign(session_id)
    assert (await browser.me(cookie=genuine)).status_code == 200


async def test_key_rotation() -> None:
    clock = FakeClock()
    store = MemorySessionStore(clock=clock)
    async with open_site(clock=clock, session_store=store, session_secret=[KEY_1]) as old_site:
        browser = await old_site.browser()
        await sign_in(old_site, browser)
        signed_with_k1 = browser.cookie
        async with open_site(
            clock=clock, session_store=store, session_secret=[KEY_1, KEY_2]
        ) as rotated:
            during = await rotated.browser()
            assert (await during.me(cookie=signed_with_k1)).status_code == 200
            await sign_in(rotated, during)
            signed_with_k2 = during.cookie
            assert signer(KEY_2, clock=clock).load(signed_with_k2) is not None
            assert signer(KEY_1, clock=clock).load(signed_with_k2) is None
            async with open_site(clock=clock, session_store=store, session_secret=[KEY_2]) as new:
                after = await new.browser()
                await assert_signed_out(after, cookie=signed_with_k1)
                assert (await after.me(cookie=signed_with_k2)).status_code == 200
            rotated.secrets |= new.secrets
        old_site.secrets |= rotated.secrets


async def test_session_max_age() -> None:
    async with open_site(session_max_age=100) as site:
        browser = await site.browser()
        params = await browser.login()
        token = new_token(site, lifetime=900)
        await browser.relay(token_fields(params["state"], token, expires_in="900"))
        site.clock.advance(99)
        assert (await browser.me()).status_code == 200
        site.clock.advance(2)
        await assert_signed_out(browser)


async def test_an_expired_implicit_token_ends_the_session_for_api_calls(site: Site) -> None:
    browser = await site.browser()
    await sign_in(site, browser)
    site.clock.advance(299)
    assert (await browser.me()).status_code == 200
    site.clock.advance(1)
    response = await browser.me()
    assert response.status_code == 401
    assert response.json()["detail"]["code"] == "session_expired"
    assert (await browser.get("/maybe")).json() == {"name": None}


async def test_not_authenticated_answer(site: Site) -> None:
    browser = await site.browser()
    response = await browser.me(headers={"Accept": "text/html"})
    assert response.status_code == 401
    assert response.json() == NOT_AUTHENTICATED
    assert response.headers["cache-control"] == "no-store"


async def test_login_redirect_for_browsers() -> None:
    async with open_site(login_redirect=True) as site:
        browser = await site.browser()
        html = {"Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"}
        response = await browser.me(headers=html)
        assert response.status_code == 303
        assert response.headers["location"] == "http://localhost/auth/login?next=%2Fme"
        assert response.headers["cache-control"] == "no-store"
        api = await browser.me(headers={"Accept": "application/json"})
        assert api.status_code == 401
        assert api.json() == NOT_AUTHENTICATED
        assert (await browser.get("/maybe", headers=html)).json() == {"name": None}
        params = await browser.login("?" + urlsplit(response.headers["location"]).query)
        done = await browser.relay(token_fields(params["state"], new_token(site)))
        assert done.headers["location"] == "/me"


class _DownStore:
    async def get(self, key: str) -> dict[str, Any] | None:
        raise StoreUnavailable("down")

    async def set(self, key: str, record: Record, *, ttl: float) -> None:
        raise StoreUnavailable("down")

    async def add(self, key: str, record: Record, *, ttl: float) -> bool:
        raise StoreUnavailable("down")

    async def pop(self, key: str) -> dict[str, Any] | None:
        raise StoreUnavailable("down")

    async def delete(self, key: str) -> None:
        raise StoreUnavailable("down")

    async def aclose(self) -> None:
        return None


async def test_store_down(caplog: pytest.LogCaptureFixture) -> None:
    async with open_site(session_store=_DownStore()) as site:
        browser = await site.browser()
        params = await browser.login()  # nothing is stored for a sign-in in progress
        await assert_signed_out(browser, cookie="whatever")
        response = await browser.relay(token_fields(params["state"], new_token(site)))
        assert response.status_code == 503  # single use cannot be guaranteed
        assert error_code(response) == "session_store_unavailable"
        assert set_cookie(response) is None
        assert (await browser.post("/auth/logout")).status_code == 303


# --- hygiene, configuration, OpenAPI -----------------------------------------------------


async def test_nothing_secret_in_responses_locations_or_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "fastapi_corpauth", ""):
        logging.getLogger(name).setLevel(logging.DEBUG)
    cookies: set[str] = set()
    secrets: set[str] = set()
    for mode in ("fragment", "form_post", "query"):
        async with open_site(response_mode=mode) as site:
            browser = await site.browser()
            params = await browser.login()
            cookies.add(browser.cookie or "")
            fields = token_fields(params["state"], new_token(site))
            if mode == "query":
                response = await browser.get("/auth/callback?" + urlencode(fields))
            elif mode == "fragment":
                response = await browser.relay(fields)
            else:
                response = await browser.post("/auth/callback", data=fields)
            assert response.status_code == 303
            cookies.add(browser.cookie or "")
            await browser.relay(fields)  # reused
            await browser.relay(token_fields(params["state"], new_token(site), iss="x"))
            await browser.get("/auth/logout")
            secrets |= site.all_secrets()
    async with open_site(response_type="code") as site:
        browser = await site.browser()
        state = await start_code_login(site, browser, "the-code-xyz")
        assert (await browser.get(f"/auth/callback?code=the-code-xyz&state={state}")).is_redirect
        cookies.add(browser.cookie or "")
        await browser.get(f"/auth/callback?code=the-code-xyz&state={state}")
        site.secrets.add("unknown-code-xyz")
        state = (await browser.login())["state"]
        await browser.get(f"/auth/callback?code=unknown-code-xyz&state={state}")
        secrets |= site.all_secrets()
    assert len(secrets) >= 6
    secrets |= {CLIENT_SECRET} | cookies - {""}
    messages = [r.getMessage() for r in caplog.records if r.name == "fastapi_corpauth.login"]
    assert "customer signed in" in messages
    assert "sign-in refused: state_reused" in messages
    for record in caplog.records:
        if record.name == "httpx" and " http://localhost/" in record.getMessage():
            continue  # the test's own browser: a query-mode callback URL carries the token
        text = record.getMessage() + repr(record.args) + repr(record.__dict__)
        for secret in secrets:
            assert secret not in text, record.getMessage()


def test_router_needs_a_session_secret() -> None:
    corpauth = CorpAuth(settings())
    for attribute in ("router", "current_user", "optional_user"):
        with pytest.raises(ConfigurationError) as caught:
            getattr(corpauth, attribute)
        assert "CORPAUTH_SESSION_SECRET" in str(caught.value)
        assert caught.value.variables == ("CORPAUTH_SESSION_SECRET",)


async def test_openapi_has_no_cookie_to_type_in_and_no_secrets(site: Site) -> None:
    browser = await site.browser()
    response = await browser.get("/openapi.json")
    schema = response.json()
    # The session cookie is HttpOnly and set by signing in: Swagger UI's Authorize has
    # nothing to ask for; a signed-in browser sends it with "Try it out" by itself.
    assert "security" not in schema["paths"]["/me"]["get"]
    assert "CorpAuthSession" not in schema.get("components", {}).get("securitySchemes", {})
    assert "/auth/login" in schema["paths"]
    text = json.dumps(schema)
    for secret in (KEY_1, CLIENT_SECRET, json.dumps(CLIENT_SECRET)[1:-1]):
        assert secret not in text
    assert "bearer" not in text.lower()


# --- verification specifics: nonce, discovery, end-session ---------------------------------


@pytest.mark.parametrize(
    ("id_claims", "expected"),
    [
        ({"nonce": "<nonce>"}, None),
        ({"nonce": "a-different-nonce"}, "invalid_token"),
        ({"nonce": None}, "invalid_token"),
        ({"nonce": "<nonce>", "aud": "other-app"}, "invalid_token"),
        ({"nonce": "<nonce>", "sub": "someone-else"}, "invalid_token"),
        (None, "callback_invalid"),
    ],
)
async def test_an_openid_code_sign_in_checks_the_nonce(
    id_claims: dict[str, Any] | None, expected: str | None
) -> None:
    async with open_site(response_type="code", scope="openid corp") as site:
        browser = await site.browser()
        params = await browser.login()
        nonce = params["nonce"]
        assert len(nonce) >= 43
        site.bank.register(
            "code-n", challenge=params["code_challenge"], redirect_uri=params["redirect_uri"]
        )
        site.secrets.add("code-n")
        if id_claims is not None:
            site.bank.id_token_claims = {
                k: (nonce if v == "<nonce>" else v) for k, v in id_claims.items()
            }
        query = urlencode({"state": params["state"], "iss": ISSUER, "code": "code-n"})
        response = await browser.get("/auth/callback?" + query)
        if expected is None:
            assert response.status_code == 303, response.text
            assert (await browser.me()).json()["name"] == "Code Customer"
        else:
            assert error_code(response) == expected
            await assert_signed_out(browser)


async def test_a_token_implicit_sign_in_sends_no_nonce_without_openid(site: Site) -> None:
    browser = await site.browser()
    assert "nonce" not in await browser.login()


async def test_discovery_decides_the_endpoints_and_iss() -> None:
    async with open_site() as site:
        site.bank.discovery = {
            **(site.bank.discovery or {}),
            "authorization_endpoint": "https://login.bank.test/authorize",
            "authorization_response_iss_parameter_supported": True,
        }
        browser = await site.browser()
        response = await browser.get("/auth/login")
        assert response.headers["location"].startswith("https://login.bank.test/authorize?")
        state = dict(parse_qsl(urlsplit(response.headers["location"]).query))["state"]
        fields = token_fields(state, new_token(site))
        del fields["iss"]
        assert error_code(await browser.relay(fields)) == "issuer_mismatch"
        assert site.bank.discovery_requests == 1


async def test_without_discovery_keycloaks_paths_apply() -> None:
    async with open_site() as site:
        site.bank.discovery = None
        browser = await site.browser()
        await browser.login()  # asserts the Keycloak authorize path
        params = await browser.login()
        fields = token_fields(params["state"], new_token(site))
        del fields["iss"]  # a Keycloak < 23 sends none: accepted
        assert (await browser.relay(fields)).status_code == 303
        assert site.bank.jwks_requests == 1
        assert site.bank.discovery_requests == 1  # the failure is remembered for a while


async def test_discovery_can_be_switched_off() -> None:
    async with open_site(discovery=False) as site:
        browser = await site.browser()
        await sign_in(site, browser)
        assert site.bank.discovery_requests == 0


async def test_logout_skips_an_end_session_the_bank_does_not_have() -> None:
    async with open_site(logout_at_provider=True) as site:
        discovery = dict(site.bank.discovery or {})
        del discovery["end_session_endpoint"]
        site.bank.discovery = discovery
        browser = await site.browser()
        await sign_in(site, browser)
        response = await browser.post("/auth/logout?next=/bye")
        assert response.status_code == 200  # and it says so
        assert "sign-in at the bank may still be active" in response.text
        assert 'href="/bye"' in response.text
        assert set_cookie(response) is not None
        await assert_signed_out(browser)


async def test_keys_published_under_a_discovered_jwks_uri() -> None:
    async with open_site() as site:
        site.bank.keys = []  # nothing at Keycloak's path...
        site.bank.discovery = {**(site.bank.discovery or {}), "jwks_uri": ISSUER + "/keys"}
        browser = await site.browser()
        params = await browser.login()
        response = await browser.relay(token_fields(params["state"], new_token(site)))
        # ...and the discovered URI is not served by the mock bank: unavailable, not a pass.
        assert response.status_code == 503
        assert error_code(response) == "verification_unavailable"
