"""Several real worker processes of the example app sharing one Redis.

A real redis-server, the development server as its own process and the example app as
real uvicorn processes (``--workers N``, or separate processes on separate ports),
configured only through ``CORPAUTH_*`` variables, as a deployment would be.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urljoin, urlsplit

import httpx
import pytest
import redis

from tests.e2e.processes import DEV_HEADERS, DEV_TOKEN, free_port, running
from tests.redis_server import RedisServer
from tests.support import page_form

pytestmark = pytest.mark.e2e

CLIENT_ID = "corp-app"
CLIENT_SECRET = "dev-secret"
SESSION_SECRET = "workers-test-session-key-0123456789"
#: Devserver token lifetime; with the 0.5 s leeway and window below, each token is
#: replaced 3 s after it was issued (refresh ahead) and served until 3.5 s.
TOKEN_LIFETIME = 4.0
REFRESH_AFTER = TOKEN_LIFETIME - 0.5 - 0.5
LOAD_SECONDS = 5.0  # more than one token lifetime
#: Concurrent requests per round (beyond ~100, a 2-core machine stalls for seconds on loopback).
CONCURRENCY = 100


@contextmanager
def devserver() -> Iterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = [
        "-m",
        "fastapi_corpauth.devserver",
        "--port",
        str(port),
        "--token-lifetime",
        str(TOKEN_LIFETIME),
        "--client",
        f"{CLIENT_ID}:{CLIENT_SECRET}",
        "--dev-token",
        DEV_TOKEN,
    ]
    with running(args, ready_url=base + "/_dev/stats"):
        yield base


def app_env(idp: str, redis_url: str | None) -> dict[str, str]:
    env = {
        "CORPAUTH_CLIENT_ID": CLIENT_ID,
        "CORPAUTH_CLIENT_SECRET": CLIENT_SECRET,
        "CORPAUTH_ISSUER": f"{idp}/realms/bog",
        "CORPAUTH_API_BASE_URL": f"{idp}/api",
        "CORPAUTH_SESSION_SECRET": SESSION_SECRET,
        "CORPAUTH_DEVELOPMENT": "true",
        "CORPAUTH_TOKEN_LEEWAY": "0.5",
        "CORPAUTH_TOKEN_REFRESH_WINDOW": "0.5",
        # Generous: a loaded machine must not look like a Redis outage. A stopped Redis
        # refuses connections at once, so the outage test does not wait for it.
        "CORPAUTH_REDIS_TIMEOUT": "2.0",
    }
    if redis_url is not None:
        env["CORPAUTH_REDIS_URL"] = redis_url
    return env


@contextmanager
def plugin_app(idp: str, redis_url: str | None, *, workers: int = 1) -> Iterator[tuple[str, Path]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = ["-m", "uvicorn", "tests.e2e.app:app", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--workers", str(workers), "--no-access-log"]
    with running(args, ready_url=base + "/", env=app_env(idp, redis_url)) as log:
        yield base, log


async def load(
    paths: Sequence[str], seconds: float, *, headers: Mapping[str, str] | None = None
) -> Counter[int]:
    """Rounds of ``CONCURRENCY`` concurrent GETs over ``paths`` for ``seconds``."""
    statuses: Counter[int] = Counter()
    # Idle connections are dropped well before uvicorn's 5 s keep-alive timeout, so the
    # client never sends on a connection the server is closing at that very moment.
    limits = httpx.Limits(
        max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY, keepalive_expiry=1.0
    )
    async with httpx.AsyncClient(limits=limits, timeout=10, headers=headers) as client:

        async def get(url: str) -> int:
            # A reused connection can still be dropped under loopback pressure on a
            # small machine; like any HTTP client, retry such an idempotent GET once on a
            # fresh connection. A server that answers nothing twice still fails the test.
            try:
                return (await client.get(url)).status_code
            except (httpx.ReadError, httpx.RemoteProtocolError):
                return (await client.get(url)).status_code

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            statuses.update(
                await asyncio.gather(*(get(paths[i % len(paths)]) for i in range(CONCURRENCY)))
            )
    return statuses


def token_requests(idp: str) -> int:
    stats = httpx.get(idp + "/_dev/stats", headers=DEV_HEADERS, timeout=5).json()
    return int(stats["token_requests"])


def measure_workers(idp: str, redis_url: str | None, workers: int) -> tuple[int, Counter[int]]:
    """Load ``workers`` app processes round-robin; return the token requests and statuses.

    Separate processes on separate ports, rather than ``uvicorn --workers``, so that every
    worker is certain to get traffic: the kernel may hand a short burst to only some of
    a shared socket's workers.
    """
    httpx.post(idp + "/_dev/reset", headers=DEV_HEADERS, timeout=5).raise_for_status()
    with ExitStack() as stack:
        bases = [stack.enter_context(plugin_app(idp, redis_url))[0] for _ in range(workers)]
        statuses = asyncio.run(load([base + "/api/accounts" for base in bases], LOAD_SECONDS))
        return token_requests(idp), statuses


def test_workers_share_one_token_through_redis(
    redis_url: str, record_property: Callable[[str, object], None]
) -> None:
    workers = 4
    with devserver() as idp:
        with_redis, statuses_redis = measure_workers(idp, redis_url, workers)
        without_redis, statuses_local = measure_workers(idp, None, workers)
    record_property("token_requests_with_redis", with_redis)
    record_property("token_requests_without_redis", without_redis)
    record_property("requests_with_redis", sum(statuses_redis.values()))
    record_property("requests_without_redis", sum(statuses_local.values()))
    print(
        f"\n{workers} workers, {LOAD_SECONDS}s of load, {TOKEN_LIFETIME}s tokens: "
        f"{with_redis} token requests with Redis ({sum(statuses_redis.values())} API calls), "
        f"{without_redis} without ({sum(statuses_local.values())} API calls)"
    )
    assert set(statuses_redis) == {200}, statuses_redis
    assert set(statuses_local) == {200}, statuses_local
    # One token per refresh interval for the whole deployment, not one per worker.
    assert with_redis <= math.ceil(LOAD_SECONDS / REFRESH_AFTER) + 1
    assert without_redis >= workers  # each process fetched its own
    assert with_redis < without_redis


def bank_sign_in(authorize_url: str) -> dict[str, str]:
    """Sign in as demo/demo on the devserver's page; return the fragment it answers with."""
    with httpx.Client(timeout=5, follow_redirects=False) as client:
        page = client.get(authorize_url)
        assert page.status_code == 200, page.text
        action, inputs = page_form(page.text)
        session_code = dict(inputs)["session_code"]
        form = {"session_code": session_code, "username": "demo", "password": "demo"}
        form["login"] = "login"
        answer = client.post(urljoin(authorize_url, action), data=form)
    assert answer.status_code == 302, answer.text
    return dict(parse_qsl(urlsplit(answer.headers["location"]).fragment))


