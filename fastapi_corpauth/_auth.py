"""httpx authentication that carries the bank token and survives its revocation."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator

import httpx

from ._token_service import TokenService

__all__ = ["BankTokenAuth"]


class BankTokenAuth(httpx.Auth):
    """Adds ``Authorization: Bearer`` from a ``TokenService`` to each request.

    When the bank API answers 401 (Keycloak's not-before push revoked the token, or it
    expired early), the token that failed is dropped, one new token is obtained (single
    flight across all requests failing together) and the request is sent once more. A
    second 401 is returned to the caller as it is. Retrying is safe for every method:
    a 401 means the bank did not act on the request.
    """

    requires_request_body = True

    def __init__(self, tokens: TokenService) -> None:
        self._tokens = tokens

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        raise RuntimeError("BankTokenAuth works with httpx.AsyncClient only")

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self._tokens.get_token()
        request.headers["Authorization"] = token.authorization
        response = yield request
        if response.status_code != 401:
            return
        self._tokens.invalidate(token)
        token = await self._tokens.get_token()
        request.headers["Authorization"] = token.authorization
        yield request
