"""No secret or token in any log record (DEBUG, every logger), repr, message or error body."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from fastapi_corpauth._protocol import basic_authorization
from tests.integration.conftest import SPECIAL_SECRET, MakeHarness

pytestmark = pytest.mark.anyio


def forbidden_values(secret: str) -> set[str]:
    from urllib.parse import quote, quote_plus

    return {secret, quote_plus(secret), quote(secret, safe="")}


async def test_nothing_secret_is_logged_or_shown(
    make_harness: MakeHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "fastapi_corpauth", "uvicorn", ""):
        logging.getLogger(name).setLevel(logging.DEBUG)
    seen_tokens: set[str] = set()
    texts: list[str] = []

    async with make_harness() as h:
        responses = []
        responses.append(await h.client.get("/accounts"))
        token = h.corpauth.tokens.cached
        assert token is not None
        seen_tokens.add(token.access_token)
        texts += [repr(token), str(token), repr(h.corpauth), repr(h.corpauth.tokens)]
        texts += [repr(h.corpauth.settings), str(h.corpauth.settings)]

        h.dev.push_not_before()  # revocation path: 401, drop, refetch, retry
        responses.append(await h.client.get("/accounts"))
        token = h.corpauth.tokens.cached
        assert token is not None
        seen_tokens.add(token.access_token)

        for fault in ({"status": 500}, {"body_kind": "html"}, {"body_kind": "truncated"}):
            h.corpauth.tokens.invalidate(token)
            h.dev.set_faults(**fault)
            responses.append(await h.client.get("/token-length"))
            h.dev.clear_faults()
        try:
            await h.corpauth.get_token()
        except Exception as exc:
            texts += [str(exc), repr(exc)]

    async with make_harness(configured_secret=SPECIAL_SECRET + "-wrong") as h:
        responses.append(await h.client.get("/accounts"))
        try:
            await h.corpauth.get_token()
        except Exception as exc:
            texts += [str(exc), repr(exc)]
            cause: Any = exc.__cause__
            texts.append(repr(cause))

    for response in responses:
        texts.append(response.text)
        texts.append(str(dict(response.headers)))
    texts += [record.getMessage() for record in caplog.records]
    texts += [str(record.args) for record in caplog.records]
    assert len(caplog.records) > 5, "the scenario should have produced log records"

    forbidden = forbidden_values(SPECIAL_SECRET) | forbidden_values(SPECIAL_SECRET + "-wrong")
    forbidden |= seen_tokens
    forbidden.add(basic_authorization("corp-app", SPECIAL_SECRET)[6:])
    assert len(seen_tokens) == 2
    for text in texts:
        for value in forbidden:
            assert value not in text
