"""Measure 7: Authlib and httpx-auth side by side with the plugin in measures 3-5.

They run in the same process, against the same devserver process and token endpoint, right
after the plugin, and each row's baseline is the plugin's figure from that run. Both are
installed for the benchmark only (``bench/requirements.txt``), never as dependencies of the
package, and are used as their documentation shows:

* Authlib: ``AsyncOAuth2Client(client_id, client_secret, scope=..., token_endpoint=...,
  grant_type="client_credentials")``, which renews a client_credentials token by itself
  when ``grant_type`` is in its metadata. Authlib has no lazy first fetch (a request
  without a token raises ``MissingTokenError``), so "cold" means holding an expired token,
  which it renews under its lock.
* httpx-auth: ``OAuth2ClientCredentials(token_url, client_id=..., client_secret=...,
  scope=...)`` as ``auth=`` of an ``httpx.AsyncClient``.

Token lifetimes in the rollover measure are seconds, so the anchors' leeways are set to
the plugin's effective leeway there (a quarter of the lifetime): with their defaults
(Authlib 60 s, httpx-auth 30 s) every request would fetch a new token.

``bench/run.py`` runs these rows from the herd, rollover and revocation modules whenever
measure 7 is selected.
"""

from __future__ import annotations

from typing import Any

import httpx

from .common import CLIENT_ID, CLIENT_SECRET
from .contenders import Contender


class AuthlibContender(Contender):
    name = "Authlib"

    async def start(self) -> None:
        from authlib.integrations.httpx_client import AsyncOAuth2Client

        self.client = AsyncOAuth2Client(
            CLIENT_ID,
            CLIENT_SECRET,
            scope="corp",
            token_endpoint=self.dev.token_url,
            grant_type="client_credentials",
            leeway=self.leeway,
            # "Cold": a token that has expired; Authlib renews it on the next request.
            token={"access_token": "expired", "token_type": "Bearer", "expires_at": 1},
            transport=self.bank,
        )

    async def get(self, path: str) -> int:
        response: httpx.Response = await self.client.get(self.base + path)
        return response.status_code

    async def token(self) -> str:
        # What AsyncOAuth2Client.request awaits before sending.
        await self.client.ensure_active_token(self.client.token)
        return str(self.client.token["access_token"])

    async def close(self) -> None:
        await self.client.aclose()


class HttpxAuthContender(Contender):
    name = "httpx-auth"

    async def start(self) -> None:
        import httpx_auth

        httpx_auth.OAuth2.token_cache.clear()  # its cache is global to the process
        self.auth: Any = httpx_auth.OAuth2ClientCredentials(
            self.dev.token_url,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            scope="corp",
            early_expiry=self.leeway,
        )
        self.client = httpx.AsyncClient(auth=self.auth, transport=self.bank)

    async def get(self, path: str) -> int:
        return (await self.client.get(self.base + path)).status_code

    async def token(self) -> str:
        # What httpx.AsyncClient runs for auth=: the auth's async_auth_flow.
        flow = self.auth.async_auth_flow(httpx.Request("GET", self.base + "/accounts"))
        request = await anext(flow)
        await flow.aclose()
        return str(request.headers["Authorization"])

    async def close(self) -> None:
        await self.client.aclose()
        import httpx_auth

        httpx_auth.OAuth2.token_cache.clear()


def available() -> list[type[Contender]]:
    """The anchors whose library is installed (``bench/requirements.txt``)."""
    found: list[type[Contender]] = []
    for cls, module in ((AuthlibContender, "authlib"), (HttpxAuthContender, "httpx_auth")):
        try:
            __import__(module)
        except ImportError:
            print(f"  {cls.name} is not installed (pip install -r bench/requirements.txt)")
            continue
        found.append(cls)
    return found