def sign_in(start: str, finish: str, idp: str) -> str:
    """Start a sign-in on ``start``, complete its callback on ``finish``; return the cookie."""
    login = httpx.get(start + "/auth/login?next=/", timeout=5)
    assert login.status_code == 303, login.text
    state = parse_qs(urlsplit(login.headers["location"]).query)["state"][0]
    # The sign-in in progress travels sealed in the browser: any worker can complete it.
    signing_in = login.cookies["corpauth_session_signin"]
    # What the fragment relay page would POST: the bank's answer to a real sign-in.
    fields = bank_sign_in(login.headers["location"])
    assert fields["state"] == state
    callback = httpx.post(
        finish + "/auth/callback",
        data={"corpauth_relay": "fragment", **fields},
        headers={"Cookie": f"corpauth_session_signin={signing_in}"},
        timeout=5,
    )
    assert callback.status_code == 303, callback.text
    assert callback.headers["location"] == "/"
    return str(callback.cookies["corpauth_session"])


def home(base: str, session: str) -> str:
    response = httpx.get(base + "/", headers={"Cookie": f"corpauth_session={session}"}, timeout=5)
    assert response.status_code == 200
    return response.text


def test_a_sign_in_started_on_one_process_completes_on_another(redis_url: str) -> None:
    with (
        devserver() as idp,
        plugin_app(idp, redis_url) as (a, _),
        plugin_app(idp, redis_url) as (b, _),
    ):
        session = sign_in(a, b, idp)
        assert 'id="who"' in home(a, session)
        assert 'id="who"' in home(b, session)
        # Sign out on A ends the session on B too.
        logout = httpx.post(
            a + "/auth/logout", headers={"Cookie": f"corpauth_session={session}"}, timeout=5
        )
        assert logout.status_code == 303
        assert "You are not signed in" in home(b, session)


def test_redis_stopped_mid_load_and_restarted(own_redis_server: RedisServer) -> None:
    url = own_redis_server.url
    with devserver() as idp, plugin_app(idp, url, workers=2) as (base, log):
        session = sign_in(base, base, idp)
        assert 'id="who"' in home(base, session)
        paths = [base + "/", base + "/api/accounts", base + "/accounts"]
        headers = {"Cookie": f"corpauth_session={session}"}

        async def scenario() -> tuple[Counter[int], Counter[int], Counter[int]]:
            before = await load(paths, 1.0, headers=headers)
            own_redis_server.stop()
            during = await load(paths, 1.5, headers=headers)
            own_redis_server.start()
            after = await load(paths, REFRESH_AFTER + 1.0, headers=headers)
            return before, during, after

        before, during, after = asyncio.run(scenario())
        for phase in (before, during, after):
            assert not [s for s in phase if s >= 500], (phase, log.read_text())
        assert set(before) == {200}
        assert 401 in during or 200 in during  # signed out while Redis is down, not an error
        # Recovered by itself: the token is shared again, and signing in works again.
        with redis.Redis.from_url(url) as client:
            assert client.keys("corpauth:token:*")
        session = sign_in(base, base, idp)
        assert 'id="who"' in home(base, session)
        warnings = log.read_text().count("Redis unavailable")
        assert 1 <= warnings <= 2, log.read_text()  # once per worker, not per request
