"""The devserver's browser half over HTTP: authorization, sign-in, code exchange, logout."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from fastapi import FastAPI

from fastapi_corpauth.devserver import (
    FLAVOURS,
    SSO_COOKIE,
    DevClient,
    DevServerState,
    DevUser,
    create_devserver,
)
from tests.support import FakeClock

pytestmark = pytest.mark.anyio

BASE = "http://dev"
ISSUER = f"{BASE}/realms/bog"
OIDC = "/realms/bog/protocol/openid-connect"
AUTH_PATH = f"{OIDC}/auth"
TOKEN_PATH = f"{OIDC}/token"
USERINFO_PATH = f"{OIDC}/userinfo"
LOGOUT_PATH = f"{OIDC}/logout"
LOCAL_CALLBACK = "http://127.0.0.1:8000/auth/callback"
REGISTERED = "https://app.example/bog/callback"
OTHER_REGISTERED = "https://app.example/bog/other?tenant=1"
#: RFC 7636 Appendix B.
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
STATE = "e46fcdf4-a4bf-4dc6-8a42-e1b12e27826b"

CLIENTS = (
    DevClient(client_id="corp-app", client_secret="dev-secret"),
    DevClient(client_id="implicitclient", public=True, redirect_uris=(REGISTERED,)),
    DevClient(
        client_id="codeclient",
        client_secret="code-secret",
        redirect_uris=(REGISTERED, OTHER_REGISTERED),
        implicit_enabled=False,
    ),
)
USERS = (
    DevUser(
        username="nino",
        password="pa ss+wörd",
        name="Nino Beridze",
        email="nino@kartli.example",
        company="Kartli Logistics LLC",
    ),
    DevUser(username="giorgi", password="secret", user_id="user-42"),
)


def devserver(flavour: str = "modern", **kwargs: Any) -> tuple[FastAPI, DevServerState]:
    kwargs.setdefault("clients", CLIENTS)
    kwargs.setdefault("users", USERS)
    app = create_devserver(flavour=flavour, **kwargs)
    return app, app.state.devserver


@asynccontextmanager
async def serve(app: FastAPI, base_url: str = BASE) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
        yield client


# --- helpers -----------------------------------------------------------------------------------


class FormParser(HTMLParser):
    """Forms of a page: their actions and named inputs and buttons, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, list[tuple[str, str]]]] = []
        self.ids: set[str] = set()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if "id" in attributes:
            self.ids.add(attributes["id"])
        for link_attribute in ("src", "href"):
            if link_attribute in attributes:
                self.sources.append(attributes[link_attribute])
        if tag == "form":
            self.forms.append((attributes.get("action", ""), []))
        elif tag == "input" and "name" in attributes and self.forms:
            self.forms[-1][1].append((attributes["name"], attributes.get("value", "")))


def parse_page(html: str) -> FormParser:
    parser = FormParser()
    parser.feed(html)
    return parser


def hidden_session_code(page: httpx.Response) -> tuple[str, str]:
    action, fields = parse_page(page.text).forms[0]
    return action, dict(fields)["session_code"]


def auth_params(**overrides: str | None) -> dict[str, str]:
    params: dict[str, str | None] = {
        "client_id": "corp-app",
        "response_type": "token",
        "scope": "corp",
        "redirect_uri": LOCAL_CALLBACK,
        "state": STATE,
    }
    params.update(overrides)
    return {name: value for name, value in params.items() if value is not None}


async def authorize(client: httpx.AsyncClient, **overrides: str | None) -> httpx.Response:
    return await client.get(AUTH_PATH, params=auth_params(**overrides))


async def submit(
    client: httpx.AsyncClient,
    page: httpx.Response,
    *,
    username: str = "nino",
    password: str = "pa ss+wörd",
    button: str = "login",
) -> httpx.Response:
    assert page.status_code == 200, page.text
    action, session_code = hidden_session_code(page)
    form = {"session_code": session_code, "username": username, "password": password}
    form[button] = button
    return await client.post(action, data=form)


async def sign_in(client: httpx.AsyncClient, **overrides: str | None) -> httpx.Response:
    return await submit(client, await authorize(client, **overrides))


def redirect_params(response: httpx.Response, part: str) -> list[tuple[str, str]]:
    assert response.status_code == 302, response.text
    location = urlsplit(response.headers["location"])
    return parse_qsl(getattr(location, part), keep_blank_values=True)


def redirect_target(response: httpx.Response) -> str:
    location = urlsplit(response.headers["location"])
    return f"{location.scheme}://{location.netloc}{location.path}"


def claims_of(token: str, state: DevServerState | None = None) -> dict[str, Any]:
    """A JWT's claims, or the introspection answer of an opaque token (``state`` given)."""
    if state is not None and state.flavour.token_format == "opaque":
        return state.introspect(token)
    segment = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return decoded


