"""Helpers for the sign-in router tests: a mock bank, an app, and a browser with one cookie."""

from __future__ import annotations

import base64
import hashlib
import html.parser
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
from fastapi import Depends, FastAPI

from fastapi_corpauth import CorpAuth, SessionStore, SignedInUser
from fastapi_corpauth._login_protocol import pkce_challenge
from fastapi_corpauth._protocol import basic_authorization
from fastapi_corpauth._verification import at_hash
from fastapi_corpauth.devserver._jwt import SigningKey, sign_jwt
from tests.support import CLIENT_ID, CLIENT_SECRET, ISSUER, SIGNING_KEY, FakeClock, settings

KEY_1 = "first-signing-key-0123456789"
KEY_2 = "second-signing-key-9876543210"
COOKIE = "corpauth_session"
SIGNIN_COOKIE = "corpauth_session_signin"
AUTHORIZE_URL = ISSUER + "/protocol/openid-connect/auth"
LOGOUT_URL = ISSUER + "/protocol/openid-connect/logout"
ROUTER_PREFIX = "/auth"


JWKS_URL = ISSUER + "/protocol/openid-connect/certs"
DISCOVERY_URL = ISSUER + "/.well-known/openid-configuration"
TOKEN_ENDPOINT = ISSUER + "/protocol/openid-connect/token"


def jwt(claims: Mapping[str, Any], *, key: SigningKey = SIGNING_KEY) -> str:
    """A customer's access token as the bank's Keycloak signs it, with ``claims`` on top.

    ``exp`` must be given (the tests' clocks differ); issuer, client, type and subject
    default to a genuine token of this client.
    """
    defaults = {
        "iss": ISSUER,
        "aud": "account",
        "typ": "Bearer",
        "azp": CLIENT_ID,
        "sub": "user-1",
        "scope": "corp profile email",
        "sid": "6f2c1b1e-session",
    }
    return sign_jwt({**defaults, **claims}, key=key)


class MockBank:
    """The bank's Keycloak as the router sees it: discovery, its keys, the code exchange.

    Codes are registered with the challenge and redirect_uri of the ``/login`` that
    produced them; the exchange checks the grant, the client's Basic credentials, the
    redirect_uri and the PKCE verifier, and each code works once. ``discovery`` is the
    document served (None: 404, so the plugin falls back to Keycloak's paths); ``keys``
    are the signing keys published (``jwks_status`` other than 200 breaks that).
    """

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.discovery: dict[str, Any] | None = {
            "issuer": ISSUER,
            "authorization_endpoint": AUTHORIZE_URL,
            "token_endpoint": TOKEN_ENDPOINT,
            "jwks_uri": JWKS_URL,
            "end_session_endpoint": LOGOUT_URL,
            "authorization_response_iss_parameter_supported": False,
        }
        self.keys: list[SigningKey] = [SIGNING_KEY]
        self.jwks_status = 200
        self.jwks_requests = 0
        self.discovery_requests = 0
        self.codes: dict[str, tuple[str | None, str]] = {}
        self.verifiers: list[str | None] = []
        self.requests: list[httpx.Request] = []
        self.forms: list[dict[str, str]] = []
        self.failures: list[str] = []
        self.issued: list[str] = []
        self.expires_in: int = 300
        self.token_type = "Bearer"
        self.fail_with: Exception | None = None
        #: Claims of the ID token sent with the next code exchanges (None: no ID token).
        self.id_token_claims: dict[str, Any] | None = None

    def register(self, code: str, *, challenge: str | None, redirect_uri: str) -> None:
        self.codes[code] = (challenge, redirect_uri)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        if url == DISCOVERY_URL:
            self.discovery_requests += 1
            if self.discovery is None:
                return httpx.Response(404)
            return httpx.Response(200, json=self.discovery)
        if url == JWKS_URL:
            self.jwks_requests += 1
            if self.jwks_status != 200:
                return httpx.Response(self.jwks_status)
            return httpx.Response(200, json={"keys": [k.public_jwk() for k in self.keys]})
        self.requests.append(request)
        if self.fail_with is not None:
            raise self.fail_with
        form = dict(parse_qsl(request.content.decode("ascii"), keep_blank_values=True))
        self.forms.append(form)
        self.verifiers.append(form.get("code_verifier"))
        problems = self._check(request, form)
        if problems:
            self.failures += problems
            return httpx.Response(
                400, json={"error": "invalid_grant", "error_description": "; ".join(problems)}
            )
        token = jwt(
            {
                "sub": "user-code",
                "name": "Code Customer",
                "n": len(self.issued),
                "exp": int(self.clock.now + 3600),
            }
        )
        self.issued.append(token)
        body = {
            "access_token": token,
            "expires_in": self.expires_in,
            "refresh_expires_in": 0,
            "token_type": self.token_type,
            "not-before-policy": 0,
            "scope": "corp",
        }
        if self.id_token_claims is not None:
            claims = {
                "iss": ISSUER,
                "aud": CLIENT_ID,
                "sub": "user-code",
                "typ": "ID",
                "exp": int(self.clock.now + 3600),
                "at_hash": at_hash(token, "RS256"),
                **self.id_token_claims,
            }
            body["id_token"] = sign_jwt(
                {k: v for k, v in claims.items() if v is not None}, key=SIGNING_KEY
            )
        return httpx.Response(200, json=body, headers={"Cache-Control": "no-store"})

    def _check(self, request: httpx.Request, form: dict[str, str]) -> list[str]:
        problems = []
        if (
            request.method != "POST"
            or str(request.url) != ISSUER + "/protocol/openid-connect/token"
        ):
            problems.append("wrong endpoint")
        if request.headers.get("authorization") != basic_authorization(CLIENT_ID, CLIENT_SECRET):
            problems.append("bad client authentication")
        if "client_secret" in form:
            problems.append("client_secret in the body")
        if form.get("grant_type") != "authorization_code":
            problems.append("wrong grant_type")
        registered = self.codes.pop(form.get("code", ""), None)
        if registered is None:
            return [*problems, "unknown or reused code"]
        challenge, redirect_uri = registered
        if form.get("redirect_uri") != redirect_uri:
            problems.append("redirect_uri differs from the authorization request")
        verifier = form.get("code_verifier")
        if challenge is not None and (verifier is None or pkce_challenge(verifier) != challenge):
            problems.append("PKCE verifier does not match the challenge")
        return problems


