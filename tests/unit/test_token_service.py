"""TokenService against a scripted token endpoint (httpx.MockTransport) and a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from fastapi_corpauth import (
    CachePolicy,
    ClientCredentials,
    CredentialsRejected,
    MalformedTokenResponse,
    RetryPolicy,
    TokenEndpointUnavailable,
    TokenService,
)
from tests.support import TOKEN_URL, FakeClock, TokenEndpoint, token_body

pytestmark = pytest.mark.anyio


class Sleeps:
    """Records back-off sleeps instead of waiting them out."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def make_service(clock: FakeClock, sleeps: Sleeps) -> AsyncIterator[Any]:
    services: list[TokenService] = []
    clients: list[httpx.AsyncClient] = []

    def make(endpoint: TokenEndpoint, **kwargs: Any) -> TokenService:
        client = httpx.AsyncClient(transport=endpoint.transport())
        clients.append(client)
        kwargs.setdefault("retry", RetryPolicy(attempts=3, backoff_base=0.1, cooldown=5))
        service = TokenService(
            http=client,
            token_url=TOKEN_URL,
            credentials=ClientCredentials(client_id="corp-app", client_secret=SecretStr("s")),
            clock=clock,
            sleep=sleeps,
            **kwargs,
        )
        services.append(service)
        return service

    yield make
    for service in services:
        await service.aclose()
    for client in clients:
        await client.aclose()


def error(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, content=body, headers=headers or {})


async def test_token_is_cached_until_stale(make_service: Any, clock: FakeClock) -> None:
    endpoint = TokenEndpoint()
    service = make_service(endpoint, cache=CachePolicy(leeway=30, refresh_window=0))
    first = await service.get_token()
    assert (await service.get_token()) is first
    clock.advance(269)
    assert (await service.get_token()) is first
    assert endpoint.count == 1
    clock.advance(2)
    second = await service.get_token()
    assert second.access_token == "tok-2"
    assert endpoint.count == 2


async def test_short_lived_token_is_not_refetched_on_every_call(
    make_service: Any, clock: FakeClock
) -> None:
    endpoint = TokenEndpoint(httpx.Response(200, content=token_body(expires_in=30)))
    service = make_service(endpoint, cache=CachePolicy(leeway=60, refresh_window=60))
    for _ in range(10):
        await service.get_token()
        clock.advance(1)
    assert endpoint.count == 1


async def test_single_flight_on_cold_cache(make_service: Any) -> None:
    endpoint = TokenEndpoint(latency=0.05)
    service = make_service(endpoint)
    tokens = await asyncio.gather(*(service.get_token() for _ in range(500)))
    assert endpoint.count == 1
    assert {t.access_token for t in tokens} == {"tok-1"}


async def test_single_flight_on_expiry(make_service: Any, clock: FakeClock) -> None:
    endpoint = TokenEndpoint(latency=0.02)
    service = make_service(endpoint)
    await service.get_token()
    clock.advance(1000)
    tokens = await asyncio.gather(*(service.get_token() for _ in range(300)))
    assert endpoint.count == 2
    assert {t.access_token for t in tokens} == {"tok-2"}


async def test_single_flight_shares_the_error(make_service: Any) -> None:
    endpoint = TokenEndpoint(
        error(401, b'{"error":"unauthorized_client","error_description":"Invalid client"}'),
        latency=0.02,
    )
    service = make_service(endpoint)
    results = await asyncio.gather(
        *(service.get_token() for _ in range(200)), return_exceptions=True
    )
    assert endpoint.count == 1
    assert all(isinstance(r, CredentialsRejected) for r in results)