def basic(client_id: str, secret: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def expected_error(flavour_name: str, error: str, description: str | None) -> list[tuple[str, str]]:
    params = [("error", error)]
    if description is not None:
        params.append(("error_description", description))
    params.append(("state", STATE))
    if FLAVOURS[flavour_name].issue_iss:
        params.append(("iss", ISSUER))
    return params


def assert_page_headers(response: httpx.Response) -> str:
    """The hygiene every browser page carries; returns the CSP nonce."""
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    match = re.search(r"script-src 'nonce-([A-Za-z0-9_\-]+)'", csp)
    assert match is not None
    nonce = match.group(1)
    assert f"style-src 'nonce-{nonce}'" in csp
    parsed = parse_page(response.text)
    assert all(not source.startswith(("http:", "https:", "//")) for source in parsed.sources)
    return nonce


def sso_cookie_header(response: httpx.Response) -> str:
    headers = [h for h in response.headers.get_list("set-cookie") if h.startswith(SSO_COOKIE)]
    assert len(headers) == 1
    return headers[0]


# --- authorization endpoint: requests that must not redirect -----------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"client_id": None}, "Missing parameter: client_id"),
        ({"client_id": "nope"}, "Client not found."),
        ({"client_id": "implicitclient", "redirect_uri": "https://evil.example/cb"}, None),
        ({"client_id": "implicitclient", "redirect_uri": REGISTERED + "/"}, None),
        ({"client_id": "implicitclient", "redirect_uri": REGISTERED.upper()}, None),
        ({"redirect_uri": "https://app.example/bog/callback"}, None),
        ({"redirect_uri": "http://127.0.0.1.evil.example/cb"}, None),
        ({"redirect_uri": "http://user@127.0.0.1:8000/cb"}, None),
        ({"redirect_uri": "http://127.0.0.1:8000/cb#frag"}, None),
        ({"redirect_uri": "ftp://127.0.0.1/cb"}, None),
        ({"redirect_uri": "/relative/cb"}, None),
        ({"redirect_uri": None}, None),
        ({"client_id": "codeclient", "redirect_uri": None}, None),
    ],
)
async def test_bad_client_or_redirect_uri_shows_an_error_page(
    overrides: dict[str, str | None], message: str | None
) -> None:
    app, state = devserver()
    async with serve(app) as client:
        # Even a request that is otherwise broken must not go to an untrusted redirect.
        response = await authorize(client, response_mode="query", **overrides)
    assert response.status_code == 400
    assert "location" not in response.headers
    assert_page_headers(response)
    assert "Invalid parameter: redirect_uri" in response.text if message is None else message
    assert state.authorize_requests == 1


async def test_error_page_speaks_georgian() -> None:
    app, _ = devserver()
    async with serve(app) as client:
        response = await authorize(client, client_id="nope", kc_locale="ka")
    assert response.status_code == 400
    assert '<html lang="ka">' in response.text
    assert "კლიენტი ვერ მოიძებნა." in response.text


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://127.0.0.1:5173/callback",
        "http://127.0.0.1/cb?next=1",
        "http://localhost:8443/x",
        "https://[::1]:9443/auth/callback",
    ],
)
async def test_client_without_registered_uris_accepts_local_urls_on_any_port(
    redirect_uri: str,
) -> None:
    app, _ = devserver()
    async with serve(app) as client:
        response = await authorize(client, redirect_uri=redirect_uri)
    assert response.status_code == 200
    assert "kc-login" in parse_page(response.text).ids


async def test_only_registered_redirect_uri_is_used_when_omitted() -> None:
    app, _ = devserver()
    async with serve(app) as client:
        response = await sign_in(client, client_id="implicitclient", redirect_uri=None)
    assert redirect_target(response) == REGISTERED


async def test_unknown_realm() -> None:
    app, _ = devserver()
    async with serve(app) as client:
        response = await client.get(
            "/realms/nope/protocol/openid-connect/auth", params=auth_params()
        )
    assert response.status_code == 404
    assert response.json() == {"error": "Realm does not exist"}


# --- authorization endpoint: errors sent back to the client ------------------------------------


@pytest.mark.parametrize(
    ("overrides", "part", "error", "description"),
    [
        ({"response_type": None}, "query", "invalid_request", "Missing parameter: response_type"),
        ({"response_type": "id_token"}, "query", "unsupported_response_type", None),
        ({"response_type": "code token"}, "query", "unsupported_response_type", None),
        (
            {"response_type": "id_token", "response_mode": "fragment"},
            "fragment",
            "unsupported_response_type",
            None,
        ),
        ({"scope": "corp admin"}, "fragment", "invalid_scope", "Invalid scopes: corp admin"),
        (
            {"response_type": "code", "scope": "openid corp admin"},
            "query",
            "invalid_scope",
            "Invalid scopes: openid corp admin",
        ),
        (
            {"response_mode": "query.jwt"},
            "fragment",
            "invalid_request",
            "Invalid parameter: response_mode",
        ),
        (
            {"client_id": "codeclient", "redirect_uri": REGISTERED},
            "fragment",
            "unauthorized_client",
            "Client is not allowed to initiate browser login with given response_type. "
            "Implicit flow is disabled for the client.",
        ),
        (
            {"response_type": "code", "code_challenge": CHALLENGE},
            "query",
            "invalid_request",
            "Invalid parameter: code_challenge_method",
        ),
        (
            {
                "response_type": "code",
                "code_challenge": CHALLENGE,
                "code_challenge_method": "plain",
            },
            "query",
            "invalid_request",
            "Invalid parameter: code_challenge_method",
        ),
        (
            {"response_type": "code", "code_challenge_method": "S256"},
            "query",
            "invalid_request",
            "Missing parameter: code_challenge",
        ),
        (
            {"response_type": "code", "code_challenge": "short", "code_challenge_method": "S256"},
            "query",
            "invalid_request",
            "Invalid parameter: code_challenge",
        ),
        ({"prompt": "none"}, "fragment", "login_required", None),
        ({"prompt": "none", "response_type": "code"}, "query", "login_required", None),
    ],
)
async def test_authorization_errors_go_back_to_the_client(
    flavour_name: str,
    overrides: dict[str, str | None],
    part: str,
    error: str,
    description: str | None,
) -> None:
    app, _ = devserver(flavour_name)
    async with serve(app) as client:
        response = await authorize(client, **overrides)
    assert response.headers["location"].startswith(overrides.get("redirect_uri") or LOCAL_CALLBACK)
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert redirect_params(response, part) == expected_error(flavour_name, error, description)
    other = "query" if part == "fragment" else "fragment"
    assert redirect_params(response, other) == []