class Browser:
    """One browser: an ASGI client that keeps the session and sign-in cookies by hand.

    The session cookie is sent explicitly (``cookie`` may be overridden per request, e.g.
    to replay an old value or to send none), so tests can see and control every value;
    the sign-in cookie (the sign-ins in progress) is kept like a browser keeps it.
    """

    def __init__(self, app: FastAPI, base_url: str, log: list[httpx.Response]) -> None:
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=base_url, follow_redirects=False
        )
        self.cookie: str | None = None
        self.signin_cookie: str | None = None
        self._log = log

    async def request(
        self,
        method: str,
        url: str,
        *,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        cookie: str | None | bool = True,
        content: bytes | None = None,
        signin_cookie: bool = True,
    ) -> httpx.Response:
        """``cookie=True`` sends this browser's cookies, ``False``/None none (a cross-site
        POST, another browser), a str that session cookie with the sign-in cookie;
        ``signin_cookie=False`` leaves the sign-in cookie out."""
        sent = self.cookie if cookie is True else cookie or None
        all_headers = dict(headers or {})
        pairs = []
        if sent:
            pairs.append(f"{COOKIE}={sent}")
        if signin_cookie and cookie not in (False, None) and self.signin_cookie:
            pairs.append(f"{SIGNIN_COOKIE}={self.signin_cookie}")
        if pairs:
            all_headers["Cookie"] = "; ".join(pairs)
        response = await self.client.request(
            method, url, data=data, content=content, headers=all_headers
        )
        self.client.cookies.clear()
        self._log.append(response)
        attributes = set_cookie(response)
        if attributes is not None and cookie is True:
            expired = attributes.get("max-age") == "0" or not attributes["value"].strip('"')
            self.cookie = None if expired else attributes["value"]
        signin = set_cookie(response, SIGNIN_COOKIE)
        if signin is not None and signin_cookie:
            expired = signin.get("max-age") == "0" or not signin["value"].strip('"')
            self.signin_cookie = None if expired else signin["value"]
        return response

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", url, **kwargs)

    async def login(self, query: str = "") -> dict[str, str]:
        """Start a sign-in; return the authorization request's parameters."""
        response = await self.get(ROUTER_PREFIX + "/login" + query)
        assert response.status_code == 303, response.text
        location = response.headers["location"]
        assert location.startswith(AUTHORIZE_URL + "?")
        return dict(parse_qsl(urlsplit(location).query, keep_blank_values=True))

    async def relay(self, fields: Mapping[str, str], **kwargs: Any) -> httpx.Response:
        """What the fragment relay page's script POSTs."""
        return await self.post(
            ROUTER_PREFIX + "/callback", data={"corpauth_relay": "fragment", **fields}, **kwargs
        )

    async def me(self, **kwargs: Any) -> httpx.Response:
        return await self.get("/me", **kwargs)


def set_cookie(response: httpx.Response, cookie: str = COOKIE) -> dict[str, str] | None:
    """A cookie's Set-Cookie (the session cookie's by default) as
    ``{"value": ..., attribute: value}``, or None."""
    found = None
    for header in response.headers.get_list("set-cookie"):
        name_value, *attributes = (part.strip() for part in header.split(";"))
        name, _, value = name_value.partition("=")
        if name != cookie:
            continue
        assert found is None, f"{cookie} was set twice"
        found = {"value": value}
        for attribute in attributes:
            key, _, attr_value = attribute.partition("=")
            found[key.lower()] = attr_value
    return found


