"""Property-based fuzzing of every route the router adds (and the session dependencies).

Requests are built at the ASGI level, so query strings, cookies and bodies can hold any
bytes a hostile client could put on the wire: random, oversized, repeated, non-UTF-8 and
mixed. Every answer must be a clear refusal (or a legitimate redirect): never a 5xx, a
traceback or an error log, and every refusal names a stable error code.

The last test checks that at least ``MIN_REQUESTS`` generated requests were really sent.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_from_bytes, unquote, urlencode, urlsplit

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from fastapi_corpauth import CorpAuth
from fastapi_corpauth._corpauth import SESSION_SALT
from fastapi_corpauth._signing import CookieSigner
from tests.security.conftest import (
    APP,
    COOKIE,
    ISSUER,
    KNOWN_CODES,
    OTHER_KEY,
    SESSION_KEY,
    SIGNIN_COOKIE,
    Site,
    build_app,
    site_settings,
)

pytestmark = pytest.mark.anyio

#: The issue asks for at least this many generated requests across the module.
MIN_REQUESTS = 10_000

FUZZ = settings(
    max_examples=1_800,
    deadline=None,
    database=None,
    derandomize=True,
    # One app (and its lifespan) serves every example of a test on purpose.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

SCHEMATHESIS_EXAMPLES = 600

#: Requests sent per test, filled as the tests run; read by the last test.
SENT: dict[str, int] = {}


@pytest.fixture
def counter(request: pytest.FixtureRequest) -> Iterator[list[int]]:
    box = [0]
    yield box
    SENT[request.node.name] = box[0]


@pytest.fixture
def no_error_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.WARNING)
    yield
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage() for r in bad[:3]]


# --- a raw ASGI client -------------------------------------------------------------------


@dataclass
class Raw:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]


async def send_raw(
    app: FastAPI,
    method: str,
    path: str,
    *,
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
) -> Raw:
    """One HTTP request straight into the ASGI app; an exception in the app fails the test."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"app.test"), *(headers or [])],
        "client": ("203.0.113.7", 50000),
        "server": ("app.test", 443),
    }
    sent_body = False
    messages: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        messages.append(message)

    await app(scope, receive, send)
    start = next(m for m in messages if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return Raw(
        status=start["status"],
        headers=[(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in start["headers"]],
        body=content,
    )


# --- what every answer must look like ----------------------------------------------------

_TRACEBACK = re.compile(rb"Traceback \(most recent call last\)|File \"/")


def error_code_of(response: Raw) -> str | None:
    header = response.header("x-corpauth-error")
    if header is not None:
        match = re.search(rb'<code id="code">([^<]*)</code>', response.body)
        assert match is not None and match.group(1).decode() == header
        return header
    try:
        detail = json.loads(response.body)["detail"]
    except (ValueError, KeyError, TypeError):
        return None
    return detail.get("code") if isinstance(detail, dict) else None


def is_same_site(location: str) -> bool:
    parts = urlsplit(location)
    return (
        location.startswith("/")
        and not location.startswith(("//", "/\\"))
        and not parts.scheme
        and not parts.netloc
        and "\\" not in location
        and all(0x20 < ord(c) < 0x7F for c in location)
    )


def check(response: Raw, *, router: bool) -> str | None:
    """The properties every answer has; returns the refusal's error code, if any."""
    assert response.status < 500, (response.status, response.body[:300])
    assert not _TRACEBACK.search(response.body)
    code = None
    if response.status >= 400:
        code = error_code_of(response)
        assert code in KNOWN_CODES, (response.status, response.body[:300])
    if router:
        assert response.header("cache-control") == "no-store"
        assert response.header("referrer-policy") == "no-referrer"
        csp = response.header("content-security-policy") or ""
        assert csp.startswith("default-src 'none'; script-src "), csp
        assert "unsafe-inline'" not in csp.split(";")[1]
    if 300 <= response.status < 400:
        location = response.header("location") or ""
        assert is_same_site(location) or location.startswith(ISSUER + "/"), location
    return code


# --- strategies --------------------------------------------------------------------------

FIELD_NAMES = [
    "state",
    "code",
    "access_token",
    "token_type",
    "expires_in",
    "session_state",
    "iss",
    "error",
    "error_description",
    "error_uri",
    "next",
    "lang",
    "corpauth_relay",
]
INTERESTING = [
    "",
    "/",
    "//evil.example",
    "/\\evil.example",
    "https://evil.example",
    "javascript:alert(1)",
    "Bearer",
    "bearer",
    "mac",
    "access_denied",
    "fragment",
    "form_post",
    ISSUER,
    "ka",
    "en",
    "0",
    "-1",
    "1e999",
    "nan",
    "9" * 400,
    "%00",
    "\x00",
    "\r\nSet-Cookie: x=1",
    "<script>alert(1)</script>",
    "\"'><img src=x>",
    "\ud7ff\ue000\U0010ffff",
    "a.b.c",
    "eyJhbGciOiJub25lIn0.eyJleHAiOjF9.",
]

MAX_QUERY = 64 * 1024
names = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=12))
oversized_text = st.builds(
    lambda unit, n: unit * n, st.text(min_size=1, max_size=3), st.integers(500, 20_000)
)
text_values = st.one_of(
    st.text(max_size=40), st.sampled_from(INTERESTING), oversized_text, st.just("x" * 70_000)
)
byte_values = st.one_of(
    st.binary(max_size=40),
    st.builds(lambda unit, n: unit * n, st.binary(min_size=1, max_size=2), st.integers(500, 9000)),
)