async def test_query_mode_is_refused_for_implicit_except_on_bank_docs(flavour_name: str) -> None:
    app, _ = devserver(flavour_name)
    async with serve(app) as client:
        response = await authorize(client, response_mode="query")
    if FLAVOURS[flavour_name].implicit_query_allowed:
        assert flavour_name == "bank-docs"
        assert response.status_code == 200
        return
    assert redirect_params(response, "query") == expected_error(
        flavour_name,
        "invalid_request",
        "Response_mode 'query' not allowed for implicit or hybrid flow",
    )
    assert redirect_params(response, "fragment") == []


async def test_errors_in_form_post_mode() -> None:
    app, _ = devserver("legacy")
    async with serve(app) as client:
        response = await authorize(client, response_mode="form_post", scope="bogus")
    assert response.status_code == 200
    assert_page_headers(response)
    action, fields = parse_page(response.text).forms[0]
    assert action == LOCAL_CALLBACK
    assert fields == expected_error("legacy", "invalid_scope", "Invalid scopes: bogus")


# --- the sign-in page --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("locales", "language"),
    [
        ({}, "en"),
        ({"kc_locale": "ka"}, "ka"),
        ({"ui_locales": "ka"}, "ka"),
        ({"ui_locales": "fr ka-GE en"}, "ka"),
        ({"kc_locale": "en", "ui_locales": "ka"}, "en"),
        ({"kc_locale": "ka", "ui_locales": "en"}, "ka"),
        ({"kc_locale": "de", "ui_locales": "ka"}, "ka"),
        ({"kc_locale": "de"}, "en"),
    ],
)
async def test_sign_in_page_language(locales: dict[str, str], language: str) -> None:
    app, state = devserver()
    async with serve(app) as client:
        response = await authorize(client, **locales)
    assert response.status_code == 200
    nonce = assert_page_headers(response)
    page = response.text
    assert f'<html lang="{language}">' in page
    assert f'<style nonce="{nonce}">' in page
    parsed = parse_page(page)
    assert {"username", "password", "kc-login", "kc-cancel"} <= parsed.ids
    action, fields = parsed.forms[0]
    assert action == "/realms/bog/login-actions/authenticate"
    assert [name for name, _ in fields] == ["session_code", "username", "password"]
    csp = response.headers["content-security-policy"]
    assert "form-action 'self' http://127.0.0.1:8000" in csp
    if language == "ka":
        assert "<title>შესვლა</title>" in page
        for text in ("მომხმარებელი", "პაროლი", "შესვლა", "გაუქმება"):
            assert text in page
        assert "Sign in" not in page
    else:
        assert "<title>Sign in</title>" in page
        for text in ("Username", "Password", "Cancel"):
            assert text in page
    assert len(state.pending_logins) == 1


async def test_sign_in_page_escapes_what_the_user_typed() -> None:
    app, state = devserver()
    async with serve(app) as client:
        page = await authorize(client)
        response = await submit(client, page, username='"><script>alert(1)</script>')
    assert response.status_code == 200
    assert "<script>alert(1)" not in response.text
    assert "&quot;&gt;&lt;script&gt;" in response.text
    assert state.login_failures == 1


# --- implicit sign-in --------------------------------------------------------------------------


def expected_implicit_keys(flavour_name: str) -> list[str]:
    flavour = FLAVOURS[flavour_name]
    keys = ["state", "session_state"]
    if flavour.issue_iss:
        keys.append("iss")
    keys += ["access_token", "token_type"]
    if flavour.include_expires_in:
        keys.append("expires_in")
    return keys


def check_implicit_result(
    flavour_name: str, params: list[tuple[str, str]], state: DevServerState
) -> dict[str, str]:
    flavour = FLAVOURS[flavour_name]
    assert [name for name, _ in params] == expected_implicit_keys(flavour_name)
    values = dict(params)
    assert values["state"] == STATE
    assert values["token_type"] == flavour.token_type
    if flavour.include_expires_in:
        assert values["expires_in"] == "900"
    if flavour.issue_iss:
        assert values["iss"] == ISSUER
    claims = claims_of(values["access_token"], state)
    assert claims["sub"] == USERS[0].subject
    assert claims["preferred_username"] == "nino"
    assert claims["name"] == "Nino Beridze"
    assert claims["email"] == "nino@kartli.example"
    assert claims["company"] == "Kartli Logistics LLC"
    if flavour.token_format == "rfc9068":
        assert claims["client_id"] == "corp-app"
        assert "typ" not in claims
    else:
        assert claims["azp"] == "corp-app"
        assert claims["typ"] == "Bearer"
    assert claims["iss"] == ISSUER
    assert claims["exp"] - claims["iat"] == 900
    assert claims["session_state"] == claims["sid"] == values["session_state"]
    assert claims["scope"] == state.granted_scope
    return values


