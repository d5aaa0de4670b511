"""Shared fixtures of the security suite: a real sign-in against the devserver, over ASGI.

``open_site`` starts the devserver (with the app's callback registered as its only
redirect URI) and an app that mounts the router at ``/auth`` and uses every dependency
(``current_user``, ``optional_user``, ``api_client``, ``bearer_token``). A ``Browser``
keeps cookies per host like a real one, and ``Browser.sign_in`` drives the devserver's
real sign-in form over HTTP and delivers its answer to the callback the way a browser
does for each response mode.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import httpx
import pytest
from fastapi import Depends, FastAPI

from fastapi_corpauth import (
    CorpAuth,
    CorpAuthSettings,
    SessionStore,
    SignedInUser,
    VerifiedToken,
)
from fastapi_corpauth.devserver import DevClient, create_devserver
from tests.support import page_form

APP = "https://app.test"
DEV = "http://bank.test"
ISSUER = DEV + "/realms/bog"
CALLBACK = APP + "/auth/callback"
CLIENT_ID = "corp-app"
#: A secret with every character that encoding must survive (and a log must not show).
CLIENT_SECRET = "s3cr+t%2F:ü ok-Security-Suite"
SESSION_KEY = "security-suite-signing-key-0123456789"
OTHER_KEY = "security-suite-other-key-9876543210"
#: The app's callback URL is https, so its cookies carry the __Host- prefix.
COOKIE = "__Host-corpauth_session"
SIGNIN_COOKIE = "__Host-corpauth_session_signin"

#: Every error code a refusal of the router or a dependency may carry.
KNOWN_CODES = frozenset(
    {
        "state_missing",
        "state_unknown",
        "state_reused",
        "state_expired",
        "state_mismatch",
        "issuer_mismatch",
        "authorization_denied",
        "callback_invalid",
        "not_authenticated",
        "session_store_unavailable",
        "token_endpoint_unavailable",
        "client_credentials_rejected",
        "token_response_malformed",
        "configuration_error",
        "invalid_token",
        "verification_unavailable",
        "response_mode_mismatch",
        "token_endpoint_not_found",
        "session_expired",
        "cross_site_request",
    }
)


def build_app(corpauth: CorpAuth) -> FastAPI:
    app = FastAPI(title="security suite")
    app.include_router(corpauth.router, prefix="/auth")

    @app.get("/me")
    async def me(user: SignedInUser = Depends(corpauth.current_user)) -> dict[str, Any]:
        return {"name": user.display_name}

    @app.get("/maybe")
    async def maybe(user: SignedInUser | None = Depends(corpauth.optional_user)) -> Any:
        return {"name": user.display_name if user else None}

    @app.get("/accounts")
    async def accounts(bank: httpx.AsyncClient = Depends(corpauth.api_client)) -> Any:
        response = await bank.get("accounts")
        return {"status": response.status_code}

    @app.get("/token-length")
    async def token_length(token: str = Depends(corpauth.bearer_token)) -> dict[str, int]:
        return {"length": len(token)}

    @app.get("/my-accounts")
    async def my_accounts(bank: httpx.AsyncClient = Depends(corpauth.user_api_client)) -> Any:
        response = await bank.get("accounts")
        return {"status": response.status_code}

    @app.get("/desktop/me")
    async def desktop_me(customer: VerifiedToken = Depends(corpauth.verified_bearer)) -> Any:
        return {"subject": customer.subject, "client_id": customer.client_id}

    return app


def site_settings(**overrides: Any) -> CorpAuthSettings:
    values: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "issuer": ISSUER,
        "api_base_url": DEV + "/api",
        "session_secret": SESSION_KEY,
        "redirect_uri": CALLBACK,
        "token_backoff_base": 0.0,
        "token_backoff_max": 0.01,
        "token_cooldown": 0.0,
    }
    values.update(overrides)
    return CorpAuthSettings(_env_file=None, **values)


@dataclass
class Site:
    devserver: FastAPI
    corpauth: CorpAuth
    app: FastAPI
    stack: AsyncExitStack
    #: Every token, code, state, verifier and cookie seen; none may leak.
    secrets: set[str] = field(default_factory=set)

    @property
    def dev(self) -> Any:
        return self.devserver.state.devserver

    async def browser(self) -> Browser:
        browser = Browser(self)
        await self.stack.enter_async_context(browser.client)
        return browser

    async def raw_client(self) -> httpx.AsyncClient:
        """A client for the app without a cookie jar of its own (cookies sent by hand)."""
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url=APP, follow_redirects=False
        )
        return await self.stack.enter_async_context(client)


@asynccontextmanager
async def open_site(
    *,
    flavour: str = "modern",
    clock: Callable[[], float] = time.time,
    session_store: SessionStore | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    transport_factory: Callable[[FastAPI], httpx.AsyncBaseTransport] | None = None,
    api_transport_factory: Callable[[FastAPI], httpx.AsyncBaseTransport] | None = None,
    devserver_options: dict[str, Any] | None = None,
    **overrides: Any,
) -> AsyncIterator[Site]:
    """The devserver and the app; ``transport_factory`` wraps the app's way to the bank,
    ``api_transport_factory`` its way to the bank API; ``devserver_options`` go to
    ``create_devserver`` (token lifetimes, SSO lifetimes)."""
    devserver = create_devserver(
        flavour=flavour,
        **(devserver_options or {}),
        clients=(
            DevClient(
                client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET,
                redirect_uris=(CALLBACK, APP + "/", APP + "/bye"),
            ),
            # Another application of the realm: its customers' tokens are foreign here.
            DevClient(client_id="other-app", client_secret="other-secret"),
        ),
        clock=clock,
    )
    corpauth = CorpAuth(
        site_settings(**overrides),
        transport=transport
        or (transport_factory or (lambda app: httpx.ASGITransport(app=app)))(devserver),
        api_transport=(api_transport_factory or (lambda app: httpx.ASGITransport(app=app)))(
            devserver
        ),
        clock=clock,
        session_store=session_store,
    )
    app = build_app(corpauth)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(corpauth.lifespan(app))
        yield Site(devserver=devserver, corpauth=corpauth, app=app, stack=stack)


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    async with open_site() as site:
        yield site


# --- a browser ---------------------------------------------------------------------------


@dataclass
class SignIn:
    """What one sign-in went through: its state, the token it got, every response."""

    state: str
    authorize_url: str
    result: dict[str, str]
    final: httpx.Response
    responses: list[httpx.Response]

    @property
    def location(self) -> str:
        return str(self.final.headers.get("location", ""))


class Browser:
    """A browser: one cookie jar for both hosts, redirects followed by hand."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.client = httpx.AsyncClient(
            mounts={
                APP: httpx.ASGITransport(app=site.app),
                DEV: httpx.ASGITransport(app=site.devserver),
            },
            follow_redirects=False,
        )

    @property
    def session_cookie(self) -> str | None:
        value: str | None = self.client.cookies.get(COOKIE, domain="app.test")
        return value if value else None

    def set_session_cookie(self, value: str | None) -> None:
        self.client.cookies.delete(COOKIE, domain="app.test")
        if value is not None:
            self.client.cookies.set(COOKIE, value, domain="app.test", path="/")

    async def request(
        self, method: str, url: str, *, send_cookies: bool = True, **kwargs: Any
    ) -> httpx.Response:
        request = self.client.build_request(method, urljoin(APP, url), **kwargs)
        if not send_cookies:  # a cross-site POST: SameSite=Lax keeps the cookie home
            request.headers.pop("cookie", None)
        response = await self.client.send(request)
        for value in self.client.cookies.jar:
            if value.value:
                self.site.secrets.add(value.value)
        return response

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", url, **kwargs)

    async def start(self, query: str = "") -> tuple[httpx.Response, str]:
        """``GET /auth/login``; returns the response and the state it sent to the bank."""
        response = await self.get("/auth/login" + query)
        assert response.status_code == 303, response.text
        location = response.headers["location"]
        assert location.startswith(ISSUER + "/protocol/openid-connect/auth?")
        state = dict(parse_qsl(urlsplit(location).query))["state"]
        self.site.secrets.add(state)
        return response, state

    async def authorize(self, authorize_url: str, *, cancel: bool = False) -> httpx.Response:
        """At the bank: open the sign-in page and submit it as demo/demo (or Cancel)."""
        page = await self.get(authorize_url)
        if page.status_code == 302 and not cancel:  # still signed in at the bank (SSO)
            return page
        assert page.status_code == 200, page.text
        action, inputs = page_form(page.text)
        fields = dict(inputs)
        self.site.secrets.add(fields["session_code"])
        form = {"session_code": fields["session_code"], "username": "demo", "password": "demo"}
        form.update({"cancel": "cancel"} if cancel else {"login": "login"})
        return await self.post(urljoin(authorize_url, action), data=form)

    async def deliver(self, answer: httpx.Response) -> tuple[dict[str, str], httpx.Response]:
        """Take the bank's answer to the callback as a browser would; returns the fields
        the bank sent and the router's last response."""
        if answer.status_code == 200:  # form_post: a self-submitting cross-site form
            action, inputs = page_form(answer.text)
            fields = dict(inputs)
            self._remember(fields)
            response = await self.post(action, data=fields, send_cookies=False)
            if response.status_code == 200:  # re-posted same-origin, now with the cookie
                relay_action, relay_inputs = page_form(response.text)
                response = await self.post(relay_action, data=dict(relay_inputs))
            return fields, response
        assert answer.status_code == 302, answer.text
        location = answer.headers["location"]
        parts = urlsplit(location)
        if parts.fragment:  # the relay page reads location.hash and POSTs it
            fields = dict(parse_qsl(parts.fragment, keep_blank_values=True))
            self._remember(fields)
            page = await self.get(location.partition("#")[0])
            assert page.status_code == 200, page.text
            action, inputs = page_form(page.text)
            return fields, await self.post(action, data=dict(inputs) | fields)
        fields = dict(parse_qsl(parts.query, keep_blank_values=True))
        self._remember(fields)
        return fields, await self.get(location)

    async def sign_in(self, query: str = "") -> SignIn:
        """A whole sign-in: /login, the bank's form as demo/demo, the callback."""
        login, state = await self.start(query)
        answer = await self.authorize(login.headers["location"])
        fields, final = await self.deliver(answer)
        return SignIn(
            state=state,
            authorize_url=login.headers["location"],
            result=fields,
            final=final,
            responses=[login, answer, final],
        )

    def _remember(self, fields: Mapping[str, str]) -> None:
        for name in ("access_token", "code", "state"):
            if fields.get(name):
                self.site.secrets.add(fields[name])


# --- logs --------------------------------------------------------------------------------


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every logger captured at DEBUG."""
    caplog.set_level(logging.DEBUG)
    names = ("", "httpx", "httpcore", "fastapi_corpauth", "uvicorn", "fastapi", "starlette")
    previous = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield caplog
    for name, level in previous.items():
        logging.getLogger(name).setLevel(level)
