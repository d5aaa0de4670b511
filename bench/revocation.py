"""Measure 5: Keycloak's not-before push in the middle of steady load.

An open-loop generator sends bank requests to the devserver's real API (token endpoint
answering in 50 ms); halfway, ``POST /_dev/not-before`` revokes every token issued so far.
Figures: failed requests (anything but 200) and token requests made during the load.
Baseline: the requests sent in the same run.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

from .common import (
    DEV_HEADERS,
    Devserver,
    Profile,
    Report,
    open_loop,
    processes,
    ratio,
    start_devserver,
)
from .contenders import BankTransport, Contender, CorpAuthContender
from .herd import warm_up

LATENCY = 0.05


@dataclass
class RevocationResult:
    requests: int
    failures: int
    token_requests: int


async def revocation(
    cls: type[Contender], dev: Devserver, *, seconds: float, rate: float
) -> RevocationResult:
    contender = cls(dev, BankTransport(mock=False), leeway=30)
    await contender.start()
    try:
        if await contender.get("/accounts") != 200:  # cold fetch, not measured
            raise RuntimeError(f"{cls.name}: the bank refused the first request")
        dev.reset()
        async with httpx.AsyncClient() as control:

            async def push() -> None:
                answer = await control.post(dev.base + "/_dev/not-before", headers=DEV_HEADERS)
                answer.raise_for_status()

            async def call() -> bool:
                return await contender.get("/accounts") == 200

            samples = await open_loop(call, rate=rate, seconds=seconds, at={seconds / 2: push})
            token_requests = (await dev.astats(control))["token_requests"]
    finally:
        await contender.close()
    return RevocationResult(
        requests=len(samples),
        failures=sum(not s.ok for s in samples),
        token_requests=token_requests,
    )


def describe(name: str, r: RevocationResult) -> None:
    print(
        f"  {name:10} {r.requests} requests, {r.failures} failed, {r.token_requests} token requests"
    )


def run(
    profile: Profile,
    report: Report,
    *,
    plugin_rows: bool = True,
    anchors: list[type[Contender]] | None = None,
) -> None:
    seconds = profile.pick(8.0, 4.0)
    rate = 100.0
    with processes() as started:
        dev = start_devserver(started, token_lifetime=300)
        dev.faults(latency=LATENCY)
        asyncio.run(warm_up(dev))
        plugin = asyncio.run(revocation(CorpAuthContender, dev, seconds=seconds, rate=rate))
        describe("corpauth", plugin)
        others = []
        for cls in anchors or []:
            result = asyncio.run(revocation(cls, dev, seconds=seconds, rate=rate))
            describe(cls.name, result)
            others.append((cls.name, result))
    if plugin_rows:
        report.add(
            "5. Revocation under load: failed requests",
            f"{plugin.failures}",
            f"{plugin.requests} requests",
            ratio(plugin.failures, plugin.requests),
            "0",
            plugin.failures == 0,
        )
        report.add(
            "5. Revocation under load: token requests",
            f"{plugin.token_requests}",
            "1 revocation",
            ratio(plugin.token_requests, 1),
            "1",
            plugin.token_requests == 1,
        )
    for name, o in others:
        report.add(
            f"7. {name}: revocation failed requests",
            f"{o.failures} of {o.requests}",
            f"corpauth: {plugin.failures}",
            ratio(o.failures, plugin.failures),
            "0",
            o.failures == 0,
            reference=True,
        )
        report.add(
            f"7. {name}: revocation token requests",
            f"{o.token_requests}",
            f"corpauth: {plugin.token_requests}",
            ratio(o.token_requests, plugin.token_requests),
            "1",
            o.token_requests == 1,
            reference=True,
        )
