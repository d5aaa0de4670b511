"""Discovery: the pure parsing of the document, and the lazy, cached service around it."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest

from fastapi_corpauth import Endpoints
from fastapi_corpauth._discovery import Discovery
from fastapi_corpauth._metadata import (
    DiscoveryDocumentInvalid,
    discovery_url,
    fallback_metadata,
    parse_discovery,
)
from tests.support import ISSUER, FakeClock

pytestmark = pytest.mark.anyio

OIDC = ISSUER + "/protocol/openid-connect"
DOCUMENT: dict[str, Any] = {
    "issuer": ISSUER,
    "authorization_endpoint": "https://login.bank.test/auth",
    "token_endpoint": "https://login.bank.test/token",
    "jwks_uri": "https://login.bank.test/certs",
    "introspection_endpoint": "https://login.bank.test/introspect",
    "end_session_endpoint": "https://login.bank.test/logout",
    "authorization_response_iss_parameter_supported": True,
}
NO_OVERRIDES: dict[str, str | None] = {}


def test_the_fallback_is_keycloaks_paths() -> None:
    metadata = fallback_metadata(Endpoints.from_issuer(ISSUER + "/"))
    assert metadata.issuer == ISSUER
    assert metadata.authorization_endpoint == OIDC + "/auth"
    assert metadata.token_endpoint == OIDC + "/token"
    assert metadata.jwks_uri == OIDC + "/certs"
    assert metadata.introspection_endpoint == OIDC + "/token/introspect"
    assert metadata.end_session_endpoint == OIDC + "/logout"
    assert metadata.iss_parameter_supported is False
    assert metadata.discovered is False


def test_the_document_gives_the_endpoints() -> None:
    metadata = parse_discovery(DOCUMENT, issuer=ISSUER, overrides=NO_OVERRIDES)
    assert metadata.token_endpoint == "https://login.bank.test/token"
    assert metadata.jwks_uri == "https://login.bank.test/certs"
    assert metadata.iss_parameter_supported is True
    assert metadata.discovered is True


def test_configured_endpoints_beat_the_document() -> None:
    metadata = parse_discovery(
        DOCUMENT,
        issuer=ISSUER,
        overrides={"token_endpoint": "https://proxy.test/token", "jwks_uri": None},
    )
    assert metadata.token_endpoint == "https://proxy.test/token"
    assert metadata.jwks_uri == "https://login.bank.test/certs"


def test_a_server_without_end_session_or_introspection_says_so() -> None:
    document = {
        k: v
        for k, v in DOCUMENT.items()
        if k not in ("end_session_endpoint", "introspection_endpoint")
    }
    metadata = parse_discovery(document, issuer=ISSUER, overrides=NO_OVERRIDES)
    assert metadata.end_session_endpoint is None
    assert metadata.introspection_endpoint is None
    assert metadata.iss_parameter_supported is True


@pytest.mark.parametrize(
    "document",
    [
        [],
        {**DOCUMENT, "issuer": "https://evil.example/realms/bog"},
        {**DOCUMENT, "issuer": ISSUER + "x"},
        {k: v for k, v in DOCUMENT.items() if k != "issuer"},
        {**DOCUMENT, "jwks_uri": "javascript:alert(1)"},
        {**DOCUMENT, "token_endpoint": "/relative"},
        {**DOCUMENT, "authorization_endpoint": "https://a.test/auth#x"},
        {**DOCUMENT, "jwks_uri": 42},
        {k: v for k, v in DOCUMENT.items() if k != "token_endpoint"},
    ],
)
def test_unusable_documents(document: Any) -> None:
    with pytest.raises(DiscoveryDocumentInvalid):
        parse_discovery(document, issuer=ISSUER, overrides=NO_OVERRIDES)


def test_iss_support_must_be_exactly_true() -> None:
    document = {**DOCUMENT, "authorization_response_iss_parameter_supported": "true"}
    assert not parse_discovery(
        document, issuer=ISSUER, overrides=NO_OVERRIDES
    ).iss_parameter_supported


def test_every_endpoint_of_the_document_is_kept() -> None:
    metadata = parse_discovery(DOCUMENT, issuer=ISSUER, overrides=NO_OVERRIDES)
    assert metadata.issuer == ISSUER
    assert metadata.authorization_endpoint == "https://login.bank.test/auth"
    assert metadata.introspection_endpoint == "https://login.bank.test/introspect"
    assert metadata.end_session_endpoint == "https://login.bank.test/logout"


@pytest.mark.parametrize(
    ("announced", "configured"),
    [
        (ISSUER + "/", ISSUER),
        (ISSUER, ISSUER + "/"),
        (ISSUER + "//", ISSUER),
    ],
)
def test_a_trailing_slash_is_the_same_issuer(announced: str, configured: str) -> None:
    metadata = parse_discovery(
        {**DOCUMENT, "issuer": announced}, issuer=configured, overrides=NO_OVERRIDES
    )
    assert metadata.issuer == ISSUER  # without the slash, as the rest of the library uses it


@pytest.mark.parametrize(
    ("announced", "configured"),
    [
        (ISSUER + "X", ISSUER),  # a realm named like ours plus one character
        (ISSUER, ISSUER + "X"),
        ("/" + ISSUER, ISSUER),
        (ISSUER, "/" + ISSUER),
        (" " + ISSUER, ISSUER),
    ],
)
def test_an_issuer_one_character_off_is_another_issuer(announced: str, configured: str) -> None:
    with pytest.raises(DiscoveryDocumentInvalid):
        parse_discovery({**DOCUMENT, "issuer": announced}, issuer=configured, overrides={})


@pytest.mark.parametrize(
    "url", ["https:///token", "https://", "ftp://login.bank.test/token", "login.bank.test/token"]
)
def test_an_endpoint_needs_an_http_scheme_and_a_host(url: str) -> None:
    with pytest.raises(DiscoveryDocumentInvalid):
        parse_discovery({**DOCUMENT, "token_endpoint": url}, issuer=ISSUER, overrides={})


def test_an_issuer_is_kept_as_configured_but_for_trailing_slashes() -> None:
    issuer = "https://login.bank.test/realms/X"
    document = {**DOCUMENT, "issuer": issuer}
    assert parse_discovery(document, issuer=issuer + "/", overrides={}).issuer == issuer


def test_plain_http_endpoints_are_read() -> None:
    # A bank's test realm behind plain HTTP is still metadata; TLS is the settings' call.
    document = {**DOCUMENT, "token_endpoint": "http://login.bank.test/token"}
    metadata = parse_discovery(document, issuer=ISSUER, overrides={})
    assert metadata.token_endpoint == "http://login.bank.test/token"


def test_the_discovery_url_is_under_the_issuer() -> None:
    expected = ISSUER + "/.well-known/openid-configuration"
    assert discovery_url(ISSUER) == expected
    assert discovery_url(ISSUER + "/") == expected
    assert discovery_url("https://x.test/realms/X/") == (
        "https://x.test/realms/X/.well-known/openid-configuration"
    )


# --- the service ----------------------------------------------------------------------------


class Server:
    """Answers the discovery URL with ``answer`` (a document, a status, or an exception)."""

    def __init__(self, answer: Any = DOCUMENT, latency: float = 0.0) -> None:
        self.answer = answer
        self.latency = latency
        self.requests = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        assert str(request.url) == ISSUER + "/.well-known/openid-configuration"
        self.requests += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        if isinstance(self.answer, Exception):
            raise self.answer
        if isinstance(self.answer, int):
            return httpx.Response(self.answer)
        if isinstance(self.answer, bytes):
            return httpx.Response(200, content=self.answer)
        return httpx.Response(200, json=self.answer)


def discovery(server: Server, clock: FakeClock, **kwargs: Any) -> Discovery:
    return Discovery(
        http=httpx.AsyncClient(transport=httpx.MockTransport(server)),
        issuer=ISSUER,
        fallback=fallback_metadata(Endpoints.from_issuer(ISSUER)),
        overrides=NO_OVERRIDES,
        clock=clock,
        **kwargs,
    )


async def test_nothing_is_read_until_asked_then_kept() -> None:
    server, clock = Server(), FakeClock()
    service = discovery(server, clock, max_age=3600)
    assert server.requests == 0
    assert service.current.discovered is False
    assert (await service.metadata()).discovered is True
    clock.advance(3599)
    await service.metadata()
    assert server.requests == 1
    clock.advance(1)
    await service.metadata()
    assert server.requests == 2


async def test_concurrent_callers_share_one_request() -> None:
    server, clock = Server(latency=0.05), FakeClock()
    service = discovery(server, clock)
    results = await asyncio.gather(*(service.metadata() for _ in range(50)))
    assert server.requests == 1
    assert all(r.discovered for r in results)


@pytest.mark.parametrize(
    "answer",
    [404, 503, httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), b"<html>", b"[" * 5000],
)
async def test_an_unreadable_document_falls_back_and_is_retried_later(
    answer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "fastapi_corpauth.discovery")
    server, clock = Server(answer), FakeClock()
    service = discovery(server, clock, retry_interval=30)
    for _ in range(3):
        metadata = await service.metadata()
        assert metadata.discovered is False
        assert metadata.token_endpoint == OIDC + "/token"
    assert server.requests == 1
    assert len(caplog.records) == 1  # once per outage
    server.answer = DOCUMENT
    clock.advance(29)
    assert (await service.metadata()).discovered is False
    clock.advance(1)
    assert (await service.metadata()).discovered is True
    assert server.requests == 2
    assert "readable again" in caplog.records[-1].getMessage()


async def test_another_issuers_document_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "fastapi_corpauth.discovery")
    server = Server({**DOCUMENT, "issuer": "https://evil.example/realms/bog"})
    metadata = await discovery(server, FakeClock()).metadata()
    assert metadata.discovered is False
    assert "another issuer" in caplog.text


async def test_a_failed_refresh_keeps_the_document_read_before() -> None:
    server, clock = Server(), FakeClock()
    service = discovery(server, clock, max_age=60, retry_interval=30)
    assert (await service.metadata()).iss_parameter_supported is True
    server.answer = 503
    clock.advance(61)
    assert (await service.metadata()).iss_parameter_supported is True
    assert server.requests == 2


async def test_switched_off_it_never_reads() -> None:
    server = Server()
    service = discovery(server, FakeClock(), enabled=False)
    assert (await service.metadata()).discovered is False
    assert server.requests == 0


async def test_a_huge_document_is_refused() -> None:
    server = Server(json.dumps({**DOCUMENT, "padding": "x" * 300_000}).encode())
    assert (await discovery(server, FakeClock()).metadata()).discovered is False
