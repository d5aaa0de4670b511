"""Measure 4: steady load across several token lifetimes, token endpoint answering in 200 ms.

An open-loop generator sends bank requests (to the devserver's real API) at a fixed rate;
latency counts from each request's scheduled start. The transport records the token each
request carries; a new token's first use at ``t`` marks a rollover, and every request in
flight during ``[t - 200 ms - 50 ms, t]`` (the fetch) counts as "during rollover", the rest as
steady state. Figures: token requests per rollover (token requests divided by the new
tokens that came into use; tokens are renewed ahead of expiry, so a rollover happens
somewhat more often than once a lifetime) and p99 latency during rollover vs steady state.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from .common import (
    Devserver,
    Profile,
    Report,
    Sample,
    ms,
    open_loop,
    percentile,
    processes,
    ratio,
    start_devserver,
)
from .contenders import BankTransport, Contender, CorpAuthContender
from .herd import warm_up

LATENCY = 0.2


@dataclass
class RolloverResult:
    requests: int
    failures: int
    token_requests: int
    rollovers: int
    p99_steady: float
    p99_rollover: float
    rollover_samples: int

    @property
    def per_rollover(self) -> float:
        return ratio(self.token_requests, self.rollovers)


def split(
    samples: list[Sample], starts: list[float], fetch: float
) -> tuple[list[float], list[float]]:
    windows = [(t - fetch - 0.05, t) for t in starts]
    steady: list[float] = []
    during: list[float] = []
    for s in samples:
        hit = any(s.scheduled <= hi and s.end >= lo for lo, hi in windows)
        (during if hit else steady).append(s.latency)
    return steady, during


async def rollover(
    cls: type[Contender], dev: Devserver, *, lifetime: float, lifetimes: float, rate: float
) -> RolloverResult:
    bank = BankTransport(mock=False)
    contender = cls(dev, bank, leeway=lifetime / 4)
    await contender.start()
    try:
        if await contender.get("/accounts") != 200:  # cold fetch, not measured
            raise RuntimeError(f"{cls.name}: the bank refused the first request")
        dev.reset()
        first = len(bank.seen)
        seen_before = {s.token for s in bank.seen}

        async def call() -> bool:
            return await contender.get("/accounts") == 200

        samples = await open_loop(call, rate=rate, seconds=lifetime * lifetimes)
        await asyncio.sleep(LATENCY + 0.3)  # let a background fetch in flight finish
        token_requests = dev.stats()["token_requests"]
        last = contender.cached_token()  # the token that fetch brought (no new fetch)
    finally:
        await contender.close()
    starts: list[float] = []
    known = set(seen_before)
    for s in bank.seen[first:]:
        if s.token not in known:
            known.add(s.token)
            starts.append(s.at)
    if last is not None and last not in known:
        starts.append(time.perf_counter())  # after the load: no request overlaps it
    steady, during = split(samples, starts, LATENCY)
    return RolloverResult(
        requests=len(samples),
        failures=sum(not s.ok for s in samples),
        token_requests=token_requests,
        rollovers=len(starts),
        p99_steady=percentile(steady, 99),
        p99_rollover=percentile(during, 99),
        rollover_samples=len(during),
    )


def describe(name: str, r: RolloverResult) -> None:
    print(
        f"  {name:10} {r.requests} requests ({r.failures} failed), {r.rollovers} rollovers, "
        f"{r.token_requests} token requests; p99 steady {ms(r.p99_steady)}, during rollover "
        f"{ms(r.p99_rollover)} ({r.rollover_samples} requests)"
    )


def run(
    profile: Profile,
    report: Report,
    *,
    plugin_rows: bool = True,
    anchors: list[type[Contender]] | None = None,
) -> None:
    lifetime = profile.pick(8.0, 4.0)
    lifetimes = profile.pick(4, 2)
    rate = 100.0
    print(
        f"  token lifetime {lifetime:.0f} s, {lifetimes} lifetimes at {rate:.0f} req/s, "
        f"token endpoint latency {LATENCY * 1000:.0f} ms"
    )
    with processes() as started:
        dev = start_devserver(started, token_lifetime=lifetime)
        dev.faults(latency=LATENCY)
        asyncio.run(warm_up(dev))
        kwargs = {"lifetime": lifetime, "lifetimes": lifetimes, "rate": rate}
        plugin = asyncio.run(rollover(CorpAuthContender, dev, **kwargs))
        describe("corpauth", plugin)
        others = []
        for cls in anchors or []:
            result = asyncio.run(rollover(cls, dev, **kwargs))
            describe(cls.name, result)
            others.append((cls.name, result))
    if plugin_rows:
        report.add(
            "4. Rollover: token requests per rollover (200 ms endpoint)",
            f"{plugin.token_requests} for {plugin.rollovers} rollovers",
            "1 per rollover",
            plugin.per_rollover,
            "1",
            plugin.token_requests == plugin.rollovers and plugin.rollovers > 0,
        )
        r = ratio(plugin.p99_rollover, plugin.p99_steady)
        report.add(
            "4. Rollover: p99 latency during rollover vs steady",
            ms(plugin.p99_rollover),
            ms(plugin.p99_steady),
            r,
            "≤ 1.5",
            r <= 1.5 and plugin.failures == 0,
        )
    for name, o in others:
        report.add(
            f"7. {name}: rollover token requests per rollover",
            f"{o.token_requests} for {o.rollovers} rollovers",
            f"corpauth: {plugin.per_rollover:.2f}",
            o.per_rollover,
            "1",
            o.token_requests == o.rollovers and o.rollovers > 0,
            reference=True,
        )
        r = ratio(o.p99_rollover, o.p99_steady)
        report.add(
            f"7. {name}: p99 during rollover vs steady",
            f"{ms(o.p99_rollover)} vs {ms(o.p99_steady)}",
            f"corpauth: {ms(plugin.p99_rollover)} vs {ms(plugin.p99_steady)}",
            r,
            "≤ 1.5",
            r <= 1.5 and o.failures == 0,
            reference=True,
        )