async def test_implicit_sign_in_answers_in_the_fragment(flavour_name: str) -> None:
    app, state = devserver(flavour_name, clock=FakeClock(1_700_000_000.5))
    async with serve(app) as client:
        response = await sign_in(client)
    assert redirect_target(response) == LOCAL_CALLBACK
    assert redirect_params(response, "query") == []
    check_implicit_result(flavour_name, redirect_params(response, "fragment"), state)
    assert response.headers["referrer-policy"] == "no-referrer"
    cookie = sso_cookie_header(response)
    assert "HttpOnly" in cookie
    assert "Path=/realms/bog/" in cookie
    assert "SameSite=lax" in cookie
    assert "Secure" not in cookie
    assert (state.authorize_requests, state.logins, state.login_failures) == (1, 1, 0)
    assert state.tokens_issued == 1
    assert len(state.pending_logins) == 0


async def test_implicit_sign_in_by_form_post(flavour_name: str) -> None:
    app, state = devserver(flavour_name)
    async with serve(app) as client:
        response = await sign_in(client, response_mode="form_post")
    assert response.status_code == 200
    nonce = assert_page_headers(response)
    csp = response.headers["content-security-policy"]
    assert "form-action http://127.0.0.1:8000" in csp
    assert f'<script nonce="{nonce}">' in response.text
    action, fields = parse_page(response.text).forms[0]
    assert action == LOCAL_CALLBACK
    check_implicit_result(flavour_name, fields, state)
    sso_cookie_header(response)


async def test_implicit_sign_in_in_the_query_on_bank_docs() -> None:
    app, state = devserver("bank-docs")
    async with serve(app) as client:
        response = await sign_in(
            client, response_mode="query", redirect_uri="http://127.0.0.1:8000/cb?lang=ka"
        )
    assert response.headers["location"].startswith("http://127.0.0.1:8000/cb?lang=ka&state=")
    params = redirect_params(response, "query")
    assert params[0] == ("lang", "ka")
    check_implicit_result("bank-docs", params[1:], state)
    assert redirect_params(response, "fragment") == []


async def test_implicit_token_lifetime_is_configurable() -> None:
    app, _ = devserver(implicit_token_lifetime=60)
    async with serve(app) as client:
        response = await sign_in(client)
    values = dict(redirect_params(response, "fragment"))
    assert values["expires_in"] == "60"
    claims = claims_of(values["access_token"])
    assert claims["exp"] - claims["iat"] == 60


async def test_no_state_no_state_parameter() -> None:
    app, _ = devserver()
    async with serve(app) as client:
        response = await sign_in(client, state=None)
    assert [name for name, _ in redirect_params(response, "fragment")][:2] == [
        "session_state",
        "iss",
    ]


async def test_cancel_is_access_denied(flavour_name: str) -> None:
    app, state = devserver(flavour_name)
    async with serve(app) as client:
        page = await authorize(client)
        response = await submit(client, page, button="cancel")
        again = await submit(client, page)
    assert redirect_params(response, "fragment") == expected_error(
        flavour_name, "access_denied", None
    )
    assert SSO_COOKIE not in response.headers.get("set-cookie", "")
    assert again.status_code == 400  # the pending login is gone
    assert (state.logins, state.login_failures) == (0, 0)


async def test_cancel_in_the_code_flow_goes_to_the_query() -> None:
    app, _ = devserver()
    async with serve(app) as client:
        page = await authorize(client, response_type="code")
        response = await submit(client, page, button="cancel")
    assert redirect_params(response, "query") == expected_error("modern", "access_denied", None)


@pytest.mark.parametrize(
    ("locale", "message"),
    [("en", "Invalid username or password."), ("ka", "მომხმარებლის სახელი ან პაროლი არასწორია.")],
)
async def test_wrong_credentials_show_the_page_again(locale: str, message: str) -> None:
    app, state = devserver()
    async with serve(app) as client:
        page = await authorize(client, kc_locale=locale)
        wrong_password = await submit(client, page, password="nope")
        unknown_user = await submit(client, page, username="mallory", password="x")
        retry = await submit(client, wrong_password)
    for response in (wrong_password, unknown_user):
        assert response.status_code == 200
        assert message in response.text
        assert f'<html lang="{locale}">' in response.text
        assert SSO_COOKIE not in response.headers.get("set-cookie", "")
        assert_page_headers(response)
        assert hidden_session_code(response) == hidden_session_code(page)
    assert 'value="nino"' in wrong_password.text
    assert retry.status_code == 302
    assert (state.login_failures, state.logins) == (2, 1)


