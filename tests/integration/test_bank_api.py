"""CorpAuth's dependencies against the development server, over every Keycloak flavour."""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any

import httpx
import pytest

from tests.integration.conftest import ALL_FLAVOURS, MakeHarness
from tests.support import FakeClock

pytestmark = pytest.mark.anyio

#: Keycloak <= 18 does not URL-decode Basic credentials, so only alphanumeric secrets
#: work there with RFC 6749 encoding (protocol notes §2.5).
PLAIN_SECRET = "DevSecret0123456789"


def secret_for(flavour: str) -> str:
    from tests.integration.conftest import SPECIAL_SECRET

    return PLAIN_SECRET if flavour in ("legacy", "bank-docs") else SPECIAL_SECRET


@pytest.mark.parametrize("flavour", ALL_FLAVOURS)
async def test_accounts_through_api_client(make_harness: MakeHarness, flavour: str) -> None:
    async with make_harness(flavour=flavour, secret=secret_for(flavour)) as h:
        response = await h.client.get("/accounts")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == 200
        assert len(body["body"]) >= 1
        assert h.dev.token_requests == 1
        for _ in range(5):
            assert (await h.client.get("/accounts")).status_code == 200
        assert h.dev.token_requests == 1


@pytest.mark.parametrize("flavour", ALL_FLAVOURS)
async def test_bearer_token_dependency(make_harness: MakeHarness, flavour: str) -> None:
    async with make_harness(flavour=flavour, secret=secret_for(flavour)) as h:
        response = await h.client.get("/token-length")
        assert response.status_code == 200
        assert response.json()["length"] > 20
        token = await h.corpauth.get_token()
        assert token.token_type == "Bearer"
        assert token.lifetime == pytest.approx(300, abs=2)


async def test_legacy_keycloak_needs_post_for_special_secrets(make_harness: MakeHarness) -> None:
    secret = "s3cr+t%:x"
    async with make_harness(flavour="legacy", secret=secret) as h:
        response = await h.client.get("/accounts")
        assert response.status_code == 502
        assert response.json()["detail"]["code"] == "client_credentials_rejected"
    async with make_harness(
        flavour="legacy", secret=secret, client_auth_method="client_secret_post"
    ) as h:
        assert (await h.client.get("/accounts")).status_code == 200


@pytest.mark.parametrize("flavour", ALL_FLAVOURS)
async def test_wrong_secret_is_a_502_without_retry(make_harness: MakeHarness, flavour: str) -> None:
    async with make_harness(flavour=flavour, configured_secret="wrong") as h:
        for path in ("/accounts", "/token-length"):
            response = await h.client.get(path)
            assert response.status_code == 502
            assert response.json() == {
                "detail": {
                    "code": "client_credentials_rejected",
                    "message": "The bank refused this application's credentials.",
                }
            }
        assert h.dev.token_requests == 2  # one per request, never retried


async def test_concurrent_requests_share_one_token_request(make_harness: MakeHarness) -> None:
    async with make_harness() as h:
        h.dev.set_faults(latency=0.05)
        responses = await asyncio.gather(*(h.client.get("/accounts") for _ in range(200)))
        assert {r.status_code for r in responses} == {200}
        assert h.dev.token_requests == 1


async def test_revocation_under_load_refetches_once(make_harness: MakeHarness) -> None:
    async with make_harness() as h:
        assert (await h.client.get("/accounts")).status_code == 200
        h.dev.push_not_before()
        h.dev.reset_counters()
        responses = await asyncio.gather(*(h.client.get("/accounts") for _ in range(200)))
        assert [r.json()["status"] for r in responses] == [200] * 200
        assert h.dev.token_requests == 1
        assert h.dev.api_rejections >= 1


async def test_second_401_goes_back_to_caller(make_harness: MakeHarness) -> None:
    async with make_harness() as h:
        bank = h.corpauth._require_running().api_client
        response = await bank.get("accounts", headers={"X-Test": "1"})
        assert response.status_code == 200
        h.dev.reset_counters()

        # A token the bank refuses however often it is renewed: issue, then push at once.
        original = h.corpauth.tokens.get_token

        async def revoked_each_time() -> Any:
            token = await original()
            h.dev.push_not_before()
            return token

        h.corpauth.tokens.get_token = revoked_each_time
        response = await bank.get("accounts")
        assert response.status_code == 401
        assert h.dev.api_requests == 2  # the request and exactly one retry


