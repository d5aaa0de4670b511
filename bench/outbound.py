"""Measure 2: the CPU one call to the bank API costs the app, by client.

A devserver process issues the tokens and ``bench/upstream.py``, a minimal server in a
process of its own, stands in for the bank API on loopback. This process makes
sequential ``GET accounts`` calls over kept-alive connections and counts its own CPU per
call (see ``bench/inprocess.py`` for rounds and verdicts). Every client holds a valid
token throughout:

* ``plain httpx``: one shared ``httpx.AsyncClient`` with a fixed ``Authorization``
  header, the floor for any client that carries a token;
* ``api_client``: the client ``Depends(corpauth.api_client)`` injects;
* Authlib's ``AsyncOAuth2Client`` (client_credentials, token fetched first) and an
  ``httpx.AsyncClient`` with httpx-auth's ``OAuth2ClientCredentials``, when installed.

An information row shows what the same plain client costs when ``sniffio`` is missing:
httpcore then searches ``sys.path`` for it again at every step of the connection pool.
The finder that stands in for a missing package does that very search.
"""

from __future__ import annotations

import asyncio
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AsyncExitStack, contextmanager
from types import ModuleType
from typing import Any

import httpx

from fastapi_corpauth import CorpAuth, CorpAuthSettings

from .common import (
    CLIENT_ID,
    CLIENT_SECRET,
    Process,
    Profile,
    Report,
    free_port,
    processes,
    start_devserver,
)
from .inprocess import add_ratio, alternate, micros

Call = Callable[[], Awaitable[Any]]


class _Missing(importlib.abc.MetaPathFinder):
    """Makes ``sniffio`` unimportable at the cost of a real miss: a full path search."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> None:
        if fullname == "sniffio":
            importlib.machinery.PathFinder.find_spec("sniffio_is_not_installed", path)
            raise ModuleNotFoundError("No module named 'sniffio'", name="sniffio")
        return None


@contextmanager
def without_sniffio() -> Iterator[None]:
    saved = sys.modules.pop("sniffio", None)
    finder = _Missing()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        if saved is not None:
            sys.modules["sniffio"] = saved


def checked(client_get: Callable[[], Awaitable[httpx.Response]]) -> Call:
    async def call() -> None:
        response = await client_get()
        if response.status_code != 200:
            raise RuntimeError(f"the bank API answered {response.status_code}")

    return call


async def anchors(stack: AsyncExitStack, dev: Any, api: str) -> dict[str, Call]:
    """Authlib's and httpx-auth's clients, each holding a token, when installed."""
    calls: dict[str, Call] = {}
    try:
        from authlib.integrations.httpx_client import AsyncOAuth2Client
    except ImportError:
        print("  Authlib is not installed (pip install -r bench/requirements.txt)")
    else:
        authlib = await stack.enter_async_context(
            AsyncOAuth2Client(
                CLIENT_ID,
                CLIENT_SECRET,
                scope="corp",
                token_endpoint=dev.token_url,
                grant_type="client_credentials",
            )
        )
        await authlib.fetch_token()
        url = api + "/accounts"
        calls["Authlib"] = checked(lambda: authlib.get(url))
    try:
        import httpx_auth
    except ImportError:
        print("  httpx-auth is not installed (pip install -r bench/requirements.txt)")
    else:
        httpx_auth.OAuth2.token_cache.clear()
        auth = httpx_auth.OAuth2ClientCredentials(
            dev.token_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, scope="corp"
        )
        with_auth = await stack.enter_async_context(
            httpx.AsyncClient(base_url=api + "/", auth=auth)
        )
        calls["httpx-auth"] = checked(lambda: with_auth.get("accounts"))
    return calls


def missing_sniffio(call: Call) -> Call:
    """``call`` as it runs where sniffio is not installed."""

    async def without() -> None:
        with without_sniffio():
            await call()

    return without


async def measure(
    profile: Profile, report: Report, dev: Any, api: str, *, plugin_rows: bool, with_anchors: bool
) -> None:
    settings = CorpAuthSettings(
        _env_file=None,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        issuer=dev.issuer,
        api_base_url=api,
    )
    corpauth = CorpAuth(settings)
    token = dev.client_token()["access_token"]
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(corpauth.lifespan())
        bank = await corpauth.api_client()  # what Depends(corpauth.api_client) injects
        headers = {"Authorization": f"Bearer {token}"}
        plain = await stack.enter_async_context(
            httpx.AsyncClient(base_url=api + "/", headers=headers)
        )
        # An A/A pair: a second, identical client; what it reads is the method's noise.
        again = await stack.enter_async_context(
            httpx.AsyncClient(base_url=api + "/", headers=headers)
        )
        calls: dict[str, Call] = {"plain httpx": checked(lambda: plain.get("accounts"))}
        if plugin_rows:
            calls["plain httpx again"] = checked(lambda: again.get("accounts"))
            calls["api_client"] = checked(lambda: bank.get("accounts"))
        if with_anchors:
            calls.update(await anchors(stack, dev, api))
        for call in calls.values():
            await call()
        rounds = profile.pick(9, 5)
        n = profile.pick(1500, 150)
        for name in calls:
            if name == "plain httpx":
                continue
            pair = await alternate(
                {name: calls[name], "plain httpx": calls["plain httpx"]},
                rounds=rounds,
                n=n,
            )
            print(f"  {name:<12} {micros(pair[name])}   plain httpx: {micros(pair['plain httpx'])}")
            if name == "plain httpx again":
                add_ratio(
                    report,
                    "2. (information) a second plain httpx client vs the first (A/A: noise)",
                    pair,
                    name,
                    "plain httpx",
                    None,
                )
            elif name == "api_client":
                add_ratio(
                    report,
                    "2. bank API call through api_client vs a plain httpx client",
                    pair,
                    name,
                    "plain httpx",
                    0.98,
                    target_text="≥ 0.98 in every round (no more CPU, within the noise)",
                )
            else:
                add_ratio(
                    report,
                    f"7. {name}: bank API call vs a plain httpx client",
                    pair,
                    name,
                    "plain httpx",
                    0.98,
                    target_text="≥ 0.98 in every round",
                    reference=True,
                )
        if not plugin_rows:
            return
        plain_call = calls["plain httpx"]
        sniffio = await alternate(
            {"without sniffio": missing_sniffio(plain_call), "plain httpx": plain_call},
            rounds=rounds,
            n=n,
        )
    add_ratio(
        report,
        "2. (information) a plain httpx client without sniffio installed",
        sniffio,
        "without sniffio",
        "plain httpx",
        None,
    )


def run(
    profile: Profile, report: Report, *, plugin_rows: bool = True, with_anchors: bool = True
) -> None:
    with processes() as started:
        dev = start_devserver(started, token_lifetime=3600)
        port = free_port()
        upstream = Process([sys.executable, "-m", "bench.upstream", str(port)])
        started.append(upstream)
        api = f"http://127.0.0.1:{port}/api"
        upstream.wait_ready(api)
        asyncio.run(
            measure(profile, report, dev, api, plugin_rows=plugin_rows, with_anchors=with_anchors)
        )
