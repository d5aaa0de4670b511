"""The FastAPI edge: the only place where package errors become HTTP responses.

Each ``CorpAuthError`` maps to a status and a stable ``code`` in a small JSON body
(``{"detail": {"code": ..., "message": ...}}``). Messages here are fixed texts, so no
detail of the bank's answer, and never a secret or token, reaches the client.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse

from ._errors import (
    BankApiUnavailable,
    ConfigurationError,
    CorpAuthError,
    CredentialsRejected,
    EndpointNotFound,
    InvalidToken,
    LifespanNotStarted,
    MalformedTokenResponse,
    NotAuthenticated,
    TokenEndpointUnavailable,
    VerificationUnavailable,
)

__all__ = [
    "BankApiClient",
    "ErrorResponse",
    "corpauth_exception_handler",
    "error_response",
    "http_exception",
]


@dataclass(frozen=True)
class ErrorResponse:
    status_code: int
    code: str
    message: str
    headers: dict[str, str]

    def detail(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


def error_response(exc: CorpAuthError) -> ErrorResponse:
    """Describe the HTTP answer for ``exc``: status, stable code, public message, headers."""
    headers = {"Cache-Control": "no-store"}
    if isinstance(exc, TokenEndpointUnavailable):
        retry_after = exc.retry_after if exc.retry_after is not None else 5.0
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
        return ErrorResponse(
            503,
            exc.code,
            "The bank's authorization server is unavailable; try again later.",
            headers,
        )
    if isinstance(exc, EndpointNotFound):
        return ErrorResponse(
            502,
            exc.code,
            "The bank's token endpoint was not found: check the configured issuer.",
            headers,
        )
    if isinstance(exc, InvalidToken):
        return ErrorResponse(401, exc.code, "The bank does not vouch for this token.", headers)
    if isinstance(exc, VerificationUnavailable):
        headers["Retry-After"] = "5"
        return ErrorResponse(
            503,
            exc.code,
            "The bank cannot confirm tokens right now; try again later.",
            headers,
        )
    if isinstance(exc, CredentialsRejected):
        return ErrorResponse(
            502, exc.code, "The bank refused this application's credentials.", headers
        )
    if isinstance(exc, MalformedTokenResponse):
        return ErrorResponse(
            502, exc.code, "The bank's authorization server answered unexpectedly.", headers
        )
    if isinstance(exc, BankApiUnavailable):
        headers["Retry-After"] = "5"
        return ErrorResponse(
            503, exc.code, "The bank's API is unavailable; try again later.", headers
        )
    if isinstance(exc, NotAuthenticated):
        return ErrorResponse(401, exc.code, "Sign in with the bank first.", headers)
    if isinstance(exc, LifespanNotStarted):
        return ErrorResponse(
            503,
            exc.code,
            "Bank authentication is not started: the app must be created with "
            "FastAPI(lifespan=corpauth.lifespan), or enter corpauth.lifespan(app) "
            "from its own lifespan.",
            headers,
        )
    if isinstance(exc, ConfigurationError):
        return ErrorResponse(
            503, exc.code, "Bank authentication is not configured or not started.", headers
        )
    return ErrorResponse(502, exc.code, "Bank authentication failed.", headers)


def http_exception(exc: CorpAuthError) -> HTTPException:
    """The ``HTTPException`` to raise from a dependency for ``exc``."""
    response = error_response(exc)
    return HTTPException(response.status_code, detail=response.detail(), headers=response.headers)


async def corpauth_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    """Exception handler for ``CorpAuthError`` raised outside the package's dependencies.

    Register it with ``app.add_exception_handler(CorpAuthError, corpauth_exception_handler)``
    when application code calls the token service directly.
    """
    if not isinstance(exc, CorpAuthError):  # pragma: no cover - registered for CorpAuthError
        raise exc
    response = error_response(exc)
    return JSONResponse(
        {"detail": response.detail()}, status_code=response.status_code, headers=response.headers
    )


def _unreachable(exc: httpx.TransportError) -> BankApiUnavailable:
    """The error for a bank API that could not be reached or did not answer in time,
    caused by ``exc`` (raised as the cause of the ``HTTPException`` that answers)."""
    error = BankApiUnavailable(f"bank API unreachable ({type(exc).__name__})")
    error.__cause__ = exc
    return error


class BankApiClient(httpx.AsyncClient):
    """The ``httpx.AsyncClient`` handed to routes: what it cannot do answers the request.

    A token that cannot be obtained (``TokenError``) and a bank API that cannot be
    reached or times out become the ``HTTPException`` of the stable error code (502/503)
    instead of a 500, including failures while a streamed body is read. The exception's
    ``__cause__`` is the library's error, whose ``__cause__`` is httpx's.

    Translating here rather than around the route (a ``yield`` dependency) keeps the
    dependency a plain ``async def``: FastAPI runs a generator dependency through an exit
    stack, which costs a request about as much as the rest of the dependency injection.
    """

    async def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        try:
            response = await super().send(request, **kwargs)
        except CorpAuthError as exc:
            raise http_exception(exc) from exc
        except httpx.TransportError as exc:
            error = _unreachable(exc)
            raise http_exception(error) from error
        if kwargs.get("stream") and isinstance(response.stream, httpx.AsyncByteStream):
            response.stream = _AnsweringStream(response.stream)
        return response


class _AnsweringStream(httpx.AsyncByteStream):
    """A streamed body whose transport failures answer like ``BankApiClient.send``."""

    def __init__(self, stream: httpx.AsyncByteStream) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                yield chunk
        except httpx.TransportError as exc:
            error = _unreachable(exc)
            raise http_exception(error) from error

    async def aclose(self) -> None:
        await self._stream.aclose()