async def test_expired_or_unknown_login_page() -> None:
    clock = FakeClock(1_700_000_000.5)
    app, _ = devserver(clock=clock)
    async with serve(app) as client:
        page = await authorize(client)
        clock.now += 301
        expired = await submit(client, page)
        unknown = await client.post(
            "/realms/bog/login-actions/authenticate",
            data={"session_code": "forged", "username": "nino", "password": "pa ss+wörd"},
        )
    for response in (expired, unknown):
        assert response.status_code == 400
        assert "timed out" in response.text
        assert "location" not in response.headers


# --- dev SSO session ---------------------------------------------------------------------------


async def test_sso_session_skips_the_form() -> None:
    app, state = devserver()
    async with serve(app) as client:
        first = await sign_in(client)
        second = await authorize(client, state="second")
        passive = await authorize(client, prompt="none", state="third")
        forced = await authorize(client, prompt="login")
    first_session = dict(redirect_params(first, "fragment"))["session_state"]
    for response, expected_state in ((second, "second"), (passive, "third")):
        values = dict(redirect_params(response, "fragment"))
        assert values["state"] == expected_state
        assert values["session_state"] == first_session
        assert "access_token" in values
        assert "set-cookie" not in response.headers
    assert forced.status_code == 200
    assert "kc-login" in parse_page(forced.text).ids
    assert (state.logins, state.authorize_requests, state.tokens_issued) == (1, 4, 3)


async def test_sso_cookie_is_per_browser_and_must_be_live() -> None:
    clock = FakeClock(1_700_000_000.5)
    app, _ = devserver(clock=clock)
    async with serve(app) as client:
        await sign_in(client)
        clock.now += 1801
        expired = await authorize(client, prompt="none")
    async with serve(app) as other_browser:
        fresh = await authorize(other_browser, prompt="none")
    for response in (expired, fresh):
        assert dict(redirect_params(response, "fragment"))["error"] == "login_required"


async def test_signing_in_again_replaces_the_sso_session() -> None:
    app, state = devserver()
    async with serve(app) as client:
        first = await sign_in(client)
        second = await submit(
            client, await authorize(client, prompt="login"), username="giorgi", password="secret"
        )
    old = dict(redirect_params(first, "fragment"))["session_state"]
    new = dict(redirect_params(second, "fragment"))
    assert new["session_state"] != old
    assert state.sso_sessions.get(old) is None
    assert claims_of(new["access_token"])["sub"] == "user-42"


async def test_mounted_devserver_scopes_cookie_and_form_to_the_mount() -> None:
    outer = FastAPI()
    dev = create_devserver(clients=CLIENTS, users=USERS)
    outer.mount("/auth", dev)
    async with serve(outer, "https://bank.example") as client:
        page = await client.get("/auth" + AUTH_PATH, params=auth_params())
        action, _ = hidden_session_code(page)
        response = await submit(client, page)
    assert action == "/auth/realms/bog/login-actions/authenticate"
    cookie = sso_cookie_header(response)
    assert "Path=/auth/realms/bog/" in cookie
    assert "Secure" in cookie
    assert dict(redirect_params(response, "fragment"))["iss"] == (
        "https://bank.example/auth/realms/bog"
    )


# --- code flow ---------------------------------------------------------------------------------


async def get_code(client: httpx.AsyncClient, **overrides: str | None) -> str:
    params: dict[str, str | None] = {
        "client_id": "codeclient",
        "response_type": "code",
        "redirect_uri": REGISTERED,
        "code_challenge": CHALLENGE,
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    response = await sign_in(client, **params)
    values = dict(redirect_params(response, "query"))
    return values["code"]


async def exchange(
    client: httpx.AsyncClient,
    code: str,
    headers: dict[str, str] | None = None,
    /,
    **form: str | None,
) -> httpx.Response:
    data: dict[str, str | None] = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REGISTERED,
        "code_verifier": VERIFIER,
    }
    data.update(form)
    if headers is None:
        headers = basic("codeclient", "code-secret")
    body = {name: value for name, value in data.items() if value is not None}
    return await client.post(TOKEN_PATH, data=body, headers=headers)


async def test_code_flow_with_pkce(flavour_name: str) -> None:
    flavour = FLAVOURS[flavour_name]
    app, state = devserver(flavour_name, clock=FakeClock(1_700_000_000.5), token_lifetime=300)
    async with serve(app) as client:
        response = await sign_in(
            client,
            client_id="codeclient",
            response_type="code",
            redirect_uri=REGISTERED,
            code_challenge=CHALLENGE,
            code_challenge_method="S256",
            scope="openid corp",
            nonce="n-0S6",
        )
        params = redirect_params(response, "query")
        expected = ["state", "session_state", *(["iss"] if flavour.issue_iss else []), "code"]
        assert [name for name, _ in params] == expected
        assert redirect_params(response, "fragment") == []
        values = dict(params)
        token_response = await exchange(client, values["code"])
        api = await client.get(
            "/api/accounts", headers=bearer(token_response.json()["access_token"])
        )
    assert token_response.status_code == 200, token_response.text
    assert token_response.headers["cache-control"] == "no-store"
    body = token_response.json()
    keys = ["access_token", "expires_in", "refresh_expires_in", "refresh_token", "token_type"]
    keys += ["id_token", "not-before-policy", "session_state", "scope"]
    if not flavour.include_expires_in:
        keys.remove("expires_in")
    assert list(body) == keys
    assert body["token_type"] == flavour.token_type
    assert body["session_state"] == values["session_state"]
    assert body["scope"] == f"openid {state.granted_scope}"
    assert body["refresh_expires_in"] == 1800
    access = claims_of(body["access_token"], state)
    assert access["exp"] - access["iat"] == 300
    assert access.get("azp", access.get("client_id")) == "codeclient"
    assert access["preferred_username"] == "nino"
    id_token = claims_of(body["id_token"])
    assert id_token["typ"] == "ID"
    assert id_token["aud"] == "codeclient"
    assert id_token["nonce"] == "n-0S6"
    assert id_token["sub"] == access["sub"]
    assert claims_of(body["refresh_token"])["typ"] == "Refresh"
    assert api.status_code == 200
    if flavour.include_expires_in:
        assert body["expires_in"] == 300


