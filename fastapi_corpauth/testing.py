"""Test your own app against the development server, in process: a pytest plugin.

Installing fastapi-corpauth registers this module with pytest (entry point
``pytest11``), so two fixtures are available in every test suite:

* ``corpauth_devserver``: a fresh :class:`DevServer` for each test, an in-process
  development authorization server with a sample bank API;
* ``corpauth_settings``: :class:`~fastapi_corpauth.CorpAuthSettings` pointing at it.

A test builds the app with ``corpauth_devserver.corpauth()`` (a ``CorpAuth`` whose HTTP
clients reach the development server over ASGI, so nothing listens on a port), opens a
client with ``corpauth_devserver.client(app)`` (which also runs the app's lifespan) and
signs in through the real sign-in page with ``corpauth_devserver.sign_in(client)``::

    async def test_me(corpauth_devserver):
        app = create_app(corpauth_devserver.corpauth())
        async with corpauth_devserver.client(app) as client:
            await corpauth_devserver.sign_in(client)
            assert (await client.get("/me")).json()["name"] == "Nino Beridze"

Nothing here is for production: the development server accepts its own published
client secret and the password ``demo``.
"""

from __future__ import annotations

import html.parser
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin

import httpx
import pytest
from fastapi import FastAPI

from ._corpauth import CorpAuth
from ._settings import CorpAuthSettings
from .devserver import DEFAULT_USERS, DevClient, DevServerState, DevUser, create_devserver

__all__ = ["DevServer", "SignInFailed", "corpauth_devserver", "corpauth_settings"]

#: Where the in-process development server answers; no DNS name is ever resolved.
DEVSERVER_URL = "http://devserver.test"
#: The app's address in tests. A loopback name, so the development server accepts its
#: callback without registration and the session cookie is not Secure-only.
APP_URL = "http://localhost"


class SignInFailed(Exception):
    """A step of :meth:`DevServer.sign_in` did not answer as a sign-in should.

    ``response`` is the answer of the step that failed.
    """

    def __init__(self, message: str, response: httpx.Response) -> None:
        super().__init__(f"{message} (HTTP {response.status_code} from {response.request.url})")
        self.response = response