@st.composite
def encoded_pairs(draw: st.DrawFn) -> bytes:
    """An urlencoded sequence of pairs: UTF-8, raw non-UTF-8 bytes or unencoded, repeated."""
    pairs: list[bytes] = []
    for _ in range(draw(st.integers(0, 8))):
        name = draw(names)
        how = draw(st.sampled_from(["utf8", "bytes", "raw", "plus"]))
        if how == "utf8":
            value = quote(draw(text_values), safe="").encode()
        elif how == "plus":
            value = urlencode({"v": draw(text_values)}).encode()[2:]
        elif how == "bytes":
            value = quote_from_bytes(draw(byte_values), safe="").encode()
        else:  # bytes as they are, minus what cannot be on a request line at all
            value = bytes(b for b in draw(byte_values) if b > 0x20 and b not in b"#&")
        pair = quote(name, safe="").encode() + b"=" + value
        pairs += [pair] * (draw(st.sampled_from([1, 1, 1, 2, 50])) if len(pair) < 100 else 1)
    if draw(st.booleans()):
        pairs.append(draw(st.sampled_from([b"", b"=", b"&", b"==", b"state", b"%", b"%zz"])))
    # Servers refuse longer request lines; this is still four times parse_callback's limit.
    return b"&".join(pairs)[:MAX_QUERY]


def cookie_pool(site: Site, signing_in: str, signed_in: str) -> list[str]:
    """Real values (a sign-in cookie, a session cookie) and forged or broken ones; fuzzed
    requests send any of them under either cookie's name."""
    other = CookieSigner(secret_keys=[OTHER_KEY], salt=SESSION_SALT, max_age=3600)
    purpose = CookieSigner(secret_keys=[SESSION_KEY], salt="other", max_age=3600)
    return [
        signing_in,
        signed_in,
        other.sign("forged-session-id"),
        purpose.sign("forged-session-id"),
        signed_in[:-2],
        signed_in + "A",
        '"' + signed_in + '"',
    ]


POOL_SIZE = 7


#: A cookie's value: bytes as they are, or an index into the site's pool of real cookies.
CookieSpec = list[tuple[bytes, bytes | int]]


@st.composite
def cookie_specs(draw: st.DrawFn) -> CookieSpec:
    cookies: CookieSpec = []
    for _ in range(draw(st.integers(0, 4))):
        name = draw(
            st.sampled_from(
                [COOKIE.encode(), SIGNIN_COOKIE.encode(), COOKIE.upper().encode(), b"other", b""]
            )
        )
        kind = draw(st.sampled_from(["pool", "pool", "text", "bytes", "big"]))
        value: bytes | int
        if kind == "pool":
            value = draw(st.integers(0, POOL_SIZE - 1))
        elif kind == "text":
            value = draw(st.text(max_size=60)).encode("utf-8", "surrogatepass")
        elif kind == "bytes":
            value = draw(st.binary(max_size=60))
        else:
            value = b"A" * draw(st.integers(4000, 9000))
        cookies.append((name, value))
    return cookies


def cookie_header(spec: CookieSpec, pool: list[str]) -> list[tuple[bytes, bytes]]:
    cookies = []
    for name, value in spec:
        raw = pool[value].encode() if isinstance(value, int) else value
        raw = bytes(b for b in raw if b >= 0x20 and b != 0x7F)  # what a header value can hold
        cookies.append(name + b"=" + raw)
    return [(b"cookie", b"; ".join(cookies))] if cookies else []


CONTENT_TYPES = [
    b"application/x-www-form-urlencoded",
    b"application/x-www-form-urlencoded; charset=latin-1",
    b"APPLICATION/X-WWW-FORM-URLENCODED",
    b"application/json",
    b"multipart/form-data; boundary=x",
    b"text/plain",
    b"",
    b"\xff\xfe",
]