async def test_code_flow_without_openid_has_no_id_token() -> None:
    app, _ = devserver()
    async with serve(app) as client:
        code = await get_code(client)
        response = await exchange(client, code)
    body = response.json()
    assert "id_token" not in body
    assert body["scope"] == "corp profile email"
    assert "refresh_token" in body


async def test_code_flow_for_a_public_client_without_pkce() -> None:
    app, _ = devserver()
    async with serve(app) as client:
        code = await get_code(
            client,
            client_id="implicitclient",
            code_challenge=None,
            code_challenge_method=None,
        )
        response = await exchange(client, code, {}, client_id="implicitclient", code_verifier=None)
    assert response.status_code == 200, response.text


async def test_code_flow_without_redirect_uri_needs_none_at_the_token_endpoint() -> None:
    app, _ = devserver()
    async with serve(app) as client:
        code = await get_code(client, client_id="implicitclient", redirect_uri=None)
        response = await exchange(client, code, {}, client_id="implicitclient", redirect_uri=None)
    assert response.status_code == 200, response.text


async def test_code_flow_by_form_post() -> None:
    app, _ = devserver()
    async with serve(app) as client:
        response = await sign_in(
            client, response_type="code", response_mode="form_post", state=None
        )
    _, fields = parse_page(response.text).forms[0]
    assert [name for name, _ in fields] == ["session_state", "iss", "code"]


@pytest.mark.parametrize(
    ("form", "status", "error", "description"),
    [
        (
            {"code_verifier": "x" * 43},
            400,
            "invalid_grant",
            "PKCE verification failed: Code mismatch",
        ),
        (
            {"code_verifier": "short"},
            400,
            "invalid_grant",
            "PKCE verification failed: Code mismatch",
        ),
        ({"code_verifier": None}, 400, "invalid_grant", "PKCE code verifier not specified"),
        ({"redirect_uri": OTHER_REGISTERED}, 400, "invalid_grant", "Incorrect redirect_uri"),
        ({"redirect_uri": None}, 400, "invalid_grant", "Incorrect redirect_uri"),
        ({"code": "unknown"}, 400, "invalid_grant", "Code not valid"),
        ({"code": None}, 400, "invalid_request", "Missing parameter: code"),
    ],
)
async def test_code_exchange_failures(
    form: dict[str, str | None], status: int, error: str, description: str
) -> None:
    app, state = devserver()
    async with serve(app) as client:
        code = await get_code(client)
        if "code" in form:
            code_value = form.pop("code")
            data = {"grant_type": "authorization_code", "redirect_uri": REGISTERED}
            if code_value is not None:
                data["code"] = code_value
            response = await client.post(
                TOKEN_PATH, data=data, headers=basic("codeclient", "code-secret")
            )
        else:
            response = await exchange(client, code, **form)
        retry = await exchange(client, code)
    assert response.status_code == status
    assert response.json() == {"error": error, "error_description": description}
    assert response.headers["cache-control"] == "no-store"
    if error == "invalid_grant" and description != "Code not valid":
        # A failed exchange used the code up.
        assert retry.json() == {"error": "invalid_grant", "error_description": "Code not valid"}
    assert state.tokens_issued == (1 if retry.status_code == 200 else 0)


async def test_code_is_single_use_and_expires() -> None:
    clock = FakeClock(1_700_000_000.5)
    app, _ = devserver(clock=clock)
    async with serve(app) as client:
        code = await get_code(client)
        first = await exchange(client, code)
        second = await exchange(client, code)
        late_code = await get_code(client, prompt="login")
        clock.now += 61
        late = await exchange(client, late_code)
    assert first.status_code == 200
    for response in (second, late):
        assert response.status_code == 400
        assert response.json() == {"error": "invalid_grant", "error_description": "Code not valid"}


async def test_code_is_bound_to_its_client() -> None:
    app, _ = devserver()
    async with serve(app) as client:
        code = await get_code(client, client_id="corp-app", redirect_uri=LOCAL_CALLBACK)
        stolen = await exchange(client, code, redirect_uri=LOCAL_CALLBACK)
    assert stolen.json() == {"error": "invalid_grant", "error_description": "Auth error"}