async def test_token_renewed_before_expiry(make_harness: MakeHarness) -> None:
    clock = FakeClock()
    async with make_harness(clock=clock, token_lifetime=60) as h:
        assert (await h.client.get("/accounts")).status_code == 200
        clock.advance(46)  # past the refresh point of a 60 s token
        assert (await h.client.get("/accounts")).status_code == 200
        await asyncio.sleep(0.05)  # let the background refresh land
        assert h.dev.token_requests == 2
        clock.advance(14)  # the first token has expired; its successor serves
        assert (await h.client.get("/accounts")).status_code == 200
        assert h.dev.token_requests == 2
        assert h.dev.api_rejections == 0


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ({"status": 500}, 503, "token_endpoint_unavailable"),
        ({"status": 503, "retry_after": 3}, 503, "token_endpoint_unavailable"),
        ({"status": 429, "retry_after": 2}, 503, "token_endpoint_unavailable"),
        ({"body_kind": "html"}, 502, "token_response_malformed"),
        ({"body_kind": "truncated"}, 502, "token_response_malformed"),
        ({"body_kind": "not-json"}, 502, "token_response_malformed"),
        ({"expired_token": True}, 502, "token_response_malformed"),
    ],
)
async def test_token_endpoint_faults_then_recovery(
    make_harness: MakeHarness, fault: dict[str, Any], status: int, code: str
) -> None:
    clock = FakeClock()
    async with make_harness(clock=clock) as h:
        h.dev.set_faults(**fault)
        response = await h.client.get("/accounts")
        assert response.status_code == status
        assert response.json()["detail"]["code"] == code
        assert response.headers["cache-control"] == "no-store"
        if status == 503:
            assert int(response.headers["retry-after"]) >= 1
        assert h.dev.token_requests <= 3
        h.dev.clear_faults()
        clock.advance(fault.get("retry_after", 0))  # recovery within one back-off period
        response = await h.client.get("/accounts")
        assert response.status_code == 200


async def test_refused_connection_is_503_with_retry_after(make_harness: MakeHarness) -> None:
    from fastapi_corpauth import CorpAuth
    from tests.integration.conftest import build_app
    from tests.support import settings

    corpauth = CorpAuth(
        settings(issuer="http://127.0.0.1:9/realms/bog", token_cooldown=30, connect_timeout=2)
    )
    app = build_app(corpauth)
    async with (
        corpauth.lifespan(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://app.test"
        ) as client,
    ):
        response = await client.get("/token-length")
        assert response.status_code == 503
        assert response.json()["detail"]["code"] == "token_endpoint_unavailable"
        assert 1 <= int(response.headers["retry-after"]) <= 30
        # Subsequent callers fail fast rather than each retrying the dead endpoint.
        sent = corpauth.tokens.requests_sent
        response = await client.get("/token-length")
        assert response.status_code == 503
        assert corpauth.tokens.requests_sent == sent


def test_basic_header_is_rfc_encoded() -> None:
    from fastapi_corpauth._protocol import basic_authorization
    from tests.integration.conftest import SPECIAL_SECRET

    raw = base64.b64decode(basic_authorization("corp-app", SPECIAL_SECRET)[6:]).decode()
    assert raw == "corp-app:s3cr%2Bt%252F%3A%C3%BC+ok"


async def test_without_lifespan_names_the_fix_and_logs_it_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from fastapi_corpauth import CorpAuth, LifespanNotStarted
    from tests.integration.conftest import build_app
    from tests.support import settings

    corpauth = CorpAuth(settings())
    app = build_app(corpauth)
    caplog.set_level(logging.DEBUG, logger="fastapi_corpauth")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://app.test"
    ) as client:
        for path in ("/accounts", "/token-length", "/accounts"):
            response = await client.get(path)
            assert response.status_code == 503
            detail = response.json()["detail"]
            assert detail["code"] == "configuration_error"
            assert "FastAPI(lifespan=corpauth.lifespan)" in detail["message"]
    errors = [r for r in caplog.records if r.name.startswith("fastapi_corpauth")]
    assert len(errors) == 1, errors
    assert errors[0].levelno == logging.ERROR
    assert "lifespan=corpauth.lifespan" in errors[0].getMessage()
    with pytest.raises(LifespanNotStarted, match="lifespan"):
        await corpauth.get_token()
    assert len([r for r in caplog.records if r.name.startswith("fastapi_corpauth")]) == 1