@st.composite
def bodies(draw: st.DrawFn) -> tuple[list[tuple[bytes, bytes]], bytes]:
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    kind = draw(st.sampled_from(["form", "form", "bytes", "huge"]))
    if kind == "form":
        body = draw(encoded_pairs())
        if draw(st.booleans()):
            body += b"&corpauth_relay=fragment"
    elif kind == "bytes":
        body = draw(st.binary(max_size=200))
    else:
        body = b"state=" + b"a" * draw(st.integers(60_000, 70_000))
    headers = [(b"content-type", content_type)] if content_type else []
    return headers, body


async def prepared_site(site: Site) -> list[str]:
    """Sign one browser in and start another's sign-in; their cookies seed the fuzzing."""
    signed_in = await site.browser()
    outcome = await signed_in.sign_in()
    assert outcome.final.status_code == 303
    pending = await site.browser()
    await pending.start()
    signing_in = pending.client.cookies.get(SIGNIN_COOKIE, domain="app.test")
    assert signed_in.session_cookie and signing_in
    return cookie_pool(site, signing_in, signed_in.session_cookie)


def assert_not_signed_in(response: Raw) -> None:
    """A fuzzed callback never succeeds: no session cookie set, and no redirect but the
    one that sends a browser already signed in home (Back after signing in)."""
    assert not [v for v in response.all("set-cookie") if v.startswith(COOKIE + "=")]
    if response.status == 303:
        assert response.header("location") == "/"


# --- the properties ----------------------------------------------------------------------


async def pool_of(site: Site) -> list[str]:
    pool: list[str] | None = getattr(site, "fuzz_pool", None)
    if pool is None:
        pool = await prepared_site(site)
        site.fuzz_pool = pool  # type: ignore[attr-defined]
    return pool


@FUZZ
@given(query=encoded_pairs(), cookies=cookie_specs())
async def test_fuzz_login(
    site: Site, counter: list[int], no_error_logs: None, query: bytes, cookies: CookieSpec
) -> None:
    headers = cookie_header(cookies, await pool_of(site))
    counter[0] += 1
    response = await send_raw(site.app, "GET", "/auth/login", query=query, headers=headers)
    check(response, router=True)
    assert response.status == 303


@FUZZ
@given(query=encoded_pairs(), cookies=cookie_specs())
async def test_fuzz_callback_query(
    site: Site, counter: list[int], no_error_logs: None, query: bytes, cookies: CookieSpec
) -> None:
    headers = cookie_header(cookies, await pool_of(site))
    counter[0] += 1
    response = await send_raw(site.app, "GET", "/auth/callback", query=query, headers=headers)
    check(response, router=True)
    assert_not_signed_in(response)


@FUZZ
@given(body=bodies(), query=st.one_of(st.just(b""), encoded_pairs()), cookies=cookie_specs())
async def test_fuzz_callback_post(
    site: Site,
    counter: list[int],
    no_error_logs: None,
    body: tuple[list[tuple[bytes, bytes]], bytes],
    query: bytes,
    cookies: CookieSpec,
) -> None:
    content_headers, content = body
    headers = cookie_header(cookies, await pool_of(site)) + content_headers
    counter[0] += 1
    response = await send_raw(
        site.app, "POST", "/auth/callback", query=query, headers=headers, body=content
    )
    check(response, router=True)
    assert_not_signed_in(response)


ROUTES = [("GET", "/auth/logout"), ("POST", "/auth/logout"), ("GET", "/me"), ("GET", "/maybe")]


@FUZZ
@given(
    route=st.sampled_from(ROUTES),
    query=encoded_pairs(),
    cookies=cookie_specs(),
    html=st.booleans(),
)
async def test_fuzz_logout_and_session_cookies(
    site: Site,
    counter: list[int],
    no_error_logs: None,
    route: tuple[str, str],
    query: bytes,
    cookies: CookieSpec,
    html: bool,
) -> None:
    method, path = route
    headers = cookie_header(cookies, await pool_of(site))
    if html:
        headers.append((b"accept", b"text/html"))
    counter[0] += 1
    response = await send_raw(site.app, method, path, query=query, headers=headers)
    check(response, router=path.startswith("/auth/"))
    if path == "/me":
        assert response.status in (200, 401)
    if route == ("POST", "/auth/logout"):
        assert response.status == 303
    if route == ("GET", "/auth/logout"):
        assert response.status == 200  # a button, never a sign-out