async def test_code_exchange_authenticates_the_client() -> None:
    app, _ = devserver()
    async with serve(app) as client:
        code = await get_code(client)
        wrong = await exchange(client, code, basic("codeclient", "wrong"))
        right = await exchange(client, code)
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "unauthorized_client"
    assert right.status_code == 200


async def test_public_client_cannot_use_client_credentials() -> None:
    app, _ = devserver()
    async with serve(app) as client:
        response = await client.post(
            TOKEN_PATH, data={"grant_type": "client_credentials", "client_id": "implicitclient"}
        )
    assert response.status_code == 401
    assert response.json() == {
        "error": "unauthorized_client",
        "error_description": "Public client not allowed to retrieve service account",
    }


# --- user tokens at the sample API and userinfo ------------------------------------------------


async def implicit_token(client: httpx.AsyncClient) -> str:
    """Sign in through the form (again, if the browser already has a session)."""
    response = await sign_in(client, prompt="login")
    return dict(redirect_params(response, "fragment"))["access_token"]


async def test_user_token_is_accepted_by_the_api_and_revoked_by_push(flavour_name: str) -> None:
    app, state = devserver(flavour_name)
    async with serve(app) as client:
        token = await implicit_token(client)
        accepted = await client.get("/api/accounts", headers=bearer(token))
        await client.post("/_dev/not-before")
        stale = await client.get("/api/accounts", headers=bearer(token))
        stale_userinfo = await client.get(USERINFO_PATH, headers=bearer(token))
        newer = await client.get("/api/accounts", headers=bearer(await implicit_token(client)))
    assert accepted.status_code == 200
    # A customer sees the accounts of their own company (the service account sees all).
    holders = {account["holder"] for account in accepted.json()["accounts"]}
    assert holders == {"Kartli Logistics LLC"}
    assert len(accepted.json()["accounts"]) == 2
    assert stale.status_code == 401
    assert 'error_description="Stale token"' in stale.headers["www-authenticate"]
    assert stale_userinfo.status_code == 401
    assert newer.status_code == 200


async def test_implicit_user_token_expires_by_the_clock() -> None:
    clock = FakeClock(1_700_000_000.5)
    app, _ = devserver(clock=clock)
    async with serve(app) as client:
        token = await implicit_token(client)
        clock.now += 899
        still = await client.get("/api/accounts", headers=bearer(token))
        clock.now += 1
        expired = await client.get("/api/accounts", headers=bearer(token))
    assert still.status_code == 200
    assert 'error_description="Token expired"' in expired.headers["www-authenticate"]


async def test_userinfo() -> None:
    app, _ = devserver()
    async with serve(app) as client:
        token = await implicit_token(client)
        by_get = await client.get(USERINFO_PATH, headers=bearer(token))
        by_post = await client.post(USERINFO_PATH, headers=bearer(token))
    assert by_get.status_code == 200
    assert by_get.json() == {
        "sub": USERS[0].subject,
        "preferred_username": "nino",
        "name": "Nino Beridze",
        "email": "nino@kartli.example",
    }
    assert by_post.json() == by_get.json()


@pytest.mark.parametrize("authorization", [None, "Bearer garbage", "Basic Zm9vOmJhcg=="])
async def test_userinfo_rejects_missing_and_bad_tokens(authorization: str | None) -> None:
    app, _ = devserver()
    headers = {} if authorization is None else {"Authorization": authorization}
    async with serve(app) as client:
        response = await client.get(USERINFO_PATH, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert response.headers["www-authenticate"].startswith(
        'Bearer realm="bog", error="invalid_token"'
    )


async def test_userinfo_rejects_a_foreign_token() -> None:
    app, _ = devserver()
    other, _ = devserver()
    async with serve(other) as other_client:
        token = await implicit_token(other_client)
    async with serve(app) as client:
        response = await client.get(USERINFO_PATH, headers=bearer(token))
    assert response.status_code == 401


# --- logout ------------------------------------------------------------------------------------


async def test_logout_with_redirect_needs_client_id_or_id_token_hint() -> None:
    app, state = devserver()
    async with serve(app) as client:
        response = await client.get(
            LOGOUT_PATH, params={"post_logout_redirect_uri": LOCAL_CALLBACK}
        )
    assert response.status_code == 400
    assert "location" not in response.headers
    assert_page_headers(response)
    assert (
        "Either the parameter &#x27;client_id&#x27; or the parameter &#x27;id_token_hint&#x27; "
        "is required when &#x27;post_logout_redirect_uri&#x27; is used." in response.text
    )
    assert state.logouts == 0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"client_id": "implicitclient", "post_logout_redirect_uri": LOCAL_CALLBACK},
            "Invalid redirect uri",
        ),
        ({"client_id": "corp-app", "post_logout_redirect_uri": REGISTERED}, "Invalid redirect uri"),
        ({"client_id": "nope", "post_logout_redirect_uri": LOCAL_CALLBACK}, "Client not found."),
        ({"id_token_hint": "garbage"}, "Invalid parameter: id_token_hint"),
    ],
)
async def test_logout_refuses_untrusted_redirects(params: dict[str, str], message: str) -> None:
    app, _ = devserver()
    async with serve(app) as client:
        response = await client.get(LOGOUT_PATH, params=params)
    assert response.status_code == 400
    assert message in response.text
    assert "location" not in response.headers