class DevServer:
    """The development authorization server, running inside the test process.

    Apps reach it through :meth:`transport` (an ``httpx.ASGITransport``); its state
    (issued tokens, counters, faults) is :attr:`state`. ``users`` may sign in on its
    page (default ``demo`` / ``demo``, shown as "Nino Beridze").
    """

    def __init__(
        self,
        *,
        base_url: str = DEVSERVER_URL,
        realm: str = "bog",
        client_id: str = "corp-app",
        client_secret: str = "dev-secret",  # noqa: S107 - the development server's own
        users: Sequence[DevUser] = DEFAULT_USERS,
        flavour: str = "modern",
        token_lifetime: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.realm = realm
        self.client_id = client_id
        self.client_secret = client_secret
        self.users = tuple(users)
        self.app = create_devserver(
            realm=realm,
            clients=(DevClient(client_id=client_id, client_secret=client_secret),),
            users=self.users,
            flavour=flavour,
            token_lifetime=token_lifetime,
            clock=clock,
        )
        #: One key per server, so sessions signed in one test are unknown to the next.
        self.session_secret = secrets.token_urlsafe(32)

    def __repr__(self) -> str:
        return f"DevServer(issuer={self.issuer!r})"

    @property
    def state(self) -> DevServerState:
        """Tokens issued, request counters, fault plans: see ``DevServerState``."""
        state: DevServerState = self.app.state.devserver
        return state

    @property
    def issuer(self) -> str:
        return f"{self.base_url}/realms/{self.realm}"

    @property
    def api_base_url(self) -> str:
        return f"{self.base_url}/api"

    def transport(self) -> httpx.ASGITransport:
        """A transport that delivers requests to the development server in this process."""
        return httpx.ASGITransport(app=self.app)

    def environ(self) -> dict[str, str]:
        """The ``CORPAUTH_*`` variables that point an app at this server."""
        return {
            "CORPAUTH_ISSUER": self.issuer,
            "CORPAUTH_API_BASE_URL": self.api_base_url,
            "CORPAUTH_CLIENT_ID": self.client_id,
            "CORPAUTH_CLIENT_SECRET": self.client_secret,
            "CORPAUTH_SESSION_SECRET": self.session_secret,
            "CORPAUTH_DEVELOPMENT": "true",
        }

    def settings(self, **overrides: Any) -> CorpAuthSettings:
        """Settings for this server; ``overrides`` are further settings by field name.

        Neither the environment's ``CORPAUTH_*`` variables nor a ``.env`` file matter
        for the fields set here; others keep their usual sources.
        """
        values: dict[str, Any] = {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "issuer": self.issuer,
            "api_base_url": self.api_base_url,
            "session_secret": self.session_secret,
            "development": True,
        }
        values.update(overrides)
        return CorpAuthSettings(_env_file=None, **values)

    def corpauth(self, **overrides: Any) -> CorpAuth:
        """A ``CorpAuth`` that talks to this server over ASGI, with :meth:`settings`."""
        return CorpAuth(self.settings(**overrides), transport=self.transport())

    @asynccontextmanager
    async def client(
        self, app: Any, *, base_url: str = APP_URL, lifespan: bool = True
    ) -> AsyncIterator[httpx.AsyncClient]:
        """A client for ``app`` that also reaches this server, like a browser.

        One cookie jar serves both hosts, and redirects are not followed, so each step
        can be seen. With ``lifespan`` (the default) the app's lifespan runs around the
        block, as it would under uvicorn.
        """
        async with AsyncExitStack() as stack:
            if lifespan and isinstance(app, FastAPI):
                await stack.enter_async_context(app.router.lifespan_context(app))
            client = httpx.AsyncClient(
                base_url=base_url,
                mounts={
                    self.base_url: httpx.ASGITransport(app=self.app),
                    "all://": httpx.ASGITransport(app=app),
                },
                follow_redirects=False,
            )
            yield await stack.enter_async_context(client)

    async def sign_in(
        self,
        client: httpx.AsyncClient,
        *,
        username: str | None = None,
        password: str | None = None,
        login_path: str = "/auth/login",
        next: str | None = None,
        lang: str | None = None,
    ) -> httpx.Response:
        """Sign in through the app's router and this server's real sign-in page.

        ``client`` comes from :meth:`client`. Each step runs as a browser would run it:
        ``login_path`` redirects to the sign-in page, the form is submitted, and the
        result reaches the app's callback however the server sends it (fragment relay,
        ``form_post`` or query). Returns the page the app lands on.

        Raises:
            SignInFailed: a step answered something a sign-in does not, or the app
                refused the result (its error code is in the message).
        """
        user = self.users[0]
        query = {key: value for key, value in (("next", next), ("lang", lang)) if value}
        url = login_path + (f"?{urlencode(query)}" if query else "")
        response = await client.get(url)
        if not response.is_redirect:
            raise SignInFailed("the login route did not redirect to the bank", response)
        authorize_url = urljoin(str(response.url), response.headers["location"])
        page = await client.get(authorize_url)
        if page.status_code == 200:
            action, fields = _form(page, form_id="kc-form-login")
            fields.update(
                username=username if username is not None else user.username,
                password=password if password is not None else user.password,
                login="login",
            )
            answer = await client.post(urljoin(authorize_url, action), data=fields)
        else:
            answer = page  # still signed in at the bank: it answers at once
        response = await self._deliver(client, answer)
        refused = response.headers.get("x-corpauth-error")
        if refused:
            raise SignInFailed(f"the app refused the sign-in: {refused}", response)
        for _ in range(5):  # the app's own redirects, e.g. to ``next``
            if not response.is_redirect:
                return response
            response = await client.get(urljoin(str(response.url), response.headers["location"]))
        return response

    async def _deliver(self, client: httpx.AsyncClient, answer: httpx.Response) -> httpx.Response:
        """Take the server's answer to the app's callback; return the app's response."""
        if answer.status_code == 200 and 'id="kc-form-post"' in answer.text:
            action, fields = _form(answer, form_id="kc-form-post")
            # A cross-site POST: SameSite=Lax keeps the app's cookie at home.
            request = client.build_request("POST", action, data=fields)
            request.headers.pop("cookie", None)
            response = await client.send(request)
            if response.status_code == 200:  # re-posted from the app's own origin
                relay_action, relay_fields = _form(response)
                response = await client.post(
                    urljoin(action, relay_action), data=relay_fields | fields
                )
            return response
        if not answer.is_redirect:
            raise SignInFailed("the sign-in page did not accept the user", answer)
        location = urljoin(str(answer.url), answer.headers["location"])
        callback, _, fragment = location.partition("#")
        if not fragment:
            return await client.get(callback)
        # The relay page's script reads location.hash and POSTs it to its own form.
        relay = await client.get(callback)
        if relay.status_code != 200:
            raise SignInFailed("the callback did not answer with its relay page", relay)
        action, fields = _form(relay)
        result = dict(parse_qsl(fragment, keep_blank_values=True))
        return await client.post(urljoin(callback, action), data=fields | result)


class _Forms(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[dict[str, str], dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append((values, {}))
        elif tag == "input" and self.forms and values.get("name"):
            self.forms[-1][1][values["name"]] = values.get("value", "")


def _form(response: httpx.Response, *, form_id: str | None = None) -> tuple[str, dict[str, str]]:
    """The action and fields of the page's form (the one with ``form_id``, else the first)."""
    parser = _Forms()
    parser.feed(response.text)
    parser.close()
    for attrs, fields in parser.forms:
        if form_id is None or attrs.get("id") == form_id:
            action = urljoin(str(response.url), attrs.get("action") or str(response.url))
            return action, dict(fields)
    raise SignInFailed(f"no form {form_id or ''} on the page", response)


@pytest.fixture
def corpauth_devserver() -> DevServer:
    """A fresh in-process development server for this test."""
    return DevServer()


@pytest.fixture
def corpauth_settings(corpauth_devserver: DevServer) -> CorpAuthSettings:
    """Settings that point an app at ``corpauth_devserver``."""
    return corpauth_devserver.settings()