def token_fields(state: str, access_token: str, **extra: str) -> dict[str, str]:
    """A successful implicit authorization response, as Keycloak 23+ sends it."""
    fields = {
        "state": state,
        "session_state": "6f2c1b1e-session",
        "iss": ISSUER,
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": "300",
    }
    fields.update(extra)
    return fields


class _FormParser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({"attrs": values, "inputs": []})
        elif tag == "input" and self.forms:
            self.forms[-1]["inputs"].append((values.get("name", ""), values.get("value", "")))
        elif tag == "script":
            self._in_script = True
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data


@dataclass
class Page:
    form_action: str
    form_method: str
    inputs: list[tuple[str, str]]
    scripts: list[str]


_RESUBMIT_MARKER = 'name="corpauth_relay" value="form_post"'


def parse_page(text: str) -> Page:
    parser = _FormParser()
    parser.feed(text)
    parser.close()
    assert len(parser.forms) == 1
    form = parser.forms[0]
    return Page(
        form_action=form["attrs"].get("action", ""),
        form_method=form["attrs"].get("method", ""),
        inputs=form["inputs"],
        scripts=parser.scripts,
    )


def script_hash(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"


def error_code(response: httpx.Response) -> str | None:
    """The error a router page names: header and ``<code id="code">`` must agree."""
    header: str | None = response.headers.get("x-corpauth-error")
    match = re.search(r'<code id="code">([^<]*)</code>', response.text)
    body = match.group(1) if match else None
    assert header == body, (header, body)
    return header


@dataclass
class Site:
    """An app with the router at ``/auth``, ``/me`` (current_user) and ``/maybe``."""

    corpauth: CorpAuth
    app: FastAPI
    bank: MockBank
    clock: FakeClock
    responses: list[httpx.Response] = field(default_factory=list)
    #: Tokens, codes and cookies that must never show up in a URL, a header or a log.
    secrets: set[str] = field(default_factory=set)
    _stack: AsyncExitStack = field(default_factory=AsyncExitStack)

    async def browser(self, base_url: str = "http://localhost") -> Browser:
        browser = Browser(self.app, base_url, self.responses)
        await self._stack.enter_async_context(browser.client)
        return browser

    def router_responses(self) -> list[httpx.Response]:
        return [r for r in self.responses if r.request.url.path.startswith(ROUTER_PREFIX + "/")]

    def all_secrets(self) -> set[str]:
        return self.secrets | set(self.bank.issued) | {v for v in self.bank.verifiers if v}

    def check_hygiene(self) -> None:
        """Every router response is no-store/no-referrer; no secret in any header or URL,
        nor in any router page except the cross-site form_post re-submission, which must
        carry the fields it re-posts."""
        secrets = self.all_secrets()
        for response in self.router_responses():
            assert "no-store" in response.headers.get("cache-control", ""), response.request.url
            assert response.headers.get("referrer-policy") == "no-referrer"
            if _RESUBMIT_MARKER not in response.text:
                for secret in secrets:
                    assert secret not in response.text
        for response in self.responses:
            for name, value in response.headers.multi_items():
                if name.lower() == "set-cookie":
                    continue
                for secret in secrets:
                    assert secret not in value, name


def build_app(corpauth: CorpAuth) -> FastAPI:
    app = FastAPI()
    app.include_router(corpauth.router, prefix=ROUTER_PREFIX)

    @app.get("/me")
    async def me(user: SignedInUser = Depends(corpauth.current_user)) -> dict[str, Any]:
        return {"name": user.display_name, "expires_at": user.expires_at}

    @app.get("/maybe")
    async def maybe(user: SignedInUser | None = Depends(corpauth.optional_user)) -> Any:
        return {"name": user.display_name if user else None}

    return app


@asynccontextmanager
async def open_site(
    *,
    clock: FakeClock | None = None,
    session_store: SessionStore | None = None,
    **overrides: Any,
) -> AsyncIterator[Site]:
    """Start a site; ``overrides`` are settings (``session_secret`` defaults to [KEY_1])."""
    clock = clock or FakeClock()
    bank = MockBank(clock)
    # Development: the callback URL comes from the request, as on a laptop.
    values: dict[str, Any] = {"session_secret": KEY_1, "development": True}
    values.update(overrides)
    corpauth = CorpAuth(
        settings(**values), transport=bank.transport(), clock=clock, session_store=session_store
    )
    app = build_app(corpauth)
    site = Site(corpauth=corpauth, app=app, bank=bank, clock=clock)
    async with corpauth.lifespan(app), site._stack:
        yield site
        site.check_hygiene()