@settings(FUZZ, max_examples=1_000)
@given(fields=encoded_pairs(), state_first=st.booleans())
async def test_fuzz_callback_with_a_live_state(
    site: Site, counter: list[int], no_error_logs: None, fields: bytes, state_first: bool
) -> None:
    """The deeper checks (iss, error, token fields) behind a state this browser started."""
    counter[0] += 1
    login = await send_raw(site.app, "GET", "/auth/login")
    assert login.status == 303
    started = next(v for v in login.all("set-cookie") if v.startswith(SIGNIN_COOKIE + "="))
    cookie = [(b"cookie", started.split(";")[0].encode())]
    state = dict(httpx.URL(login.header("location") or "").params)["state"]
    live = b"state=" + state.encode()
    body = live + b"&" + fields if state_first else fields + b"&" + live
    body += b"&corpauth_relay=fragment"
    counter[0] += 1
    response = await send_raw(
        site.app,
        "POST",
        "/auth/callback",
        headers=[*cookie, (b"content-type", b"application/x-www-form-urlencoded")],
        body=body,
    )
    code = check(response, router=True)
    if response.status == 303:  # a Bearer token with the live state: a genuine sign-in
        assert code is None
        assert any(v.startswith(COOKIE + "=") for v in response.all("set-cookie"))


# --- schemathesis over the app's OpenAPI document ----------------------------------------


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _pairs(values: Any) -> list[tuple[str, str]]:
    if not isinstance(values, dict):
        return [("", _text(values))] if values is not None else []
    return [
        (str(name), _text(item))
        for name, value in values.items()
        for item in (value if isinstance(value, list) else [value])
    ]


def _header_bytes(value: str) -> bytes:
    return bytes(b for b in value.encode("utf-8", "surrogatepass") if b >= 0x20 and b != 0x7F)


async def send_case(site: Site, case: Any) -> Raw:
    """Send a schemathesis case through the raw ASGI client (no Starlette TestClient)."""
    kwargs = case.as_transport_kwargs(base_url=APP)
    url = urlsplit(kwargs["url"])
    query = urlencode(_pairs(kwargs.get("params")), doseq=False).encode()
    headers = [
        (name.lower().encode(), _header_bytes(_text(value)))
        for name, value in (kwargs.get("headers") or {}).items()
        if name.lower() not in ("host", "content-length")
    ]
    cookies = "; ".join(f"{name}={value}" for name, value in _pairs(kwargs.get("cookies")))
    if cookies:
        headers.append((b"cookie", _header_bytes(cookies)))
    body = b""
    if "json" in kwargs:
        body = json.dumps(kwargs["json"]).encode()
    elif "data" in kwargs:
        data = kwargs["data"]
        if isinstance(data, dict):
            body = urlencode(_pairs(data)).encode()
        elif isinstance(data, str):
            body = data.encode("utf-8", "surrogatepass")
        elif isinstance(data, bytes):
            body = data
    return await send_raw(
        site.app, kwargs["method"], unquote(url.path), query=query, headers=headers, body=body
    )


def schema_of(app: FastAPI) -> Any:
    return schemathesis.openapi.from_dict(app.openapi())


_SCHEMA = schema_of(build_app(CorpAuth(site_settings())))


@pytest.mark.parametrize(
    "mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"]
)
async def test_schemathesis(
    site: Site, counter: list[int], no_error_logs: None, mode: GenerationMode
) -> None:
    """Cases generated from ``app.openapi()`` for every operation, valid and invalid."""
    pool = await pool_of(site)
    cases: list[Any] = []

    @settings(FUZZ, max_examples=SCHEMATHESIS_EXAMPLES)
    @given(case=_SCHEMA.as_strategy(mode))
    def collect(case: Any) -> None:
        cases.append(case)

    collect()  # generation is synchronous; sending happens on the test's event loop
    operations = set()
    for index, case in enumerate(cases):
        if index % 5 == 0:  # some with real cookies, the rest with the generated ones
            case.cookies = {COOKIE: pool[index % len(pool)], SIGNIN_COOKIE: pool[0]}
        counter[0] += 1
        response = await send_case(site, case)
        operations.add((case.method, case.path))
        path = case.path
        check(response, router=path.startswith("/auth/"))
        if path == "/auth/callback":
            assert_not_signed_in(response)
    router_operations = {
        ("GET", "/auth/login"),
        ("GET", "/auth/callback"),
        ("GET", "/auth/logout"),
        ("POST", "/auth/logout"),
    }
    if mode == GenerationMode.POSITIVE:  # every operation; negative needs something to break
        router_operations |= {("POST", "/auth/callback"), ("GET", "/me"), ("GET", "/accounts")}
    assert router_operations <= operations


async def test_fuzz_total(counter: list[int]) -> None:
    """The fuzzing above sent at least MIN_REQUESTS requests (schemathesis counts apart)."""
    expected = {
        "test_fuzz_login",
        "test_fuzz_callback_query",
        "test_fuzz_callback_post",
        "test_fuzz_logout_and_session_cookies",
        "test_fuzz_callback_with_a_live_state",
        "test_schemathesis[positive]",
        "test_schemathesis[negative]",
    }
    if not expected <= set(SENT):
        pytest.skip("only part of the fuzzing ran")
    total = sum(SENT[name] for name in expected)
    print(f"\nfuzzing sent {total} requests: {SENT}")  # the README quotes this figure
    assert total >= MIN_REQUESTS