async def test_unreachable_bank_api_is_a_503_with_code() -> None:
    from fastapi_corpauth import CorpAuth
    from tests.integration.conftest import build_app
    from tests.support import TokenEndpoint, settings

    endpoint = TokenEndpoint()
    corpauth = CorpAuth(
        settings(api_base_url="http://127.0.0.1:9/api"),
        transport=endpoint.transport(),
        api_transport=httpx.AsyncHTTPTransport(),  # real network: nothing listens on port 9
    )
    app = build_app(corpauth)
    async with (
        corpauth.lifespan(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client,
    ):
        response = await client.get("/accounts")
        assert response.status_code == 503
        assert response.json()["detail"]["code"] == "bank_api_unavailable"
        assert response.headers["retry-after"] == "5"
        assert endpoint.count == 1


async def test_a_day_long_retry_after_heals_within_the_cap(make_harness: MakeHarness) -> None:
    clock = FakeClock()
    async with make_harness(clock=clock, token_cooldown=5.0) as h:
        h.dev.set_faults(status=503, retry_after=86400, count=1)
        refused = await h.client.get("/accounts")
        assert refused.status_code == 503
        assert int(refused.headers["retry-after"]) <= 60
        clock.advance(30)
        assert (await h.client.get("/accounts")).status_code == 503  # still cooling down
        clock.advance(30)  # CORPAUTH_TOKEN_RETRY_AFTER_MAX (60 s), not a day
        assert (await h.client.get("/accounts")).status_code == 200
        assert h.dev.token_requests == 2


class _BreaksMidBody(httpx.AsyncByteStream):
    async def __aiter__(self) -> Any:
        yield b'{"accounts": ['
        raise httpx.ReadError("connection reset by peer")


async def test_api_client_failures_answer_with_codes_also_mid_stream_or_when_caught() -> None:
    """What the client cannot do is the route's answer (503/502 and a code), never a 500;
    a route that wants to handle it catches the HTTPException and finds the cause."""
    from fastapi import Depends, FastAPI, HTTPException

    from fastapi_corpauth import BankApiUnavailable, CorpAuth
    from tests.support import TokenEndpoint, settings

    def bank(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/stream"):
            return httpx.Response(200, stream=_BreaksMidBody())
        raise httpx.ConnectTimeout("timed out")

    endpoint = TokenEndpoint()
    corpauth = CorpAuth(
        settings(), transport=endpoint.transport(), api_transport=httpx.MockTransport(bank)
    )
    app = FastAPI(lifespan=corpauth.lifespan)

    @app.get("/streamed")
    async def streamed(client: httpx.AsyncClient = Depends(corpauth.api_client)) -> Any:
        async with client.stream("GET", "stream") as response:
            return {"size": len(b"".join([chunk async for chunk in response.aiter_bytes()]))}

    @app.get("/handled")
    async def handled(client: httpx.AsyncClient = Depends(corpauth.api_client)) -> Any:
        try:
            await client.get("accounts")
        except HTTPException as exc:
            cause = exc.__cause__
            assert isinstance(cause, BankApiUnavailable)
            return {"fallback": True, "cause": type(cause.__cause__).__name__}
        raise AssertionError("the timeout was not raised")

    async with (
        corpauth.lifespan(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client,
    ):
        broken = await client.get("/streamed")
        assert broken.status_code == 503, broken.text
        assert broken.json()["detail"]["code"] == "bank_api_unavailable"
        assert "reset" not in broken.text
        answer = await client.get("/handled")
        assert answer.json() == {"fallback": True, "cause": "ConnectTimeout"}