@pytest.mark.parametrize(
    ("locales", "question", "button"),
    [
        ({}, "Do you want to log out?", "Logout"),
        ({"ui_locales": "ka"}, "გსურთ სისტემიდან გასვლა?", "გასვლა"),
    ],
)
async def test_logout_confirmation_then_redirect(
    locales: dict[str, str], question: str, button: str
) -> None:
    app, state = devserver()
    async with serve(app) as client:
        await sign_in(client)
        assert client.cookies.get(SSO_COOKIE)
        confirm = await client.get(
            LOGOUT_PATH,
            params={
                "client_id": "corp-app",
                "post_logout_redirect_uri": LOCAL_CALLBACK,
                "state": "bye",
                **locales,
            },
        )
        assert confirm.status_code == 200
        assert_page_headers(confirm)
        assert question in confirm.text
        assert button in confirm.text
        assert "kc-logout" in parse_page(confirm.text).ids
        assert state.logouts == 0
        action, fields = parse_page(confirm.text).forms[0]
        assert action == f"{OIDC}/logout/logout-confirm"
        done = await client.post(action, data=dict(fields))
        replay = await client.post(action, data=dict(fields))
        after = await authorize(client, prompt="none")
    assert done.status_code == 302
    assert done.headers["location"] == f"{LOCAL_CALLBACK}?state=bye"
    cookie = sso_cookie_header(done)
    assert "Max-Age=0" in cookie
    assert "Path=/realms/bog/" in cookie
    assert SSO_COOKIE not in client.cookies
    assert replay.status_code == 400
    assert dict(redirect_params(after, "fragment"))["error"] == "login_required"
    assert state.logouts == 1


async def test_logout_ends_the_session_for_userinfo_but_not_for_the_api() -> None:
    app, _ = devserver()
    async with serve(app) as client:
        token = await implicit_token(client)
        confirm = await client.post(LOGOUT_PATH, data={"client_id": "corp-app"})
        action, fields = parse_page(confirm.text).forms[0]
        done = await client.post(action, data=dict(fields))
        userinfo = await client.get(USERINFO_PATH, headers=bearer(token))
        api = await client.get("/api/accounts", headers=bearer(token))
    assert done.status_code == 200
    assert "You are logged out" in done.text
    assert userinfo.status_code == 401
    # Like a Keycloak adapter, the API checks the token offline; only not-before revokes it.
    assert api.status_code == 200


async def test_logout_with_id_token_hint_needs_no_confirmation() -> None:
    app, state = devserver()
    async with serve(app) as client:
        code = await get_code(client, scope="openid corp")
        id_token = (await exchange(client, code)).json()["id_token"]
        response = await client.get(
            LOGOUT_PATH,
            params={"id_token_hint": id_token, "post_logout_redirect_uri": OTHER_REGISTERED},
        )
        mismatch = await client.get(
            LOGOUT_PATH, params={"id_token_hint": id_token, "client_id": "corp-app"}
        )
    assert response.headers["location"] == OTHER_REGISTERED
    assert "Max-Age=0" in sso_cookie_header(response)
    assert mismatch.status_code == 400
    assert state.logouts == 1


# --- discovery and counters --------------------------------------------------------------------


async def test_discovery_advertises_the_browser_endpoints(flavour_name: str) -> None:
    app, _ = devserver(flavour_name)
    async with serve(app) as client:
        document = (await client.get("/realms/bog/.well-known/openid-configuration")).json()
    assert document["userinfo_endpoint"] == f"{BASE}{USERINFO_PATH}"
    assert document["authorization_endpoint"] == f"{BASE}{AUTH_PATH}"
    assert {"authorization_code", "client_credentials"} <= set(document["grant_types_supported"])
    assert document["authorization_response_iss_parameter_supported"] is (
        FLAVOURS[flavour_name].issue_iss
    )


async def test_counters_in_dev_stats_and_reset() -> None:
    app, state = devserver()
    async with serve(app) as client:
        page = await authorize(client)
        await submit(client, page, password="wrong")
        await submit(client, page)
        confirm = await client.get(LOGOUT_PATH)
        action, fields = parse_page(confirm.text).forms[0]
        await client.post(action, data=dict(fields))
        stats = (await client.get("/_dev/stats")).json()
        reset = (await client.post("/_dev/reset")).json()
    assert {key: stats[key] for key in ("authorize_requests", "logins", "login_failures")} == {
        "authorize_requests": 1,
        "logins": 1,
        "login_failures": 1,
    }
    assert stats["logouts"] == 1
    assert stats["tokens_issued"] == 1
    assert all(reset[key] == 0 for key in ("authorize_requests", "logins", "login_failures"))
    assert reset["logouts"] == 0
    assert state.logins == 0


async def test_default_user_is_demo() -> None:
    app = create_devserver()
    async with serve(app) as client:
        page = await authorize(client)
        unknown = await submit(client, page)
        demo = await submit(client, page, username="demo", password="demo")
    assert unknown.status_code == 200  # nino is not a default user
    claims = claims_of(dict(redirect_params(demo, "fragment"))["access_token"])
    assert claims["preferred_username"] == "demo"
    assert claims["company"] == "Kartli Logistics LLC"