async def test_refresh_ahead_serves_current_token_while_fetching(
    make_service: Any, clock: FakeClock
) -> None:
    release = asyncio.Event()
    endpoint = TokenEndpoint()
    service = make_service(endpoint, cache=CachePolicy(leeway=30, refresh_window=60))
    await service.get_token()

    async def slow(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return httpx.Response(200, content=token_body("tok-next"))

    endpoint.responses = [slow]
    clock.advance(211)  # past refresh_at (300 - 30 - 60), before stale_at
    for _ in range(50):
        token = await asyncio.wait_for(service.get_token(), timeout=1)
        assert token.access_token == "tok-1"
    assert endpoint.count == 2  # one background fetch, however many callers
    release.set()
    await asyncio.sleep(0.01)
    assert (await service.get_token()).access_token == "tok-next"
    assert endpoint.count == 2


@pytest.mark.parametrize(
    "failure",
    [
        error(500, b"<html>oops</html>"),
        error(502),
        error(503),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        error(429),
    ],
)
async def test_transient_failures_are_retried(
    make_service: Any, sleeps: Sleeps, failure: Any
) -> None:
    endpoint = TokenEndpoint(failure, failure, httpx.Response(200, content=token_body()))
    service = make_service(endpoint)
    token = await service.get_token()
    assert token.access_token == "tok-1"
    assert endpoint.count == 3
    assert len(sleeps.delays) == 2
    assert all(0 <= d <= 0.2 for d in sleeps.delays)


async def test_retries_are_bounded(make_service: Any, sleeps: Sleeps) -> None:
    endpoint = TokenEndpoint(httpx.ConnectError("refused"))
    service = make_service(endpoint, retry=RetryPolicy(attempts=4, backoff_base=0.1))
    with pytest.raises(TokenEndpointUnavailable) as info:
        await service.get_token()
    assert endpoint.count == 4
    assert len(sleeps.delays) == 3
    assert "refused" not in info.value.message  # no transport detail that could carry a URL


async def test_retry_after_is_honoured(make_service: Any, sleeps: Sleeps) -> None:
    endpoint = TokenEndpoint(
        error(429, headers={"Retry-After": "2"}), httpx.Response(200, content=token_body())
    )
    service = make_service(endpoint, retry=RetryPolicy(attempts=3, backoff_max=5))
    await service.get_token()
    assert sleeps.delays == [2.0]


async def test_long_retry_after_fails_at_once(make_service: Any, sleeps: Sleeps) -> None:
    endpoint = TokenEndpoint(error(503, headers={"Retry-After": "120"}))
    service = make_service(endpoint, retry=RetryPolicy(attempts=3, backoff_max=5, cooldown=5))
    with pytest.raises(TokenEndpointUnavailable) as info:
        await service.get_token()
    assert endpoint.count == 1
    assert sleeps.delays == []
    assert info.value.retry_after == 60  # honoured up to CORPAUTH_TOKEN_RETRY_AFTER_MAX


async def test_a_day_long_retry_after_locks_out_for_the_cap_only(
    make_service: Any, clock: FakeClock
) -> None:
    """One 503 with ``Retry-After: 86400`` (a proxy's) must not stop bank calls for a day."""
    endpoint = TokenEndpoint(error(503, headers={"Retry-After": "86400"}))
    service = make_service(endpoint, retry=RetryPolicy(attempts=3, cooldown=5))
    with pytest.raises(TokenEndpointUnavailable):
        await service.get_token()
    clock.advance(59)
    with pytest.raises(TokenEndpointUnavailable) as info:
        await service.get_token()
    assert info.value.retry_after == pytest.approx(1)  # the cap (60 s), not 86,400 s
    assert endpoint.count == 1
    endpoint.responses = [httpx.Response(200, content=token_body("healed"))]
    clock.advance(1)
    results = await asyncio.gather(*(service.get_token() for _ in range(20)))
    assert {t.access_token for t in results} == {"healed"}
    assert endpoint.count == 2  # one probe after the cool-down, shared by everyone


async def test_the_cap_is_a_setting(make_service: Any, clock: FakeClock) -> None:
    endpoint = TokenEndpoint(error(429, headers={"Retry-After": "3600"}))
    service = make_service(endpoint, retry=RetryPolicy(retry_after_max=10))
    with pytest.raises(TokenEndpointUnavailable):
        await service.get_token()
    endpoint.responses = [httpx.Response(200, content=token_body("healed"))]
    clock.advance(10)
    assert (await service.get_token()).access_token == "healed"


@pytest.mark.parametrize(
    "answer",
    [
        error(401, b'{"error":"unauthorized_client","error_description":"Invalid client secret"}'),
        error(400, b'{"error":"invalid_client","error_description":"Invalid client credentials"}'),
        error(401, b'{"error":"invalid_client"}'),
    ],
)
async def test_rejected_credentials_are_not_retried(make_service: Any, answer: Any) -> None:
    endpoint = TokenEndpoint(answer)
    service = make_service(endpoint)
    with pytest.raises(CredentialsRejected):
        await service.get_token()
    assert endpoint.count == 1


async def test_fail_fast_then_recover(make_service: Any, clock: FakeClock) -> None:
    endpoint = TokenEndpoint(error(503))
    service = make_service(endpoint, retry=RetryPolicy(attempts=2, cooldown=10))
    with pytest.raises(TokenEndpointUnavailable):
        await service.get_token()
    assert endpoint.count == 2
    clock.advance(4)
    with pytest.raises(TokenEndpointUnavailable) as info:
        await service.get_token()
    assert endpoint.count == 2  # failed fast, no new request
    assert info.value.retry_after == pytest.approx(6)
    endpoint.responses = [httpx.Response(200, content=token_body("back"))]
    clock.advance(6)
    assert (await service.get_token()).access_token == "back"


async def test_valid_token_served_while_endpoint_fails(make_service: Any, clock: FakeClock) -> None:
    endpoint = TokenEndpoint(httpx.Response(200, content=token_body(expires_in=300)))
    service = make_service(endpoint, cache=CachePolicy(leeway=30, refresh_window=60))
    first = await service.get_token()
    endpoint.responses = [error(500)]
    clock.advance(280)  # stale, not expired
    assert await service.get_token() is first
    clock.advance(5)
    assert await service.get_token() is first
    clock.advance(20)  # expired now
    with pytest.raises(TokenEndpointUnavailable):
        await service.get_token()


async def test_invalidate_only_drops_the_failed_token(make_service: Any) -> None:
    endpoint = TokenEndpoint()
    service = make_service(endpoint)
    old = await service.get_token()
    assert service.invalidate(old) is True
    new = await service.get_token()
    assert new.access_token == "tok-2"
    assert service.invalidate(old) is False
    assert await service.get_token() is new
    assert endpoint.count == 2


async def test_a_ready_token_is_only_one_that_needs_nothing_done(
    make_service: Any, clock: FakeClock
) -> None:
    endpoint = TokenEndpoint()
    service = make_service(endpoint, cache=CachePolicy(leeway=30, refresh_window=60))
    assert service.ready_token() is None  # nothing fetched yet
    first = await service.get_token()
    assert service.ready_token() is first
    clock.advance(211)  # past the refresh point (300 - 30 - 60): a refresh is due
    assert service.ready_token() is None
    assert await service.get_token() is first  # served while the refresh runs
    await asyncio.sleep(0.01)
    renewed = await service.get_token()
    assert renewed.access_token == "tok-2"
    assert service.ready_token() is renewed
    assert service.invalidate(renewed) is True  # the bank refused it
    assert service.ready_token() is None


async def test_already_expired_token_is_malformed(make_service: Any) -> None:
    endpoint = TokenEndpoint(httpx.Response(200, content=token_body(expires_in=0)))
    service = make_service(endpoint)
    with pytest.raises(MalformedTokenResponse):
        await service.get_token()


async def test_aclose_cancels_fetch_in_flight(make_service: Any) -> None:
    started = asyncio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        started.set()
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    service = make_service(TokenEndpoint(hang))
    caller = asyncio.create_task(service.get_token())
    await started.wait()
    await service.aclose()
    with pytest.raises(TokenEndpointUnavailable):  # a clear 503, not a cancelled request
        await caller
    with pytest.raises(RuntimeError):
        await service.get_token()


async def test_a_cancelled_caller_does_not_cancel_the_shared_fetch(make_service: Any) -> None:
    endpoint = TokenEndpoint(latency=0.05)
    service = make_service(endpoint)
    impatient = asyncio.create_task(service.get_token())
    patient = asyncio.create_task(service.get_token())
    await asyncio.sleep(0.01)
    impatient.cancel()
    with pytest.raises(asyncio.CancelledError):
        await impatient
    assert (await patient).access_token == "tok-1"
    assert endpoint.count == 1
