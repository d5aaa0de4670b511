"""Faults of a broken network and a misbehaving bank.

For every token endpoint fault: a valid cached token keeps serving (no 5xx at all), a
cold cache gets the documented clear 502/503 with a stable code (never a 500), retries
are bounded, and the app recovers within one back-off period once the endpoint heals.
Then: a not-before push in the middle of load, and shutdown during a token fetch.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import httpx
import pytest

from fastapi_corpauth import TokenEndpointUnavailable
from tests.security.conftest import Site, open_site
from tests.support import FakeClock

pytestmark = pytest.mark.anyio

ATTEMPTS = 3
COOLDOWN = 5.0


class FaultyTransport(httpx.AsyncBaseTransport):
    """The devserver behind a network that can refuse, time out, stall or hang.

    ``read`` timeouts are enforced like a real transport would (ASGITransport has none).
    """

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.fault: str | None = None
        self.delay = 0.0
        self.requests = 0
        self.entered = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        self.entered.set()
        if self.fault == "refused":
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        if self.fault == "connect-timeout":
            raise httpx.ConnectTimeout("timed out", request=request)
        if self.fault == "hang":
            await asyncio.Event().wait()
        timeout = request.extensions.get("timeout", {}).get("read")
        try:
            async with asyncio.timeout(timeout):
                await asyncio.sleep(self.delay)
                return await self.inner.handle_async_request(request)
        except TimeoutError:
            raise httpx.ReadTimeout("read timed out", request=request) from None

    async def aclose(self) -> None:
        await self.inner.aclose()


FAULTS: list[tuple[str, dict[str, Any], int, str]] = [
    ("refused", {}, 503, "token_endpoint_unavailable"),
    ("connect-timeout", {}, 503, "token_endpoint_unavailable"),
    ("slow-beyond-timeout", {}, 503, "token_endpoint_unavailable"),
    ("500", {"status": 500}, 503, "token_endpoint_unavailable"),
    ("502", {"status": 502, "body_kind": "html"}, 503, "token_endpoint_unavailable"),
    ("503", {"status": 503}, 503, "token_endpoint_unavailable"),
    ("429-retry-after", {"status": 429, "retry_after": 2}, 503, "token_endpoint_unavailable"),
    ("html-200", {"body_kind": "html"}, 502, "token_response_malformed"),
    ("truncated", {"body_kind": "truncated"}, 502, "token_response_malformed"),
    ("not-json", {"body_kind": "not-json"}, 502, "token_response_malformed"),
    ("expired-token", {"expired_token": True}, 502, "token_response_malformed"),
]


class Bed:
    """A site whose token endpoint sits behind a ``FaultyTransport``."""

    def __init__(self, site: Site, transport: FaultyTransport) -> None:
        self.site = site
        self.transport = transport

    def inject(self, name: str, fault: dict[str, Any]) -> None:
        if name in ("refused", "connect-timeout"):
            self.transport.fault = name
        elif name == "slow-beyond-timeout":
            self.transport.delay = 0.3
        else:
            self.site.dev.set_faults(**fault)

    def heal(self) -> None:
        self.transport.fault = None
        self.transport.delay = 0.0
        self.site.dev.clear_faults()


async def start_bed(clock: FakeClock, **overrides: Any) -> tuple[Any, Bed]:
    box: dict[str, FaultyTransport] = {}

    class Lazy(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            return await box["t"].handle_async_request(request)

    manager = open_site(
        clock=clock,
        transport=Lazy(),
        token_cooldown=COOLDOWN,
        token_retry_attempts=ATTEMPTS,
        read_timeout=0.1,
        **overrides,
    )
    site = await manager.__aenter__()
    box["t"] = FaultyTransport(httpx.ASGITransport(app=site.devserver))
    return manager, Bed(site, box["t"])


async def settled(bed: Bed) -> None:
    """Wait for the background fetch (and its retries) to finish."""
    fetch = bed.site.corpauth.tokens._fetch
    if fetch is not None:
        await asyncio.wait([fetch])


@pytest.mark.parametrize(("name", "fault", "status", "code"), FAULTS, ids=[f[0] for f in FAULTS])
async def test_token_endpoint_fault(
    name: str, fault: dict[str, Any], status: int, code: str
) -> None:
    clock = FakeClock()
    manager, bed = await start_bed(clock)
    try:
        client = await bed.site.raw_client()
        dev = bed.site.dev
        # 1. Warm cache: the fault hits refresh ahead and the stale-but-valid window.
        assert (await client.get("/accounts")).status_code == 200
        assert dev.token_requests == 1
        bed.inject(name, fault)
        clock.advance(220)  # refresh ahead starts in the background and fails
        assert (await client.get("/accounts")).json() == {"status": 200}
        await settled(bed)
        clock.advance(55)  # stale (leeway) but not expired: the fetch fails, the token serves
        for _ in range(5):
            response = await client.get("/accounts")
            assert response.status_code == 200, (name, response.text)
        await settled(bed)
        # 2. Cold cache (the token expired): a clear refusal, never a 500.
        clock.advance(30)
        sent = bed.transport.requests
        response = await client.get("/token-length")
        assert response.status_code == status, response.text
        assert response.json()["detail"]["code"] == code
        assert response.headers["cache-control"] == "no-store"
        if status == 503:
            assert 1 <= int(response.headers["retry-after"]) <= COOLDOWN + 2
        retries = bed.transport.requests - sent
        assert 1 <= retries <= ATTEMPTS  # bounded retries
        # Fail fast during the cool-down: no request reaches the endpoint.
        sent = bed.transport.requests
        for _ in range(10):
            assert (await client.get("/token-length")).status_code == status
        assert bed.transport.requests == sent
        # 3. Healed: served again within one back-off period.
        bed.heal()
        clock.advance(max(COOLDOWN, float(fault.get("retry_after", 0))))
        assert (await client.get("/token-length")).status_code == 200
        assert (await client.get("/accounts")).json() == {"status": 200}
    finally:
        await manager.__aexit__(None, None, None)


async def test_slow_but_in_time_is_served() -> None:
    clock = FakeClock()
    manager, bed = await start_bed(clock)
    try:
        bed.transport.delay = 0.05  # under the 0.1 s read timeout
        client = await bed.site.raw_client()
        responses = await asyncio.gather(*(client.get("/accounts") for _ in range(50)))
        assert {r.status_code for r in responses} == {200}
        assert bed.site.dev.token_requests == 1
    finally:
        await manager.__aexit__(None, None, None)


async def test_token_without_expires_in() -> None:
    clock = FakeClock()
    # Keycloak 4.x does not URL-decode Basic credentials: a special secret goes in the form.
    async with open_site(
        clock=clock, flavour="no-expires-in", client_auth_method="client_secret_post"
    ) as site:
        client = await site.raw_client()
        response = await client.get("/accounts")
        assert response.json() == {"status": 200}
        token = site.corpauth.tokens.cached
        assert token is not None
        assert token.lifetime == pytest.approx(300, abs=2)  # from the JWT exp


async def test_not_before_push_mid_load() -> None:
    async with open_site() as site:
        client = await site.raw_client()
        assert (await client.get("/accounts")).status_code == 200
        site.dev.reset_counters()
        done = 0

        async def call() -> int:
            nonlocal done
            response = await client.get("/accounts")
            done += 1
            if done == 100:
                site.dev.push_not_before()
            return int(response.json()["status"])

        statuses = await asyncio.gather(*(call() for _ in range(300)))
        assert statuses == [200] * 300  # no failed request: the single retry sufficed
        assert site.dev.token_requests <= 1
        assert site.dev.api_requests <= 300 + site.dev.api_rejections


async def test_shutdown_during_a_token_fetch_and_restart() -> None:
    manager, bed = await start_bed(FakeClock())
    corpauth = bed.site.corpauth
    try:
        bed.transport.fault = "hang"
        fetch = asyncio.ensure_future(corpauth.get_token())
        await asyncio.wait_for(bed.transport.entered.wait(), 1)
        tokens = corpauth.tokens
        task = tokens._fetch
        assert task is not None and not task.done()
        clients = (corpauth.auth_http, corpauth._require_running().api_client)
    finally:
        await manager.__aexit__(None, None, None)
    assert task.cancelled()
    with pytest.raises(TokenEndpointUnavailable):  # a clear 503 for the waiting caller
        await fetch
    assert all(client.is_closed for client in clients)
    gc.collect()  # a destroyed pending task or an unclosed client would warn (an error)
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not [t for t in others if "corpauth" in t.get_name()]
    # The same CorpAuth starts again and serves.
    bed.heal()
    async with corpauth.lifespan(bed.site.app):
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=bed.site.app), base_url="https://app.test"
        )
        async with client:
            assert (await client.get("/accounts")).json() == {"status": 200}
            assert (await client.get("/token-length")).status_code == 200
    gc.collect()
