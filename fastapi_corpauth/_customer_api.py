"""The bank API as the signed-in customer: clients that carry the customer's own token."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator

import httpx

from ._errors import SessionExpired
from ._sessions import SignedInUser
from ._signin import RenewSilently, SignIn

__all__ = ["CustomerClients", "CustomerTokenAuth"]


class CustomerTokenAuth(httpx.Auth):
    """Adds the customer's access token to each request, renewing the session first when
    its token is near its end.

    A 401 from the bank means it no longer accepts the customer's token (the session
    ended at the bank, a not-before push): the session is ended here too and
    ``SessionExpired`` raised, so the customer is asked to sign in again rather than shown
    an error of the bank's.
    """

    requires_request_body = True

    def __init__(self, sign_in: SignIn, session_id: str, user: SignedInUser) -> None:
        self._sign_in = sign_in
        self._session_id = session_id
        self._user = user

    def __repr__(self) -> str:
        return f"CustomerTokenAuth(user={self._user!r})"

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        raise RuntimeError("CustomerTokenAuth works with httpx.AsyncClient only")

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        outcome = await self._sign_in.resume(self._session_id, page_view=False)
        if outcome is None:
            raise SessionExpired("the session ended")
        self._user = outcome.user if isinstance(outcome, RenewSilently) else outcome
        request.headers["Authorization"] = self._user.token.authorization
        response = yield request
        if response.status_code == 401:
            await self._sign_in.end(self._session_id)
            raise SessionExpired("the bank no longer accepts the customer's token")


class _Borrowed(httpx.AsyncBaseTransport):
    """A shared connection pool that a per-request client may use but not close."""

    def __init__(self, pool: httpx.AsyncBaseTransport) -> None:
        self._pool = pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._pool.handle_async_request(request)

    async def aclose(self) -> None:
        return None


class CustomerClients:
    """Makes the per-request clients of ``user_api_client`` over one connection pool."""

    def __init__(
        self,
        *,
        sign_in: SignIn,
        pool: httpx.AsyncBaseTransport,
        base_url: str,
        timeout: httpx.Timeout,
        client_class: type[httpx.AsyncClient] = httpx.AsyncClient,
    ) -> None:
        self._sign_in = sign_in
        self._pool = _Borrowed(pool)
        self._base_url = base_url
        self._timeout = timeout
        self._client_class = client_class

    def client(self, session_id: str, user: SignedInUser) -> httpx.AsyncClient:
        """A client for this request's customer (closing it leaves the pool open)."""
        return self._client_class(
            base_url=self._base_url,
            transport=self._pool,
            auth=CustomerTokenAuth(self._sign_in, session_id, user),
            timeout=self._timeout,
            trust_env=False,
        )
