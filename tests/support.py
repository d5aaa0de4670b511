"""Test helpers shared by the suites: a controllable clock and token endpoint fakes."""

from __future__ import annotations

import asyncio
import html.parser
import inspect
import json
from collections.abc import Callable
from typing import Any

import httpx

from fastapi_corpauth import CorpAuthSettings, VerifiedToken
from fastapi_corpauth.devserver._jwt import SigningKey

CLIENT_ID = "corp-app"
CLIENT_SECRET = "s3cr3t+with%special:chars/ü"
ISSUER = "https://account.bank.test/auth/realms/bog"
TOKEN_URL = ISSUER + "/protocol/openid-connect/token"

#: RSA keys shared by the tests that do not need a server's own (2048-bit keys take
#: tens of milliseconds to make).
SIGNING_KEY = SigningKey.generate()
OTHER_SIGNING_KEY = SigningKey.generate()


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def settings(**overrides: Any) -> CorpAuthSettings:
    values: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "issuer": ISSUER,
        "token_backoff_base": 0.0,
        "token_backoff_max": 0.01,
    }
    values.update(overrides)
    return CorpAuthSettings(_env_file=None, **values)


def token_body(access_token: str = "tok-1", expires_in: Any = 300, **extra: Any) -> bytes:
    body: dict[str, Any] = {
        "access_token": access_token,
        "expires_in": expires_in,
        "refresh_expires_in": 0,
        "token_type": "Bearer",
        "not-before-policy": 0,
        "scope": "corp profile email",
    }
    body.update(extra)
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


Handler = Callable[[httpx.Request], httpx.Response]


class TokenEndpoint:
    """A scripted token endpoint for ``httpx.MockTransport``: counts and answers requests.

    ``responses`` is consumed one per request; the last entry repeats. An entry is an
    ``httpx.Response``, an exception instance to raise, or a callable producing either.
    Without responses, every request gets a new distinct token ``tok-<n>``.
    ``latency`` makes each answer wait, so concurrent callers overlap. The issuer's
    discovery document is answered 404 (Keycloak's paths then apply) and not counted.
    """

    def __init__(self, *responses: Any, latency: float = 0.0) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []
        #: Requests for anything but the token endpoint (discovery): answered 404.
        self.other_requests: list[httpx.Request] = []
        self.latency = latency
        self.issued = 0

    @property
    def count(self) -> int:
        return len(self.requests)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/.well-known/openid-configuration"):
            self.other_requests.append(request)
            return httpx.Response(404)
        self.requests.append(request)
        if self.responses:
            answer = self.responses[min(self.count, len(self.responses)) - 1]
        else:
            answer = httpx.Response(200, content=token_body(f"tok-{self.count}"))
        if self.latency:
            await asyncio.sleep(self.latency)
        if callable(answer) and not isinstance(answer, httpx.Response):
            answer = answer(request)
            if inspect.isawaitable(answer):
                answer = await answer
        if isinstance(answer, BaseException):
            raise answer
        assert isinstance(answer, httpx.Response)
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def verified_identity(subject: str = "customer-1", **claims: Any) -> VerifiedToken:
    """What a verifier returns for a customer's token, for tests below the verifier."""
    return VerifiedToken(
        subject=subject,
        client_id=CLIENT_ID,
        issuer=ISSUER,
        expires_at=None,
        issued_at=None,
        scope=("corp",),
        method="jwt",
        claims={"sub": subject, **claims},
    )


class _FormParser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[dict[str, str], list[tuple[str, str]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append((values, []))
        elif tag in ("input", "button") and self.forms and values.get("name"):
            self.forms[-1][1].append((values["name"], values.get("value", "")))


def page_form(text: str) -> tuple[str, list[tuple[str, str]]]:
    """The first form of an HTML page: its action and its named fields."""
    parser = _FormParser()
    parser.feed(text)
    parser.close()
    assert parser.forms, "no form on the page"
    attrs, inputs = parser.forms[0]
    return attrs.get("action", ""), inputs


class Breakable(httpx.AsyncBaseTransport):
    """Wraps a transport; a request whose path ends with a key of ``broken`` fails with
    its value (a status code to answer, or an exception to raise)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.broken: dict[str, int | Exception] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        for suffix, failure in self.broken.items():
            if request.url.path.endswith(suffix):
                if isinstance(failure, Exception):
                    raise failure
                return httpx.Response(failure, request=request)
        return await self.inner.handle_async_request(request)
